"""A Session ties one workspace to its database and artifact store.

This is where the layers meet (above engine/, db/, store/ and compat/): the engine
receives a session and uses `.db` through its methods, `.store`, `.logs_dir`, and
`.prelude` ("module:function" names every process calls before it loads block code:
the mage_ai import shim), so engine/ imports neither db/ nor compat/.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from blockyard import settings

_sessions: dict[tuple[str, str], "Session"] = {}
_lock = threading.Lock()


class Session:
    prelude: tuple[str, ...] = ("blockyard.compat.shim:install",)

    def __init__(self, workspace: Any) -> None:
        self.workspace = workspace
        self.data_dir: Path = settings.data_dir_for(Path(workspace.root))
        self.database_url = settings.database_url_for(self.data_dir)
        self.store_url = settings.store_url_for(self.data_dir)
        self.logs_dir = self.data_dir / "logs"
        self._db = None
        self._store = None
        self._init_lock = threading.Lock()

    @property
    def db(self):
        if self._db is None:
            with self._init_lock:
                if self._db is None:
                    from blockyard.db import open_database

                    self.data_dir.mkdir(parents=True, exist_ok=True)
                    # SQLite: its writes go through sqlite3, which keeps SQLAlchemy off the run path.
                    db = open_database(self.database_url)
                    db.migrate()
                    db.recover_orphans()
                    self._db = db
        return self._db

    @property
    def store(self):
        if self._store is None:
            with self._init_lock:
                if self._store is None:
                    from blockyard.store import ArtifactStore

                    self._store = ArtifactStore(self.store_url)
        return self._store

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def session_for(workspace: Any) -> Session:
    data_dir = settings.data_dir_for(Path(workspace.root))
    key = (str(Path(workspace.root).resolve()), settings.database_url_for(data_dir))
    with _lock:
        sess = _sessions.get(key)
        if sess is None:
            sess = Session(workspace)
            _sessions[key] = sess
        sess.workspace = workspace  # project files may have been re-read
        return sess


def reset_sessions() -> None:
    with _lock:
        for s in _sessions.values():
            s.close()
        _sessions.clear()
