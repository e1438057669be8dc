"""The in-process caches of file contents (a block's source, the cache key's content scan)
must never hand back a file's old content after a rewrite, nor read a settled file twice."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from blockyard.engine import cache, loader

HOUR_NS = 3_600 * 10**9


class _Stat:
    """A real stat of a file with some of its timestamps replaced."""

    def __init__(self, real: os.stat_result, **times: int) -> None:
        self._real = real
        self.__dict__.update(times)

    def __getattr__(self, name: str):
        return getattr(self._real, name)


def _pin_stat(monkeypatch, path: Path, times) -> None:
    """os.stat of `path` reports the timestamps `times(real stat)` gives."""
    real_stat = os.stat

    def stat(p, *args, **kwargs):
        st = real_stat(p, *args, **kwargs)
        return _Stat(st, **times(st)) if os.fspath(p) == os.fspath(path) else st

    monkeypatch.setattr(os, "stat", stat)


def _coarse_clock(monkeypatch, path: Path) -> None:
    """The file's filesystem clock does not tick from now on: a rewrite keeps mtime and
    ctime. (User code can pin mtime with os.utime, never ctime; only a coarse clock keeps
    ctime, and this kernel's clock is too fine to race in a test.)"""
    first = os.stat(path)
    _pin_stat(monkeypatch, path, lambda st: {"st_mtime_ns": first.st_mtime_ns, "st_ctime_ns": first.st_ctime_ns})


def _rewrite_same_size_same_mtime(path: Path, text: str) -> None:
    before = path.stat()
    assert len(text.encode()) == before.st_size
    with open(path, "r+", encoding="utf-8") as fh:  # in place: same inode
        fh.write(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


@pytest.mark.parametrize("coarse", [False, True], ids=["fine-clock", "coarse-clock"])
def test_scan_sees_a_rewrite_with_the_same_size_and_mtime(tmp_path, monkeypatch, coarse):
    path = tmp_path / "helpers.py"
    path.write_text("import aaa\n", encoding="utf-8")
    if coarse:
        _coarse_clock(monkeypatch, path)
    first = cache.file_digest(path)
    assert cache._scan(path)[1] == [(0, "aaa", ())]
    _rewrite_same_size_same_mtime(path, "import bbb\n")
    assert cache._scan(path)[1] == [(0, "bbb", ())]
    assert cache.file_digest(path) != first
    _rewrite_same_size_same_mtime(path, "import aaa\n")
    assert cache.file_digest(path) == first


@pytest.mark.parametrize("coarse", [False, True], ids=["fine-clock", "coarse-clock"])
def test_read_source_sees_a_rewrite_with_the_same_size_and_mtime(tmp_path, monkeypatch, coarse):
    path = tmp_path / "block.py"
    path.write_text("x = 1\n", encoding="utf-8")
    if coarse:
        _coarse_clock(monkeypatch, path)
    source, code_hash = loader.read_source(path)
    assert source == "x = 1\n"
    _rewrite_same_size_same_mtime(path, "x = 2\n")
    again, again_hash = loader.read_source(path)
    assert again == "x = 2\n" and again_hash != code_hash


def test_a_settled_file_is_read_once(tmp_path, monkeypatch):
    # The rule must not turn the caches off: a file last changed an hour ago is read once.
    path = tmp_path / "old.py"
    path.write_text("import aaa\n", encoding="utf-8")
    _pin_stat(monkeypatch, path, lambda st: {"st_mtime_ns": st.st_mtime_ns - HOUR_NS, "st_ctime_ns": st.st_ctime_ns - HOUR_NS})
    reads = []
    real_read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or real_read_bytes(self))
    digest = cache.file_digest(path)
    assert cache.file_digest(path) == digest and cache._scan(path)[1] == [(0, "aaa", ())]
    assert reads == [path]
    assert loader.read_source(path) == loader.read_source(path)
    assert reads == [path, path]
