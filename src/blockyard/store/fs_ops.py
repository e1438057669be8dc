"""Filesystem operations of the artifact store: plain `os` calls on the local
filesystem (no fsspec import on the run path), fsspec's API elsewhere."""
from __future__ import annotations

import itertools
import os
import posixpath

_tmp_counter = itertools.count()
_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):  # elsewhere there is no fork to follow
    os.register_at_fork(after_in_child=_after_fork)


def _tmp_tag() -> str:
    """A name unique among concurrent writers (process id + counter; no urandom call).
    The pid is kept (and refreshed in a forked child): getpid is a system call."""
    return f"{_pid}-{next(_tmp_counter)}"


class StoreFiles:
    """Mixin of `ArtifactStore`: needs `self.fs` and `self.local`."""

    fs: object
    local: bool

    def _join(self, *parts: str) -> str:
        if self.local:
            return os.path.join(*parts)
        return posixpath.join(*parts)

    # --- small fs helpers (local fast path) ---------------------------------------------

    def _makedirs(self, path: str) -> None:
        if self.local:
            os.makedirs(path, exist_ok=True)
        else:
            self.fs.makedirs(path, exist_ok=True)

    def _exists(self, path: str) -> bool:
        return os.path.exists(path) if self.local else self.fs.exists(path)

    def _remove(self, path: str) -> None:
        try:
            if self.local:
                os.remove(path)
            else:
                self.fs.rm_file(path)
        except FileNotFoundError:
            pass

    def _listdir(self, path: str) -> list[str]:
        """Base names in a folder ([] if missing)."""
        if self.local:
            try:
                return os.listdir(path)
            except (FileNotFoundError, NotADirectoryError):
                return []
        try:
            entries = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return [posixpath.basename(e.rstrip("/")) for e in entries]

    def _isdir(self, path: str) -> bool:
        return os.path.isdir(path) if self.local else self.fs.isdir(path)

    def _mtime(self, path: str) -> float | None:
        if self.local:
            try:
                return os.stat(path).st_mtime
            except FileNotFoundError:
                return None
        try:
            return self.fs.modified(path).timestamp()
        except (FileNotFoundError, NotImplementedError, AttributeError):
            pass
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            return None
        for key in ("mtime", "LastModified", "last_modified", "updated", "created", "modified"):
            value = info.get(key)
            if value is None:
                continue
            if hasattr(value, "timestamp"):
                return value.timestamp()
            try:
                return float(value)
            except (TypeError, ValueError):
                continue
        return None

    def _fsync_file(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
