"""Decode input: bytes in, ``Event`` or ``DeadLetter`` out. The public entry points.

Checks run in this order and the first failure names the dead letter's ``error_code``:
``too_large`` (over 64 KiB; a batch message over 1 MiB) → ``invalid_encoding`` (not UTF-8) →
``invalid_json`` (also NaN/Infinity, numbers that overflow a double, integers over 4300 digits,
a byte-order mark, unpaired surrogate escapes) → ``not_an_object`` → the envelope rules of
:mod:`.validate` (nesting, identity, event type, source, schema, event time).

Each input first tries the typed fast path (:mod:`.fastpath`); only inputs it does not accept are
decoded generically and run through the exact rules, which also explain the rejection. Parsing is
msgspec's on both paths: a duplicated key keeps its last value (as ``json.loads`` does), and
integers (up to 4300 digits) are kept exactly: encode them with msgspec, not orjson, beyond 64 bits.
"""

from __future__ import annotations

from typing import Any

import msgspec

from pipeline.contracts.deadletter import DeadLetter, dead_letter_for
from pipeline.contracts.errors import UnknownFamilyError
from pipeline.contracts.fastpath import fast_event
from pipeline.contracts.validate import MAX_DEPTH, SOURCE_SET, validate_envelope
from pipeline.state_machine.events import SOURCES, Event

#: Largest single envelope, and largest element of a batch, in bytes as received.
MAX_EVENT_BYTES = 65_536
#: Largest batch message (a JSON array of envelopes), in bytes.
MAX_BATCH_BYTES = 1_048_576

_decode_any = msgspec.json.decode
_decode_batch = msgspec.json.Decoder(list[msgspec.Raw]).decode
_UNREADABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def decode_event(raw: bytes, *, family: str | None, received_at: int) -> Event | DeadLetter:
    """One envelope (a replay line, or one Kafka message holding one envelope).

    ``family`` is the topic's family; ``None`` takes it from the envelope's ``source`` field, which
    is then required. ``received_at``: microseconds since the epoch, UTC.
    """
    if family is not None and family not in SOURCE_SET:
        raise UnknownFamilyError(family, SOURCES)
    if len(raw) > MAX_EVENT_BYTES:
        return _too_large(raw, family, received_at, MAX_EVENT_BYTES, "")
    event = fast_event(raw, family, received_at)
    if event is not None:
        return event
    return _decode_exactly(raw, family, received_at, "")


def decode_message(raw: bytes, *, family: str, received_at: int) -> list[Event | DeadLetter]:
    """A Kafka message value: one envelope, or a JSON array of envelopes (a batch).

    Always at least one result. A batch gives one result per element, in order: a bad element
    becomes its own dead letter (``raw`` = that element's bytes as received, ``error_detail``
    starting with ``batch element <i>:``) and the others still count. An empty array is one
    ``schema_violation``.
    """
    if family not in SOURCE_SET:
        raise UnknownFamilyError(family, SOURCES)
    size = len(raw)
    if not _looks_like_batch(raw):
        if size > MAX_EVENT_BYTES:
            return [_too_large(raw, family, received_at, MAX_EVENT_BYTES, "")]
        event = fast_event(raw, family, received_at)
        return [event if event is not None else _decode_exactly(raw, family, received_at, "")]
    if size > MAX_BATCH_BYTES:
        return [_too_large(raw, family, received_at, MAX_BATCH_BYTES, "")]
    try:
        elements = _decode_batch(raw)
    except _UNREADABLE as exc:
        return [_unreadable(raw, exc, family, received_at)]
    if not elements:
        detail = "$: an empty batch; a batch is a JSON array of one or more envelopes"
        return [dead_letter_for(raw, "schema_violation", detail, family, received_at)]
    results: list[Event | DeadLetter] = []
    for index, element in enumerate(elements):
        data = bytes(element)
        where = f"batch element {index}: "
        if len(data) > MAX_EVENT_BYTES:
            results.append(_too_large(data, family, received_at, MAX_EVENT_BYTES, where))
            continue
        event = fast_event(data, family, received_at)
        results.append(event if event is not None else _decode_exactly(data, family, received_at, where))
    return results


def _decode_exactly(raw: bytes, family: str | None, received_at: int, where: str) -> Event | DeadLetter:
    """The slow path: generic decode, then every rule in order."""
    try:
        document = _decode_any(raw)
    except RecursionError:
        detail = f"{where}$: nested deeper than {MAX_DEPTH} levels"
        return dead_letter_for(raw, "too_large", detail, family, received_at)
    except _UNREADABLE as exc:
        return _unreadable(raw, exc, family, received_at, where)
    if type(document) is not dict:
        return dead_letter_for(raw, "not_an_object", f"{where}$: {_not_object(document)}", family, received_at)
    decided = validate_envelope(document, family, received_at)
    if isinstance(decided, Event):
        return decided
    code, detail, source = decided
    event_id = document.get("event_id")
    return dead_letter_for(raw, code, where + detail, source, received_at,
                           event_id if type(event_id) is str else None)


def _looks_like_batch(raw: bytes) -> bool:
    first = raw[:1]
    if first in (b" ", b"\t", b"\r", b"\n"):
        first = raw.lstrip(b" \t\r\n")[:1]
    return first == b"["


def _not_object(value: Any) -> str:
    if type(value) is list:
        kind = "an array"
    elif type(value) is str:
        kind = "a string"
    elif value is None:
        kind = "null"
    elif type(value) is bool:
        kind = "a boolean"
    else:
        kind = "a number"
    return f"must be a JSON object (got {kind})"


def _too_large(raw: bytes, family: str | None, received_at: int, limit: int, where: str) -> DeadLetter:
    detail = f"{where}$: {len(raw)} bytes; the limit is {limit}"
    return dead_letter_for(raw, "too_large", detail, family, received_at)


def _unreadable(
    raw: bytes, exc: Exception, family: str | None, received_at: int, where: str = ""
) -> DeadLetter:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        detail = f"{where}$: not valid UTF-8 ({bad.reason} at byte {bad.start})"
        return dead_letter_for(raw, "invalid_encoding", detail, family, received_at)
    if not raw.strip(b" \t\r\n"):
        return dead_letter_for(raw, "invalid_json", f"{where}$: empty input", family, received_at)
    return dead_letter_for(raw, "invalid_json", f"{where}$: not valid JSON ({exc})", family, received_at)
