"""Plain-text and JSON views of the history: the funnel table and the contact timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from pipeline.state_machine.clock import from_datetime, parse_rfc3339, to_rfc3339
from pipeline.state_machine.records import Transition
from pipeline.storage.reports.types import (
    ALERT_ANSWERED,
    RESPONSE_OVERDUE,
    ContactHistory,
    FunnelReport,
    GroupFunnel,
    SpeedToLead,
    StoredAlert,
)


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


def speed_text(s: SpeedToLead) -> str:
    """One line of speed to lead: answered, in time, time to first contact, overdue, conversion."""
    return (
        f"speed to lead: {s.answered}/{s.alerts} answered, {s.answered_in_time} before respond_by; "
        f"time to first contact median {duration(s.median_seconds_to_contact)}, "
        f"p90 {duration(s.p90_seconds_to_contact)}; overdue {s.overdue}; "
        f"converted to a higher stage: answered in time {_percent(s.conversion_in_time)} "
        f"({s.converted_in_time}/{s.answered_in_time}), late or never {_percent(s.conversion_late_or_never)} "
        f"({s.converted_late_or_never}/{s.alerts - s.answered_in_time})"
    )


def _group_table(group: GroupFunnel) -> list[str]:
    lines = [
        f"== {group.group}: {group.contacts} contacts; became_hot alerts {group.hot_alerts}, "
        f"acknowledged {group.acknowledged} ({group.acknowledged_in_time} by respond_by), "
        f"median time to acknowledge {duration(group.median_seconds_to_ack)}",
        f"   {speed_text(group.speed_to_lead)}",
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
        data: dict[str, Any] = msgspec.to_builtins(g)
        speed = g.speed_to_lead
        data["speed_to_lead"] |= {
            "conversion_in_time": speed.conversion_in_time,
            "conversion_late_or_never": speed.conversion_late_or_never,
        }
        return data

    return {
        "model": report.model,
        "by": report.by,
        "since": None if report.since is None else format_time(report.since),
        "until": None if report.until is None else format_time(report.until),
        "groups": [group(g) for g in report.groups],
        "total": group(report.total),
    }


def _transition_line(t: Transition) -> str:
    cause = f"by event {t.trigger_event_id}" if t.trigger_event_id else "time-driven"
    if t.kind == "identity":
        return (
            f"{t.occurred_at}  identity: {t.from_} merged into {t.to}  reason {t.reason}  {cause}  "
            f"[now {t.stage}/{t.temperature}, score {t.score:g}]"
        )
    what = "stage" if t.kind == "stage" else "temperature"
    skipped = f" (skipped {', '.join(t.skipped)})" if t.skipped else ""
    return (
        f"{t.occurred_at}  {what} {t.direction}: {t.from_} → {t.to}{skipped}  reason {t.reason}  {cause}  "
        f"[now {t.stage}/{t.temperature}, score {t.score:g}]"
    )


def _alert_line(stored: StoredAlert) -> str:
    a = stored.alert
    if a.type == RESPONSE_OVERDUE:
        return (
            f"{a.occurred_at}  ALERT response_overdue {a.alert_id}: nobody contacted the lead by {a.respond_by} "
            f"(alert {a.original_alert_id}, waited {duration(a.waited_seconds)})"
        )
    if a.type == ALERT_ANSWERED:
        timing = "in time" if not a.late_seconds else f"LATE by {duration(a.late_seconds)}"
        who = f" by {a.rep_id}" if a.rep_id else ""
        return (
            f"{a.occurred_at}  SALES lead_contacted ({a.channel or '-'}{who}) answered alert {a.original_alert_id} "
            f"after {duration(a.response_seconds)}, {timing}; event {a.trigger_event_id}"
        )
    reasons = ", ".join(f"{r.event_type} {r.event_id} ({r.points:+g})" for r in a.reasons)
    if stored.acknowledged_at is None:
        ack = "NOT acknowledged"
    else:
        late = parse_rfc3339(stored.acknowledged_at) > parse_rfc3339(a.respond_by)
        taken = (parse_rfc3339(stored.acknowledged_at) - parse_rfc3339(a.occurred_at)) / 1e6
        ack = f"acknowledged {stored.acknowledged_at} (after {duration(taken)}{', LATE' if late else ''})"
    if stored.answered_at is not None:
        answer = f"answered {stored.answered_at} (after {duration(stored.response_seconds)})"
    else:
        answer = "not answered"
    if stored.overdue_at is not None:
        answer += f", ESCALATED {stored.overdue_at}"
    return (
        f"{a.occurred_at}  ALERT {a.type} {a.alert_id} at stage {a.stage}, score {a.score:g}; "
        f"respond by {a.respond_by}; {answer}; {ack}; reasons: {reasons or '-'}"
    )


def format_contact(history: ContactHistory) -> str:
    """Current state, the identity merges, then the timeline in time order (entries of a merged
    anonymous contact marked ``[anon:...]``)."""
    c = history.contact
    lines = [f"contact {history.contact_id}"]
    if c is None:
        lines.append("  current state: not stored yet (only its transitions/alerts are)")
    else:
        if c.merged_into is not None:
            when = f" at {history.merged_at}" if history.merged_at else ""
            lines.append(
                f"  MERGED into {c.merged_into}{when}: its history continues there "
                f"(leadflow contact {c.merged_into}); the state below is as of the merge"
            )
        ft = c.first_touch
        lines += [
            f"  stage {c.stage} since {c.stage_entered_at}; temperature {c.temperature}, score {c.score:g}",
            f"  last event {c.last_event_at or '-'}; core orders {c.core_orders}; "
            f"referrals converted {c.referrals_converted}; events applied {c.events_applied}; model {c.model}",
            f"  first touch: source {ft.source or '-'}, utm_source {ft.utm_source or '-'}, "
            f"utm_medium {ft.utm_medium or '-'}, utm_campaign {ft.utm_campaign or '-'}"
            + (f"; referred by {c.referred_by}" if c.referred_by else ""),
        ]
    for m in history.merged:
        when = f"merged {m.merged_at} ({m.reason})" if m.merged_at else "merged (identity record not stored yet)"
        lines.append(
            f"  merged anonymous history: {m.contact_id}, {when}; "
            f"{len(m.transitions)} transitions, {len(m.alerts)} alerts"
        )
    counts = f"{len(history.transitions)} transitions, {len(history.alerts)} alerts"
    if history.merged:
        merged_t = sum(len(m.transitions) for m in history.merged)
        merged_a = sum(len(m.alerts) for m in history.merged)
        counts += f"; with {merged_t} transitions, {merged_a} alerts of merged anonymous contacts"
    lines.append(f"timeline ({counts}):")
    for origin, entry in history.full_timeline():
        mark = "" if origin is None else f"[{origin}] "
        text = _alert_line(entry) if isinstance(entry, StoredAlert) else _transition_line(entry)
        lines.append(f"  {mark}{text}")
    return "\n".join(lines)


def contact_as_dict(history: ContactHistory) -> dict[str, Any]:
    """The contact as JSON: ``merged_into`` / ``merged_at`` (this anonymous contact was merged
    there), ``merged`` (anonymous contacts merged into this one), and the timeline, each entry with
    ``merged_from``: null for the contact's own, else the anonymous contact it came from."""
    timeline: list[dict[str, Any]] = []
    for origin, entry in history.full_timeline():
        if isinstance(entry, StoredAlert):
            timeline.append({"entry": "alert", **msgspec.to_builtins(entry.alert),
                             "acknowledged_at": entry.acknowledged_at, "answered_at": entry.answered_at,
                             "response_seconds": entry.response_seconds, "overdue_at": entry.overdue_at,
                             "merged_from": origin})
        else:
            timeline.append({"entry": "transition", **msgspec.to_builtins(entry), "merged_from": origin})
    return {
        "contact_id": history.contact_id,
        "contact": None if history.contact is None else msgspec.to_builtins(history.contact),
        "merged_into": history.merged_into,
        "merged_at": history.merged_at,
        "merged": [
            {"contact_id": m.contact_id, "merged_at": m.merged_at, "reason": m.reason,
             "transitions": len(m.transitions), "alerts": len(m.alerts)}
            for m in history.merged
        ],
        "timeline": timeline,
    }
