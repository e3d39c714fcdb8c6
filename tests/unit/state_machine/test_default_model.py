"""The default lifecycle model, rule by rule: advances, cooling, scoring, bands, alerts, bookkeeping.

Each test names the rule of the specification it checks. Journeys are small and hand-built; the
times are offsets from ``T0`` (see ``conftest.py``).
"""

from __future__ import annotations

import math
import uuid

import pytest

from pipeline.state_machine import FirstTouch, decide, expire, next_deadline, snapshot
from pipeline.state_machine import ids as lf_ids
from pipeline.state_machine.clock import to_rfc3339

DAY = 86_400_000_000
HOUR = 3_600_000_000


def stage_moves(transitions):
    return [(t.from_, t.to, t.reason, t.skipped) for t in transitions if t.kind == "stage"]


def band_moves(transitions):
    return [(t.from_, t.to, t.reason) for t in transitions if t.kind == "temperature"]


# --------------------------------------------------------------------------------------------
# Start


def test_new_contact_starts_at_niche_without_a_transition(run, event, at):
    decision = run.feed(event("page_view", at(0)))
    assert decision.transitions == []
    assert run.stage() == "niche"
    assert run.temperature() == "cold"
    assert next_deadline(run.state(), run.model) is None


# --------------------------------------------------------------------------------------------
# Advances


@pytest.mark.parametrize(
    ("event_type", "reason"),
    [
        ("form_submit", "submitted_form"),
        ("signup", "signed_up"),
        ("content_download", "downloaded_content"),
        ("email_replied", "replied_to_email"),
    ],
)
def test_lead_on_event(run, event, at, event_type, reason):
    trigger = event(event_type, at(0))
    decision = run.feed(trigger)
    assert stage_moves(decision.transitions) == [("niche", "lead", reason, ())]
    moved = next(t for t in decision.transitions if t.kind == "stage")
    assert moved.direction == "advance"
    assert moved.trigger_event_id == trigger.event_id
    assert moved.occurred_at == "2025-03-01T09:00:00Z"


def test_lead_when_identified_contact_warms_up(run, event, at):
    run.feed(event("add_to_cart", at(0)))
    decision = run.feed(event("add_to_cart", at(0)))  # 10 + 10 = 20: warm
    assert band_moves(decision.transitions) == [("cold", "warm", "score_reached_warm")]
    assert stage_moves(decision.transitions) == [("niche", "lead", "warmed_up_identified", ())]


def test_anonymous_contact_warming_up_stays_niche(run, event, at):
    anon = "anon:v1"
    run.feed(event("add_to_cart", at(0), anon), event("add_to_cart", at(0), anon))
    assert run.temperature(anon) == "warm"
    assert run.stage(anon) == "niche"


def test_temperature_advance_needs_warm(run, event, at):
    run.feed(event("add_to_cart", at(0)), event("page_view", at(0), page_category="pricing"))  # 15: cold
    assert run.stage() == "niche"


@pytest.mark.parametrize(
    ("event_type", "props", "reason"),
    [
        ("trial_start", {}, "started_trial"),
        ("offer_claimed", {}, "claimed_offer"),
        ("event_attended", {}, "attended_event"),
        ("order_completed", {"order_id": "o1", "tier": "entry"}, "bought_entry_offer"),
    ],
)
def test_buyer_on_event_from_niche_and_from_lead(run, event, at, event_type, props, reason):
    decision = run.feed(event(event_type, at(0), "c1", **props))
    assert stage_moves(decision.transitions) == [("niche", "buyer", reason, ("lead",))]
    run.feed(event("signup", at(0), "c2"))
    decision = run.feed(event(event_type, at(1), "c2", **props))
    assert stage_moves(decision.transitions) == [("lead", "buyer", reason, ())]


def test_customer_on_core_order_skips_lead_and_buyer(run, core_order, at):
    decision = run.feed(core_order(at(0), "o1"))
    assert stage_moves(decision.transitions) == [
        ("niche", "customer", "bought_core_product", ("lead", "buyer"))
    ]


def test_order_of_another_tier_does_not_advance(run, event, at):
    anon = "anon:v1"  # (an identified contact would become a lead: 20 points make it warm)
    decision = run.feed(event("order_completed", at(0), anon, order_id="o1", tier="addon"))
    assert stage_moves(decision.transitions) == []
    assert run.state(anon).core_orders == 0


def test_advance_never_moves_down(run, event, core_order, at):
    run.feed(core_order(at(0), "o1"))
    decision = run.feed(event("form_submit", at(1)), event("trial_start", at(2)))
    assert stage_moves(decision.transitions) == []
    assert run.stage() == "customer"


def test_member_on_second_core_order(run, core_order, at):
    run.feed(core_order(at(0), "o1"))
    decision = run.feed(core_order(at(10), "o2"))
    assert stage_moves(decision.transitions) == [("customer", "member", "bought_again", ())]


def test_member_on_membership_joined_when_customer(run, event, core_order, at):
    run.feed(core_order(at(0), "o1"))
    decision = run.feed(event("membership_joined", at(3)))
    assert stage_moves(decision.transitions) == [("customer", "member", "joined_membership", ())]


def test_membership_joined_below_customer_does_not_advance(run, event, at):
    run.feed(event("trial_start", at(0)))
    decision = run.feed(event("membership_joined", at(3)))
    assert stage_moves(decision.transitions) == []
    assert run.stage() == "buyer"


def test_fan_on_fourth_core_order_at_least_180_days_after_the_first(run, core_order, at):
    for day, order in [(0, "o1"), (60, "o2"), (120, "o3")]:
        run.feed(core_order(at(day), order))
    decision = run.feed(core_order(at(180), "o4"))  # span exactly 180 days
    assert stage_moves(decision.transitions) == [("member", "fan", "loyal_for_six_months", ())]


def test_no_fan_when_span_is_short_then_fan_on_a_later_order(run, core_order, at):
    for day, order in [(0, "o1"), (60, "o2"), (120, "o3")]:
        run.feed(core_order(at(day), order))
    decision = run.feed(core_order(at(180, micros=-1), "o4"))  # four orders, one microsecond short
    assert stage_moves(decision.transitions) == []
    decision = run.feed(core_order(at(181), "o5"))
    assert stage_moves(decision.transitions) == [("member", "fan", "loyal_for_six_months", ())]


def test_fan_from_customer_skips_member(run, core_order, at):
    run.feed(core_order(at(0), "o1"), core_order(at(10), "o2"), core_order(at(20), "o3"))
    run.expire(at(200))  # member -> customer 180 days after the last core order
    assert run.stage() == "customer"
    decision = run.feed(core_order(at(210), "o4"))
    assert stage_moves(decision.transitions) == [("customer", "fan", "loyal_for_six_months", ("member",))]


def test_referral_credit_when_referred_contact_buys_core(run, event, core_order, at):
    run.feed(core_order(at(0), "r1", "c-ref"))
    run.feed(event("page_view", at(10), "c-new", referred_by="c-ref"))
    trigger = core_order(at(12), "n1", "c-new")
    decision = run.feed(trigger)
    assert len(decision.referrals) == 1
    credit = decision.referrals[0]
    assert credit.event_type == "referral_converted"
    assert credit.contact == "c-ref"
    assert credit.occurred_at == at(12)
    assert credit.event_id == lf_ids.referral_event_id("c-new", trigger.event_id)
    assert credit.event_id == str(uuid.uuid5(lf_ids.NAMESPACE, f"referral\x1fc-new\x1f{trigger.event_id}"))
    assert credit.properties["referred_contact"] == "c-new"
    moves = [t for t in run.transitions if t.contact_id == "c-ref" and t.kind == "stage"]
    assert [(t.from_, t.to, t.reason, t.skipped) for t in moves] == [
        ("niche", "customer", "bought_core_product", ("lead", "buyer")),
        ("customer", "referral", "referred_a_customer", ("member", "fan")),
    ]
    assert moves[-1].trigger_event_id == credit.event_id
    assert run.state("c-ref").referrals_converted == 1


def test_referral_not_credited_when_referrer_below_customer(run, event, core_order, at):
    run.feed(event("signup", at(0), "c-ref"))
    run.feed(event("page_view", at(10), "c-new", referred_by="c-ref"), core_order(at(12), "n1", "c-new"))
    assert run.stage("c-ref") == "lead"
    assert [t for t in run.transitions if t.contact_id == "c-ref" and t.kind == "stage"] == [
        t for t in run.transitions if t.contact_id == "c-ref" and t.reason == "signed_up"
    ]


def test_referral_only_on_first_core_order(run, event, core_order, at):
    run.feed(core_order(at(0), "r1", "c-ref"))
    first = run.feed(
        event("page_view", at(10), "c-new", referred_by="c-ref"),
        event("order_completed", at(11), "c-new", order_id="n0", tier="entry"),
    )
    assert first.referrals == []
    assert len(run.feed(core_order(at(12), "n1", "c-new")).referrals) == 1
    assert run.feed(core_order(at(40), "n2", "c-new")).referrals == []
    assert run.state("c-ref").referrals_converted == 1


# --------------------------------------------------------------------------------------------
# Cooling: event-driven


def _to_fan(run, core_order, at, contact="c1"):
    for day, order in [(0, "o1"), (60, "o2"), (120, "o3"), (180, "o4")]:
        run.feed(core_order(at(day), order, contact))
    assert run.stage(contact) == "fan"


def _to_referral(run, event, core_order, at, contact="c1"):
    _to_fan(run, core_order, at, contact)
    run.feed(event("referral_converted", at(200), contact, referred_contact="friend"))
    assert run.stage(contact) == "referral"


def test_lead_complaint_cools_to_niche_at_once(run, event, at):
    run.feed(event("form_submit", at(0)))
    decision = run.feed(event("email_complained", at(1)))
    assert stage_moves(decision.transitions) == [("lead", "niche", "complained_about_email", ())]
    assert decision.transitions[-1].direction == "regress"


def test_customer_cools_to_buyer_when_every_core_order_is_refunded(run, event, core_order, at):
    run.feed(core_order(at(0), "o1"), event("order_completed", at(0, hours=1), order_id="e1", tier="entry"))
    decision = run.feed(event("order_refunded", at(1), order_id="e1"))  # entry order: no change
    assert stage_moves(decision.transitions) == []
    decision = run.feed(event("order_refunded", at(2), order_id="o1"))
    assert stage_moves(decision.transitions) == [("customer", "buyer", "all_core_orders_refunded", ())]


def test_customer_with_two_core_orders_cools_only_after_both_refunds(run, event, core_order, at):
    run.feed(core_order(at(0), "o1"), core_order(at(10), "o2"))
    run.expire(at(190))
    assert run.stage() == "customer"
    assert stage_moves(run.feed(event("order_refunded", at(191), order_id="o1")).transitions) == []
    decision = run.feed(event("order_refunded", at(192), order_id="o2"))
    assert stage_moves(decision.transitions) == [("customer", "buyer", "all_core_orders_refunded", ())]


@pytest.mark.parametrize("rating", [1, 2])
def test_fan_bad_review_cools_to_member(run, event, core_order, at, rating):
    _to_fan(run, core_order, at)
    decision = run.feed(event("review_submitted", at(190), rating=rating))
    assert stage_moves(decision.transitions) == [("fan", "member", "fan_left_bad_review", ())]


@pytest.mark.parametrize("rating", [3, 4, 5])
def test_fan_neutral_or_good_review_keeps_fan(run, event, core_order, at, rating):
    _to_fan(run, core_order, at)
    assert stage_moves(run.feed(event("review_submitted", at(190), rating=rating)).transitions) == []


def test_fan_refund_cools_to_member(run, event, core_order, at):
    _to_fan(run, core_order, at)
    decision = run.feed(event("order_refunded", at(190), order_id="o4"))
    assert stage_moves(decision.transitions) == [("fan", "member", "fan_asked_for_refund", ())]


def test_referral_bad_review_cools_to_fan(run, event, core_order, at):
    _to_referral(run, event, core_order, at)
    decision = run.feed(event("review_submitted", at(210), rating=1))
    assert stage_moves(decision.transitions) == [("referral", "fan", "referrer_left_bad_review", ())]


def test_complaint_does_not_cool_a_buyer(run, event, at):
    run.feed(event("trial_start", at(0)))
    assert stage_moves(run.feed(event("email_complained", at(1))).transitions) == []


# --------------------------------------------------------------------------------------------
# Cooling: time-driven, exactly at the deadline and not one microsecond before


def _setup_lead(run, event, core_order, at):
    run.feed(event("form_submit", at(0)))
    return at(90)


def _setup_buyer(run, event, core_order, at):
    run.feed(event("trial_start", at(0)))
    return at(30)


def _setup_member(run, event, core_order, at):
    run.feed(core_order(at(0), "o1"), core_order(at(10), "o2"))
    return at(10 + 180)


def _setup_fan(run, event, core_order, at):
    _to_fan(run, core_order, at)
    return at(180 + 365)


def _setup_referral(run, event, core_order, at):
    _to_referral(run, event, core_order, at)
    return at(200 + 365)


TIMED = [
    pytest.param(_setup_lead, "lead", "niche", "lead_went_quiet", id="lead-90d-quiet"),
    pytest.param(_setup_buyer, "buyer", "lead", "buyer_went_quiet", id="buyer-30d-quiet"),
    pytest.param(_setup_member, "member", "customer", "no_core_order_for_180_days", id="member-180d"),
    pytest.param(_setup_fan, "fan", "member", "no_core_order_for_a_year", id="fan-365d"),
    pytest.param(_setup_referral, "referral", "fan", "no_new_referral_for_a_year", id="referral-365d"),
]


@pytest.mark.parametrize(("setup", "from_", "to", "reason"), TIMED)
def test_timed_cooling_via_expire(run, event, core_order, at, setup, from_, to, reason):
    deadline = setup(run, event, core_order, at)
    assert next_deadline(run.state(), run.model) is not None
    assert stage_moves(run.expire(deadline - 1)) == []
    assert run.stage() == from_
    fired = [t for t in run.expire(deadline) if t.kind == "stage"]
    assert [(t.from_, t.to, t.reason, t.trigger_event_id) for t in fired] == [(from_, to, reason, None)]
    assert fired[0].occurred_at == to_rfc3339(deadline)
    assert fired[0].direction == "regress"


@pytest.mark.parametrize(("setup", "from_", "to", "reason"), TIMED)
def test_timed_cooling_via_a_later_event(run, event, core_order, at, setup, from_, to, reason):
    deadline = setup(run, event, core_order, at)
    # Our own emails are not engagement: they neither reset the clock nor are too late to count.
    assert stage_moves(run.feed(event("email_sent", deadline - 1)).transitions) == []
    assert run.stage() == from_
    decision = run.feed(event("email_delivered", deadline))
    fired = [t for t in decision.transitions if t.kind == "stage"]
    assert [(t.from_, t.to, t.reason, t.trigger_event_id) for t in fired] == [(from_, to, reason, None)]
    assert fired[0].occurred_at == to_rfc3339(deadline)


def test_engagement_resets_the_quiet_clock(run, event, at):
    run.feed(event("form_submit", at(0)))
    run.feed(event("email_opened", at(90, micros=-1)))
    assert stage_moves(run.expire(at(90))) == []
    fired = run.expire(at(180, micros=-1))
    assert stage_moves(fired) == [("lead", "niche", "lead_went_quiet", ())]
    assert [t.occurred_at for t in fired if t.kind == "stage"] == [to_rfc3339(at(180, micros=-1))]


def test_each_stage_gets_its_full_grace_period(run, event, at):
    run.feed(event("trial_start", at(0)))
    fired = run.expire(at(400))
    stage = [(t.from_, t.to, t.occurred_at) for t in fired if t.kind == "stage"]
    assert stage == [
        ("buyer", "lead", to_rfc3339(at(30))),
        ("lead", "niche", to_rfc3339(at(30 + 90))),  # not 90 days after the last engagement
    ]


def test_fan_then_member_grace_period_counts_from_stage_entry(run, core_order, at):
    _to_fan(run, core_order, at)
    fired = run.expire(at(1000))
    stage = [(t.from_, t.to, t.occurred_at) for t in fired if t.kind == "stage"]
    assert stage == [
        ("fan", "member", to_rfc3339(at(180 + 365))),
        ("member", "customer", to_rfc3339(at(180 + 365 + 180))),
    ]
    assert run.stage() == "customer"  # no time-driven cooling below customer


def test_expire_is_a_no_op_when_nothing_is_due(run, event, at):
    run.feed(event("form_submit", at(0)))
    before = run.state()
    decision = expire(before, at(89), run.model)
    assert decision.state == before
    assert decision.transitions == []


# --------------------------------------------------------------------------------------------
# Scoring


SCORING = [
    ("page_view", {}, 1),
    ("page_view", {"page_category": "pricing"}, 5),
    ("page_view", {"page_category": "blog"}, 1),
    ("content_download", {}, 5),
    ("form_submit", {}, 10),
    ("signup", {}, 10),
    ("email_opened", {}, 2),
    ("email_clicked", {}, 4),
    ("email_replied", {}, 10),
    ("offer_claimed", {}, 10),
    ("event_attended", {}, 10),
    ("add_to_cart", {}, 10),
    ("trial_start", {}, 15),
    ("checkout_start", {}, 25),
    ("demo_request", {}, 30),
    ("order_completed", {"order_id": "o1", "tier": "core"}, 20),
    ("order_completed", {"order_id": "o1", "tier": "entry"}, 20),
    ("review_submitted", {"rating": 5}, 5),
    ("review_submitted", {"rating": 4}, 5),
    ("review_submitted", {"rating": 3}, 0),
    ("review_submitted", {"rating": 2}, -20),
    ("review_submitted", {"rating": 1}, -20),
    ("email_unsubscribed", {}, -15),
    ("email_bounced", {"bounce_type": "hard"}, -10),
    ("email_bounced", {"bounce_type": "soft"}, 0),
    ("order_refunded", {"order_id": "o1"}, -20),
    ("email_complained", {}, -40),
    ("email_sent", {}, 0),
    ("email_delivered", {}, 0),
    ("lead_contacted", {"channel": "call"}, 0),  # the sales family never scores
    ("lead_qualified", {"budget": True}, 0),
    ("lead_disqualified", {"reason": "no_need"}, 0),
    ("deal_won", {"amount": 100, "currency": "USD"}, 0),
    ("deal_lost", {"reason": "price"}, 0),
    ("membership_joined", {}, 0),
]


@pytest.mark.parametrize(
    ("event_type", "props", "points"),
    SCORING,
    ids=[f"{t}-{'-'.join(map(str, p.values())) or 'plain'}" for t, p, _ in SCORING],
)
def test_points_per_event_type(run, event, at, event_type, props, points):
    anon = "anon:v1"  # scored like anyone; no stage noise from the temperature advance
    for _ in range(5):
        run.feed(event("add_to_cart", at(0), anon))
    assert run.state(anon).score == 50.0
    run.feed(event(event_type, at(0), anon, **props))  # same instant: no decay
    assert run.state(anon).score == 50.0 + points


def test_every_event_type_of_the_contract_has_a_scoring_case(model):
    from pipeline.state_machine import EVENT_TYPES

    covered = {t for t, _, _ in SCORING}
    assert covered == {t for types in EVENT_TYPES.values() for t in types}


def test_score_never_goes_below_zero(run, event, at):
    run.feed(event("email_complained", at(0)))
    assert run.state().score == 0.0
    run.feed(event("page_view", at(0)), event("email_unsubscribed", at(0)))
    assert run.state().score == 0.0
    run.feed(event("form_submit", at(0)))
    assert run.state().score == 10.0


def test_score_halves_every_fourteen_days(run, event, at, model):
    run.feed(event("add_to_cart", at(0)), event("add_to_cart", at(0)))  # 20
    state = run.state()
    assert snapshot(state, model, at(14)).score == pytest.approx(10.0)
    assert snapshot(state, model, at(28)).score == pytest.approx(5.0)
    run.feed(event("page_view", at(14)))
    assert run.state().score == pytest.approx(11.0)


def test_out_of_order_event_is_applied_and_decay_clamps_at_zero(run, event, at):
    run.feed(event("add_to_cart", at(10)), event("add_to_cart", at(10)))  # 20 at day 10
    decision = run.feed(event("trial_start", at(5)))  # five days earlier
    assert not decision.duplicate
    assert run.state().score == 35.0  # 20 + 15, no "negative decay"
    assert run.state().score_at == at(10)
    assert run.state().clock == at(10)
    assert run.state().events_applied == 3
    assert run.stage() == "buyer"


# --------------------------------------------------------------------------------------------
# Temperature bands


def test_hysteresis_around_hot(run, event, at):
    anon = "anon:v1"
    for _ in range(5):
        run.feed(event("add_to_cart", at(0), anon))  # 50: hot
    run.feed(event("email_bounced", at(0), anon, bounce_type="hard"))  # 40: still hot
    assert run.temperature(anon) == "hot"
    run.feed(event("page_view", at(0), anon))  # 41
    run.feed(event("email_bounced", at(0), anon, bounce_type="hard"))  # 31: warm
    assert run.temperature(anon) == "warm"
    run.feed(event("add_to_cart", at(0), anon))  # 41: still warm
    assert run.temperature(anon) == "warm"
    run.feed(event("add_to_cart", at(0), anon))  # 51: hot
    assert run.moves("temperature") == [
        ("cold", "warm", "score_reached_warm"),  # at 20, on the way up
        ("warm", "hot", "score_reached_hot"),
        ("hot", "warm", "score_fell_below_hot"),
        ("warm", "hot", "score_reached_hot"),
    ]


def test_hysteresis_around_warm(run, event, at):
    anon = "anon:v1"
    run.feed(event("add_to_cart", at(0), anon), event("add_to_cart", at(0), anon))  # 20: warm
    run.feed(event("page_view", at(0), anon, page_category="pricing"))  # 25
    run.feed(event("email_bounced", at(0), anon, bounce_type="hard"))  # 15: still warm
    assert run.temperature(anon) == "warm"
    run.feed(event("email_clicked", at(0), anon))  # 19
    run.feed(event("email_bounced", at(0), anon, bounce_type="hard"))  # 9: cold
    assert run.temperature(anon) == "cold"
    run.feed(event("add_to_cart", at(0), anon))  # 19: still cold
    assert run.temperature(anon) == "cold"
    run.feed(event("page_view", at(0), anon))  # 20: warm
    assert run.moves("temperature") == [
        ("cold", "warm", "score_reached_warm"),
        ("warm", "cold", "score_fell_below_warm"),
        ("cold", "warm", "score_reached_warm"),
    ]


def test_decay_inside_hysteresis_band_keeps_hot(run, event, at):
    for _ in range(5):
        run.feed(event("add_to_cart", at(0)))  # 50
    run.feed(event("page_view", at(3)))  # 50 * 2^(-3/14) + 1 = 44.1: hot
    assert run.temperature() == "hot"
    assert run.moves("temperature") == [
        ("cold", "warm", "score_reached_warm"),
        ("warm", "hot", "score_reached_hot"),
    ]


def test_decay_drop_fires_when_the_score_crosses_the_line(run, event, at):
    for _ in range(5):
        run.feed(event("add_to_cart", at(0)))  # 50 at T0
    run.expire(at(0, hours=1))  # the unanswered became_hot escalates first (speed to lead)
    crossing = at(0) + 14 * DAY * math.log2(50 / 40)  # 50 * 2^(-x/14d) == 40
    deadline = next_deadline(run.state(), run.model)
    assert deadline is not None and deadline.rule is None
    assert crossing < deadline.at <= crossing + 1
    before = run.state()
    assert run.expire(deadline.at - 1) == []
    fired = run.expire(deadline.at)
    assert [(t.from_, t.to, t.reason, t.trigger_event_id) for t in fired] == [
        ("hot", "warm", "score_fell_below_hot", None)
    ]
    assert fired[0].occurred_at == to_rfc3339(deadline.at)
    assert run.state().score < 40 <= snapshot(before, run.model, deadline.at - 1).score


def test_decay_drop_fires_before_a_later_event(run, event, at):
    for _ in range(5):
        run.feed(event("add_to_cart", at(0)))
    run.expire(at(0, hours=1))  # the unanswered became_hot escalates first (speed to lead)
    deadline = next_deadline(run.state(), run.model)
    assert deadline is not None
    assert band_moves(run.feed(event("email_sent", deadline.at - 1)).transitions) == []
    decision = run.feed(event("page_view", deadline.at + HOUR))
    assert [(t.from_, t.to, t.trigger_event_id, t.occurred_at) for t in decision.transitions] == [
        ("hot", "warm", None, to_rfc3339(deadline.at))
    ]


def test_decay_walks_down_one_band_at_a_time(run, event, at):
    for _ in range(5):
        run.feed(event("add_to_cart", at(0)))
    fired = run.expire(at(60))
    hot_to_warm = at(0) + 14 * DAY * math.log2(50 / 40)
    warm_to_cold = at(0) + 14 * DAY * math.log2(50 / 15)
    assert [(t.from_, t.to) for t in fired] == [("hot", "warm"), ("warm", "cold")]
    times = [t.occurred_at for t in fired]
    assert times == [to_rfc3339(math.floor(hot_to_warm) + 1), to_rfc3339(math.floor(warm_to_cold) + 1)]


@pytest.mark.parametrize(
    ("event_type", "reason"), [("demo_request", "requested_demo"), ("checkout_start", "started_checkout")]
)
def test_instant_hot_from_cold(run, event, at, event_type, reason):
    decision = run.feed(event(event_type, at(0)))
    assert band_moves(decision.transitions) == [("cold", "hot", reason)]
    assert decision.transitions[0].skipped == ("warm",)
    assert run.state().score == 50.0
    assert len(decision.alerts) == 1


def test_instant_hot_from_warm_and_when_already_hot(run, event, at):
    run.feed(event("add_to_cart", at(0)), event("add_to_cart", at(0)))  # 20: warm
    decision = run.feed(event("checkout_start", at(0)))  # 45, raised to 50
    assert band_moves(decision.transitions) == [("warm", "hot", "started_checkout")]
    assert run.state().score == 50.0
    decision = run.feed(event("demo_request", at(0)))  # already hot: just the points
    assert decision.transitions == []
    assert run.state().score == 80.0


# --------------------------------------------------------------------------------------------
# Alerts


def test_became_hot_alert_once_per_episode_and_rearmed_after_leaving_hot(run, event, at):
    first = run.feed(event("demo_request", at(0)))
    assert [a.type for a in first.alerts] == ["became_hot"]
    # No second became_hot while hot (the escalation of the first fires at its respond_by, T0 + 1h).
    assert [a.type for a in run.feed(event("checkout_start", at(0, hours=1))).alerts] == ["response_overdue"]
    assert run.feed(event("add_to_cart", at(0, hours=2))).alerts == []
    deadline = next_deadline(run.state(), run.model)
    assert deadline is not None
    run.expire(deadline.at)
    assert run.temperature() == "warm"
    again = run.feed(event("demo_request", deadline.at + HOUR))
    assert len(again.alerts) == 1
    assert again.alerts[0].alert_id != first.alerts[0].alert_id
    assert [a.type for a in run.alerts] == ["became_hot", "response_overdue", "became_hot"]


def test_anonymous_contact_is_scored_and_staged_but_never_alerted(run, event, at):
    anon = "anon:v9"
    run.feed(event("content_download", at(0), anon))
    decision = run.feed(event("demo_request", at(0, minutes=5), anon))
    assert run.temperature(anon) == "hot"
    assert run.stage(anon) == "lead"
    assert decision.alerts == []
    run.expire(at(30))
    run.feed(event("checkout_start", at(31), anon))
    assert run.temperature(anon) == "hot"
    assert run.alerts == []


def test_alert_respond_by_is_one_hour_after_the_event(run, event, at):
    when = at(2, hours=3, minutes=17, seconds=42)
    alert = run.feed(event("demo_request", when)).alerts[0]
    assert alert.occurred_at == to_rfc3339(when) == "2025-03-03T12:17:42Z"
    assert alert.respond_by == to_rfc3339(when + HOUR) == "2025-03-03T13:17:42Z"
    assert alert.contact_id == "c1"
    assert alert.stage == "lead"  # an identified contact that is warm or hotter is a lead
    assert uuid.UUID(alert.alert_id).version == 5


def test_alert_reasons_are_the_last_five_scoring_events(run, event, at):
    feed = [
        event("page_view", at(0)),
        event("email_opened", at(0)),
        event("email_sent", at(0)),  # not a scoring event
        event("email_clicked", at(0)),
        event("content_download", at(0)),
        event("form_submit", at(0)),
        event("add_to_cart", at(0)),
        event("page_view", at(0), page_category="pricing"),
        event("demo_request", at(0)),
    ]
    decision = run.feed(*feed)
    assert len(decision.alerts) == 1
    reasons = [(r.event_id, r.event_type, r.points) for r in decision.alerts[0].reasons]
    assert reasons == [
        (feed[4].event_id, "content_download", 5.0),
        (feed[5].event_id, "form_submit", 10.0),
        (feed[6].event_id, "add_to_cart", 10.0),
        (feed[7].event_id, "page_view", 5.0),
        (feed[8].event_id, "demo_request", 30.0),
    ]


def test_alert_first_touch_is_the_first_applied_event(run, event, at):
    run.feed(
        event("page_view", at(0), utm_source="facebook", utm_medium="cpc", utm_campaign="tet-sale"),
        event("email_clicked", at(1), utm_source="newsletter", utm_medium="email", utm_campaign="weekly"),
    )
    alert = run.feed(event("demo_request", at(2))).alerts[0]
    assert alert.first_touch == FirstTouch("website", "facebook", "cpc", "tet-sale")
    assert snapshot(run.state(), run.model).first_touch == alert.first_touch


def test_first_touch_without_utm(run, event, at):
    alert = run.feed(event("email_opened", at(0)), event("demo_request", at(1))).alerts[0]
    assert alert.first_touch == FirstTouch("email", None, None, None)


# --------------------------------------------------------------------------------------------
# Bookkeeping: duplicates, orders


def test_duplicate_event_is_a_no_op(run, event, core_order, at):
    run.feed(core_order(at(0), "r1", "c-ref"))
    run.feed(event("page_view", at(0), "c-new", referred_by="c-ref"))
    original = core_order(at(1), "n1", "c-new")
    first = run.feed(original)
    assert first.transitions and first.referrals
    before = run.state("c-new")
    again = decide(before, original, run.model)
    assert again.duplicate is True
    assert (again.transitions, again.alerts, again.referrals) == ([], [], [])
    assert again.state == before


def test_duplicate_window_is_the_last_hundred_events(run, event, at):
    original = event("page_view", at(0), event_id="first")
    run.feed(original)
    for i in range(99):
        run.feed(event("email_sent", at(0, minutes=i + 1)))
    assert decide(run.state(), original, run.model).duplicate is True
    run.feed(event("email_sent", at(0, minutes=100)))  # the 101st event: "first" is forgotten
    assert decide(run.state(), original, run.model).duplicate is False


def test_same_order_reported_twice_is_counted_once(run, event, at):
    run.feed(event("order_completed", at(0), order_id="o1", tier="core"))
    decision = run.feed(event("order_completed", at(0, minutes=3), order_id="o1", tier="core"))
    assert not decision.duplicate  # a different event id: applied, but the order counts once
    assert stage_moves(decision.transitions) == []
    assert run.state().core_orders == 1
    assert run.stage() == "customer"


def test_refund_of_unknown_order_changes_no_order_count(run, event, core_order, at):
    run.feed(core_order(at(0), "o1"))
    decision = run.feed(event("order_refunded", at(1), order_id="never-seen"))
    assert stage_moves(decision.transitions) == []
    assert run.state().core_orders == 1
    assert run.stage() == "customer"


def test_refund_twice_counts_once(run, event, core_order, at):
    run.feed(core_order(at(0), "o1"), core_order(at(10), "o2"))
    run.feed(event("order_refunded", at(11), order_id="o1"), event("order_refunded", at(12), order_id="o1"))
    assert run.state().core_orders == 1


def test_ids_are_deterministic_uuid5(model, event, at):
    feed = [event("form_submit", at(0), event_id="a"), event("demo_request", at(1), event_id="b")]

    def outputs():
        state = None
        out = []
        for e in feed:
            d = decide(state, e, model)
            state = d.state
            out += [t.transition_id for t in d.transitions] + [a.alert_id for a in d.alerts]
        return out + [t.transition_id for t in expire(state, at(400), model).transitions]

    first = outputs()
    assert first == outputs()
    assert all(uuid.UUID(i).version == 5 for i in first)
    assert len(set(first)) == len(first)


# --------------------------------------------------------------------------------------------
# Late (out-of-order) events never schedule a deadline behind the contact's clock


def test_late_advance_gets_its_full_grace_period(run, event, at):
    """A buyer cools at day 30; a late offer_claimed (dated day -5, applied at day 40) makes it a
    buyer again. That stage must get its own 30 days from when it was taken, not cool at once
    "at day 30" again (which also gave two different moves the same transition id)."""
    run.feed(event("trial_start", at(0)), event("email_sent", at(40)))
    assert run.moves("stage") == [("niche", "buyer", "started_trial"), ("buyer", "lead", "buyer_went_quiet")]
    run.feed(event("offer_claimed", at(-5)))
    assert run.stage() == "buyer"
    deadline = next_deadline(run.state(), run.model)
    assert deadline is not None and deadline.at > run.state().clock
    run.feed(event("email_sent", at(41)))
    assert run.stage() == "buyer"
    run.expire(at(400))
    ids = [t.transition_id for t in run.transitions]
    assert len(ids) == len(set(ids))
    times = [t.occurred_at for t in run.transitions if t.reason == "buyer_went_quiet"]
    assert times == [to_rfc3339(at(30)), to_rfc3339(at(40 + 30))]


def test_late_event_does_not_depend_on_sweep_timing(model, event, at):
    """A late event at day 35 (contact clock: day 40) after a late advance: sweeping at day 35 first
    must not change the outcome."""
    feed = [
        event("trial_start", at(0), event_id="a"),
        event("email_sent", at(40), event_id="b"),
        event("offer_claimed", at(-5), event_id="c"),
        event("email_opened", at(35), event_id="d"),
    ]

    def play(sweep_before_last: bool):
        state, out = None, []
        for e in feed:
            if sweep_before_last and e.event_id == "d":
                swept = expire(state, e.occurred_at, model)
                state, out = swept.state, out + swept.transitions
            d = decide(state, e, model)
            state, out = d.state, out + d.transitions
        final = expire(state, at(500), model)
        return final.state, out + final.transitions

    assert play(True) == play(False)


def test_late_instant_hot_does_not_schedule_a_band_drop_in_the_past(run, event, at):
    """Warm at T0, cold by day 14, a lead cooled by a sweep at day 95; then a late demo request
    dated day 50. The hot episode cannot end before the contact's clock (day 90)."""
    run.feed(*(event("add_to_cart", at(0)) for _ in range(3)))
    run.expire(at(95))
    assert run.stage() == "niche"
    run.feed(event("demo_request", at(50)))
    assert run.temperature() == "hot"
    # The late alert's escalation is due at the clock (its respond_by is behind it), never before.
    escalation = next_deadline(run.state(), run.model)
    assert escalation is not None and escalation.overdue and escalation.at == run.state().clock
    run.expire(run.state().clock)
    deadline = next_deadline(run.state(), run.model)
    assert deadline is not None and deadline.at > run.state().clock
    before = run.state()
    late = decide(before, event("page_view", at(60), event_id="late-pv"), run.model)
    swept = expire(before, at(60), run.model)
    after_sweep = decide(swept.state, event("page_view", at(60), event_id="late-pv"), run.model)
    assert (late.state, late.transitions) == (after_sweep.state, swept.transitions + after_sweep.transitions)


def test_order_reported_again_after_its_refund_does_not_make_a_customer(run, event, core_order, at):
    run.feed(core_order(at(0), "o1"), event("order_refunded", at(1), order_id="o1"))
    assert run.stage() == "buyer"
    decision = run.feed(event("order_completed", at(2), order_id="o1", tier="core"))  # the shop resends o1
    assert run.state().core_orders == 0
    assert stage_moves(decision.transitions) == []
    assert run.stage() == "buyer"
