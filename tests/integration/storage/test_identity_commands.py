"""``leadflow contact`` after ``leadflow replay --db`` of the six-event identity journey: the
visitor anon:v-42 browsed anonymously (4 events), then identified as c-42 (2 events)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.state_machine import builtin_model
from pipeline.storage import SqlHistoryStore

pytestmark = pytest.mark.integration
JOURNEY = Path(__file__).parents[2] / "fixtures" / "identity" / "six_event_journey.jsonl"


@pytest.fixture
def replayed(db_url: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["replay", str(JOURNEY), "--db", db_url]) == 0
    capsys.readouterr()
    return db_url


def test_the_person_shows_the_merged_anonymous_history(replayed: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contact", "c-42", "--db", replayed]) == 0
    out = capsys.readouterr().out
    assert "merged anonymous history: anon:v-42, merged 2025-03-01T09:20:00Z (merged_anonymous_history)" in out
    assert "first touch: source website, utm_source facebook" in out
    lines = out.splitlines()
    timeline = lines[lines.index(next(x for x in lines if x.startswith("timeline"))) + 1:]
    assert timeline[0].startswith("  [anon:v-42] 2025-03-01T09:10:00Z  stage advance: niche → lead")
    assert "identity: anon:v-42 merged into c-42  reason merged_anonymous_history  by event w-5" in timeline[1]
    assert all("[anon:" not in line for line in timeline[1:])

    assert main(["contact", "c-42", "--json", "--db", replayed]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["merged_into"] is None
    assert [(m["contact_id"], m["merged_at"], m["transitions"]) for m in doc["merged"]] == [
        ("anon:v-42", "2025-03-01T09:20:00Z", 1)
    ]
    assert [(e["merged_from"], e["kind"]) for e in doc["timeline"]] == [
        ("anon:v-42", "stage"), (None, "identity"), (None, "stage"), (None, "temperature")
    ]


def test_the_visitor_points_to_the_person(replayed: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contact", "anon:v-42", "--db", replayed]) == 0
    out = capsys.readouterr().out
    assert "MERGED into c-42 at 2025-03-01T09:20:00Z: its history continues there (leadflow contact c-42)" in out
    assert main(["contact", "anon:v-42", "--json", "--db", replayed]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["merged_into"], doc["merged_at"], doc["merged"]) == ("c-42", "2025-03-01T09:20:00Z", [])
    assert doc["contact"]["merged_into"] == "c-42"
    assert main(["contact", "anon:nobody", "--db", replayed]) == 1  # exit codes unchanged


def test_the_funnel_counts_one_person(replayed: str) -> None:
    with SqlHistoryStore(replayed) as store:
        report = store.funnel(builtin_model())
    assert report.total.contacts == 1
    assert [(g.group, g.contacts) for g in report.groups] == [("website", 1)]
    assert [s.reached for s in report.total.stages][:3] == [1, 1, 0]
