"""The hot-path shortcuts (issue 12) against the reference code paths, over generated journeys.

- :meth:`LifecycleProcessor.apply` skips the identity and referral dispatch for the common event;
  a processor driven through the general dispatch (``_decide`` then ``_follow``) must give the same
  outputs and states.
- ``expire`` sets the ``due`` cache from the last :func:`next_deadline` it computed instead of
  recomputing it: the cache must always equal ``next_deadline(state).at``.
- ``all_match`` (operator functions) must agree with ``all_match_exact`` (``Comparison.matches``).
"""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from pipeline.state_machine import BUILTIN_MODELS, ContactState, Event, builtin_model, next_deadline
from pipeline.state_machine.model import OPERATORS, Comparison, all_match, all_match_exact
from pipeline.state_machine.processor import LifecycleProcessor, Outcome
from tests.unit.state_machine.test_properties import SETTINGS, journeys


def _general_apply(processor: LifecycleProcessor, event: Event) -> Outcome:
    """``apply`` without its shortcut: every event through the general dispatch."""
    outcome = Outcome()
    processor._fire_before(event.occurred_at, outcome)
    return processor._follow(processor._decide(event, outcome), outcome, event)


def _due_is_current(state: ContactState, model: Any) -> bool:
    deadline = next_deadline(state, model)
    return state.due == (None if deadline is None else deadline.at)


@SETTINGS
@given(events=journeys(), until_days=st.integers(0, 800))
def test_the_shortcut_gives_what_the_general_dispatch_gives(events: list[Event], until_days: int) -> None:
    for name in BUILTIN_MODELS:
        model = builtin_model(name)
        fast, general = LifecycleProcessor(model), LifecycleProcessor(model)
        for event in events:
            got, want = fast.apply(event), _general_apply(general, event)
            assert msgspec.json.encode(got.transitions) == msgspec.json.encode(want.transitions)
            assert msgspec.json.encode(got.alerts) == msgspec.json.encode(want.alerts)
            assert (got.duplicate, got.applied, got.duplicates, got.referrals_applied, got.contact_outcomes) == (
                want.duplicate, want.applied, want.duplicates, want.referrals_applied, want.contact_outcomes)
            assert dict(fast.states) == dict(general.states)
            for state in fast.states.values():
                assert _due_is_current(state, model)
        end = max((e.occurred_at for e in events), default=0) + until_days * 86_400_000_000
        got, want = fast.advance_to(end), general.advance_to(end)
        assert msgspec.json.encode(got.transitions) == msgspec.json.encode(want.transitions)
        assert dict(fast.states) == dict(general.states)
        for state in fast.states.values():
            assert _due_is_current(state, model)


_values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(-5, 5), st.sampled_from(["a", "b", "5"]),
    st.lists(st.integers(0, 3), max_size=2), st.dictionaries(st.just("k"), st.integers(0, 1), max_size=1),
)
_operands = st.one_of(
    st.booleans(), st.integers(-5, 5), st.floats(-5, 5), st.sampled_from(["a", "b", "5"]),
    st.frozensets(st.one_of(st.integers(-2, 2), st.sampled_from(["a", "b"])), max_size=3),
)


@given(
    tests=st.lists(st.builds(Comparison, st.sampled_from(["x", "y"]), st.sampled_from(OPERATORS), _operands),
                   max_size=3),
    values=st.dictionaries(st.sampled_from(["x", "y"]), _values),
)
def test_all_match_agrees_with_the_reference(tests: list[Comparison], values: dict[str, Any]) -> None:
    assert all_match(tuple(tests), values) == all_match_exact(tuple(tests), values)
