"""Speed to lead in the funnel: per first-touch group, how ``became_hot`` alerts were answered and
whether answering in time went with converting (the seeds' claim, measured on your own history).

Rules (also in docs/storage.md):

- The alerts: ``became_hot`` alerts of the model raised in the window, grouped by their own first
  touch (as the funnel's alert counts).
- Answered: the first ``lead_contacted`` after the alert answered it (the sink stores the answer's
  time and response time on the alert row); in time: strictly before ``respond_by``.
- Time to first contact: over the answered alerts; the median (mean of the two middle values for
  an even count) and the p90 by nearest rank (the ⌈0.9·n⌉-th smallest).
- Overdue: the alert escalated (a ``response_overdue`` record is stored for it).
- Converted: the contact has a stage advance, at or after the alert's time (and before ``until``),
  to a stage above the one it was at when the alert was raised. Conversion in time = converted /
  answered in time; late or never = converted / (alerts - answered in time).

Adapters read one :class:`AlertOutcome` per alert and each alerted contact's stage advances;
:func:`speed_to_lead` does the arithmetic, the same on every backend.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from pipeline.state_machine.model import Model
from pipeline.storage.reports.types import SpeedToLead

#: Stage advances of a contact: (time in microseconds, rank of the stage advanced to).
Advances = Sequence[tuple[int, int]]


class AlertOutcome(NamedTuple):
    """One ``became_hot`` alert as stored, times in microseconds since the epoch."""

    group: str
    contact_id: str
    stage: str
    occurred_at: int
    respond_by: int
    answered_at: int | None
    response_seconds: float | None
    overdue: bool


def nearest_rank(values: Sequence[float], fraction: float) -> float | None:
    """The ⌈fraction·n⌉-th smallest value (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def _converted(outcome: AlertOutcome, rank: Mapping[str, int], advances: Advances) -> bool:
    floor = rank.get(outcome.stage, len(rank))
    return any(at >= outcome.occurred_at and to > floor for at, to in advances)


def speed_to_lead(
    model: Model, outcomes: Iterable[AlertOutcome], advances: Mapping[str, Advances], total_key: str
) -> dict[str, SpeedToLead]:
    """Figures per group, and over all groups under ``total_key``."""
    rank = {name: index for index, name in enumerate(model.stages)}
    grouped: dict[str, list[AlertOutcome]] = defaultdict(list)
    for outcome in outcomes:
        grouped[outcome.group].append(outcome)
        grouped[total_key].append(outcome)
    figures = {}
    for group, alerts in grouped.items():
        times = [a.response_seconds for a in alerts if a.answered_at is not None and a.response_seconds is not None]
        in_time = [a for a in alerts if a.answered_at is not None and a.answered_at < a.respond_by]
        in_time_ids = {id(a) for a in in_time}
        converted = [a for a in alerts if _converted(a, rank, advances.get(a.contact_id, ()))]
        figures[group] = SpeedToLead(
            alerts=len(alerts),
            answered=sum(1 for a in alerts if a.answered_at is not None),
            answered_in_time=len(in_time),
            median_seconds_to_contact=statistics.median(times) if times else None,
            p90_seconds_to_contact=nearest_rank(times, 0.9),
            overdue=sum(1 for a in alerts if a.overdue),
            converted_in_time=sum(1 for a in converted if id(a) in in_time_ids),
            converted_late_or_never=sum(1 for a in converted if id(a) not in in_time_ids),
        )
    return figures
