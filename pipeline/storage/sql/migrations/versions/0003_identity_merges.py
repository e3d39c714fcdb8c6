"""Identity merges: ``contacts.merged_into`` (indexed) and transition ``from``/``to`` wide enough
for an anonymous contact id (``anon:`` + 128 characters) in ``identity`` transitions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-01-15
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = 200
NAME = 64


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("merged_into", sa.String(ID), nullable=True))
    op.create_index("ix_contacts_merged_into", "contacts", ["merged_into"])
    with op.batch_alter_table("transitions") as batch:
        batch.alter_column("from", existing_type=sa.String(NAME), type_=sa.String(ID), existing_nullable=False)
        batch.alter_column("to", existing_type=sa.String(NAME), type_=sa.String(ID), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("transitions") as batch:
        batch.alter_column("to", existing_type=sa.String(ID), type_=sa.String(NAME), existing_nullable=False)
        batch.alter_column("from", existing_type=sa.String(ID), type_=sa.String(NAME), existing_nullable=False)
    op.drop_index("ix_contacts_merged_into", table_name="contacts")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("merged_into")
