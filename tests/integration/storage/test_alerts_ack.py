"""``leadflow alerts ack`` writes the ``lead_contacted`` event that answers the alert (issue 13):
to a JSONL file (then a replay answers the alert in the database) or to ``events.sales`` on a real
broker; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli.main import main as run
from pipeline.config.settings import from_env
from pipeline.storage import open_history_store
from tests.support.brokers import TestBroker
from tests.support.kafka import read_topic

pytestmark = pytest.mark.integration

DEMO = {
    "event_id": "w-1", "event_type": "demo_request", "source": "website", "contact_id": "c-9",
    "occurred_at": "2025-03-01T09:00:00Z", "properties": {"utm_source": "google"},
}


def _hot_lead(tmp_path: Path, db_url: str) -> tuple[Path, str]:
    """A history with one became_hot alert (c-9 at 09:00, respond by 10:00): the events file and the alert id."""
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(DEMO) + "\n", encoding="utf-8")
    assert run(["replay", str(events), "--db", db_url, "--out", str(tmp_path / "t.jsonl")]) == 0
    with open_history_store(db_url) as store:
        history = store.contact_timeline("c-9")
    assert history is not None
    [alert] = [a.alert for a in history.alerts]
    return events, alert.alert_id


def test_ack_appends_lead_contacted_and_a_replay_answers_the_alert(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, alert_id = _hot_lead(tmp_path, db_url)
    ack = ["alerts", "ack", alert_id, "--db", db_url, "--at", "2025-03-01T09:20:00Z", "--rep", "rep-7"]
    assert run([*ack, "--jsonl", str(events)]) == 0
    out = capsys.readouterr().out
    assert "acknowledged at 2025-03-01T09:20:00Z" in out and f"lead_contacted for c-9 appended to {events}" in out
    assert run([*ack, "--jsonl", str(events)]) == 0  # again: the same event (a duplicate for the engine)
    lines = [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()]
    assert lines[1] == lines[2] == {
        "event_id": f"ack-{alert_id}", "event_type": "lead_contacted", "source": "sales", "contact_id": "c-9",
        "occurred_at": "2025-03-01T09:20:00Z",
        "properties": {"channel": "call", "alert_id": alert_id, "outcome": "acknowledged", "rep_id": "rep-7"},
    }
    assert run(["replay", str(events), "--db", db_url, "--out", str(tmp_path / "t2.jsonl")]) == 0
    summary = capsys.readouterr()
    assert "duplicates 1" in summary.out + summary.err  # the second acknowledgement's event
    with open_history_store(db_url) as store:
        history = store.contact_timeline("c-9")
    assert history is not None
    raised = history.alerts[0]
    assert (raised.answered_at, raised.response_seconds, raised.overdue_at) == ("2025-03-01T09:20:00Z", 1200.0, None)
    assert raised.acknowledged_at == "2025-03-01T09:20:00Z"  # the stream and the database agree
    assert [a.alert.type for a in history.alerts] == ["became_hot", "alert_answered"]
    assert history.alerts[1].alert.rep_id == "rep-7"


def test_ack_publishes_lead_contacted_to_events_sales(
    db_url: str, tmp_path: Path, broker: TestBroker, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, alert_id = _hot_lead(tmp_path, db_url)
    settings = from_env({}, bootstrap=broker.bootstrap, topic_prefix=f"{namespace}.")
    broker.create_topics([settings.topic("events.sales")], partitions=2)
    command = ["alerts", "ack", alert_id, "--db", db_url, "--at", "2025-03-01T10:30:00Z", "--channel", "email",
               "--kafka", broker.bootstrap, "--topic-prefix", f"{namespace}."]
    assert run(command) == 0
    assert f"lead_contacted for c-9 published to {namespace}.events.sales" in capsys.readouterr().out
    [value] = read_topic(settings.topic("events.sales"), settings)
    record = json.loads(value)
    assert (record["event_id"], record["contact_id"], record["properties"]["channel"]) == (
        f"ack-{alert_id}", "c-9", "email"
    )


def test_ack_without_a_broker_says_the_acknowledgement_is_stored(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, alert_id = _hot_lead(tmp_path, db_url)
    assert run(["alerts", "ack", alert_id, "--db", db_url, "--kafka", "127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert "the acknowledgement is stored, but lead_contacted could not be published" in err
    assert run(["alerts", "ack", alert_id, "--db", db_url, "--no-publish"]) == 0
    assert "already acknowledged" in capsys.readouterr().out
