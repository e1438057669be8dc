"""The storage packages' shape: no module-level import cycle in blockyard.db and
blockyard.store, every module under 500 lines, the package API importable by name; and
the store's layout on disk:

    <root>/runs/<run_id>/inline+manifests.jsonl          nodes whose outputs are all inline
                                                         JSON: one manifest a line (local)
    <root>/runs/<run_id>/<quoted node uuid>/output_0.arrow   the other nodes: their files
                                           /manifest.json    and manifest (written last)
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGES = ("blockyard.db", "blockyard.store")


def _modules(package: str) -> dict[str, Path]:
    root = SRC / package.replace(".", "/")
    out = {}
    for path in root.glob("*.py"):
        name = package if path.stem == "__init__" else f"{package}.{path.stem}"
        out[name] = path
    return out


def _top_level_imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Modules of `known` imported when `module` is executed: import statements at module
    level (also inside module-level if/try), not inside functions. `from P import x`
    counts as importing P, and P.x when that is a module; importing P.x also runs P."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.stem == "__init__" else module.rpartition(".")[0]
    found: set[str] = set()

    def add(name: str) -> None:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
            prefix = ".".join(parts[:i])
            if prefix in known:
                found.add(prefix)

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                add(base)
                for alias in node.names:
                    add(f"{base}.{alias.name}")
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                visit(getattr(node, "finalbody", []))

    visit(tree.body)
    found.discard(module)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = walk(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = walk(node)
            if found:
                return found
    return None


def _graph() -> dict[str, set[str]]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        modules.update(_modules(package))
    known = set(modules)
    return {name: _top_level_imports(path, name, known) for name, path in modules.items()}


def test_no_module_level_import_cycle_in_db_and_store():
    graph = _graph()
    assert "blockyard.store.codecs" in graph and "blockyard.db.database" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_check_finds_a_cycle():
    # The checker itself: the old layout (package __init__ importing artifact_store,
    # which imports a sibling through the package) is a cycle.
    graph = {
        "blockyard.store": {"blockyard.store.artifact_store"},
        "blockyard.store.artifact_store": {"blockyard.store", "blockyard.store.codecs"},
        "blockyard.store.codecs": set(),
    }
    assert _cycle(graph) == ["blockyard.store", "blockyard.store.artifact_store", "blockyard.store"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_is_under_500_lines(package):
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules(package).items()}
    assert sizes and max(sizes.values()) <= 500, {n: s for n, s in sizes.items() if s > 500}


def test_package_api_and_light_imports():
    code = """
import sys
from blockyard.store import (ArtifactStore, CorruptOutputError, OutputManifest, Codec, CodecSkip,
    register_codec, unregister_codec, registered_codecs, get_codec, candidate_codecs, quote_name)
from blockyard.store import hashing
from blockyard.db import Database, open_database, Recorder, RecorderError, STATUSES
import blockyard.store as s
assert set(s.__all__) <= set(dir(s))
assert get_codec("json").name == "json" and issubclass(CorruptOutputError, Exception)
heavy = ["pandas", "pyarrow", "numpy", "fsspec", "sqlalchemy"]
print([m for m in heavy if m in sys.modules])
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(SRC), "PATH": ""}
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_on_disk_layout(tmp_path):
    import json
    import uuid

    code = f"""
import os, json, pandas as pd
from blockyard.store import ArtifactStore
local = ArtifactStore({str(tmp_path / "out")!r})
memory = ArtifactStore("memory://layout-{uuid.uuid4().hex}")
for store in (local, memory):
    store.save_outputs(1, "load/data", [pd.DataFrame({{"a": [1]}}), {{"rows": 1}}])
    store.save_outputs(1, "check", [None])
    store.save_outputs(1, "count", [1, "one"])
run = os.path.join(local.root, "runs", "1")
print(json.dumps({{
    "local": {{n: sorted(os.listdir(os.path.join(run, n))) if os.path.isdir(os.path.join(run, n)) else "file"
              for n in os.listdir(run)}},
    "log": [json.loads(line)["node_uuid"] for line in open(os.path.join(run, "inline+manifests.jsonl"))],
    "memory": sorted(p.rsplit("/", 1)[-1] for p in memory.fs.ls(memory.root + "/runs/1", detail=False)),
}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(SRC), "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "local": {"inline+manifests.jsonl": "file", "load%2Fdata": ["manifest.json", "output_0.arrow"]},
        "log": ["check", "count"],
        "memory": ["check", "count", "load%2Fdata"],
    }
