"""The hot-path shortcuts (issue 12) against the reference code paths, over generated journeys.

- :meth:`LifecycleProcessor.apply` skips the identity and referral dispatch for the common event;
  a processor driven through the general dispatch (``_decide`` then ``_follow``) must give the same
  outputs and states.
- ``expire`` sets the ``due`` cache from the last :func:`next_deadline` it computed instead of
  recomputing it: the cache must always equal ``next_deadline(state).at``.
- ``all_match`` (operator functions) must agree with ``all_match_exact`` (``Comparison.matches``).
- ``segment_deadline`` (measures moved in place, static tests decided once) must agree with the
  plain search: ``evaluate(measures(state, t))`` at every candidate time t in order.
"""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from pipeline.state_machine import BUILTIN_MODELS, ContactState, Event, builtin_model, next_deadline
from pipeline.state_machine.model import OPERATORS, Comparison, Segments, all_match, all_match_exact
from pipeline.state_machine.processor import LifecycleProcessor, Outcome
from pipeline.state_machine.segments import evaluate, measures, segment_deadline
from pipeline.state_machine.state import ValueMemo
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


def _reference_segment_deadline(state: ContactState, segments: Segments, now: int) -> int | None:
    """The plain search segment_deadline shortens (as it was written before issue 12)."""
    if state.last_order_at is None and not state.signals:
        return None
    candidates: set[int] = set()
    if state.last_order_at is not None:
        for threshold in segments.day_thresholds:
            crossing = state.last_order_at + round(threshold * 86_400_000_000)
            candidates.update((crossing - 1, crossing, crossing + 1))
    candidates.update(memo.at + segments.recent_window for memo in state.value_orders)
    candidates.update(t + segments.signal_window for t in state.signals)
    for at in sorted(t for t in candidates if t > now):
        if evaluate(segments, state.segment, measures(state, segments, at)) is not None:
            return at
    return None


@SETTINGS
@given(events=journeys(), offsets=st.lists(st.integers(-400, 400), min_size=1, max_size=4))
def test_segment_deadline_agrees_with_the_plain_search(events: list[Event], offsets: list[int]) -> None:
    model = builtin_model("default")
    segments = model.segments
    assert segments is not None
    processor = LifecycleProcessor(model)
    for event in events:
        processor.apply(event)
        state = processor.states.get(event.contact)
        if state is None or state.merged_into is not None:
            continue
        for days in offsets:
            now = state.clock + days * 86_400_000_000
            assert segment_deadline(state, segments, now) == _reference_segment_deadline(state, segments, now)


def test_a_segment_whose_static_stay_fails_moves_at_the_first_candidate() -> None:
    model = builtin_model("default")
    segments = model.segments
    assert segments is not None
    t0, day = 1_740_819_600_000_000, 86_400_000_000
    loyal = [segment.name for segment in segments.order].index("loyal")
    orders = tuple(ValueMemo(f"o{i}", t0, 3_000_000.0, False, False) for i in range(2))
    # Loyal by its time-driven tests (recent revenue, days since the last order), not by its
    # order count: it leaves at the first candidate time, whatever the timed tests say.
    state = ContactState("c1", True, clock=t0, segment=loyal, order_count=2, revenue=6_000_000.0,
                         last_order_at=t0, value_orders=orders)
    first = min(t0 + round(threshold * day) - 1 for threshold in segments.day_thresholds)
    assert _reference_segment_deadline(state, segments, t0) == first
    assert segment_deadline(state, segments, t0) == first
