"""The code and the schema files say the same: same tables, same timestamp rule, same decisions."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contracts import TIMESTAMP_PATTERN, DeadLetter, decode_event, parse_timestamp, validate_envelope
from pipeline.contracts.fastpath import fast_event
from pipeline.contracts.rules import ENVELOPE_FIELDS, TYPE_RULES, UTM_PROPERTIES
from pipeline.state_machine.clock import parse_rfc3339
from pipeline.state_machine.events import EVENT_TYPES, Event
from tests.support.schema_files import load_schema

FAR_FUTURE = parse_rfc3339("9999-12-31T23:59:59Z")  # no fixture is ever "in the future"


def test_every_family_schema_lists_exactly_the_event_types_of_the_core() -> None:
    for family, types in EVENT_TYPES.items():
        schema = load_schema(f"{family}-event")
        assert schema["properties"]["event_type"]["enum"] == list(types)
        assert schema["properties"]["source"]["const"] == family


def test_required_and_known_properties_match_the_schema_files() -> None:
    for family, types in EVENT_TYPES.items():
        defs = load_schema(f"{family}-event")["$defs"]
        for event_type in types:
            rules = TYPE_RULES[event_type]
            definition = defs.get(event_type, {})
            assert definition.get("required", []) == list(rules.required_names), event_type
            known = set(definition.get("properties", {})) | set(UTM_PROPERTIES)
            assert known == {r.name for r in (*rules.required, *rules.optional)}, event_type


def test_envelope_fields_and_timestamp_pattern_match_the_schema_file() -> None:
    envelope = load_schema("envelope")
    assert set(envelope["properties"]) == ENVELOPE_FIELDS
    assert envelope["additionalProperties"] is False
    assert envelope["$defs"]["timestamp"]["pattern"] == TIMESTAMP_PATTERN
    assert set(envelope["$defs"]["properties"]["properties"]) == set(UTM_PROPERTIES)


_digits = st.integers(0, 9999).map(lambda n: f"{n:04d}")
_two = st.integers(0, 99).map(lambda n: f"{n:02d}")
_timestamps = st.one_of(
    st.builds(
        lambda y, mo, d, h, mi, s, frac, zone: f"{y}-{mo}-{d}T{h}:{mi}:{s}{frac}{zone}",
        _digits, _two, _two, _two, _two, _two,
        st.sampled_from(["", ".", ".5", ".123456", ".1234567890", ".x"]),
        st.sampled_from(["Z", "z", "+07:00", "-23:59", "+24:00", "+07:60", "+0700", "", "Z\n"]),
    ),
    st.text(alphabet="0123456789-:TZ.+ ", max_size=30),
)


@given(_timestamps)
@settings(max_examples=3000, deadline=None)
def test_the_code_and_the_schema_pattern_accept_the_same_timestamps(text: str) -> None:
    parsed = parse_timestamp(text)
    assert (parsed is not None) == (re.search(TIMESTAMP_PATTERN, text) is not None), text
    if parsed is not None:
        assert parsed == parse_rfc3339(text)


# Generated envelopes: a valid envelope of a random type, then 0-3 random mutations (a field
# removed, or set to a value from a mix of good and bad ones), so that acceptance and every kind
# of rejection are common; the schema and the code must agree on all of them.
_any_value: st.SearchStrategy[Any] = st.sampled_from(
    [None, True, 0, 1, 5, 5.0, 4.5, -1, 10**20, "", "x", "VND", "hard", "core", "website", "email", [], {}, ["a"]]
)
_identifiers = st.one_of(st.sampled_from(["c-1", "é" * 128, "x" * 129, ""]), _any_value)
_all_types = [t for types in EVENT_TYPES.values() for t in types]
_property_names = sorted({r.name for rules in TYPE_RULES.values() for r in (*rules.required, *rules.optional)})
_GOOD = {
    "rating": 3, "amount": 12.5, "currency": "VND", "tier": "core", "bounce_type": "soft", "channel": "call",
    "reason": "no_budget", "budget": True, "authority": False, "need": True, "timeline": True,
}
_FIELD_VALUES: dict[str, Any] = {
    "event_id": _identifiers,
    "event_type": st.one_of(st.sampled_from([*_all_types, "nope"]), _any_value),
    "source": st.one_of(st.sampled_from(["website", "email", "purchase", "sales", "sms"]), _any_value),
    "contact_id": _identifiers,
    "anonymous_id": _identifiers,
    "occurred_at": st.one_of(
        st.sampled_from(["2026-03-01T10:00:00.5+07:00", "2026-02-30T10:00:00Z", "2026-03-01"]), _any_value
    ),
    "properties": st.sampled_from([{}, None, "p", [], {"x": 1}]),
    "context": st.sampled_from([{}, {"ip": "1"}, "ctx", None]),
    "referred_by": _identifiers,
    "unexpected": st.just(1),
}


@st.composite
def envelopes(draw: st.DrawFn) -> tuple[str | None, dict[str, Any]]:
    family = draw(st.sampled_from([None, "website", "email", "purchase", "sales"]))
    event_type = draw(st.sampled_from(list(EVENT_TYPES[family]) if family else _all_types))
    rules = TYPE_RULES[event_type]
    document: dict[str, Any] = {
        "event_id": "e-1",
        "event_type": event_type,
        draw(st.sampled_from(["contact_id", "anonymous_id"])): "c-1",
        "occurred_at": "2026-03-01T10:00:00Z",
        "properties": {rule.name: _GOOD.get(rule.name, "v") for rule in rules.required},
    }
    if family is None or draw(st.booleans()):
        document["source"] = rules.family
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):  # mutate the envelope
            name = draw(st.sampled_from(sorted(_FIELD_VALUES)))
            if name in document and draw(st.integers(0, 3)) == 0:
                del document[name]
            else:
                document[name] = copy.deepcopy(draw(_FIELD_VALUES[name]))  # sampled values are shared
        elif isinstance(document.get("properties"), dict):  # mutate a property
            name = draw(st.sampled_from([*_property_names, "extra"]))
            properties = document["properties"]
            if name in properties and draw(st.integers(0, 3)) == 0:
                del properties[name]
            else:
                properties[name] = copy.deepcopy(draw(st.one_of(st.just(_GOOD.get(name, "v")), _any_value)))
    return family, document


@given(envelopes())
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_code_accepts_exactly_what_the_schema_accepts(case: tuple[str | None, dict[str, Any]]) -> None:
    from tests.support.schema_files import schema_validator

    family, document = case
    validator = _validators.get(family) or _validators.setdefault(
        family, schema_validator("event" if family is None else f"{family}-event")
    )
    raw = json.dumps(document).encode()
    decoded = decode_event(raw, family=family, received_at=FAR_FUTURE)
    schema_errors = [e.message for e in validator.iter_errors(document)]
    detail = decoded.error_detail if isinstance(decoded, DeadLetter) else ""
    # One rule spans two fields and JSON Schema cannot state it (draft 2020-12 compares a value
    # with constants only): a discount may not exceed the order's amount. The code alone rejects it.
    cross_field = not schema_errors and "must be at most amount" in detail
    assert isinstance(decoded, Event) == (not schema_errors) or cross_field, (document, schema_errors, detail)
    fast = fast_event(raw, family, FAR_FUTURE)
    if fast is not None:  # the fast path never accepts what the exact rules reject, nor differs
        assert fast == validate_envelope(document, family, FAR_FUTURE)


_validators: dict[str | None, Any] = {}
