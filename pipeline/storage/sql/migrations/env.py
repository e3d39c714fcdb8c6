"""Alembic environment of the history schema, run programmatically by :mod:`pipeline.storage.sql.migrate`.

The caller hands over an open connection in ``config.attributes["connection"]``; there is no
``alembic.ini`` and no offline (SQL script) mode.
"""

from __future__ import annotations

from alembic import context

from pipeline.storage.sql.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through pipeline.storage.upgrade_database(), not the alembic CLI")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
