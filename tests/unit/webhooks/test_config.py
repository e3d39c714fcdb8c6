"""Loading webhook subscriptions: valid files in both formats, and errors naming file and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.state_machine import builtin_model
from pipeline.webhooks import ConfigError, load_config
from pipeline.webhooks.config import ANY

STAGES = builtin_model().stages
SECRET = "whsec_0123456789abcdef"
REPO = Path(__file__).resolve().parents[3]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, stages=STAGES, env=env or {})
    assert str(path) in str(caught.value)
    return caught.value.problems


def test_the_shipped_example_is_valid() -> None:
    env = {"CRM_WEBHOOK_SECRET": SECRET, "DIALER_WEBHOOK_SECRET": SECRET[::-1]}
    config = load_config(REPO / "samples" / "webhooks.toml", stages=STAGES, env=env)
    crm, dialer = config.subscriptions
    assert crm.name == "crm" and crm.secret == SECRET and crm.max_in_flight == 10
    assert crm.filter.became_hot and crm.filter.stages_into == {"customer", "member"}
    assert crm.retry.retry_for == 86_400 and crm.retry.backoff_max == 3_600
    assert dialer.max_in_flight == 4 and dialer.retry.timeout == 5 and dialer.filter.temperature_changes
    assert crm.group_id("leadflow") == "leadflow-webhooks-crm"


def test_toml_with_defaults_and_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "hooks.toml", f"""
[delivery]
retry_for_seconds = 60
backoff_initial_seconds = 0.1
backoff_max_seconds = 2

[[subscriptions]]
name = "slack-sales"
url = "http://127.0.0.1:9000/hook"
secret = "{SECRET}"
retry_for_seconds = 5
[subscriptions.filter]
stages_out_of = ["*"]
""")
    (sub,) = load_config(path, stages=STAGES, env={}).subscriptions
    assert sub.retry.retry_for == 5 and sub.retry.backoff_initial == 0.1 and sub.retry.backoff_max == 2
    assert sub.start_from == "latest" and sub.retry.timeout == 10
    assert sub.filter.stages_out_of == {ANY} and not sub.filter.wants_alerts and sub.filter.wants_transitions
    assert "whsec" not in repr(sub), "the secret never appears in logs"


def test_json_file(tmp_path: Path) -> None:
    path = write(tmp_path, "hooks.json", json.dumps({
        "subscriptions": [{"name": "crm", "url": "https://crm.example.com/h", "secret_env": "S",
                           "filter": {"became_hot": True}, "start_from": "earliest"}]
    }))
    (sub,) = load_config(path, stages=STAGES, env={"S": SECRET}).subscriptions
    assert sub.secret == SECRET and sub.start_from == "earliest" and sub.filter.wants_alerts


def test_every_problem_is_reported_with_its_field(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", """
colour = "blue"
[delivery]
max_in_flight = 0
backoff_initial_seconds = 10
backoff_max_seconds = 1

[[subscriptions]]
name = "crm"
url = "ftp://crm.example.com"
secret = "short"
[subscriptions.filter]
stages_into = ["custommer"]
became_hot = "yes"
surprise = 1

[[subscriptions]]
name = "crm"
url = "https://b.example.com"
secret = "whsec_0123456789abcdef"
secret_env = "ALSO"
timeout_seconds = "10"
start_from = "yesterday"
[subscriptions.filter]

[[subscriptions]]
name = "Has Spaces"
""")
    found = problems(path)
    expected = [
        "colour: unknown key",
        "delivery.max_in_flight: 0 is out of range: 1 to 1000",
        "delivery.backoff_max_seconds: must not be less than backoff_initial_seconds",
        "subscriptions[0] (crm).url: 'ftp://crm.example.com' is not an http:// or https:// URL",
        "subscriptions[0] (crm).secret: too short",
        "subscriptions[0] (crm).filter.stages_into[0]: 'custommer' is not a stage of the model",
        "subscriptions[0] (crm).filter.became_hot: must be true or false",
        "subscriptions[0] (crm).filter.surprise: unknown key",
        "subscriptions[1] (crm).name: duplicate: also subscriptions[0]",
        "subscriptions[1] (crm).secret: give exactly one of secret or secret_env",
        "subscriptions[1] (crm).timeout_seconds: '10' is not a number",
        "subscriptions[1] (crm).start_from: 'yesterday': choose one of latest, earliest",
        "subscriptions[1] (crm).filter: selects nothing",
        "subscriptions[2].name: 'Has Spaces': required",
        "subscriptions[2].url: required",
        "subscriptions[2].filter: required",
    ]
    for text in expected:
        assert any(problem.startswith(text) for problem in found), f"{text!r} not in {found}"


def test_a_missing_secret_variable_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "hooks.toml", """
[[subscriptions]]
name = "crm"
url = "https://crm.example.com/h"
secret_env = "CRM_SECRET"
filter = { became_hot = true }
""")
    assert problems(path) == ["subscriptions[0] (crm).secret_env: environment variable CRM_SECRET is not set"]
    assert problems(path, {"CRM_SECRET": "tiny"}) == [
        "subscriptions[0] (crm).secret_env (CRM_SECRET): too short: use at least 16 random characters"
    ]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.toml", "", "subscriptions: required"),
        ("broken.toml", "[[subscriptions]\n", "not valid TOML"),
        ("broken.json", "{", "not valid JSON"),
        ("list.json", "[]", "the top level must be"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, text: str, message: str) -> None:
    assert message in problems(write(tmp_path, name, text))[0]


def test_a_missing_file(tmp_path: Path) -> None:
    assert "cannot read the file" in problems(tmp_path / "nope.toml")[0]


def test_a_subscription_can_ask_for_identity_merges(tmp_path: Path) -> None:
    path = write(tmp_path, "merges.toml", f"""
[[subscriptions]]
name = "crm"
url = "https://crm.example.com/hooks"
secret = "{SECRET}"
filter = {{ identity_merges = true }}
""")
    sub = load_config(path, stages=STAGES, env={}).subscriptions[0]
    assert sub.filter.identity_merges and sub.filter.wants_transitions and not sub.filter.wants_alerts
    assert sub.filter.wants_transition("identity", "anon:v-42", "c-42")
    assert not sub.filter.wants_transition("stage", "niche", "lead")


def test_identity_merges_must_be_a_flag(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", f"""
[[subscriptions]]
name = "crm"
url = "https://crm.example.com/hooks"
secret = "{SECRET}"
filter = {{ identity_merges = "yes", stages_into = ["*"] }}
""")
    assert problems(path) == ["subscriptions[0] (crm).filter.identity_merges: must be true or false"]


def test_a_sales_manager_subscription_asks_for_escalations_only(tmp_path: Path) -> None:
    path = tmp_path / "hooks.toml"
    path.write_text(
        """
[[subscriptions]]
name = "sales-manager"
url = "https://pager.example.com/hooks/overdue"
secret = "0123456789abcdef0123"
filter = { response_overdue = true }
""",
        encoding="utf-8",
    )
    [sub] = load_config(path).subscriptions
    assert sub.filter.response_overdue and sub.filter.wants_alerts and not sub.filter.wants_transitions
    assert sub.filter.wants_alert("response_overdue") and not sub.filter.wants_alert("became_hot")


def test_speed_to_lead_flags_must_be_flags(tmp_path: Path) -> None:
    path = tmp_path / "hooks.toml"
    path.write_text(
        """
[[subscriptions]]
name = "crm"
url = "https://crm.example.com/h"
secret = "0123456789abcdef0123"
filter = { response_overdue = 1, alerts_answered = "yes", became_hot = true }
""",
        encoding="utf-8",
    )
    assert problems(path) == [
        "subscriptions[0] (crm).filter.response_overdue: must be true or false",
        "subscriptions[0] (crm).filter.alerts_answered: must be true or false",
    ]
