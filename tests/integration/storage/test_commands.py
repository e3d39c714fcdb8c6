"""``leadflow db upgrade``, ``contact``, ``funnel`` and ``alerts ack`` end to end on real databases."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.cli.main import main
from pipeline.state_machine import builtin_model
from pipeline.storage import SqlHistoryStore
from pipeline.storage.sql.tables import alerts

from .conftest import fixture_history

pytestmark = pytest.mark.integration


def run(argv: list[str]) -> int:
    """``leadflow ARGV``, in process, through the real command line."""
    return main(argv)


@pytest.fixture
def filled(db_url: str) -> str:
    with SqlHistoryStore(db_url) as store:
        store.write_batch(*fixture_history())
    return db_url


def test_db_upgrade_creates_then_reports_current(empty_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["db", "upgrade", "--db", empty_db]) == 0
    assert "schema upgraded from empty to revision 0005" in capsys.readouterr().out
    assert run(["db", "upgrade", "--db", empty_db]) == 0
    assert "schema already at revision 0005" in capsys.readouterr().out


def test_db_url_comes_from_the_environment(empty_db: str, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEADFLOW_DB", empty_db)
    assert run(["db", "upgrade"]) == 0
    assert "revision 0005" in capsys.readouterr().out


def test_contact_prints_state_and_timeline(filled: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["contact", "B", "--db", filled]) == 0
    out = capsys.readouterr().out
    assert "stage niche since 2025-05-02T00:00:00Z" in out
    assert "stage advance: niche → buyer (skipped lead)  reason claimed_offer  by event b-1" in out
    assert "stage regress: buyer → lead  reason buyer_went_quiet  time-driven" in out
    assert "ALERT became_hot al-b" in out and "NOT acknowledged" in out
    lines = [line for line in out.splitlines() if line.startswith("  2025-")]
    times = [line.split()[0] for line in lines]
    assert times == sorted(times) and len(lines) == 4  # time order


def test_contact_json_and_acknowledgement(filled: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["alerts", "ack", "al-b", "--db", filled, "--at", "2025-01-02T03:00:00Z", "--no-publish"]) == 0
    assert "acknowledged at 2025-01-02T03:00:00Z" in capsys.readouterr().out
    assert run(["alerts", "ack", "al-b", "--db", filled, "--at", "2025-01-09T00:00:00Z", "--no-publish"]) == 0
    assert "already acknowledged at 2025-01-02T03:00:00Z; kept that time" in capsys.readouterr().out
    assert run(["contact", "B", "--db", filled, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["contact"]["stage"] == "niche"
    assert [e["entry"] for e in document["timeline"]] == ["transition", "alert", "transition", "transition"]
    assert document["timeline"][1]["acknowledged_at"] == "2025-01-02T03:00:00Z"


def test_unknown_ids_exit_1_with_a_message(filled: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["contact", "nobody", "--db", filled]) == 1
    assert "no contact 'nobody'" in capsys.readouterr().err
    assert run(["alerts", "ack", "nope", "--db", filled]) == 1
    assert "no alert with id 'nope'" in capsys.readouterr().err


def test_usage_errors_exit_2(filled: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["contact", "A", "--db", f"sqlite:///{tmp_path / 'not-upgraded.db'}"]) == 2
    assert "leadflow db upgrade --db" in capsys.readouterr().err
    assert run(["funnel", "--db", filled, "--model", "no-such-model"]) == 2
    assert run(["funnel", "--db", "mysql://x/y"]) == 2
    assert "unsupported database 'mysql'" in capsys.readouterr().err
    assert run(["funnel", "--db", filled, "--since", "2025-02-01", "--until", "2025-01-01"]) == 2
    with pytest.raises(SystemExit) as exited:
        run(["funnel", "--db", filled, "--since", "last tuesday"])
    assert exited.value.code == 2


def test_funnel_table_json_and_html(filled: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "funnel.html"
    assert run(["funnel", "--db", filled, "--by", "utm_source", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "funnel of model default@1 by utm_source, all time" in out
    assert "== google: 3 contacts" in out
    assert page.read_text().count('class="funnel"') == 5  # the total and four groups
    assert run(["funnel", "--db", filled, "--json", "--since", "2025-01-03", "--until", "2025-01-31"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["until"] == "2025-02-01T00:00:00Z"  # a date --until includes that day
    assert document["total"]["contacts"] == 3


def test_replay_db_writes_the_history_once(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    sample = str(Path(__file__).parents[3] / "samples" / "journeys.jsonl")
    argv = ["replay", sample, "--until", "2026-11-01T00:00:00Z", "--db", db_url]
    assert run(argv) == 0
    first = capsys.readouterr().err
    # The transition count depends on every axis the default model has; alerts and contacts do not.
    assert re.search(r"history: \d+ transitions, 199 alerts and 329 contacts written to", first)
    assert "alerts: 199 (alert_answered 71, became_hot 93, response_overdue 35)" in first
    assert "segment advance 221, segment regress 83" in first  # value segments (issue 14)
    with SqlHistoryStore(db_url) as store:
        before = store.funnel(builtin_model())
    assert run(argv) == 0  # the same history again: nothing new, nothing doubled
    with SqlHistoryStore(db_url) as store:
        after = store.funnel(builtin_model())
    assert after == before
    assert before.total.contacts == 300 and before.total.hot_alerts == 93
    assert sum(s.regressions for s in before.total.stages) == 260  # every stage regression of the replay
    speed = before.total.speed_to_lead  # the simulated reps: the seeds' speed-to-lead effect
    assert (speed.alerts, speed.answered, speed.answered_in_time, speed.overdue) == (93, 71, 58, 35)
    assert (speed.converted_in_time, speed.converted_late_or_never) == (45, 13)
    with SqlHistoryStore(db_url) as store, store.engine.connect() as connection:
        hot = connection.execute(select(alerts.c.contact_id).limit(1)).scalar_one()
    capsys.readouterr()
    assert run(["contact", hot, "--db", db_url, "--json"]) == 0
    timeline = json.loads(capsys.readouterr().out)["timeline"]
    assert any(entry["entry"] == "alert" for entry in timeline)
    assert any(entry["entry"] == "transition" for entry in timeline)
