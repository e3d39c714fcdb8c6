"""The contact state's memory layout (issue 12): memos as array-like structs, values shared.

The order, value-order and scoring memories became array-like msgspec structs (they were tuples)
and :func:`~pipeline.state_machine.state.decode_state` shares repeated values. The MessagePack
bytes did not change: ``tests/fixtures/upgrade/contact-states-7d987dc.jsonl`` holds states that
commit 7d987dc's own code wrote (a replay of ``samples/journeys.jsonl`` with the default model and
``received_at`` 2026-11-01T00:00:00Z; ``state`` is ``encode_state`` in base64, ``fields`` the
state as JSON), and each decodes to the same values and encodes back to the same bytes.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from pipeline.state_machine import ContactState, decode_state, encode_state
from pipeline.state_machine.state import OrderMemo, ScoreMemo, ValueMemo, compact

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "upgrade" / "contact-states-7d987dc.jsonl"
ROWS: list[dict[str, Any]] = [json.loads(line) for line in FIXTURE.read_text().splitlines()]


def test_the_fixture_covers_every_memo() -> None:
    states = [decode_state(base64.b64decode(row["state"])) for row in ROWS]
    assert any(len(s.scoring_events) >= 5 for s in states)
    assert any(any(o.refunded for o in s.orders) for s in states)
    assert any(s.value_orders for s in states) and any(s.signals for s in states)
    assert any(s.first_touch is not None and s.first_touch[1] is not None for s in states)
    assert any(s.merged_into is not None for s in states) and any(s.aliases for s in states)


def test_states_written_by_the_tuple_layout_decode_to_the_same_values_and_bytes() -> None:
    for row in ROWS:
        data = base64.b64decode(row["state"])
        state = decode_state(data)
        assert json.loads(msgspec.json.encode(state)) == row["fields"], row["case"]
        assert encode_state(state) == data, row["case"]


def test_decoding_without_sharing_gives_an_equal_state() -> None:
    for row in ROWS:
        data = base64.b64decode(row["state"])
        plain = decode_state(data, share=False)
        assert plain == decode_state(data) and encode_state(plain) == data
    data = base64.b64decode(ROWS[0]["state"])
    assert decode_state(data, share=False).first_touch is not decode_state(data, share=False).first_touch
    assert decode_state(data).first_touch is decode_state(data).first_touch


def test_memos_are_structs_with_the_old_fields() -> None:
    state = decode_state(base64.b64decode(next(r for r in ROWS if r["case"] == "scoring")["state"]))
    memo = state.scoring_events[-1]
    assert isinstance(memo, ScoreMemo) and isinstance(memo.points, float)
    assert msgspec.msgpack.encode(memo) == msgspec.msgpack.encode((memo.event_id, memo.event_type, memo.points))


def test_decoded_states_share_repeated_values() -> None:
    states = [decode_state(base64.b64decode(row["state"])) for row in ROWS]
    types = [m.event_type for s in states for m in s.scoring_events]
    same = [t for t in types if t == types[0]]
    assert len(same) > 1 and all(t is same[0] for t in same)  # interned
    touches = [s.first_touch for s in states if s.first_touch == states[0].first_touch]
    assert len(touches) > 1 and all(t is touches[0] for t in touches)
    for s in states:  # one object per distinct time within a state
        times = [getattr(s, name) for name in ("clock", "score_at", "last_event_at", "last_engagement_at")]
        for a in times:
            for b in times:
                if a is not None and a == b and a > 256:
                    assert a is b


def test_a_negative_zero_is_never_swapped_for_zero() -> None:
    state = ContactState(contact="c1", identified=True, score=-0.0, revenue=-0.0,
                         scoring_events=(ScoreMemo("e1", "page_view", 0.0), ScoreMemo("e2", "page_view", -0.0)),
                         value_orders=(ValueMemo("o1", 10**15, 0.0, False, False),
                                       ValueMemo("o2", 10**15, -0.0, False, False)))
    again = decode_state(encode_state(state))
    assert encode_state(again) == encode_state(state)
    assert math.copysign(1.0, again.scoring_events[1].points) == -1.0
    assert math.copysign(1.0, again.value_orders[1].net) == -1.0


_times = st.one_of(st.none(), st.integers(min_value=-(2**62), max_value=2**62))
_text = st.text(max_size=12)
_floats = st.floats(allow_nan=False)


@given(
    times=st.lists(_times, min_size=16, max_size=16),
    score=_floats,
    revenue=_floats,
    touch=st.one_of(st.none(), st.tuples(*(st.one_of(st.none(), _text) for _ in range(4)))),
    scores=st.lists(st.builds(ScoreMemo, _text, _text, _floats), max_size=6),
    orders=st.lists(st.builds(OrderMemo, _text, _text, st.booleans()), max_size=6),
    values=st.lists(st.builds(ValueMemo, _text, st.integers(-(2**62), 2**62), _floats, st.booleans(),
                              st.booleans()), max_size=6),
    signals=st.lists(st.integers(-(2**62), 2**62), max_size=4),
)
def test_compact_changes_no_value_and_no_byte(
    times: list[int | None], score: float, revenue: float, touch: Any, scores: list[ScoreMemo],
    orders: list[OrderMemo], values: list[ValueMemo], signals: list[int],
) -> None:
    names = ("score_at", "clock", "stage_entered_at", "last_event_at", "last_engagement_at", "first_core_order_at",
             "last_core_order_at", "last_referral_at", "due", "first_seen_at", "alert_at", "respond_by",
             "answered_at", "escalate_at", "last_order_at", "segment_due")
    fields: dict[str, Any] = {name: t for name, t in zip(names, times, strict=True) if t is not None or
                              name not in ("score_at", "clock", "stage_entered_at")}
    state = ContactState(contact="c1", identified=True, score=score, revenue=revenue, first_touch=touch,
                         scoring_events=tuple(scores), orders=tuple(orders), value_orders=tuple(values),
                         signals=tuple(signals), **fields)
    data = encode_state(state)
    assert compact(state) == state
    assert encode_state(compact(state)) == data
    assert decode_state(data) == state
    assert encode_state(decode_state(data)) == data
