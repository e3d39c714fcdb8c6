"""Every example is accepted and every counter-example rejected, by the schema files and the code."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from pipeline.contracts import DeadLetter, decode_event, decode_message, encode_deadletter
from pipeline.contracts.fastpath import fast_event
from pipeline.state_machine.events import Event

from .conftest import COUNTER_EXAMPLES, EXAMPLES, RECEIVED_AT, Case, schema_name


@pytest.mark.parametrize("case", EXAMPLES, ids=str)
def test_example_is_valid_by_the_schema(case: Case, validators: dict[str, Any]) -> None:
    errors = [error.message for error in validators[schema_name(case.family)].iter_errors(case.document)]
    assert errors == []


@pytest.mark.parametrize("case", EXAMPLES, ids=str)
def test_example_is_accepted_by_the_code(case: Case) -> None:
    event = decode_event(case.raw, family=case.family, received_at=RECEIVED_AT)
    assert isinstance(event, Event), event
    document = case.document
    assert event.event_id == document["event_id"]
    assert event.event_type == document["event_type"]
    assert event.source == (case.family or document["source"])
    assert event.identified == ("contact_id" in document)
    expected_contact = document.get("contact_id") or "anon:" + document["anonymous_id"]
    assert event.contact == expected_contact
    assert event.referred_by == document.get("referred_by")
    assert event.properties == document.get("properties", {})  # extras kept (5.0 == 5)


@pytest.mark.parametrize("case", EXAMPLES, ids=str)
def test_example_in_a_batch_and_alone_gives_the_same_event(case: Case) -> None:
    family = case.family or case.document["source"]
    alone = decode_message(case.raw, family=family, received_at=RECEIVED_AT)
    batch = decode_message(b"[" + case.raw + b"," + case.raw + b"]", family=family, received_at=RECEIVED_AT)
    assert alone == batch[:1] == batch[1:]
    assert alone == [decode_event(case.raw, family=family, received_at=RECEIVED_AT)]


@pytest.mark.parametrize("case", [c for c in COUNTER_EXAMPLES if c.schema], ids=str)
def test_counter_example_is_rejected_by_the_schema(case: Case, validators: dict[str, Any]) -> None:
    assert not validators[schema_name(case.family)].is_valid(case.document)


@pytest.mark.parametrize("case", COUNTER_EXAMPLES, ids=str)
def test_counter_example_is_rejected_by_the_code_with_its_error_code(case: Case) -> None:
    dead = decode_event(case.raw, family=case.family, received_at=RECEIVED_AT)
    assert isinstance(dead, DeadLetter), dead
    assert dead.error_code == case.expect, dead.error_detail
    assert dead.error_detail.startswith(case.detail) or case.detail in dead.error_detail, dead.error_detail
    assert fast_event(case.raw, case.family, RECEIVED_AT) is None


@pytest.mark.parametrize("case", COUNTER_EXAMPLES, ids=str)
def test_dead_letter_matches_its_schema_and_keeps_the_input(case: Case, validators: dict[str, Any]) -> None:
    dead = decode_event(case.raw, family=case.family, received_at=RECEIVED_AT)
    assert isinstance(dead, DeadLetter)
    record = msgspec.json.decode(encode_deadletter(dead))
    assert [e.message for e in validators["deadletter"].iter_errors(record)] == []
    assert dead.received_at == "2026-03-01T12:00:00Z"
    if dead.raw_encoding == "utf-8":
        assert dead.raw.encode("utf-8") == case.raw
    else:
        assert case.expect == "invalid_encoding"
    if case.schema:  # the document was readable: event_id is copied when it is a string
        event_id = case.document.get("event_id")
        assert dead.event_id == (event_id if isinstance(event_id, str) else None)
    if case.family is not None:
        assert dead.source == case.family


@pytest.mark.parametrize("case", [c for c in COUNTER_EXAMPLES if c.family is not None], ids=str)
def test_counter_example_in_a_batch_is_one_dead_letter_between_good_events(case: Case) -> None:
    good = EXAMPLES[0].raw if case.family == "website" else next(c.raw for c in EXAMPLES if c.family == case.family)
    assert case.family is not None
    results = decode_message(b"[" + good + b",\n" + case.raw + b" ," + good + b"]", family=case.family,
                             received_at=RECEIVED_AT)
    if len(results) == 1:  # the element broke the batch's JSON syntax: the whole message is dead
        assert case.expect in ("invalid_json", "invalid_encoding")
        assert isinstance(results[0], DeadLetter) and results[0].error_code in ("invalid_json", "invalid_encoding")
        return
    assert len(results) == 3
    assert isinstance(results[0], Event) and isinstance(results[2], Event)
    dead = results[1]
    assert isinstance(dead, DeadLetter)
    assert dead.error_code == case.expect
    assert dead.error_detail.startswith("batch element 1: ")
    assert dead.raw.encode() == case.raw.strip() or dead.raw_encoding == "base64"
