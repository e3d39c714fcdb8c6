"""The value-segment report (``leadflow segments``, issue 14): per first-touch group and segment,
contacts, net revenue and its share, average order value and promo share; and the flows between
segments over a period (``segment`` transitions in the window).

Rules, the same on every backend: the figures per segment are the contacts' *current* snapshots
(contacts of the model, merged anonymous contacts left out; a snapshot without a segment counts in
the fallback); ``--since`` / ``--until`` bound only the flows. Revenue is in the model's currency,
net of refunds; orders in another currency count in ``orders`` and ``foreign_orders`` but not in the
average order value (revenue / orders in the currency). Adapters count; :func:`assemble_segments`
builds the report from their counts.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.state_machine.model import Model
from pipeline.storage.reports.types import TOTAL, GroupBy

#: (group, segment) -> [contacts, revenue, orders, promo_orders, foreign_orders]
SegmentTotals = dict[tuple[str, str], list[float]]
#: (group, from segment, to segment) -> moves
SegmentFlows = dict[tuple[str, str, str], int]


@dataclass(frozen=True, slots=True)
class SegmentFigures:
    segment: str
    contacts: int
    revenue: float
    revenue_share: float | None  # of the group's revenue (None: the group has none)
    orders: int
    promo_orders: int
    foreign_orders: int
    average_order_value: float | None  # revenue / orders in the model's currency
    promo_share: float | None  # promo_orders / orders


@dataclass(frozen=True, slots=True)
class SegmentFlow:
    from_: str
    to: str
    moves: int


@dataclass(frozen=True, slots=True)
class GroupSegments:
    group: str
    contacts: int
    revenue: float
    segments: tuple[SegmentFigures, ...]  # every segment of the model, most valuable first
    flows: tuple[SegmentFlow, ...]  # most moves first


@dataclass(frozen=True, slots=True)
class SegmentReport:
    model: str
    currency: str
    by: GroupBy
    since: datetime | None
    until: datetime | None
    groups: tuple[GroupSegments, ...]  # "all" first, then by revenue

    def moves_out_of(self, segment: str) -> int:
        """All groups' moves out of ``segment`` in the window (negative: won back; loyal: slipped)."""
        return sum(f.moves for f in self.groups[0].flows if f.from_ == segment)


def segment_of(value: str | None, model: Model) -> str:
    """A stored segment name; a snapshot without one (an older row) is in the fallback."""
    assert model.segments is not None
    return model.segments.fallback if value is None else value


def assemble_segments(
    model: Model,
    by: GroupBy,
    since: datetime | None,
    until: datetime | None,
    totals: SegmentTotals,
    flows: SegmentFlows,
) -> SegmentReport:
    segments = model.segments
    assert segments is not None
    names = segments.names()
    all_totals: SegmentTotals = defaultdict(lambda: [0.0] * 5)
    for (_, segment), figures in totals.items():
        summed = all_totals[(TOTAL, segment)]
        for i, value in enumerate(figures):
            summed[i] += value
    all_flows: SegmentFlows = defaultdict(int)
    for (_, from_, to), moves in flows.items():
        all_flows[(TOTAL, from_, to)] += moves
    group_names = sorted({g for g, _ in totals} | {g for g, _, _ in flows})
    groups = [_group(TOTAL, names, dict(all_totals), dict(all_flows))]
    others = [_group(g, names, totals, flows) for g in group_names]
    groups += sorted(others, key=lambda g: (-g.revenue, -g.contacts, g.group))
    return SegmentReport(model.label, segments.currency, by, since, until, tuple(groups))


def _group(group: str, names: tuple[str, ...], totals: SegmentTotals, flows: SegmentFlows) -> GroupSegments:
    rows = {segment: figures for (g, segment), figures in totals.items() if g == group}
    revenue = sum(figures[1] for figures in rows.values())
    ordered = list(names) + sorted(set(rows) - set(names))  # a segment a newer model dropped: last
    figures_list = []
    for name in ordered:
        contacts, money, orders, promo, foreign = rows.get(name, [0.0] * 5)
        in_currency = orders - foreign
        figures_list.append(
            SegmentFigures(
                segment=name,
                contacts=int(contacts),
                revenue=round(money, 2),
                revenue_share=None if revenue <= 0 else money / revenue,
                orders=int(orders),
                promo_orders=int(promo),
                foreign_orders=int(foreign),
                average_order_value=None if in_currency <= 0 else round(money / in_currency, 2),
                promo_share=None if orders <= 0 else promo / orders,
            )
        )
    moved = sorted(
        (SegmentFlow(f, t, n) for (g, f, t), n in flows.items() if g == group), key=lambda x: (-x.moves, x.from_, x.to)
    )
    contacts_total = int(sum(figures[0] for figures in rows.values()))
    return GroupSegments(group, contacts_total, round(revenue, 2), tuple(figures_list), tuple(moved))


def segments_as_dict(report: SegmentReport) -> dict[str, Any]:
    def group(g: GroupSegments) -> dict[str, Any]:
        return {
            "group": g.group,
            "contacts": g.contacts,
            "revenue": g.revenue,
            "segments": [
                {
                    "segment": s.segment, "contacts": s.contacts, "revenue": s.revenue,
                    "revenue_share": s.revenue_share, "orders": s.orders, "promo_orders": s.promo_orders,
                    "foreign_orders": s.foreign_orders, "average_order_value": s.average_order_value,
                    "promo_share": s.promo_share,
                }
                for s in g.segments
            ],
            "flows": [{"from": f.from_, "to": f.to, "moves": f.moves} for f in g.flows],
        }

    return {
        "model": report.model,
        "currency": report.currency,
        "by": report.by,
        "since": None if report.since is None else report.since.isoformat(),
        "until": None if report.until is None else report.until.isoformat(),
        "groups": [group(g) for g in report.groups],
    }


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


def _money(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def format_segments(report: SegmentReport) -> str:
    window = f"flows from {report.since.isoformat() if report.since else 'the beginning'}"
    window += f" to {report.until.isoformat() if report.until else 'now'}"
    lines = [f"Value segments of {report.model} ({report.currency}, net of refunds; {window}), by {report.by}"]
    for g in report.groups:
        lines += ["", f"{g.group}: {g.contacts} contacts, revenue {_money(g.revenue)}"]
        lines.append(f"  {'segment':<14}{'contacts':>9}{'revenue':>16}{'share':>8}{'orders':>8}{'AOV':>13}{'promo':>8}")
        for s in g.segments:
            lines.append(
                f"  {s.segment:<14}{s.contacts:>9}{_money(s.revenue):>16}{_percent(s.revenue_share):>8}"
                f"{s.orders:>8}{_money(s.average_order_value):>13}{_percent(s.promo_share):>8}"
            )
        if g.flows:
            lines.append("  flows: " + ", ".join(f"{f.from_} -> {f.to} {f.moves}" for f in g.flows))
    return "\n".join(lines)
