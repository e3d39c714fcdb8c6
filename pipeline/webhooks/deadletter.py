"""Records of ``webhooks.deadletter``: what a subscription could not deliver, and why.

One JSON record per (subscription, record) given up on, keyed by the delivery id::

    {"subscription": "crm", "delivery_id": "9a7c…", "event": "lead.became_hot",
     "reason": "retries_exhausted", "detail": "HTTP 503 on each of 7 attempts over 86,400 s",
     "attempts": 7, "last_status": 503, "last_error": "HTTP 503: maintenance",
     "first_attempt_at": "…", "last_attempt_at": "…", "dead_lettered_at": "…",
     "topic": "lead.alerts", "partition": 3, "offset": 1234, "record": {…the alert…}}

``reason`` is ``retries_exhausted`` or ``unreadable_record`` (a record on an output topic that is not
an alert or transition: ``record`` is then null and ``raw`` holds its text, or base64 of the bytes).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import msgspec

RETRIES_EXHAUSTED = "retries_exhausted"
UNREADABLE_RECORD = "unreadable_record"


class WebhookDeadLetter(msgspec.Struct, frozen=True, omit_defaults=False):
    subscription: str
    delivery_id: str | None
    event: str | None
    reason: str
    detail: str
    attempts: int
    last_status: int | None
    last_error: str | None
    first_attempt_at: str | None
    last_attempt_at: str | None
    dead_lettered_at: str
    topic: str
    partition: int
    offset: int
    record: msgspec.Raw | None
    raw: str | None = None
    raw_encoding: str | None = None


_encoder = msgspec.json.Encoder()


def rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _embed(value: bytes | None) -> tuple[msgspec.Raw | None, str | None, str | None]:
    """The record as embedded JSON when it is JSON, else as text or base64."""
    if value is None:
        return None, None, None
    try:
        msgspec.json.decode(value)
    except msgspec.DecodeError:
        try:
            return None, value.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return None, base64.b64encode(value).decode("ascii"), "base64"
    return msgspec.Raw(value), None, None


def encode(
    *,
    subscription: str,
    delivery_id: str | None,
    event: str | None,
    reason: str,
    detail: str,
    attempts: int,
    last_status: int | None,
    last_error: str | None,
    first_attempt_at: float | None,
    last_attempt_at: float | None,
    now: float,
    topic: str,
    partition: int,
    offset: int,
    value: bytes | None,
) -> bytes:
    record, raw, raw_encoding = _embed(value)
    return _encoder.encode(
        WebhookDeadLetter(
            subscription=subscription,
            delivery_id=delivery_id,
            event=event,
            reason=reason,
            detail=detail,
            attempts=attempts,
            last_status=last_status,
            last_error=last_error,
            first_attempt_at=None if first_attempt_at is None else rfc3339(first_attempt_at),
            last_attempt_at=None if last_attempt_at is None else rfc3339(last_attempt_at),
            dead_lettered_at=rfc3339(now),
            topic=topic,
            partition=partition,
            offset=offset,
            record=record,
            raw=raw,
            raw_encoding=raw_encoding,
        )
    )
