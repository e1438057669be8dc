"""Run the packaged Alembic migrations programmatically.

`migrate(engine)` checks `alembic_version` first and returns straight away when
the database is already at `HEAD_REVISION`; alembic is only imported when there
is something to do. First-time migration is guarded against concurrent
processes: on SQLite by `BEGIN IMMEDIATE` (the database write lock, waited for
through busy_timeout), on PostgreSQL by a transaction-level advisory lock. After
taking the lock the version is read again, so the loser of the race does nothing.
"""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from blockyard.db.schema import HEAD_REVISION
from blockyard.errors import BlockyardError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Arbitrary constant key for pg_advisory_xact_lock ("blockyard" in ASCII, truncated).
_PG_LOCK_KEY = 0x626C6F636B79


class MigrationError(BlockyardError):
    """The database schema could not be brought up to date."""


def current_revision(connection: Connection) -> str | None:
    """The revision stored in `alembic_version`, or None if the table is missing or empty."""
    if connection.dialect.name == "postgresql":
        # A plain MVCC query, not to_regclass(): right after taking the advisory lock
        # the catalog cache may not yet show a table another process just committed.
        exists = connection.exec_driver_sql(
            "SELECT 1 FROM pg_catalog.pg_tables"
            " WHERE schemaname = current_schema() AND tablename = 'alembic_version'"
        ).scalar()
        if exists is None:
            return None
    else:
        exists = connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).scalar()
        if exists is None:
            return None
    rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    if not rows:
        return None
    if len(rows) > 1:  # branched history; let alembic sort it out
        return ",".join(sorted(rows))
    return rows[0]


def is_up_to_date(engine: Engine) -> bool:
    with engine.connect() as conn:
        return current_revision(conn) == HEAD_REVISION


def alembic_config(connection: Connection | None = None, url: str | None = None):
    """An in-memory Alembic Config pointing at the packaged scripts (no alembic.ini)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def script_head() -> str:
    """The head revision according to the migration scripts themselves (imports alembic)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def migrate(engine: Engine, revision: str = "head") -> bool:
    """Upgrade to `revision`. Returns False when the fast path found nothing to do."""
    if revision == "head" and is_up_to_date(engine):
        return False

    from alembic import command
    from alembic.util import CommandError

    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # Take the write lock before reading the version: a second process
            # waits here (busy_timeout) and then finds the schema already done.
            # SQLite DDL is transactional, so the whole upgrade is atomic. A first
            # migration on a loaded machine can take seconds: wait for it longer
            # than the usual busy_timeout (restored when the connection is reused).
            conn.exec_driver_sql("PRAGMA busy_timeout = 120000")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        if revision == "head" and current_revision(conn) == HEAD_REVISION:
            conn.rollback()
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA busy_timeout = 5000")
            return False
        try:
            command.upgrade(alembic_config(conn), revision)
        except CommandError as exc:
            conn.rollback()
            found = current_revision_safe(engine)
            raise MigrationError(
                f"could not migrate the database: {exc}",
                hint=(
                    f"the database is at revision {found!r}, which this version of blockyard "
                    "does not know; it was probably created by a newer blockyard — upgrade "
                    "blockyard or point BLOCKYARD_DATABASE_URL at another database"
                    if found
                    else None
                ),
            ) from exc
        conn.commit()
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA busy_timeout = 5000")
    return True


def current_revision_safe(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return current_revision(conn)
    except Exception:  # pragma: no cover - only used to improve an error message
        return None
