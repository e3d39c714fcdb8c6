"""The console's one action: "answered" records a ``lead_contacted`` sales event.

It goes through the collector's ``sales`` source (``POST /v1/events/sales`` with the sales write
key), the same path as any sales tool, so the stream, the worker and the database agree on it. The
action exists only when this installation has the ``sales`` event family (its source in
:data:`~pipeline.state_machine.SOURCES` with ``lead_contacted`` among its event types).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp

from pipeline.state_machine import SOURCES
from pipeline.state_machine.events import EVENT_TYPES

SALES = "sales"
CONTACTED = "lead_contacted"


def sales_family_exists() -> bool:
    """Whether ``lead_contacted`` is a sales event this installation validates."""
    return SALES in SOURCES and CONTACTED in EVENT_TYPES.get(SALES, ())


#: How the rep reached the contact (the ``channel`` of ``schemas/sales-event.v1.json``).
CHANNELS = ("call", "email", "meeting", "chat", "message")


def contacted_event(contact_id: str, alert_id: str, at: datetime, channel: str = "call") -> dict[str, Any]:
    """The ``lead_contacted`` envelope for an answered alert (its id derived from the alert, so a
    second click is a duplicate the worker skips)."""
    return {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"leadflow:console:answered:{alert_id}")),
        "event_type": CONTACTED,
        "source": SALES,
        "contact_id": contact_id,
        "occurred_at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "properties": {"alert_id": alert_id, "channel": channel, "outcome": "answered in the Leadflow console"},
    }


class AnswerError(RuntimeError):
    """The collector did not accept the event; the message has its answer."""


async def record_answer(
    session: aiohttp.ClientSession, collector_url: str, sales_key: str, event: dict[str, Any]
) -> dict[str, Any]:
    """Post ``event`` to the collector; its JSON answer (raise :class:`AnswerError` unless 202)."""
    async with session.post(
        f"{collector_url.rstrip('/')}/v1/events/{SALES}",
        json=event,
        headers={"Authorization": f"Bearer {sales_key}"},
        timeout=aiohttp.ClientTimeout(total=15),
    ) as response:
        body = await response.text()
        if response.status != 202:
            raise AnswerError(f"the collector answered {response.status}: {body[:300]}")
        document: dict[str, Any] = await response.json(content_type=None)
        return document
