"""Model files: the built-in models load, broken variants fail precisely, and the engine is
model-agnostic (the B2B funnel runs on the same ``decide`` / ``expire``).
"""

from __future__ import annotations

import dataclasses
import re
from importlib import resources

import pytest

from pipeline.state_machine import (
    BUILTIN_MODELS,
    ModelError,
    builtin_model,
    load_model,
    parse_model,
    resolve_model,
)
from pipeline.state_machine.clock import to_rfc3339


@pytest.fixture(scope="module")
def default_text() -> str:
    return resources.files("pipeline.state_machine").joinpath("models", "default.toml").read_text("utf-8")


def _replace(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the default model text changed: {old!r} is not unique"
    return text.replace(old, new)


def _remove_block(text: str, reason: str) -> str:
    """Drop the ``[[advances]]`` / ``[[regressions]]`` table whose reason is ``reason``."""
    blocks = re.split(r"(?m)^(?=\[\[)", text)
    kept = [b for b in blocks if f'reason = "{reason}"\n' not in b]
    assert len(kept) == len(blocks) - 1, reason
    return "".join(kept)


# --------------------------------------------------------------------------------------------
# The built-in models


@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_builtin_models_load(name):
    model = builtin_model(name)
    assert model.name == name
    assert model.label == f"{name}@1"
    assert model.source_path == f"models/{name}.toml"
    path = resources.files("pipeline.state_machine").joinpath("models", f"{name}.toml")
    assert load_model(str(path)) == dataclasses.replace(model, source_path=str(path))
    assert resolve_model(name) is model


def test_default_model_shape():
    model = builtin_model("default")
    assert model.stages == ("niche", "lead", "buyer", "customer", "member", "fan", "referral")
    assert [b.name for b in model.bands] == ["cold", "warm", "hot"]
    assert [(b.enter, b.leave_below) for b in model.bands[1:]] == [(20, 15), (50, 40)]
    assert model.half_life == 14 * 86_400_000_000
    assert model.respond_within == 3_600_000_000
    assert (model.alert_max_reasons, model.dedup_window) == (5, 100)


def test_b2b_model_shape():
    model = builtin_model("b2b")
    assert model.stages == ("visitor", "lead", "mql", "sql", "customer")


def test_resolve_model_by_path_and_default(tmp_path, default_text):
    path = tmp_path / "mine.toml"
    path.write_text(default_text.replace('name = "default"', 'name = "mine"'), encoding="utf-8")
    assert resolve_model(str(path)).name == "mine"
    assert resolve_model(None) == builtin_model("default")


# --------------------------------------------------------------------------------------------
# Validation errors name the file and the entry


AMBASSADOR_COOLING = """
[[regressions]]
from = "ambassador"
to = "referral"
reason = "ambassador_went_quiet"
after_days = 30
since = "stage_entered"
"""

BROKEN = [
    pytest.param(
        lambda t: _replace(
            t,
            'to = "customer"\nreason = "bought_core_product"',
            'to = "client"\nreason = "bought_core_product"',
        ),
        "advances[9] (reason 'bought_core_product')",
        "unknown stage 'client'",
        id="unknown-stage-in-advance",
    ),
    pytest.param(
        lambda t: _replace(
            t,
            'from = "buyer"\nto = "lead"\nreason = "buyer_went_quiet"',
            'from = "shopper"\nto = "lead"\nreason = "buyer_went_quiet"',
        ),
        "regressions[2] (reason 'buyer_went_quiet')",
        "unknown stage 'shopper'",
        id="unknown-stage-in-regression",
    ),
    pytest.param(
        lambda t: _replace(t, 'on = ["form_submit"]', 'on = ["form_sumbit"]'),
        "advances[0] (reason 'submitted_form')",
        "unknown event type 'form_sumbit'",
        id="unknown-event-type-in-advance",
    ),
    pytest.param(
        lambda t: _replace(t, "page_view = 1\n", "page_view = 1\npage_veiw = 1\n"),
        "[scoring.points]",
        "unknown event type 'page_veiw'",
        id="unknown-event-type-in-points",
    ),
    pytest.param(
        lambda t: _replace(t, 'event_types = ["checkout_start"]', 'event_types = ["checkout_started"]'),
        "temperature.instant[1]",
        "unknown event type 'checkout_started'",
        id="unknown-event-type-in-instant",
    ),
    pytest.param(
        lambda t: _remove_block(t, "referred_a_customer"),
        "stage 'referral'",
        "unreachable",
        id="unreachable-referral",
    ),
    pytest.param(
        lambda t: _replace(t, '"fan", "referral"]', '"fan", "referral", "ambassador"]') + AMBASSADOR_COOLING,
        "stage 'ambassador'",
        "unreachable",
        id="unreachable-new-stage",
    ),
    pytest.param(
        lambda t: _remove_block(
            _remove_block(_remove_block(t, "buyer_went_quiet"), "buyer_disqualified_by_sales"), "lost_deal"
        ),
        "stage 'buyer'",
        "no way back down",
        id="no-way-down-buyer",
    ),
    pytest.param(
        lambda t: _remove_block(_remove_block(t, "no_new_referral_for_a_year"), "referrer_left_bad_review"),
        "stage 'referral'",
        "no way back down",
        id="no-way-down-referral",
    ),
    pytest.param(
        lambda t: _replace(t, 'reason = "signed_up"', 'reason = "submitted_form"'),
        "advances[1] (reason 'submitted_form')",
        "duplicate reason code 'submitted_form' (already used by advances[0]",
        id="duplicate-reason-between-advances",
    ),
    pytest.param(
        lambda t: _replace(t, 'reason = "lead_went_quiet"', 'reason = "score_reached_hot"'),
        "regressions[0] (reason 'score_reached_hot')",
        "duplicate reason code 'score_reached_hot' (already used by temperature.bands[2])",
        id="duplicate-reason-band-and-regression",
    ),
    pytest.param(
        lambda t: _replace(t, 'on = ["signup"]\n', 'on = ["signup"]\ncolour = "red"\n'),
        "advances[1] (reason 'signed_up')",
        "unknown key(s) 'colour'",
        id="unknown-key-in-advance",
    ),
    pytest.param(
        lambda t: _replace(t, "half_life_days = 14\n", "half_life_days = 14\nhalf_lfe = 3\n"),
        "[temperature]",
        "unknown key(s) 'half_lfe'",
        id="unknown-key-in-temperature",
    ),
    pytest.param(
        lambda t: t + "\n[reporting]\nenabled = true\n",
        "the file",
        "unknown key(s) 'reporting'",
        id="unknown-top-level-table",
    ),
    pytest.param(
        lambda t: _replace(t, "version = 1\n", "version = 1\nowner = 'growth'\n"),
        "[model]",
        "unknown key(s) 'owner'",
        id="unknown-key-in-model",
    ),
]


@pytest.mark.parametrize(("mutate", "entry", "problem"), BROKEN)
def test_parse_model_rejects(default_text, mutate, entry, problem):
    with pytest.raises(ModelError) as caught:
        parse_model(mutate(default_text), "team/broken.toml")
    error = caught.value
    assert error.path == "team/broken.toml"
    assert error.entry == entry
    assert problem in error.problem
    assert str(error).startswith(f"team/broken.toml: {entry}: ")


@pytest.mark.parametrize(("mutate", "entry", "problem"), BROKEN[:1] + BROKEN[5:6] + BROKEN[9:10])
def test_load_model_names_the_file(tmp_path, default_text, mutate, entry, problem):
    path = tmp_path / "my-model.toml"
    path.write_text(mutate(default_text), encoding="utf-8")
    with pytest.raises(ModelError, match=re.escape(f"{path}: {entry}: ")):
        load_model(path)


def test_unmodified_default_text_parses(default_text):
    parsed = parse_model(default_text, "copy.toml")
    assert parsed == dataclasses.replace(builtin_model("default"), source_path="copy.toml")


def test_toml_syntax_error_and_missing_file(tmp_path):
    with pytest.raises(ModelError, match=r"^bad\.toml: TOML syntax: "):
        parse_model("[model\nname = 'x'", "bad.toml")
    with pytest.raises(ModelError, match="cannot be read"):
        load_model(tmp_path / "missing.toml")


# --------------------------------------------------------------------------------------------
# The same engine on the B2B funnel


def test_b2b_journey_visitor_to_customer(run_with, b2b_model, event, at):
    run = run_with(b2b_model)
    c = "acme-cto"
    run.feed(event("page_view", at(0), c, utm_source="linkedin", utm_medium="paid", utm_campaign="q2"))
    assert run.stage(c) == "visitor"
    run.feed(event("form_submit", at(0, minutes=10), c))
    run.feed(event("trial_start", at(2), c))
    run.feed(event("page_view", at(5), c, page_category="pricing"))  # no longer SQL: sales decides
    hot = run.feed(event("checkout_start", at(9), c))  # 31.2 + 30: hot (60) in this model
    run.feed(event("lead_contacted", at(9, minutes=10), c, channel="call"))  # answered in time
    run.feed(event("lead_qualified", at(9, minutes=20), c, budget=True, authority=True, need=True, timeline=True))
    run.feed(event("order_completed", at(9, hours=1), c, order_id="po-17", tier="core"))
    assert run.moves("stage", c) == [
        ("visitor", "lead", "left_contact_details"),
        ("lead", "mql", "started_a_trial"),
        ("mql", "sql", "sales_confirmed_full_bant"),
        ("sql", "customer", "signed_contract"),
    ]
    assert all(t.model == "b2b@1" for t in run.transitions)
    assert run.temperature(c) == "hot"
    alert, answered = run.alerts
    assert answered.type == "alert_answered" and answered.response_seconds == 600.0
    assert hot.alerts == [alert]
    assert alert.respond_by == to_rfc3339(at(9) + 30 * 60_000_000)  # b2b: respond within 30 minutes


def test_b2b_journey_cools_one_stage_at_a_time(run_with, b2b_model, event, at):
    run = run_with(b2b_model)
    c = "globex-buyer"
    run.feed(event("form_submit", at(0), c), event("event_attended", at(1), c))
    run.feed(event("lead_qualified", at(1), c, budget=True, authority=True, need=True))
    assert run.moves("stage", c) == [
        ("visitor", "lead", "left_contact_details"),
        ("lead", "mql", "attended_demo"),
        ("mql", "sql", "sales_confirmed_budget_authority_need"),
    ]
    fired = [t for t in run.expire(at(200)) if t.kind == "stage"]
    assert [(t.from_, t.to, t.reason, t.occurred_at) for t in fired] == [
        ("sql", "mql", "sql_stalled_21_days", to_rfc3339(at(1 + 21))),
        ("mql", "lead", "mql_unresponsive_30_days", to_rfc3339(at(1 + 21 + 30))),
        ("lead", "visitor", "lead_unresponsive_60_days", to_rfc3339(at(1 + 21 + 30 + 60))),
    ]


def test_b2b_lead_opts_out(run_with, b2b_model, event, at):
    run = run_with(b2b_model)
    run.feed(event("signup", at(0)), event("email_unsubscribed", at(3)))
    assert run.moves("stage") == [
        ("visitor", "lead", "left_contact_details"),
        ("lead", "visitor", "lead_opted_out"),
    ]
