"""The per-run log of inline manifests (local stores only).

A save whose every output is inline JSON does not make a node folder: its manifest's
JSON (what manifest.json would hold) is appended as one line to
``runs/<run_id>/inline+manifests.jsonl``. One write instead of a mkdir, a create and a
rename: those metadata operations cost 25-200 us each on ext4 and were the largest cost
of a block run.

Lines are appended with a single ``os.write`` on an O_APPEND descriptor, which Linux
keeps whole for concurrent appenders (the process and Dask executors' workers write to
one run's log). A crash can leave a last line cut short: readers skip a line that is not
JSON, and a process opening the log ends such a line first so its own line stays whole.
A ``{"deleted": true}`` line (a tombstone) hides the node's earlier lines: written when a
node that has one is saved again as a folder, so a failed folder save leaves it unsaved.

Readers index the log once per process and then parse only what was appended since.
"""
from __future__ import annotations

import json
import os
import threading
from typing import Any

# '+' is quoted to %2B in every node folder name (manifest.quote_name), so no node
# folder can ever have this name.
LOG = "inline+manifests.jsonl"

_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_FDS_MAX = 16  # open logs per process (a process writes one run or a few at a time)
_INDEXES_MAX = 16  # indexed logs per process
_START = b'{"format":'  # how every line starts (manifest.to_dict's first key)
_KEEP_MAX = 4096  # longer lines are read again when asked for, not kept in the index

_fds: dict[str, int] = {}  # log path -> descriptor
# Logs whose run folder this process made when it opened them, and in whose run it has
# made no node folder since: no node of the run has a folder to replace (see `fresh`).
_fresh: set[str] = set()
_indexes: dict[str, "_Index"] = {}  # log path -> what its lines say
_lock = threading.Lock()  # guards _fds
_index_lock = threading.Lock()  # guards _indexes (a long parse does not hold up appends)


def _after_fork() -> None:
    """A forked child opens its own descriptors (the parent's may be closed or evicted
    under it) and takes fresh locks (another thread of the parent may have held one)."""
    global _lock, _index_lock
    _lock = threading.Lock()
    _index_lock = threading.Lock()
    for fd in _fds.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _fds.clear()
    _fresh.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


# --- writing ---------------------------------------------------------------------------


def append(path: str, line: bytes, fsync: bool) -> None:
    """Append one line (ending in b"\\n") to the log at `path`, creating it and its run
    folder when missing. Raises OSError."""
    with _lock:
        fd = _fds.get(path)
        if fd is not None and os.fstat(fd).st_nlink == 0:  # the run was deleted meanwhile
            _close(path)
            fd = None
        if fd is None:
            fd = _open(path, fsync)
        written = os.write(fd, line)
        if written != len(line):  # disk full: end the cut line so later lines stay whole
            os.write(fd, b"\n")
            raise OSError(f"short write to {path} ({written} of {len(line)} bytes)")
        if fsync:
            fd = os.dup(fd)  # fsync outside the lock; the cached one may be evicted meanwhile
    if fsync:
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fresh(path: str) -> bool:
    """True while no node of the log's run can have a folder: this process made the run
    folder as it opened the log and has made no node folder in it since (the engine saves
    a node once per run, so another process's folders are of other nodes). A save then
    has no folder to look for before appending its line."""
    return path in _fresh


def folder_made(path: str) -> None:
    """A node folder is about to be made in the run of the log at `path`."""
    _fresh.discard(path)


def _open(path: str, fsync: bool) -> int:
    run_dir = os.path.dirname(path)
    made = False
    try:
        fd = os.open(path, _FLAGS, 0o666)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(run_dir), exist_ok=True)
        try:
            os.mkdir(run_dir)
            made = True
        except FileExistsError:  # made meanwhile (another process, a folder save)
            pass
        fd = os.open(path, _FLAGS, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size:
            os.lseek(fd, size - 1, os.SEEK_SET)  # reading only: writes go to the end (O_APPEND)
            if os.read(fd, 1) != b"\n":  # a line cut by a crash
                os.write(fd, b"\n")
        if fsync:  # the log's name in its folder survives power loss too
            dir_fd = os.open(run_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except BaseException:
        os.close(fd)
        raise
    if len(_fds) >= _FDS_MAX:
        _close(next(iter(_fds)))
    _fds[path] = fd
    if made:
        _fresh.add(path)
    return fd


def _close(path: str) -> None:
    _fresh.discard(path)  # reopened later, the run folder is not new any more
    fd = _fds.pop(path, None)
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def tombstone(run_id, node_uuid: str, created_at: float) -> bytes:
    data = {"format": 1, "run_id": run_id, "node_uuid": node_uuid, "deleted": True, "created_at": created_at}
    return json.dumps(data, separators=(",", ":"), default=str).encode() + b"\n"


def forget(path: str) -> None:
    """Drop this process's descriptor and index of a log (its run is being deleted)."""
    with _lock:
        _close(path)
    with _index_lock:
        _indexes.pop(path, None)


# --- reading ---------------------------------------------------------------------------


class _Index:
    """node uuid -> (created_at, line) of its last line: line None for a tombstone, the
    line's bytes, or for a long line (offset, length) to read it again when asked.

    The bytes are parsed again by the reader, on purpose: keeping parsed manifests
    instead saves ~10 us per read but holds ~4x the memory (measured: a 10,000-node run
    ~37 MB instead of ~9 MB, and a server keeps up to 16 logs indexed)."""

    __slots__ = ("stamp", "offset", "nodes")

    def __init__(self) -> None:
        self.stamp: tuple = ()
        self.offset = 0  # bytes read up to the end of the last whole line
        self.nodes: dict[str, tuple[float | None, Any]] = {}


def lookup(path: str, node_uuid: str) -> tuple[float | None, bytes] | None:
    """(created_at, line) of the node's last line in the log; None when the log has no
    line for it or its last one is a tombstone."""
    found = _index(path)
    entry = found.nodes.get(node_uuid) if found is not None else None
    if entry is None or entry[1] is None:
        return None
    if type(entry[1]) is bytes:
        return entry
    offset, length = entry[1]
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            line = f.read(length)
    except FileNotFoundError:
        return None
    data = _parse(line)  # the log may have been replaced since it was indexed
    return (entry[0], line) if data is not None and data["node_uuid"] == node_uuid else None


def has_node(path: str, node_uuid: str) -> bool:
    """Whether the node's last line in the log is a manifest."""
    found = _index(path)
    entry = found.nodes.get(node_uuid) if found is not None else None
    return entry is not None and entry[1] is not None


def live_nodes(path: str) -> list[str]:
    """Node uuids whose last line in the log is a manifest."""
    found = _index(path)
    return [] if found is None else [n for n, (_, line) in found.nodes.items() if line is not None]


def _index(path: str) -> _Index | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _index_lock:
        index = _indexes.get(path)
        if index is not None and index.stamp == stamp:
            return index
        if index is None or index.stamp[0] != st.st_ino or st.st_size < index.stamp[1] or (
            st.st_size == index.stamp[1]  # same size, new mtime: changed in place
        ):
            index = _Index()
        try:
            with open(path, "rb") as f:
                f.seek(index.offset)
                data = f.read(st.st_size - index.offset)
        except FileNotFoundError:
            _indexes.pop(path, None)
            return None
        end = data.rfind(b"\n") + 1  # a last line without its newline is not whole yet
        pos = 0
        while pos < end:
            stop = data.index(b"\n", pos)
            if stop > pos:
                _add(index.nodes, data[pos:stop], index.offset + pos)
            pos = stop + 1
        index.offset += end
        index.stamp = stamp
        if path not in _indexes and len(_indexes) >= _INDEXES_MAX:
            del _indexes[next(iter(_indexes))]
        _indexes[path] = index
        return index


def _add(nodes: dict, raw: bytes, offset: int) -> None:
    data = _parse(raw)
    if data is None:
        # A line cut by a crash, with a later line appended to it before a reopen ended
        # it: the later line is what starts at a later '{"format":'.
        start = raw.find(_START, 1)
        while data is None and start > 0:
            data = _parse(raw[start:])
            raw = raw[start:]
            offset += start
            start = raw.find(_START, 1)
        if data is None:
            return
    created = data.get("created_at")
    created = float(created) if isinstance(created, (int, float)) else None
    if data.get("deleted"):
        kept = None
    elif len(raw) <= _KEEP_MAX:
        kept = raw
    else:
        kept = (offset, len(raw))
    nodes[data["node_uuid"]] = (created, kept)


def _parse(raw: bytes) -> dict | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("node_uuid"), str):
        return None
    if not data.get("deleted") and not (isinstance(data.get("outputs"), list) and "digest" in data and "run_id" in data):
        return None
    return data
