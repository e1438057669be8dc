"""Orchestration: triggers (pipeline_schedules), fires, backfills, heartbeats;
queue columns on pipeline_runs (leases, idempotency, cancel requests, SLA).

Revision ID: 0002_orchestration
Revises: 0001
Create Date: 2025-02-01

A frozen copy of the tables as they were at this revision (it does not import
blockyard.db.schema). Columns are added with plain ALTER TABLE ... ADD COLUMN
(nullable or with a server default), which SQLite supports without a table copy.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_orchestration"
down_revision = "0001"
branch_labels = None
depends_on = None


def _utc_datetime() -> sa.types.TypeEngine:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


_RUN_COLUMNS = (
    ("idempotency_key", lambda: sa.String(255), {}),
    ("lease_owner", lambda: sa.String(255), {}),
    ("lease_expires_at", _utc_datetime, {}),
    ("heartbeat_at", _utc_datetime, {}),
    ("resume_count", lambda: sa.Integer(), {"nullable": False, "server_default": "0"}),
    ("cancel_requested_at", _utc_datetime, {}),
    ("settings", _json, {}),
    ("sla_deadline", _utc_datetime, {}),
    ("sla_notified_at", _utc_datetime, {}),
    ("retry_of", lambda: sa.Integer(), {}),
)


def upgrade() -> None:
    for name, type_, kwargs in _RUN_COLUMNS:
        op.add_column("pipeline_runs", sa.Column(name, type_(), **kwargs))
    op.create_index(
        "ix_pipeline_runs_idempotency_key", "pipeline_runs", ["idempotency_key"], unique=True
    )
    op.create_index("ix_pipeline_runs_trigger_id_status", "pipeline_runs", ["trigger_id", "status"])
    op.create_index("ix_pipeline_runs_backfill_id", "pipeline_runs", ["backfill_id"])

    op.create_table(
        "pipeline_schedules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("pipeline_uuid", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("schedule_type", sa.String(32), nullable=False),
        sa.Column("schedule_interval", sa.String(255)),
        sa.Column("start_time", _utc_datetime()),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("variables", _json()),
        sa.Column("settings", _json()),
        sa.Column("sla", sa.Integer),
        sa.Column("token", sa.String(255)),
        sa.Column("last_enabled_at", _utc_datetime()),
        sa.Column("extra", _json()),
        sa.Column("config_hash", sa.String(64)),
        sa.Column("error", sa.Text),
        sa.Column("next_run_at", _utc_datetime()),
        sa.Column("last_execution_date", _utc_datetime()),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("updated_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pipeline_schedules"),
        sa.UniqueConstraint(
            "project", "pipeline_uuid", "name", name="uq_pipeline_schedules_project_pipeline_uuid_name"
        ),
    )
    op.create_index(
        "ix_pipeline_schedules_status_next_run_at", "pipeline_schedules", ["status", "next_run_at"]
    )

    op.create_table(
        "pipeline_schedule_fires",
        sa.Column("schedule_id", sa.Integer, nullable=False),
        sa.Column("execution_date", _utc_datetime(), nullable=False),
        sa.Column("run_id", sa.Integer),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("schedule_id", "execution_date", name="pk_pipeline_schedule_fires"),
    )

    op.create_table(
        "backfills",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("pipeline_uuid", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255)),
        sa.Column("start_datetime", _utc_datetime(), nullable=False),
        sa.Column("end_datetime", _utc_datetime(), nullable=False),
        sa.Column("interval", sa.String(16), nullable=False),
        sa.Column("interval_units", sa.Integer, nullable=False, server_default="1"),
        sa.Column("variables", _json()),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("total_runs", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("completed_at", _utc_datetime()),
        sa.Column("error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_backfills"),
    )

    op.create_table(
        "orchestrator_heartbeats",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("hostname", sa.String(255)),
        sa.Column("pid", sa.Integer),
        sa.Column("started_at", _utc_datetime(), nullable=False),
        sa.Column("heartbeat_at", _utc_datetime(), nullable=False),
        sa.Column("info", _json()),
        sa.PrimaryKeyConstraint("id", name="pk_orchestrator_heartbeats"),
    )
    op.create_index("ix_orchestrator_heartbeats_role", "orchestrator_heartbeats", ["role"])


def downgrade() -> None:
    op.drop_index("ix_orchestrator_heartbeats_role", table_name="orchestrator_heartbeats")
    op.drop_table("orchestrator_heartbeats")
    op.drop_table("backfills")
    op.drop_table("pipeline_schedule_fires")
    op.drop_index("ix_pipeline_schedules_status_next_run_at", table_name="pipeline_schedules")
    op.drop_table("pipeline_schedules")
    op.drop_index("ix_pipeline_runs_backfill_id", table_name="pipeline_runs")
    op.drop_index("ix_pipeline_runs_trigger_id_status", table_name="pipeline_runs")
    op.drop_index("ix_pipeline_runs_idempotency_key", table_name="pipeline_runs")
    with op.batch_alter_table("pipeline_runs") as batch:
        for name, _type, _kwargs in reversed(_RUN_COLUMNS):
            batch.drop_column(name)
