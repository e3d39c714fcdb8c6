"""Upgrades (issue 15): contact states serialized by release 6d4901d (before identity merges,
the sales loop and value segments added trailing fields) decode in this release and behave.

``tests/fixtures/upgrade/contact-states-6d4901d.jsonl`` was written by that release's own code
(``make_states.py`` beside it says how); these states are what a worker of this release finds in
the changelog and in RocksDB during a rolling upgrade.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pipeline.state_machine import ContactState, Event, builtin_model, decode_state, encode_state, snapshot
from pipeline.state_machine.processor import DeadlineIndex, LifecycleProcessor

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "upgrade" / "contact-states-6d4901d.jsonl"
ROWS: list[dict[str, Any]] = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
DAY = 86_400_000_000


def test_the_fixtures_cover_several_stages() -> None:
    assert len(ROWS) >= 10
    assert len({row["snapshot"]["stage"] for row in ROWS}) >= 4


@pytest.mark.parametrize("row", ROWS, ids=[row["contact"] for row in ROWS])
def test_an_old_state_decodes_with_the_new_fields_at_their_defaults(row: dict[str, Any]) -> None:
    state = decode_state(base64.b64decode(row["state"]))
    assert state.contact == row["contact"]
    new = ContactState(contact="x", identified=True)
    assert (state.aliases, state.awaiting, state.held, state.merged_into) == ((), None, (), None)
    assert (state.bant, state.alert_id, state.overdue_fired) == (new.bant, new.alert_id, new.overdue_fired)
    assert (state.segment, state.revenue, state.order_count, state.value_orders) == (-1, 0.0, 0, ())
    # What the old release published about it is what this release publishes about it.
    now = json.loads(msgspec.json.encode(snapshot(state, builtin_model())))
    for field, value in row["snapshot"].items():
        assert now.get(field) == value, field
    assert decode_state(encode_state(state)) == state  # and it is written back in the new layout


@pytest.mark.parametrize("row", ROWS, ids=[row["contact"] for row in ROWS])
def test_an_old_state_behaves(row: dict[str, Any]) -> None:
    state = decode_state(base64.b64decode(row["state"]))
    processor = LifecycleProcessor(builtin_model(), {state.contact: state}, DeadlineIndex(), fire_on_event=True)
    processor.track(state)
    at = state.clock + DAY
    # An event the old release already applied, redelivered after the upgrade, is a duplicate.
    if row["event_ids"]:
        again = processor.apply(Event(row["event_ids"][-1], "page_view", "website", state.contact, at, True,
                                      {"url": "https://www.example.com/"}))
        assert again.duplicates == 1 and again.applied == 0
    # A new event applies on top of the old state.
    outcome = processor.apply(Event("after-upgrade-1", "page_view", "website", state.contact, at, True,
                                    {"url": "https://www.example.com/pricing"}))
    assert outcome.applied == 1
    after = processor.states[state.contact]
    assert after.events_applied == state.events_applied + 1
    assert after.stage >= state.stage  # a page view never moves a contact down by itself
    # Time still works: a year later the cooling and segment deadlines fire without error, and
    # every transition is dated at or after the state's own clock.
    later = processor.advance_to(at + 365 * DAY)
    assert all(t.occurred_at >= to_text(state.clock) for t in later.transitions)


def to_text(micros: int) -> str:
    from pipeline.state_machine.clock import to_rfc3339

    return to_rfc3339(micros)
