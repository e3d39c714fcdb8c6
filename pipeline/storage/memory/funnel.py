"""The funnel counted in Python over the in-memory history, by the rules of
:mod:`pipeline.storage.reports.funnel` (the SQL adapter counts the same in its queries)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise

from pipeline.state_machine.model import Model
from pipeline.state_machine.records import Alert, ContactSnapshot, FirstTouch, Transition
from pipeline.storage.reports.funnel import TOTAL_KEY, FunnelCounts, medians_of
from pipeline.storage.reports.speed import AlertOutcome, speed_to_lead
from pipeline.storage.reports.types import NO_CONTACT, NO_VALUE, GroupBy

#: (since, until) in microseconds since the epoch; since inclusive, until exclusive.
Window = tuple[int | None, int | None]
#: (alert, occurred_at, respond_by, acknowledged_at, answered_at, response_seconds, overdue_at), times
#: in microseconds (None: not acknowledged / answered / escalated).
AlertFacts = tuple[Alert, int, int, int | None, int | None, float | None, int | None]


@dataclass(frozen=True, slots=True)
class StoredTransition:
    """A transition as the memory adapter keeps it: write order and parsed time."""

    seq: int
    transition: Transition
    occurred_at: int


def _inside(moment: int, window: Window) -> bool:
    since, until = window
    return (since is None or moment >= since) and (until is None or moment < until)


def _touch_value(first_touch: FirstTouch, by: GroupBy) -> str:
    value: str | None = getattr(first_touch, by)
    return NO_VALUE if value is None else value


def count_funnel(
    model: Model,
    by: GroupBy,
    window: Window,
    moves: Iterable[StoredTransition],
    contacts: Mapping[str, ContactSnapshot],
    alerts: Iterable[AlertFacts],
) -> FunnelCounts:
    """Count one funnel: population and stages reached, regressions, stays and alerts."""
    prefix = f"{model.name}@"  # every version of the model shares its stage names
    rank = {name: index for index, name in enumerate(model.stages)}
    of_model = sorted((m for m in moves if m.transition.model.startswith(prefix)), key=lambda m: m.seq)

    merged_into = {cid: c.merged_into for cid, c in contacts.items() if c.merged_into is not None}

    def person_of(contact_id: str) -> str:  # a merged anonymous contact counts as its person
        return merged_into.get(contact_id, contact_id)

    def group_of(contact_id: str) -> str:
        contact = contacts.get(person_of(contact_id))
        return NO_CONTACT if contact is None else _touch_value(contact.first_touch, by)

    # Reached: the highest stage each contact of the population was seen at.
    top: dict[str, int | None] = {}
    regressions: dict[tuple[str, str], tuple[int, set[str]]] = {}
    for move in of_model:
        if not _inside(move.occurred_at, window):
            continue
        t = move.transition
        seen = rank.get(t.to if t.direction == "advance" else t.from_) if t.kind == "stage" else None
        person = person_of(t.contact_id)
        held = top.get(person)
        top[person] = seen if held is None else held if seen is None else max(held, seen)
        if t.kind == "stage" and t.direction == "regress":
            key = (group_of(person), t.from_)
            n, distinct = regressions.get(key, (0, set()))
            regressions[key] = (n + 1, distinct | {person})
    if window == (None, None):  # without a window, stored contacts of the model count too
        for contact_id, contact in contacts.items():
            if contact.model.startswith(prefix) and contact.merged_into is None:
                top.setdefault(contact_id, None)
    at_top: dict[str, list[int]] = defaultdict(lambda: [0] * len(rank))
    for contact_id, stage_rank in top.items():
        at_top[group_of(contact_id)][stage_rank or 0] += 1

    # Completed stays: from a stage transition to the next one of the same contact id (any time),
    # begun in the window; a merged anonymous contact's stays are its own, in its person's group.
    per_contact: dict[str, list[StoredTransition]] = defaultdict(list)
    for move in of_model:
        if move.transition.kind == "stage":
            per_contact[move.transition.contact_id].append(move)
    stays: list[tuple[str, Hashable, float]] = []
    for contact_id, entered in per_contact.items():
        entered.sort(key=lambda m: (m.occurred_at, m.seq))
        for current, following in pairwise(entered):
            if _inside(current.occurred_at, window):
                seconds = (following.occurred_at - current.occurred_at) / 1e6
                stays.append((group_of(contact_id), current.transition.to, seconds))

    # became_hot alerts, grouped by the alert's own first touch.
    alert_counts: dict[str, tuple[int, int, int]] = {}
    to_ack: list[tuple[str, Hashable, float]] = []
    outcomes: list[AlertOutcome] = []
    for alert, occurred_at, respond_by, acknowledged_at, answered_at, response_seconds, overdue_at in alerts:
        if alert.type != "became_hot" or not alert.model.startswith(prefix) or not _inside(occurred_at, window):
            continue
        group = _touch_value(alert.first_touch, by)
        outcomes.append(AlertOutcome(group, alert.contact_id, alert.stage, occurred_at, respond_by, answered_at,
                                     response_seconds, overdue_at is not None))
        n, acked, in_time = alert_counts.get(group, (0, 0, 0))
        if acknowledged_at is not None:
            acked += 1
            in_time += acknowledged_at <= respond_by
            to_ack.append((group, None, (acknowledged_at - occurred_at) / 1e6))
        alert_counts[group] = (n + 1, acked, in_time)

    # Speed to lead: the alerted contacts' stage advances (before the window's end).
    alerted = {o.contact_id for o in outcomes}
    advances: dict[str, list[tuple[int, int]]] = defaultdict(list)
    until = window[1]
    for move in of_model:
        t = move.transition
        is_advance = t.kind == "stage" and t.direction == "advance" and t.to in rank
        if t.contact_id in alerted and is_advance and (until is None or move.occurred_at < until):
            advances[t.contact_id].append((move.occurred_at, rank[t.to]))

    return FunnelCounts(
        at_top=dict(at_top),
        regressions={key: (n, len(distinct)) for key, (n, distinct) in regressions.items()},
        stay_medians=medians_of(stays),
        alert_counts=alert_counts,
        ack_medians=medians_of(to_ack),
        speed=speed_to_lead(model, outcomes, advances, TOTAL_KEY),
    )
