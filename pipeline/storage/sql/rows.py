"""Translation between the core's records and table rows, both ways.

Reading a row back gives the record that was written, field for field (times in the engine's
RFC 3339 form), so the contact timeline shows exactly what the pipeline published.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row

from pipeline.state_machine.clock import from_datetime, to_rfc3339
from pipeline.state_machine.records import Alert, AlertReason, ContactSnapshot, FirstTouch, Transition

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time(text: str) -> datetime:
    """An RFC 3339 time (with offset) as an aware UTC datetime; ``ValueError`` when it is not one."""
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return dt.astimezone(UTC)


def format_time(dt: datetime) -> str:
    """The engine's RFC 3339 form of a stored time (UTC, ``Z``, microseconds only when non-zero)."""
    return to_rfc3339(from_datetime(dt))


def transition_row(t: Transition) -> dict[str, Any]:
    return {
        "transition_id": t.transition_id,
        "contact_id": t.contact_id,
        "kind": t.kind,
        "from": t.from_,
        "to": t.to,
        "direction": t.direction,
        "reason": t.reason,
        "skipped": list(t.skipped),
        "trigger_event_id": t.trigger_event_id,
        "occurred_at": parse_time(t.occurred_at),
        "stage": t.stage,
        "temperature": t.temperature,
        "score": t.score,
        "model": t.model,
    }


def alert_row(a: Alert) -> dict[str, Any]:
    return {
        "alert_id": a.alert_id,
        "type": a.type,
        "contact_id": a.contact_id,
        "stage": a.stage,
        "score": a.score,
        "occurred_at": parse_time(a.occurred_at),
        "respond_by": parse_time(a.respond_by),
        "reasons": [{"event_id": r.event_id, "event_type": r.event_type, "points": r.points} for r in a.reasons],
        "first_touch_source": a.first_touch.source,
        "utm_source": a.first_touch.utm_source,
        "utm_medium": a.first_touch.utm_medium,
        "utm_campaign": a.first_touch.utm_campaign,
        "model": a.model,
        "original_alert_id": a.original_alert_id,
        "response_seconds": a.response_seconds,
        "details": alert_details(a),
    }


#: The fields of a response_overdue / alert_answered record kept in ``alerts.details``.
DETAIL_FIELDS = ("alert_occurred_at", "waited_seconds", "late_seconds", "channel", "rep_id", "trigger_event_id")


def alert_details(a: Alert) -> dict[str, Any] | None:
    details = {name: getattr(a, name) for name in DETAIL_FIELDS if getattr(a, name) is not None}
    return details or None


def contact_row(c: ContactSnapshot, written_at: datetime) -> dict[str, Any]:
    return {
        "contact_id": c.contact_id,
        "stage": c.stage,
        "temperature": c.temperature,
        "score": c.score,
        "stage_entered_at": parse_time(c.stage_entered_at),
        "last_event_at": None if c.last_event_at is None else parse_time(c.last_event_at),
        "core_orders": c.core_orders,
        "referrals_converted": c.referrals_converted,
        "events_applied": c.events_applied,
        "first_touch_source": c.first_touch.source,
        "utm_source": c.first_touch.utm_source,
        "utm_medium": c.first_touch.utm_medium,
        "utm_campaign": c.first_touch.utm_campaign,
        "referred_by": c.referred_by,
        "model": c.model,
        "updated_at": written_at,
        "merged_into": c.merged_into,
        "segment": c.segment,
        "revenue": c.revenue,
        "orders": c.orders,
        "promo_orders": c.promo_orders,
        "foreign_orders": c.foreign_orders,
    }


def snapshot_version(c: ContactSnapshot) -> tuple[datetime, datetime]:
    """How new a snapshot is: (last event time, stage entry time); the larger wins an upsert."""
    entered = parse_time(c.stage_entered_at)
    return (entered if c.last_event_at is None else parse_time(c.last_event_at), entered)


def transition_from_row(row: Row[Any]) -> Transition:
    m = row._mapping
    return Transition(
        transition_id=m["transition_id"],
        contact_id=m["contact_id"],
        kind=m["kind"],
        from_=m["from"],
        to=m["to"],
        direction=m["direction"],
        reason=m["reason"],
        skipped=tuple(m["skipped"]),
        trigger_event_id=m["trigger_event_id"],
        occurred_at=format_time(m["occurred_at"]),
        stage=m["stage"],
        temperature=m["temperature"],
        score=m["score"],
        model=m["model"],
    )


def alert_from_row(row: Row[Any]) -> Alert:
    m = row._mapping
    return Alert(
        alert_id=m["alert_id"],
        type=m["type"],
        contact_id=m["contact_id"],
        stage=m["stage"],
        score=m["score"],
        occurred_at=format_time(m["occurred_at"]),
        respond_by=format_time(m["respond_by"]),
        reasons=tuple(AlertReason(r["event_id"], r["event_type"], r["points"]) for r in m["reasons"]),
        first_touch=FirstTouch(m["first_touch_source"], m["utm_source"], m["utm_medium"], m["utm_campaign"]),
        model=m["model"],
        original_alert_id=m["original_alert_id"],
        # A became_hot row's response_seconds is filled in later (the answer's): not part of the record.
        response_seconds=None if m["type"] == "became_hot" else m["response_seconds"],
        **(m["details"] or {}),
    )


def contact_from_row(row: Row[Any]) -> ContactSnapshot:
    m = row._mapping
    return ContactSnapshot(
        contact_id=m["contact_id"],
        stage=m["stage"],
        temperature=m["temperature"],
        score=m["score"],
        stage_entered_at=format_time(m["stage_entered_at"]),
        last_event_at=None if m["last_event_at"] is None else format_time(m["last_event_at"]),
        core_orders=m["core_orders"],
        referrals_converted=m["referrals_converted"],
        events_applied=m["events_applied"],
        first_touch=FirstTouch(m["first_touch_source"], m["utm_source"], m["utm_medium"], m["utm_campaign"]),
        referred_by=m["referred_by"],
        model=m["model"],
        merged_into=m["merged_into"],
        segment=m["segment"],
        revenue=m["revenue"],
        orders=m["orders"],
        promo_orders=m["promo_orders"],
        foreign_orders=m["foreign_orders"],
    )
