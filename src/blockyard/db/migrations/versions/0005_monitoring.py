"""Model monitoring: checks, their figures as time series, and alert-rule states.

Revision ID: 0005_monitoring
Revises: 0003_secrets
Create Date: 2026-12-06

A frozen copy of the tables as they are at this revision (it does not import
blockyard.db.schema). Used by blockyard.ml.monitoring and blockyard.notify.rules.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005_monitoring"
down_revision = "0003_secrets"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "monitoring_checks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(64)),
        sa.Column("project", sa.String(255)),
        sa.Column("pipeline_uuid", sa.String(255)),
        sa.Column("pipeline_run_id", sa.Integer),
        sa.Column("period", sa.String(64)),
        sa.Column("rows", sa.Integer, nullable=False, server_default="0"),
        sa.Column("report_path", sa.String(1024)),
        sa.Column("summary", _json()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitoring_checks"),
    )
    op.create_index("ix_monitoring_checks_model_created_at", "monitoring_checks", ["model", "created_at"])
    op.create_index("ix_monitoring_checks_pipeline_run_id", "monitoring_checks", ["pipeline_run_id"])
    op.create_table(
        "monitoring_metrics",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("check_id", sa.Integer, nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("metric", sa.String(128), nullable=False),
        sa.Column("feature", sa.String(255)),
        sa.Column("value", sa.Float),
        sa.Column("period", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitoring_metrics"),
        sa.ForeignKeyConstraint(
            ["check_id"], ["monitoring_checks.id"],
            name="fk_monitoring_metrics_check_id_monitoring_checks", ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_monitoring_metrics_model_metric_created_at", "monitoring_metrics", ["model", "metric", "created_at"]
    )
    op.create_index("ix_monitoring_metrics_check_id", "monitoring_metrics", ["check_id"])
    op.create_table(
        "alert_rule_states",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("rule", sa.String(255), nullable=False),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("firing", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("since", sa.DateTime(timezone=True)),
        sa.Column("last_value", sa.Float),
        sa.Column("last_check_id", sa.Integer),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_rule_states"),
        sa.UniqueConstraint("project", "rule", "scope", name="uq_alert_rule_states_project_rule_scope"),
    )


def downgrade() -> None:
    op.drop_table("alert_rule_states")
    op.drop_index("ix_monitoring_metrics_check_id", table_name="monitoring_metrics")
    op.drop_index("ix_monitoring_metrics_model_metric_created_at", table_name="monitoring_metrics")
    op.drop_table("monitoring_metrics")
    op.drop_index("ix_monitoring_checks_pipeline_run_id", table_name="monitoring_checks")
    op.drop_index("ix_monitoring_checks_model_created_at", table_name="monitoring_checks")
    op.drop_table("monitoring_checks")
