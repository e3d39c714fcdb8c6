"""The streaming pipeline against a real broker: equivalence with replay, crash, two workers,
bad input, and the cooling sweep.

Ordering contract under test (docs/streaming.md, "Ordering"): a contact's events are applied in event-time
order when they reach the contact processor within the reorder window of each other; the
workers here run with a 1 s window and the feed is paced, and every test checks that no event
had to be applied late, so an equality below is guaranteed by that contract, not by luck.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from pipeline.contracts import decode_event
from pipeline.kafka.tools import publish_sweep
from pipeline.offline.replay import replay
from pipeline.state_machine import ContactState, Event, builtin_model, decode_state, snapshot
from pipeline.state_machine.clock import parse_rfc3339
from tests.support.brokers import TestBroker

from .harness import Pipeline, by_id, per_contact

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "journeys.jsonl"
RATE = 600.0  # events per second published
WINDOW = {"reorder_window": 1.0, "sweep_clock": "event"}


class Reference:
    """What ``leadflow replay --until`` produces for the same lines."""

    def __init__(self, lines: list[bytes], until: int) -> None:
        out, alerts, dead = io.BytesIO(), io.BytesIO(), io.BytesIO()
        self.states: dict[str, ContactState] = {}
        model = builtin_model()
        stats = replay(iter(lines), model, received_at=time.time_ns() // 1000, until=until,
                       out=out, alerts=alerts, deadletter=dead, keep_states=self.states)
        self.stats = stats
        self.transitions = [orjson.loads(x) for x in out.getvalue().splitlines()]
        self.alerts = [orjson.loads(x) for x in alerts.getvalue().splitlines()]
        self.dead = [orjson.loads(x) for x in dead.getvalue().splitlines()]


@pytest.fixture(scope="module")
def sample() -> list[bytes]:
    # Lines a producer can route (a line without a readable `source` has no topic to go to).
    return [line for line in SAMPLE.read_bytes().splitlines() if b'"source"' in line and line.endswith(b"}")]


@pytest.fixture(scope="module")
def until(sample: list[bytes]) -> int:
    return max(parse_rfc3339(orjson.loads(line)["occurred_at"]) for line in sample if b"occurred_at" in line)


@pytest.fixture(scope="module")
def reference(sample: list[bytes], until: int) -> Reference:
    return Reference(sample, until)


def wait_until_processed(workers: list[Any], events: int, timeout: float = 120.0) -> None:
    """Until the workers applied (or dropped as duplicates) ``events`` input events and have been
    idle for a moment (routed referral credit included)."""
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        stats = [w.stats()["processor"] for w in workers if w.process.poll() is None]
        done = sum(s["applied"] + s["duplicates"] for s in stats)
        batches = sum(s["batches"] for s in stats)
        if (done, batches) != last:
            last, since = (done, batches), time.monotonic()
        elif done >= events and time.monotonic() - since > 1.5:
            return
        time.sleep(0.25)
    raise AssertionError(f"workers processed {last} of {events} events in {timeout}s")


def processed_by(*workers: Any) -> Callable[[], int]:
    """Input events the workers applied or skipped as duplicates (held ones count when applied)."""
    def count() -> int:
        stats = [w.stats()["processor"] for w in workers if w.process.poll() is None]
        return sum(s["applied"] + s["duplicates"] for s in stats)
    return count


def assert_equivalent(pipeline: Pipeline, reference: Reference, until: int, workers: list[Any],
                      already_processed: int = 0) -> None:
    # The event-time sweep is an operator's move after a backfill is in: like `replay --until`,
    # it comes after every event (referral credit routed between partitions included).
    expected = reference.stats.applied + reference.stats.duplicates - already_processed
    wait_until_processed(workers, expected)
    publish_sweep(pipeline.settings, until)
    transitions = pipeline.wait_for("transitions", len(reference.transitions), timeout=60, strict=False)
    alerts = pipeline.wait_for("alerts", len(reference.alerts), timeout=30, strict=False)
    late = sum(w.stats()["processor"]["late"] for w in workers if w.process.poll() is None)
    assert late == 0, f"{late} events reached the processor outside the reorder window"
    streamed, expected = by_id(transitions, "transition_id"), by_id(reference.transitions, "transition_id")
    missing = [expected[k] for k in expected.keys() - streamed.keys()]
    extra = [streamed[k] for k in streamed.keys() - expected.keys()]
    assert not missing and not extra, f"missing {missing[:5]}, unexpected {extra[:5]}"
    differ = {k: {"contact_id": record["contact_id"], "reason": record["reason"],
                  **{f: (v, streamed[k].get(f)) for f, v in record.items() if streamed[k].get(f) != v}}
              for k, record in expected.items() if streamed[k] != record}
    assert not differ, f"{len(differ)} transitions differ (field: (replay, stream)): {list(differ.values())[:5]}"
    # Value segments (issue 14): the sample moves contacts into all four segments, some by time alone.
    segment_moves = [t for t in expected.values() if t["kind"] == "segment"]
    assert {t["to"] for t in segment_moves} >= {"loyal", "big_potential", "small_value", "negative"}
    assert any(t["trigger_event_id"] is None for t in segment_moves), "time-driven segment moves"
    assert by_id(alerts, "alert_id") == by_id(reference.alerts, "alert_id")
    # Each contact's transitions come out in the order the engine made them.
    first_seen = {c: list(dict.fromkeys(ids)) for c, ids in per_contact(transitions).items()}
    assert first_seen == per_contact(reference.transitions)
    states = pipeline.contact_states()
    assert states == reference.states
    # lead.contacts: the newest snapshot of every contact is the public view of its final state.
    newest = {record["contact_id"]: record for record in pipeline.wait_for("contacts", len(reference.states))}
    model = builtin_model()
    assert newest == {c: orjson.loads(msgspec.json.encode(snapshot(s, model))) for c, s in reference.states.items()}


def test_streaming_equals_replay(broker: TestBroker, namespace: str, tmp_path: Path,
                                 sample: list[bytes], reference: Reference, until: int) -> None:
    pipeline = Pipeline(broker, namespace, tmp_path, **WINDOW)
    with pipeline.worker() as worker:
        worker.ready()
        pipeline.publish_in_waves(sample, processed_by(worker))
        assert_equivalent(pipeline, reference, until, [worker])
        stats = worker.stats()
        read = sum(f["events"] + sum(f["dead_lettered"].values()) for f in stats["ingest"].values())
        processed = stats["processor"]["applied"] + stats["processor"]["duplicates"]
        dead = sum(sum(f["dead_lettered"].values()) for f in stats["ingest"].values())
        assert read == processed + dead == len(sample)
        assert stats["processor"]["duplicates"] == reference.stats.duplicates


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_crash_and_restart_lose_nothing(broker: TestBroker, namespace: str, tmp_path: Path, store: str,
                                        sample: list[bytes], reference: Reference, until: int) -> None:
    if store == "rocksdb":
        pytest.importorskip("rocksdict", reason="the rocksdb store needs rocksdict (the dev extra installs it)")
    pipeline = Pipeline(broker, namespace, tmp_path, store=store, **WINDOW)
    cut = len(sample) * 2 // 5
    with pipeline.worker("first") as worker:
        worker.ready()
        pipeline.publish_in_waves(sample[:cut], processed_by(worker))
        pipeline.wait_for("transitions", 1)
        worker.kill()  # SIGKILL mid-stream: no clean shutdown, no final commit
    with pipeline.worker("second") as worker:
        worker.ready(timeout=120)
        pipeline.publish_in_waves(sample[cut:], processed_by(worker))
        first_part = Reference(sample[:cut], until).stats
        assert_equivalent(pipeline, reference, until, [worker],
                          already_processed=first_part.applied + first_part.duplicates)
    # No contact applied an event twice: a person's count equals the distinct events of the person
    # and of every anonymous id merged into them (plus referral credit); a merged anonymous contact
    # keeps the count it had when it was merged.
    distinct: dict[str, set[str]] = {}
    for line in sample:
        event = decode_event(line, family=None, received_at=time.time_ns() // 1000)
        if isinstance(event, Event):
            distinct.setdefault(event.contact, set()).add(event.event_id)
    states = pipeline.contact_states()
    people: dict[str, set[str]] = {}
    for contact, ids in distinct.items():
        owner = states[contact].merged_into if contact in states else None
        people.setdefault(owner or contact, set()).update(ids)
    assert any(state.merged_into for state in states.values()), "the sample has identity merges"
    for contact, state in states.items():
        if state.merged_into is not None:
            assert state.events_applied <= len(distinct.get(contact, ())), contact
        else:
            assert state.events_applied == len(people.get(contact, ())) + state.referrals_converted, contact


def test_two_workers_share_the_partitions(broker: TestBroker, namespace: str, tmp_path: Path,
                                          sample: list[bytes], reference: Reference, until: int) -> None:
    pipeline = Pipeline(broker, namespace, tmp_path, **WINDOW)
    with pipeline.worker("a") as first, pipeline.worker("b") as second:
        first.ready(timeout=120)
        second.ready(timeout=120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until the rebalance gave each worker partitions
            owned = [set(w.stats()["processor"]["partitions"]) for w in (first, second)]
            if all(first.stats()["ingest"]) and owned:
                break
            time.sleep(0.5)
        pipeline.publish_in_waves(sample, processed_by(first, second))
        assert_equivalent(pipeline, reference, until, [first, second])
        owned = [set(w.stats()["processor"]["partitions"]) for w in (first, second)]
        assert owned[0] and owned[1] and not owned[0] & owned[1], owned


BAD_INPUTS: list[tuple[str, bytes | None, str]] = [
    ("website", b'{"event_id": "x1", "event_type": "page_view",', "invalid_json"),
    ("website", b"\xff\xfe\x00garbage\x80", "invalid_encoding"),
    ("website", None, "invalid_json"),  # an empty value
    ("website", b'[1, "two"]', "not_an_object"),  # a batch of two non-objects: one dead letter each
    ("website", b'[3]', "not_an_object"),
    ("email", orjson.dumps({"event_id": "x2", "event_type": "email_clicked", "contact_id": "c1",
                            "occurred_at": "2025-05-01T10:00:00Z", "properties": {"campaign_id": "k"}}),
     "schema_violation"),
    ("email", orjson.dumps({"event_id": "x3", "event_type": "page_view", "contact_id": "c1",
                            "occurred_at": "2025-05-01T10:00:00Z", "properties": {"url": "https://a.b"}}),
     "wrong_source"),
    ("purchase", orjson.dumps({"event_id": "x4", "event_type": "order_completed", "contact_id": "c1",
                               "occurred_at": "2025-05-01T10:00:00Z",
                               "properties": {"order_id": "o", "amount": -1, "currency": "VND", "tier": "core"}}),
     "schema_violation"),
    ("purchase", orjson.dumps({"event_id": "x5", "event_type": "order_completed", "contact_id": "c1",
                               "occurred_at": "2025-05-01T10:00:00Z",
                               "properties": {"order_id": "o", "amount": 1, "currency": "VND", "tier": "core",
                                              "note": "x" * 70_000}}),
     "too_large"),
    ("purchase", orjson.dumps({"event_id": "x6", "event_type": "teleported", "contact_id": "c1",
                               "occurred_at": "2025-05-01T10:00:00Z", "properties": {}}),
     "unknown_event_type"),
    ("email", orjson.dumps({"event_id": "x7", "event_type": "email_opened",
                            "occurred_at": "2025-05-01T10:00:00Z", "properties": {"campaign_id": "k"}}),
     "missing_identity"),
]


def good(event_id: str, contact: str, event_type: str, **properties: Any) -> bytes:
    return orjson.dumps({"event_id": event_id, "event_type": event_type, "contact_id": contact,
                         "occurred_at": "2025-05-01T10:00:00Z", "properties": properties})


def test_bad_input_is_dead_lettered_while_good_events_flow(broker: TestBroker, namespace: str,
                                                           tmp_path: Path) -> None:
    pipeline = Pipeline(broker, namespace, tmp_path)
    with pipeline.worker() as worker:
        worker.ready()
        for number, (family, value, _) in enumerate(BAD_INPUTS):
            before = {
                "website": good(f"g{number}a", f"ok{number}", "form_submit", form_id="f"),
                "email": good(f"g{number}a", f"ok{number}", "email_replied", campaign_id="k"),
                "purchase": good(f"g{number}a", f"ok{number}", "order_completed", order_id=f"o{number}",
                                 amount=10, currency="VND", tier="entry"),
            }[family]
            pipeline.publish_raw(family, [before, value])
        dead = pipeline.wait_for("deadletter", len(BAD_INPUTS) + 1)
        transitions = pipeline.wait_for("transitions", len(BAD_INPUTS))
    codes = sorted(record["error_code"] for record in dead)
    assert codes == sorted([code for _, _, code in BAD_INPUTS] + ["not_an_object"])
    for record in dead:
        assert record["topic"].startswith(namespace) and record["offset"] >= 0 and record["error_detail"]
    moved = {t["contact_id"] for t in transitions if t["kind"] == "stage"}
    assert moved == {f"ok{n}" for n in range(len(BAD_INPUTS))}


COOLING_MODEL = (Path(__file__).resolve().parents[3] / "pipeline" / "state_machine" / "models"
                 / "default.toml").read_text()


def test_cooling_sweep_fires_without_an_event(broker: TestBroker, namespace: str, tmp_path: Path) -> None:
    # The default model, except that a lead cools off after 4 quiet seconds instead of 90 days.
    model = tmp_path / "fast-cooling.toml"
    model.write_text(COOLING_MODEL.replace("after_days = 90\n", f"after_days = {4 / 86400}\n"))
    pipeline = Pipeline(broker, namespace, tmp_path, model=str(model), sweep_clock="wall",
                        sweep_interval=0.5)
    with pipeline.worker() as worker:
        worker.ready()
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        pipeline.publish_raw("website", [orjson.dumps({
            "event_id": "q1", "event_type": "signup", "contact_id": "quiet", "occurred_at": now,
            "properties": {}})])
        transitions = pipeline.wait_for("transitions", 2, timeout=60)
    moves = [(t["from"], t["to"], t["reason"], t["trigger_event_id"]) for t in transitions if t["kind"] == "stage"]
    assert moves == [("niche", "lead", "signed_up", "q1"), ("lead", "niche", "lead_went_quiet", None)]
    cooled = next(t for t in transitions if t["reason"] == "lead_went_quiet")
    assert parse_rfc3339(cooled["occurred_at"]) - parse_rfc3339(now) == pytest.approx(4_000_000, abs=1)


def test_contact_state_codec_roundtrip() -> None:
    state = ContactState(contact="c1", identified=True, seen=b"12345678")
    from pipeline.state_machine import encode_state

    assert decode_state(encode_state(state)) == state
