"""Encrypted secrets: the `secrets` table used by blockyard.secrets.SecretStore.

Revision ID: 0003_secrets
Revises: 0002_orchestration
Create Date: 2025-01-03

A frozen copy of the table as it is at this revision (it does not import
blockyard.db.schema). `ciphertext` holds a Fernet token, never a plaintext value.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_secrets"
down_revision = "0002_orchestration"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("project", sa.String(255)),
        sa.Column("ciphertext", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_secrets"),
        sa.UniqueConstraint("project", "name", name="uq_secrets_project_name"),
    )
    # Global secrets (project IS NULL): one per name. A plain unique constraint
    # would not catch them, since NULLs never compare equal.
    op.create_index(
        "uq_secrets_name_global",
        "secrets",
        ["name"],
        unique=True,
        sqlite_where=sa.text("project IS NULL"),
        postgresql_where=sa.text("project IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_secrets_name_global", table_name="secrets")
    op.drop_table("secrets")
