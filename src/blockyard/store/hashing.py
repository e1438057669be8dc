"""Content digests of output files: XXH3-128 leaves under a BLAKE2b root.

A file is cut into 32 MiB leaves; each leaf is hashed with XXH3-128 (about 15 GB/s,
twenty times BLAKE2b: hashing a 440 MB frame costs ~30 ms instead of ~600 ms), seeded
with the leaf's index and whether it is the last one, and a BLAKE2b root hashes the
leaf digests. The digest is a function of the file's bytes only (it detects changed
data for the cache; it is not meant to resist a deliberate collision), and the leaves
of a large file can be hashed on several cores at once. Every path (local, remote,
while-writing) gives the same value.

`hash_file` reads a written file once (memory-mapped locally). `FollowingHasher` hashes a
local file *while* another thread appends to it, so writing a large Arrow file and
hashing it overlap instead of adding up. It is only used by writers that write strictly
sequentially (never seek back), and it checks that it hashed exactly the final size.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

DIGEST_SIZE = 32
LEAF_SIZE = 32 << 20
FOLLOW_MIN_BYTES = 64 << 20  # below this a helper thread is not worth it

_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """Shared hashing threads (hashlib releases the GIL on large buffers). Re-created
    after a fork: a child cannot use its parent's threads."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            workers = max(1, min(4, os.cpu_count() or 1))
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blockyard-hash")
            _pool_pid = os.getpid()
        return _pool


def _leaf_hasher(index: int, last: bool) -> Any:
    import xxhash

    return xxhash.xxh3_128(seed=index * 2 + (1 if last else 0))


def _root(leaf_digests: list[bytes]) -> str:
    h = hashlib.blake2b(
        digest_size=DIGEST_SIZE,
        fanout=0,
        depth=2,
        leaf_size=LEAF_SIZE,
        node_offset=0,
        node_depth=1,
        inner_size=DIGEST_SIZE,
        last_node=True,
    )
    for d in leaf_digests:
        h.update(d)
    return h.hexdigest()


def leaf_count(size: int) -> int:
    return max(1, -(-size // LEAF_SIZE))


def _hash_leaf(data: Any, index: int, last: bool) -> bytes:
    h = _leaf_hasher(index, last)
    h.update(data)
    return h.digest()


def new_hash() -> Any:
    """Plain BLAKE2b (32 bytes), for combining per-file digests."""
    return hashlib.blake2b(digest_size=DIGEST_SIZE)


def hash_buffer(buf: Any) -> str:
    """Tree digest of an in-memory buffer (bytes, memoryview, mmap)."""
    # Every view is released before returning: a pool thread may still hold its work item
    # (and so a leaf view) for a moment after the result is in, and a live view of an
    # mmap makes the caller's mmap.close() fail ("cannot close exported pointers exist").
    with memoryview(buf) as raw, raw.cast("B") as view:
        n = leaf_count(len(view))
        if n == 1:
            return _root([_hash_leaf(view, 0, True)])
        pool = _executor()
        leaves = [view[k * LEAF_SIZE : (k + 1) * LEAF_SIZE] for k in range(n)]
        futures = [pool.submit(_hash_leaf, leaf, k, k == n - 1) for k, leaf in enumerate(leaves)]
        try:
            return _root([f.result() for f in futures])
        finally:
            wait(futures)  # none still reading a leaf when it is released
            for leaf in leaves:
                leaf.release()


def hash_file(fs: Any, path: str, local: bool) -> tuple[str, int]:
    """(hex digest, size) of one file, reading it once."""
    if local:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return hash_buffer(b""), 0
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                try:
                    return hash_buffer(view), size
                finally:
                    view.release()
    # remote: stream leaf by leaf; a leaf is "last" when nothing follows it
    digests: list[bytes] = []
    size = 0
    with fs.open(path, "rb") as f:
        current = _read_full(f, LEAF_SIZE)
        while True:
            following = _read_full(f, LEAF_SIZE) if len(current) == LEAF_SIZE else b""
            last = not following
            digests.append(_hash_leaf(current, len(digests), last))
            size += len(current)
            if last:
                break
            current = following
    return _root(digests), size


def _read_full(f: Any, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = f.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


class FollowingHasher:
    """Hash a local file on background threads while it is being appended to.

        hasher = FollowingHasher(path)   # after the writer has created the file
        ... write ...
        digest, size = hasher.finish()   # after the writer has closed it

    A watcher thread polls the file size; each 32 MiB leaf is handed to the hashing pool
    as soon as the file has grown past it (so it is known not to be the last leaf). Bytes
    below the file's size are final on a local POSIX filesystem (the kernel updates the
    size after copying the data) and the writers that use this only append, so the digest
    equals hash_file() of the finished file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        self._pool = _executor()
        self._futures: list[Future] = []
        self._final: int | None = None
        self._stop = False
        self._wake = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._watch, name="blockyard-hash-watch", daemon=True)
        self._thread.start()

    def _leaf(self, index: int, length: int, last: bool) -> bytes:
        if length == 0:
            return _hash_leaf(b"", index, last)
        offset = index * LEAF_SIZE  # a multiple of the page size
        with mmap.mmap(self._fd, length, access=mmap.ACCESS_READ, offset=offset) as mapped:
            view = memoryview(mapped)
            try:
                return _hash_leaf(view, index, last)
            finally:
                view.release()

    def _submit_ready(self, size: int, final: bool) -> None:
        while True:
            k = len(self._futures)
            start = k * LEAF_SIZE
            if final:
                n = leaf_count(size)
                if k >= n:
                    return
                length = min(LEAF_SIZE, size - start)
                self._futures.append(self._pool.submit(self._leaf, k, length, k == n - 1))
            elif size > start + LEAF_SIZE:  # a byte past this leaf exists: not the last one
                self._futures.append(self._pool.submit(self._leaf, k, LEAF_SIZE, False))
            else:
                return

    def _watch(self) -> None:
        try:
            while not self._stop and self._final is None:
                self._submit_ready(os.fstat(self._fd).st_size, final=False)
                self._wake.wait(0.002)
                self._wake.clear()
        except BaseException as exc:  # reported by finish()
            self._error = exc

    def finish(self) -> tuple[str, int]:
        size = os.fstat(self._fd).st_size
        self._final = size
        self._wake.set()
        self._thread.join()
        try:
            if self._error is not None:
                raise self._error
            self._submit_ready(size, final=True)
            digests = [f.result() for f in self._futures]
        finally:
            os.close(self._fd)
        if len(digests) != leaf_count(size):
            raise OSError(f"hashed {len(digests)} leaves of {self.path}, expected {leaf_count(size)}")
        return _root(digests), size

    def abort(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join()
        for f in self._futures:
            f.cancel()
        for f in self._futures:
            if not f.cancelled():
                try:
                    f.result()
                except Exception:
                    pass
        try:
            os.close(self._fd)
        except OSError:
            pass


class HashWhileWriting:
    """A `FollowingHasher` around one write, for the writers that hash large files as
    they write them:

        with HashWhileWriting() as hashed:
            with open(path, "wb") as f:          # the file exists from here on
                hashed.follow(path, big_enough)  # no-op unless big_enough
                ... write ...
        return hashed.result                     # {"blake2b", "bytes"}, or None: the store hashes

    A failed write aborts the hasher and the error propagates."""

    def __init__(self) -> None:
        self._hasher: FollowingHasher | None = None
        self.result: dict | None = None

    def follow(self, path: str, when: bool = True) -> None:
        if when:
            self._hasher = FollowingHasher(path)

    def __enter__(self) -> "HashWhileWriting":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._hasher is None:
            return
        if exc_type is not None:
            self._hasher.abort()
            return
        digest, size = self._hasher.finish()
        self.result = {"blake2b": digest, "bytes": size}
