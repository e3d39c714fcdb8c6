"""The funnel report: per first-touch group, how many contacts reach each stage, how fast they
move on, where they fall back, and how quickly sales acts on their ``became_hot`` alerts.

Counting rules (also in docs/storage.md):

- Population: every contact with a row in ``contacts`` or a transition (of the model); with a
  window, the contacts with at least one transition in it.
- A contact *reached* stage S when one of its stage transitions (in the window) is an advance to S
  or above, or a regression from S or above (it was there). Skipped stages count as reached. Every
  contact of the population reached the first stage. The reached counts are therefore monotone.
- Conversion S→next = reached(next) / reached(S).
- Time in stage: completed stays only — from a stage transition into S (in the window) to the
  contact's next stage transition; the median over those stays.
- Regressions out of S: regression transitions whose ``from`` is S (and the distinct contacts).
- Alerts: ``became_hot`` alerts raised in the window, grouped by their own first touch;
  acknowledged, acknowledged by ``respond_by`` (speed to lead), median time to acknowledgement.

Medians are computed by PostgreSQL (``percentile_cont`` with grouping sets) or, on SQLite, in
Python over the fetched durations.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    case,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    type_coerce,
)

from pipeline.state_machine.model import Model
from pipeline.storage.protocol import GroupBy
from pipeline.storage.tables import UtcDateTime, alerts, contacts, transitions

NO_VALUE = "(none)"  # the contact's first touch has no value for this field
NO_CONTACT = "(no contact row)"  # transitions of a contact whose snapshot is not stored
TOTAL = "all"  # the name of the all-groups row in reports
_TOTAL_KEY = "\x00total"  # internal key of that row: PostgreSQL text cannot hold NUL, so no group collides


@dataclass(frozen=True, slots=True)
class StageFigures:
    stage: str
    reached: int
    conversion_to_next: float | None  # None for the last stage, or when nobody reached this one
    stays: int  # completed stays measured for the median
    median_seconds_in_stage: float | None
    regressed_contacts: int
    regressions: int


@dataclass(frozen=True, slots=True)
class GroupFunnel:
    group: str
    contacts: int
    stages: tuple[StageFigures, ...]
    hot_alerts: int
    acknowledged: int
    acknowledged_in_time: int  # by respond_by
    median_seconds_to_ack: float | None


@dataclass(frozen=True, slots=True)
class FunnelReport:
    model: str
    by: GroupBy
    since: datetime | None
    until: datetime | None
    groups: tuple[GroupFunnel, ...]  # most contacts first
    total: GroupFunnel


_CONTACT_COLUMN = {
    "source": contacts.c.first_touch_source,
    "utm_source": contacts.c.utm_source,
    "utm_medium": contacts.c.utm_medium,
    "utm_campaign": contacts.c.utm_campaign,
}
_ALERT_COLUMN = {
    "source": alerts.c.first_touch_source,
    "utm_source": alerts.c.utm_source,
    "utm_medium": alerts.c.utm_medium,
    "utm_campaign": alerts.c.utm_campaign,
}


def _window(column: Any, since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    conditions = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return conditions


def _of_model(column: ColumnElement[str], model: Model) -> ColumnElement[bool]:
    return column.like(f"{model.name}@%")  # every version of the model shares its stage names


def _contact_group(by: GroupBy) -> ColumnElement[str]:
    return case((contacts.c.contact_id.is_(None), NO_CONTACT), else_=func.coalesce(_CONTACT_COLUMN[by], NO_VALUE))


def _medians(
    connection: Connection, query: Select[Any], grouped_by_key: bool
) -> dict[tuple[str, Hashable], tuple[int, float | None]]:
    """(group, key) -> (count, median seconds) over rows (group, key, start, end) of ``query``;
    the group ``_TOTAL_KEY`` holds the figures over all groups."""
    rows = query.subquery()
    group, key, start, end = rows.c
    if connection.dialect.name == "postgresql":
        seconds = func.extract("epoch", end - start)
        median = func.percentile_cont(0.5).within_group(seconds)
        sets = func.grouping_sets(tuple_(group, key), tuple_(key)) if grouped_by_key else func.grouping_sets(
            tuple_(group), tuple_()
        )
        aggregated = select(group, key if grouped_by_key else literal(None), func.count(), median).group_by(sets)
        return {
            (_TOTAL_KEY if g is None else g, k): (n, None if m is None else float(m))
            for g, k, n, m in connection.execute(aggregated)
        }
    durations: dict[tuple[str, Hashable], list[float]] = defaultdict(list)
    for g, k, started, ended in connection.execute(select(rows)):
        seconds_taken = (ended - started).total_seconds()
        k = k if grouped_by_key else None
        durations[(g, k)].append(seconds_taken)
        durations[(_TOTAL_KEY, k)].append(seconds_taken)
    return {gk: (len(v), statistics.median(v)) for gk, v in durations.items()}


def compute_funnel(
    connection: Connection,
    model: Model,
    by: GroupBy = "source",
    since: datetime | None = None,
    until: datetime | None = None,
) -> FunnelReport:
    """Run the funnel queries on ``connection`` and assemble the report."""
    t = transitions.c
    stages = model.stages
    rank = {name: index for index, name in enumerate(stages)}
    in_window = _window(t.occurred_at, since, until)
    stage_moves = and_(t.kind == "stage", _of_model(t.model, model), *in_window)
    group = _contact_group(by)

    # Reached: the highest stage each contact was seen at, then contacts per (group, top stage).
    # One pass over the transitions gives both the population (contacts with a transition of the
    # model, in the window if any) and each one's top stage; without a window, a full join adds
    # the contacts that have a snapshot but no transition yet.
    seen_at = case((t.direction == "advance", case(rank, value=t.to)), else_=case(rank, value=t["from"]))
    per_contact = (
        select(t.contact_id, func.max(case((t.kind == "stage", seen_at))).label("top"))
        .where(_of_model(t.model, model), *in_window)
        .group_by(t.contact_id)
        .subquery()
    )
    joined_contacts = contacts.c.contact_id == per_contact.c.contact_id
    top_rank = func.coalesce(per_contact.c.top, literal_column("0"))  # no bind parameter: same SQL in GROUP BY
    if since is None and until is None:
        reached_query = (
            select(group, top_rank, func.count())
            .select_from(per_contact.join(contacts, joined_contacts, full=True))
            .where(or_(per_contact.c.contact_id.is_not(None), _of_model(contacts.c.model, model)))
        )
    else:
        reached_query = select(group, top_rank, func.count()).select_from(
            per_contact.outerjoin(contacts, joined_contacts)
        )
    reached_rows = connection.execute(reached_query.group_by(group, top_rank))
    at_top: dict[str, list[int]] = defaultdict(lambda: [0] * len(stages))
    for g, top_rank, n in reached_rows:
        at_top[g][top_rank] += n

    # Regressions out of each stage.
    joined = transitions.outerjoin(contacts, contacts.c.contact_id == t.contact_id)
    regressions: dict[tuple[str, str], tuple[int, int]] = {}
    for g, stage, n, distinct in connection.execute(
        select(group, t["from"], func.count(), func.count(t.contact_id.distinct()))
        .select_from(joined)
        .where(stage_moves, t.direction == "regress")
        .group_by(group, t["from"])
    ):
        regressions[(g, stage)] = (n, distinct)

    # Completed stays: from a stage transition to the contact's next one.
    stays = (
        select(
            t.contact_id,
            t.to.label("stage"),
            t.occurred_at.label("entered"),
            type_coerce(
                func.lead(t.occurred_at).over(partition_by=t.contact_id, order_by=(t.occurred_at, t.seq)),
                UtcDateTime(),
            ).label("left"),
        )
        .where(t.kind == "stage", _of_model(t.model, model))
        .subquery()
    )
    stay_rows = (
        select(_contact_group(by).label("g"), stays.c.stage, stays.c.entered, stays.c.left)
        .select_from(stays.outerjoin(contacts, contacts.c.contact_id == stays.c.contact_id))
        .where(stays.c.left.is_not(None), *_window(stays.c.entered, since, until))
    )
    stay_medians = _medians(connection, stay_rows, grouped_by_key=True)

    # became_hot alerts, grouped by the alert's own first touch (the contact's, which never changes).
    a = alerts.c
    alert_group = func.coalesce(_ALERT_COLUMN[by], NO_VALUE)
    alert_filter = and_(a.type == "became_hot", _of_model(a.model, model), *_window(a.occurred_at, since, until))
    alert_counts: dict[str, tuple[int, int, int]] = {}
    for g, n, acked, in_time in connection.execute(
        select(
            alert_group,
            func.count(),
            func.count(a.acknowledged_at),
            func.coalesce(func.sum(case((a.acknowledged_at <= a.respond_by, 1), else_=0)), 0),
        )
        .where(alert_filter)
        .group_by(alert_group)
    ):
        alert_counts[g] = (n, acked, int(in_time))
    ack_medians = _medians(
        connection,
        select(alert_group.label("g"), literal("ack").label("k"), a.occurred_at, a.acknowledged_at).where(
            alert_filter, a.acknowledged_at.is_not(None)
        ),
        grouped_by_key=False,
    )

    def figures(g: str, tops: Sequence[int]) -> GroupFunnel:
        reached = [sum(tops[i:]) for i in range(len(stages))]
        rows = []
        for i, stage in enumerate(stages):
            n_stays, median = stay_medians.get((g, stage), (0, None))
            n_regress, n_regressed = regressions.get((g, stage), (0, 0))
            conversion = reached[i + 1] / reached[i] if i + 1 < len(stages) and reached[i] else None
            rows.append(StageFigures(stage, reached[i], conversion, n_stays, median, n_regressed, n_regress))
        hot, acked, in_time = alert_counts.get(g, (0, 0, 0))
        return GroupFunnel(g, reached[0], tuple(rows), hot, acked, in_time, ack_medians.get((g, None), (0, None))[1])

    names = set(at_top) | set(alert_counts) | {g for g, _stage in regressions}
    total_tops = [sum(tops[i] for tops in at_top.values()) for i in range(len(stages))]
    for stage in stages:
        per_group = [v for (g, s), v in regressions.items() if s == stage]
        regressions[(_TOTAL_KEY, stage)] = (sum(n for n, _ in per_group), sum(d for _, d in per_group))
    hot_counts = list(alert_counts.values())
    alert_counts[_TOTAL_KEY] = (
        sum(v[0] for v in hot_counts), sum(v[1] for v in hot_counts), sum(v[2] for v in hot_counts)
    )
    groups = sorted((figures(g, at_top[g]) for g in names), key=lambda f: (-f.contacts, -f.hot_alerts, f.group))
    total = figures(_TOTAL_KEY, total_tops)
    return FunnelReport(model.label, by, since, until, tuple(groups), replace(total, group=TOTAL))
