"""The envelope and property rules of ``schemas/*-event.v1.json``, as data the decoder applies.

The schema files are the source of truth; ``tests/unit/contracts`` checks that these tables and
the files accept and reject the same envelopes. Each property rule exists twice on purpose, side
by side: a Python ``test`` (used to explain a rejection) and a msgspec ``annotation`` (used by
the fast path to validate in C). A rule's ``expectation`` is shown verbatim in a dead letter:
``$.properties.rating: must be an integer between 1 and 5 (got 7)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from msgspec import Meta

from pipeline.state_machine.events import BANT_CRITERIA, CONTACT_CHANNELS, DISQUALIFICATION_REASONS, EVENT_TYPES

#: Longest identifier (event_id, contact_id, anonymous_id, referred_by), in characters.
MAX_IDENTIFIER_LENGTH = 128

#: Every top-level field an envelope may have; any other is a schema violation.
ENVELOPE_FIELDS: frozenset[str] = frozenset(
    ("event_id", "event_type", "source", "contact_id", "anonymous_id", "occurred_at", "properties",
     "context", "referred_by")
)

#: The standard UTM parameters: optional string properties of every event type.
UTM_PROPERTIES: tuple[str, ...] = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")

#: The family of every input event type.
FAMILY_OF: dict[str, str] = {t: family for family, types in EVENT_TYPES.items() for t in types}

Identifier = Annotated[str, Meta(min_length=1, max_length=MAX_IDENTIFIER_LENGTH)]
#: A contact_id (or referred_by): an identifier that does not start with ``anon:``, the reserved key
#: prefix of anonymous visitors (``anon:<anonymous_id>``), so the two kinds of key never collide.
ContactIdentifier = Annotated[str, Meta(min_length=1, max_length=MAX_IDENTIFIER_LENGTH, pattern="^(?!anon:)")]
NonEmptyString = Annotated[str, Meta(min_length=1)]


def is_string(value: Any) -> bool:
    return type(value) is str


def is_nonempty_string(value: Any) -> bool:
    return type(value) is str and value != ""


def is_identifier(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_IDENTIFIER_LENGTH


def is_rating(value: Any) -> bool:
    # JSON Schema's "integer" is any number with a zero fraction (5.0 too), never a boolean.
    if type(value) is int:
        return 1 <= value <= 5
    return type(value) is float and value.is_integer() and 1 <= value <= 5


def is_amount(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and value >= 0


def is_boolean(value: Any) -> bool:
    return type(value) is bool


def is_currency(value: Any) -> bool:
    return type(value) is str and len(value) == 3 and value.isascii() and value.isalpha() and value.isupper()


@dataclass(frozen=True, slots=True)
class PropertyRule:
    """One known property of an event type: its name, its test, and what the test wants.

    ``annotation`` is the same rule as a msgspec type. It may be stricter than ``test`` (the fast
    path then hands the event to the exact checks), never more lenient.
    """

    name: str
    test: Callable[[Any], bool]
    expectation: str
    annotation: Any
    integral: bool = False  # an integer: a float with a zero fraction is normalized to int


@dataclass(frozen=True, slots=True)
class TypeRules:
    """The properties an event type requires and the optional ones it knows."""

    event_type: str
    family: str
    required: tuple[PropertyRule, ...] = ()
    optional: tuple[PropertyRule, ...] = ()
    #: At least one of these (optional) properties must be present (``lead_qualified``: a BANT answer).
    any_of: tuple[str, ...] = ()
    required_names: tuple[str, ...] = field(init=False)
    integral: tuple[str, ...] = field(init=False)  # normalized from 5.0 to 5 once valid

    def __post_init__(self) -> None:
        object.__setattr__(self, "required_names", tuple(rule.name for rule in self.required))
        integral = tuple(rule.name for rule in (*self.required, *self.optional) if rule.integral)
        object.__setattr__(self, "integral", integral)


def text(name: str) -> PropertyRule:
    return PropertyRule(name, is_nonempty_string, "a non-empty string", NonEmptyString)


def optional_text(name: str) -> PropertyRule:
    return PropertyRule(name, is_string, "a string", str)


def flag(name: str) -> PropertyRule:
    return PropertyRule(name, is_boolean, "true or false", bool)


def one_of(name: str, *allowed: str) -> PropertyRule:
    choices = frozenset(allowed)

    def test(value: Any) -> bool:
        return type(value) is str and value in choices

    expectation = "one of " + ", ".join(f'"{choice}"' for choice in allowed)
    return PropertyRule(name, test, expectation, Literal[allowed])


_CAMPAIGN = text("campaign_id")
_ORDER = text("order_id")
_AMOUNT = PropertyRule("amount", is_amount, "a number >= 0", Annotated[float, Meta(ge=0)])
_CURRENCY = PropertyRule(
    "currency",
    is_currency,
    "an ISO 4217 code: three upper-case letters A-Z",
    Annotated[str, Meta(min_length=3, max_length=3, pattern="^[A-Z]{3}$")],
)
#: An order's promotion (issue 14): the amount taken off (at most ``amount``), and/or a coupon code.
_DISCOUNT = PropertyRule("discount", is_amount, "a number >= 0", Annotated[float, Meta(ge=0)])
_RATING = PropertyRule(
    "rating", is_rating, "an integer between 1 and 5", Annotated[int, Meta(ge=1, le=5)], integral=True
)
_UTM = tuple(optional_text(name) for name in UTM_PROPERTIES)

#: Required properties and known optional ones beyond the UTM parameters, by event type.
_SPECIFIC: dict[str, tuple[tuple[PropertyRule, ...], tuple[PropertyRule, ...]]] = {
    "page_view": ((text("url"),), tuple(optional_text(n) for n in ("path", "title", "referrer", "page_category"))),
    "form_submit": ((text("form_id"),), ()),
    "content_download": ((text("asset_id"),), ()),
    "offer_claimed": ((text("offer_id"),), ()),
    "event_attended": ((text("event_name"),), ()),
    "add_to_cart": ((text("product_id"),), ()),
    "review_submitted": ((_RATING,), ()),
    "email_clicked": ((_CAMPAIGN, text("url")), ()),
    "email_bounced": ((_CAMPAIGN, one_of("bounce_type", "hard", "soft")), ()),
    "order_completed": (
        (_ORDER, _AMOUNT, _CURRENCY, one_of("tier", "entry", "core", "addon")),
        (_DISCOUNT, optional_text("coupon")),
    ),
    "order_refunded": ((_ORDER, _AMOUNT), ()),
    "lead_contacted": (
        (one_of("channel", *CONTACT_CHANNELS),),
        (text("rep_id"), optional_text("outcome"), optional_text("alert_id")),
    ),
    "lead_qualified": ((), (*(flag(name) for name in BANT_CRITERIA), optional_text("notes"), text("rep_id"))),
    "lead_disqualified": (
        (one_of("reason", *DISQUALIFICATION_REASONS),),
        (optional_text("notes"), text("rep_id")),
    ),
    "deal_won": ((_AMOUNT, _CURRENCY), (text("deal_id"), text("rep_id"))),
    "deal_lost": ((text("reason"),), (text("deal_id"), text("rep_id"))),
}

#: Types that need at least one of some optional properties.
_ANY_OF: dict[str, tuple[str, ...]] = {"lead_qualified": BANT_CRITERIA}


def _type_rules(event_type: str, family: str) -> TypeRules:
    default_required = (_CAMPAIGN,) if family == "email" else ()
    required, optional = _SPECIFIC.get(event_type, (default_required, ()))
    return TypeRules(event_type, family, required, optional + _UTM, _ANY_OF.get(event_type, ()))


#: The rules of every input event type.
TYPE_RULES: dict[str, TypeRules] = {t: _type_rules(t, family) for t, family in FAMILY_OF.items()}


def cross_property_problem(event_type: str, properties: dict[str, Any]) -> tuple[str, Any] | None:
    """A rule between two valid properties that no single-property rule can say: an order's
    ``discount`` may not exceed its ``amount``. ``(property, what it must be)`` or None."""
    if event_type == "order_completed":
        discount, amount = properties.get("discount", 0), properties.get("amount", 0)
        if is_amount(discount) and is_amount(amount) and discount > amount:
            return "discount", f"at most amount ({amount})"
    return None
