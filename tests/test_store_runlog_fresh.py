"""An inline save looks for a node folder to replace only when one can exist: not in a
run folder this process made (for its log) and made no node folder in since. Real
files, real processes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import blockyard.store.writer as writer_mod
from blockyard.store import ArtifactStore

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
