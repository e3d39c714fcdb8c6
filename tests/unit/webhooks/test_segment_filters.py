"""Webhook subscriptions to value-segment moves (issue 14): segments_into / segments_out_of."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.state_machine import builtin_model
from pipeline.webhooks import ConfigError, load_config
from pipeline.webhooks.config import EventFilter
from pipeline.webhooks.events import SEGMENT_CHANGED, select

SECRET = "whsec_0123456789abcdef"
MODEL = builtin_model("default")
SEGMENTS = MODEL.segments.names() if MODEL.segments else ()


def transition(kind: str, from_: str, to: str) -> bytes:
    return json.dumps({"transition_id": f"t-{from_}-{to}", "contact_id": "c-1", "kind": kind,
                       "from": from_, "to": to, "direction": "advance"}).encode()


@pytest.mark.parametrize(
    ("wanted", "record", "selected"),
    [
        (EventFilter(segments_into=frozenset({"negative"})), transition("segment", "loyal", "negative"), True),
        (EventFilter(segments_into=frozenset({"negative"})), transition("segment", "negative", "loyal"), False),
        (EventFilter(segments_into=frozenset({"big_potential"})),
         transition("segment", "loyal", "big_potential"), True),
        (EventFilter(segments_out_of=frozenset({"loyal"})), transition("segment", "loyal", "big_potential"), True),
        (EventFilter(segments_into=frozenset({"*"})), transition("segment", "none", "small_value"), True),
        (EventFilter(segments_into=frozenset({"*"})), transition("stage", "niche", "lead"), False),
        # stage filters, even "*", never select a segment move
        (EventFilter(stages_into=frozenset({"*"}), stages_out_of=frozenset({"*"}), temperature_changes=True),
         transition("segment", "loyal", "negative"), False),
    ],
)
def test_segment_filters(wanted: EventFilter, record: bytes, selected: bool) -> None:
    delivery = select("transitions", record, wanted)
    assert (delivery is not None) == selected
    if delivery is not None:
        assert delivery.event == SEGMENT_CHANGED == "lead.segment_changed"


def _write(tmp_path: Path, filter_text: str) -> Path:
    path = tmp_path / "hooks.toml"
    path.write_text(f"""
[[subscriptions]]
name = "care"
url = "https://care.example.com/hooks"
secret = "{SECRET}"
filter = {{ {filter_text} }}
""", encoding="utf-8")
    return path


def test_a_care_team_subscribes_to_moves_into_negative(tmp_path: Path) -> None:
    sub = load_config(_write(tmp_path, 'segments_into = ["negative"]'), stages=MODEL.stages, env={},
                      segments=SEGMENTS).subscriptions[0]
    assert sub.filter.segments_into == {"negative"} and sub.filter.wants_transitions
    assert not sub.filter.wants_alerts


def test_a_misspelt_segment_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, 'segments_into = ["negativ"]'), stages=MODEL.stages, env={}, segments=SEGMENTS)
    assert caught.value.problems == [
        "subscriptions[0] (care).filter.segments_into[0]: 'negativ' is not a segment of the model; "
        "segments: loyal, big_potential, small_value, none, negative"
    ]


def test_segments_must_be_a_list(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, 'segments_out_of = "loyal"'), stages=MODEL.stages, env={}, segments=SEGMENTS)
    assert 'segments_out_of: must be a list of segment names (or ["*"] for any segment)' in caught.value.problems[0]
