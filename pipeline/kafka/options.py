"""Keyword arguments of every aiokafka client Leadflow starts, from Settings and the broker profile.

One place decides how a Leadflow consumer behaves (its own group, offsets committed by hand after
the work is done, the profile's session, heartbeat, rebalance and fetch timings) and how a
producer does (acknowledged by every in-sync replica, the profile's batch size, idempotent where
the broker supports it), and how every client connects (TLS / SASL: ``Settings.security``).
Callers add only what is theirs: group, start position, poll size.
"""

from __future__ import annotations

from typing import Any

from pipeline.config.settings import Settings


def consumer_options(
    settings: Settings,
    group_id: str,
    *,
    auto_offset_reset: str = "earliest",
    max_poll_records: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """``AIOKafkaConsumer(*topics, **consumer_options(...))`` for a member of ``group_id``
    (also its client id). ``extra`` adds or overrides aiokafka arguments."""
    profile = settings.broker
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "group_id": group_id,
        "client_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": auto_offset_reset,
        "fetch_max_wait_ms": profile.fetch_max_wait_ms,
        "session_timeout_ms": profile.session_timeout_ms,
        "heartbeat_interval_ms": profile.heartbeat_interval_ms,
        "rebalance_timeout_ms": profile.rebalance_timeout_ms,
    }
    if max_poll_records is not None:
        options["max_poll_records"] = max_poll_records
    options.update(settings.security.aiokafka())
    options.update(extra)
    return options


def producer_options(
    settings: Settings,
    client_id: str | None = None,
    *,
    idempotent: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """``AIOKafkaProducer(**producer_options(...))``: ``acks=all`` and the profile's batch size.

    ``idempotent``: no duplicates from the producer's own retries, where the broker profile supports
    it (``producer_idempotence``). ``extra`` adds or overrides aiokafka arguments."""
    profile = settings.broker
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "acks": "all",
        "max_batch_size": profile.producer_batch_bytes,
    }
    if client_id is not None:
        options["client_id"] = client_id
    if idempotent:
        options["enable_idempotence"] = profile.producer_idempotence
    options.update(settings.security.aiokafka())
    options.update(extra)
    return options
