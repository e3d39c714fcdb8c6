"""The port of the lifecycle history: the :class:`HistoryStore` Protocol every backend implements.

The replay, the streaming sink and the commands depend on this Protocol only, and get a store
from :func:`pipeline.storage.factory.open_history_store`. Adapters: the SQLAlchemy one
(:mod:`pipeline.storage.sql`, SQLite and PostgreSQL) and the in-memory one
(:mod:`pipeline.storage.memory`); one contract suite (tests/integration/storage/test_contract.py)
runs against all three backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pipeline.state_machine.model import Model
from pipeline.state_machine.records import Alert, ContactSnapshot, Transition
from pipeline.storage.reports.segments import SegmentReport
from pipeline.storage.reports.types import ContactHistory, FunnelReport, GroupBy, StoredAlert


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """The outcome of acknowledging an alert: the stored time, and whether this call set it."""

    alert_id: str
    acknowledged_at: str
    newly_acknowledged: bool  # False: it had been acknowledged before; the first time is kept
    contact_id: str = ""  # the alert's contact (``leadflow alerts ack`` writes its lead_contacted event)


class HistoryStore(Protocol):
    """Durable lifecycle history: transitions, alerts and the latest contact snapshots.

    Writes are idempotent, so a batch that failed (or was delivered twice) can be written again:
    transitions and alerts are inserted unless their id is stored, a contact snapshot replaces the
    stored one unless that one is newer (by last event time, then stage entry time).
    """

    @property
    def display_url(self) -> str:
        """Where the history lives, for messages (any password hidden)."""
        ...

    def write_batch(
        self,
        transitions: Sequence[Transition],
        alerts: Sequence[Alert],
        contacts: Sequence[ContactSnapshot],
    ) -> None:
        """Store one batch, all or nothing. Transitions and alerts already stored (same id) are
        skipped (an acknowledgement survives a redelivered alert); a contact snapshot replaces the
        stored one unless that is newer; within the batch the newest snapshot of a contact wins.
        Raises :class:`~.errors.StorageUnavailable` when the store is away (nothing written)."""
        ...

    def acknowledge(self, alert_id: str, at: datetime) -> Acknowledgement:
        """Record that sales acted on an alert at ``at``; a second call keeps the first time.
        Raises :class:`~.errors.UnknownAlert` or :class:`~.errors.InvalidAcknowledgement`."""
        ...

    def contact_timeline(self, contact_id: str) -> ContactHistory | None:
        """The contact's snapshot, transitions and alerts; None when nothing is stored for it."""
        ...

    def open_alerts(self, limit: int = 200) -> tuple[StoredAlert, ...]:
        """Alerts not acknowledged yet, soonest ``respond_by`` first (then oldest, then by id): the
        sales queue the console's Hot leads page shows. At most ``limit``."""
        ...

    def funnel(
        self,
        model: Model,
        *,
        by: GroupBy = "source",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> FunnelReport:
        """The funnel of ``model``'s stages per first-touch group (rules: :mod:`.reports.funnel`)."""
        ...

    def segments(
        self,
        model: Model,
        *,
        by: GroupBy = "source",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> SegmentReport:
        """Value segments of ``model`` per first-touch group, and the flows between them in the
        window (rules: :mod:`.reports.segments`). ``model`` must declare ``[segments]``."""
        ...

    def close(self) -> None:
        """Release the connections (a no-op where there are none)."""
        ...

    def __enter__(self) -> HistoryStore: ...

    def __exit__(self, *exc: object) -> None: ...
