"""What every request handler shares: the workspace, its session, the events."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from blockyard.server.config import ServerConfig


class WorkspaceHolder:
    """The workspace, re-opened when settings.yaml / metadata.yaml at its root change
    (a project added from the CLI shows up without a restart). The files are checked at
    most every `check_every` seconds."""

    def __init__(self, workspace: Any, check_every: float = 1.0) -> None:
        self._ws = workspace
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self.check_every = check_every
        self._checked = time.monotonic()

    def _stat(self) -> tuple:
        root = Path(self._ws.root)
        out = []
        for name in ("settings.yaml", "metadata.yaml"):
            try:
                st = os.stat(root / name)
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    @property
    def root(self) -> Path:
        return Path(self._ws.root)

    def reload(self, workspace: Any) -> None:
        """Swap in a re-opened workspace now (after an edit that moved a project's folder)."""
        with self._lock:
            self._ws, self._stamp, self._checked = workspace, self._stat(), time.monotonic()

    def get(self) -> Any:
        now = time.monotonic()
        if now - self._checked < self.check_every:
            return self._ws
        self._checked = now
        stamp = self._stat()
        if stamp != self._stamp:
            from blockyard.project import Workspace

            with self._lock:
                if stamp != self._stamp:
                    try:
                        self._ws = Workspace.open(self._ws.root)
                    finally:
                        self._stamp = stamp
        return self._ws


class AppState:
    def __init__(
        self,
        workspace: Any,
        config: ServerConfig | None = None,
        *,
        stop_event: threading.Event | None = None,
        local_workers: int = 0,
    ) -> None:
        self.holder = WorkspaceHolder(workspace)
        self.config = config or ServerConfig()
        self.stop_event = stop_event or threading.Event()
        self.local_workers = local_workers
        self.started = time.time()
        self.root = self.holder.root.resolve()
        # Edits of project files go one at a time (read-modify-write of metadata.yaml).
        self.edit_lock = threading.RLock()
        # SQLite has one writer at a time; queueing writers here (a lock hand-off costs
        # microseconds) beats SQLite's busy handler, which sleeps 1-100 ms between tries.
        self._sqlite_write_lock = threading.Lock()
        self._pg_writers: threading.BoundedSemaphore | None = None
        self._session: Any = None
        self._session_ws: Any = None

    @property
    def workspace(self) -> Any:
        return self.holder.get()

    @property
    def session(self) -> Any:
        ws = self.workspace
        session = self._session
        if session is None or self._session_ws is not ws:
            from blockyard.session import session_for

            session = session_for(ws)
            self._session, self._session_ws = session, ws
        return session

    def write_lock(self) -> Any:
        """A context manager around a database write.

        SQLite: one writer at a time. PostgreSQL: at most as many writers as the
        connection pool keeps open (more would open and close overflow connections,
        ~5 ms each, on every request)."""
        db = self.db
        if db.dialect == "sqlite":
            return self._sqlite_write_lock
        if self._pg_writers is None:
            size = getattr(db.engine.pool, "size", None)
            self._pg_writers = threading.BoundedSemaphore(max(1, size() if callable(size) else 5))
        return self._pg_writers

    @property
    def db(self) -> Any:
        return self.session.db

    def relative(self, path: Any) -> str | None:
        """A path as the client sees it: relative to the workspace root when inside it."""
        if path is None:
            return None
        p = Path(path)
        try:
            return p.resolve().relative_to(self.root).as_posix()
        except (ValueError, OSError):
            return p.name
