"""The contact processor: owns contact state per partition and runs the lifecycle engine.

It consumes the internal ``contact-events`` topic in batches (``take_events``), so the stream
processor's per-message cost is paid per batch. For each partition in a batch it:

1. sorts the batch's events by (occurred_at, event_id): a contact's events from different input
   topics that arrive within the reorder window are applied in event-time order; one that arrives
   later than that is still applied (never dropped) and counted as ``late``;
2. applies them with the same :class:`LifecycleProcessor` the offline replay uses: a contact's
   deadlines <= t fire before its event at t; referral credit for a referrer in another partition
   is routed there;
3. fires the cooling that a sweep tick says is due for every contact of the partition (the only
   way one contact's time-driven moves happen without its own events, so a contact's result never
   depends on how other contacts' events were interleaved with its own);
4. publishes transitions, alerts and routed referral credits and waits for the broker's acks;
5. only then writes the changed contact states to the table (changelog), once per contact.

Faust acknowledges the batch after this returns, and commits offsets only after flushing the
producer: a crash anywhere repeats work (same ids, same content) but never loses it, and the
per-contact de-duplication memory makes a repeated event a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as CounterType
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from pipeline.config.settings import Settings
from pipeline.config.topics import TopicNames, partition_for
from pipeline.consumers import wire
from pipeline.ops import metrics
from pipeline.state_machine import REFERRAL_CONVERTED, ContactState, Event, Model, snapshot
from pipeline.state_machine.processor import DeadlineIndex, LifecycleProcessor, Outcome

log = logging.getLogger(__name__)

_encode_json = msgspec.json.Encoder().encode
Send = Callable[..., Awaitable[Awaitable[Any]]]


class StagedStates(MutableMapping[str, ContactState]):
    """Contact states of one partition: reads through to the table, writes staged until flushed."""

    def __init__(self, table: MutableMapping[str, Any], tally: CounterType[tuple[int, int]] | None = None) -> None:
        self.table = table
        self.staged: dict[str, ContactState] = {}
        # Contacts per (stage, band) of the partition, kept current when staged states are taken
        # (None: not counted); _before keeps the stored state of each contact this batch touched.
        self.tally = tally
        self._before: dict[str, ContactState | None] = {}

    def _stored(self, key: str) -> ContactState | None:
        state: ContactState | None = self.table.get(key)
        if self.tally is not None and key not in self._before:
            self._before[key] = state
        return state

    def __getitem__(self, key: str) -> ContactState:
        state = self.staged.get(key)
        if state is None:
            state = self._stored(key)
            if state is None:
                raise KeyError(key)
        return state

    def get(self, key: str, default: Any = None) -> Any:
        state = self.staged.get(key)
        if state is None:
            state = self._stored(key)
        return default if state is None else state

    def __setitem__(self, key: str, value: ContactState) -> None:
        if self.tally is not None and key not in self.staged and key not in self._before:
            self._before[key] = self.table.get(key)
        self.staged[key] = value

    def __delitem__(self, key: str) -> None:  # contacts are never deleted by the engine
        raise TypeError("contact states are not deleted")

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)

    def take_staged(self) -> dict[str, ContactState]:
        staged, self.staged = self.staged, {}
        if self.tally is not None:
            tally, before = self.tally, self._before
            for key, state in staged.items():
                old = before.get(key)
                if old is not None:
                    tally[old.stage, old.band] -= 1
                tally[state.stage, state.band] += 1
            before.clear()
        return staged


@dataclass(slots=True)
class ProcessorCounts:
    """What the contact processor did since it started (exported as metrics)."""

    applied: int = 0
    duplicates: int = 0
    late: int = 0  # events older than their contact's clock when they arrived (applied out of order)
    transitions: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    alerts: int = 0
    referral_credits_routed: int = 0
    snapshots: int = 0  # contact snapshots published to lead.contacts
    batches: int = 0


class PartitionRuntime:
    """One partition's processor: its contacts' states, deadline index and clock."""

    def __init__(
        self, partition: int, model: Model, table: MutableMapping[str, Any], partitions: int, count: bool = True
    ) -> None:
        self.partition = partition
        self.tally: CounterType[tuple[int, int]] | None = CounterType() if count else None
        self.states = StagedStates(table, self.tally)
        self.deadlines = CountingDeadlines()
        self.processor = LifecycleProcessor(
            model,
            self.states,
            self.deadlines,
            owns=lambda contact: partition_for(contact, partitions) == partition,
            fire_on_event=False,
        )
        started = time.perf_counter()
        for key in list(table):
            if partition_for(key, partitions) == partition:
                state = table.get(key)
                if state is not None:
                    self.processor.track(state)
                    if self.tally is not None:
                        self.tally[state.stage, state.band] += 1
        log.info(
            "partition %d: indexed %d pending deadlines in %.3fs",
            partition,
            len(self.processor.deadlines),
            time.perf_counter() - started,
        )


class ContactRuntime:
    """Runs the engine for the partitions this worker owns; the Faust agent calls :meth:`handle`."""

    def __init__(
        self,
        model: Model,
        settings: Settings,
        table: MutableMapping[str, Any],
        send: Send,
        now_micros: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        self.model = model
        self.settings = settings
        self.table = table
        self.send = send
        self.now_micros = now_micros
        self.topics = TopicNames.of(settings)
        self.partitions: dict[int, PartitionRuntime] = {}
        self.counts = ProcessorCounts()

    def runtime(self, partition: int) -> PartitionRuntime:
        runtime = self.partitions.get(partition)
        if runtime is None:
            runtime = PartitionRuntime(
                partition, self.model, self.table, self.settings.partitions, self.settings.metrics
            )
            self.partitions[partition] = runtime
        return runtime

    def forget(self, partitions: Sequence[int]) -> None:
        """Partitions revoked: their state may change elsewhere; rebuild if they come back."""
        for partition in partitions:
            self.partitions.pop(partition, None)

    async def handle(
        self,
        messages: Sequence[tuple[int, bytes]],
        write: Callable[[int, dict[str, ContactState]], Awaitable[None]],
        bind: Callable[[int], None] = lambda partition: None,
    ) -> None:
        """Process one batch of internal messages ``(partition, value)``; ``write`` stores a
        partition's changed states and returns once they are durable (called after the outputs
        are acknowledged); ``bind`` is called before a partition's states are read (a store that
        keeps one database per partition finds the partition from it)."""
        grouped: dict[int, tuple[list[Event], list[int]]] = {}
        received: list[tuple[int, int]] = []  # (received_at, events) of each input batch: for the latency
        counts, measure = self.counts, self.settings.metrics
        before = (counts.applied, counts.duplicates, counts.late)
        for partition, value in messages:
            try:
                message = wire.decode(value)
            except msgspec.DecodeError:
                log.error("partition %d: undecodable internal message skipped (%d bytes)", partition, len(value))
                continue
            events, ticks = grouped.setdefault(partition, ([], []))
            if isinstance(message, wire.ContactBatch):
                events.extend(message.events)
                if message.received_at:
                    received.append((message.received_at, len(message.events)))
            else:
                ticks.append(message.clock)
        pending: list[Awaitable[Any]] = []
        for partition, (events, ticks) in grouped.items():
            bind(partition)
            runtime = self.runtime(partition)
            outcome = self._process(runtime, events, ticks)
            pending.extend(await self._publish(outcome))
            if self.settings.contact_snapshots:
                pending.extend(await self._publish_snapshots(runtime.states.staged.values()))
        if pending:
            await asyncio.gather(*pending)
        if measure:
            published = time.time_ns() // 1000
            metrics.count_processor_batch(
                published, received, [events for events, _ in grouped.values()],
                counts.applied - before[0], counts.duplicates - before[1], counts.late - before[2],
            )
        for partition in grouped:
            staged = self.partitions[partition].states.take_staged()
            if staged:
                bind(partition)
                await write(partition, staged)
        self.counts.batches += 1

    def _process(self, runtime: PartitionRuntime, events: list[Event], ticks: list[int]) -> Outcome:
        processor = runtime.processor
        total = Outcome()
        counts = self.counts
        events.sort(key=_event_order)
        states = runtime.states
        for event in events:
            known = states.get(event.contact)
            outcome = processor.apply(event)
            if outcome.duplicate:
                counts.duplicates += 1
                continue
            if known is not None and event.occurred_at < known.clock:
                counts.late += 1  # older than what this contact already went through: applied late
                log.warning(
                    "late event %s (%s) for %s: occurred %d µs before the contact's clock",
                    event.event_id, event.event_type, event.contact, known.clock - event.occurred_at,
                )
            if event.event_type != REFERRAL_CONVERTED:
                counts.applied += 1
            total.transitions.extend(outcome.transitions)
            total.alerts.extend(outcome.alerts)
            total.referrals_applied += outcome.referrals_applied
            total.routed.extend(outcome.routed)
        if ticks:
            due, started = runtime.deadlines.fired, time.perf_counter()
            processor.advance_to(max(ticks), total)
            if self.settings.metrics:
                metrics.count_sweep(time.perf_counter() - started, runtime.deadlines.fired - due)
        return total

    async def _publish(self, outcome: Outcome) -> list[Awaitable[Any]]:
        futures: list[Awaitable[Any]] = []
        moves: dict[tuple[str, str, str, str], int] = {}  # this batch's transitions by (kind, from, to, direction)
        for transition in outcome.transitions:
            key = (transition.kind, transition.from_, transition.to, transition.direction)
            moves[key] = moves.get(key, 0) + 1
            futures.append(
                await self.send(self.topics.transitions, transition.contact_id.encode(), _encode_json(transition))
            )
        transitions = self.counts.transitions
        for key, n in moves.items():
            transitions[key] = transitions.get(key, 0) + n
        if self.settings.metrics and (moves or outcome.alerts):
            metrics.count_outputs(moves, [alert.type for alert in outcome.alerts])
        for alert in outcome.alerts:
            futures.append(await self.send(self.topics.alerts, alert.contact_id.encode(), _encode_json(alert)))
        self.counts.alerts += len(outcome.alerts)
        for credit in outcome.routed:  # referral credit, to the partition that owns the referrer
            data = wire.encode(wire.ContactBatch([credit]))
            partition = partition_for(credit.contact, self.settings.partitions)
            futures.append(await self.send(self.topics.contact_events, None, data, partition=partition))
        self.counts.referral_credits_routed += len(outcome.routed)
        return futures


    async def _publish_snapshots(self, states: Iterable[ContactState]) -> list[Awaitable[Any]]:
        """Each contact changed by this batch, once, as its public snapshot (lead.contacts)."""
        topic, model = self.topics.contacts, self.model
        futures: list[Awaitable[Any]] = []
        for state in states:
            futures.append(await self.send(topic, state.contact.encode(), _encode_json(snapshot(state, model))))
        self.counts.snapshots += len(futures)
        return futures


class CountingDeadlines(DeadlineIndex):
    """The deadline index, counting the contacts whose deadline came due (for the sweep metrics)."""

    def __init__(self) -> None:
        super().__init__()
        self.fired = 0

    def pop_due(self, now: int) -> Iterator[tuple[int, str]]:
        for due in super().pop_due(now):
            self.fired += 1
            yield due


def _event_order(event: Event) -> tuple[int, str]:
    return (event.occurred_at, event.event_id)
