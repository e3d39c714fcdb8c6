"""End to end on the real broker: events in, a ``leadflow worker`` decides, ``leadflow webhooks``
delivers the became_hot alert and the stage transition to a sales tool that verifies them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.brokers import TestBroker

from ..streaming.harness import Pipeline
from .harness import SECRET, Receiver, Setup, wait_until

pytestmark = pytest.mark.integration


def test_events_to_a_verified_webhook(broker: TestBroker, namespace: str, tmp_path: Path) -> None:
    pipeline = Pipeline(broker, namespace, tmp_path, sweep_clock="event")
    setup = Setup(broker, namespace, tmp_path)
    crm = Receiver().start()
    try:
        config = setup.config(f"""
[[subscriptions]]
name = "crm"
url = "{crm.url}"
secret = "{SECRET}"
start_from = "earliest"
[subscriptions.filter]
became_hot = true
stages_into = ["lead"]
""")
        start = datetime.now(UTC) - timedelta(minutes=5)
        events = [
            {"source": "website", "event_id": "e2e-1", "event_type": "form_submit", "contact_id": "c-e2e",
             "occurred_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "properties": {"form_id": "newsletter"}},
            {"source": "website", "event_id": "e2e-2", "event_type": "demo_request", "contact_id": "c-e2e",
             "occurred_at": (start + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), "properties": {}},
        ]
        with pipeline.worker() as worker, setup.deliverer(config):
            worker.ready()
            pipeline.publish([json.dumps(event).encode() for event in events])
            wait_until(lambda: {r.headers["Leadflow-Event"] for r in crm.snapshot()} >= {
                "lead.became_hot", "lead.stage_changed"}, 90, "the alert and the transition at the sales tool")
        alerts = [r for r in crm.snapshot() if r.headers["Leadflow-Event"] == "lead.became_hot"]
        stages = [r for r in crm.snapshot() if r.headers["Leadflow-Event"] == "lead.stage_changed"]
        assert all(r.verified() for r in alerts + stages)
        alert = json.loads(alerts[0].body)
        assert alert["contact_id"] == "c-e2e" and alert["type"] == "became_hot"
        assert alerts[0].delivery_id == alert["alert_id"]
        transition = json.loads(stages[0].body)
        assert (transition["from"], transition["to"], transition["reason"]) == ("niche", "lead", "submitted_form")
        assert stages[0].delivery_id == transition["transition_id"]
        assert {r.delivery_id for r in crm.snapshot()} == {alert["alert_id"], transition["transition_id"]}, (
            "the temperature transitions were not selected by the filter"
        )
    finally:
        crm.close()
        setup.close()
