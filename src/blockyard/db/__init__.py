"""Run history: SQLAlchemy Core tables, Alembic migrations, write-behind recorder.

Names resolve lazily so that `import blockyard.db` does not import sqlalchemy.
`Database` reads through SQLAlchemy Core (imported on the first read) and, on a
SQLite file, writes a run's rows with stdlib sqlite3 (see `database.py`).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

__all__ = [
    "Database",
    "open_database",
    "shared_database",
    "Recorder",
    "RecorderError",
    "MigrationError",
    "STATUSES",
    "UNFINISHED_STATUSES",
    "FINISHED_STATUSES",
    "HEAD_REVISION",
]


def open_database(url: str | os.PathLike):
    """The run-history `Database` at `url`, not migrated yet. On a SQLite file its
    run writes take the sqlite3 fast path and SQLAlchemy loads on the first read."""
    from blockyard.db.database import Database

    return Database(url)


_shared: dict[str, object] = {}
_shared_lock = threading.Lock()


def shared_database(url: str):
    """The run-history database at `url`, opened and migrated once per process and
    kept open: for readers outside a run (monitoring figures, dashboard charts)."""
    with _shared_lock:
        db = _shared.get(url)
        if db is None:
            if url.startswith("sqlite:///"):
                Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            db = open_database(url)
            db.migrate()
            _shared[url] = db
    return db


def __getattr__(name: str):
    if name == "Database":
        from blockyard.db.database import Database

        return Database
    if name in ("Recorder", "RecorderError"):
        from blockyard.db import recorder

        return getattr(recorder, name)
    if name == "MigrationError":
        from blockyard.db.migrate import MigrationError

        return MigrationError
    if name in ("STATUSES", "UNFINISHED_STATUSES", "FINISHED_STATUSES", "HEAD_REVISION"):
        from blockyard.db import columns

        return getattr(columns, name)
    raise AttributeError(f"module 'blockyard.db' has no attribute {name!r}")
