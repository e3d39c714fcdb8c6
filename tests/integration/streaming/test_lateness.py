"""The wall-clock sweep's watermark (issue 15): cooling fires only up to now minus
``LEADFLOW_ALLOWED_LATENESS``, so an event that arrives late, but within the allowed lateness,
gives exactly what ``leadflow replay`` gives; one later than that is applied anyway, counted as
late and beyond the lateness, and the contact cooled before it (the documented behaviour).

A lead cools after 6 quiet seconds (the default model with ``after_days`` shortened). Its signup
happens at T0 and is sent at once; a content download happens at T0+3 s (which would keep the lead
warm until T0+9 s) but is sent only at T0+9 s, after the first deadline (T0+6 s) has passed on the
wall clock.
"""

from __future__ import annotations

import io
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from pipeline.offline.replay import replay
from pipeline.state_machine import ContactState, resolve_model
from pipeline.state_machine.clock import parse_rfc3339, to_rfc3339
from tests.support.brokers import TestBroker

from .harness import Pipeline, by_id

pytestmark = pytest.mark.integration

S = 1_000_000
QUIET = 6
DEFAULT_MODEL = (Path(__file__).resolve().parents[3] / "pipeline" / "state_machine" / "models"
                 / "default.toml").read_text()


def _event(event_id: str, event_type: str, at: int, **properties: object) -> bytes:
    return orjson.dumps({"source": "website", "event_id": event_id, "event_type": event_type,
                         "contact_id": "late-lead", "occurred_at": to_rfc3339(at), "properties": properties})


def _run(broker: TestBroker, namespace: str, tmp_path: Path, lateness: float) -> tuple[
        list[bytes], list[dict[str, object]], dict[str, ContactState], dict[str, object], str, int]:
    model = tmp_path / "fast-cooling.toml"
    model.write_text(DEFAULT_MODEL.replace("after_days = 90\n", f"after_days = {QUIET / 86400}\n"))
    pipeline = Pipeline(broker, namespace, tmp_path, model=str(model), sweep_clock="wall",
                        sweep_interval=0.25, allowed_lateness=lateness)
    with pipeline.worker() as worker:
        worker.ready()
        # T0 is the next whole second, and the signup is sent at T0: only its path through the
        # pipeline counts as its lateness (a T0 in the past would add up to a second to it).
        t0 = ((time.time_ns() // 1000) // S + 1) * S
        time.sleep(max(0.0, t0 / S - time.time()))
        lines = [_event("signup-1", "signup", t0), _event("download-1", "content_download", t0 + 3 * S, asset_id="a")]
        pipeline.publish(lines[:1])
        time.sleep(max(0.0, (t0 + 9 * S) / S - time.time()))
        pipeline.publish(lines[1:])  # 6 s after it happened
        # Until the watermark passed the last deadline (T0+9 s) and a moment more.
        time.sleep(max(0.0, (t0 + 9 * S + lateness * S) / S - time.time()) + 2)
        transitions = pipeline.wait_for("transitions", 2, timeout=60)
        stats = worker.stats()["processor"]
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.settings.web_port}/metrics", timeout=5) as r:
            exposition = r.read().decode()
    return lines, transitions, pipeline.contact_states(), stats, exposition, t0


def _replay(lines: list[bytes], model: Path, until: int) -> tuple[list[dict[str, object]], dict[str, ContactState]]:
    out, states = io.BytesIO(), {}
    replay(iter(lines), resolve_model(str(model)), received_at=until, until=until, out=out, keep_states=states)
    return [orjson.loads(x) for x in out.getvalue().splitlines()], states


def _stage_moves(transitions: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(t["from"], t["to"], t["reason"], t["occurred_at"]) for t in transitions if t["kind"] == "stage"]


def test_an_event_late_within_the_allowed_lateness_gives_the_replay_result(
    broker: TestBroker, namespace: str, tmp_path: Path
) -> None:
    lines, transitions, states, stats, exposition, t0 = _run(broker, namespace, tmp_path, lateness=10.0)
    expected, expected_states = _replay(lines, tmp_path / "fast-cooling.toml", t0 + 20 * S)
    assert _stage_moves(expected) == [("niche", "lead", "signed_up", to_rfc3339(t0)),
                                      ("lead", "niche", "lead_went_quiet", to_rfc3339(t0 + 9 * S))]
    assert by_id(transitions, "transition_id") == by_id(expected, "transition_id")
    assert states == expected_states
    assert stats["late"] == 0
    assert 'leadflow_events_beyond_lateness_total{source="website"} 0.0' in exposition
    assert 'leadflow_event_arrival_lag_seconds_count{source="website"} 2.0' in exposition


def test_an_event_later_than_the_allowed_lateness_is_applied_after_the_cooling(
    broker: TestBroker, namespace: str, tmp_path: Path
) -> None:
    lines, transitions, _states, stats, exposition, t0 = _run(broker, namespace, tmp_path, lateness=1.0)
    moves = _stage_moves(transitions)
    # The cooling due at T0+6 s fired once the watermark passed it, before the download arrived.
    assert moves[:2] == [("niche", "lead", "signed_up", to_rfc3339(t0)),
                         ("lead", "niche", "lead_went_quiet", to_rfc3339(t0 + 6 * S))]
    expected, _ = _replay(lines, tmp_path / "fast-cooling.toml", t0 + 20 * S)
    assert moves != _stage_moves(expected)  # differs from replay: the documented cost of lateness
    assert stats["late"] == 1  # applied anyway (never dropped), counted and logged as late
    assert stats["applied"] == 2
    assert 'leadflow_events_beyond_lateness_total{source="website"} 1.0' in exposition
    for move in moves[2:]:  # whatever the late event did, it is dated no earlier than the cooling
        assert parse_rfc3339(str(move[3])) >= t0 + 3 * S
