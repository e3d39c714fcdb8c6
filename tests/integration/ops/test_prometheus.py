"""A live worker fed with traffic, scraped by a real Prometheus server; the worker's health endpoints.

Everything is real: the embedded broker, a ``leadflow worker`` process, kafka-python producers,
``/usr/bin/prometheus`` on loopback (1 s scrapes, the shipped alert rules loaded) and ``promtool``.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from pipeline.state_machine import SOURCES, builtin_model
from pipeline.streaming.embedded_broker import EmbeddedBroker, free_port
from tests.support.brokers import TestBroker

from ...unit.ops.promql import ALERT_RULES, PROMTOOL, dashboard_expressions, metric_names
from ..streaming.harness import Pipeline

pytestmark = pytest.mark.integration

PROMETHEUS = Path("/usr/bin/prometheus")
SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "journeys.jsonl"
#: Metrics of other processes (sink, collector, webhooks): no series from a lone worker.
OTHER_PROCESSES = ("leadflow_sink_", "leadflow_collector_", "leadflow_webhook_")


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Prometheus:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        status, body = get(f"{self.base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
        answer = orjson.loads(body)
        assert status == 200 and answer["status"] == "success", f"{expr}: {answer}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def rules(self) -> list[dict[str, Any]]:
        answer = orjson.loads(get(f"{self.base}/api/v1/rules")[1])
        return [rule for group in answer["data"]["groups"] for rule in group["rules"]]


@contextlib.contextmanager
def prometheus(tmp_path: Path, worker_port: int) -> Iterator[Prometheus]:
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERT_RULES)],
        "scrape_configs": [{"job_name": "leadflow-worker",
                            "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]}],
    }))
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        server = Prometheus(port)
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
            with contextlib.suppress(OSError):
                if get(f"{server.base}/-/ready", timeout=1)[0] == 200:
                    break
            assert time.monotonic() < deadline, "Prometheus not ready within 30 s"
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_for(what: str, check: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s (last: {result!r})"
        time.sleep(0.5)


def test_prometheus_scrapes_a_live_worker(broker: TestBroker, namespace: str, tmp_path: Path) -> None:
    if not PROMETHEUS.exists() or PROMTOOL is None:
        pytest.skip("Prometheus not installed (Debian package `prometheus`; `make system-deps` installs it)")
    pipeline = Pipeline(broker, namespace, tmp_path, sweep_interval=0.5)
    lines = [line for line in SAMPLE.read_bytes().splitlines() if b'"source"' in line]
    with pipeline.worker() as worker, prometheus(tmp_path, worker.settings.web_port) as server:
        worker.ready()
        base = f"http://127.0.0.1:{worker.settings.web_port}"

        # /readyz says ready, and why, in JSON.
        status, body = get(f"{base}/readyz")
        report = orjson.loads(body)
        assert status == 200 and report["ready"] and report["problems"] == []
        assert report["checks"] == {"broker_reachable": True, "partitions_assigned": True, "table_recovered": True}
        assert orjson.loads(get(f"{base}/healthz")[1]) == {"alive": True}

        # Paced traffic while Prometheus scrapes every second.
        feeder = threading.Thread(target=pipeline.publish, args=(lines,), kwargs={"rate": 250.0}, daemon=True)
        feeder.start()
        rate = wait_for(
            "non-zero rate(leadflow_events_consumed_total[1m]) in Prometheus",
            lambda: [r for r in server.query("sum(rate(leadflow_events_consumed_total[1m]))")
                     if float(r["value"][1]) > 0],
        )
        assert float(rate[0]["value"][1]) > 0
        wait_for("events/s by source for each source", lambda: {
            r["metric"]["source"] for r in server.query("sum by (source) (rate(leadflow_events_consumed_total[1m]))")
        } == set(SOURCES))  # every family the sample feeds: website, email, purchase and sales
        feeder.join(60)
        assert not feeder.is_alive()

        # promtool lints the live exposition (after traffic: every labelled series exists).
        status, exposition = get(f"{base}/metrics")
        assert status == 200
        text = exposition.decode()
        assert "leadflow_transitions_total{" in text and 'leadflow_contacts{stage="' in text
        assert 'leadflow_consumer_lag{partition="0",topic="' in text
        lint = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        assert lint.returncode == 0, lint.stdout + lint.stderr

        # Contacts by stage and temperature: what the worker's states (its changelog) say.
        model = builtin_model()

        def contacts() -> bool:
            expected = Counter((model.stages[s.stage], model.bands[s.band].name)
                               for s in pipeline.contact_states().values())
            gauge = Counter({(r["metric"]["stage"], r["metric"]["temperature"]): int(float(r["value"][1]))
                             for r in server.query("leadflow_contacts")})
            return +gauge == expected and sum(expected.values()) > 0

        wait_for("leadflow_contacts = the contact states in the changelog", contacts)

        # Every dashboard query runs; those over worker metrics return data from this worker.
        for where, expr in dashboard_expressions().items():
            result = server.query(expr)
            if not any(name.startswith(OTHER_PROCESSES) for name in metric_names(expr)):
                assert result, f"{where}: no data for {expr!r}"

        # The shipped alert rules load and evaluate without errors against real series.
        rules = wait_for("every alert rule evaluated", lambda: (
            (r := server.rules()) and all(rule.get("lastEvaluation", "").startswith("20") for rule in r) and r))
        assert {rule["name"] for rule in rules} >= {"LeadflowNoEvents", "LeadflowConsumerLagGrowing"}
        assert all(rule["health"] == "ok" for rule in rules), [(r["name"], r.get("lastError")) for r in rules]
        firing = {rule["name"] for rule in rules if rule["state"] != "inactive"}
        assert "LeadflowNoEvents" not in firing and "LeadflowTargetDown" not in firing


def test_readyz_reports_an_unreachable_broker(namespace: str, tmp_path: Path) -> None:
    """A broker that goes away turns /readyz into 503 with a JSON body naming the broker."""
    with EmbeddedBroker(log_dir=tmp_path / "broker") as own_broker:
        pipeline = Pipeline(own_broker, namespace, tmp_path)
        with pipeline.worker() as worker:
            worker.ready()
            url = f"http://127.0.0.1:{worker.settings.web_port}/readyz"
            assert get(url)[0] == 200
            own_broker.stop()

            def not_ready() -> dict[str, Any] | None:
                status, body = get(url, timeout=10)
                report: dict[str, Any] = orjson.loads(body)
                return report if status == 503 else None

            report = wait_for("/readyz answering 503", not_ready, timeout=30)
            assert report["ready"] is False
            assert report["checks"]["broker_reachable"] is False
            expected = f"broker: {own_broker.bootstrap} unreachable"
            assert any(problem.startswith(expected) for problem in report["problems"]), report
            assert orjson.loads(get(f"http://127.0.0.1:{worker.settings.web_port}/healthz")[1]) == {"alive": True}
