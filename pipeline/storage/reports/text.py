"""Plain-text and JSON views of the history: the funnel table and the contact timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from pipeline.state_machine.clock import from_datetime, parse_rfc3339, to_rfc3339
from pipeline.state_machine.records import Transition
from pipeline.storage.reports.types import ContactHistory, FunnelReport, GroupFunnel, StoredAlert


def format_time(dt: datetime) -> str:
    """A report bound in the engine's RFC 3339 form (UTC, ``Z``)."""
    return to_rfc3339(from_datetime(dt))


def duration(seconds: float | None) -> str:
    """A short human duration: ``45 s``, ``12 min``, ``5.5 h``, ``3.2 d``; ``-`` for none."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def window_text(report: FunnelReport) -> str:
    if report.since is None and report.until is None:
        return "all time"
    since = "the beginning" if report.since is None else format_time(report.since)
    until = "now" if report.until is None else format_time(report.until)
    return f"from {since} to {until} (exclusive)"


def _group_table(group: GroupFunnel) -> list[str]:
    lines = [
        f"== {group.group}: {group.contacts} contacts; became_hot alerts {group.hot_alerts}, "
        f"acknowledged {group.acknowledged} ({group.acknowledged_in_time} by respond_by), "
        f"median time to acknowledge {duration(group.median_seconds_to_ack)}",
        f"   {'stage':<14}{'reached':>9}{'→ next':>9}{'median stay':>13}{'stays':>7}{'regressed':>11}"
        f"{'regressions':>13}",
    ]
    for s in group.stages:
        lines.append(
            f"   {s.stage:<14}{s.reached:>9}{_percent(s.conversion_to_next):>9}"
            f"{duration(s.median_seconds_in_stage):>13}{s.stays:>7}{s.regressed_contacts:>11}{s.regressions:>13}"
        )
    return lines


def format_funnel(report: FunnelReport) -> str:
    """The terminal table: one block per group, then the total."""
    lines = [f"funnel of model {report.model} by {report.by}, {window_text(report)}"]
    if not report.total.contacts and not report.total.hot_alerts:
        lines.append("no history for this model in this window (is it the model the history was replayed with?)")
        return "\n".join(lines)
    for group in (*report.groups, report.total):
        lines += ["", *_group_table(group)]
    return "\n".join(lines)


def funnel_as_dict(report: FunnelReport) -> dict[str, Any]:
    def group(g: GroupFunnel) -> dict[str, Any]:
        return msgspec.to_builtins(g)  # type: ignore[no-any-return]

    return {
        "model": report.model,
        "by": report.by,
        "since": None if report.since is None else format_time(report.since),
        "until": None if report.until is None else format_time(report.until),
        "groups": [group(g) for g in report.groups],
        "total": group(report.total),
    }


def _transition_line(t: Transition) -> str:
    what = "stage" if t.kind == "stage" else "temperature"
    skipped = f" (skipped {', '.join(t.skipped)})" if t.skipped else ""
    cause = f"by event {t.trigger_event_id}" if t.trigger_event_id else "time-driven"
    return (
        f"{t.occurred_at}  {what} {t.direction}: {t.from_} → {t.to}{skipped}  reason {t.reason}  {cause}  "
        f"[now {t.stage}/{t.temperature}, score {t.score:g}]"
    )


def _alert_line(stored: StoredAlert) -> str:
    a = stored.alert
    reasons = ", ".join(f"{r.event_type} {r.event_id} ({r.points:+g})" for r in a.reasons)
    if stored.acknowledged_at is None:
        ack = "NOT acknowledged"
    else:
        late = parse_rfc3339(stored.acknowledged_at) > parse_rfc3339(a.respond_by)
        taken = (parse_rfc3339(stored.acknowledged_at) - parse_rfc3339(a.occurred_at)) / 1e6
        ack = f"acknowledged {stored.acknowledged_at} (after {duration(taken)}{', LATE' if late else ''})"
    return (
        f"{a.occurred_at}  ALERT {a.type} {a.alert_id} at stage {a.stage}, score {a.score:g}; "
        f"respond by {a.respond_by}; {ack}; reasons: {reasons or '-'}"
    )


def format_contact(history: ContactHistory) -> str:
    """Current state, then the timeline in time order."""
    c = history.contact
    lines = [f"contact {history.contact_id}"]
    if c is None:
        lines.append("  current state: not stored yet (only its transitions/alerts are)")
    else:
        ft = c.first_touch
        lines += [
            f"  stage {c.stage} since {c.stage_entered_at}; temperature {c.temperature}, score {c.score:g}",
            f"  last event {c.last_event_at or '-'}; core orders {c.core_orders}; "
            f"referrals converted {c.referrals_converted}; events applied {c.events_applied}; model {c.model}",
            f"  first touch: source {ft.source or '-'}, utm_source {ft.utm_source or '-'}, "
            f"utm_medium {ft.utm_medium or '-'}, utm_campaign {ft.utm_campaign or '-'}"
            + (f"; referred by {c.referred_by}" if c.referred_by else ""),
        ]
    entries = history.timeline()
    lines.append(f"timeline ({len(history.transitions)} transitions, {len(history.alerts)} alerts):")
    for entry in entries:
        lines.append("  " + (_alert_line(entry) if isinstance(entry, StoredAlert) else _transition_line(entry)))
    return "\n".join(lines)


def contact_as_dict(history: ContactHistory) -> dict[str, Any]:
    timeline: list[dict[str, Any]] = []
    for entry in history.timeline():
        if isinstance(entry, StoredAlert):
            timeline.append({"entry": "alert", **msgspec.to_builtins(entry.alert),
                             "acknowledged_at": entry.acknowledged_at})
        else:
            timeline.append({"entry": "transition", **msgspec.to_builtins(entry)})
    return {
        "contact_id": history.contact_id,
        "contact": None if history.contact is None else msgspec.to_builtins(history.contact),
        "timeline": timeline,
    }
