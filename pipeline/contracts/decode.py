"""Decode, validate and normalize input envelopes: bytes in, an ``Event`` or a ``DeadLetter`` out.

The hot path of every runtime: ``orjson`` parses, then the rules of :mod:`.rules` are applied by
hand in the order below, so each rejection gets one precise error code (measured faster than
``msgspec`` typed decoding with the same constraints, and it keeps the check order exact):

1. ``too_large``: over 64 KiB (a batch message: over 1 MiB), or nested deeper than 32 levels;
2. ``invalid_encoding``: not UTF-8; 3. ``invalid_json`` (also NaN/Infinity, numbers that overflow
   a double, a byte-order mark, unpaired surrogate escapes); 4. ``not_an_object``;
5. ``missing_identity``: neither ``contact_id`` nor ``anonymous_id`` is present (a present null is
   a schema violation); 6. ``unknown_event_type``; 7. ``wrong_source``; 8. ``schema_violation``,
   the detail naming the JSON path and the rule; 9. ``future_timestamp``: more than 5 minutes
   after ``received_at``.

Parser decisions: a duplicated key keeps its last value (as every JSON parser in the pipeline and
``jsonschema`` over ``json.loads`` do); integers beyond 64 bits are read as floats.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..state_machine.clock import MICROS_PER_SECOND
from ..state_machine.events import SOURCES, Event
from .deadletter import DeadLetter, dead_letter_for
from .errors import UnknownFamilyError
from .rules import (
    ENVELOPE_FIELDS,
    FAMILY_OF,
    MAX_IDENTIFIER_LENGTH,
    TYPE_RULES,
    UTM_PREFIX,
    PropertyRule,
    TypeRules,
    is_identifier,
)
from .timestamps import parse_timestamp

MAX_EVENT_BYTES = 65_536
MAX_BATCH_BYTES = 1_048_576
MAX_DEPTH = 32
FUTURE_TOLERANCE = 5 * 60 * MICROS_PER_SECOND

# orjson re-encodes a JSON text at most ~4.5 times longer (``1e15`` -> ``1000000000000000.0``), so
# no element of a batch at most this long can re-encode to over MAX_EVENT_BYTES.
_REENCODE_CHECK_ABOVE = MAX_EVENT_BYTES // 8
_SOURCE_SET = frozenset(SOURCES)
_ALLOWED_FIELDS = ", ".join(sorted(ENVELOPE_FIELDS))
_MISSING: Any = object()
_IDENTIFIER = "a string of 1-128 characters"
_TIMESTAMP = "an RFC 3339 timestamp with offset, e.g. 2026-03-01T10:00:00Z or 2026-03-01T17:00:00.123+07:00"
_loads = orjson.loads
_dumps = orjson.dumps

#: ``(error_code, error_detail, source)`` of an envelope the rules reject.
Rejection = tuple[str, str, str | None]


def decode_event(raw: bytes, *, family: str | None, received_at: int) -> Event | DeadLetter:
    """One envelope. ``family`` is the topic's family, or ``None`` to take it from ``source``."""
    if family is not None and family not in _SOURCE_SET:
        raise UnknownFamilyError(family, SOURCES)
    if len(raw) > MAX_EVENT_BYTES:
        return _too_large(raw, family, received_at, MAX_EVENT_BYTES)
    try:
        document = _loads(raw)
    except orjson.JSONDecodeError as exc:
        return _unreadable(raw, exc, family, received_at)
    if type(document) is not dict:
        return dead_letter_for(raw, "not_an_object", f"$: {_not_object(document)}", family, received_at)
    return _event_or_dead(raw, document, family, received_at, "")


def decode_message(raw: bytes, *, family: str, received_at: int) -> list[Event | DeadLetter]:
    """A Kafka message value: one envelope or a JSON array of them. Always at least one result,
    in element order; a bad element becomes its own dead letter and the others still count."""
    if family not in _SOURCE_SET:
        raise UnknownFamilyError(family, SOURCES)
    size = len(raw)
    if size > MAX_BATCH_BYTES:
        return [_too_large(raw, family, received_at, MAX_BATCH_BYTES)]
    if size > MAX_EVENT_BYTES and not raw.lstrip(b" \t\r\n").startswith(b"["):
        return [_too_large(raw, family, received_at, MAX_EVENT_BYTES)]
    try:
        document = _loads(raw)
    except orjson.JSONDecodeError as exc:
        return [_unreadable(raw, exc, family, received_at)]
    if type(document) is dict:
        return [_event_or_dead(raw, document, family, received_at, "")]
    if type(document) is not list:
        return [dead_letter_for(raw, "not_an_object", f"$: {_not_object(document)}", family, received_at)]
    if not document:
        detail = "$: an empty batch; a batch is a JSON array of one or more envelopes"
        return [dead_letter_for(raw, "schema_violation", detail, family, received_at)]
    check_size = size > _REENCODE_CHECK_ABOVE
    results: list[Event | DeadLetter] = []
    for index, element in enumerate(document):
        where = f"batch element {index}: "
        if type(element) is not dict:
            detail = f"{where}$: {_not_object(element)}"
            results.append(dead_letter_for(_encode(element), "not_an_object", detail, family, received_at))
            continue
        if check_size:
            encoded = _encode(element)
            if len(encoded) > MAX_EVENT_BYTES:
                detail = f"{where}$: {len(encoded)} bytes re-encoded; the limit is {MAX_EVENT_BYTES}"
                results.append(dead_letter_for(encoded, "too_large", detail, family, received_at,
                                               _event_id(element)))
                continue
        decoded = _validate(element, family, received_at)
        if isinstance(decoded, Event):
            results.append(decoded)
        else:
            code, detail, source = decoded
            results.append(dead_letter_for(_encode(element), code, where + detail, source, received_at,
                                           _event_id(element)))
    return results


def _event_or_dead(
    raw: bytes, document: dict[str, Any], family: str | None, received_at: int, where: str
) -> Event | DeadLetter:
    decoded = _validate(document, family, received_at)
    if isinstance(decoded, Event):
        return decoded
    code, detail, source = decoded
    return dead_letter_for(raw, code, where + detail, source, received_at, _event_id(document))


def _validate(obj: dict[str, Any], family: str | None, received_at: int) -> Event | Rejection:
    """The envelope rules, in the documented order; the first failure wins."""
    get = obj.get
    source = get("source", _MISSING)
    if family is not None:
        known_source: str | None = family
    else:
        known_source = source if type(source) is str and source in _SOURCE_SET else None
    if "contact_id" not in obj and "anonymous_id" not in obj:
        return "missing_identity", "$: an event needs contact_id or anonymous_id (or both)", known_source
    event_type = get("event_type", _MISSING)
    type_family = FAMILY_OF.get(event_type) if type(event_type) is str else None
    if type(event_type) is str and type_family is None:
        detail = f"$.event_type: {_show(event_type)} is not an event type of any family (website, email, purchase)"
        return "unknown_event_type", detail, known_source
    if known_source is None:
        if source is _MISSING:
            return "schema_violation", '$.source: required in a replay line: "website", "email" or "purchase"', None
        return "schema_violation", f'$.source: must be "website", "email" or "purchase" (got {_show(source)})', None
    if source is not _MISSING and source != known_source:
        if type(source) is str and source in _SOURCE_SET:
            return "wrong_source", f'$.source: a "{source}" event on the {known_source} topic', known_source
        return "schema_violation", f'$.source: must be "{known_source}" (got {_show(source)})', known_source
    if type_family is not None and type_family != known_source:
        detail = f'$.event_type: "{event_type}" belongs to {type_family}, not {known_source}'
        return "wrong_source", detail, known_source
    # Schema rules of the envelope (each identifier: a string of 1-128 characters).
    if not ENVELOPE_FIELDS.issuperset(obj):
        extra = min(key for key in obj if key not in ENVELOPE_FIELDS)
        return "schema_violation", f"{_path('$', extra)}: unknown field; allowed: {_ALLOWED_FIELDS}", known_source
    event_id = get("event_id", _MISSING)
    if not (type(event_id) is str and 0 < len(event_id) <= MAX_IDENTIFIER_LENGTH):
        return "schema_violation", _field_problem("$.event_id", event_id, _IDENTIFIER), known_source
    if type_family is None:  # event_type missing or not a string
        return "schema_violation", _field_problem("$.event_type", event_type, "a string"), known_source
    contact_id = get("contact_id")
    if not (contact_id is None or (type(contact_id) is str and 0 < len(contact_id) <= MAX_IDENTIFIER_LENGTH)):
        return "schema_violation", _field_problem("$.contact_id", contact_id, _IDENTIFIER), known_source
    if "anonymous_id" in obj and not is_identifier(obj["anonymous_id"]):
        return "schema_violation", _field_problem("$.anonymous_id", obj["anonymous_id"], _IDENTIFIER), known_source
    if "contact_id" in obj and contact_id is None:  # a present null
        return "schema_violation", _field_problem("$.contact_id", None, _IDENTIFIER), known_source
    referred_by = get("referred_by")
    if not (referred_by is None or is_identifier(referred_by)) or ("referred_by" in obj and referred_by is None):
        return "schema_violation", _field_problem("$.referred_by", referred_by, _IDENTIFIER), known_source
    occurred_text = get("occurred_at", _MISSING)
    occurred_at = parse_timestamp(occurred_text) if type(occurred_text) is str else None
    if occurred_at is None:
        return "schema_violation", _field_problem("$.occurred_at", occurred_text, _TIMESTAMP), known_source
    if "context" in obj and type(obj["context"]) is not dict:
        return "schema_violation", f"$.context: must be an object (got {_show(obj['context'])})", known_source
    rules = TYPE_RULES[event_type]
    properties = get("properties", _MISSING)
    if properties is _MISSING:
        if rules.required:
            needs = ", ".join(rules.required_names)
            return "schema_violation", f"$.properties: required for {event_type} (with {needs})", known_source
        properties = {}
    elif type(properties) is not dict:
        return "schema_violation", f"$.properties: must be an object (got {_show(properties)})", known_source
    else:
        problem = _properties_problem(properties, rules)
        if problem is not None:
            return problem[0], problem[1], known_source
        if rules.integral:
            properties = _normalize_integers(properties, rules)
    if occurred_at - received_at > FUTURE_TOLERANCE:
        minutes = (occurred_at - received_at) / (60 * MICROS_PER_SECOND)
        detail = f"$.occurred_at: {occurred_text} is {minutes:.1f} minutes after the event was received (limit 5)"
        return "future_timestamp", detail, known_source
    return Event(
        event_id,
        event_type,
        known_source,
        contact_id if contact_id is not None else "anon:" + obj["anonymous_id"],
        occurred_at,
        contact_id is not None,
        properties,
        referred_by,
    )


def _properties_problem(properties: dict[str, Any], rules: TypeRules) -> tuple[str, str] | None:
    """``(error_code, detail)`` of the first problem of an event's ``properties`` object."""
    for rule in rules.required:
        value = properties.get(rule.name, _MISSING)
        if value is _MISSING:
            return "schema_violation", f"{_path('$.properties', rule.name)}: required for {rules.event_type}"
        if not rule.test(value):
            return "schema_violation", _rule_problem(rule, value)
    if not rules.optional_names.isdisjoint(properties):
        for rule in rules.optional:
            value = properties.get(rule.name, _MISSING)
            if value is not _MISSING and not rule.test(value):
                return "schema_violation", _rule_problem(rule, value)
    nested = False
    for key, value in properties.items():
        kind = type(value)
        if kind is not str:
            if key.startswith(UTM_PREFIX):
                return "schema_violation", f"{_path('$.properties', key)}: must be a string (got {_show(value)})"
            if kind is dict or kind is list:
                nested = True
    if nested and _too_deep(properties, MAX_DEPTH - 1):
        return "too_large", f"$.properties: nested deeper than {MAX_DEPTH} levels (counting the envelope)"
    return None


def _rule_problem(rule: PropertyRule, value: Any) -> str:
    return f"{_path('$.properties', rule.name)}: must be {rule.expectation} (got {_show(value)})"


def _normalize_integers(properties: dict[str, Any], rules: TypeRules) -> dict[str, Any]:
    """``5.0`` -> ``5`` for integer properties (JSON Schema's ``integer`` accepts both)."""
    floats = {name: int(properties[name]) for name in rules.integral if type(properties.get(name)) is float}
    return {**properties, **floats} if floats else properties


def _field_problem(path: str, value: Any, wanted: str) -> str:
    if value is _MISSING:
        return f"{path}: required ({wanted})"
    return f"{path}: must be {wanted} (got {_show(value)})"


def _path(parent: str, key: str) -> str:
    return f"{parent}.{key}" if key.isidentifier() and key.isascii() else f"{parent}[{_show(key)}]"


def _show(value: Any, limit: int = 60) -> str:
    """A short JSON rendering of ``value`` for an error detail."""
    try:
        text = _dumps(value).decode("utf-8")
    except (orjson.JSONEncodeError, TypeError):
        text = "<unprintable value>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _not_object(value: Any) -> str:
    if type(value) is list:
        kind = "an array"
    elif type(value) is str:
        kind = "a string"
    elif value is None:
        kind = "null"
    elif type(value) is bool:
        kind = "a boolean"
    else:
        kind = "a number"
    return f"must be a JSON object (got {kind})"


def _event_id(obj: dict[str, Any]) -> str | None:
    event_id = obj.get("event_id")
    return event_id if type(event_id) is str else None


def _encode(value: Any) -> bytes:
    """``value`` as compact JSON; empty when it cannot be encoded (nested beyond orjson's limit)."""
    try:
        return _dumps(value)
    except orjson.JSONEncodeError:
        return b""


def _too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects and arrays more than ``limit`` levels deep (itself: level 1)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if type(node) is dict else node
        stack.extend((child, depth + 1) for child in children if type(child) is dict or type(child) is list)
    return False


def _too_large(raw: bytes, family: str | None, received_at: int, limit: int) -> DeadLetter:
    return dead_letter_for(raw, "too_large", f"$: {len(raw)} bytes; the limit is {limit}", family, received_at)


def _unreadable(raw: bytes, exc: orjson.JSONDecodeError, family: str | None, received_at: int) -> DeadLetter:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        detail = f"$: not valid UTF-8 ({bad.reason} at byte {bad.start})"
        return dead_letter_for(raw, "invalid_encoding", detail, family, received_at)
    return dead_letter_for(raw, "invalid_json", f"$: not valid JSON ({exc})", family, received_at)

