"""The envelope and property rules of ``schemas/*-event.v1.json``, as data the decoder applies.

The schema files are the source of truth; ``tests/unit/contracts`` checks that these tables and
the files accept and reject the same envelopes. A rule's ``expectation`` is shown verbatim in a
dead letter: ``$.properties.rating: must be an integer between 1 and 5 (got 7)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..state_machine.events import EVENT_TYPES

#: Longest identifier (event_id, contact_id, anonymous_id, referred_by), in characters.
MAX_IDENTIFIER_LENGTH = 128

#: Every top-level field an envelope may have; any other is a schema violation.
ENVELOPE_FIELDS: frozenset[str] = frozenset(
    ("event_id", "event_type", "source", "contact_id", "anonymous_id", "occurred_at", "properties",
     "context", "referred_by")
)

#: Properties whose name starts with this must be strings when present (every event type).
UTM_PREFIX = "utm_"

#: The family of every input event type.
FAMILY_OF: dict[str, str] = {t: family for family, types in EVENT_TYPES.items() for t in types}


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


def is_currency(value: Any) -> bool:
    return type(value) is str and len(value) == 3 and value.isascii() and value.isalpha() and value.isupper()


def one_of(*allowed: str) -> Callable[[Any], bool]:
    choices = frozenset(allowed)

    def check(value: Any) -> bool:
        return type(value) is str and value in choices

    return check


@dataclass(frozen=True, slots=True)
class PropertyRule:
    """One known property of an event type: its name, its test, and what the test wants."""

    name: str
    test: Callable[[Any], bool]
    expectation: str
    integral: bool = False  # an integer: a float with a zero fraction is normalized to int


@dataclass(frozen=True, slots=True)
class TypeRules:
    """The properties an event type requires and the optional ones it knows."""

    event_type: str
    family: str
    required: tuple[PropertyRule, ...] = ()
    optional: tuple[PropertyRule, ...] = ()
    optional_names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "optional_names", frozenset(rule.name for rule in self.optional))

    @property
    def properties_required(self) -> bool:
        """Whether the envelope must carry ``properties`` (it may be left out when nothing is required)."""
        return bool(self.required)

    @property
    def required_names(self) -> tuple[str, ...]:
        return tuple(rule.name for rule in self.required)

    @property
    def integral(self) -> tuple[str, ...]:
        """Integer properties, normalized from ``5.0`` to ``5`` once valid."""
        return tuple(rule.name for rule in (*self.required, *self.optional) if rule.integral)


def _text(name: str) -> PropertyRule:
    return PropertyRule(name, is_nonempty_string, "a non-empty string")


def _optional_text(name: str) -> PropertyRule:
    return PropertyRule(name, is_string, "a string")


_CAMPAIGN = _text("campaign_id")
_ORDER = _text("order_id")
_AMOUNT = PropertyRule("amount", is_amount, "a number >= 0")

_RULES: tuple[TypeRules, ...] = (
    TypeRules(
        "page_view",
        "website",
        (_text("url"),),
        tuple(_optional_text(n) for n in ("path", "title", "referrer", "page_category")),
    ),
    TypeRules("form_submit", "website", (_text("form_id"),)),
    TypeRules("content_download", "website", (_text("asset_id"),)),
    TypeRules("offer_claimed", "website", (_text("offer_id"),)),
    TypeRules("event_attended", "website", (_text("event_name"),)),
    TypeRules("add_to_cart", "website", (_text("product_id"),)),
    TypeRules(
        "review_submitted",
        "website",
        (PropertyRule("rating", is_rating, "an integer between 1 and 5", integral=True),),
    ),
    TypeRules("email_clicked", "email", (_CAMPAIGN, _text("url"))),
    TypeRules(
        "email_bounced",
        "email",
        (_CAMPAIGN, PropertyRule("bounce_type", one_of("hard", "soft"), 'one of "hard", "soft"')),
    ),
    TypeRules(
        "order_completed",
        "purchase",
        (
            _ORDER,
            _AMOUNT,
            PropertyRule("currency", is_currency, "an ISO 4217 code: three upper-case letters A-Z"),
            PropertyRule("tier", one_of("entry", "core", "addon"), 'one of "entry", "core", "addon"'),
        ),
    ),
    TypeRules("order_refunded", "purchase", (_ORDER, _AMOUNT)),
)


def _all_rules() -> dict[str, TypeRules]:
    rules = {r.event_type: r for r in _RULES}
    for event_type, family in FAMILY_OF.items():
        if event_type not in rules:
            default = (_CAMPAIGN,) if family == "email" else ()
            rules[event_type] = TypeRules(event_type, family, default)
    return rules


#: The rules of every input event type.
TYPE_RULES: dict[str, TypeRules] = _all_rules()
