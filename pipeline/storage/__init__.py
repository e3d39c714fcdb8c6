"""Durable lifecycle history: contact timelines, the funnel report by source, alert acks.

    upgrade_database("sqlite:///leadflow.db")                 # leadflow db upgrade
    with open_history_store(url) as store:                    # sqlite:///, postgresql://, memory://
        store.write_batch(transitions, alerts, contacts)
        store.contact_timeline("c00042"); store.funnel(model, by="utm_source")
    with HistoryWriter(url) as writer:                        # leadflow replay --db URL
        writer.add_transitions(transitions); writer.add_alerts(alerts); writer.add_contacts(views)

Layout: :mod:`.port` (the :class:`HistoryStore` Protocol), :mod:`.factory` (the one way to open
a store), :mod:`.writer` (batching), :mod:`.reports` (what the reads return, and its text and
HTML views), and the adapters :mod:`.sql` (SQLite and PostgreSQL) and :mod:`.memory`.
Every error is a :class:`StorageError`.
"""

from __future__ import annotations

from pipeline.storage.database import DEFAULT_URL, ENV_VAR, resolve_url, safe_url
from pipeline.storage.errors import (
    InvalidAcknowledgement,
    InvalidDatabaseUrl,
    SchemaNotReady,
    StorageError,
    StorageUnavailable,
    UnknownAlert,
)
from pipeline.storage.factory import open_history_store, upgrade_database
from pipeline.storage.memory.store import MemoryHistoryStore
from pipeline.storage.port import Acknowledgement, HistoryStore
from pipeline.storage.reports.types import (
    GROUP_BY,
    ContactHistory,
    FunnelReport,
    GroupBy,
    GroupFunnel,
    StageFigures,
    StoredAlert,
)
from pipeline.storage.sql.migrate import head_revision
from pipeline.storage.sql.store import SqlHistoryStore
from pipeline.storage.writer import DEFAULT_BATCH_SIZE, HistoryWriter, WriteCounts, write_replay_history

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_URL",
    "ENV_VAR",
    "GROUP_BY",
    "Acknowledgement",
    "ContactHistory",
    "FunnelReport",
    "GroupBy",
    "GroupFunnel",
    "HistoryStore",
    "HistoryWriter",
    "InvalidAcknowledgement",
    "InvalidDatabaseUrl",
    "MemoryHistoryStore",
    "SchemaNotReady",
    "SqlHistoryStore",
    "StageFigures",
    "StorageError",
    "StorageUnavailable",
    "StoredAlert",
    "UnknownAlert",
    "WriteCounts",
    "head_revision",
    "open_history_store",
    "resolve_url",
    "safe_url",
    "upgrade_database",
    "write_replay_history",
]
