"""Value segments (issue 14): on ``contacts``, the segment (indexed), net revenue in the model's
currency, completed orders, promotional orders and orders in another currency (all nullable: a
model without ``[segments]`` and snapshots written before this revision leave them null).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NAME = 64


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("segment", sa.String(NAME), nullable=True))
        batch.add_column(sa.Column("revenue", sa.Float(), nullable=True))
        batch.add_column(sa.Column("orders", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("promo_orders", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("foreign_orders", sa.Integer(), nullable=True))
    op.create_index("ix_contacts_segment", "contacts", ["segment"])


def downgrade() -> None:
    op.drop_index("ix_contacts_segment", table_name="contacts")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("foreign_orders")
        batch.drop_column("promo_orders")
        batch.drop_column("orders")
        batch.drop_column("revenue")
        batch.drop_column("segment")
