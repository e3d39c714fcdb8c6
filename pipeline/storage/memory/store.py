"""The in-memory history store: dictionaries behind a lock, with the SQL adapter's semantics.

Transitions and alerts are kept by id in write order (insert-or-ignore), contact snapshots by
contact (newest wins: last event time, then stage entry time), acknowledgements on the alerts.
Times are normalised to the engine's RFC 3339 form on write, as a database round trip does.

URLs: ``memory://`` opens a private, empty store; ``memory://NAME`` the process-wide database
NAME, which :func:`create_memory_database` creates (``leadflow db upgrade --db memory://NAME``).
:func:`set_memory_database_available` simulates an outage: every call then raises
:class:`~pipeline.storage.errors.StorageUnavailable`, as a database that went away does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from pipeline.state_machine.clock import from_datetime, parse_rfc3339, to_rfc3339
from pipeline.state_machine.model import Model
from pipeline.state_machine.records import Alert, ContactSnapshot, Transition
from pipeline.storage.database import MEMORY_SCHEME
from pipeline.storage.errors import InvalidAcknowledgement, SchemaNotReady, StorageUnavailable, UnknownAlert
from pipeline.storage.memory.funnel import StoredTransition, count_funnel
from pipeline.storage.port import Acknowledgement
from pipeline.storage.reports.funnel import assemble_funnel
from pipeline.storage.reports.segments import SegmentReport, SegmentTotals, assemble_segments, segment_of
from pipeline.storage.reports.types import (
    ALERT_ANSWERED,
    BECAME_HOT,
    IDENTITY,
    NO_CONTACT,
    NO_VALUE,
    RESPONSE_OVERDUE,
    ContactHistory,
    FunnelReport,
    GroupBy,
    StoredAlert,
    build_history,
    merged_contact_ids,
)


@dataclass(slots=True)
class AlertEntry:
    """A stored alert and when it was acknowledged (microseconds since the epoch)."""

    alert: Alert
    occurred_at: int
    respond_by: int
    acknowledged_at: int | None = None
    # A became_hot alert's speed to lead (the SQL columns of revision 0004).
    answered_at: int | None = None
    response_seconds: float | None = None
    overdue_at: int | None = None

    def stored(self) -> StoredAlert:
        """The :class:`StoredAlert` the SQL adapter reads back for this row."""
        if self.alert.type != BECAME_HOT:
            return StoredAlert(self.alert, _time(self.acknowledged_at))
        return StoredAlert(
            self.alert, _time(self.acknowledged_at), _time(self.answered_at), self.response_seconds,
            _time(self.overdue_at),
        )


def _time(micros: int | None) -> str | None:
    return None if micros is None else to_rfc3339(micros)


def _record_responses(database: MemoryDatabase, batch: Sequence[Alert]) -> None:
    """The SQL adapter's response update: the earliest alert_answered / response_overdue record
    about each became_hot alert the batch touched (the caller holds the lock)."""
    touched = {a.original_alert_id for a in batch if a.original_alert_id is not None}
    touched |= {a.alert_id for a in batch if a.type == BECAME_HOT}
    for alert_id in touched:
        entry = database.alerts.get(alert_id)
        if entry is None or entry.alert.type != BECAME_HOT:
            continue
        about = sorted(
            (e for e in database.alerts.values() if e.alert.original_alert_id == alert_id),
            key=lambda e: (e.occurred_at, e.alert.alert_id),
        )
        answer = next((e for e in about if e.alert.type == ALERT_ANSWERED), None)
        overdue = next((e for e in about if e.alert.type == RESPONSE_OVERDUE), None)
        entry.answered_at = None if answer is None else answer.occurred_at
        entry.response_seconds = None if answer is None else answer.alert.response_seconds
        entry.overdue_at = None if overdue is None else overdue.occurred_at


@dataclass(slots=True)
class ContactEntry:
    """A contact's stored snapshot, its version (last event or stage entry, stage entry) and write time."""

    snapshot: ContactSnapshot
    last_event_at: int | None
    stage_entered_at: int
    updated_at: datetime


@dataclass(slots=True)
class MemoryDatabase:
    """The history held for one ``memory://`` URL."""

    transitions: dict[str, StoredTransition] = field(default_factory=dict)  # by id, in write order
    alerts: dict[str, AlertEntry] = field(default_factory=dict)
    contacts: dict[str, ContactEntry] = field(default_factory=dict)
    available: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)


_databases: dict[str, MemoryDatabase] = {}
_registry_lock = threading.Lock()


def database_name(url: str) -> str:
    """``NAME`` of ``memory://NAME`` (empty: a private store)."""
    if not url.startswith(MEMORY_SCHEME):
        raise ValueError(f"not a memory URL: {url!r} (expected memory://NAME)")
    return url[len(MEMORY_SCHEME) :]


def create_memory_database(url: str) -> bool:
    """Create the named database of ``url`` unless it exists; True when this call created it.
    ``memory://`` (no name) needs no creating: every store opened on it is new."""
    name = database_name(url)
    if not name:
        return False
    with _registry_lock:
        if name in _databases:
            return False
        _databases[name] = MemoryDatabase()
        return True


def memory_database_exists(url: str) -> bool:
    name = database_name(url)
    return not name or name in _databases


def drop_memory_database(url: str) -> None:
    """Forget the named database of ``url`` (stores still open on it then report it unavailable)."""
    with _registry_lock:
        _databases.pop(database_name(url), None)


def set_memory_database_available(url: str, available: bool) -> None:
    """Switch the named database of ``url`` off (an outage) or on again; its history is kept."""
    with _registry_lock:
        _databases[database_name(url)].available = available


def _normal(text: str) -> str:
    """An RFC 3339 time in the engine's form, as a database round trip returns it."""
    return to_rfc3339(parse_rfc3339(text))


def _normal_transition(t: Transition) -> Transition:
    occurred_at = _normal(t.occurred_at)
    return t if occurred_at == t.occurred_at else msgspec.structs.replace(t, occurred_at=occurred_at)


def _normal_alert(a: Alert) -> Alert:
    occurred_at, respond_by = _normal(a.occurred_at), _normal(a.respond_by)
    if (occurred_at, respond_by) == (a.occurred_at, a.respond_by):
        return a
    return msgspec.structs.replace(a, occurred_at=occurred_at, respond_by=respond_by)


def _contact_entry(c: ContactSnapshot, written_at: datetime) -> ContactEntry:
    entered = _normal(c.stage_entered_at)
    last = None if c.last_event_at is None else _normal(c.last_event_at)
    if (entered, last) != (c.stage_entered_at, c.last_event_at):
        c = msgspec.structs.replace(c, stage_entered_at=entered, last_event_at=last)
    return ContactEntry(c, None if last is None else parse_rfc3339(last), parse_rfc3339(entered), written_at)


def _replaces(new: ContactEntry, stored: ContactEntry) -> bool:
    """The SQL upsert's condition: the stored snapshot has no event time, or the new one is newer
    (a later last event, or the same one and a stage entry at least as late)."""
    if stored.last_event_at is None:
        return True
    if new.last_event_at is None:
        return False
    return new.last_event_at > stored.last_event_at or (
        new.last_event_at == stored.last_event_at and new.stage_entered_at >= stored.stage_entered_at
    )


def _keep_merge(new: ContactEntry, stored: ContactEntry | None) -> ContactEntry:
    """``new``, still merged when ``stored`` was: a merge is never undone (the SQL upsert's coalesce)."""
    if stored is None or new.snapshot.merged_into is not None or stored.snapshot.merged_into is None:
        return new
    merged = msgspec.structs.replace(new.snapshot, merged_into=stored.snapshot.merged_into)
    return ContactEntry(merged, new.last_event_at, new.stage_entered_at, new.updated_at)


def _batch_version(entry: ContactEntry) -> tuple[int, int]:
    """How new a snapshot is within one batch: (last event or stage entry, stage entry)."""
    last = entry.stage_entered_at if entry.last_event_at is None else entry.last_event_at
    return (last, entry.stage_entered_at)


def _history_of(database: MemoryDatabase, contact_id: str) -> tuple[tuple[Transition, ...], tuple[StoredAlert, ...]]:
    """A contact's own transitions and alerts, in time order (the caller holds the lock)."""
    moves = sorted(
        (s for s in database.transitions.values() if s.transition.contact_id == contact_id),
        key=lambda s: (s.occurred_at, s.seq),
    )
    raised = sorted(
        (e for e in database.alerts.values() if e.alert.contact_id == contact_id),
        key=lambda e: (e.occurred_at, e.alert.alert_id),
    )
    return tuple(s.transition for s in moves), tuple(e.stored() for e in raised)


class MemoryHistoryStore:
    """History in this process's memory (see the module doc). Open it with
    :func:`pipeline.storage.open_history_store`, which checks a named database exists."""

    def __init__(self, url: str = MEMORY_SCHEME, *, clock: Callable[[], datetime] | None = None) -> None:
        self.url = url
        self.display_url = url
        self._name = database_name(url)
        self._private = MemoryDatabase() if not self._name else None
        self._clock = clock or (lambda: datetime.now(UTC))

    def __enter__(self) -> MemoryHistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: a named database outlives its stores (until dropped)."""

    def require_created(self, head: str) -> None:
        """Raise as a database does: :class:`SchemaNotReady` when the named database was never
        created (``leadflow db upgrade``), :class:`StorageUnavailable` when it is switched off."""
        if self._private is None and self._name not in _databases:
            raise SchemaNotReady(self.url, None, head)
        self._database()

    def _database(self) -> MemoryDatabase:
        if self._private is not None:
            return self._private
        database = _databases.get(self._name)
        if database is None:
            raise StorageUnavailable(self.url, f"no in-memory database {self._name!r} in this process")
        if not database.available:
            raise StorageUnavailable(self.url, "switched off (set_memory_database_available)")
        return database

    # -- writing ---------------------------------------------------------------------------------

    def write_batch(
        self,
        transitions_batch: Sequence[Transition],
        alerts_batch: Sequence[Alert],
        contacts_batch: Sequence[ContactSnapshot],
    ) -> None:
        # Everything that can fail (time parsing) happens before the first change: all or nothing.
        new_transitions = [_normal_transition(t) for t in transitions_batch]
        new_alerts = [_normal_alert(a) for a in alerts_batch]
        newest: dict[str, ContactEntry] = {}
        if contacts_batch:
            written_at = self._clock()
            for snapshot in contacts_batch:
                entry = _contact_entry(snapshot, written_at)
                held = newest.get(snapshot.contact_id)
                if held is None or _batch_version(entry) >= _batch_version(held):
                    newest[snapshot.contact_id] = _keep_merge(entry, held)
        database = self._database()
        with database.lock:
            for t in new_transitions:
                if t.transition_id not in database.transitions:
                    seq = len(database.transitions) + 1
                    database.transitions[t.transition_id] = StoredTransition(seq, t, parse_rfc3339(t.occurred_at))
            for a in new_alerts:
                if a.alert_id not in database.alerts:
                    database.alerts[a.alert_id] = AlertEntry(a, parse_rfc3339(a.occurred_at),
                                                             parse_rfc3339(a.respond_by))
            if new_alerts:
                _record_responses(database, new_alerts)
            for contact_id, entry in newest.items():
                stored = database.contacts.get(contact_id)
                if stored is None or _replaces(entry, stored):
                    database.contacts[contact_id] = _keep_merge(entry, stored)

    def acknowledge(self, alert_id: str, at: datetime) -> Acknowledgement:
        at_micros = from_datetime(at)
        database = self._database()
        with database.lock:
            entry = database.alerts.get(alert_id)
            if entry is None:
                raise UnknownAlert(alert_id)
            if entry.acknowledged_at is not None:
                return Acknowledgement(alert_id, to_rfc3339(entry.acknowledged_at), False, entry.alert.contact_id)
            if at_micros < entry.occurred_at:
                raise InvalidAcknowledgement(alert_id, to_rfc3339(at_micros), to_rfc3339(entry.occurred_at))
            entry.acknowledged_at = at_micros
        return Acknowledgement(alert_id, to_rfc3339(at_micros), True, entry.alert.contact_id)

    # -- reading ---------------------------------------------------------------------------------

    def open_alerts(self, limit: int = 200) -> tuple[StoredAlert, ...]:
        database = self._database()
        with database.lock:
            waiting = sorted(
                (
                    e
                    for e in database.alerts.values()
                    if e.acknowledged_at is None and e.answered_at is None and e.alert.type == BECAME_HOT
                ),
                key=lambda e: (e.respond_by, e.occurred_at, e.alert.alert_id),
            )[:limit]
        return tuple(StoredAlert(e.alert, None) for e in waiting)

    def contact_timeline(self, contact_id: str) -> ContactHistory | None:
        database = self._database()
        with database.lock:
            entry = database.contacts.get(contact_id)
            contact = None if entry is None else entry.snapshot
            own_transitions, own_alerts = _history_of(database, contact_id)
            merged_rows = [i for i, e in database.contacts.items() if e.snapshot.merged_into == contact_id]
            merged = {
                anon_id: _history_of(database, anon_id)
                for anon_id in merged_contact_ids(merged_rows, own_transitions)
            }
            merged_at = None
            if contact is not None and contact.merged_into is not None:
                links = [
                    s.occurred_at
                    for s in database.transitions.values()
                    if s.transition.contact_id == contact.merged_into
                    and s.transition.kind == IDENTITY
                    and s.transition.from_ == contact_id
                ]
                merged_at = to_rfc3339(min(links)) if links else None
        return build_history(contact_id, contact, own_transitions, own_alerts, merged, merged_at)

    def funnel(
        self,
        model: Model,
        *,
        by: GroupBy = "source",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> FunnelReport:
        database = self._database()
        with database.lock:
            moves = list(database.transitions.values())
            snapshots = {contact_id: entry.snapshot for contact_id, entry in database.contacts.items()}
            raised = [
                (e.alert, e.occurred_at, e.respond_by, e.acknowledged_at, e.answered_at, e.response_seconds,
                 e.overdue_at)
                for e in database.alerts.values()
            ]
        window = (None if since is None else from_datetime(since), None if until is None else from_datetime(until))
        counts = count_funnel(model, by, window, moves, snapshots, raised)
        return assemble_funnel(model, by, since, until, counts)

    def segments(
        self,
        model: Model,
        *,
        by: GroupBy = "source",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> SegmentReport:
        database = self._database()
        with database.lock:
            stored = database.transitions.values()
            moves = [(s.transition, s.occurred_at) for s in stored if s.transition.kind == "segment"]
            snapshots = {contact_id: entry.snapshot for contact_id, entry in database.contacts.items()}
        prefix = f"{model.name}@"
        group_of = {
            key: getattr(c.first_touch, "source" if by == "source" else by) or NO_VALUE for key, c in snapshots.items()
        }
        totals: SegmentTotals = {}
        for contact_id, c in snapshots.items():
            if c.merged_into is not None or not c.model.startswith(prefix):
                continue
            summed = totals.setdefault((group_of[contact_id], segment_of(c.segment, model)), [0.0] * 5)
            for i, value in enumerate((1, c.revenue or 0.0, c.orders or 0, c.promo_orders or 0, c.foreign_orders or 0)):
                summed[i] += value
        low = None if since is None else from_datetime(since)
        high = None if until is None else from_datetime(until)
        flows: dict[tuple[str, str, str], int] = {}
        for t, at in moves:
            if not t.model.startswith(prefix) or (low is not None and at < low) or (high is not None and at >= high):
                continue
            key = (group_of.get(t.contact_id, NO_CONTACT), t.from_, t.to)
            flows[key] = flows.get(key, 0) + 1
        return assemble_segments(model, by, since, until, totals, flows)

    # -- inspection (tests) ------------------------------------------------------------------------

    def dump(self) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[tuple[object, ...]]]:
        """Every stored record as a tuple, like table rows: transitions by write order (the sequence
        number first), alerts by id (the acknowledgement last), contacts by id (the write time last)."""
        database = self._database()
        with database.lock:
            return (
                [(s.seq, *msgspec.structs.astuple(s.transition)) for s in database.transitions.values()],
                [(*msgspec.structs.astuple(e.alert), e.acknowledged_at)
                 for _, e in sorted(database.alerts.items())],
                [(*msgspec.structs.astuple(e.snapshot), e.updated_at) for _, e in sorted(database.contacts.items())],
            )
