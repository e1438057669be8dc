"""A pipeline's compiled block code is kept in one bundle under the data folder, so a
fresh process (every `blockyard run`, every worker run) does not compile every block
file again; an edited block, a torn bundle or another Python compile as before."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import blockyard
from blockyard.engine import loader
from wsbuilder import block, write_pipeline


def _chain(root: Path, n: int = 4) -> None:
    blocks = [block("b0", "@custom\ndef b0():\n    return 1\n")]
    blocks += [
        block(f"b{i}", f"@custom\ndef b{i}(x):\n    return x + 1\n", upstream=[f"b{i-1}"])
        for i in range(1, n)
    ]
    write_pipeline(root, "proj", "chain", blocks)


@pytest.fixture
def ws(tmp_path, monkeypatch):
    for var in ("BLOCKYARD_DATABASE_URL", "BLOCKYARD_HOME"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "ws"
    root.mkdir()
    _chain(root)
    loader.clear_cache()
    yield root
    loader.clear_cache()


def _bundles(root: Path) -> list[Path]:
    return sorted((root / ".blockyard" / "cache" / "code").glob("*.marshal"))


def _count_compiles(monkeypatch) -> list[str]:
    seen: list[str] = []

    def counting(source, filename, mode, *a, **kw):
        seen.append(filename)
        return compile(source, filename, mode, *a, **kw)

    # the loader's module global shadows the builtin for its own calls only
    monkeypatch.setattr(loader, "compile", counting, raising=False)
    return seen


def test_a_fresh_process_takes_the_compiled_code_from_the_bundle(ws, monkeypatch):
    compiled = _count_compiles(monkeypatch)
    first = blockyard.run_pipeline("proj/chain", workspace=ws)
    assert first.ok and first.output("b3") == 4
    assert len(compiled) == 4 and len(_bundles(ws)) == 1

    loader.clear_cache()  # as a new process starts
    compiled.clear()
    second = blockyard.run_pipeline("proj/chain", workspace=ws)
    assert second.ok and second.output("b3") == 4
    assert compiled == []  # all four came from the bundle

    # An edited block is compiled again (only it), and the bundle now holds the new code.
    (ws / "proj" / "custom" / "b2.py").write_text("@custom\ndef b2(x):\n    return x * 10\n")
    loader.clear_cache()
    third = blockyard.run_pipeline("proj/chain", workspace=ws)
    assert third.ok and third.output("b3") == 21
    assert [Path(f).name for f in compiled] == ["b2.py"]
    loader.clear_cache()
    compiled.clear()
    assert blockyard.run_pipeline("proj/chain", workspace=ws).output("b3") == 21
    assert compiled == []


def test_a_torn_or_foreign_bundle_is_ignored_and_rewritten(ws, monkeypatch):
    assert blockyard.run_pipeline("proj/chain", workspace=ws).ok
    (bundle,) = _bundles(ws)
    good = bundle.read_bytes()
    for bad in (good[: len(good) // 2], b"not a bundle at all", b""):
        bundle.write_bytes(bad)
        loader.clear_cache()
        compiled = _count_compiles(monkeypatch)
        result = blockyard.run_pipeline("proj/chain", workspace=ws)
        assert result.ok and result.output("b3") == 4
        assert len(compiled) == 4  # compiled as if there were no bundle
        assert bundle.read_bytes().startswith(good[:20])  # rewritten whole


def test_errors_from_bundled_code_name_the_block_file_and_line(ws):
    (ws / "proj" / "custom" / "b1.py").write_text(
        "@custom\ndef b1(x):\n    y = x\n    raise ValueError('boom')\n"
    )
    assert not blockyard.run_pipeline("proj/chain", workspace=ws).ok
    loader.clear_cache()
    failed = blockyard.run_pipeline("proj/chain", workspace=ws)  # code from the bundle
    assert not failed.ok
    run = failed.block_runs["b1"]
    assert "b1.py:4" in run.error and "boom" in run.error
    assert 'b1.py", line 4' in run.traceback


def test_blockyard_run_in_new_processes_uses_the_bundle(ws):
    env = {"BLOCKYARD_WORKSPACE": str(ws), "PATH": "/usr/bin:/bin"}
    exe = Path(sys.executable).parent / "blockyard"
    for _ in range(2):
        done = subprocess.run([str(exe), "run", "proj/chain", "-q"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    (bundle,) = _bundles(ws)
    assert loader.load_code_bundle(bundle) == 4
