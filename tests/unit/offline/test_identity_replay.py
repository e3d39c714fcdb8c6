"""``leadflow replay`` resolves identities: the six-event journey of issue 11, and bad input.

Hand computation for the journey (default model: half-life 14 days = 1,209,600 s; page_view 1,
pricing page_view 5, content_download 5, form_submit 10, add_to_cart 10). Exponential decay is
linear, so the merged score at 09:25 is every event's points decayed from its own time:

    w-1 page_view (landing)   1 × 2^(-1500/1209600)   (09:00, 25 min before 09:25)
    w-2 page_view pricing     5 × 2^(-1380/1209600)   (09:02)
    w-3 page_view pricing     5 × 2^(-1200/1209600)   (09:05)
    w-4 content_download      5 × 2^( -900/1209600)   (09:10)
    w-5 form_submit          10 × 2^( -300/1209600)   (09:20, the link: merge first, then +10)
    w-6 add_to_cart          10                        (09:25)
    = 35.987 (rounded as records are); without the merge c-42 would have 19.998.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import msgspec

from pipeline.offline.replay import ReplayStats, format_summary, replay
from pipeline.state_machine import builtin_model
from pipeline.state_machine.clock import parse_rfc3339

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "identity" / "six_event_journey.jsonl"
RECEIVED_AT = parse_rfc3339("2026-03-01T12:00:00Z")
HALF_LIFE_S = 14 * 86_400
MODEL = builtin_model()


def _hand_score() -> float:
    terms = [(1, 1500), (5, 1380), (5, 1200), (5, 900), (10, 300), (10, 0)]
    return sum(points * 2 ** (-seconds / HALF_LIFE_S) for points, seconds in terms)


def _run(lines: list[bytes]) -> tuple[ReplayStats, dict[str, list[dict[str, Any]]]]:
    outs = {name: io.BytesIO() for name in ("transitions", "alerts", "deadletter", "contacts")}
    stats = replay(lines, MODEL, received_at=RECEIVED_AT, out=outs["transitions"], alerts=outs["alerts"],
                   deadletter=outs["deadletter"], contacts=outs["contacts"])
    return stats, {k: [msgspec.json.decode(line) for line in v.getvalue().splitlines()] for k, v in outs.items()}


def _line(**fields: Any) -> bytes:
    envelope = {"event_type": "page_view", "source": "website", "occurred_at": "2025-03-01T10:00:00Z",
                "properties": {"url": "https://shop.example/"}} | fields
    return msgspec.json.encode(envelope)


def test_six_event_journey_gives_one_contact_with_facebook_first_touch_and_the_combined_score() -> None:
    stats, out = _run(FIXTURE.read_bytes().splitlines())
    assert round(_hand_score(), 3) == 35.987
    contacts = {c["contact_id"]: c for c in out["contacts"]}
    person = contacts["c-42"]
    assert person["score"] == 35.987
    assert person["first_touch"] == {"source": "website", "utm_source": "facebook", "utm_medium": "social",
                                     "utm_campaign": "spring"}
    assert (person["stage"], person["temperature"], person["events_applied"]) == ("lead", "warm", 6)
    assert "merged_into" not in person
    # No separate anonymous lead: the visitor's snapshot says where it went, and is not counted.
    assert contacts["anon:v-42"]["merged_into"] == "c-42"
    assert stats.contacts == 1 and stats.merged_contacts == 1
    assert (stats.identity_merges, stats.identity_links, stats.identity_conflicts) == (1, 0, 0)
    assert stats.read == stats.applied == 6
    moves = [(t["contact_id"], t["kind"], t["from"], t["to"], t["reason"], t["trigger_event_id"])
             for t in out["transitions"]]
    assert moves == [
        ("anon:v-42", "stage", "niche", "lead", "downloaded_content", "w-4"),
        ("c-42", "identity", "anon:v-42", "c-42", "merged_anonymous_history", "w-5"),
        ("c-42", "stage", "niche", "lead", "merged_anonymous_history", "w-5"),
        ("c-42", "temperature", "cold", "warm", "score_reached_warm", "w-5"),
    ]
    identity = out["transitions"][1]
    hand_merged = sum(p * 2 ** (-s / HALF_LIFE_S) for p, s in [(1, 1200), (5, 1080), (5, 900), (5, 600)])
    assert (identity["stage"], identity["temperature"], identity["score"]) == ("lead", "cold", round(hand_merged, 3))
    assert out["alerts"] == [] and out["deadletter"] == []
    assert "identities: merged 1" in format_summary(stats, MODEL)


def test_without_the_anonymous_id_the_contact_would_score_only_its_own_events() -> None:
    lines = [line.replace(b',"anonymous_id":"v-42"', b"") if b"c-42" in line else line
             for line in FIXTURE.read_bytes().splitlines()]
    stats, out = _run(lines)
    contacts = {c["contact_id"]: c for c in out["contacts"]}
    assert contacts["c-42"]["score"] == round(10 * 2 ** (-300 / HALF_LIFE_S) + 10, 3) == 19.998
    assert contacts["c-42"]["first_touch"]["utm_source"] == "newsletter"
    assert stats.contacts == 2 and "merged_into" not in contacts["anon:v-42"]


def test_the_outputs_are_valid_records_and_replay_is_deterministic() -> None:
    from tests.support.schema_files import schema_validator

    first = _run(FIXTURE.read_bytes().splitlines())[1]
    assert _run(FIXTURE.read_bytes().splitlines())[1] == first
    for name, schema in (("transitions", "transition"), ("contacts", "contact")):
        validator = schema_validator(schema)
        for record in first[name]:
            assert [e.message for e in validator.iter_errors(record)] == [], record


def test_a_shared_device_is_counted_logged_and_stays_with_its_first_contact(caplog: Any) -> None:
    lines = [
        *FIXTURE.read_bytes().splitlines(),
        _line(event_id="d-1", event_type="signup", contact_id="d-7", anonymous_id="v-42",
              occurred_at="2025-03-01T10:00:00Z", properties={}),
        _line(event_id="w-7", anonymous_id="v-42", occurred_at="2025-03-01T10:05:00Z"),
    ]
    with caplog.at_level(logging.WARNING, logger="pipeline.offline.replay"):
        stats, out = _run(lines)
    assert stats.identity_conflicts == 1 and stats.forwarded == 1
    assert any("d-1" in r.getMessage() and "belongs to c-42" in r.getMessage() for r in caplog.records)
    contacts = {c["contact_id"]: c for c in out["contacts"]}
    assert contacts["d-7"]["events_applied"] == 1 and contacts["d-7"]["stage"] == "lead"
    assert contacts["c-42"]["events_applied"] == 7  # the later anonymous page view went to c-42
    assert contacts["anon:v-42"]["merged_into"] == "c-42"
    assert not [t for t in out["transitions"] if t["contact_id"] == "d-7" and t["kind"] == "identity"]
    assert stats.read == stats.applied + stats.duplicates + stats.dead_letter_total


def test_bad_identities_are_dead_lettered_or_linked_never_dropped() -> None:
    long_id = "x" * 129
    lines = [
        _line(event_id="b-1", contact_id="anon:v-1"),  # the reserved prefix as a contact_id
        _line(event_id="b-2", contact_id="c-1", anonymous_id=long_id),  # over the length limit
        _line(event_id="b-3", contact_id="c-1", anonymous_id="never-seen"),  # unknown visitor: a link
        _line(event_id="b-4", anonymous_id="never-seen", occurred_at="2025-03-01T10:01:00Z"),
        _line(event_id="b-5", contact_id="c-2", anonymous_id="c-1"),  # an anonymous id equal to a contact_id
        _line(event_id="b-6", referred_by="anon:v-1", contact_id="c-3"),
    ]
    stats, out = _run(lines)
    assert stats.read == 6 == stats.applied + stats.duplicates + stats.dead_letter_total
    dead = {d["event_id"]: d for d in out["deadletter"]}
    assert set(dead) == {"b-1", "b-2", "b-6"}
    assert all(d["error_code"] == "schema_violation" for d in dead.values())
    assert dead["b-1"]["error_detail"].startswith('$.contact_id: must not start with "anon:"')
    assert dead["b-2"]["error_detail"].startswith("$.anonymous_id: must be a string of 1-128 characters")
    contacts = {c["contact_id"]: c for c in out["contacts"]}
    assert contacts["anon:never-seen"]["merged_into"] == "c-1"
    assert contacts["c-1"]["events_applied"] == 2  # b-3 and the forwarded b-4
    assert contacts["anon:c-1"]["merged_into"] == "c-2"  # a distinct key: contact c-1 is untouched
    links = [(t["contact_id"], t["from"], t["reason"]) for t in out["transitions"] if t["kind"] == "identity"]
    assert links == [("c-1", "anon:never-seen", "linked_anonymous_id"), ("c-2", "anon:c-1", "linked_anonymous_id")]
    assert (stats.identity_links, stats.forwarded, stats.contacts) == (2, 1, 2)
