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
    (a project added from the CLI shows up without a restart); one stat per call."""

    def __init__(self, workspace: Any) -> None:
        self._ws = workspace
        self._lock = threading.Lock()
        self._stamp = self._stat()

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

    def get(self) -> Any:
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

    @property
    def workspace(self) -> Any:
        return self.holder.get()

    @property
    def session(self) -> Any:
        from blockyard.engine.session import session_for

        return session_for(self.workspace)

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
