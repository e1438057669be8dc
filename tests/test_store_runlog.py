"""The run's log of inline manifests: a local store saves a node whose outputs are all
inline JSON as one line of runs/<run>/inline+manifests.jsonl (no node folder). Real
files and real processes throughout."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from blockyard.errors import StoreError
from blockyard.store import ArtifactStore, CorruptOutputError, quote_name
from blockyard.store.runlog import LOG

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "outputs")


def _run_dir(store, run_id) -> Path:
    return Path(store.run_path(run_id))


def _lines(store, run_id) -> list[bytes]:
    return Path(store.log_path(run_id)).read_bytes().split(b"\n")


def _in_child(root, code: str) -> str:
    """Run `code` with `store` = ArtifactStore(root) in a new Python process (its own
    descriptors and index); return what it prints."""
    prog = f"from blockyard.store import ArtifactStore\nstore = ArtifactStore({str(root)!r})\n{code}"
    out = subprocess.run(
        [sys.executable, "-c", prog], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(SRC)}
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_thousand_inline_nodes_make_one_log_and_no_folders(store):
    values = [None, 7, 2.5, "text", {"k": [1, 2]}, [], True]
    for i in range(1000):
        store.save_outputs(1, f"b{i}", [values[i % len(values)]])
    assert os.listdir(_run_dir(store, 1)) == [LOG]
    assert len([line for line in _lines(store, 1) if line]) == 1000
    assert store.node_uuids(1) == sorted(f"b{i}" for i in range(1000))
    for i in range(1000):
        assert store.has_outputs(1, f"b{i}")
        assert store.load_outputs(1, f"b{i}") == [values[i % len(values)]]
    store.verify_outputs(1, "b999")
    assert store.run_ids() == [1]


def test_each_line_is_the_manifest_json_a_folder_would_hold(store, tmp_path):
    outputs = [None, 42, "x" * 300, {"a": [1, 2]}, 1.5]
    m = store.save_outputs(3, "a/b:c", outputs)
    assert m.source == store.log_path(3)
    line = _lines(store, 3)[0]
    assert line == json.dumps(m.to_dict(), separators=(",", ":"), default=str, allow_nan=False).encode()
    assert store.manifest(3, "a/b:c") == m
    # the same outputs on a store with folders (memory://): the same manifest and digest
    memory = ArtifactStore(f"memory://blockyard-runlog-{uuid.uuid4().hex}")
    folder = memory.save_outputs(3, "a/b:c", outputs)
    assert folder.digest == m.digest and folder.outputs == m.outputs


def test_mixed_inline_and_file_nodes(store):
    store.save_outputs(2, "inline/one", [1, "two"])
    store.save_outputs(2, "file", [(1, 2)])  # a tuple is not JSON: a pickle file
    store.save_outputs(2, "both", [3, (4,)])  # one file output: the whole node is a folder
    store.save_outputs(2, "empty", [])
    assert sorted(os.listdir(_run_dir(store, 2))) == ["both", "file", LOG]
    assert store.node_uuids(2) == ["both", "empty", "file", "inline/one"]
    assert store.load_outputs(2, "inline/one") == [1, "two"]
    assert store.load_outputs(2, "file") == [(1, 2)]
    assert store.load_outputs(2, "both") == [3, (4,)]
    assert store.load_outputs(2, "empty") == []
    assert store.manifest(2, "both").source == store.manifest_path(2, "both")
    with pytest.raises(StoreError, match="stored inline") as info:
        store.output_path(2, "inline/one", 0)
    assert info.value.file == store.log_path(2)


def test_a_line_cut_by_a_crash_is_ignored(store, tmp_path):
    for i in range(5):
        store.save_outputs(1, f"a{i}", [i])
    log = Path(store.log_path(1))
    # a crash while appending a5: half its line, no newline
    cut = json.dumps({"format": 1, "run_id": 1, "node_uuid": "a5", "digest": "d", "outputs": []})[:40]
    with open(log, "ab") as f:
        f.write(cut.encode())
    assert store.manifest(1, "a5") is None
    assert store.node_uuids(1) == [f"a{i}" for i in range(5)]
    assert store.load_outputs(1, "a4") == [4]
    # this process's descriptor writes right after the cut bytes: its line still counts
    store.save_outputs(1, "a6", [6])
    assert store.load_outputs(1, "a6") == [6] and store.manifest(1, "a5") is None
    # a garbled line in the middle is skipped too
    with open(log, "ab") as f:
        f.write(b"\x00\x00 not json\n")
    store.save_outputs(1, "a2", ["again"])
    assert store.load_outputs(1, "a2") == ["again"]
    assert store.node_uuids(1) == ["a0", "a1", "a2", "a3", "a4", "a6"]
    # a new process (after the crash) first ends the cut line, then appends whole lines
    for i in range(3):
        store.save_outputs(2, f"b{i}", [i])
    log2 = Path(store.log_path(2))
    with open(log2, "ab") as f:
        f.write(cut.encode())
    whole = log2.read_bytes()
    assert _in_child(tmp_path / "outputs", "store.save_outputs(2, 'b3', [3]); print(store.load_outputs(2, 'b3'))") == "[3]"
    assert log2.read_bytes() == whole + b"\n" + _lines(store, 2)[-2] + b"\n"
    assert store.load_outputs(2, "b3") == [3] and store.node_uuids(2) == ["b0", "b1", "b2", "b3"]


def test_a_log_truncated_by_a_crash_keeps_its_whole_lines(store):
    for i in range(3):
        store.save_outputs(1, f"n{i}", [i])
    assert store.node_uuids(1) == ["n0", "n1", "n2"]  # indexed before the truncation
    log = store.log_path(1)
    os.truncate(log, os.path.getsize(log) - 10)
    assert store.node_uuids(1) == ["n0", "n1"]
    assert store.manifest(1, "n2") is None and store.load_outputs(1, "n1") == [1]


def _append_many(root, run_id, worker, count, start):
    store = ArtifactStore(root)
    start.wait(30)
    for i in range(count):
        store.save_outputs(run_id, f"w{worker}/{i}", [{"worker": worker, "i": i, "pad": "x" * (i % 300)}])


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_two_processes_append_to_one_log(store, tmp_path):
    root = str(tmp_path / "outputs")
    store.save_outputs(4, "parent", [0])  # the parent holds the log open across the fork
    ctx = mp.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_append_many, args=(root, 4, w, 500, start)) for w in (0, 1)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store.save_outputs(4, "parent/after", [1])
    lines = [line for line in _lines(store, 4) if line]
    assert len(lines) == 1002
    assert all(json.loads(line)["outputs"] for line in lines)  # every line whole
    assert len(store.node_uuids(4)) == 1002
    for w in (0, 1):
        for i in range(500):
            assert store.load_output(4, f"w{w}/{i}", 0) == {"worker": w, "i": i, "pad": "x" * (i % 300)}
    assert os.listdir(_run_dir(store, 4)) == [LOG]


def test_threads_append_to_one_log(store):
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: store.save_outputs(5, f"t{i}", [i, str(i)]), range(400)))
    assert len(store.node_uuids(5)) == 400
    assert all(store.load_outputs(5, f"t{i}") == [i, str(i)] for i in range(400))


@pytest.mark.parametrize(
    "order",
    [["inline", "file", "inline"], ["file", "inline", "file"], ["inline", "inline", "file", "file", "inline"]],
    ids="-".join,
)
def test_saving_a_node_again_reads_back_the_latest(store, tmp_path, order):
    root = tmp_path / "outputs"
    for step, kind in enumerate(order):
        value = step if kind == "inline" else (step,)
        m = store.save_outputs(1, "n", [value])
        assert (m.outputs[0]["file"] is None) == (kind == "inline")
        assert store.load_outputs(1, "n") == [value]
        assert store.manifest(1, "n").digest == m.digest
        store.verify_outputs(1, "n")
        assert store.node_uuids(1) == ["n"]
        # an inline save removes the folder of an earlier one; a file save makes it
        assert os.path.isdir(store.node_path(1, "n")) == (kind == "file")
        assert _in_child(root, "print(store.load_outputs(1, 'n'))") == repr([value])


def test_saves_of_another_process_are_seen(store, tmp_path):
    # a resume or retry in a new process writes the node again; this process has the log
    # indexed already
    root = tmp_path / "outputs"
    store.save_outputs(1, "n", ["first"])
    store.save_outputs(1, "other", [0])
    assert store.load_outputs(1, "n") == ["first"]
    _in_child(root, "store.save_outputs(1, 'n', [(1,)])")
    assert store.load_outputs(1, "n") == [(1,)]
    _in_child(root, "store.save_outputs(1, 'n', ['third'])")
    assert store.load_outputs(1, "n") == ["third"]
    assert store.load_outputs(1, "other") == [0]


def test_a_failed_folder_save_hides_the_logged_outputs(store):
    store.save_outputs(1, "n", ["previous"])

    def gen():
        yield 1

    with pytest.raises(StoreError):
        store.save_outputs(1, "n", [(1,), gen()])
    assert not store.has_outputs(1, "n") and store.manifest(1, "n") is None
    assert store.node_uuids(1) == []
    assert json.loads(_lines(store, 1)[-2])["deleted"] is True  # the tombstone


def test_newest_of_folder_and_log_wins_and_a_tie_goes_to_the_folder(store):
    # A folder manifest written by another writer (older code, another process) next to
    # a line of the log: created_at decides.
    logged = store.save_outputs(1, "n", ["logged"])
    memory = ArtifactStore(f"memory://blockyard-runlog-{uuid.uuid4().hex}")
    data = memory.save_outputs(1, "n", ["folder"]).to_dict()
    os.makedirs(store.node_path(1, "n"))
    for created_at, expected in [(logged.created_at - 1, "logged"), (logged.created_at, "folder"), (logged.created_at + 1, "folder")]:
        data["created_at"] = created_at
        Path(store.manifest_path(1, "n")).write_text(json.dumps(data))
        assert store.load_outputs(1, "n") == [expected]
    assert store.node_uuids(1) == ["n"]


def test_stores_written_before_the_log_read_unchanged(store):
    # Old code wrote inline outputs to node folders, as memory:// stores still do.
    memory = ArtifactStore(f"memory://blockyard-runlog-{uuid.uuid4().hex}")
    for node, value in [("a", None), ("b/c", {"k": 1}), ("x" * 300, "long")]:
        memory.save_outputs(6, node, [value])
        os.makedirs(store.node_path(6, node))
        Path(store.manifest_path(6, node)).write_bytes(memory.fs.cat_file(memory.manifest_path(6, node)))
    assert not os.path.exists(store.log_path(6))
    assert store.node_uuids(6) == ["a", "b/c", "x" * 300]
    assert store.load_outputs(6, "b/c") == [{"k": 1}] and store.load_output(6, "x" * 300, 0) == "long"
    assert store.has_outputs(6, "a") and store.manifest(6, "a").source == store.manifest_path(6, "a")
    store.verify_outputs(6, "a")
    store.save_outputs(6, "a", [1])  # a new inline save of an old node: the log takes over
    assert store.load_outputs(6, "a") == [1] and not os.path.exists(store.node_path(6, "a"))


def test_a_changed_inline_value_in_the_log_is_detected(store):
    store.save_outputs(1, "train/model", [42, "ok"])
    store.save_outputs(1, "other", [1])
    assert store.load_outputs(1, "train/model") == [42, "ok"]  # the log is indexed now
    log = Path(store.log_path(1))
    text = log.read_text()
    assert text.count('"inline":"42"') == 1
    mtime = os.stat(log).st_mtime_ns
    log.write_text(text.replace('"inline":"42"', '"inline":"43"'))  # same size: changed in place
    os.utime(log, ns=(mtime + 10**9, mtime + 10**9))  # a later change (mtime ticks are coarse)
    with pytest.raises(CorruptOutputError) as info:
        store.verify_outputs(1, "train/model")
    err = info.value
    assert "train/model" in err.message and "run 1" in err.message and "output_0" in err.message
    assert err.file == str(log)
    with pytest.raises(CorruptOutputError):
        store.load_outputs(1, "train/model")
    store.verify_outputs(1, "other")


def test_delete_run_and_clean_remove_the_log(store):
    for run in (1, 2, 3):
        store.save_outputs(run, "n", [run])
    assert store.delete_run(1) is True and not _run_dir(store, 1).exists()
    assert not store.has_outputs(1, "n") and store.node_uuids(1) == []
    store.save_outputs(1, "again", ["new"])  # the run comes back with a new log
    assert store.node_uuids(1) == ["again"] and store.load_outputs(1, "again") == ["new"]
    old = time.time() - 7200
    os.utime(store.log_path(2), (old, old))
    assert store.clean(older_than_seconds=3600) == 1
    assert store.run_ids() == [1, 3]
    # removed by another process while this one holds the log open: saves recreate it
    shutil.rmtree(_run_dir(store, 3))
    store.save_outputs(3, "mm", [55])
    assert store.node_uuids(3) == ["mm"] and store.load_outputs(3, "mm") == [55]
    assert store.clean(run_ids=[1, 3]) == 2 and store.run_ids() == []


def test_memory_store_keeps_node_folders():
    store = ArtifactStore(f"memory://blockyard-runlog-{uuid.uuid4().hex}")
    m = store.save_outputs(7, "a/b", [None, 1])
    assert m.source == store.manifest_path(7, "a/b")
    assert store.fs.exists(f"{store.root}/runs/7/a%2Fb/manifest.json")
    assert not store.fs.exists(f"{store.root}/runs/7/{LOG}")
    assert store.node_uuids(7) == ["a/b"] and store.load_outputs(7, "a/b") == [None, 1]


def test_the_log_name_is_never_a_node_folder_name(store):
    assert quote_name(LOG) != LOG
    store.save_outputs(1, LOG, [1])
    store.save_outputs(1, f"{LOG}/file", [(2,)])
    store.save_outputs(1, LOG + "x", [(3,)])
    assert store.node_uuids(1) == [LOG, f"{LOG}/file", LOG + "x"]
    assert store.load_outputs(1, LOG) == [1] and store.load_outputs(1, LOG + "x") == [(3,)]


def test_fsync_flushes_the_log(tmp_path, monkeypatch):
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd))[1])
    store = ArtifactStore(tmp_path / "outputs", fsync=True)
    store.save_outputs(1, "a", [1])
    assert len(calls) == 2  # the run folder (the log's new name in it), the log
    store.save_outputs(1, "b", [2])
    assert len(calls) == 3
    assert store.load_outputs(1, "b") == [2]


def test_an_unwritable_log_is_a_store_error_naming_it(store):
    os.makedirs(store.log_path(9))  # something else took the name
    with pytest.raises(StoreError) as info:
        store.save_outputs(9, "n", [1])
    assert info.value.file == store.log_path(9) and "'n'" in str(info.value) and "run 9" in str(info.value)


def test_long_lines_are_read_back_from_the_log(store):
    big = {"k": "v" * 15_000}  # inline (under 16 KiB), a line longer than the index keeps
    store.save_outputs(1, "big", [big, "x" * 9000])
    store.save_outputs(1, "small", [1])
    assert os.listdir(_run_dir(store, 1)) == [LOG]
    assert store.load_outputs(1, "big") == [big, "x" * 9000]
    store.verify_outputs(1, "big")
    assert store.node_uuids(1) == ["big", "small"]
    store.save_outputs(1, "big", [2])
    assert store.load_outputs(1, "big") == [2]
