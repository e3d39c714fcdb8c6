"""Filters, the retry schedule, committable offsets and dead-letter records: the pure parts."""

from __future__ import annotations

import base64
import json
import random

import pytest

from pipeline.webhooks import deadletter
from pipeline.webhooks.backoff import backoff_delay, next_delay, parse_retry_after
from pipeline.webhooks.config import EventFilter, RetryPolicy
from pipeline.webhooks.events import (
    BECAME_HOT,
    IDENTITY_MERGED,
    STAGE_CHANGED,
    TEMPERATURE_CHANGED,
    UndeliverableRecord,
    select,
)
from pipeline.webhooks.offsets import PartitionProgress

ALERT = json.dumps({"alert_id": "a-1", "type": "became_hot", "contact_id": "c-1", "stage": "lead"}).encode()


def transition(kind: str, from_: str, to: str) -> bytes:
    return json.dumps({"transition_id": f"t-{from_}-{to}", "contact_id": "c-1", "kind": kind,
                       "from": from_, "to": to, "direction": "advance"}).encode()


def test_alerts_go_to_became_hot_subscriptions_with_their_own_id_and_exact_bytes() -> None:
    delivery = select("alerts", ALERT, EventFilter(became_hot=True))
    assert delivery is not None
    assert (delivery.delivery_id, delivery.event, delivery.body) == ("a-1", BECAME_HOT, ALERT)
    assert select("alerts", ALERT, EventFilter(temperature_changes=True)) is None


def test_a_became_hot_alert_caused_by_a_merge_is_an_ordinary_alert() -> None:
    """The merge's alert has the ordinary type: only the type routes an alert, nothing filters merges."""
    merged = json.dumps({"alert_id": "a-merge", "type": "became_hot", "contact_id": "c-42", "stage": "lead"}).encode()
    delivery = select("alerts", merged, EventFilter(became_hot=True))
    assert delivery is not None and (delivery.delivery_id, delivery.event) == ("a-merge", BECAME_HOT)


@pytest.mark.parametrize(
    ("wanted", "record", "selected"),
    [
        (EventFilter(stages_into=frozenset({"customer"})), transition("stage", "buyer", "customer"), True),
        (EventFilter(stages_into=frozenset({"customer"})), transition("stage", "customer", "member"), False),
        (EventFilter(stages_out_of=frozenset({"customer"})), transition("stage", "customer", "buyer"), True),
        (EventFilter(stages_out_of=frozenset({"customer"})), transition("stage", "buyer", "customer"), False),
        (EventFilter(stages_into=frozenset({"*"})), transition("stage", "niche", "lead"), True),
        (EventFilter(stages_into=frozenset({"*"})), transition("temperature", "cold", "warm"), False),
        (EventFilter(temperature_changes=True), transition("temperature", "hot", "warm"), True),
        (EventFilter(temperature_changes=True), transition("stage", "niche", "lead"), False),
        (EventFilter(identity_merges=True), transition("identity", "anon:v-42", "c-42"), True),
        (EventFilter(identity_merges=True), transition("stage", "niche", "lead"), False),
        (EventFilter(stages_into=frozenset({"*"}), stages_out_of=frozenset({"*"}), temperature_changes=True),
         transition("identity", "anon:v-42", "c-42"), False),
    ],
)
def test_transition_filters(wanted: EventFilter, record: bytes, selected: bool) -> None:
    delivery = select("transitions", record, wanted)
    assert (delivery is not None) == selected
    if delivery is not None:
        kind = json.loads(record)["kind"]
        events = {"stage": STAGE_CHANGED, "temperature": TEMPERATURE_CHANGED, "identity": IDENTITY_MERGED}
        assert delivery.event == events[kind]
        assert delivery.delivery_id == json.loads(record)["transition_id"]


@pytest.mark.parametrize("value", [b"", b"not json", b"[]", b'{"kind": "stage"}', b"\xff\xfe"])
def test_unreadable_records_are_named(value: bytes) -> None:
    with pytest.raises(UndeliverableRecord):
        select("transitions", value, EventFilter(stages_into=frozenset({"*"})))


def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    policy = RetryPolicy(timeout=1, retry_for=86_400, backoff_initial=1, backoff_max=60)
    rng = random.Random(7)
    for failures, ceiling in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (500, 60)]:
        delays = [backoff_delay(policy, failures, rng.random) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8, "full jitter spreads over the whole interval"
    assert backoff_delay(policy, 3, lambda: 0.999999) == pytest.approx(4, rel=1e-3)


def test_the_retry_window_ends_in_a_dead_letter() -> None:
    policy = RetryPolicy(timeout=1, retry_for=100, backoff_initial=10, backoff_max=10)
    assert next_delay(policy, 1, elapsed=50, draw=lambda: 0.5) == 5
    assert next_delay(policy, 1, elapsed=96, draw=lambda: 0.5) is None
    assert next_delay(RetryPolicy(retry_for=0), 1, elapsed=0, draw=lambda: 0.1) is None


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(timeout=1, retry_for=10_000, backoff_initial=1, backoff_max=120)
    assert next_delay(policy, 1, 0, retry_after=30, draw=lambda: 0.0) == 30
    assert next_delay(policy, 1, 0, retry_after=9_999, draw=lambda: 0.0) == 120
    assert parse_retry_after("17") == 17 and parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after(None) is None and parse_retry_after("-1") is None


def test_commits_stop_at_the_lowest_unfinished_record() -> None:
    progress = PartitionProgress()
    assert progress.committable() is None
    progress.skip(0)
    assert progress.committable() == 1
    for offset in (1, 2, 3):
        progress.take(offset)
    progress.skip(4)
    assert progress.committable() == 1
    progress.finish(2)
    progress.finish(3)
    assert progress.committable() == 1 and progress.unfinished == 1
    progress.finish(1)
    assert progress.committable() == 5 and progress.held == 0


def test_out_of_order_finishes_in_any_order_commit_everything() -> None:
    rng = random.Random(3)
    progress = PartitionProgress()
    offsets = list(range(100, 300))
    for offset in offsets:
        progress.take(offset)
    rng.shuffle(offsets)
    finished: set[int] = set()
    for offset in offsets:
        progress.finish(offset)
        finished.add(offset)
        lowest_unfinished = min(set(range(100, 300)) - finished, default=300)
        assert progress.committable() == lowest_unfinished


def test_dead_letter_embeds_the_record_or_keeps_raw_bytes() -> None:
    common = dict(subscription="crm", delivery_id="a-1", event=BECAME_HOT, reason=deadletter.RETRIES_EXHAUSTED,
                  detail="HTTP 500", attempts=3, last_status=500, last_error="HTTP 500: boom",
                  first_attempt_at=1_767_225_600.0, last_attempt_at=1_767_225_660.5, now=1_767_225_661.0,
                  topic="lead.alerts", partition=2, offset=41)
    record = json.loads(deadletter.encode(value=ALERT, **common))  # type: ignore[arg-type]
    assert record["record"] == json.loads(ALERT) and record["raw"] is None
    assert record["first_attempt_at"] == "2026-01-01T00:00:00.000Z"
    assert record["last_attempt_at"] == "2026-01-01T00:01:00.500Z"
    assert (record["attempts"], record["last_status"], record["offset"]) == (3, 500, 41)
    text = json.loads(deadletter.encode(value=b"not json", **common))  # type: ignore[arg-type]
    assert text["record"] is None and (text["raw"], text["raw_encoding"]) == ("not json", "utf-8")
    binary = json.loads(deadletter.encode(value=b"\xff\x00", **common))  # type: ignore[arg-type]
    assert base64.b64decode(binary["raw"]) == b"\xff\x00" and binary["raw_encoding"] == "base64"


def _alert(alert_type: str) -> bytes:
    return json.dumps({"alert_id": f"a-{alert_type}", "type": alert_type, "contact_id": "c-1"}).encode()


@pytest.mark.parametrize(
    ("wanted", "alert_type", "event"),
    [
        (EventFilter(response_overdue=True), "response_overdue", "lead.response_overdue"),
        (EventFilter(response_overdue=True), "became_hot", None),
        (EventFilter(response_overdue=True), "alert_answered", None),
        (EventFilter(became_hot=True), "response_overdue", None),  # the escalation is asked for on its own
        (EventFilter(became_hot=True), "alert_answered", None),
        (EventFilter(alerts_answered=True), "alert_answered", "lead.alert_answered"),
        (EventFilter(became_hot=True, response_overdue=True), "response_overdue", "lead.response_overdue"),
        (EventFilter(stages_into=frozenset({"*"})), "response_overdue", None),
        (EventFilter(response_overdue=True), "some_future_type", None),
    ],
)
def test_speed_to_lead_alerts_are_selected_by_their_own_flags(
    wanted: EventFilter, alert_type: str, event: str | None
) -> None:
    delivery = select("alerts", _alert(alert_type), wanted)
    assert (None if delivery is None else delivery.event) == event
    if delivery is not None:
        assert delivery.delivery_id == f"a-{alert_type}" and delivery.body == _alert(alert_type)
