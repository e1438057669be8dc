"""Shape of src/blockyard: no import cycle, no module over 500 lines, one direction of imports.

Read with `ast`, never imported, so a broken module still gets a clear report. Layers are
those of the design (docs/ARCHITECTURE.md): project, store and db below the engine; compat, orchestration, ml,
server (and the other packages that build on the engine) above it.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "blockyard"
MAX_LINES = 500

# Rank of each top-level part of blockyard: a module may import (at module level) only
# parts of its own rank or lower. Plain modules not listed here are foundations (rank 0).
LAYERS: dict[str, int] = {
    "project": 1,
    "store": 1,
    "db": 1,
    "engine": 2,
    "compat": 3,
    "orchestration": 3,
    "ml": 3,
    "serving": 3,
    "notify": 3,
    "charts": 3,
    "secrets": 3,  # reads Mage's secret providers from compat
    "session": 3,  # opens a workspace's database and store for runs
    "api": 3,  # run_pipeline: a session plus the engine
    "server": 4,
    "ui": 4,
    "cli": 4,
    "cli_live": 4,
}
# What the engine must never import, not even lazily inside a function.
ENGINE_FORBIDDEN = ("db",) + tuple(sorted(name for name, rank in LAYERS.items() if rank > LAYERS["engine"]))


@dataclass
class Import:
    target: str  # a module of blockyard
    line: int
    module_level: bool  # runs when the importing module is imported
    implied: bool = False  # a parent package that Python imports before the named module


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    lines: int
    imports: list[Import] = field(default_factory=list)


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.name.split(".")
    if not module.is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _walk(node: ast.AST, module_level: bool):
    """(import node, module_level) for every import; bodies of functions are lazy."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, module_level
        lazy = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield from _walk(child, module_level and not lazy)


def load_modules() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name, is_package = _module_name(path)
        text = path.read_text(encoding="utf-8")
        modules[name] = Module(name, path, is_package, len(text.splitlines()))
    for module in modules.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
        for node, module_level in _walk(tree, True):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _absolute(module, node)
                # `from x import y` imports the submodule x.y when there is one, else x itself.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:  # `import blockyard.x.attr` -> blockyard.x
                    target = target.rpartition(".")[0]
                if not target.startswith("blockyard") or target == module.name:
                    continue
                module.imports.append(Import(target, node.lineno, module_level))
                # Importing a.b.c runs the packages a and a.b first (unless we are inside them).
                parent = target.rpartition(".")[0]
                while parent and not (module.name + ".").startswith(parent + "."):
                    module.imports.append(Import(parent, node.lineno, module_level, implied=True))
                    parent = parent.rpartition(".")[0]
    return modules


MODULES = load_modules()


def _where(module: Module, imp: Import) -> str:
    return f"{module.path.relative_to(SRC.parent)}:{imp.line} imports {imp.target}"


def _part(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def _rank(name: str) -> int:
    return LAYERS.get(_part(name), 0)


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], each importing the next, or None.

    project.validate.find_cycle walks "upstream" lists; a module's imports are its upstream
    (it runs after them), so its cycle reads the other way round."""
    from blockyard.project.validate import find_cycle

    cycle = find_cycle(sorted(graph), {name: sorted(targets) for name, targets in graph.items()})
    return cycle[::-1] if cycle else None


def test_import_cycle_reports_the_cycle():
    cycle = import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()})
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert all(nxt in {"a": {"b"}, "b": {"c"}, "c": {"a"}}[cur] for cur, nxt in zip(cycle, cycle[1:]))
    assert import_cycle({"a": {"b"}, "b": set()}) is None


def test_the_walk_sees_the_package():
    # Guards the checks below against passing on an empty or misread tree.
    assert "blockyard.engine.runner" in MODULES and "blockyard.project.pipeline" in MODULES
    targets = {i.target for i in MODULES["blockyard.project.workspace"].imports if i.module_level}
    assert "blockyard.project.pipeline" in targets


def test_no_import_cycle():
    # `if TYPE_CHECKING:` imports count: a cycle of types is a cycle of design too.
    graph = {name: {i.target for i in m.imports if i.module_level} for name, m in MODULES.items()}
    cycle = import_cycle(graph)
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle)


def test_no_module_over_500_lines():
    offenders = [
        f"{m.path.relative_to(SRC.parent)}: {m.lines} lines" for m in MODULES.values() if m.lines > MAX_LINES
    ]
    assert not offenders, f"modules over {MAX_LINES} lines (split them by responsibility):\n" + "\n".join(offenders)


def test_engine_imports_nothing_above_it_nor_the_database():
    offenders = [
        _where(m, i)
        for m in MODULES.values()
        if _part(m.name) == "engine"
        for i in m.imports
        if not i.implied and _part(i.target) in ENGINE_FORBIDDEN
    ]
    assert not offenders, "engine/ must not import " + ", ".join(ENGINE_FORBIDDEN) + ":\n" + "\n".join(offenders)


def test_lower_layers_never_import_upper_ones():
    offenders = [
        _where(m, i) + f" (layer {_rank(m.name)} imports layer {_rank(i.target)})"
        for m in MODULES.values()
        for i in m.imports
        if i.module_level and not i.implied and _rank(i.target) > _rank(m.name)
    ]
    assert not offenders, "module-level imports going up the layers:\n" + "\n".join(offenders)
