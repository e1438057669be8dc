"""Run history: SQLAlchemy Core tables, Alembic migrations, write-behind recorder.

Names resolve lazily so that `import blockyard.db` does not import sqlalchemy.
`open_database(url)` gives a `LiteDatabase` (stdlib sqlite3, no SQLAlchemy on the
run path) for a SQLite file and a `Database` (SQLAlchemy) for anything else.
"""
from __future__ import annotations

import os

__all__ = [
    "Database",
    "LiteDatabase",
    "open_database",
    "Recorder",
    "RecorderError",
    "MigrationError",
    "STATUSES",
    "UNFINISHED_STATUSES",
    "FINISHED_STATUSES",
    "HEAD_REVISION",
]


def open_database(url: str | os.PathLike):
    """The run-history database at `url`, not migrated yet: a `LiteDatabase` for a SQLite
    file, else (PostgreSQL, in-memory SQLite, SQLite URI filenames) a `Database`."""
    from blockyard.db.lite import LiteDatabase, sqlite_file

    if sqlite_file(url) is not None:
        return LiteDatabase(url)
    from blockyard.db.database import Database

    return Database(url)


def __getattr__(name: str):
    if name == "Database":
        from blockyard.db.database import Database

        return Database
    if name == "LiteDatabase":
        from blockyard.db.lite import LiteDatabase

        return LiteDatabase
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
