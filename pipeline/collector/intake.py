"""From a request body to Kafka records: split, validate with the shared contract, stamp ``context``.

Pure functions, no I/O: the HTTP layer (:mod:`.server`) reads the body and publishes the result.

* :func:`split_body` cuts a body into envelopes by media type: ``application/json`` (and
  ``text/plain``, what ``navigator.sendBeacon`` sends without a CORS preflight) holds one envelope
  or a JSON array of envelopes; ``application/x-ndjson`` one envelope per line. A body that cannot
  be read at all is a :class:`BodyError` (HTTP 400 or 413).
* :func:`take_events` validates each envelope exactly as the ingest consumers will
  (:func:`pipeline.contracts.decode_event`, same error codes), adds ``context.received_at`` and
  ``context.ip`` to the valid ones and re-encodes them: one Kafka record per event, keyed by
  ``contact_id`` (else ``anonymous_id``) like ``leadflow produce``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from pipeline.collector.config import MAX_EVENTS_PER_REQUEST
from pipeline.contracts import MAX_EVENT_BYTES, DeadLetter, decode_event
from pipeline.state_machine.clock import to_rfc3339

JSON_TYPES = frozenset({"application/json", "text/plain"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson"})
MEDIA_TYPES = JSON_TYPES | NDJSON_TYPES

_decode_array = msgspec.json.Decoder(list[msgspec.Raw]).decode
_decode_object = msgspec.json.Decoder(dict[str, Any]).decode
_encode = msgspec.json.encode
_WHITESPACE = b" \t\r\n"


class BodyError(Exception):
    """The body as a whole cannot be used; ``status`` is the HTTP answer (400 or 413)."""

    def __init__(self, status: int, error_code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error_code = error_code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Body:
    """The envelopes of one request, as received; ``single``: the body was one JSON object."""

    elements: list[bytes]
    single: bool


@dataclass(frozen=True, slots=True)
class Rejected:
    """One envelope that is not published, with the contract's error code and detail."""

    index: int
    event_id: str | None
    error_code: str
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "event_id": self.event_id, "error_code": self.error_code, "detail": self.detail}


@dataclass(slots=True)
class Intake:
    """What a request brings: Kafka records for the valid events, reasons for the others."""

    event_ids: list[str] = field(default_factory=list)
    records: list[tuple[bytes | None, bytes]] = field(default_factory=list)  # (key, value)
    rejected: list[Rejected] = field(default_factory=list)


def split_body(body: bytes, media_type: str) -> Body:
    """The envelopes of a body of ``media_type`` (one of :data:`MEDIA_TYPES`)."""
    if not body.strip(_WHITESPACE):
        raise BodyError(400, "invalid_json", "$: the body is empty; send one envelope, a JSON array or NDJSON")
    if media_type in NDJSON_TYPES:
        elements = [line for line in (raw.rstrip(b"\r") for raw in body.split(b"\n")) if line.strip(_WHITESPACE)]
        _check_count(len(elements))
        return Body(elements, single=False)
    start = body.lstrip(_WHITESPACE)[:1]
    if start != b"[":
        return Body([body], single=True)
    try:
        raw_elements = _decode_array(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BodyError(400, *_unreadable(body, exc)) from None
    if not raw_elements:
        raise BodyError(400, "schema_violation", "$: an empty array; send one or more envelopes")
    _check_count(len(raw_elements))
    return Body([bytes(element) for element in raw_elements], single=False)


def _check_count(count: int) -> None:
    if count > MAX_EVENTS_PER_REQUEST:
        detail = f"$: {count} events in one request; the limit is {MAX_EVENTS_PER_REQUEST}"
        raise BodyError(413, "too_large", detail)


def _unreadable(body: bytes, exc: Exception) -> tuple[str, str]:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as bad:
        return "invalid_encoding", f"$: not valid UTF-8 ({bad.reason} at byte {bad.start})"
    if isinstance(exc, RecursionError):
        return "too_large", "$: nested too deeply"
    return "invalid_json", f"$: not valid JSON ({exc})"


def take_events(body: Body, source: str, received_at: int, client_ip: str | None) -> Intake:
    """Validate every envelope for ``source``; stamp and encode the valid ones.

    ``received_at``: microseconds since the epoch, UTC (also the reference of the contract's
    ``future_timestamp`` rule). ``client_ip``: already truncated as configured, or ``None``.
    """
    intake = Intake()
    stamp: dict[str, Any] = {"received_at": to_rfc3339(received_at)}
    if client_ip is not None:
        stamp["ip"] = client_ip
    for index, raw in enumerate(body.elements):
        decided = decode_event(raw, family=source, received_at=received_at)
        if isinstance(decided, DeadLetter):
            intake.rejected.append(Rejected(index, decided.event_id, decided.error_code, decided.error_detail))
            continue
        envelope = _decode_object(raw)
        context = envelope.get("context")
        envelope["context"] = {**context, **stamp} if context else stamp
        value = _encode(envelope)
        if len(value) > MAX_EVENT_BYTES:
            detail = f"$: {len(value)} bytes with the collector's context; the limit is {MAX_EVENT_BYTES}"
            intake.rejected.append(Rejected(index, decided.event_id, "too_large", detail))
            continue
        identity = envelope.get("contact_id") or envelope.get("anonymous_id")
        intake.event_ids.append(decided.event_id)
        intake.records.append((identity.encode("utf-8", "surrogatepass") if identity else None, value))
    return intake
