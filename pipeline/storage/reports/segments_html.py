"""The value-segment report as one self-contained HTML page: inline CSS and SVG, no script.

Per group, one chart per view: the share of contacts and the share of revenue per segment (two
bars per segment: is "80% of revenue from loyal customers" true here?), and the flows between
segments in the window (one bar per from -> to); then the figures as a table.
"""

from __future__ import annotations

from html import escape

from pipeline.storage.reports.segments import GroupSegments, SegmentReport

_WIDTH = 720
_LABEL = 150
_BAR = 14
_ROW = 40
_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1b1b1b; background: #fff; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin: 28px 0 4px; } h3 { font-size: 14px; margin: 12px 0 4px; }
.meta { color: #555; margin: 0 0 8px; }
svg text { font: 12px system-ui, sans-serif; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: middle; }
table { border-collapse: collapse; margin-top: 8px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
"""
_CONTACTS, _REVENUE, _FLOW = "#9ecae1", "#1f4e79", "#e08214"


def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


def shares_svg(group: GroupSegments) -> str:
    """Share of contacts (light) and of revenue (dark) per segment: ``rect.share`` bars."""
    usable = _WIDTH - _LABEL - 70
    height = max(1, len(group.segments)) * _ROW
    parts = [
        f'<svg class="shares" data-group="{escape(group.group)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{_WIDTH}" height="{height}" viewBox="0 0 {_WIDTH} {height}" role="img" '
        f'aria-label="contacts and revenue per segment of {escape(group.group)}">'
    ]
    for i, s in enumerate(group.segments):
        y = i * _ROW
        contact_share = s.contacts / group.contacts if group.contacts else 0.0
        revenue_share = s.revenue_share or 0.0
        parts.append(f'<text x="0" y="{y + 18}">{escape(s.segment)}</text>')
        for j, (kind, share, colour) in enumerate(
            (("contacts", contact_share, _CONTACTS), ("revenue", revenue_share, _REVENUE))
        ):
            width = max(1.0, usable * share)
            top = y + 4 + j * (_BAR + 2)
            parts.append(
                f'<rect class="share" data-segment="{escape(s.segment)}" data-kind="{kind}" '
                f'data-share="{share:.4f}" x="{_LABEL}" y="{top}" width="{width:.1f}" height="{_BAR}" '
                f'fill="{colour}"><title>{escape(s.segment)}: {_pct(share)} of {kind}</title></rect>'
                f'<text x="{_LABEL + width + 4:.1f}" y="{top + 11}">{_pct(share)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def flows_svg(group: GroupSegments) -> str:
    """One ``rect.flow`` bar per (from -> to) move in the window, most moves first."""
    if not group.flows:
        return '<p class="meta">No segment moves in the window.</p>'
    top = max(f.moves for f in group.flows)
    usable = _WIDTH - _LABEL - 70
    height = len(group.flows) * (_BAR + 8)
    parts = [
        f'<svg class="flows" data-group="{escape(group.group)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{_WIDTH}" height="{height}" viewBox="0 0 {_WIDTH} {height}" role="img" '
        f'aria-label="segment moves of {escape(group.group)}">'
    ]
    for i, f in enumerate(group.flows):
        y = i * (_BAR + 8)
        width = max(2.0, usable * f.moves / top)
        label = f"{f.from_} → {f.to}"
        parts.append(
            f'<text x="0" y="{y + 12}">{escape(label)}</text>'
            f'<rect class="flow" data-from="{escape(f.from_)}" data-to="{escape(f.to)}" data-moves="{f.moves}" '
            f'x="{_LABEL}" y="{y}" width="{width:.1f}" height="{_BAR}" fill="{_FLOW}">'
            f"<title>{escape(label)}: {f.moves}</title></rect>"
            f'<text x="{_LABEL + width + 4:.1f}" y="{y + 12}">{f.moves}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(group: GroupSegments) -> str:
    head = "".join(f"<th>{h}</th>" for h in (
        "segment", "contacts", "revenue", "share of revenue", "orders", "avg order value", "promo share"
    ))
    rows = "".join(
        f"<tr><td>{escape(s.segment)}</td><td>{s.contacts}</td><td>{s.revenue:,.0f}</td>"
        f"<td>{_pct(s.revenue_share)}</td><td>{s.orders}</td>"
        f"<td>{'–' if s.average_order_value is None else f'{s.average_order_value:,.0f}'}</td>"
        f"<td>{_pct(s.promo_share)}</td></tr>"
        for s in group.segments
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def render_segments_html(report: SegmentReport) -> str:
    since = report.since.isoformat() if report.since else "the beginning"
    until = report.until.isoformat() if report.until else "now"
    sections = []
    for g in report.groups:
        sections.append(
            f'<section data-group="{escape(g.group)}"><h2>{escape(g.group)}</h2>'
            f'<p class="meta">{g.contacts} contacts, revenue {g.revenue:,.0f} {escape(report.currency)}</p>'
            f'<h3>Contacts and revenue per segment</h3><p class="legend"><span style="background:{_CONTACTS}">'
            f'</span>contacts<span style="background:{_REVENUE}"></span>revenue</p>{shares_svg(g)}'
            f"<h3>Moves between segments</h3>{flows_svg(g)}{_table(g)}</section>"
        )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Value segments: {escape(report.model)}</title><style>{_CSS}</style></head><body>"
        f"<h1>Value segments of {escape(report.model)}, by {escape(report.by)}</h1>"
        f'<p class="meta">Revenue in {escape(report.currency)}, net of refunds; segments as of now; '
        f"moves from {escape(since)} to {escape(until)}.</p>{''.join(sections)}</body></html>\n"
    )
