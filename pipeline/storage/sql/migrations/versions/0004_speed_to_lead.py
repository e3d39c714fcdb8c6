"""Speed to lead (issue 13): on ``alerts``, the response of a ``became_hot`` alert (``answered_at``,
``response_seconds``) and its escalation (``overdue_at``); for the ``response_overdue`` and
``alert_answered`` records, the alert they are about (``original_alert_id``, indexed) and their
remaining fields (``details``, JSON).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = 200


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("original_alert_id", sa.String(ID), nullable=True))
        batch.add_column(sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("response_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("details", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True)
        )
    op.create_index("ix_alerts_original_alert_id", "alerts", ["original_alert_id"])


def downgrade() -> None:
    op.drop_index("ix_alerts_original_alert_id", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("details")
        batch.drop_column("overdue_at")
        batch.drop_column("response_seconds")
        batch.drop_column("answered_at")
        batch.drop_column("original_alert_id")
