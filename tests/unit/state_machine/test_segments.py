"""Value segments in the engine (issue 14), with hand-computed measures on the default model.

Default model: VND; recent window 365 days; signals weigh 90 days. loyal: 3+ orders, recent revenue
>= 5,000,000, last order < 90 days ago, promo share <= 0.5 (stays down to 4,000,000 / 120 days /
0.6); small_value: promo share >= 0.6 (stays down to 0.4); big_potential: any other buyer;
negative: a signal in 90 days and no order since (evaluated first); none: never bought.
"""

from __future__ import annotations

import pytest

from pipeline.state_machine import ModelError, builtin_model, next_deadline, parse_model
from pipeline.state_machine.engine import snapshot
from pipeline.state_machine.segments import is_promotional, measures
from pipeline.state_machine.state import ContactState, decode_state, encode_state

DAY = 86_400_000_000


def order(event, when, order_id, amount, contact="c1", tier="core", currency="VND", **promo):
    return event("order_completed", when, contact, order_id=order_id, amount=amount, currency=currency,
                 tier=tier, **promo)


def segment(run, contact="c1"):
    return run.model.segments.name_of(run.state(contact).segment)


def test_first_full_price_order_makes_big_potential(run, event, at):
    run.feed(event("page_view", at(0), url="https://x"))
    assert segment(run) == "none"
    decision = run.feed(order(event, at(1), "o1", 2_500_000))
    [move] = [t for t in decision.transitions if t.kind == "segment"]
    assert (move.from_, move.to, move.reason, move.direction) == (
        "none", "big_potential", "bought_at_full_price", "advance"
    )
    assert move.trigger_event_id is not None and move.occurred_at == "2025-03-02T09:00:00Z"
    snap = snapshot(run.state(), run.model)
    assert (snap.segment, snap.revenue, snap.orders, snap.promo_orders, snap.foreign_orders) == (
        "big_potential", 2_500_000.0, 1, 0, 0
    )


def test_loyal_entry_and_time_driven_exit_at_the_exact_deadline(run, event, at):
    run.feed(order(event, at(0), "o1", 2_000_000), order(event, at(30), "o2", 2_000_000))
    assert segment(run) == "big_potential"  # 2 orders: not yet loyal
    run.feed(order(event, at(60), "o3", 1_000_000))  # 3 orders, 5,000,000 in the year, last 0 days ago
    assert run.moves("segment")[-1] == ("big_potential", "loyal", "became_loyal")
    # stays loyal while the last order is < 120 days old: the exit is due at day 60 + 120 exactly
    assert run.state().segment_due == at(180)
    assert [t for t in run.expire(at(180) - 1) if t.kind == "segment"] == []  # band decay only
    assert segment(run) == "loyal"
    assert next_deadline(run.state(), run.model).at == at(180)
    fired = [t for t in run.expire(at(180)) if t.kind == "segment"]
    assert [(t.from_, t.to, t.reason, t.direction, t.trigger_event_id, t.occurred_at) for t in fired] == [
        ("loyal", "big_potential", "loyal_slipped", "regress", None, "2025-08-28T09:00:00Z")
    ]


def test_loyal_hysteresis_keeps_a_loyal_customer_between_thresholds(run, event, at):
    run.feed(*(order(event, at(d), f"o{d}", 2_000_000) for d in (0, 30, 60)))
    assert segment(run) == "loyal"
    # day 100: 40 days since the last order (< 120 stay), 3 orders still in the year: loyal
    run.feed(event("page_view", at(100), url="https://x"))
    assert segment(run) == "loyal"
    # a refund of 1,500,000 of o60: recent revenue 4,500,000 >= 4,000,000 stay (enter would need 5M)
    run.feed(event("order_refunded", at(101), order_id="o60", amount=1_500_000))
    assert segment(run) == "negative"  # a refund is a negative signal, evaluated first
    m = measures(run.state(), run.model.segments, at(101))
    assert (m["revenue"], m["recent_revenue"], m["negative_signals"], m["orders_since_negative"]) == (
        4_500_000.0, 4_500_000.0, 1, 0
    )


def test_refunds_take_revenue_back_never_below_the_order(run, event, at):
    run.feed(order(event, at(0), "o1", 1_000_000), order(event, at(1), "o2", 3_000_000))
    run.feed(event("order_refunded", at(2), order_id="o2", amount=5_000_000))  # capped at 3,000,000
    state = run.state()
    assert state.revenue == 1_000_000.0
    assert state.order_count == 2
    run.feed(event("order_refunded", at(3), order_id="o2", amount=10))  # nothing left to refund
    assert run.state().revenue == 1_000_000.0


def test_complainer_turns_negative_and_is_won_back_by_a_new_order(run, event, at):
    run.feed(order(event, at(0), "o1", 3_000_000))
    run.feed(event("email_complained", at(10), campaign_id="promo-3"))
    assert run.moves("segment")[-1] == ("big_potential", "negative", "turned_negative")
    run.feed(order(event, at(20), "o2", 3_000_000))
    assert run.moves("segment")[-1] == ("negative", "big_potential", "won_back")
    assert [t.direction for t in run.transitions if t.kind == "segment"] == ["advance", "regress", "advance"]


def test_negative_is_forgiven_after_the_signal_window(run, event, at):
    run.feed(order(event, at(0), "o1", 3_000_000))
    run.feed(event("review_submitted", at(5), rating=1))
    assert segment(run) == "negative"
    assert run.state().segment_due == at(95)  # the review leaves the 90-day window
    fired = [t for t in run.expire(at(95)) if t.kind == "segment"]
    assert [(t.from_, t.to, t.reason) for t in fired] == [("negative", "big_potential", "won_back")]


def test_a_good_review_or_a_non_buyer_complaint_is_not_negative(run, event, at):
    run.feed(event("email_complained", at(0), campaign_id="c"))
    assert segment(run) == "none"  # never bought: stays none
    run.feed(order(event, at(1), "o1", 100_000), event("review_submitted", at(2), rating=4))
    assert segment(run) == "big_potential"


def test_promotion_hunter_who_buys_once_at_full_price_stays_small_value(run, event, at):
    run.feed(order(event, at(0), "o1", 200_000, discount=50_000))
    assert run.moves("segment") == [("none", "small_value", "buys_on_promotion")]
    run.feed(order(event, at(10), "o2", 200_000, coupon="SPRING"))
    run.feed(order(event, at(20), "o3", 900_000))  # full price: promo share 2/3 >= 0.4 stay
    assert segment(run) == "small_value"
    run.feed(order(event, at(30), "o4", 900_000))  # 2/4 = 0.5: still >= 0.4
    assert segment(run) == "small_value"
    run.feed(order(event, at(40), "o5", 900_000))  # 2/5 = 0.4: stays (ge 0.4)
    assert segment(run) == "small_value"
    run.feed(order(event, at(50), "o6", 900_000))  # 2/6 < 0.4: pays full price now
    assert run.moves("segment")[-1] == ("small_value", "big_potential", "pays_full_price_now")
    assert run.state().promo_orders == 2


def test_promotional_rule():
    assert is_promotional({"discount": 1})
    assert is_promotional({"coupon": "X"})
    assert not is_promotional({"discount": 0, "coupon": ""})
    assert not is_promotional({})


def test_an_order_in_another_currency_counts_but_is_never_summed(run, event, at):
    run.feed(order(event, at(0), "o1", 100, currency="USD"))
    state = run.state()
    assert (state.order_count, state.foreign_orders, state.revenue) == (1, 1, 0.0)
    assert segment(run) == "big_potential"


def test_repeated_order_report_changes_nothing(run, event, at):
    run.feed(order(event, at(0), "o1", 1_000_000))
    decision = run.feed(order(event, at(1), "o1", 1_000_000))
    assert run.state().order_count == 1 and run.state().revenue == 1_000_000.0
    assert not [t for t in decision.transitions if t.kind == "segment"]


def test_recent_revenue_leaves_the_window_and_loyal_slips(run, event, at):
    # orders every 80 days keep the last order fresh, but only what is in the last 365 days counts
    for i, d in enumerate((0, 80, 160)):
        run.feed(order(event, at(d), f"o{i}", 2_000_000))
    assert segment(run) == "loyal"
    run.feed(order(event, at(240), "o3", 100_000), order(event, at(320), "o4", 100_000))
    # day 365: o0 leaves the window (at(0) + 365 days): recent revenue 4,200,000 >= 4,000,000 stays
    # day 445: o1 leaves: 2,200,000 < 4,000,000 -> loyal slips (the last order, day 320, is 125 days old:
    # that came first, at day 440)
    run.expire(at(500))
    assert [(f, t, r) for f, t, r in run.moves("segment")][-1] == ("loyal", "big_potential", "loyal_slipped")
    [slip] = [t for t in run.transitions if t.kind == "segment" and t.to == "big_potential" and t.from_ == "loyal"]
    assert slip.occurred_at == "2026-05-15T09:00:00Z"  # day 440 = 320 + 120


def test_b2b_model_declares_no_segments(b2b_model, event):
    assert b2b_model.segments is None
    from pipeline.state_machine import decide

    order_event = event("order_completed", 0, "c1", order_id="o", amount=1, currency="USD", tier="core")
    decision = decide(None, order_event, b2b_model)
    assert snapshot(decision.state, b2b_model).segment is None
    assert not [t for t in decision.transitions if t.kind == "segment"]


def test_states_encoded_before_segments_still_decode():
    old = ContactState(contact="c1", identified=True)
    fields = [f for f in encode_state(old)]
    assert fields
    legacy = decode_state(encode_state(old))
    assert legacy.segment == -1 and legacy.revenue == 0.0 and legacy.segment_due is None


# --------------------------------------------------------------------------------------------
# The model file


_BASE = builtin_model("default").source_path


def _model_with(segments_toml: str):
    from importlib import resources

    text = resources.files("pipeline.state_machine").joinpath("models", "default.toml").read_text()
    end = text.rindex("\n# -", 0, text.index("\n# Advances")) + 1  # the separator above "# Advances"
    text = text[: text.index("[segments]")] + segments_toml + "\n" + text[end:]
    return parse_model(text, "my-model.toml")


_HEAD = """[segments]
currency = "VND"
recent_days = 365
signal_days = 90
order = ["a", "b"]

[[segments.segment]]
name = "none"
fallback = true
"""


def _seg(name: str, enter: str, stay: str | None = None) -> str:
    """A [[segments.segment]] table with reasons enter_<name> / leave_<name>."""
    text = f'[[segments.segment]]\nname = "{name}"\nenter = {{ {enter} }}\n'
    if stay is not None:
        text += f"stay = {{ {stay} }}\n"
    return text + f'enter_reason = "enter_{name}"\nleave_reason = "leave_{name}"\n'


@pytest.mark.parametrize(
    ("body", "entry", "problem"),
    [
        (_seg("a", "lifetime_value = { ge = 1 }"), "segments.segment[1] ('a')", "unknown measure 'lifetime_value'"),
        (
            _seg("a", "orders = { ge = 1 }") + _seg("b", "orders = { ge = 3 }"),
            "segments.segment[2] ('b')",
            "unreachable: every contact meeting its enter conditions already meets those of 'a'",
        ),
        (
            _seg("a", "orders = { ge = 3, lt = 2 }") + _seg("b", "orders = { ge = 1 }"),
            "segments.segment[1] ('a')",
            "unreachable: its enter conditions can never all hold",
        ),
        (
            _seg("a", "orders = { ge = 3 }") + _seg("b", "revenue = { ge = 1 }")
            + _seg("c", "promo_share = { ge = 0.5 }"),
            "segments.segment[3] ('c')",
            "overlaps the other segments ambiguously: missing from [segments] order",
        ),
        (
            _seg("a", "orders = { ge = 3 }", stay="orders = { ge = 4 }") + _seg("b", "revenue = { ge = 1 }"),
            "segments.segment[1] ('a')",
            "stay is stricter than enter",
        ),
        (
            _seg("a", 'orders = { ge = "3" }') + _seg("b", "revenue = { ge = 1 }"),
            "segments.segment[1] ('a')",
            "enter.orders: compare with a number",
        ),
    ],
)
def test_bad_segment_rules_are_rejected_naming_file_and_entry(body, entry, problem):
    with pytest.raises(ModelError) as caught:
        _model_with(_HEAD + body)
    message = str(caught.value)
    assert "my-model.toml" in message and entry in message and problem in message, message


def test_bad_currency_is_rejected():
    with pytest.raises(ModelError, match="three upper-case letters"):
        _model_with(_HEAD.replace('"VND"', '"vnd"'))


def test_custom_segments_load():
    model = _model_with(_HEAD + _seg("a", "orders = { ge = 3 }") + _seg("b", "revenue = { ge = 1 }"))
    assert model.segments is not None and model.segments.names() == ("none", "a", "b")
    assert _BASE
