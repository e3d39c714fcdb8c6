"""Golden journeys: realistic contact histories drawn from the seed articles, with hand-computed
expected transitions and alerts.

Each ``tests/fixtures/journeys/NAME.jsonl`` holds input envelopes as a replay file carries them;
``NAME.expected.json`` lists the expected transitions and alerts and the ``until`` time of the final
sweep. The stage moves were worked out from the rules by hand; the temperature moves from the score
rules (points, 14-day half-life, bands with hysteresis): a decay-driven drop happens at the first
microsecond at which the decayed score is below the line.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from pipeline.state_machine import Event
from pipeline.state_machine.clock import parse_rfc3339

JOURNEYS = Path(__file__).resolve().parents[2] / "fixtures" / "journeys"
NAMES = sorted(p.name.removesuffix(".jsonl") for p in JOURNEYS.glob("*.jsonl"))
TRANSITION_FIELDS = ("contact_id", "kind", "from", "to", "reason", "trigger_event_id", "occurred_at")
ALERT_FIELDS = ("contact_id", "occurred_at", "respond_by")


def to_event(envelope: dict[str, Any]) -> Event:
    """The small converter the contracts layer does for real: envelope -> Event."""
    contact_id = envelope.get("contact_id")
    return Event(
        event_id=envelope["event_id"],
        event_type=envelope["event_type"],
        source=envelope["source"],
        contact=contact_id if contact_id else "anon:" + envelope["anonymous_id"],
        occurred_at=parse_rfc3339(envelope["occurred_at"]),
        identified=bool(contact_id),
        properties=dict(envelope.get("properties", {})),
        referred_by=envelope.get("referred_by"),
    )


def _by_contact(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["contact_id"]].append(row)
    return dict(grouped)


def test_there_are_enough_journeys():
    assert len(NAMES) >= 6
    for name in NAMES:
        assert (JOURNEYS / f"{name}.expected.json").is_file(), name


@pytest.mark.parametrize("name", NAMES)
def test_golden_journey(run_with, model, name):
    expected = json.loads((JOURNEYS / f"{name}.expected.json").read_text(encoding="utf-8"))
    lines = (JOURNEYS / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    run = run_with(model)
    for line in lines:
        run.feed(to_event(json.loads(line)))
    run.expire(parse_rfc3339(expected["until"]))

    # Value-segment moves (issue 14) have their own hand-computed tests in test_segments.py.
    transitions = [
        dict(zip(TRANSITION_FIELDS, _row(t), strict=True)) for t in run.transitions if t.kind != "segment"
    ]
    alerts = [
        {"contact_id": a.contact_id, "occurred_at": a.occurred_at, "respond_by": a.respond_by}
        for a in run.alerts
        if a.type == "became_hot"  # escalations (response_overdue) are tested in test_speed_to_lead.py
    ]
    # Per contact, in order (the relative order of different contacts' moves is not a contract).
    assert _by_contact(transitions) == _by_contact(expected["transitions"])
    assert _by_contact(alerts) == _by_contact(expected["alerts"])
    assert run.duplicates == 0
    for row in expected["alerts"]:
        assert set(row) == set(ALERT_FIELDS)


def _row(t: Any) -> tuple[Any, ...]:
    return (t.contact_id, t.kind, t.from_, t.to, t.reason, t.trigger_event_id, t.occurred_at)


def test_anonymous_journey_has_no_alert_but_goes_hot():
    expected = json.loads((JOURNEYS / "anonymous_visitor_never_alerted.expected.json").read_text("utf-8"))
    assert expected["alerts"] == []
    assert any(t["to"] == "hot" for t in expected["transitions"])
