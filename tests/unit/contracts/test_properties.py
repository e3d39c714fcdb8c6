"""Property tests: no input crashes the decoder, and every message gives at least one result."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contracts import DeadLetter, decode_event, decode_message, encode_deadletter
from pipeline.state_machine.events import Event

from .conftest import EXAMPLES, RECEIVED_AT

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
_valid_lines = [case.raw for case in EXAMPLES if case.family is not None]


def _check(results: list[Event | DeadLetter]) -> None:
    assert len(results) >= 1
    for result in results:
        assert isinstance(result, Event | DeadLetter)
        if isinstance(result, DeadLetter):
            encode_deadletter(result)


@given(st.binary(max_size=300))
@settings(max_examples=800, deadline=None)
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    _check(decode_message(raw, family="website", received_at=RECEIVED_AT))
    assert isinstance(decode_event(raw, family=None, received_at=RECEIVED_AT), Event | DeadLetter)


@given(_json)
@settings(max_examples=400, deadline=None)
def test_arbitrary_json_never_raises(document: Any) -> None:
    raw = json.dumps(document).encode()
    _check(decode_message(raw, family="email", received_at=RECEIVED_AT))
    assert isinstance(decode_event(raw, family=None, received_at=RECEIVED_AT), Event | DeadLetter)


@given(st.lists(st.sampled_from(_valid_lines) | _json.map(lambda d: json.dumps(d).encode()), max_size=6),
       st.binary(max_size=8))
@settings(max_examples=300, deadline=None)
def test_a_batch_gives_one_result_per_element_in_order(elements: list[bytes], noise: bytes) -> None:
    raw = b"[" + b",".join(elements) + b"]"
    results = decode_message(raw, family="website", received_at=RECEIVED_AT)
    _check(results)
    if elements:
        assert len(results) == len(elements)
        for element, result in zip(elements, results, strict=True):
            assert result == decode_message(element, family="website", received_at=RECEIVED_AT)[0] or (
                isinstance(result, DeadLetter) and result.error_detail.startswith("batch element ")
            )
    _check(decode_message(raw + noise, family="website", received_at=RECEIVED_AT))


@given(st.sampled_from(_valid_lines), st.integers(0, 400), st.binary(min_size=1, max_size=3))
@settings(max_examples=400, deadline=None)
def test_corrupting_a_valid_line_never_raises(raw: bytes, position: int, junk: bytes) -> None:
    position %= len(raw)
    corrupted = raw[:position] + junk + raw[position + len(junk):]
    _check(decode_message(corrupted, family="purchase", received_at=RECEIVED_AT))
