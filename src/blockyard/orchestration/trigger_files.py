"""triggers.yaml on disk: locked read-modify-write, restore on error, change signatures."""
from __future__ import annotations

import contextlib
import hashlib
import os
import secrets as _secrets
import threading
from pathlib import Path
from typing import Any, Iterator

_file_locks: dict[str, threading.RLock] = {}
_file_locks_guard = threading.Lock()
_signatures: dict[tuple[str, str], tuple] = {}
_signatures_guard = threading.Lock()


def _signature(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@contextlib.contextmanager
def _locked(path: Path, lock_dir: Path) -> Iterator[None]:
    """Serialize read-modify-write of one triggers.yaml (threads, and processes via flock)."""
    key = str(path)
    with _file_locks_guard:
        tlock = _file_locks.setdefault(key, threading.RLock())
    with tlock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        lock_dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1(key.encode()).hexdigest()[:16] + ".lock"
        with open(lock_dir / name, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_file(path: Path) -> dict:
    from blockyard.errors import ProjectError
    from blockyard.project.yaml_io import read_mapping

    doc = read_mapping(path, "triggers file", missing_ok=True)
    data = doc.data
    triggers = data.get("triggers")
    if triggers is None:
        triggers = []
    if not isinstance(triggers, list) or not all(isinstance(t, dict) for t in triggers):
        raise ProjectError("'triggers' must be a list of mappings", file=path, line=doc.line_of("triggers"))
    data["triggers"] = triggers
    return data


def _write_file(path: Path, data: dict) -> None:
    from blockyard.project.yaml_io import write_yaml

    write_yaml(path, data)  # temp file + os.replace: readers see the old or the new file


@contextlib.contextmanager
def _restored_on_error(path: Path) -> Iterator[None]:
    """A trigger's file and its row change together or not at all: when the table
    refuses the change made inside this block, the file is put back as it was."""
    try:
        old: bytes | None = path.read_bytes()
    except FileNotFoundError:
        old = None
    try:
        yield
    except BaseException:
        if old is None:
            path.unlink(missing_ok=True)
        else:
            tmp = path.with_name(f".{path.name}.{_secrets.token_hex(5)}.restore")
            tmp.write_bytes(old)
            os.replace(tmp, path)
        raise


def _remember_signature(db: Any, path: Path) -> None:
    key = (db.url.render_as_string(hide_password=True), str(path))
    with _signatures_guard:
        _signatures.pop(key, None)
