"""Run-history tables (SQLAlchemy Core).

The Alembic scripts under `migrations/versions` create exactly these tables;
`tests/test_db.py` checks that a migrated database matches this metadata.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

# The constants and time helpers live in a SQLAlchemy-free module (used by the sqlite3 fast path);
# they are re-exported here so that existing imports keep working.
from blockyard.db.columns import (  # noqa: F401
    FINISHED_STATUSES,
    HEAD_REVISION,
    STATUSES,
    UNFINISHED_STATUSES,
    to_utc,
    utcnow,
)


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
    # --- orchestration (0002_orchestration): queue, leases, idempotency, cancel, SLA
    sa.Column("idempotency_key", sa.String(255)),
    sa.Column("lease_owner", sa.String(255)),  # the worker holding the run while it is running
    sa.Column("lease_expires_at", UTCDateTime()),
    sa.Column("heartbeat_at", UTCDateTime()),
    sa.Column("resume_count", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("cancel_requested_at", UTCDateTime()),
    sa.Column("settings", JSONType()),  # trigger settings copied at enqueue (timeout, ...)
    sa.Column("sla_deadline", UTCDateTime()),
    sa.Column("sla_notified_at", UTCDateTime()),
    sa.Column("retry_of", sa.Integer),
    sa.Index("ix_pipeline_runs_pipeline_uuid_created_at", "pipeline_uuid", "created_at"),
    sa.Index("ix_pipeline_runs_status", "status"),
    sa.Index("ix_pipeline_runs_idempotency_key", "idempotency_key", unique=True),
    sa.Index("ix_pipeline_runs_trigger_id_status", "trigger_id", "status"),
    sa.Index("ix_pipeline_runs_backfill_id", "backfill_id"),
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

# ----------------------------------------------------------- orchestration
# Triggers (Mage's pipeline schedules), mirrored from pipelines/<uuid>/triggers.yaml
# by blockyard.orchestration.triggers.TriggerStore. `next_run_at` is the scheduler's
# cursor: the next execution time to fire (time triggers) or to poll (sensor triggers).
pipeline_schedules = sa.Table(
    "pipeline_schedules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("pipeline_uuid", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("schedule_type", sa.String(32), nullable=False),
    sa.Column("schedule_interval", sa.String(255)),
    sa.Column("start_time", UTCDateTime()),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("variables", JSONType()),
    sa.Column("settings", JSONType()),
    sa.Column("sla", sa.Integer),
    sa.Column("token", sa.String(255)),
    sa.Column("last_enabled_at", UTCDateTime()),
    sa.Column("extra", JSONType()),  # keys of the YAML entry Blockyard does not know
    sa.Column("config_hash", sa.String(64)),
    sa.Column("error", sa.Text),
    sa.Column("next_run_at", UTCDateTime()),
    sa.Column("last_execution_date", UTCDateTime()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint(
        "project", "pipeline_uuid", "name", name="uq_pipeline_schedules_project_pipeline_uuid_name"
    ),
    sa.Index("ix_pipeline_schedules_status_next_run_at", "status", "next_run_at"),
)

# One row per (trigger, execution time) ever fired or skipped: the primary key is what
# guarantees a trigger never fires twice for the same execution time.
pipeline_schedule_fires = sa.Table(
    "pipeline_schedule_fires",
    metadata,
    sa.Column("schedule_id", sa.Integer, nullable=False),
    sa.Column("execution_date", UTCDateTime(), nullable=False),
    sa.Column("run_id", sa.Integer),
    sa.Column("status", sa.String(32), nullable=False),  # fired | skipped
    sa.Column("reason", sa.Text),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("schedule_id", "execution_date", name="pk_pipeline_schedule_fires"),
)

backfills = sa.Table(
    "backfills",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("pipeline_uuid", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255)),
    sa.Column("start_datetime", UTCDateTime(), nullable=False),
    sa.Column("end_datetime", UTCDateTime(), nullable=False),
    sa.Column("interval", sa.String(16), nullable=False),
    sa.Column("interval_units", sa.Integer, nullable=False, default=1, server_default="1"),
    sa.Column("variables", JSONType()),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("total_runs", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("completed_at", UTCDateTime()),
    sa.Column("error", sa.Text),
)

# Liveness of schedulers and workers (one row each, updated every few seconds).
orchestrator_heartbeats = sa.Table(
    "orchestrator_heartbeats",
    metadata,
    sa.Column("id", sa.String(255), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("hostname", sa.String(255)),
    sa.Column("pid", sa.Integer),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
    sa.Column("info", JSONType()),
    sa.PrimaryKeyConstraint("id", name="pk_orchestrator_heartbeats"),
    sa.Index("ix_orchestrator_heartbeats_role", "role"),
)

# columns.py lists these tables' columns for the sqlite3 fast path; tests/test_db_fastpath.py
# checks that the lists agree with the Tables.
PIPELINE_RUN_COLUMNS = frozenset(c.name for c in pipeline_runs.c)
BLOCK_RUN_COLUMNS = frozenset(c.name for c in block_runs.c)
# Columns a caller may set on a block run (the key columns are not among them).
BLOCK_RUN_FIELDS = BLOCK_RUN_COLUMNS - {"id", "pipeline_run_id", "block_uuid"}

# Encrypted secrets (blockyard.secrets.SecretStore). `ciphertext` is a Fernet token;
# plaintext values are never stored. `project` NULL means a global secret. A name is
# unique within its scope: (project, name) for project secrets, and a partial unique
# index on name for the global ones (NULLs never collide in a plain unique constraint).
secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("project", sa.String(255)),
    sa.Column("ciphertext", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("project", "name", name="uq_secrets_project_name"),
    sa.Index(
        "uq_secrets_name_global",
        "name",
        unique=True,
        sqlite_where=sa.text("project IS NULL"),
        postgresql_where=sa.text("project IS NULL"),
    ),
)

# ---------------------------------------------------------------- monitoring
# One row per monitoring check (blockyard.ml.monitoring.check): a batch compared with a
# model's reference profile. `period` is what the batch covers ("2023-02" for a month).
monitoring_checks = sa.Table(
    "monitoring_checks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("model_version", sa.String(64)),
    sa.Column("project", sa.String(255)),
    sa.Column("pipeline_uuid", sa.String(255)),
    sa.Column("pipeline_run_id", sa.Integer),
    sa.Column("period", sa.String(64)),
    sa.Column("rows", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("report_path", sa.String(1024)),
    sa.Column("summary", JSONType()),  # every figure, the sampling used, the drift methods
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_monitoring_checks_model_created_at", "model", "created_at"),
    sa.Index("ix_monitoring_checks_pipeline_run_id", "pipeline_run_id"),
)

# The figures of every check as a time series per (model, metric[, feature]).
monitoring_metrics = sa.Table(
    "monitoring_metrics",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "check_id",
        sa.Integer,
        sa.ForeignKey("monitoring_checks.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("metric", sa.String(128), nullable=False),
    sa.Column("feature", sa.String(255)),  # per-feature figures (drift score, missing share)
    sa.Column("value", sa.Float),
    sa.Column("period", sa.String(64)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_monitoring_metrics_model_metric_created_at", "model", "metric", "created_at"),
    sa.Index("ix_monitoring_metrics_check_id", "check_id"),
)

# The state of each alert rule per scope, so that an alert is sent once per episode
# (when the condition starts to hold) and a recovery notice once when it clears.
alert_rule_states = sa.Table(
    "alert_rule_states",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("rule", sa.String(255), nullable=False),
    sa.Column("scope", sa.String(255), nullable=False),  # the model the rule was evaluated for
    sa.Column("firing", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("since", UTCDateTime()),
    sa.Column("last_value", sa.Float),
    sa.Column("last_check_id", sa.Integer),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("project", "rule", "scope", name="uq_alert_rule_states_project_rule_scope"),
)
