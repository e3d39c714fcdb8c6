"""The fast path: one typed msgspec decode that accepts the common, valid envelope in C.

msgspec checks the field types, identifier lengths, the event type and unknown fields while it
parses; properties are checked by converting them to a per-type struct (extras ignored, the dict
itself is kept). Python then checks only what a type cannot say: the family, the identity, the
timestamp, the clock. Anything this path does not accept goes to :func:`.validate.validate_envelope`,
which decides and explains. This path may be stricter than the rules (``rating: 5.0`` goes the
slow way), never more lenient: ``tests/unit/contracts`` compares both on every fixture and on
generated envelopes.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from pipeline.contracts.rules import FAMILY_OF, TYPE_RULES, ContactIdentifier, Identifier, cross_property_problem
from pipeline.contracts.timestamps import parse_timestamp
from pipeline.contracts.validate import FUTURE_TOLERANCE, MAX_DEPTH, SOURCE_SET
from pipeline.state_machine.events import ANONYMOUS_PREFIX, Event


class Envelope(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The wire envelope as msgspec decodes it (``UNSET``: the field was absent)."""

    event_id: Identifier
    event_type: str
    occurred_at: str
    source: str | UnsetType = UNSET
    contact_id: ContactIdentifier | UnsetType = UNSET
    anonymous_id: Identifier | UnsetType = UNSET
    properties: dict[str, Any] | UnsetType = UNSET
    context: dict[str, Any] | UnsetType = UNSET
    referred_by: ContactIdentifier | UnsetType = UNSET


def _properties_struct(event_type: str) -> type[msgspec.Struct]:
    rules = TYPE_RULES[event_type]
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [(r.name, r.annotation) for r in rules.required]
    fields += [(r.name, r.annotation | UnsetType, UNSET) for r in rules.optional]
    return msgspec.defstruct(f"{event_type}_properties", fields, gc=False)


_PROPERTY_TYPES = {event_type: _properties_struct(event_type) for event_type in TYPE_RULES}
_EMPTY_OK = frozenset(t for t, rules in TYPE_RULES.items() if not rules.required and not rules.any_of)
_ANY_OF = {t: rules.any_of for t, rules in TYPE_RULES.items() if rules.any_of}
_decode_envelope = msgspec.json.Decoder(Envelope).decode
_convert = msgspec.convert
_DEPTH_SCAN_ABOVE = 2 * MAX_DEPTH  # a shorter text cannot nest deeper than MAX_DEPTH


def fast_event(raw: bytes, family: str | None, received_at: int) -> Event | None:
    """The event when ``raw`` is a valid envelope of the common shape, else ``None``."""
    if len(raw) > _DEPTH_SCAN_ABOVE and raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:
        return None
    try:
        envelope = _decode_envelope(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    source = envelope.source
    if family is None:
        if source not in SOURCE_SET:
            return None
        family = source
    elif source is not UNSET and source != family:
        return None
    event_type = envelope.event_type
    if FAMILY_OF.get(event_type) != family:
        return None
    contact_id = envelope.contact_id
    anonymous_id = envelope.anonymous_id
    if contact_id is UNSET:
        if anonymous_id is UNSET:
            return None
        contact = ANONYMOUS_PREFIX + anonymous_id
    else:
        contact = contact_id
    occurred_at = parse_timestamp(envelope.occurred_at)
    if occurred_at is None or occurred_at - received_at > FUTURE_TOLERANCE:
        return None
    properties = envelope.properties
    if properties is UNSET:
        if event_type not in _EMPTY_OK:
            return None
        properties = {}
    else:
        try:
            _convert(properties, _PROPERTY_TYPES[event_type])
        except msgspec.ValidationError:
            return None
        needs = _ANY_OF.get(event_type)
        if needs is not None and not any(name in properties for name in needs):
            return None
        if event_type == "order_completed" and cross_property_problem(event_type, properties) is not None:
            return None
    referred_by = envelope.referred_by
    return Event(
        envelope.event_id,
        event_type,
        family,
        contact,
        occurred_at,
        contact_id is not UNSET,
        properties,
        None if referred_by is UNSET else referred_by,
        None if anonymous_id is UNSET else anonymous_id,
    )
