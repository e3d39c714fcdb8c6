"""The sales loop in the engine (issue 13): speed to lead, BANT qualification, disqualification, deals.

Times by hand: T0 = 2025-03-01T09:00:00Z; the default model gives sales 60 minutes
(respond_by = alert + 1 h), the b2b model 30 minutes. A ``demo_request`` makes a contact hot at
once, so the alert time is the demo request's time.
"""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.state_machine import ModelError, builtin_model, next_deadline, parse_model
from pipeline.state_machine.clock import to_rfc3339
from pipeline.state_machine.engine import (
    ALREADY_ANSWERED,
    ANSWERED_IN_TIME,
    ANSWERED_LATE,
    BEFORE_ALERT,
    NO_ALERT,
)


def types(alerts):
    return [a.type for a in alerts]


# --------------------------------------------------------------------------------------------
# Speed to lead


def test_answered_in_time_records_the_response_and_never_escalates(run, event, at):
    hot = run.feed(event("demo_request", at(0)))
    [alert] = hot.alerts
    assert alert.respond_by == "2025-03-01T10:00:00Z"
    assert next_deadline(run.state(), run.model).at == at(0, hours=1)  # the escalation is scheduled
    answer = run.feed(event("lead_contacted", at(0, minutes=12), channel="call", rep_id="rep-7"))
    assert answer.contact_outcome == ANSWERED_IN_TIME
    [answered] = answer.alerts
    assert (answered.type, answered.original_alert_id, answered.response_seconds, answered.late_seconds) == (
        "alert_answered", alert.alert_id, 720.0, 0.0
    )
    assert (answered.channel, answered.rep_id, answered.occurred_at) == ("call", "rep-7", "2025-03-01T09:12:00Z")
    assert run.state().answered_at == at(0, minutes=12)
    run.expire(at(0, hours=5))
    assert types(run.alerts) == ["became_hot", "alert_answered"]  # no response_overdue, ever
    assert run.feed(event("page_view", at(1), url="u")).alerts == []


def test_answered_late_escalates_exactly_at_respond_by_then_records_the_response(run, event, at):
    [alert] = run.feed(event("demo_request", at(0))).alerts
    assert run.expire(at(0, hours=1) - 1) == [] and types(run.alerts) == ["became_hot"]
    run.expire(at(0, hours=1))
    overdue = run.alerts[-1]
    assert overdue.type == "response_overdue"
    assert overdue.occurred_at == "2025-03-01T10:00:00Z" == overdue.respond_by
    assert (overdue.original_alert_id, overdue.waited_seconds) == (alert.alert_id, 3600.0)
    assert overdue.alert_occurred_at == alert.occurred_at
    late = run.feed(event("lead_contacted", at(0, hours=2, minutes=30), channel="email"))
    assert late.contact_outcome == ANSWERED_LATE
    [answered] = late.alerts
    assert (answered.response_seconds, answered.late_seconds) == (9000.0, 5400.0)
    assert types(run.alerts) == ["became_hot", "response_overdue", "alert_answered"]


def test_an_answer_exactly_at_respond_by_is_late(run, event, at):
    """respond_by means "before this time": the escalation fires at it, before the answer."""
    run.feed(event("demo_request", at(0)))
    decision = run.feed(event("lead_contacted", at(0, hours=1), channel="call"))
    assert types(decision.alerts) == ["response_overdue", "alert_answered"]
    assert decision.contact_outcome == ANSWERED_LATE and decision.alerts[1].late_seconds == 0.0


def test_never_answered_escalates_once(run, event, at):
    run.feed(event("demo_request", at(0)))
    run.expire(at(0, hours=1))
    run.expire(at(3))
    run.feed(event("page_view", at(4), url="u"))
    assert types(run.alerts) == ["became_hot", "response_overdue"]
    assert run.state().overdue_fired


def test_escalation_fires_before_a_later_event_without_a_sweep(run, event, at):
    run.feed(event("demo_request", at(0)))
    decision = run.feed(event("page_view", at(0, hours=3), url="u"))
    assert [(a.type, a.occurred_at) for a in decision.alerts] == [("response_overdue", "2025-03-01T10:00:00Z")]


def test_two_hot_episodes_each_have_their_own_clock(run, event, at):
    first = run.feed(event("demo_request", at(0))).alerts[0]
    run.feed(event("lead_contacted", at(0, minutes=5), channel="call"))  # episode 1: in time
    run.expire(at(30))  # cools down: hot -> warm -> cold
    assert run.temperature() == "cold"
    second = run.feed(event("demo_request", at(30))).alerts[0]
    assert second.alert_id != first.alert_id and second.respond_by == to_rfc3339(at(30, hours=1))
    assert run.state().answered_at is None  # the new episode is unanswered
    run.expire(at(30, hours=1))  # episode 2 escalates at its own respond_by
    answer = run.feed(event("lead_contacted", at(30, hours=4), channel="meeting"))
    assert [(a.type, a.original_alert_id) for a in run.alerts] == [
        ("became_hot", None),
        ("alert_answered", first.alert_id),
        ("became_hot", None),
        ("response_overdue", second.alert_id),
        ("alert_answered", second.alert_id),
    ]
    assert answer.alerts[0].response_seconds == 4 * 3600.0


def test_duplicate_and_second_contacts_answer_nothing(run, event, at):
    run.feed(event("demo_request", at(0)))
    call = event("lead_contacted", at(0, minutes=10), event_id="call-1", channel="call")
    assert run.feed(call).contact_outcome == ANSWERED_IN_TIME
    again = run.feed(call)
    assert again.duplicate and again.alerts == []
    other = run.feed(event("lead_contacted", at(0, minutes=40), channel="email"))
    assert other.contact_outcome == ALREADY_ANSWERED and other.alerts == []
    assert types(run.alerts) == ["became_hot", "alert_answered"]
    assert run.state().answered_at == at(0, minutes=10)


def test_a_contact_dated_before_its_alert_answers_nothing(run, event, at):
    run.feed(event("page_view", at(0), url="u"))
    run.feed(event("demo_request", at(0, hours=2)))
    early = run.feed(event("lead_contacted", at(0, hours=1), channel="call"))  # late delivery, dated before
    assert early.contact_outcome == BEFORE_ALERT and early.alerts == []
    assert run.state().answered_at is None
    run.expire(at(0, hours=3))
    assert types(run.alerts) == ["became_hot", "response_overdue"]


def test_sales_events_for_an_unknown_contact_create_it_and_do_not_score(run, event, at):
    decision = run.feed(event("lead_contacted", at(0), "c-new", channel="call"))
    assert decision.contact_outcome == NO_ALERT
    state = run.state("c-new")
    assert (state.events_applied, state.score, state.last_engagement_at) == (1, 0.0, None)
    run.feed(event("deal_lost", at(1), "c-new", reason="price"))
    assert run.state("c-new").score == 0.0


def test_escalation_can_be_turned_off(run_with, event, at):
    quiet = dataclasses.replace(builtin_model(), escalate_overdue=False)
    run = run_with(quiet)
    run.feed(event("demo_request", at(0)))
    run.expire(at(5))
    assert types(run.alerts) == ["became_hot"]
    late = run.feed(event("lead_contacted", at(5), channel="call"))
    assert late.contact_outcome == ANSWERED_LATE  # the response time is still recorded


# --------------------------------------------------------------------------------------------
# BANT qualification (b2b) and sales' other moves


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({"budget": True, "need": True}, None),  # 2 criteria: stays MQL
        ({"budget": True, "need": True, "timeline": True}, "sales_confirmed_budget_need_timeline"),
        ({"authority": True, "need": True, "timeline": True}, "sales_confirmed_authority_need_timeline"),
        ({"budget": True, "authority": True, "need": True, "timeline": True}, "sales_confirmed_full_bant"),
        ({"budget": True, "authority": True, "need": True, "timeline": False}, "sales_confirmed_budget_authority_need"),
    ],
)
def test_b2b_sql_needs_three_bant_criteria(run_with, b2b_model, event, at, answers, expected):
    run = run_with(b2b_model)
    run.feed(event("signup", at(0)), event("trial_start", at(1)))
    assert run.stage() == "mql"
    decision = run.feed(event("lead_qualified", at(2), **answers))
    moves = [(t.from_, t.to, t.reason) for t in decision.transitions]
    assert moves == ([] if expected is None else [("mql", "sql", expected)])
    assert run.state().bant.bit_count() == sum(answers.values())


def test_bant_answers_add_up_across_calls_and_false_clears(run_with, b2b_model, event, at):
    run = run_with(b2b_model)
    run.feed(event("signup", at(0)))
    run.feed(event("lead_qualified", at(1), budget=True, need=True))
    assert run.stage() == "lead"
    run.feed(event("lead_qualified", at(2), budget=False, timeline=True))  # budget ruled out: 2 of 4
    assert run.stage() == "lead"
    run.feed(event("lead_qualified", at(3), authority=True))  # authority, need, timeline
    assert run.moves("stage")[-1] == ("lead", "sql", "sales_confirmed_authority_need_timeline")


def test_b2b_pricing_page_is_no_longer_sql(run_with, b2b_model, event, at):
    run = run_with(b2b_model)
    run.feed(event("signup", at(0)), event("trial_start", at(1)))
    run.feed(event("page_view", at(2), page_category="pricing", url="u"))
    assert run.stage() == "mql"


@pytest.mark.parametrize(
    ("stage_events", "reason", "expected"),
    [
        (["signup", "trial_start"], "no_budget", ("mql", "lead", "disqualified_by_sales")),
        (["signup", "trial_start", "sql"], "bad_timing", ("sql", "lead", "disqualified_by_sales")),
        (["signup", "trial_start", "sql"], "spam", ("sql", "visitor", "disqualified_as_spam")),
        (["signup"], "spam", ("lead", "visitor", "disqualified_as_spam")),
        (["signup"], "no_need", None),  # a lead stays a lead
    ],
)
def test_b2b_disqualification_paths(run_with, b2b_model, event, at, stage_events, reason, expected):
    run = run_with(b2b_model)
    for i, name in enumerate(stage_events):
        if name == "sql":
            run.feed(event("lead_qualified", at(i), budget=True, authority=True, need=True, timeline=True))
        else:
            run.feed(event(name, at(i)))
    decision = run.feed(event("lead_disqualified", at(5), reason=reason))
    moves = [(t.from_, t.to, t.reason) for t in decision.transitions if t.kind == "stage"]
    assert moves == ([] if expected is None else [expected])


def test_b2b_deals(run_with, b2b_model, event, at):
    run = run_with(b2b_model)
    run.feed(event("signup", at(0)))
    run.feed(event("lead_qualified", at(1), budget=True, authority=True, need=True, timeline=True))
    run.feed(event("deal_lost", at(2), reason="price"))
    run.feed(event("deal_won", at(3), amount=5000, currency="USD"))
    assert run.moves("stage")[1:] == [
        ("lead", "sql", "sales_confirmed_full_bant"),
        ("sql", "mql", "deal_lost_back_to_nurture"),
        ("mql", "customer", "won_deal"),
    ]


def test_default_model_sales_paths(run, event, at):
    run.feed(event("lead_qualified", at(0), budget=True, authority=True, need=True))
    run.feed(event("trial_start", at(1)))
    run.feed(event("deal_lost", at(2), reason="competitor"))
    run.feed(event("lead_disqualified", at(3), reason="no_need"))
    run.feed(event("deal_won", at(4), amount=1, currency="USD"))
    assert run.moves("stage") == [
        ("niche", "lead", "qualified_by_sales"),
        ("lead", "buyer", "started_trial"),
        ("buyer", "lead", "lost_deal"),
        ("lead", "niche", "disqualified_by_sales"),
        ("niche", "customer", "won_deal"),
    ]


# --------------------------------------------------------------------------------------------
# The model file: BANT guards and the sales family


def _b2b_text() -> str:
    from importlib import resources

    return resources.files("pipeline.state_machine").joinpath("models", "b2b.toml").read_text("utf-8")


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("require = { bant = 4 }", "require = { bant = 5 }", "bant: compare with a whole number of BANT criteria"),
        ("require = { bant = 4 }", 'require = { bant = "all" }', "bant: compare with a whole number"),
        ("require = { bant = 3, budget = false }", "require = { bant = 3, budget = 0 }", "is true or false"),
        ("require = { bant = 4 }", "require = { bants = 4 }", "unknown measure 'bants'"),
        (
            '"lead_contacted", "lead_qualified", "lead_disqualified", "deal_won", "deal_lost",',
            '"lead_qualified", "lead_disqualified", "deal_won", "deal_lost",',
            "not_engagement must list the sales events",
        ),
        ("respond_within_minutes = 30", "respond_within_minutes = 0", "respond_within_minutes must be positive"),
        ("escalate_overdue = true", 'escalate_overdue = "yes"', "'escalate_overdue' must be a bool"),
        ('from = ["mql", "sql"]', 'from = ["mql", "deal"]', "from: unknown stage 'deal'"),
    ],
)
def test_model_file_checks_the_sales_settings(old, new, problem):
    text = _b2b_text()
    assert text.count(old) == 1, old
    with pytest.raises(ModelError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_model(text.replace(old, new), "b2b-copy.toml")


def test_a_regression_from_several_stages_is_one_rule_per_stage():
    model = parse_model(_b2b_text())
    spam = [r for r in model.regressions if r.reason == "disqualified_as_spam"]
    assert sorted(model.stages[r.from_stage] for r in spam) == ["lead", "mql", "sql"]
    assert model.escalate_overdue is True and model.respond_within == 30 * 60_000_000
