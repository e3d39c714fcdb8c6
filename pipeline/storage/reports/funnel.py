"""Assembling the funnel report from per-group counts; every adapter's funnel query ends here.

Counting rules (also in docs/storage.md):

- Population: every contact with a row in ``contacts`` (a stored snapshot) of the model or a
  transition of the model; with a window, the contacts with at least one transition in it.
- A contact *reached* stage S when one of its stage transitions (in the window) is an advance to S
  or above, or a regression from S or above (it was there). Skipped stages count as reached. Every
  contact of the population reached the first stage. The reached counts are therefore monotone.
- Conversion S→next = reached(next) / reached(S).
- Time in stage: completed stays only — from a stage transition into S (entered in the window) to
  the contact's next stage transition; the median over those stays.
- Regressions out of S: regression transitions (in the window) whose ``from`` is S (and the
  distinct contacts).
- Identity merges: a contact whose snapshot has ``merged_into`` C (an anonymous visitor merged
  into the person C) is not a contact of its own: it is left out of the population, and its
  transitions count as C's (C's group — C's first touch, the earlier of the two after a merge —,
  C's highest stage, regressions and their distinct contacts). Its completed stays are its own
  (between its own transitions), counted in C's group. Until its snapshot is stored, it counts on
  its own (the sink may write transitions first).
- Alerts: ``became_hot`` alerts raised in the window, grouped by their own first touch;
  acknowledged, acknowledged by ``respond_by``, median time to acknowledgement; and speed to lead
  (answered by a ``lead_contacted``, in time, time to first contact, overdue, conversion in time
  against late or never), by the rules of :mod:`.speed`.

An adapter counts (:class:`FunnelCounts`); :func:`assemble_funnel` turns the counts into the
:class:`~.types.FunnelReport`, so the arithmetic, the ordering and the total are the same on
every backend.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from pipeline.state_machine.model import Model
from pipeline.storage.reports.types import TOTAL, FunnelReport, GroupBy, GroupFunnel, SpeedToLead, StageFigures

#: Internal group key of the all-groups figures (PostgreSQL text cannot hold NUL: no group collides).
TOTAL_KEY = "\x00total"

#: (group, key) -> (how many durations, their median in seconds).
Medians = dict[tuple[str, Hashable], tuple[int, float | None]]


@dataclass(slots=True)
class FunnelCounts:
    """What an adapter counted for one funnel; groups are already named (``NO_VALUE``, ...)."""

    #: group -> contacts per highest stage rank reached (index = rank in ``model.stages``).
    at_top: dict[str, list[int]]
    #: (group, from stage) -> (regression transitions, distinct contacts).
    regressions: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    #: (group, stage) -> completed stays and their median, with ``TOTAL_KEY`` rows per stage.
    stay_medians: Medians = field(default_factory=dict)
    #: group -> (became_hot alerts, acknowledged, acknowledged by respond_by).
    alert_counts: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    #: (group, None) -> acknowledged alerts and the median time to acknowledge, with ``TOTAL_KEY``.
    ack_medians: Medians = field(default_factory=dict)
    #: group -> speed-to-lead figures (:func:`.speed.speed_to_lead`), with ``TOTAL_KEY``.
    speed: dict[str, SpeedToLead] = field(default_factory=dict)


def medians_of(durations: Iterable[tuple[str, Hashable, float]]) -> Medians:
    """(group, key) -> (count, median) over ``(group, key, seconds)``, plus ``(TOTAL_KEY, key)``."""
    grouped: dict[tuple[str, Hashable], list[float]] = defaultdict(list)
    for group, key, seconds in durations:
        grouped[(group, key)].append(seconds)
        grouped[(TOTAL_KEY, key)].append(seconds)
    return {gk: (len(v), statistics.median(v)) for gk, v in grouped.items()}


def assemble_funnel(
    model: Model, by: GroupBy, since: datetime | None, until: datetime | None, counts: FunnelCounts
) -> FunnelReport:
    """The report: per group (most contacts first) and the total over all groups."""
    stages = model.stages
    at_top = counts.at_top
    regressions = dict(counts.regressions)
    alert_counts = dict(counts.alert_counts)

    def figures(g: str, tops: Sequence[int]) -> GroupFunnel:
        reached = [sum(tops[i:]) for i in range(len(stages))]
        rows = []
        for i, stage in enumerate(stages):
            n_stays, median = counts.stay_medians.get((g, stage), (0, None))
            n_regress, n_regressed = regressions.get((g, stage), (0, 0))
            conversion = reached[i + 1] / reached[i] if i + 1 < len(stages) and reached[i] else None
            rows.append(StageFigures(stage, reached[i], conversion, n_stays, median, n_regressed, n_regress))
        hot, acked, in_time = alert_counts.get(g, (0, 0, 0))
        median_to_ack = counts.ack_medians.get((g, None), (0, None))[1]
        speed = counts.speed.get(g, SpeedToLead())
        return GroupFunnel(g, reached[0], tuple(rows), hot, acked, in_time, median_to_ack, speed)

    names = set(at_top) | set(alert_counts) | {g for g, _stage in regressions} | (set(counts.speed) - {TOTAL_KEY})
    no_contacts = [0] * len(stages)
    total_tops = [sum(tops[i] for tops in at_top.values()) for i in range(len(stages))]
    for stage in stages:
        per_group = [v for (g, s), v in regressions.items() if s == stage]
        regressions[(TOTAL_KEY, stage)] = (sum(n for n, _ in per_group), sum(d for _, d in per_group))
    hot_counts = list(alert_counts.values())
    alert_counts[TOTAL_KEY] = (
        sum(v[0] for v in hot_counts), sum(v[1] for v in hot_counts), sum(v[2] for v in hot_counts)
    )
    groups = sorted(
        (figures(g, at_top.get(g, no_contacts)) for g in names), key=lambda f: (-f.contacts, -f.hot_alerts, f.group)
    )
    total = figures(TOTAL_KEY, total_tops)
    return FunnelReport(model.label, by, since, until, tuple(groups), replace(total, group=TOTAL))
