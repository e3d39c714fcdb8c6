"""The values the history store's reads return: a contact's timeline, its alerts, the funnel.

Plain frozen records: every adapter of :class:`~pipeline.storage.port.HistoryStore` builds the
same ones, and the text and HTML views render them without knowing where they came from.
"""

from __future__ import annotations

from collections.abc import Iterable
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
IDENTITY = "identity"  # the kind of the transition that records an identity merge
#: Alert types: raised on entering hot; the escalation at respond_by; the first contact after it.
BECAME_HOT = "became_hot"
RESPONSE_OVERDUE = "response_overdue"
ALERT_ANSWERED = "alert_answered"


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """An alert as stored, with when sales acknowledged it (None: still open). For a
    ``became_hot`` alert, also its speed to lead: when the first ``lead_contacted`` answered it and
    how long after the alert (None: not answered yet), and when it escalated (None: it did not)."""

    alert: Alert
    acknowledged_at: str | None
    answered_at: str | None = None
    response_seconds: float | None = None
    overdue_at: str | None = None


#: A timeline entry and where it came from: None for the contact's own history, else the id of
#: the anonymous contact (``anon:<id>``) whose history was merged into it.
TimelineEntry = tuple[str | None, Transition | StoredAlert]


def _in_time_order(sources: list[tuple[str | None, tuple[Transition, ...], tuple[StoredAlert, ...]]]) -> list[
    TimelineEntry
]:
    """Entries of several histories in time order: at one instant, transitions before alerts (a
    transition before the alert it caused), a merged history before the contact's own."""
    keyed: list[tuple[tuple[int, int, int, int, int], TimelineEntry]] = []
    for n, (origin, transitions, alerts) in enumerate(sources):
        own = 1 if origin is None else 0
        keyed += [((parse_rfc3339(t.occurred_at), 0, own, n, i), (origin, t)) for i, t in enumerate(transitions)]
        keyed += [((parse_rfc3339(a.alert.occurred_at), 1, own, n, i), (origin, a)) for i, a in enumerate(alerts)]
    keyed.sort(key=lambda item: item[0])
    return [entry for _, entry in keyed]


@dataclass(frozen=True, slots=True)
class MergedContact:
    """An anonymous contact whose history was merged into the contact shown (identity merge)."""

    contact_id: str  # anon:<anonymous id>
    merged_at: str | None  # the identity record's time; None while that record is not stored
    reason: str | None  # the identity record's reason (merged_anonymous_history, linked_anonymous_id)
    transitions: tuple[Transition, ...]  # its own, in time order
    alerts: tuple[StoredAlert, ...]  # its own, in time order


@dataclass(frozen=True, slots=True)
class ContactHistory:
    """Where a contact stands and how it got there, with the anonymous histories merged into it."""

    contact_id: str
    contact: ContactSnapshot | None  # None: transitions or alerts are stored, the snapshot not yet
    transitions: tuple[Transition, ...]  # in time order
    alerts: tuple[StoredAlert, ...]  # in time order
    merged: tuple[MergedContact, ...] = ()  # anonymous contacts merged into this one, by merge time
    merged_at: str | None = None  # this (anonymous) contact was merged into ``merged_into`` then

    @property
    def merged_into(self) -> str | None:
        """The contact this anonymous contact was merged into (None: not merged)."""
        return None if self.contact is None else self.contact.merged_into

    def timeline(self) -> list[Transition | StoredAlert]:
        """The contact's own transitions and alerts in time order (a transition before the alert it caused)."""
        return [entry for _, entry in _in_time_order([(None, self.transitions, self.alerts)])]

    def full_timeline(self) -> list[TimelineEntry]:
        """Its own and its merged anonymous contacts' entries in time order, each with its origin."""
        return _in_time_order(
            [(None, self.transitions, self.alerts)] + [(m.contact_id, m.transitions, m.alerts) for m in self.merged]
        )


def identity_records(transitions: Iterable[Transition]) -> dict[str, Transition]:
    """The identity records among a contact's transitions, by the anonymous contact they merged."""
    return {t.from_: t for t in transitions if t.kind == IDENTITY}


def merged_contact_ids(merged_rows: Iterable[str], own_transitions: Iterable[Transition]) -> list[str]:
    """The anonymous contacts merged into a contact: those whose snapshot says so, and those named
    by its identity records (the sink may store one before the other)."""
    return sorted(set(merged_rows) | set(identity_records(own_transitions)))


def build_history(
    contact_id: str,
    contact: ContactSnapshot | None,
    transitions: tuple[Transition, ...],
    alerts: tuple[StoredAlert, ...],
    merged: dict[str, tuple[tuple[Transition, ...], tuple[StoredAlert, ...]]],
    merged_at: str | None = None,
) -> ContactHistory | None:
    """The :class:`ContactHistory` every adapter returns, from what it read; None when nothing of
    the contact itself is stored. ``merged``: anonymous contact id -> its transitions and alerts."""
    if contact is None and not transitions and not alerts:
        return None
    links = identity_records(transitions)
    entries = []
    for anon_id, (its_transitions, its_alerts) in merged.items():
        link = links.get(anon_id)
        entries.append(
            MergedContact(
                anon_id,
                None if link is None else link.occurred_at,
                None if link is None else link.reason,
                its_transitions,
                its_alerts,
            )
        )
    entries.sort(key=lambda m: (m.merged_at is None, 0 if m.merged_at is None else parse_rfc3339(m.merged_at),
                                m.contact_id))
    return ContactHistory(contact_id, contact, transitions, alerts, tuple(entries), merged_at)


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
class SpeedToLead:
    """Speed to lead of one group's ``became_hot`` alerts (rules: :mod:`.speed`).

    ``answered``: a ``lead_contacted`` answered the alert; ``answered_in_time``: before
    ``respond_by``; time to first contact over the answered alerts (median, p90 by nearest rank);
    ``overdue``: escalated (``response_overdue``); ``converted_*``: the contact reached a stage above
    the alert's stage after the alert, for alerts answered in time and for the others (late or never).
    """

    alerts: int = 0
    answered: int = 0
    answered_in_time: int = 0
    median_seconds_to_contact: float | None = None
    p90_seconds_to_contact: float | None = None
    overdue: int = 0
    converted_in_time: int = 0
    converted_late_or_never: int = 0

    @property
    def conversion_in_time(self) -> float | None:
        return self.converted_in_time / self.answered_in_time if self.answered_in_time else None

    @property
    def conversion_late_or_never(self) -> float | None:
        others = self.alerts - self.answered_in_time
        return self.converted_late_or_never / others if others else None


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
    speed_to_lead: SpeedToLead = SpeedToLead()


@dataclass(frozen=True, slots=True)
class FunnelReport:
    """The funnel of a model's stages per first-touch group; the counting rules are in docs/storage.md."""

    model: str
    by: GroupBy
    since: datetime | None
    until: datetime | None
    groups: tuple[GroupFunnel, ...]  # most contacts first
    total: GroupFunnel
