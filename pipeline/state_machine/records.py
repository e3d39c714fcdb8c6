"""The engine's output facts: transitions and alerts, plus a contact's public snapshot.

Field names are the wire names of ``schemas/transition.v1.json`` and ``schemas/alert.v1.json``,
so these records encode to JSON as they are.
"""

from __future__ import annotations

import msgspec


class Transition(msgspec.Struct, frozen=True, gc=False):
    """A move of one contact: a stage advance or regression, a temperature change, or an identity
    merge (``kind`` ``identity``: ``from`` is the anonymous contact ``anon:<id>``, ``to`` the contact
    that absorbed it, ``direction`` ``advance``), or a value-segment move (``kind`` ``segment``:
    ``advance`` into a more valuable segment, by the model's declaration order).

    ``stage``, ``temperature`` and ``score`` are the contact's values just after this move.
    ``trigger_event_id`` is null for a time-driven move (cooling or score decay).
    """

    transition_id: str
    contact_id: str
    kind: str  # "stage" | "temperature" | "identity" | "segment"
    from_: str = msgspec.field(name="from")
    to: str = ""
    direction: str = ""  # "advance" | "regress"
    reason: str = ""
    skipped: tuple[str, ...] = ()
    trigger_event_id: str | None = None
    occurred_at: str = ""
    stage: str = ""
    temperature: str = ""
    score: float = 0.0
    model: str = ""


class AlertReason(msgspec.Struct, frozen=True, gc=False):
    """One recent scoring event behind an alert."""

    event_id: str
    event_type: str
    points: float


class FirstTouch(msgspec.Struct, frozen=True, gc=False):
    """Where a contact first came from: the family and utm fields of its first applied event."""

    source: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None


class Alert(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """An alert on ``lead.alerts``, by ``type``:

    - ``became_hot``: an identified contact entered the hot band; act before ``respond_by``.
    - ``response_overdue``: ``respond_by`` of the became_hot alert ``original_alert_id`` passed and
      no ``lead_contacted`` answered it (the escalation; published once, at ``respond_by``).
    - ``alert_answered``: the first ``lead_contacted`` after the alert ``original_alert_id``: the
      response time, how late (0 when in time), the channel and rep.

    The trailing fields are only written for the last two types.
    """

    alert_id: str
    type: str
    contact_id: str
    stage: str
    score: float
    occurred_at: str
    respond_by: str
    reasons: tuple[AlertReason, ...]
    first_touch: FirstTouch
    model: str
    original_alert_id: str | None = None
    alert_occurred_at: str | None = None  # when the original alert was raised
    waited_seconds: float | None = None  # response_overdue: time since the alert, unanswered
    response_seconds: float | None = None  # alert_answered: time from the alert to the first contact
    late_seconds: float | None = None  # alert_answered: how far after respond_by (0.0: in time)
    channel: str | None = None  # alert_answered: how the contact was reached
    rep_id: str | None = None  # alert_answered: who reached it (when the sales tool said)
    trigger_event_id: str | None = None  # alert_answered: the lead_contacted event


class ContactSnapshot(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """A contact's current standing, as ``leadflow replay --contacts`` writes it.

    ``merged_into`` (only written when set): this anonymous contact's history was merged into that
    contact; its values are as of the merge, and its later events are applied there.
    """

    contact_id: str
    stage: str
    temperature: str
    score: float
    stage_entered_at: str
    last_event_at: str | None
    core_orders: int
    referrals_converted: int
    events_applied: int
    first_touch: FirstTouch
    referred_by: str | None
    model: str
    merged_into: str | None = None
    # Value segments (only written when the model has [segments]): the segment, net revenue in the
    # model's currency, completed orders, promotional ones, and ones in another currency.
    segment: str | None = None
    revenue: float | None = None
    orders: int | None = None
    promo_orders: int | None = None
    foreign_orders: int | None = None
