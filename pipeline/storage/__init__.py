"""Durable lifecycle history in SQL: contact timelines, the funnel report by source, alert acks.

    upgrade_database("sqlite:///leadflow.db")                 # leadflow db upgrade
    with HistoryWriter(url) as writer:                        # leadflow replay --db URL
        writer.add_transitions(transitions); writer.add_alerts(alerts); writer.add_contacts(views)
    with SqlHistoryStore(url) as store:
        store.contact_timeline("c00042"); store.funnel(model, by="utm_source")

The storage Protocol is :class:`HistoryStore`; :class:`SqlHistoryStore` implements it for SQLite
and PostgreSQL. Every error is a :class:`StorageError`.
"""

from __future__ import annotations

from pipeline.storage.database import DEFAULT_URL, ENV_VAR, resolve_url
from pipeline.storage.errors import (
    InvalidAcknowledgement,
    InvalidDatabaseUrl,
    SchemaNotReady,
    StorageError,
    StorageUnavailable,
    UnknownAlert,
)
from pipeline.storage.funnel import FunnelReport, GroupFunnel, StageFigures
from pipeline.storage.migrate import head_revision, upgrade_database
from pipeline.storage.protocol import GROUP_BY, Acknowledgement, ContactHistory, GroupBy, HistoryStore, StoredAlert
from pipeline.storage.sql_store import SqlHistoryStore
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
    "SchemaNotReady",
    "SqlHistoryStore",
    "StageFigures",
    "StorageError",
    "StorageUnavailable",
    "StoredAlert",
    "UnknownAlert",
    "WriteCounts",
    "head_revision",
    "resolve_url",
    "upgrade_database",
    "write_replay_history",
]
