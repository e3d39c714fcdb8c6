"""The SQLAlchemy adapter of the history store, for SQLite and PostgreSQL.

:mod:`.tables` (the schema), :mod:`.migrate` and ``migrations/`` (Alembic), :mod:`.engine`
(engines, error translation), :mod:`.rows` (records <-> rows), :mod:`.store` (the writer and the
reads) and :mod:`.funnel` (the funnel queries).
"""
