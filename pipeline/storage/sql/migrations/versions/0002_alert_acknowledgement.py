"""Alert acknowledgement: ``alerts.acknowledged_at`` and a partial index of the open alerts.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_alerts_open",
        "alerts",
        ["respond_by"],
        postgresql_where=sa.text("acknowledged_at IS NULL"),
        sqlite_where=sa.text("acknowledged_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_alerts_open", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("acknowledged_at")
