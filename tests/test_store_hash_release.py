"""Hashing a memory-mapped file leaves no view of the mapping behind.

A pool thread can keep its work item (and with it a leaf's memoryview) for a moment after
the future's result is in; under load that made `mmap.close()` in `hash_file` fail with
"BufferError: cannot close exported pointers exist" — seen as the course's sklearn fan-out
failing in a tuning block while its training set was verified. Here a pool that keeps every
argument forever makes that moment permanent.
"""
from __future__ import annotations

import mmap
from concurrent.futures import Future

import fsspec

from blockyard.store import hashing


class _HoardingPool:
    """Runs each job at once and keeps its arguments, as a slow worker thread would."""

    def __init__(self) -> None:
        self.kept: list = []

    def submit(self, fn, *args):
        self.kept.append(args)
        fut: Future = Future()
        fut.set_result(fn(*args))
        return fut


def test_hash_file_closes_its_mapping_while_pool_threads_still_hold_leaves(tmp_path, monkeypatch):
    pool = _HoardingPool()
    monkeypatch.setattr(hashing, "_executor", lambda: pool)
    monkeypatch.setattr(hashing, "LEAF_SIZE", 1 << 16)  # small leaves: same code, less I/O
    data = bytes(range(256)) * (3 * hashing.LEAF_SIZE // 256 + 7)  # 4 leaves
    path = tmp_path / "blob"
    path.write_bytes(data)

    digest, size = hashing.hash_file(fsspec.filesystem("file"), str(path), True)

    assert size == len(data) and len(pool.kept) == 4
    assert digest == hashing.hash_buffer(data)  # same tree digest as from bytes


def test_hash_buffer_releases_every_view_of_an_mmap(tmp_path, monkeypatch):
    pool = _HoardingPool()
    monkeypatch.setattr(hashing, "_executor", lambda: pool)
    monkeypatch.setattr(hashing, "LEAF_SIZE", 1 << 16)
    path = tmp_path / "blob"
    path.write_bytes(b"x" * (2 * hashing.LEAF_SIZE + 1))
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        hashing.hash_buffer(mapped)
        mapped.close()  # raised BufferError while a leaf view was alive
    assert mapped.closed
