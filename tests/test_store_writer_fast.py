"""The writer's fast paths. An inline save looks for a node folder to replace only when
one can exist (not in a run folder this process made for its log and made no node folder
in since); a short scalar output's entry and its JSON are worked out once and the log line
is assembled from them. Real files, real processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import blockyard.store.writer as writer_mod
from blockyard.store import ArtifactStore
from blockyard.store.manifest import combined_digest

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "outputs")


@pytest.fixture
def unlinks(monkeypatch):
    """Paths the writer unlinks (the look for an earlier folder's manifest)."""
    seen: list[str] = []
    real = os.unlink

    def unlink(path, *a, **kw):
        seen.append(str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(writer_mod.os, "unlink", unlink)
    return seen


def test_inline_saves_in_a_run_folder_this_process_made_look_for_no_folder(store, unlinks):
    for i in range(50):
        store.save_outputs(1, f"n{i}", [i])
    # only the first save looked (the log was not open yet)
    assert len(unlinks) == 1
    assert store.node_uuids(1) == sorted(f"n{i}" for i in range(50))
    assert [store.load_outputs(1, f"n{i}") for i in range(50)] == [[i] for i in range(50)]


def test_after_a_folder_save_an_inline_save_removes_the_folder(store, unlinks):
    store.save_outputs(1, "a", [1])
    store.save_outputs(1, "n", [(1,)])  # a folder
    assert os.path.isdir(store.node_path(1, "n"))
    store.save_outputs(1, "n", ["inline"])
    assert not os.path.exists(store.node_path(1, "n"))
    assert store.load_outputs(1, "n") == ["inline"]


def test_a_run_folder_made_by_another_process_is_looked_in(store, tmp_path):
    root = tmp_path / "outputs"
    prog = f"from blockyard.store import ArtifactStore\nArtifactStore({str(root)!r}).save_outputs(1, 'n', [(1,)])"
    done = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(SRC)})
    assert done.returncode == 0, done.stderr
    assert os.path.isdir(store.node_path(1, "n"))
    store.save_outputs(1, "other", [0])  # opens the log of a run folder it did not make
    store.save_outputs(1, "n", ["inline"])
    assert not os.path.exists(store.node_path(1, "n"))
    assert store.load_outputs(1, "n") == ["inline"] and store.load_outputs(1, "other") == [0]


def test_a_deleted_and_remade_run_starts_fresh_again(store, unlinks):
    store.save_outputs(1, "a", [1])
    store.save_outputs(1, "n", [(1,)])  # a folder: the run is not fresh any more
    assert store.delete_run(1)
    unlinks.clear()
    for i in range(5):
        store.save_outputs(1, f"m{i}", [i])
    assert len(unlinks) == 1
    assert store.node_uuids(1) == [f"m{i}" for i in range(5)]


SCALARS = [None, True, False, 0, -7, 2**70, 2.5, -0.0, 1e300, "", "text", 'q"uo\\te', "ünï\u2603", "x" * 64, "y" * 65]


@pytest.mark.parametrize("run_id", [3, 12345678901234, "r/é"])
def test_log_lines_of_scalar_outputs_are_the_manifest_json(store, run_id):
    lines = []
    for i, value in enumerate(SCALARS * 2):  # the second round reuses the kept entries
        node = f"n{i}/\u00e9\"q"
        m = store.save_outputs(run_id, node, [value])
        lines.append(m)
        assert m.digest == combined_digest([dict(e) for e in m.outputs])
        assert store.manifest(run_id, node) == m
        assert store.load_outputs(run_id, node) == [value]
    raw = [line for line in open(store.log_path(run_id), "rb").read().split(b"\n") if line]
    assert raw == [
        json.dumps(m.to_dict(), separators=(",", ":"), default=str, allow_nan=False).encode() for m in lines
    ]
    # several scalar outputs in one save, and a mix with a non-scalar
    for outputs in ([1, None, "a"], [1, {"k": [1]}], [2.5]):
        m = store.save_outputs(run_id, "multi", outputs)
        assert m.digest == combined_digest([dict(e) for e in m.outputs])
        last = open(store.log_path(run_id), "rb").read().split(b"\n")[-2]
        assert last == json.dumps(m.to_dict(), separators=(",", ":"), default=str, allow_nan=False).encode()
        assert store.load_outputs(run_id, "multi") == outputs


def test_a_changed_summary_does_not_reach_a_later_save(store):
    first = store.save_outputs(1, "a", [None])
    first.outputs[0]["summary"]["type"] = "changed"
    first.outputs[0]["name"] = "changed"
    second = store.save_outputs(1, "b", [None])
    assert second.outputs[0]["summary"]["type"] == "NoneType" and second.outputs[0]["name"] == "output_0"
    assert second.digest == combined_digest([dict(e) for e in second.outputs])


def test_memory_stores_give_the_same_entries_and_digests(store):
    memory = ArtifactStore(f"memory://blockyard-fast-{os.getpid()}-{id(store)}")
    for i, value in enumerate(SCALARS):
        a, b = store.save_outputs(1, f"n{i}", [value]), memory.save_outputs(1, f"n{i}", [value])
        assert a.digest == b.digest and a.outputs == b.outputs
        assert memory.load_outputs(1, f"n{i}") == [value]
