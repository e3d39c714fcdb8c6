"""Offline replay: a JSONL file of events in, transitions, alerts, dead letters and contacts out.

The clock is event time: before an event at time t is applied, every cooling deadline <= t fires,
in deadline order; ``until`` moves the clock forward at the end. Bad lines become dead letters
naming the line; the run never stops for a bad event. Counts add up:
``read == applied + duplicates + dead_lettered``.

Identities are resolved as the stream does (``pipeline.state_machine.identity``): an event with both
ids merges the anonymous visitor into the contact; the merged visitor's snapshot carries
``merged_into`` and is not counted as a contact. A link to an anonymous id that already belongs to
another contact is applied to the event's contact, counted (``identity_conflicts``) and logged.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import msgspec

from pipeline.contracts import decode_event
from pipeline.contracts.decode import MAX_EVENT_BYTES
from pipeline.contracts.fastpath import fast_event
from pipeline.state_machine import ContactState, Event, Model, snapshot
from pipeline.state_machine.identity import CONFLICT, LINK, MERGE
from pipeline.state_machine.processor import LifecycleProcessor, Outcome
from pipeline.state_machine.records import Alert, ContactSnapshot, Transition

_encode_lines = msgspec.json.Encoder().encode_lines  # one JSON document per line, each ended by \n
log = logging.getLogger(__name__)


class HistoryOutput(Protocol):
    """Where ``replay(history=...)`` also sends its records: ``pipeline.storage.HistoryWriter``."""

    def add_transitions(self, records: Iterable[Transition]) -> None: ...
    def add_alerts(self, records: Iterable[Alert]) -> None: ...
    def add_contacts(self, records: Iterable[ContactSnapshot]) -> None: ...


@dataclass(slots=True)
class ReplayStats:
    """What a replay did; ``read == applied + duplicates + dead_lettered`` always."""

    read: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, direction)
    alerts: int = 0
    alerts_by_type: Counter[str] = field(default_factory=Counter)  # became_hot, response_overdue, alert_answered
    contact_outcomes: Counter[str] = field(default_factory=Counter)  # lead_contacted by speed-to-lead outcome
    referral_credits: int = 0
    stages: Counter[str] = field(default_factory=Counter)
    temperatures: Counter[str] = field(default_factory=Counter)
    contacts: int = 0  # contacts of their own (anonymous contacts merged into another not counted)
    identity_merges: int = 0  # anonymous histories merged into a contact
    identity_links: int = 0  # links to an anonymous id with no history yet
    identity_conflicts: int = 0  # links to an anonymous id that belongs to another contact
    forwarded: int = 0  # events with only a merged anonymous id, applied to its contact
    merged_contacts: int = 0  # anonymous contacts merged into another (snapshots with merged_into)
    seconds: float = 0.0

    @property
    def dead_letter_total(self) -> int:
        return sum(self.dead_lettered.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "dead_lettered": self.dead_letter_total,
            "dead_lettered_by_code": dict(sorted(self.dead_lettered.items())),
            "transitions": sum(self.transitions.values()),
            "transitions_by_kind_direction": {f"{k}/{d}": n for (k, d), n in sorted(self.transitions.items())},
            "alerts": self.alerts,
            "alerts_by_type": dict(sorted(self.alerts_by_type.items())),
            "lead_contacted_by_outcome": dict(sorted(self.contact_outcomes.items())),
            "referral_credits": self.referral_credits,
            "identity_merges": self.identity_merges,
            "identity_links": self.identity_links,
            "identity_conflicts": self.identity_conflicts,
            "forwarded": self.forwarded,
            "merged_contacts": self.merged_contacts,
            "contacts": self.contacts,
            "contacts_by_stage": dict(self.stages),
            "contacts_by_temperature": dict(self.temperatures),
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.read / self.seconds) if self.seconds else None,
        }


class _Sink:
    """A JSONL output written in large chunks, 4096 records encoded at once (``None`` path:
    discarded)."""

    def __init__(self, stream: IO[bytes] | None) -> None:
        self.stream = stream
        self.buffer: list[msgspec.Struct] = []

    def write(self, record: msgspec.Struct) -> None:
        if self.stream is not None:
            self.buffer.append(record)
            if len(self.buffer) >= 4096:
                self.flush()

    def extend(self, records: list[Transition] | list[Alert]) -> None:
        if self.stream is not None:
            self.buffer.extend(records)
            if len(self.buffer) >= 4096:
                self.flush()

    def flush(self) -> None:
        if self.stream is not None and self.buffer:
            self.stream.write(_encode_lines(self.buffer))
            self.buffer.clear()


def _open(stack: ExitStack, path: str | None) -> IO[bytes] | None:
    if path is None:
        return None
    if path == "-":
        return sys.stdout.buffer
    return stack.enter_context(open(path, "wb"))


def read_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Lines of a binary stream without their line ending (a final empty line is not a line)."""
    for line in stream:
        if line.endswith(b"\n"):
            line = line[:-1]
            if line.endswith(b"\r"):
                line = line[:-1]
        yield line


def replay(
    lines: Iterable[bytes],
    model: Model,
    *,
    received_at: int,
    until: int | None = None,
    out: IO[bytes] | None = None,
    alerts: IO[bytes] | None = None,
    deadletter: IO[bytes] | None = None,
    contacts: IO[bytes] | None = None,
    progress: Callable[[ReplayStats], None] | None = None,
    keep_states: dict[str, ContactState] | None = None,
    history: HistoryOutput | None = None,
) -> ReplayStats:
    """Replay ``lines`` (one JSON envelope each, with a ``source`` field) through ``model``.

    ``history`` also receives every transition and alert as it happens and, at the end, every
    contact's snapshot (``leadflow replay --db``: a batched, idempotent database writer).

    ``received_at`` (microseconds) is the wall clock when the run started: events more than five
    minutes after it are dead-lettered as ``future_timestamp``.
    """
    started = time.perf_counter()
    stats = ReplayStats()
    processor = LifecycleProcessor(model)
    transitions_out, alerts_out, dead_out = _Sink(out), _Sink(alerts), _Sink(deadletter)
    transition_counts = stats.transitions

    def emit(outcome: Outcome) -> None:
        if outcome.transitions:
            transitions_out.extend(outcome.transitions)
            for transition in outcome.transitions:
                transition_counts[transition.kind, transition.direction] += 1
        if outcome.alerts:
            alerts_out.extend(outcome.alerts)
            for alert in outcome.alerts:
                stats.alerts_by_type[alert.type] += 1
        if history is not None:
            if outcome.transitions:
                history.add_transitions(outcome.transitions)
            if outcome.alerts:
                history.add_alerts(outcome.alerts)
        stats.alerts += len(outcome.alerts)
        stats.referral_credits += outcome.referrals_applied

    for number, line in enumerate(lines, start=1):
        stats.read += 1
        event = fast_event(line, None, received_at) if len(line) <= MAX_EVENT_BYTES else None
        # Not the common valid shape: the exact rules decide and explain (decode_event).
        decoded = event if event is not None else decode_event(line, family=None, received_at=received_at)
        if isinstance(decoded, Event):
            outcome = processor.apply(decoded)
            if outcome.contact_outcomes:
                stats.contact_outcomes.update(outcome.contact_outcomes)
            if outcome.duplicate:
                stats.duplicates += 1
            else:
                stats.applied += 1
                if outcome.link is not None or outcome.forwarded:
                    _count_identity(stats, outcome, decoded, number)
            if outcome.transitions or outcome.alerts:
                emit(outcome)
        else:
            dead = msgspec.structs.replace(decoded, line=number)
            stats.dead_lettered[dead.error_code] += 1
            dead_out.write(dead)
        if progress is not None and stats.read % 65536 == 0:
            stats.seconds = time.perf_counter() - started
            progress(stats)
    if until is not None:
        emit(processor.advance_to(until))
    contacts_out = _Sink(contacts)
    views: list[ContactSnapshot] = []
    if contacts is None and history is None:  # only the counts: no snapshot to build
        stages, bands = model.stages, model.bands
        for state in processor.states.values():
            if state.merged_into is None:
                stats.stages[stages[state.stage]] += 1
                stats.temperatures[bands[state.band].name] += 1
            else:
                stats.merged_contacts += 1
    for state in processor.states.values() if contacts is not None or history is not None else ():
        view = snapshot(state, model, until)
        if state.merged_into is None:
            stats.stages[view.stage] += 1
            stats.temperatures[view.temperature] += 1
        else:
            stats.merged_contacts += 1
        contacts_out.write(view)
        if history is not None:
            views.append(view)
            if len(views) >= 4096:
                history.add_contacts(views)
                views = []
    if history is not None and views:
        history.add_contacts(views)
    stats.contacts = len(processor.states) - stats.merged_contacts
    if keep_states is not None:
        keep_states.update(processor.states)
    for sink in (transitions_out, alerts_out, dead_out, contacts_out):
        sink.flush()
    stats.seconds = time.perf_counter() - started
    return stats


def _count_identity(stats: ReplayStats, outcome: Outcome, event: Event, line: int) -> None:
    if outcome.forwarded:
        stats.forwarded += 1
    elif outcome.link == MERGE:
        stats.identity_merges += 1
    elif outcome.link == LINK:
        stats.identity_links += 1
    elif outcome.link == CONFLICT:
        stats.identity_conflicts += 1
        log.warning(
            "line %d: event %s links anonymous id %r to %s, but it belongs to %s (a shared device?): "
            "applied to %s only, the anonymous id stays with %s",
            line, event.event_id, event.anonymous_id, event.contact, outcome.owner, event.contact, outcome.owner,
        )


def replay_files(
    source: str,
    model: Model,
    *,
    received_at: int,
    until: int | None = None,
    out: str | None = None,
    alerts: str | None = None,
    deadletter: str | None = None,
    contacts: str | None = None,
    progress: Callable[[ReplayStats], None] | None = None,
    history: HistoryOutput | None = None,
) -> ReplayStats:
    """:func:`replay` over paths (``-`` = stdin for the source, stdout for one output)."""
    with ExitStack() as stack:
        stream = sys.stdin.buffer if source == "-" else stack.enter_context(open(source, "rb"))
        return replay(
            read_lines(stream),
            model,
            received_at=received_at,
            until=until,
            out=_open(stack, out),
            alerts=_open(stack, alerts),
            deadletter=_open(stack, deadletter),
            contacts=_open(stack, contacts),
            progress=progress,
            history=history,
        )


def format_summary(stats: ReplayStats, model: Model) -> str:
    """The human summary printed at the end of a replay."""
    lines = [
        f"model {model.label}: read {stats.read}, applied {stats.applied}, duplicates {stats.duplicates}, "
        f"dead-lettered {stats.dead_letter_total}"
        + (f" ({', '.join(f'{k} {v}' for k, v in sorted(stats.dead_lettered.items()))})"
           if stats.dead_lettered else ""),
        "transitions: "
        + (", ".join(f"{k} {d} {n}" for (k, d), n in sorted(stats.transitions.items())) or "none")
        + f"; alerts: {stats.alerts}"
        + (f" ({', '.join(f'{t} {n}' for t, n in sorted(stats.alerts_by_type.items()))})" if stats.alerts else "")
        + f"; referral credits: {stats.referral_credits}",
        f"contacts: {stats.contacts}"
        + (f" (and {stats.merged_contacts} anonymous merged into them)" if stats.merged_contacts else ""),
        "  by stage:       " + "  ".join(f"{s} {stats.stages.get(s, 0)}" for s in model.stages),
        "  by temperature: " + "  ".join(f"{b.name} {stats.temperatures.get(b.name, 0)}" for b in model.bands),
    ]
    if stats.identity_merges or stats.identity_links or stats.identity_conflicts or stats.forwarded:
        lines.insert(2, (
            f"identities: merged {stats.identity_merges}, linked {stats.identity_links}, "
            f"conflicts {stats.identity_conflicts} (kept with their first contact), "
            f"anonymous events forwarded {stats.forwarded}"
        ))
    if stats.contact_outcomes:
        lines.insert(2, "speed to lead: lead_contacted " + ", ".join(
            f"{outcome} {n}" for outcome, n in sorted(stats.contact_outcomes.items())
        ))
    if stats.seconds:
        lines.append(f"{stats.read} lines in {stats.seconds:.2f} s ({stats.read / stats.seconds:,.0f} events/s)")
    return "\n".join(lines)
