"""The sales loop end to end (issue 13, "done when"): a sales tool POSTs ``lead_contacted`` to the
collector and ``leadflow contact`` shows the alert answered. Real processes on the embedded broker:
the collector, a worker and the history sink writing to SQLite."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from pipeline.cli.main import main as run
from pipeline.storage import open_history_store, upgrade_database
from pipeline.storage.reports.types import ContactHistory
from pipeline.streaming.embedded_broker import free_port
from tests.support.brokers import TestBroker

from .collector.conftest import collector_config
from .collector.harness import WEBSITE_KEY, running_collector
from .storage.sink_harness import sink_process
from .streaming.harness import Pipeline

pytestmark = pytest.mark.integration
SALES_KEY = "sk_sales_e2e_0004"


def _wait_for(history: Callable[[], ContactHistory | None], done: Callable[[ContactHistory], bool], what: str,
              timeout: float = 120.0) -> ContactHistory:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = history()
        if found is not None and done(found):
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what}: not stored after {timeout}s (last: {history()})")


def test_a_sales_tool_answers_an_alert_through_the_collector(
    broker: TestBroker, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = Pipeline(broker, namespace, tmp_path, sweep_clock="event")
    db_url = f"sqlite:///{tmp_path / 'history.db'}"
    upgrade_database(db_url)

    def history() -> ContactHistory | None:
        with open_history_store(db_url) as store:
            return store.contact_timeline("c-e2e")

    config = collector_config(write_keys={"website": (WEBSITE_KEY,), "sales": (SALES_KEY,)})
    hot_at = datetime.now(UTC) - timedelta(minutes=20)
    demo = {"event_id": "e2e-demo", "event_type": "demo_request", "contact_id": "c-e2e",
            "occurred_at": hot_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    call = {"event_id": "e2e-call", "event_type": "lead_contacted", "contact_id": "c-e2e",
            "occurred_at": (hot_at + timedelta(minutes=12)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "properties": {"channel": "call", "rep_id": "rep-1"}}
    sink_settings = pipeline.settings.with_(db_url=db_url, web_port=free_port())
    with (
        running_collector(pipeline.settings, config, tmp_path / "collector.log") as collector,
        sink_process(sink_settings, tmp_path / "sink.log"),
        pipeline.worker() as worker,
    ):
        worker.ready()
        assert collector.post("website", orjson.dumps(demo)).status == 202
        raised = _wait_for(history, lambda h: any(a.alert.type == "became_hot" for a in h.alerts), "the alert")
        assert raised.alerts[0].answered_at is None
        assert collector.post("sales", orjson.dumps(call), key=SALES_KEY).status == 202
        answered = _wait_for(history, lambda h: h.alerts[0].answered_at is not None, "the answer")
    assert answered.alerts[0].response_seconds == 720.0 and answered.alerts[0].overdue_at is None
    assert run(["contact", "c-e2e", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert "answered " in out and "(after 12 min)" in out
    assert "SALES lead_contacted (call by rep-1) answered alert" in out and "in time; event e2e-call" in out
