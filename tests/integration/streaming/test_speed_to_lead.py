"""Speed to lead on a real broker (issue 13): a hot lead nobody calls escalates at respond_by, fired
by the worker's sweep with no event; once, across a SIGKILL of the worker before or after it
fired; and a lead_contacted on events.sales then answers the alert (late)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from pipeline.state_machine.clock import parse_rfc3339
from tests.support.brokers import TestBroker

from .harness import Pipeline

pytestmark = pytest.mark.integration
DEFAULT_MODEL = (Path(__file__).resolve().parents[3] / "pipeline" / "state_machine" / "models"
                 / "default.toml").read_text()
RESPOND_WITHIN_SECONDS = 20


def _fast_model(tmp_path: Path) -> str:
    """The default model with 20 seconds for sales instead of 60 minutes."""
    model = tmp_path / "fast-sales.toml"
    window = f"respond_within_minutes = {RESPOND_WITHIN_SECONDS / 60}\n"
    text = DEFAULT_MODEL.replace("respond_within_minutes = 60\n", window)
    assert text != DEFAULT_MODEL
    model.write_text(text)
    return str(model)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _of_type(alerts: list[dict[str, object]], alert_type: str) -> list[dict[str, object]]:
    return [a for a in alerts if a["type"] == alert_type]


def test_an_unanswered_alert_escalates_at_respond_by_once_across_crashes(
    broker: TestBroker, namespace: str, tmp_path: Path
) -> None:
    pipeline = Pipeline(broker, namespace, tmp_path, model=_fast_model(tmp_path), sweep_clock="wall",
                        sweep_interval=0.5)
    demo = {"event_id": "d1", "event_type": "demo_request", "contact_id": "c-hot", "occurred_at": _now()}
    with pipeline.worker("first") as worker:
        worker.ready()
        pipeline.publish_raw("website", [orjson.dumps(demo)])
        [hot] = pipeline.wait_for("alerts", 1, timeout=60)
        worker.kill()  # before respond_by (20 s): the escalation is still pending in the changelog
    with pipeline.worker("second") as worker:
        worker.ready(timeout=120)
        # The partitions come back once the group drops the killed member (its session timeout).
        alerts = pipeline.wait_for("alerts", 2, timeout=180)
        worker.kill()  # after the escalation was published
    with pipeline.worker("third") as worker:
        worker.ready(timeout=120)
        time.sleep(3 * 0.5 + 2)  # a few sweeps of the third worker
        call = {"event_id": "call-1", "event_type": "lead_contacted", "contact_id": "c-hot", "occurred_at": _now(),
                "properties": {"channel": "call", "rep_id": "rep-7"}}
        pipeline.publish_raw("sales", [orjson.dumps(call)])
        alerts = pipeline.wait_for("alerts", 3, timeout=180)
    assert hot["type"] == "became_hot"
    [overdue] = _of_type(alerts, "response_overdue")  # exactly one, across two crashes
    assert overdue["original_alert_id"] == hot["alert_id"]
    assert overdue["occurred_at"] == hot["respond_by"]  # fired at respond_by exactly (event time)
    assert parse_rfc3339(str(hot["respond_by"])) - parse_rfc3339(str(hot["occurred_at"])) == (
        RESPOND_WITHIN_SECONDS * 1_000_000
    )
    [answered] = _of_type(alerts, "alert_answered")
    assert answered["original_alert_id"] == hot["alert_id"] and answered["trigger_event_id"] == "call-1"
    assert float(answered["late_seconds"]) > 0 and answered["rep_id"] == "rep-7"  # type: ignore[arg-type]
    assert len(_of_type(alerts, "became_hot")) == 1
