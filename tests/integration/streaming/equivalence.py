"""What every equivalence test of the stream shares: the replay reference, waiting until the
workers processed a feed, and the checks that the stream published exactly what replay computes
and applied every event once (no loss, no double)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson

from pipeline.contracts import decode_event
from pipeline.kafka.tools import publish_sweep
from pipeline.offline.replay import replay
from pipeline.state_machine import ContactState, Event, builtin_model, snapshot
from pipeline.state_machine.clock import parse_rfc3339

from .harness import Pipeline, by_id, per_contact

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "journeys.jsonl"
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




def load_sample() -> list[bytes]:
    """The shipped sample's lines a producer can route (a line without a readable ``source`` has
    no topic to go to)."""
    return [line for line in SAMPLE.read_bytes().splitlines() if b'"source"' in line and line.endswith(b"}")]


def sample_end(sample: list[bytes]) -> int:
    return max(parse_rfc3339(orjson.loads(line)["occurred_at"]) for line in sample if b"occurred_at" in line)


def assert_each_event_applied_once(pipeline: Pipeline, sample: list[bytes]) -> None:
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
