"""The values the history store's reads return: a contact's timeline, its alerts, the funnel.

Plain frozen records: every adapter of :class:`~pipeline.storage.port.HistoryStore` builds the
same ones, and the text and HTML views render them without knowing where they came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pipeline.state_machine.clock import parse_rfc3339
from pipeline.state_machine.records import Alert, ContactSnapshot, Transition

GroupBy = Literal["source", "utm_source", "utm_medium", "utm_campaign"]
GROUP_BY: tuple[GroupBy, ...] = ("source", "utm_source", "utm_medium", "utm_campaign")

NO_VALUE = "(none)"  # the contact's first touch has no value for this field
NO_CONTACT = "(no contact row)"  # transitions of a contact whose snapshot is not stored
TOTAL = "all"  # the name of the all-groups row in reports


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
        keyed: list[tuple[int, int, int, Transition | StoredAlert]] = [
            (parse_rfc3339(t.occurred_at), 0, i, t) for i, t in enumerate(self.transitions)
        ]
        keyed += [(parse_rfc3339(a.alert.occurred_at), 1, i, a) for i, a in enumerate(self.alerts)]
        keyed.sort(key=lambda item: item[:3])
        return [item[3] for item in keyed]


@dataclass(frozen=True, slots=True)
class StageFigures:
    """One stage of one group's funnel."""

    stage: str
    reached: int
    conversion_to_next: float | None  # None for the last stage, or when nobody reached this one
    stays: int  # completed stays measured for the median
    median_seconds_in_stage: float | None
    regressed_contacts: int
    regressions: int


@dataclass(frozen=True, slots=True)
class GroupFunnel:
    """The funnel of one first-touch group (or of all of them: the total)."""

    group: str
    contacts: int
    stages: tuple[StageFigures, ...]
    hot_alerts: int
    acknowledged: int
    acknowledged_in_time: int  # by respond_by
    median_seconds_to_ack: float | None


@dataclass(frozen=True, slots=True)
class FunnelReport:
    """The funnel of a model's stages per first-touch group; the counting rules are in docs/storage.md."""

    model: str
    by: GroupBy
    since: datetime | None
    until: datetime | None
    groups: tuple[GroupFunnel, ...]  # most contacts first
    total: GroupFunnel
