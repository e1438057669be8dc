"""During a run's loop the objects that existed before it are set aside from the cyclic
garbage collector (engine/heap.py), and handed back when the loop ends — also when a
block fails or the loop raises."""
from __future__ import annotations

import gc

import pytest

import blockyard
from wsbuilder import block, write_pipeline


@pytest.fixture
def ws(tmp_path, monkeypatch):
    for var in ("BLOCKYARD_DATABASE_URL", "BLOCKYARD_HOME"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "ws"
    root.mkdir()
    write_pipeline(root, "proj", "p", [
        block("seen", "import gc\n@custom\ndef seen():\n    return gc.get_freeze_count()\n"),
        block("boom", "@custom\ndef boom(n):\n    raise RuntimeError('x')\n", upstream=["seen"]),
    ])
    return root


def test_older_objects_are_set_aside_only_while_the_loop_runs(ws):
    gc.unfreeze()
    before = len(gc.get_objects())
    result = blockyard.run_pipeline("proj/p", workspace=ws)
    assert not result.ok  # `boom` failed: the objects are handed back all the same
    assert result.output("seen") >= before // 2  # the process's objects were set aside
    assert gc.get_freeze_count() == 0


def test_garbage_made_during_a_run_is_collected(ws):
    class Cycle:
        pass

    def make() -> None:
        a, b = Cycle(), Cycle()
        a.other, b.other = b, a

    gc.unfreeze()
    make()  # garbage from before the run: set aside during it, collected after
    blockyard.run_pipeline("proj/p", workspace=ws)
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, Cycle)]
