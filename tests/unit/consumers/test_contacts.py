"""The contact processor's steps, each on its own, and a batch through the unit of work.

The real engine and the default model; the store, the outputs and the changelog are the
in-memory fakes of :mod:`pipeline.streaming.in_memory`; events are written by hand.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import pytest

from pipeline.config.settings import from_env
from pipeline.config.topics import partition_for
from pipeline.consumers.contacts import (
    CallbackUnit,
    ContactRuntime,
    collect_outputs,
    lateness,
    order_by_event_time,
)
from pipeline.contracts import internal as wire
from pipeline.state_machine import REFERRAL_CONVERTED, ContactState, Event, builtin_model
from pipeline.state_machine.processor import Outcome
from pipeline.streaming.in_memory import InMemoryBroker, InMemoryStore, in_memory_unit

S = 1_000_000
DAY = 86_400 * S
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
PARTITIONS = 4


def event(event_id: str, event_type: str, contact: str, at: int, **fields: Any) -> Event:
    source = "purchase" if event_type.startswith("order_") else "website"
    return Event(event_id, event_type, source, contact, T0 + at, True, **fields)


def core_order(event_id: str, contact: str, at: int) -> Event:
    return event(event_id, "order_completed", contact, at, properties={"order_id": event_id, "amount": 500,
                                                                       "tier": "core"})


class Processor:
    """A ContactRuntime over the in-memory store, outputs and changelog (one journal for all)."""

    def __init__(self, snapshots: bool = False) -> None:
        self.settings = from_env({}, partitions=PARTITIONS, contact_snapshots=snapshots, metrics=False)
        self.store = InMemoryStore()
        self.broker = InMemoryBroker(journal=self.store.journal)
        self.runtime = ContactRuntime(builtin_model(), self.settings, self.store, self.broker.send)
        self.topics = self.runtime.topics

    def run(self, messages: list[tuple[int, bytes]]) -> None:
        asyncio.run(self.runtime.process(messages, in_memory_unit(self.broker, self.store)))

    def feed(self, *events: Event) -> None:
        by_partition: dict[int, list[Event]] = {}
        for e in events:
            by_partition.setdefault(partition_for(e.contact, PARTITIONS), []).append(e)
        self.run([(p, wire.encode(wire.ContactBatch(batch))) for p, batch in by_partition.items()])

    def decoded(self, topic: str) -> list[dict[str, Any]]:
        return [msgspec.json.decode(r.value or b"") for r in self.broker.records(topic)]


# --- decode_batch -----------------------------------------------------------------------------

def test_decode_batch_groups_events_and_ticks_by_partition(caplog: pytest.LogCaptureFixture) -> None:
    a, b = event("e1", "signup", "alice", 0), event("e2", "page_view", "bob", 1)
    messages = [
        (1, wire.encode(wire.ContactBatch([a], received_at=111))),
        (0, wire.encode(wire.SweepTick(clock=42))),
        (1, b"\xc1 not msgpack"),
        (1, wire.encode(wire.ContactBatch([b]))),  # routed credit: no received_at
        (0, wire.encode(wire.SweepTick(clock=7))),
    ]
    with caplog.at_level(logging.ERROR):
        batch = wire.decode_batch(messages)
    assert list(batch.partitions) == [1, 0]
    assert batch.partitions[1].events == [a, b] and batch.partitions[1].ticks == []
    assert batch.partitions[0].events == [] and batch.partitions[0].ticks == [42, 7]
    assert batch.received == [(111, 1)]
    assert "undecodable internal message skipped" in caplog.text


def test_decode_batch_of_only_undecodable_messages_has_no_partition() -> None:
    assert wire.decode_batch([(3, b"\xc1")]).partitions == {}


# --- order_by_event_time, lateness, collect_outputs --------------------------------------------

def test_events_are_ordered_by_event_time_then_event_id() -> None:
    late, tie_b = event("z", "page_view", "c", 5), event("b", "page_view", "c", 1)
    tie_a = event("a", "page_view", "c", 1)
    events = [late, tie_b, tie_a]
    assert order_by_event_time(events) == [tie_a, tie_b, late]
    assert events == [tie_a, tie_b, late]  # in place: the batch's lists are what the metrics see


def test_lateness_is_how_far_an_event_is_behind_its_contact_s_clock() -> None:
    known = ContactState(contact="c", identified=True, clock=T0 + 10 * S)
    assert lateness(event("e", "page_view", "c", 4 * S), known) == 6 * S
    assert lateness(event("e", "page_view", "c", 10 * S), known) == 0
    assert lateness(event("e", "page_view", "c", 11 * S), known) == 0
    assert lateness(event("e", "page_view", "c", 0), None) == 0  # a new contact is never late


def test_collect_outputs_appends_in_order() -> None:
    total, credit = Outcome(referrals_applied=1), event("r", REFERRAL_CONVERTED, "ref", 0)
    collect_outputs(total, Outcome(referrals_applied=2, routed=[credit]))
    assert total.referrals_applied == 3 and total.routed == [credit]


# --- apply_event / apply / fire_due -----------------------------------------------------------

def test_apply_counts_applied_duplicate_and_late_events(caplog: pytest.LogCaptureFixture) -> None:
    p = Processor()
    runtime = p.runtime.runtime(partition_for("alice", PARTITIONS))
    total = Outcome()
    p.runtime.apply_event(runtime, event("e2", "page_view", "alice", 10 * S), total)
    p.runtime.apply_event(runtime, event("e2", "page_view", "alice", 10 * S), total)  # redelivered
    with caplog.at_level(logging.WARNING):
        p.runtime.apply_event(runtime, event("e1", "signup", "alice", 0), total)  # older than the clock
    counts = p.runtime.counts
    assert (counts.applied, counts.duplicates, counts.late) == (2, 1, 1)
    assert "late event e1 (signup) for alice: occurred 10000000 µs before the contact's clock" in caplog.text
    stage_moves = [(t.from_, t.to, t.reason) for t in total.transitions if t.kind == "stage"]
    assert stage_moves == [("niche", "lead", "signed_up")]


def test_apply_sorts_within_the_batch_so_nothing_is_late() -> None:
    p = Processor()
    runtime = p.runtime.runtime(partition_for("alice", PARTITIONS))
    inputs = wire.PartitionInput(events=[event("e2", "page_view", "alice", 10 * S), event("e1", "signup", "alice", 0)])
    outcome = p.runtime.apply(runtime, inputs)
    assert p.runtime.counts.late == 0 and p.runtime.counts.applied == 2
    assert outcome.transitions[0].reason == "signed_up"


def test_a_sweep_tick_fires_the_cooling_that_is_due() -> None:
    p = Processor()
    p.feed(event("e1", "signup", "quiet", 0))
    runtime = p.runtime.partitions[partition_for("quiet", PARTITIONS)]
    total = Outcome()
    p.runtime.fire_due(runtime, T0 + 400 * DAY, total)
    assert ("lead", "niche", "lead_went_quiet") in [(t.from_, t.to, t.reason) for t in total.transitions]
    assert runtime.deadlines.fired == 1


# --- publish, publish_snapshots, stage_writes ---------------------------------------------------

def test_publish_sends_transitions_alerts_and_routes_referral_credit_to_the_referrer_s_partition() -> None:
    p = Processor()
    assert partition_for("alice", PARTITIONS) != partition_for("ref2", PARTITIONS)
    p.feed(event("e1", "demo_request", "alice", 0, referred_by="ref2"), core_order("o1", "alice", 60 * S))
    alerts = p.decoded(p.topics.alerts)
    assert [(a["contact_id"], a["type"]) for a in alerts] == [("alice", "became_hot")]
    assert all(r.key == b"alice" for r in p.broker.records(p.topics.transitions))
    [routed] = p.broker.records(p.topics.contact_events)
    assert routed.partition == partition_for("ref2", PARTITIONS) and routed.key is None
    message = wire.decode(routed.value or b"")
    assert isinstance(message, wire.ContactBatch) and message.events[0].contact == "ref2"
    assert message.events[0].event_type == REFERRAL_CONVERTED
    counts = p.runtime.counts
    assert counts.alerts == 1 and counts.referral_credits_routed == 1
    assert sum(counts.transitions.values()) == len(p.broker.records(p.topics.transitions))


def test_snapshots_are_published_once_per_changed_contact() -> None:
    p = Processor(snapshots=True)
    p.feed(event("e1", "signup", "alice", 0), event("e2", "page_view", "alice", S), event("e3", "signup", "bob", 0))
    snapshots = p.decoded(p.topics.contacts)
    assert sorted(s["contact_id"] for s in snapshots) == ["alice", "bob"]
    assert p.runtime.counts.snapshots == 2


def test_stage_writes_hands_each_changed_contact_once_and_clears_the_staging() -> None:
    p = Processor()
    partition = partition_for("alice", PARTITIONS)
    runtime = p.runtime.runtime(partition)
    p.runtime.apply(runtime, wire.PartitionInput(events=[event("e1", "signup", "alice", 0),
                                                         event("e2", "page_view", "alice", S)]))
    staged: list[tuple[int, dict[str, ContactState]]] = []

    class Recorder(CallbackUnit):
        def stage(self, partition: int, states: dict[str, ContactState]) -> None:
            staged.append((partition, states))

    p.runtime.stage_writes([partition], Recorder(p.broker.send, _never_written))
    assert [(part, list(states)) for part, states in staged] == [(partition, ["alice"])]
    assert staged[0][1]["alice"].events_applied == 2
    assert runtime.states.staged == {}


async def _never_written(partition: int, states: dict[str, ContactState]) -> None:
    raise AssertionError("not written by stage_writes")


# --- a whole batch ------------------------------------------------------------------------------

def test_a_batch_publishes_everything_before_it_writes_any_state() -> None:
    p = Processor(snapshots=True)
    p.feed(event("e1", "signup", "alice", 0), event("e2", "demo_request", "bob", 0))
    ops = [op for op, _ in p.store.journal]
    first_write = ops.index("put")
    assert "send" not in ops[first_write:]
    assert sorted(p.store) == ["alice", "bob"]
    assert [r.key for r in p.broker.records(p.broker.changelog_topic)] == [
        r.key for op, r in p.store.journal if op == "put"
    ]
    assert p.runtime.counts.batches == 1


def test_a_refused_output_fails_the_batch_before_any_state_is_written() -> None:
    p = Processor()
    p.broker.refuse(p.topics.transitions, ConnectionError("broker down"))
    with pytest.raises(ConnectionError):
        p.feed(event("e1", "signup", "alice", 0))
    assert p.runtime.counts.batches == 0  # not complete: Faust would not commit its offsets
    assert p.store == {} and p.broker.records(p.broker.changelog_topic) == []


def test_handle_with_callbacks_gives_the_same_bytes_as_the_unit_of_work() -> None:
    """The in-process entry (tests, benchmarks) and the worker's unit of work agree."""
    events = [event("e1", "signup", "alice", 0, referred_by="ref2"), core_order("o1", "alice", S),
              event("e2", "demo_request", "bob", 0), event("e3", "page_view", "ref2", 0)]
    messages = [(partition_for(e.contact, PARTITIONS), wire.encode(wire.ContactBatch([e]))) for e in events]
    unit_of_work = Processor(snapshots=True)
    unit_of_work.run(messages)
    callbacks = Processor(snapshots=True)
    table: dict[str, ContactState] = callbacks.store

    async def write(partition: int, staged: dict[str, ContactState]) -> None:
        table.update(staged)

    asyncio.run(callbacks.runtime.handle(messages, write))
    sent = [(r.topic, r.key, r.value, r.partition) for r in unit_of_work.broker.records_sent()]
    assert sent == [(r.topic, r.key, r.value, r.partition) for r in callbacks.broker.records_sent()]
    assert unit_of_work.store == callbacks.store
    assert unit_of_work.runtime.counts == callbacks.runtime.counts


def test_the_next_batch_is_computed_on_the_states_of_a_batch_still_committing() -> None:
    """The worker computes batch k+1 while batch k's acknowledgements are in flight: k+1 reads
    k's states (not the table's older ones), the table gets them only when k committed, and the
    overlay is gone once both committed."""
    p = Processor()
    p.broker.auto_ack = False
    partition = partition_for("alice", PARTITIONS)

    def message(*events: Event) -> list[tuple[int, bytes]]:
        return [(partition, wire.encode(wire.ContactBatch(list(events))))]

    async def scenario() -> None:
        first, second = in_memory_unit(p.broker, p.store), in_memory_unit(p.broker, p.store)
        durable_first = await p.runtime.run_batch(message(event("e1", "signup", "alice", 0)), first)
        durable_second = await p.runtime.run_batch(message(event("e2", "demo_request", "alice", S)), second)
        states = p.runtime.partitions[partition].states
        assert p.store == {}  # nothing acknowledged: nothing in the table yet
        assert states.inflight["alice"].events_applied == 2  # batch 2 applied on top of batch 1
        commit = asyncio.ensure_future(first.commit())
        while not commit.done():
            p.broker.acknowledge()
            await asyncio.sleep(0)
        durable_first()
        assert p.store["alice"].events_applied == 1 and states.inflight["alice"].events_applied == 2
        commit = asyncio.ensure_future(second.commit())
        while not commit.done():
            p.broker.acknowledge()
            await asyncio.sleep(0)
        durable_second()
        assert p.store["alice"].events_applied == 2 and states.inflight == {}
        assert p.runtime.counts.batches == 2

    asyncio.run(scenario())
    changelog = [r.state.events_applied for r in p.broker.records(p.broker.changelog_topic) if r.state]
    assert changelog == [1, 2]


# --- poison events (issue 15) -------------------------------------------------------------------

def test_an_event_whose_application_raises_is_dead_lettered_and_the_batch_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    p = Processor()
    target = "carol"
    runtime = p.runtime.runtime(partition_for(target, PARTITIONS))
    apply = runtime.processor.apply

    def buggy(e: Event) -> Outcome:
        if e.contact == target:
            raise ZeroDivisionError("division by zero")
        return apply(e)

    monkeypatch.setattr(runtime.processor, "apply", buggy)
    same = [c for c in (f"c{i}" for i in range(100)) if partition_for(c, PARTITIONS) == runtime.partition][:2]
    with caplog.at_level(logging.ERROR):
        p.feed(event("a1", "signup", same[0], 0), event("x1", "signup", target, 1),
               event("x2", "page_view", target, 2, properties={"url": "u"}), event("a2", "signup", same[1], 3))
    dead = p.decoded(p.topics.deadletter)
    assert [d["event_id"] for d in dead] == ["x1", "x2"]
    assert {d["error_code"] for d in dead} == {"processing_error"}
    assert dead[0]["error_detail"].startswith("ZeroDivisionError: division by zero (digest ")
    assert dead[0]["error_detail"].split("digest ")[1][:12] == dead[1]["error_detail"].split("digest ")[1][:12]
    assert msgspec.json.decode(dead[0]["raw"])["event_id"] == "x1"
    assert p.runtime.counts.processing_errors == 2
    assert p.runtime.counts.applied == 2  # the events around the poison are applied
    assert caplog.text.count("Traceback") == 1  # the traceback once per digest, then one line each


def test_a_stored_state_that_cannot_be_decoded_poisons_only_its_own_events() -> None:
    from pipeline.consumers.partition_state import UndecodableState

    p = Processor()
    p.store["dora"] = UndecodableState(b"\xc1", "invalid opcode")  # what the codec gives for bad bytes
    p.feed(event("d1", "signup", "dora", 0), event("e1", "signup", "erin", 1))
    [dead] = p.decoded(p.topics.deadletter)
    assert dead["event_id"] == "d1" and "UndecodableStateError: the stored state of dora" in dead["error_detail"]
    assert p.runtime.counts.applied == 1
