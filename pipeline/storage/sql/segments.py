"""The value-segment queries on SQL (issue 14): current contacts and revenue per (group, segment),
and ``segment`` transitions per (group, from, to) in the window, summed by the database.

The rules are in :mod:`pipeline.storage.reports.segments`, which assembles the report.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, case, func, select

from pipeline.state_machine.model import Model
from pipeline.storage.reports.segments import SegmentReport, SegmentTotals, assemble_segments, segment_of
from pipeline.storage.reports.types import NO_CONTACT, NO_VALUE, GroupBy
from pipeline.storage.sql.tables import contacts, transitions

_CONTACT_COLUMN = {
    "source": contacts.c.first_touch_source,
    "utm_source": contacts.c.utm_source,
    "utm_medium": contacts.c.utm_medium,
    "utm_campaign": contacts.c.utm_campaign,
}
SEGMENT = "segment"  # the transition kind of a segment move


def compute_segments(
    connection: Connection, model: Model, by: GroupBy, since: datetime | None, until: datetime | None
) -> SegmentReport:
    c, t = contacts.c, transitions.c
    of_model = f"{model.name}@%"
    group = func.coalesce(_CONTACT_COLUMN[by], NO_VALUE)
    current = (
        select(
            group, c.segment, func.count(), func.coalesce(func.sum(c.revenue), 0.0),
            func.coalesce(func.sum(c.orders), 0), func.coalesce(func.sum(c.promo_orders), 0),
            func.coalesce(func.sum(c.foreign_orders), 0),
        )
        .where(c.merged_into.is_(None), c.model.like(of_model))
        .group_by(group, c.segment)
    )
    totals: SegmentTotals = {}
    for g, segment, *figures in connection.execute(current):
        key = (g, segment_of(segment, model))
        summed = totals.setdefault(key, [0.0] * 5)
        for i, value in enumerate(figures):
            summed[i] += float(value)
    flow_group = case((c.contact_id.is_(None), NO_CONTACT), else_=group)
    conditions = [t.kind == SEGMENT, t.model.like(of_model)]
    if since is not None:
        conditions.append(t.occurred_at >= since)
    if until is not None:
        conditions.append(t.occurred_at < until)
    moves = (
        select(flow_group, t["from"], t["to"], func.count())
        .select_from(transitions.outerjoin(contacts, c.contact_id == t.contact_id))
        .where(*conditions)
        .group_by(flow_group, t["from"], t["to"])
    )
    flows = {(g, f, to): int(n) for g, f, to, n in connection.execute(moves)}
    return assemble_segments(model, by, since, until, totals, flows)
