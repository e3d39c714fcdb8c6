"""End to end on the real broker (issue 13): a hot lead nobody calls escalates at respond_by, and the
``response_overdue`` alert reaches the sales manager's subscription (``response_overdue = true``)
and only it; the CRM subscribed to ``became_hot`` gets the alert, not the escalation."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.kafka.tools import publish_sweep
from tests.support.brokers import TestBroker

from ..streaming.harness import Pipeline
from .harness import SECRET, Receiver, Setup, wait_until

pytestmark = pytest.mark.integration


def test_the_escalation_goes_to_the_sales_manager(broker: TestBroker, namespace: str, tmp_path: Path) -> None:
    pipeline = Pipeline(broker, namespace, tmp_path, sweep_clock="event")
    setup = Setup(broker, namespace, tmp_path)
    crm, manager = Receiver().start(), Receiver().start()
    try:
        config = setup.config(f"""
[[subscriptions]]
name = "crm"
url = "{crm.url}"
secret = "{SECRET}"
start_from = "earliest"
filter = {{ became_hot = true }}

[[subscriptions]]
name = "sales-manager"
url = "{manager.url}"
secret = "{SECRET}"
start_from = "earliest"
filter = {{ response_overdue = true }}
""")
        hot_at = datetime.now(UTC) - timedelta(hours=2)  # respond_by (1 h later) has passed
        demo = {"source": "website", "event_id": "esc-1", "event_type": "demo_request", "contact_id": "c-esc",
                "occurred_at": hot_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "properties": {}}
        with pipeline.worker() as worker, setup.deliverer(config):
            worker.ready()
            pipeline.publish([json.dumps(demo).encode()])
            wait_until(lambda: len(crm.snapshot()) >= 1, 90, "the became_hot alert at the CRM")
            publish_sweep(pipeline.settings, time.time_ns() // 1000)  # event time reaches now
            wait_until(lambda: len(manager.snapshot()) >= 1, 90, "the escalation at the sales manager")
            time.sleep(2)  # nothing else arrives
        [escalation] = manager.snapshot()
        assert escalation.verified() and escalation.headers["Leadflow-Event"] == "lead.response_overdue"
        body = json.loads(escalation.body)
        [hot] = crm.snapshot()
        alert = json.loads(hot.body)
        assert hot.headers["Leadflow-Event"] == "lead.became_hot" and alert["type"] == "became_hot"
        assert (body["type"], body["original_alert_id"], body["occurred_at"]) == (
            "response_overdue", alert["alert_id"], alert["respond_by"]
        )
        assert escalation.delivery_id == body["alert_id"] and body["waited_seconds"] == 3600.0
    finally:
        crm.close()
        manager.close()
        setup.close()
