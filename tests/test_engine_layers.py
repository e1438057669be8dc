"""The engine's place in the layers, checked by walking the imports of its source.

engine/ runs one pipeline on a session it is handed: it never opens or imports the
database layer (db/), the compatibility layer (compat/ sits above it and reaches
block code through BlockTask.prelude), or anything above it. Two modules are kept
only as old import paths for callers outside the engine (cli.py, tests) and are
listed here by name.
"""
from __future__ import annotations

import ast
from pathlib import Path

import blockyard

SRC = Path(blockyard.__file__).parent
ENGINE = SRC / "engine"
# Old import paths, re-exporting from the layer above; nothing in engine/ imports them.
OLD_PATHS = {"api.py": "blockyard.api", "session.py": "blockyard.session"}
FORBIDDEN = (
    "blockyard.db", "blockyard.compat", "blockyard.orchestration", "blockyard.server",
    "blockyard.serving", "blockyard.ui", "blockyard.cli", "blockyard.api", "blockyard.session",
    "blockyard.notify",
)


def _imports(path: Path, top_level_only: bool = False) -> list[tuple[int, str]]:
    """Every module a file imports, at any depth (function-level imports count too),
    or only those run when the module is imported."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{a.name}") for a in node.names)
    return found


def test_the_engine_imports_no_layer_above_it_nor_the_database():
    bad = []
    for path in sorted(ENGINE.glob("*.py")):
        for line, module in _imports(path):
            if path.name in OLD_PATHS and module.startswith(OLD_PATHS[path.name]):
                continue
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN):
                bad.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    assert bad == []


def test_nothing_in_the_engine_uses_the_old_paths():
    old = {f"blockyard.engine.{name[:-3]}" for name in OLD_PATHS}
    bad = [
        f"{path.name}:{line} imports {module}"
        for path in sorted(ENGINE.glob("*.py"))
        for line, module in _imports(path)
        if any(module == o or module.startswith(o + ".") for o in old)
    ]
    assert bad == []


def test_engine_modules_import_each_other_without_a_cycle():
    """At import time (a factory importing a plug-in inside a function, as
    executors.make_executor does for Dask, is not a cycle)."""
    graph: dict[str, set[str]] = {}
    for path in ENGINE.glob("*.py"):
        me = f"blockyard.engine.{path.stem}"
        graph[me] = {
            m for _line, m in _imports(path, top_level_only=True)
            if m.startswith("blockyard.engine.") and m.count(".") == 2 and m != me
            and (ENGINE / f"{m.rsplit('.', 1)[1]}.py").exists()
        }
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        assert node not in stack, "import cycle: " + " -> ".join(stack[stack.index(node):] + [node])
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, stack + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])


def test_every_engine_module_is_short_and_the_runner_reads_in_one_sitting():
    lengths = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in ENGINE.glob("*.py")}
    assert lengths["runner.py"] <= 300
    assert {n: ln for n, ln in lengths.items() if ln > 500} == {}
