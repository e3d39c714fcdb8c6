"""The contact processor: owns contact state per partition and runs the lifecycle engine.

It consumes the internal ``contact-events`` topic in batches (``take_events``), so the stream
processor's per-message cost is paid per batch. :meth:`ContactRuntime.process` runs a batch in
named steps: :func:`~pipeline.contracts.internal.decode_batch` groups it by partition; for each
partition, :func:`order_by_event_time` sorts its events (a contact's events that arrive within
the reorder window are applied in event-time order), :meth:`~ContactRuntime.apply_event` applies
each with the same :class:`LifecycleProcessor` the offline replay uses, counting duplicates and
late events (:func:`lateness`: applied anyway, never dropped), :meth:`~ContactRuntime.fire_due`
fires the cooling a sweep tick says is due (the only way a contact moves without its own events),
:func:`collect_outputs` gathers the outputs, :meth:`~ContactRuntime.publish` sends transitions,
alerts and referral credit routed to the referrer's partition; then
:meth:`~ContactRuntime.stage_writes` hands the changed states (once per contact) to the batch's
unit of work (:class:`BatchUnit`), whose commit waits for the outputs' acks before it writes the
states and their changelog records and waits for those acks.

The worker runs :meth:`ContactRuntime.run_batch` and commits the unit while the next batch runs
(:class:`pipeline.streaming.unit_of_work.CommitPipeline`); a batch's states stay visible in
memory until the table holds them (:class:`StagedStates`), and its input events are acknowledged
(their offsets committable) only once its unit committed: a crash anywhere repeats work (same ids,
same content) but never loses it, and the per-contact de-duplication memory makes a repeated
event a no-op.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import traceback
from collections import Counter as CounterType
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any, Protocol

import msgspec

from pipeline.config.settings import Settings
from pipeline.config.topics import TopicNames, partition_for
from pipeline.consumers.partition_state import CountingDeadlines, StagedStates, UndecodableState
from pipeline.contracts import DeadLetter, encode_deadletter
from pipeline.contracts import internal as wire
from pipeline.contracts.deadletter import dead_letter_for
from pipeline.ops import metrics
from pipeline.ops.lateness import ARRIVAL_LAG
from pipeline.state_machine import REFERRAL_CONVERTED, ContactState, Event, Model, snapshot
from pipeline.state_machine.identity import CONFLICT
from pipeline.state_machine.processor import ROUTED, ClaimedLink, LifecycleProcessor, Outcome

log = logging.getLogger(__name__)

_encode_json = msgspec.json.Encoder().encode
Send = Callable[..., Awaitable[Awaitable[Any]]]
WriteStates = Callable[[int, dict[str, ContactState]], Awaitable[None]]


def _no_bind(partition: int) -> None:
    pass


@dataclass(slots=True)
class ProcessorCounts:
    """What the contact processor did since it started (exported as metrics)."""

    applied: int = 0
    duplicates: int = 0
    late: int = 0  # events older than their contact's clock when they arrived (applied out of order)
    transitions: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    alerts: int = 0
    referral_credits_routed: int = 0
    #: link events by how they were resolved (identity.MERGE, LINK, LINKED, CONFLICT)
    identity_links: dict[str, int] = field(default_factory=dict)
    handed_off: int = 0  # events sent on to the partition that applies them (links, forwarded aliases)
    held: int = 0  # events held while their contact awaited a claimed link (applied when it came back)
    snapshots: int = 0  # contact snapshots published to lead.contacts
    batches: int = 0
    #: events (and sweep ticks) whose application raised: dead-lettered as processing_error
    processing_errors: int = 0


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
            merge_identities=True,
        )
        started, unreadable = time.perf_counter(), 0
        for key in list(table):
            if partition_for(key, partitions) == partition:
                state = table.get(key)
                if isinstance(state, UndecodableState):  # its events will be dead-lettered
                    unreadable += 1
                    continue
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
        if unreadable:
            log.error("partition %d: %d stored contact states cannot be decoded; their events will be "
                      "dead-lettered as processing_error", partition, unreadable)


class BatchUnit(Protocol):
    """What the processor needs from the unit of work a batch runs in: outputs acknowledged before
    any state is written, states durable before :meth:`commit` returns (the streaming worker's is
    :class:`pipeline.streaming.unit_of_work.UnitOfWork`)."""

    def bind(self, partition: int) -> None: ...
    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None: ...
    def stage(self, partition: int, states: dict[str, ContactState]) -> None: ...
    async def commit(self) -> None: ...


class ContactRuntime:
    """Runs the engine for the partitions this worker owns; the Faust agent calls :meth:`process`
    with each batch and its unit of work."""

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
        #: This batch's poison events (and failed sweep ticks), published with its outputs.
        self.poisoned: list[DeadLetter] = []
        self._digests_logged: set[str] = set()

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
        self, messages: Sequence[tuple[int, bytes]], write: WriteStates, bind: Callable[[int], None] = _no_bind
    ) -> None:
        """:meth:`process` for in-process callers (tests, benchmarks): outputs go to ``send``,
        ``write`` stores a partition's changed states and returns once they are durable (called
        after the outputs are acknowledged); ``bind`` is called before a partition's states are
        read or written."""
        await self.process(messages, CallbackUnit(self.send, write, bind))

    async def process(self, messages: Sequence[tuple[int, bytes]], unit: BatchUnit) -> None:
        """Process one batch of internal messages ``(partition, value)`` in ``unit``; returns once
        the unit committed (outputs, then states, acknowledged)."""
        durable = await self.run_batch(messages, unit)
        await unit.commit()
        durable()

    async def run_batch(self, messages: Sequence[tuple[int, bytes]], unit: BatchUnit) -> Callable[[], None]:
        """Apply one batch of internal messages ``(partition, value)``, send its outputs and stage
        its changed states in ``unit``, without waiting for any acknowledgement. Returns the
        callback to call once ``unit`` committed: it settles the batch's states (the table holds
        them) and counts the batch. The next batch may run before that (its reads see this
        batch's states); units must commit in the order their batches ran."""
        batch = wire.decode_batch(messages)
        if self.settings.metrics:
            self.observe_arrival(batch.partitions.values())
        counts = self.counts
        before = (counts.applied, counts.duplicates, counts.late)
        links_before = dict(counts.identity_links)
        for partition, inputs in batch.partitions.items():
            unit.bind(partition)
            runtime = self.runtime(partition)
            outcome = self.apply(runtime, inputs)
            await self.publish(outcome, unit)
            await self.publish_poisoned(unit)
            if self.settings.contact_snapshots:
                await self.publish_snapshots(runtime.states.staged.values(), unit)
            # Let the producer ship this partition's outputs (its alerts) while the next
            # partition is applied: the broker works on them in parallel.
            await asyncio.sleep(0)
        staged = self.stage_writes(batch.partitions, unit)
        applied, duplicates, late = counts.applied - before[0], counts.duplicates - before[1], counts.late - before[2]
        links = {k: n - links_before.get(k, 0) for k, n in counts.identity_links.items()}

        def durable() -> None:
            counts.batches += 1
            for states, changed in staged:
                states.settled(changed)
            if self.settings.metrics:
                metrics.count_processor_batch(
                    time.time_ns() // 1000, batch.received, [inputs.events for inputs in batch.partitions.values()],
                    applied, duplicates, late,
                )
                if any(links.values()):
                    metrics.count_identity_links(links)

        return durable

    def observe_arrival(self, partitions: Iterable[wire.PartitionInput]) -> None:
        """How late this batch's events reached the processor, per source (choosing the allowed
        lateness: :mod:`pipeline.ops.lateness`)."""
        times: dict[str, list[int]] = {}
        for inputs in partitions:
            for event in inputs.events:
                times.setdefault(event.source, []).append(event.occurred_at)
        for occurred in times.values():
            occurred.sort()
        ARRIVAL_LAG.observe(self.now_micros(), times, round(self.settings.allowed_lateness * 1_000_000))

    def apply(self, runtime: PartitionRuntime, inputs: wire.PartitionInput) -> Outcome:
        """A partition's events (and claimed links) in event-time order, then the cooling its sweep
        ticks say is due."""
        total = Outcome()
        if inputs.claimed:
            items: list[Event | ClaimedLink] = [*inputs.events, *inputs.claimed]
            items.sort(key=_item_order)
            for item in items:
                if isinstance(item, ClaimedLink):
                    self.apply_claimed(runtime, item, total)
                else:
                    self.apply_event(runtime, item, total)
        else:
            for event in order_by_event_time(inputs.events):
                self.apply_event(runtime, event, total)
        if inputs.ticks:
            self.fire_due(runtime, max(inputs.ticks), total)
        return total

    def apply_event(self, runtime: PartitionRuntime, event: Event, total: Outcome) -> None:
        """Apply one event, counting it (applied, duplicate, late) and collecting its outputs; an
        event whose application raises is dead-lettered (:meth:`poison`) and the partition goes on."""
        try:
            known = runtime.states.get(event.contact)
            outcome = runtime.processor.apply(event)
        except Exception as exc:
            self.poison(runtime.partition, event, exc)
            return
        self._count(event, known, outcome, total)

    def apply_claimed(self, runtime: PartitionRuntime, link: ClaimedLink, total: Outcome) -> None:
        """The known side of a link claimed on another partition: merge, then apply the event."""
        event = link.event
        try:
            known = runtime.states.get(event.contact)
            outcome = runtime.processor.apply_claimed(link)
        except Exception as exc:
            self.poison(runtime.partition, event, exc)
            return
        self._count(event, known, outcome, total)

    def poison(self, partition: int, event: Event | None, exc: Exception, clock: int | None = None) -> None:
        """An event (or a sweep tick at ``clock``) whose application raised: a dead letter with
        code ``processing_error``, the event and an error digest (the same bug, the same digest),
        counted and logged (with the traceback the first time a digest is seen)."""
        digest, where = error_digest(exc)
        detail = f"{type(exc).__name__}: {exc}"[:800] + f" (digest {digest}, at {where})"
        raw = _encode_json(event) if event is not None else _encode_json({"sweep_tick": clock, "partition": partition})
        source = event.source if event is not None else None
        self.poisoned.append(
            dead_letter_for(raw, "processing_error", detail, source, self.now_micros(),
                            event.event_id if event is not None else None)
        )
        self.counts.processing_errors += 1
        metrics.EVENTS_DEAD_LETTERED.labels(source or "sweep", "processing_error").inc()
        what = f"event {event.event_id} ({event.event_type}) for {event.contact}" if event else f"sweep tick {clock}"
        first = digest not in self._digests_logged
        self._digests_logged.add(digest)
        log.error("partition %d: %s raised %s; dead-lettered as processing_error [digest %s], the partition "
                  "goes on", partition, what, detail, digest, exc_info=exc if first else None)

    async def publish_poisoned(self, unit: BatchUnit) -> None:
        """This batch's processing_error dead letters, acknowledged with its outputs."""
        poisoned, self.poisoned = self.poisoned, []
        for dead in poisoned:
            await unit.send(self.topics.deadletter, dead.event_id.encode() if dead.event_id else None,
                            encode_deadletter(dead))

    def _count(self, event: Event, known: ContactState | None, outcome: Outcome, total: Outcome) -> None:
        counts = self.counts
        counts.applied += outcome.applied
        counts.duplicates += outcome.duplicates
        collect_outputs(total, outcome)
        if outcome.handed_off or outcome.held:  # applied later, or by the partition it was sent to
            counts.handed_off += outcome.handed_off
            counts.held += outcome.held
            return
        if outcome.link is not None and outcome.link != ROUTED:
            links = counts.identity_links
            links[outcome.link] = links.get(outcome.link, 0) + 1
            if outcome.link == CONFLICT:
                log.warning(
                    "identity conflict: event %s links %s to %s, but it belongs to %s (a shared device?): "
                    "applied to %s as a normal event", event.event_id, event.links, event.contact,
                    outcome.owner, event.contact,
                )
        if outcome.duplicate:
            return
        late_by = lateness(event, known)
        if late_by:
            counts.late += 1
            log.warning(
                "late event %s (%s) for %s: occurred %d µs before the contact's clock",
                event.event_id, event.event_type, event.contact, late_by,
            )

    def fire_due(self, runtime: PartitionRuntime, clock: int, total: Outcome) -> None:
        """Fire every deadline of the partition <= ``clock`` (a sweep tick), into ``total``."""
        due, started = runtime.deadlines.fired, time.perf_counter()
        try:
            runtime.processor.advance_to(clock, total)
        except Exception as exc:  # the rest of this tick's due contacts fire at their next event or tick
            self.poison(runtime.partition, None, exc, clock)
        if self.settings.metrics:
            metrics.count_sweep(time.perf_counter() - started, runtime.deadlines.fired - due)

    async def publish(self, outcome: Outcome, unit: BatchUnit) -> None:
        """Transitions, alerts and routed referral credit (to the partition owning the referrer)."""
        topics, counts = self.topics, self.counts
        moves: dict[tuple[str, str, str, str], int] = {}  # this batch's transitions by (kind, from, to, direction)
        for transition in outcome.transitions:
            key = (transition.kind, transition.from_, transition.to, transition.direction)
            moves[key] = moves.get(key, 0) + 1
            await unit.send(topics.transitions, transition.contact_id.encode(), _encode_json(transition))
        for key, n in moves.items():
            counts.transitions[key] = counts.transitions.get(key, 0) + n
        if self.settings.metrics and (moves or outcome.alerts):
            metrics.count_outputs(moves, [alert.type for alert in outcome.alerts])
        if self.settings.metrics and outcome.contact_outcomes:
            answered = [a.response_seconds for a in outcome.alerts if a.response_seconds is not None]
            metrics.count_speed_to_lead(answered, outcome.contact_outcomes)
        for alert in outcome.alerts:
            await unit.send(topics.alerts, alert.contact_id.encode(), _encode_json(alert))
        counts.alerts += len(outcome.alerts)
        partitions = self.settings.partitions
        for routed in outcome.routed:  # referral credit, events of a merged anonymous id
            data = wire.encode(wire.ContactBatch([routed]))
            await unit.send(topics.contact_events, None, data, partition_for(routed.contact, partitions))
        for claim in outcome.to_claim:  # link events, to the partition owning their anonymous contact
            data = wire.encode(wire.ContactBatch([claim]))
            await unit.send(topics.contact_events, None, data, partition_for(claim.links or claim.contact, partitions))
        counts.referral_credits_routed += sum(1 for e in outcome.routed if e.event_type == REFERRAL_CONVERTED)
        if outcome.claimed:  # claimed links, to the partition owning each contact, in claim order
            by_partition: dict[int, list[ClaimedLink]] = {}
            for link in outcome.claimed:
                by_partition.setdefault(partition_for(link.event.contact, partitions), []).append(link)
            for partition, links in by_partition.items():
                await unit.send(topics.contact_events, None, wire.encode(wire.ClaimedLinks(links)), partition)

    async def publish_snapshots(self, states: Iterable[ContactState], unit: BatchUnit) -> None:
        """Each contact changed by this batch, once, as its public snapshot (lead.contacts)."""
        topic, model, sent = self.topics.contacts, self.model, 0
        for state in states:
            await unit.send(topic, state.contact.encode(), _encode_json(snapshot(state, model)))
            sent += 1
        self.counts.snapshots += sent

    def stage_writes(
        self, partitions: Iterable[int], unit: BatchUnit
    ) -> list[tuple[StagedStates, dict[str, ContactState]]]:
        """Hand each partition's changed states (once per contact) to the unit of work; returns
        them with the partition's states, to settle once the unit committed."""
        taken = []
        for partition in partitions:
            states = self.partitions[partition].states
            changed = states.take_staged()
            unit.stage(partition, changed)
            taken.append((states, changed))
        return taken


class CallbackUnit:
    """A :class:`BatchUnit` over plain callbacks (:meth:`ContactRuntime.handle`), in the same
    order as the streaming worker's: outputs acknowledged, then ``write`` per partition."""

    def __init__(self, send: Send, write: WriteStates, bind: Callable[[int], None] = _no_bind) -> None:
        self._send, self._write, self.bind = send, write, bind
        self._acks: list[Awaitable[Any]] = []
        self._staged: list[tuple[int, dict[str, ContactState]]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        self._acks.append(await self._send(topic, key, value, partition=partition))

    async def outputs_acknowledged(self) -> None:
        acks, self._acks = self._acks, []
        for ack in acks:
            await ack

    def stage(self, partition: int, states: dict[str, ContactState]) -> None:
        if states:
            self._staged.append((partition, states))

    async def commit(self) -> None:
        await self.outputs_acknowledged()
        for partition, states in self._staged:
            self.bind(partition)
            await self._write(partition, states)
        self._staged = []


def error_digest(exc: BaseException) -> tuple[str, str]:
    """``(digest, where)``: 12 hex digits naming the exception type and the line that raised it
    (the same bug gives the same digest whatever the event), and that line as ``file:line``."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    basis = f"{type(exc).__module__}.{type(exc).__qualname__}@{where}"
    return hashlib.sha256(basis.encode()).hexdigest()[:12], where


def order_by_event_time(events: list[Event]) -> list[Event]:
    """Sort a partition's events by (occurred_at, event_id), in place: a contact's events that
    arrive within the reorder window (one batch) are applied in event-time order."""
    events.sort(key=_event_order)
    return events


def lateness(event: Event, known: ContactState | None) -> int:
    """How many µs the event is older than what its contact already went through (0: not late).
    A late event is still applied (never dropped), and counted."""
    if known is None or event.occurred_at >= known.clock:
        return 0
    return known.clock - event.occurred_at


def collect_outputs(total: Outcome, outcome: Outcome) -> None:
    """Add one event's outputs to the partition's outcome, in the order they happened."""
    total.transitions.extend(outcome.transitions)
    total.alerts.extend(outcome.alerts)
    total.referrals_applied += outcome.referrals_applied
    total.routed.extend(outcome.routed)
    total.claimed.extend(outcome.claimed)
    total.to_claim.extend(outcome.to_claim)
    total.contact_outcomes.extend(outcome.contact_outcomes)


#: (occurred_at, event_id): event-time order, ties broken by id (a C-level key: sorting a batch's
#: events is in the worker's hot path).
_event_order = attrgetter("occurred_at", "event_id")


def _item_order(item: Event | ClaimedLink) -> tuple[int, str]:
    event = item.event if isinstance(item, ClaimedLink) else item
    return (event.occurred_at, event.event_id)
