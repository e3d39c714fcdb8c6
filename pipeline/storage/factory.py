"""The one way in: :func:`open_history_store` and :func:`upgrade_database` pick the backend by URL.

``sqlite:///FILE`` and ``postgresql://...`` open the SQLAlchemy adapter, ``memory://NAME`` the
in-memory one; every caller (replay, sink, commands) gets a :class:`~.port.HistoryStore`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pipeline.storage.database import is_memory_url, resolve_url
from pipeline.storage.memory.store import MemoryHistoryStore, create_memory_database
from pipeline.storage.port import HistoryStore
from pipeline.storage.sql.migrate import head_revision, upgrade_sql_database
from pipeline.storage.sql.store import SqlHistoryStore


def open_history_store(
    url: str | None = None, *, clock: Callable[[], datetime] | None = None, check_schema: bool = True
) -> HistoryStore:
    """The history store at ``url`` (else ``$LEADFLOW_DB``, else ``sqlite:///leadflow.db``).

    With ``check_schema`` (the default) it must be ready: :class:`~.errors.SchemaNotReady` when
    its schema is missing or old (``leadflow db upgrade``), :class:`~.errors.StorageUnavailable`
    when it cannot be reached, :class:`~.errors.InvalidDatabaseUrl` for a URL that cannot work.
    ``clock`` gives the write time stored with contact snapshots (default: now, UTC).
    """
    resolved = resolve_url(url)
    if is_memory_url(resolved):
        store = MemoryHistoryStore(resolved, clock=clock)
        if check_schema:
            store.require_created(head_revision())
        return store
    return SqlHistoryStore(resolved, clock=clock, check_schema=check_schema)


def upgrade_database(url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Create or upgrade the history at ``url`` (idempotent); returns the revisions (before, after).

    A ``memory://NAME`` database is created at the newest revision (``revision`` is ignored);
    ``memory://`` needs nothing: each store opened on it is new.
    """
    resolved = resolve_url(url)
    if is_memory_url(resolved):
        head = head_revision()
        return (None if create_memory_database(resolved) else head), head
    return upgrade_sql_database(resolved, revision)
