"""decode_event / decode_message: limits, batches, nesting, dead-letter records."""

from __future__ import annotations

import json

import msgspec
import pytest

from pipeline.contracts import (
    MAX_BATCH_BYTES,
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    MAX_RAW_BYTES,
    DeadLetter,
    UnknownErrorCodeError,
    UnknownFamilyError,
    dead_letter_for,
    decode_deadletter,
    decode_event,
    decode_message,
    encode_deadletter,
    raw_bytes,
)
from pipeline.state_machine.events import Event

from .conftest import RECEIVED_AT


def envelope(size: int | None = None, **fields: object) -> bytes:
    """A valid website signup, padded with an extra property to exactly ``size`` bytes."""
    document: dict[str, object] = {
        "event_id": "e-1", "event_type": "signup", "contact_id": "c-1", "occurred_at": "2026-03-01T10:00:00Z",
        "properties": {"pad": ""},
    }
    document.update(fields)
    raw = json.dumps(document, separators=(",", ":")).encode()
    if size is not None:
        document["properties"] = {"pad": "x" * (size - len(raw))}
        raw = json.dumps(document, separators=(",", ":")).encode()
        assert len(raw) == size
    return raw


def codes(results: list[Event | DeadLetter]) -> list[str]:
    return ["event" if isinstance(r, Event) else r.error_code for r in results]


def test_an_envelope_of_exactly_64_kib_is_accepted_one_byte_more_is_too_large() -> None:
    assert isinstance(decode_event(envelope(MAX_EVENT_BYTES), family="website", received_at=RECEIVED_AT), Event)
    dead = decode_event(envelope(MAX_EVENT_BYTES + 1), family="website", received_at=RECEIVED_AT)
    assert isinstance(dead, DeadLetter) and dead.error_code == "too_large"
    assert dead.error_detail == "$: 65537 bytes; the limit is 65536"
    assert dead.event_id is None  # too large to be read


def test_too_large_comes_before_encoding_and_syntax() -> None:
    dead = decode_event(b"\xff" * (MAX_EVENT_BYTES + 1), family=None, received_at=RECEIVED_AT)
    assert isinstance(dead, DeadLetter) and dead.error_code == "too_large"


def test_a_single_envelope_message_over_64_kib_is_too_large() -> None:
    assert codes(decode_message(envelope(MAX_EVENT_BYTES + 1), family="website", received_at=RECEIVED_AT)) == [
        "too_large"
    ]


def test_a_batch_may_exceed_64_kib_but_each_element_may_not() -> None:
    small = envelope(40_000)
    big = envelope(MAX_EVENT_BYTES + 10)
    raw = b"[" + b",".join([small, small, big, small]) + b"]"
    results = decode_message(raw, family="website", received_at=RECEIVED_AT)
    assert codes(results) == ["event", "event", "too_large", "event"]
    dead = results[2]
    assert isinstance(dead, DeadLetter)
    assert dead.error_detail.startswith("batch element 2: $: 65546 bytes")


def test_a_batch_over_1_mib_is_one_too_large_dead_letter() -> None:
    element = envelope(60_000)
    raw = b"[" + b",".join([element] * 18) + b"]"
    assert len(raw) > MAX_BATCH_BYTES
    results = decode_message(raw, family="website", received_at=RECEIVED_AT)
    assert codes(results) == ["too_large"]
    dead = results[0]
    assert isinstance(dead, DeadLetter) and dead.raw_truncated and len(dead.raw) == MAX_RAW_BYTES


def test_a_batch_keeps_order_and_reports_each_bad_element() -> None:
    raw = b' \n[' + envelope(event_id="a") + b', 7, "x", null, [], {"event_id": "b"}, ' + envelope(event_id="c") + b"]"
    results = decode_message(raw, family="website", received_at=RECEIVED_AT)
    assert codes(results) == ["event", "not_an_object", "not_an_object", "not_an_object", "not_an_object",
                              "missing_identity", "event"]
    assert [r.event_id for r in results] == ["a", None, None, None, None, "b", "c"]
    assert [r.raw for r in results if isinstance(r, DeadLetter)] == ["7", '"x"', "null", "[]", '{"event_id": "b"}']


def test_an_empty_message_is_invalid_json_and_an_empty_batch_a_schema_violation() -> None:
    assert codes(decode_message(b"", family="email", received_at=RECEIVED_AT)) == ["invalid_json"]
    assert codes(decode_message(b" [ ] ", family="email", received_at=RECEIVED_AT)) == ["schema_violation"]


def test_a_batch_element_with_bad_utf8_is_its_own_dead_letter() -> None:
    raw = b"[" + envelope() + b',{"event_id":"caf\xe9"}]'
    results = decode_message(raw, family="website", received_at=RECEIVED_AT)
    assert codes(results) == ["event", "invalid_encoding"]
    dead = results[1]
    assert isinstance(dead, DeadLetter) and dead.raw_encoding == "base64"
    assert raw_bytes(dead) == b'{"event_id":"caf\xe9"}'


def nested(depth: int) -> bytes:
    """A valid envelope whose objects and arrays nest ``depth`` levels (the envelope is level 1)."""
    value = "[" * (depth - 2) + "]" * (depth - 2)
    return envelope().replace(b'{"pad":""}', b'{"pad":' + value.encode() + b"}")


def test_nesting_up_to_the_limit_is_accepted_deeper_is_too_large() -> None:
    assert isinstance(decode_event(nested(MAX_DEPTH), family="website", received_at=RECEIVED_AT), Event)
    dead = decode_event(nested(MAX_DEPTH + 1), family="website", received_at=RECEIVED_AT)
    assert isinstance(dead, DeadLetter) and dead.error_code == "too_large" and dead.event_id == "e-1"
    assert "nested deeper than 200 levels" in dead.error_detail


def test_nesting_beyond_the_parser_stack_is_too_large_not_a_crash() -> None:
    raw = b'{"event_id":"e","a":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    dead = decode_event(raw, family="website", received_at=RECEIVED_AT)
    assert isinstance(dead, DeadLetter) and dead.error_code == "too_large"


def test_a_duplicated_key_keeps_its_last_value() -> None:
    raw = envelope().replace(b'"event_id":"e-1"', b'"event_id":"first","event_id":"last"')
    event = decode_event(raw, family="website", received_at=RECEIVED_AT)
    assert isinstance(event, Event) and event.event_id == "last"


def test_integers_of_any_size_are_kept_exactly() -> None:
    raw = envelope().replace(b'{"pad":""}', b'{"big":123456789012345678901234567890}')
    event = decode_event(raw, family="website", received_at=RECEIVED_AT)
    assert isinstance(event, Event) and event.properties == {"big": 123456789012345678901234567890}


def test_an_integral_float_rating_is_normalized_to_an_int() -> None:
    raw = envelope(event_type="review_submitted", properties={"rating": 4.0, "text": "ok"})
    event = decode_event(raw, family="website", received_at=RECEIVED_AT)
    assert isinstance(event, Event) and event.properties == {"rating": 4, "text": "ok"}
    assert type(event.properties["rating"]) is int


def test_an_event_from_the_future_names_the_minutes() -> None:
    dead = decode_event(envelope(occurred_at="2026-03-01T12:10:00Z"), family="website", received_at=RECEIVED_AT)
    assert isinstance(dead, DeadLetter) and dead.error_code == "future_timestamp"
    assert "10.0 minutes after" in dead.error_detail


def test_an_unknown_family_is_a_programming_error() -> None:
    with pytest.raises(UnknownFamilyError, match="unknown event family 'sms'"):
        decode_event(envelope(), family="sms", received_at=RECEIVED_AT)
    with pytest.raises(UnknownFamilyError):
        decode_message(envelope(), family="events.website", received_at=RECEIVED_AT)


def test_dead_letter_for_rejects_an_unknown_code() -> None:
    with pytest.raises(UnknownErrorCodeError, match="use one of too_large"):
        dead_letter_for(b"x", "bad_vibes", "detail", None, RECEIVED_AT)


def test_a_dead_letter_round_trips_and_omits_unset_positions() -> None:
    dead = dead_letter_for(b"\x00\xff", "invalid_encoding", "$: not valid UTF-8", "email", RECEIVED_AT)
    encoded = encode_deadletter(dead)
    assert b'"topic"' not in encoded and b'"line"' not in encoded and b'"raw_truncated"' not in encoded
    assert decode_deadletter(encoded) == dead
    positioned = msgspec.structs.replace(dead, topic="events.email", partition=0, offset=12)
    assert decode_deadletter(encode_deadletter(positioned)) == positioned
    assert raw_bytes(dead) == b"\x00\xff"


def test_a_truncated_raw_never_cuts_a_character_in_half() -> None:
    raw = "é".encode() * MAX_RAW_BYTES  # 2 bytes per character
    dead = dead_letter_for(raw, "too_large", "x", None, RECEIVED_AT)
    assert dead.raw_encoding == "utf-8" and dead.raw_truncated and dead.raw == "é" * (MAX_RAW_BYTES // 2)
    raw = b"a" + "é".encode() * MAX_RAW_BYTES
    dead = dead_letter_for(raw, "too_large", "x", None, RECEIVED_AT)
    assert dead.raw_encoding == "utf-8" and len(dead.raw.encode()) == MAX_RAW_BYTES - 1
