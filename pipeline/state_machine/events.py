"""The input fact the engine consumes: one validated, normalized event.

Wire envelopes (``schemas/*.v1.json``) are decoded and validated at the edge by
:mod:`pipeline.contracts`, which builds these records. The engine never sees raw JSON.
Times are integers: microseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

from typing import Any

import msgspec

#: The four input families; an event's ``source`` is one of them.
SOURCES: tuple[str, ...] = ("website", "email", "purchase", "sales")

#: Event type the engine synthesizes for a referrer when a contact they referred converts.
REFERRAL_CONVERTED = "referral_converted"


class Event(msgspec.Struct, frozen=True, gc=False):
    """One applied-or-to-be-applied input event, already validated.

    ``contact`` is the state key: the ``contact_id``, or ``anon:<anonymous_id>`` when only the
    anonymous id is known. ``identified`` tells whether a ``contact_id`` was present.
    ``anonymous_id`` is the envelope's anonymous id when it had one: an identified event that
    carries one *links* that anonymous visitor to the contact (see :mod:`.identity`).
    """

    event_id: str
    event_type: str
    source: str
    contact: str
    occurred_at: int
    identified: bool
    properties: dict[str, Any] = msgspec.field(default_factory=dict)
    referred_by: str | None = None
    anonymous_id: str | None = None

    @property
    def links(self) -> str | None:
        """The anonymous contact key this event links to its contact (``anon:<id>``), if any."""
        return ANONYMOUS_PREFIX + self.anonymous_id if self.identified and self.anonymous_id else None


#: The key prefix of an anonymous contact: ``anon:<anonymous_id>`` (reserved: never a contact_id).
ANONYMOUS_PREFIX = "anon:"

#: Every input event type, by family (the contract in ``schemas/`` says the same).
EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "website": (
        "page_view",
        "form_submit",
        "signup",
        "content_download",
        "demo_request",
        "trial_start",
        "offer_claimed",
        "event_attended",
        "add_to_cart",
        "checkout_start",
        "membership_joined",
        "review_submitted",
    ),
    "email": (
        "email_sent",
        "email_delivered",
        "email_opened",
        "email_clicked",
        "email_replied",
        "email_unsubscribed",
        "email_bounced",
        "email_complained",
    ),
    "purchase": ("order_completed", "order_refunded"),
    # What sales did (a sales tool, or a person through one): not the contact's engagement.
    "sales": ("lead_contacted", "lead_qualified", "lead_disqualified", "deal_won", "deal_lost"),
}

#: The sales event that answers a ``became_hot`` alert (the first one after the alert).
LEAD_CONTACTED = "lead_contacted"
#: The sales event carrying BANT answers (``budget``, ``authority``, ``need``, ``timeline``).
LEAD_QUALIFIED = "lead_qualified"
#: The BANT criteria, in the order of the state's bit mask (budget = bit 0).
BANT_CRITERIA: tuple[str, ...] = ("budget", "authority", "need", "timeline")
#: How a contact was reached (``lead_contacted.properties.channel``).
CONTACT_CHANNELS: tuple[str, ...] = ("call", "email", "meeting", "chat", "message")
#: Why sales disqualified a lead (``lead_disqualified.properties.reason``).
DISQUALIFICATION_REASONS: tuple[str, ...] = (
    "no_budget",
    "not_decision_maker",
    "no_need",
    "bad_timing",
    "unreachable",
    "competitor",
    "spam",
)

#: Event types a lifecycle model may name: every input type plus the engine's own.
KNOWN_EVENT_TYPES: frozenset[str] = frozenset(
    [t for types in EVENT_TYPES.values() for t in types] + [REFERRAL_CONVERTED]
)
