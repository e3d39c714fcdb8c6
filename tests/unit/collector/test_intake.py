"""Request bodies to Kafka records: framing, the shared contract's verdicts, the stamped context."""

from __future__ import annotations

import msgspec
import pytest

from pipeline.collector.intake import Body, BodyError, split_body, take_events
from pipeline.contracts import MAX_EVENT_BYTES

NOW = 1_790_000_000_000_000  # 2026-09-21T...Z in microseconds
_encode = msgspec.json.encode


def envelope(event_id: str = "e1", **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": event_id,
        "event_type": "page_view",
        "anonymous_id": "anon-1",
        "occurred_at": "2026-09-21T10:00:00Z",
        "properties": {"url": "https://example.com/"},
    }
    base.update(fields)
    return base


def test_a_json_object_is_one_envelope() -> None:
    body = split_body(_encode(envelope()), "application/json")
    assert body.single and len(body.elements) == 1


def test_a_json_array_is_a_batch_and_keeps_each_element_as_received() -> None:
    raw = b'[ {"a": 1},\n {"b":  2} ]'
    body = split_body(raw, "text/plain")
    assert not body.single
    assert body.elements == [b'{"a": 1}', b'{"b":  2}']


def test_ndjson_lines_are_a_batch_blank_lines_and_crlf_ignored() -> None:
    body = split_body(b'{"a":1}\r\n\n  \n{"b":2}', "application/x-ndjson")
    assert body.elements == [b'{"a":1}', b'{"b":2}']


@pytest.mark.parametrize(
    ("raw", "media", "status", "code"),
    [
        (b"", "application/json", 400, "invalid_json"),
        (b"  \n", "application/x-ndjson", 400, "invalid_json"),
        (b"[1, 2", "application/json", 400, "invalid_json"),
        (b"[]", "application/json", 400, "schema_violation"),
        (b'[{"a": "\xff"', "application/json", 400, "invalid_encoding"),
        (b"[" + b",".join([b"{}"] * 501) + b"]", "application/json", 413, "too_large"),
        (b"\n".join([b"{}"] * 501), "application/x-ndjson", 413, "too_large"),
    ],
)
def test_unreadable_bodies(raw: bytes, media: str, status: int, code: str) -> None:
    with pytest.raises(BodyError) as caught:
        split_body(raw, media)
    assert (caught.value.status, caught.value.error_code) == (status, code)
    assert caught.value.detail.startswith("$")


def test_500_events_are_allowed() -> None:
    assert len(split_body(b"\n".join([b"{}"] * 500), "application/x-ndjson").elements) == 500


def test_valid_events_are_stamped_and_keyed_by_contact() -> None:
    events = [envelope("e1", contact_id="c-7"), envelope("e2", context={"locale": "vi", "ip": "spoofed"})]
    intake = take_events(Body([_encode(e) for e in events], single=False), "website", NOW, "203.0.113.0")
    assert intake.event_ids == ["e1", "e2"] and not intake.rejected
    (key1, value1), (key2, value2) = intake.records
    assert key1 == b"c-7" and key2 == b"anon-1"  # contact_id, else anonymous_id (like `leadflow produce`)
    first, second = msgspec.json.decode(value1), msgspec.json.decode(value2)
    assert first["context"] == {"received_at": "2026-09-21T14:13:20Z", "ip": "203.0.113.0"}
    assert second["context"] == {"locale": "vi", "ip": "203.0.113.0", "received_at": "2026-09-21T14:13:20Z"}
    assert {k: v for k, v in first.items() if k != "context"} == events[0]


def test_without_an_address_only_received_at_is_added() -> None:
    intake = take_events(Body([_encode(envelope())], single=True), "website", NOW, None)
    assert msgspec.json.decode(intake.records[0][1])["context"] == {"received_at": "2026-09-21T14:13:20Z"}


def test_rejections_carry_the_contract_codes_and_index() -> None:
    elements = [
        _encode(envelope("ok")),
        b"{not json",
        _encode(envelope("bad-type", event_type="no_such_event")),
        _encode(envelope("wrong", event_type="order_completed")),
        _encode({k: v for k, v in envelope("who").items() if k != "anonymous_id"}),
        _encode(envelope("future", occurred_at="2099-01-01T00:00:00Z")),
        _encode(envelope("props", properties={})),
        b"[1]",
        b'{"event_id": "\xff"}',
    ]
    intake = take_events(Body(elements, single=False), "website", NOW, None)
    assert intake.event_ids == ["ok"]
    assert [(r.index, r.event_id, r.error_code) for r in intake.rejected] == [
        (1, None, "invalid_json"),
        (2, "bad-type", "unknown_event_type"),
        (3, "wrong", "wrong_source"),
        (4, "who", "missing_identity"),
        (5, "future", "future_timestamp"),
        (6, "props", "schema_violation"),
        (7, None, "not_an_object"),
        (8, None, "invalid_encoding"),
    ]
    assert intake.rejected[5].detail == "$.properties.url: required for page_view"


def test_an_event_that_outgrows_the_limit_with_the_stamp_is_rejected_not_published() -> None:
    filler = "x" * (MAX_EVENT_BYTES - 300)
    raw = _encode(envelope(properties={"url": "https://example.com/", "note": filler}))
    assert len(raw) <= MAX_EVENT_BYTES
    padding = MAX_EVENT_BYTES - len(raw) - 10
    raw = _encode(envelope(properties={"url": "https://example.com/", "note": filler + "y" * padding}))
    intake = take_events(Body([raw], single=True), "website", NOW, "2001:db8:1::")
    assert not intake.records
    assert intake.rejected[0].error_code == "too_large"


def test_big_integers_and_unicode_survive_re_encoding() -> None:
    raw = _encode(envelope(properties={"url": "https://example.com/ảnh", "n": 2**70}))
    intake = take_events(Body([raw], single=True), "website", NOW, None)
    assert msgspec.json.decode(intake.records[0][1])["properties"] == {"url": "https://example.com/ảnh", "n": 2**70}
