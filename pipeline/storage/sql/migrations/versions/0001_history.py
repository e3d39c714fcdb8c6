"""History tables: contacts, transitions, alerts, with the indexes of the timeline and the funnel.

Revision ID: 0001
Revises:
Create Date: 2025-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = 200
NAME = 64
json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
when = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("contact_id", sa.String(ID), primary_key=True),
        sa.Column("stage", sa.String(NAME), nullable=False),
        sa.Column("temperature", sa.String(NAME), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("stage_entered_at", when, nullable=False),
        sa.Column("last_event_at", when, nullable=True),
        sa.Column("core_orders", sa.Integer(), nullable=False),
        sa.Column("referrals_converted", sa.Integer(), nullable=False),
        sa.Column("events_applied", sa.Integer(), nullable=False),
        sa.Column("first_touch_source", sa.String(NAME), nullable=True),
        sa.Column("utm_source", sa.String(ID), nullable=True),
        sa.Column("utm_medium", sa.String(ID), nullable=True),
        sa.Column("utm_campaign", sa.String(ID), nullable=True),
        sa.Column("referred_by", sa.String(ID), nullable=True),
        sa.Column("model", sa.String(NAME), nullable=False),
        sa.Column("updated_at", when, nullable=False),
    )
    op.create_index("ix_contacts_stage", "contacts", ["stage"])
    op.create_index("ix_contacts_first_touch_source", "contacts", ["first_touch_source"])

    op.create_table(
        "transitions",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("transition_id", sa.String(ID), nullable=False, unique=True),
        sa.Column("contact_id", sa.String(ID), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("from", sa.String(NAME), nullable=False),
        sa.Column("to", sa.String(NAME), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(ID), nullable=False),
        sa.Column("skipped", json, nullable=False),
        sa.Column("trigger_event_id", sa.String(ID), nullable=True),
        sa.Column("occurred_at", when, nullable=False),
        sa.Column("stage", sa.String(NAME), nullable=False),
        sa.Column("temperature", sa.String(NAME), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("model", sa.String(NAME), nullable=False),
    )
    op.create_index("ix_transitions_contact_time", "transitions", ["contact_id", "occurred_at", "seq"])
    op.create_index("ix_transitions_occurred_at", "transitions", ["occurred_at"])

    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(ID), primary_key=True),
        sa.Column("type", sa.String(NAME), nullable=False),
        sa.Column("contact_id", sa.String(ID), nullable=False),
        sa.Column("stage", sa.String(NAME), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("occurred_at", when, nullable=False),
        sa.Column("respond_by", when, nullable=False),
        sa.Column("reasons", json, nullable=False),
        sa.Column("first_touch_source", sa.String(NAME), nullable=True),
        sa.Column("utm_source", sa.String(ID), nullable=True),
        sa.Column("utm_medium", sa.String(ID), nullable=True),
        sa.Column("utm_campaign", sa.String(ID), nullable=True),
        sa.Column("model", sa.String(NAME), nullable=False),
    )
    op.create_index("ix_alerts_contact_time", "alerts", ["contact_id", "occurred_at"])
    op.create_index("ix_alerts_occurred_at", "alerts", ["occurred_at"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("transitions")
    op.drop_table("contacts")
