"""Content digests of output files (BLAKE2b, 32-byte).

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
from typing import Any

DIGEST_SIZE = 32
_CHUNK = 8 << 20
FOLLOW_MIN_BYTES = 32 << 20  # below this a helper thread is not worth it


def new_hash() -> Any:
    return hashlib.blake2b(digest_size=DIGEST_SIZE)


def hash_file(fs: Any, path: str, local: bool) -> tuple[str, int]:
    """(hex digest, size) of one file, reading it once."""
    h = new_hash()
    if local:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size:
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                    h.update(mapped)
        return h.hexdigest(), size
    size = 0
    with fs.open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            h.update(chunk)
    return h.hexdigest(), size


class FollowingHasher:
    """Hash a local file in a background thread while it is being appended to.

        hasher = FollowingHasher(path)   # after the writer has created the file
        ... write ...
        digest, size = hasher.finish()   # after the writer has closed it

    Bytes below the file's size are final on a local POSIX filesystem (the kernel
    updates the size after copying the data), and the writers that use this only
    append, so the digest equals hash_file() of the finished file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._h = new_hash()
        self._fd = os.open(path, os.O_RDONLY)
        self._final: int | None = None
        self._stop = False
        self._wake = threading.Event()
        self._pos = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="blockyard-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf = memoryview(bytearray(_CHUNK))
        try:
            while not self._stop:
                final = self._final
                limit = final if final is not None else os.fstat(self._fd).st_size
                if self._pos < limit:
                    want = min(_CHUNK, limit - self._pos)
                    n = os.preadv(self._fd, [buf[:want]], self._pos)
                    if n <= 0:
                        raise OSError(f"{self.path} shrank while being hashed")
                    self._h.update(buf[:n])
                    self._pos += n
                    continue
                if final is not None:
                    return
                self._wake.wait(0.002)
                self._wake.clear()
        except BaseException as exc:  # reported by finish()
            self._error = exc

    def finish(self) -> tuple[str, int]:
        size = os.path.getsize(self.path)
        self._final = size
        self._wake.set()
        self._thread.join()
        os.close(self._fd)
        if self._error is not None:
            raise self._error
        if self._pos != size:
            raise OSError(f"hashed {self._pos} of {size} bytes of {self.path}")
        return self._h.hexdigest(), size

    def abort(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join()
        try:
            os.close(self._fd)
        except OSError:
            pass
