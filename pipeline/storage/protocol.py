"""The storage Protocol of the lifecycle history, and the values it returns.

:class:`HistoryStore` is what the replay, the streaming sink and the commands depend on;
:class:`~pipeline.storage.sql_store.SqlHistoryStore` is the SQLAlchemy adapter (SQLite and
PostgreSQL), checked by one contract suite run against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from pipeline.state_machine.records import Alert, ContactSnapshot, Transition

if TYPE_CHECKING:
    from pipeline.state_machine.model import Model
    from pipeline.storage.funnel import FunnelReport

GroupBy = Literal["source", "utm_source", "utm_medium", "utm_campaign"]
GROUP_BY: tuple[GroupBy, ...] = ("source", "utm_source", "utm_medium", "utm_campaign")


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """An alert as stored, with when sales acknowledged it (None: still open)."""

    alert: Alert
    acknowledged_at: str | None


@dataclass(frozen=True, slots=True)
class ContactHistory:
    """Where a contact stands and how it got there."""

    contact_id: str
    contact: ContactSnapshot | None  # None: transitions or alerts are stored, the snapshot not yet
    transitions: tuple[Transition, ...]  # in time order
    alerts: tuple[StoredAlert, ...]  # in time order

    def timeline(self) -> list[Transition | StoredAlert]:
        """Transitions and alerts merged in time order (a transition before the alert it caused)."""
        from pipeline.storage.rows import micros

        keyed: list[tuple[int, int, int, Transition | StoredAlert]] = [
            (micros(t.occurred_at), 0, i, t) for i, t in enumerate(self.transitions)
        ]
        keyed += [(micros(a.alert.occurred_at), 1, i, a) for i, a in enumerate(self.alerts)]
        keyed.sort(key=lambda item: item[:3])
        return [item[3] for item in keyed]


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """The outcome of acknowledging an alert: the stored time, and whether this call set it."""

    alert_id: str
    acknowledged_at: str
    newly_acknowledged: bool  # False: it had been acknowledged before; the first time is kept


class HistoryStore(Protocol):
    """Durable lifecycle history: transitions, alerts and the latest contact snapshots."""

    def write_batch(
        self,
        transitions: Sequence[Transition],
        alerts: Sequence[Alert],
        contacts: Sequence[ContactSnapshot],
    ) -> None:
        """Store one batch in one transaction. Idempotent: transitions and alerts already stored
        (same id) are skipped, a contact snapshot replaces the stored one unless that is newer.
        Raises :class:`~.errors.StorageUnavailable` when the database is away (nothing written)."""
        ...

    def contact_timeline(self, contact_id: str) -> ContactHistory | None:
        """The contact's snapshot, transitions and alerts; None when nothing is stored for it."""
        ...

    def funnel(
        self,
        model: Model,
        *,
        by: GroupBy = "source",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> FunnelReport:
        """The funnel of ``model``'s stages per first-touch group (see docs/storage.md)."""
        ...

    def acknowledge(self, alert_id: str, at: datetime) -> Acknowledgement:
        """Record that sales acted on an alert at ``at``; a second call keeps the first time."""
        ...

    def close(self) -> None:
        """Release the connections."""
        ...
