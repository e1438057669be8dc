"""Initial schema: pipeline_runs and block_runs.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

A frozen copy of the tables as they were at this revision (it does not import
blockyard.db.schema, which keeps changing).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _utc_datetime() -> sa.types.TypeEngine:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("pipeline_uuid", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("variables", _json()),
        sa.Column("execution_date", _utc_datetime()),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("started_at", _utc_datetime()),
        sa.Column("completed_at", _utc_datetime()),
        sa.Column("error", sa.Text),
        sa.Column("error_details", _json()),
        sa.Column("trigger_id", sa.Integer),
        sa.Column("backfill_id", sa.Integer),
        sa.Column("pid", sa.Integer),
        sa.Column("hostname", sa.String(255)),
        sa.Column("block_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("metrics", _json()),
        sa.PrimaryKeyConstraint("id", name="pk_pipeline_runs"),
    )
    op.create_index(
        "ix_pipeline_runs_pipeline_uuid_created_at", "pipeline_runs", ["pipeline_uuid", "created_at"]
    )
    op.create_index("ix_pipeline_runs_status", "pipeline_runs", ["status"])

    op.create_table(
        "block_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pipeline_run_id", sa.Integer, nullable=False),
        sa.Column("block_uuid", sa.String(255), nullable=False),
        sa.Column("base_block_uuid", sa.String(255)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("started_at", _utc_datetime()),
        sa.Column("completed_at", _utc_datetime()),
        sa.Column("error", sa.Text),
        sa.Column("traceback", sa.Text),
        sa.Column("cache_key", sa.String(255)),
        sa.Column("cache_hit", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("output_ref", sa.String(512)),
        sa.Column("digest", sa.String(128)),
        sa.Column("tests", _json()),
        sa.Column("metrics", _json()),
        sa.Column("dynamic_index", sa.Integer),
        sa.Column("log_path", sa.String(1024)),
        sa.PrimaryKeyConstraint("id", name="pk_block_runs"),
        sa.ForeignKeyConstraint(
            ["pipeline_run_id"],
            ["pipeline_runs.id"],
            name="fk_block_runs_pipeline_run_id_pipeline_runs",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "pipeline_run_id", "block_uuid", name="uq_block_runs_pipeline_run_id_block_uuid"
        ),
    )
    op.create_index("ix_block_runs_cache_key", "block_runs", ["cache_key"])


def downgrade() -> None:
    op.drop_index("ix_block_runs_cache_key", table_name="block_runs")
    op.drop_table("block_runs")
    op.drop_index("ix_pipeline_runs_status", table_name="pipeline_runs")
    op.drop_index("ix_pipeline_runs_pipeline_uuid_created_at", table_name="pipeline_runs")
    op.drop_table("pipeline_runs")
