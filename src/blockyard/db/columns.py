"""Facts about the run-history tables that do not need SQLAlchemy.

The sqlite3 fast path (`sqlite_writes.py`) writes `pipeline_runs` and `block_runs`
from these lists; `schema.py` defines the same tables with SQLAlchemy, which stays
the source of truth (Alembic migrations are generated from it).
`tests/test_db_fastpath.py` checks that both agree, so they cannot drift apart.
"""
from __future__ import annotations

from datetime import datetime, timezone

# Keep in step with the newest script in migrations/versions (a test checks it).
# `migrate()` compares the database against it without importing alembic.
HEAD_REVISION = "0005_monitoring"

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


# ------------------------------------------------------------ pipeline_runs
# Column names in the Table's order (the key order of the row dicts).
PIPELINE_RUN_COLUMN_NAMES = (
    "id",
    "project",
    "pipeline_uuid",
    "status",
    "variables",
    "execution_date",
    "created_at",
    "started_at",
    "completed_at",
    "error",
    "error_details",
    "trigger_id",
    "backfill_id",
    "pid",
    "hostname",
    "block_count",
    "metrics",
    "idempotency_key",
    "lease_owner",
    "lease_expires_at",
    "heartbeat_at",
    "resume_count",
    "cancel_requested_at",
    "settings",
    "sla_deadline",
    "sla_notified_at",
    "retry_of",
)
PIPELINE_RUN_DATETIMES = frozenset(
    {
        "execution_date",
        "created_at",
        "started_at",
        "completed_at",
        "lease_expires_at",
        "heartbeat_at",
        "cancel_requested_at",
        "sla_deadline",
        "sla_notified_at",
    }
)
PIPELINE_RUN_JSON = frozenset({"variables", "error_details", "metrics", "settings"})
PIPELINE_RUN_BOOLEANS: frozenset[str] = frozenset()
# Client-side defaults SQLAlchemy adds to an INSERT that leaves these columns out.
PIPELINE_RUN_DEFAULTS = {"block_count": 0, "resume_count": 0}

# --------------------------------------------------------------- block_runs
BLOCK_RUN_COLUMN_NAMES = (
    "id",
    "pipeline_run_id",
    "block_uuid",
    "base_block_uuid",
    "status",
    "attempts",
    "started_at",
    "completed_at",
    "error",
    "traceback",
    "cache_key",
    "cache_hit",
    "output_ref",
    "digest",
    "tests",
    "metrics",
    "dynamic_index",
    "log_path",
)
BLOCK_RUN_DATETIMES = frozenset({"started_at", "completed_at"})
BLOCK_RUN_JSON = frozenset({"tests", "metrics"})
BLOCK_RUN_BOOLEANS = frozenset({"cache_hit"})
BLOCK_RUN_DEFAULTS = {"attempts": 0, "cache_hit": False}

PIPELINE_RUN_COLUMNS = frozenset(PIPELINE_RUN_COLUMN_NAMES)
BLOCK_RUN_COLUMNS = frozenset(BLOCK_RUN_COLUMN_NAMES)
# Columns a caller may set on a block run (the key columns are not among them).
BLOCK_RUN_FIELDS = BLOCK_RUN_COLUMNS - {"id", "pipeline_run_id", "block_uuid"}
