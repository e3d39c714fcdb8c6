"""The funnel report as one self-contained HTML page: inline CSS and SVG, no script, no network.

One funnel chart per group (a centred bar per stage, width by contacts reached, with the
conversion to the next stage between bars), followed by the same figures as a table.
"""

from __future__ import annotations

from html import escape

from pipeline.storage.reports.text import duration, speed_text, window_text
from pipeline.storage.reports.types import FunnelReport, GroupFunnel

_WIDTH = 720
_LABEL = 110  # left column: stage names
_BAR_HEIGHT = 30
_GAP = 22  # room for the conversion label between bars
_COLOURS = ("#1f4e79", "#2e75b6", "#4a90c2", "#5ba3d0", "#7db9de", "#9ecae1", "#c6dbef", "#dbe9f6")

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1b1b1b; background: #fff; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin: 28px 0 4px; }
.meta { color: #555; margin: 0 0 8px; }
svg.funnel text { font: 12px system-ui, sans-serif; }
svg.funnel .count { fill: #fff; font-weight: 600; }
svg.funnel .conversion { fill: #555; }
table { border-collapse: collapse; margin-top: 8px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
"""


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


def funnel_svg(group: GroupFunnel) -> str:
    """An inline SVG funnel: one ``rect.bar`` per stage, in model order."""
    top = max((s.reached for s in group.stages), default=0) or 1
    usable = _WIDTH - _LABEL - 20
    height = len(group.stages) * (_BAR_HEIGHT + _GAP)
    parts = [
        f'<svg class="funnel" data-group="{escape(group.group)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{_WIDTH}" height="{height}" viewBox="0 0 {_WIDTH} {height}" role="img" '
        f'aria-label="funnel of {escape(group.group)}">'
    ]
    for i, stage in enumerate(group.stages):
        y = i * (_BAR_HEIGHT + _GAP)
        width = max(2.0, usable * stage.reached / top)
        x = _LABEL + (usable - width) / 2
        colour = _COLOURS[min(i, len(_COLOURS) - 1)]
        parts.append(
            f'<text x="0" y="{y + 20}">{escape(stage.stage)}</text>'
            f'<rect class="bar" data-stage="{escape(stage.stage)}" data-reached="{stage.reached}" '
            f'x="{x:.1f}" y="{y}" width="{width:.1f}" height="{_BAR_HEIGHT}" rx="3" fill="{colour}">'
            f"<title>{escape(stage.stage)}: {stage.reached} contacts</title></rect>"
        )
        label_fill = "" if stage.reached * 8 > top else ' style="fill:#1b1b1b"'
        parts.append(
            f'<text class="count" x="{_LABEL + usable / 2:.1f}" y="{y + 20}" text-anchor="middle"{label_fill}>'
            f"{stage.reached}</text>"
        )
        if stage.conversion_to_next is not None:
            parts.append(
                f'<text class="conversion" x="{_LABEL + usable / 2:.1f}" y="{y + _BAR_HEIGHT + 16}" '
                f'text-anchor="middle">↓ {_percent(stage.conversion_to_next)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _table(group: GroupFunnel) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in ("stage", "reached", "→ next", "median stay", "stays", "regressed contacts", "regressions")
    )
    body = "".join(
        f"<tr><td>{escape(s.stage)}</td><td>{s.reached}</td><td>{_percent(s.conversion_to_next)}</td>"
        f"<td>{duration(s.median_seconds_in_stage)}</td><td>{s.stays}</td><td>{s.regressed_contacts}</td>"
        f"<td>{s.regressions}</td></tr>"
        for s in group.stages
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(group: GroupFunnel) -> str:
    return (
        f'<section class="group"><h2>{escape(group.group)}</h2>'
        f'<p class="meta">{group.contacts} contacts · became_hot alerts {group.hot_alerts}, acknowledged '
        f"{group.acknowledged} ({group.acknowledged_in_time} by respond_by), median time to acknowledge "
        f"{duration(group.median_seconds_to_ack)}</p>"
        f'<p class="meta speed">{escape(speed_text(group.speed_to_lead))}</p>'
        f"{funnel_svg(group)}{_table(group)}</section>"
    )


def render_html(report: FunnelReport) -> str:
    """The whole page."""
    title = f"Leadflow funnel: model {report.model} by {report.by}"
    sections = "".join(_section(g) for g in (report.total, *report.groups))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><p class=\"meta\">{escape(window_text(report))}. A contact reached a stage "
        "when it advanced to it or beyond (skipped stages count), or regressed from it or above; "
        "median stay counts completed stays only.</p>"
        f"{sections}</body></html>\n"
    )
