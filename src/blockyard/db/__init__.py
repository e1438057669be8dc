"""Run history: SQLAlchemy Core tables, Alembic migrations, write-behind recorder.

Names resolve lazily so that `import blockyard.db` does not import sqlalchemy.
"""
from __future__ import annotations

__all__ = [
    "Database",
    "Recorder",
    "RecorderError",
    "MigrationError",
    "STATUSES",
    "UNFINISHED_STATUSES",
    "FINISHED_STATUSES",
    "HEAD_REVISION",
]


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
        from blockyard.db import schema

        return getattr(schema, name)
    raise AttributeError(f"module 'blockyard.db' has no attribute {name!r}")
