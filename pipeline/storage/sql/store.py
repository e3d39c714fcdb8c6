"""The SQLAlchemy adapter of :class:`~pipeline.storage.port.HistoryStore`, for SQLite and PostgreSQL.

Writes are multi-row ``INSERT ... ON CONFLICT`` statements (SQLAlchemy's "insertmanyvalues"
batching on both dialects): transitions and alerts ``DO NOTHING`` on their ids, contacts
``DO UPDATE`` only when the incoming snapshot is at least as new as the stored one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, Engine, Row, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ColumnElement

from pipeline.state_machine.model import Model
from pipeline.state_machine.records import Alert, ContactSnapshot, Transition
from pipeline.storage.database import resolve_url, safe_url
from pipeline.storage.errors import InvalidAcknowledgement, UnknownAlert
from pipeline.storage.port import Acknowledgement
from pipeline.storage.reports.segments import SegmentReport
from pipeline.storage.reports.types import (
    ALERT_ANSWERED,
    BECAME_HOT,
    IDENTITY,
    RESPONSE_OVERDUE,
    ContactHistory,
    FunnelReport,
    GroupBy,
    StoredAlert,
    build_history,
    merged_contact_ids,
)
from pipeline.storage.sql import rows
from pipeline.storage.sql.engine import open_engine, translate_errors
from pipeline.storage.sql.funnel import compute_funnel
from pipeline.storage.sql.migrate import require_current_schema
from pipeline.storage.sql.segments import compute_segments
from pipeline.storage.sql.tables import alerts, contacts, transitions

_UPDATED_COLUMNS = [c.name for c in contacts.columns if c.name not in ("contact_id", "merged_into")]


def _newest_per_contact(snapshots: Sequence[ContactSnapshot]) -> list[ContactSnapshot]:
    """One snapshot per contact, the newest (the last one given wins a tie); a merge seen in the
    batch is kept (a merged contact stays merged)."""
    newest: dict[str, tuple[tuple[datetime, datetime], ContactSnapshot]] = {}
    for snapshot in snapshots:
        version = rows.snapshot_version(snapshot)
        held = newest.get(snapshot.contact_id)
        if held is None or version >= held[0]:
            if held is not None and snapshot.merged_into is None and held[1].merged_into is not None:
                snapshot = msgspec.structs.replace(snapshot, merged_into=held[1].merged_into)
            newest[snapshot.contact_id] = (version, snapshot)
    return [snapshot for _, snapshot in newest.values()]


def _stored_alert(r: Row[Any]) -> StoredAlert:
    acknowledged_at = None if r.acknowledged_at is None else rows.format_time(r.acknowledged_at)
    if r.type != BECAME_HOT:
        return StoredAlert(rows.alert_from_row(r), acknowledged_at)
    return StoredAlert(
        rows.alert_from_row(r),
        acknowledged_at,
        None if r.answered_at is None else rows.format_time(r.answered_at),
        r.response_seconds,
        None if r.overdue_at is None else rows.format_time(r.overdue_at),
    )


def _first_of(kind: str, column: Any) -> ColumnElement[Any]:
    """A correlated subquery: ``column`` of the earliest ``kind`` record about the outer alert row."""
    record = alerts.alias(kind)
    return (
        select(column(record))
        .where(record.c.original_alert_id == alerts.c.alert_id, record.c.type == kind)
        .order_by(record.c.occurred_at, record.c.alert_id)
        .limit(1)
        .scalar_subquery()
    )


class SqlHistoryStore:
    """History in a SQL database. ``SqlHistoryStore(url)`` opens it and checks the schema is at
    the newest revision (:class:`~pipeline.storage.errors.SchemaNotReady` otherwise). Callers
    outside the storage package open it through :func:`pipeline.storage.open_history_store`."""

    def __init__(
        self, url: str | None = None, *, clock: Callable[[], datetime] | None = None, check_schema: bool = True
    ) -> None:
        self.url = resolve_url(url)
        self.display_url = safe_url(self.url)
        self._clock = clock or (lambda: datetime.now(UTC))
        self.engine: Engine = open_engine(self.url)
        self.dialect = self.engine.dialect.name
        self._insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        if check_schema:
            try:
                require_current_schema(self.engine, self.url)
            except BaseException:
                self.engine.dispose()
                raise

    def __enter__(self) -> SqlHistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    # -- writing ---------------------------------------------------------------------------------

    def write_batch(
        self,
        transitions_batch: Sequence[Transition],
        alerts_batch: Sequence[Alert],
        contacts_batch: Sequence[ContactSnapshot],
    ) -> None:
        with translate_errors(self.url), self.engine.begin() as connection:
            self._write(connection, transitions_batch, alerts_batch, contacts_batch)

    def _write(
        self,
        connection: Connection,
        transitions_batch: Sequence[Transition],
        alerts_batch: Sequence[Alert],
        contacts_batch: Sequence[ContactSnapshot],
    ) -> None:
        if transitions_batch:
            connection.execute(
                self._insert(transitions).on_conflict_do_nothing(index_elements=["transition_id"]),
                [rows.transition_row(t) for t in transitions_batch],
            )
        if alerts_batch:
            connection.execute(
                self._insert(alerts).on_conflict_do_nothing(index_elements=["alert_id"]),
                [rows.alert_row(a) for a in alerts_batch],
            )
            self._record_responses(connection, alerts_batch)
        if contacts_batch:
            written_at = self._clock()
            statement = self._insert(contacts)
            new = statement.excluded
            newer = or_(
                contacts.c.last_event_at.is_(None),
                new.last_event_at > contacts.c.last_event_at,
                (new.last_event_at == contacts.c.last_event_at) & (new.stage_entered_at >= contacts.c.stage_entered_at),
            )
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=["contact_id"],
                    # merged_into is sticky: a merge is never undone, whatever snapshot comes late.
                    set_={name: new[name] for name in _UPDATED_COLUMNS}
                    | {"merged_into": func.coalesce(new.merged_into, contacts.c.merged_into)},
                    where=newer,
                ),
                [rows.contact_row(c, written_at) for c in _newest_per_contact(contacts_batch)],
            )

    @staticmethod
    def _record_responses(connection: Connection, alerts_batch: Sequence[Alert]) -> None:
        """Fill in the response and escalation of the became_hot alerts this batch touched (raised,
        answered or escalated), from the stored records: in whatever order the two arrived."""
        touched = sorted(
            {a.original_alert_id for a in alerts_batch if a.original_alert_id is not None}
            | {a.alert_id for a in alerts_batch if a.type == BECAME_HOT}
        )
        if not touched:
            return
        connection.execute(
            update(alerts)
            .where(alerts.c.alert_id.in_(touched), alerts.c.type == BECAME_HOT)
            .values(
                answered_at=_first_of(ALERT_ANSWERED, lambda r: r.c.occurred_at),
                response_seconds=_first_of(ALERT_ANSWERED, lambda r: r.c.response_seconds),
                overdue_at=_first_of(RESPONSE_OVERDUE, lambda r: r.c.occurred_at),
            )
        )

    # -- reading ---------------------------------------------------------------------------------

    def contact_timeline(self, contact_id: str) -> ContactHistory | None:
        with translate_errors(self.url), self.engine.connect() as connection:
            contact_row = connection.execute(select(contacts).where(contacts.c.contact_id == contact_id)).first()
            own_transitions, own_alerts = self._history_of(connection, contact_id)
            merged_rows = connection.execute(
                select(contacts.c.contact_id).where(contacts.c.merged_into == contact_id)
            ).scalars()
            merged = {
                anon_id: self._history_of(connection, anon_id)
                for anon_id in merged_contact_ids(merged_rows, own_transitions)
            }
            merged_at = None
            if contact_row is not None and contact_row.merged_into is not None:
                t = transitions.c
                at = connection.execute(
                    select(func.min(t.occurred_at)).where(
                        t.contact_id == contact_row.merged_into, t.kind == IDENTITY, t["from"] == contact_id
                    )
                ).scalar()
                merged_at = None if at is None else rows.format_time(at)
        return build_history(
            contact_id,
            None if contact_row is None else rows.contact_from_row(contact_row),
            own_transitions,
            own_alerts,
            merged,
            merged_at,
        )

    @staticmethod
    def _history_of(connection: Connection, contact_id: str) -> tuple[tuple[Transition, ...], tuple[StoredAlert, ...]]:
        """A contact's own transitions and alerts, in time order."""
        transition_rows = connection.execute(
            select(transitions)
            .where(transitions.c.contact_id == contact_id)
            .order_by(transitions.c.occurred_at, transitions.c.seq)
        ).all()
        alert_rows = connection.execute(
            select(alerts).where(alerts.c.contact_id == contact_id).order_by(alerts.c.occurred_at, alerts.c.alert_id)
        ).all()
        return tuple(rows.transition_from_row(r) for r in transition_rows), tuple(_stored_alert(r) for r in alert_rows)

    def funnel(
        self,
        model: Model,
        *,
        by: GroupBy = "source",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> FunnelReport:
        with translate_errors(self.url), self.engine.connect() as connection:
            return compute_funnel(connection, model, by, since, until)

    def segments(
        self,
        model: Model,
        *,
        by: GroupBy = "source",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> SegmentReport:
        with translate_errors(self.url), self.engine.connect() as connection:
            return compute_segments(connection, model, by, since, until)

    def open_alerts(self, limit: int = 200) -> tuple[StoredAlert, ...]:
        with translate_errors(self.url), self.engine.connect() as connection:
            found = connection.execute(
                select(alerts)
                .where(alerts.c.acknowledged_at.is_(None), alerts.c.answered_at.is_(None), alerts.c.type == BECAME_HOT)
                .order_by(alerts.c.respond_by, alerts.c.occurred_at, alerts.c.alert_id)
                .limit(limit)
            ).all()
        return tuple(_stored_alert(r) for r in found)

    # -- acknowledging ---------------------------------------------------------------------------

    def acknowledge(self, alert_id: str, at: datetime) -> Acknowledgement:
        with translate_errors(self.url), self.engine.begin() as connection:
            found = connection.execute(
                select(alerts.c.occurred_at, alerts.c.acknowledged_at, alerts.c.contact_id).where(
                    alerts.c.alert_id == alert_id
                )
            ).first()
            if found is None:
                raise UnknownAlert(alert_id)
            occurred_at, acknowledged_at, contact_id = found
            if acknowledged_at is not None:
                return Acknowledgement(alert_id, rows.format_time(acknowledged_at), False, contact_id)
            if at < occurred_at:
                raise InvalidAcknowledgement(alert_id, rows.format_time(at), rows.format_time(occurred_at))
            result = connection.execute(
                update(alerts)
                .where(alerts.c.alert_id == alert_id, alerts.c.acknowledged_at.is_(None))
                .values(acknowledged_at=at)
            )
            if result.rowcount == 0:  # acknowledged concurrently between the select and the update
                stored = connection.execute(
                    select(alerts.c.acknowledged_at).where(alerts.c.alert_id == alert_id)
                ).scalar_one()
                return Acknowledgement(alert_id, rows.format_time(stored), False, contact_id)
        return Acknowledgement(alert_id, rows.format_time(at), True, contact_id)
