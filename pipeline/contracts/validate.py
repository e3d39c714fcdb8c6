"""The exact envelope rules over a decoded JSON object: an ``Event``, or why not.

This is the authority on every decision (the fast path in :mod:`.fastpath` only accepts what
this accepts, sooner). Rules run in this order; the first failure wins:

``too_large`` (nested deeper than :data:`MAX_DEPTH`) → ``missing_identity`` (neither
``contact_id`` nor ``anonymous_id`` present; a present null is a schema violation) →
``unknown_event_type`` → ``wrong_source`` (``source`` or event type of another family) →
``schema_violation`` (the detail names the JSON path and the rule; a ``contact_id`` or
``referred_by`` starting with ``anon:``, the reserved key prefix of anonymous visitors, is one) →
``future_timestamp``.

An envelope with both ``contact_id`` and ``anonymous_id`` becomes an identified event that keeps
its ``anonymous_id``: the engine links the two (``pipeline.state_machine.identity``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from pipeline.contracts.rules import (
    ENVELOPE_FIELDS,
    FAMILY_OF,
    TYPE_RULES,
    PropertyRule,
    TypeRules,
    cross_property_problem,
    is_identifier,
)
from pipeline.contracts.timestamps import parse_timestamp
from pipeline.state_machine.clock import MICROS_PER_SECOND
from pipeline.state_machine.events import ANONYMOUS_PREFIX, SOURCES, Event

#: Objects and arrays may nest this many levels (the envelope is level 1): deeper than any real
#: event, and well within every JSON encoder's limit (orjson: 254), so accepted events re-encode.
MAX_DEPTH = 200
#: How far after ``received_at`` an event may claim to have happened (clock skew).
FUTURE_TOLERANCE = 5 * 60 * MICROS_PER_SECOND

#: ``(error_code, error_detail, source)`` of an envelope the rules reject.
Rejection = tuple[str, str, str | None]

SOURCE_SET = frozenset(SOURCES)
_SOURCE_CHOICES = ", ".join(f'"{s}"' for s in SOURCES[:-1]) + f' or "{SOURCES[-1]}"'
_ALLOWED_FIELDS = ", ".join(sorted(ENVELOPE_FIELDS))
_IDENTIFIER = "a string of 1-128 characters"
_TIMESTAMP = "an RFC 3339 timestamp with offset, e.g. 2026-03-01T10:00:00Z or 2026-03-01T17:00:00.123+07:00"
_MISSING: Any = object()
_json_encode = msgspec.json.encode


def validate_envelope(obj: dict[str, Any], family: str | None, received_at: int) -> Event | Rejection:
    """Apply every rule to a decoded envelope. ``family=None``: take it from ``source``."""
    get = obj.get
    source = get("source", _MISSING)
    if family is not None:
        known_source: str | None = family
    else:
        known_source = source if type(source) is str and source in SOURCE_SET else None
    if too_deep(obj, MAX_DEPTH):
        return "too_large", f"$: nested deeper than {MAX_DEPTH} levels", known_source
    if "contact_id" not in obj and "anonymous_id" not in obj:
        return "missing_identity", "$: an event needs contact_id or anonymous_id (or both)", known_source
    event_type = get("event_type", _MISSING)
    type_family = FAMILY_OF.get(event_type) if type(event_type) is str else None
    if type(event_type) is str and type_family is None:
        families = ", ".join(SOURCES)
        detail = f"$.event_type: {show(event_type)} is not an event type of any family ({families})"
        return "unknown_event_type", detail, known_source
    if known_source is None:
        if source is _MISSING:
            return "schema_violation", f"$.source: required in a replay line: {_SOURCE_CHOICES}", None
        return "schema_violation", f"$.source: must be {_SOURCE_CHOICES} (got {show(source)})", None
    if source is not _MISSING and source != known_source:
        if type(source) is str and source in SOURCE_SET:
            return "wrong_source", f'$.source: a "{source}" event on the {known_source} topic', known_source
        return "schema_violation", f'$.source: must be "{known_source}" (got {show(source)})', known_source
    if type_family is not None and type_family != known_source:
        detail = f'$.event_type: "{event_type}" belongs to {type_family}, not {known_source}'
        return "wrong_source", detail, known_source
    checked = _check_envelope(obj, event_type)
    if isinstance(checked, str):
        return "schema_violation", checked, known_source
    occurred_at = checked
    rules = TYPE_RULES[event_type]
    properties = get("properties", _MISSING)
    if properties is _MISSING:
        if rules.required or rules.any_of:
            needs = ", ".join(rules.required_names) or "at least one of " + ", ".join(rules.any_of)
            return "schema_violation", f"$.properties: required for {event_type} (with {needs})", known_source
        properties = {}
    elif type(properties) is not dict:
        return "schema_violation", f"$.properties: must be an object (got {show(properties)})", known_source
    else:
        problem = _properties_problem(properties, rules)
        if problem is not None:
            return "schema_violation", problem, known_source
        if rules.integral:
            properties = normalize_integers(properties, rules)
    if occurred_at - received_at > FUTURE_TOLERANCE:
        minutes = (occurred_at - received_at) / (60 * MICROS_PER_SECOND)
        detail = f"$.occurred_at: {obj['occurred_at']} is {minutes:.1f} minutes after the event was received (limit 5)"
        return "future_timestamp", detail, known_source
    contact_id = get("contact_id")
    anonymous_id = get("anonymous_id")
    return Event(
        obj["event_id"],
        event_type,
        known_source,
        contact_id if contact_id is not None else ANONYMOUS_PREFIX + str(anonymous_id),
        occurred_at,
        contact_id is not None,
        properties,
        get("referred_by"),
        anonymous_id,
    )


def _check_envelope(obj: dict[str, Any], event_type: Any) -> int | str:
    """``occurred_at`` in microseconds, or the first schema violation of the top-level fields."""
    if not ENVELOPE_FIELDS.issuperset(obj):
        extra = min(key for key in obj if key not in ENVELOPE_FIELDS)
        return f"{json_path('$', extra)}: unknown field; allowed: {_ALLOWED_FIELDS}"
    for name in ("event_id", "contact_id", "anonymous_id", "referred_by"):
        value = obj.get(name, _MISSING)
        if (value is not _MISSING or name == "event_id") and not is_identifier(value):
            return _field_problem(f"$.{name}", value, _IDENTIFIER)
    for name in ("contact_id", "referred_by"):
        value = obj.get(name, _MISSING)
        if value is not _MISSING and value.startswith(ANONYMOUS_PREFIX):
            return (f'$.{name}: must not start with "{ANONYMOUS_PREFIX}" (the key prefix of anonymous '
                    f"visitors; send a visitor's id as anonymous_id) (got {show(value)})")
    if type(event_type) is not str:
        return _field_problem("$.event_type", event_type, "a string")
    occurred_text = obj.get("occurred_at", _MISSING)
    occurred_at = parse_timestamp(occurred_text) if type(occurred_text) is str else None
    if occurred_at is None:
        return _field_problem("$.occurred_at", occurred_text, _TIMESTAMP)
    context = obj.get("context", _MISSING)
    if context is not _MISSING and type(context) is not dict:
        return f"$.context: must be an object (got {show(context)})"
    return occurred_at


def _properties_problem(properties: dict[str, Any], rules: TypeRules) -> str | None:
    for rule in rules.required:
        value = properties.get(rule.name, _MISSING)
        if value is _MISSING:
            return f"{json_path('$.properties', rule.name)}: required for {rules.event_type}"
        if not rule.test(value):
            return _rule_problem(rule, value)
    for rule in rules.optional:
        value = properties.get(rule.name, _MISSING)
        if value is not _MISSING and not rule.test(value):
            return _rule_problem(rule, value)
    if rules.any_of and not any(name in properties for name in rules.any_of):
        return f"$.properties: {rules.event_type} needs at least one of {', '.join(rules.any_of)}"
    cross = cross_property_problem(rules.event_type, properties)
    if cross is not None:
        name, wanted = cross
        return f"{json_path('$.properties', name)}: must be {wanted} (got {show(properties[name])})"
    return None


def normalize_integers(properties: dict[str, Any], rules: TypeRules) -> dict[str, Any]:
    """``5.0`` -> ``5`` for integer properties (JSON Schema's ``integer`` accepts both)."""
    floats = {name: int(properties[name]) for name in rules.integral if type(properties.get(name)) is float}
    return {**properties, **floats} if floats else properties


def _rule_problem(rule: PropertyRule, value: Any) -> str:
    return f"{json_path('$.properties', rule.name)}: must be {rule.expectation} (got {show(value)})"


def _field_problem(path: str, value: Any, wanted: str) -> str:
    if value is _MISSING:
        return f"{path}: required ({wanted})"
    return f"{path}: must be {wanted} (got {show(value)})"


def json_path(parent: str, key: str) -> str:
    """``$.a.b`` for plain keys, ``$["odd key"]`` otherwise."""
    return f"{parent}.{key}" if key.isidentifier() and key.isascii() else f"{parent}[{show(key)}]"


def show(value: Any, limit: int = 60) -> str:
    """A short JSON rendering of ``value`` for an error detail."""
    try:
        text = _json_encode(value).decode("utf-8")
    except (TypeError, ValueError, RecursionError):
        text = "<unprintable value>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects and arrays more than ``limit`` levels (itself: level 1)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if type(node) is dict else node
        stack.extend((child, depth + 1) for child in children if type(child) is dict or type(child) is list)
    return False
