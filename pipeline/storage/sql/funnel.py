"""The funnel queries on SQL: per first-touch group, contacts per stage reached, completed stays,
regressions and ``became_hot`` alerts, counted by the database.

The counting rules are in :mod:`pipeline.storage.reports.funnel`, which assembles the report.
Medians are computed by PostgreSQL (``percentile_cont`` with grouping sets) or, on SQLite, in
Python over the fetched durations.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
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

from pipeline.state_machine.clock import from_datetime
from pipeline.state_machine.model import Model
from pipeline.storage.reports.funnel import TOTAL_KEY, FunnelCounts, Medians, assemble_funnel, medians_of
from pipeline.storage.reports.speed import AlertOutcome, speed_to_lead
from pipeline.storage.reports.types import NO_CONTACT, NO_VALUE, FunnelReport, GroupBy
from pipeline.storage.sql.tables import UtcDateTime, alerts, contacts, transitions

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


def _medians(connection: Connection, query: Select[Any], grouped_by_key: bool) -> Medians:
    """(group, key) -> (count, median seconds) over rows (group, key, start, end) of ``query``;
    the group ``TOTAL_KEY`` holds the figures over all groups."""
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
            (TOTAL_KEY if g is None else g, k): (n, None if m is None else float(m))
            for g, k, n, m in connection.execute(aggregated)
        }
    durations: list[tuple[str, Hashable, float]] = [
        (g, k if grouped_by_key else None, (ended - started).total_seconds())
        for g, k, started, ended in connection.execute(select(rows))
    ]
    return medians_of(durations)


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
    # A merged anonymous contact counts as the person it was merged into (rule in reports.funnel).
    merged = (
        select(contacts.c.contact_id, contacts.c.merged_into)
        .where(contacts.c.merged_into.is_not(None))
        .subquery("merged")
    )
    person = func.coalesce(merged.c.merged_into, t.contact_id)
    with_person = transitions.outerjoin(merged, merged.c.contact_id == t.contact_id)
    per_contact = (
        select(person.label("contact_id"), func.max(case((t.kind == "stage", seen_at))).label("top"))
        .select_from(with_person)
        .where(_of_model(t.model, model), *in_window)
        .group_by(person)
        .subquery()
    )
    joined_contacts = contacts.c.contact_id == per_contact.c.contact_id
    top_rank = func.coalesce(per_contact.c.top, literal_column("0"))  # no bind parameter: same SQL in GROUP BY
    if since is None and until is None:
        reached_query = (
            select(group, top_rank, func.count())
            .select_from(per_contact.join(contacts, joined_contacts, full=True))
            .where(
                or_(
                    per_contact.c.contact_id.is_not(None),
                    and_(_of_model(contacts.c.model, model), contacts.c.merged_into.is_(None)),
                )
            )
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
    joined = with_person.outerjoin(contacts, contacts.c.contact_id == person)
    regressions: dict[tuple[str, str], tuple[int, int]] = {}
    for g, stage, n, distinct in connection.execute(
        select(group, t["from"], func.count(), func.count(person.distinct()))
        .select_from(joined)
        .where(stage_moves, t.direction == "regress")
        .group_by(group, t["from"])
    ):
        regressions[(g, stage)] = (n, distinct)

    # Completed stays: from a stage transition to the next one of the same contact id (a merged
    # anonymous contact's stays are its own, counted in the person's group).
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
    stay_person = func.coalesce(merged.c.merged_into, stays.c.contact_id)
    stay_rows = (
        select(_contact_group(by).label("g"), stays.c.stage, stays.c.entered, stays.c.left)
        .select_from(
            stays.outerjoin(merged, merged.c.contact_id == stays.c.contact_id).outerjoin(
                contacts, contacts.c.contact_id == stay_person
            )
        )
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

    # Speed to lead: each alert's answer and escalation, and the alerted contacts' stage advances.
    outcomes = [
        AlertOutcome(g, contact_id, stage, from_datetime(occurred), from_datetime(respond_by),
                     None if answered is None else from_datetime(answered), seconds, overdue is not None)
        for g, contact_id, stage, occurred, respond_by, answered, seconds, overdue in connection.execute(
            select(alert_group, a.contact_id, a.stage, a.occurred_at, a.respond_by, a.answered_at,
                   a.response_seconds, a.overdue_at).where(alert_filter)
        )
    ]
    advances: dict[str, list[tuple[int, int]]] = defaultdict(list)
    if outcomes:
        alerted = select(a.contact_id).where(alert_filter).distinct()
        for contact_id, to, occurred in connection.execute(
            select(t.contact_id, t.to, t.occurred_at).where(
                t.kind == "stage", t.direction == "advance", _of_model(t.model, model),
                t.contact_id.in_(alerted), *_window(t.occurred_at, None, until),
            )
        ):
            if to in rank:
                advances[contact_id].append((from_datetime(occurred), rank[to]))
    speed = speed_to_lead(model, outcomes, advances, TOTAL_KEY)

    counts = FunnelCounts(dict(at_top), regressions, stay_medians, alert_counts, ack_medians, speed)
    return assemble_funnel(model, by, since, until, counts)
