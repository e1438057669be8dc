"""Run-history tables (SQLAlchemy Core).

The Alembic scripts under `migrations/versions` create exactly these tables;
`tests/test_db.py` checks that a migrated database matches this metadata.
"""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

# Keep in step with the newest script in migrations/versions (a test checks it).
# `Database.migrate()` compares the database against it without importing alembic.
HEAD_REVISION = "0001"

STATUSES = (
    "initial",
    "queued",
    "running",
    "completed",
    "failed",
    "cancelled",
    "upstream_failed",
    "condition_failed",
)
UNFINISHED_STATUSES = ("initial", "queued", "running")
FINISHED_STATUSES = tuple(s for s in STATUSES if s not in UNFINISHED_STATUSES)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def to_utc(value: datetime | None) -> datetime | None:
    """Aware datetimes are converted to UTC; naive ones are taken to be UTC already."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class UTCDateTime(sa.TypeDecorator):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores `timestamp with time zone`; SQLite has no time zones, so
    the value is stored as naive UTC text and given `tzinfo=UTC` again on read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        value = to_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):  # pragma: no cover - sqlite returns datetime already
            value = datetime.fromisoformat(value)
        return to_utc(value)


class JSONType(sa.TypeDecorator):
    """JSON on SQLite, JSONB on PostgreSQL; Python None is stored as SQL NULL.

    (A decorator rather than `with_variant` so that the PostgreSQL dialect is only
    imported when PostgreSQL is used: it costs ~20 ms of start-up.)
    """

    impl = sa.JSON(none_as_null=True)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(sa.JSON(none_as_null=True))


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

pipeline_runs = sa.Table(
    "pipeline_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("pipeline_uuid", sa.String(255), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("variables", JSONType()),
    sa.Column("execution_date", UTCDateTime()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime()),
    sa.Column("completed_at", UTCDateTime()),
    sa.Column("error", sa.Text),
    sa.Column("error_details", JSONType()),
    sa.Column("trigger_id", sa.Integer),
    sa.Column("backfill_id", sa.Integer),
    sa.Column("pid", sa.Integer),
    sa.Column("hostname", sa.String(255)),
    sa.Column("block_count", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("metrics", JSONType()),
    sa.Index("ix_pipeline_runs_pipeline_uuid_created_at", "pipeline_uuid", "created_at"),
    sa.Index("ix_pipeline_runs_status", "status"),
)

block_runs = sa.Table(
    "block_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "pipeline_run_id",
        sa.Integer,
        sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("block_uuid", sa.String(255), nullable=False),
    sa.Column("base_block_uuid", sa.String(255)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("started_at", UTCDateTime()),
    sa.Column("completed_at", UTCDateTime()),
    sa.Column("error", sa.Text),
    sa.Column("traceback", sa.Text),
    sa.Column("cache_key", sa.String(255)),
    sa.Column("cache_hit", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("output_ref", sa.String(512)),
    sa.Column("digest", sa.String(128)),
    sa.Column("tests", JSONType()),
    sa.Column("metrics", JSONType()),
    sa.Column("dynamic_index", sa.Integer),
    sa.Column("log_path", sa.String(1024)),
    sa.UniqueConstraint("pipeline_run_id", "block_uuid", name="uq_block_runs_pipeline_run_id_block_uuid"),
    sa.Index("ix_block_runs_cache_key", "cache_key"),
)

PIPELINE_RUN_COLUMNS = frozenset(c.name for c in pipeline_runs.c)
BLOCK_RUN_COLUMNS = frozenset(c.name for c in block_runs.c)
# Columns a caller may set on a block run (the key columns are not among them).
BLOCK_RUN_FIELDS = BLOCK_RUN_COLUMNS - {"id", "pipeline_run_id", "block_uuid"}
