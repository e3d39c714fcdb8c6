"""The shipped deployment: docker-compose.yml, Prometheus config and alert rules, Grafana
provisioning and dashboard. No Docker engine is needed: the compose file is checked by the
``docker-compose config`` client when it is installed and always by its structure."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .promql import (
    ALERT_RULES,
    ALERT_TESTS,
    COMPOSE,
    DASHBOARDS,
    DEPLOY,
    PROMETHEUS_CONFIG,
    PROMETHEUS_OWN,
    PROMTOOL,
    PROMTOOL_MISSING,
    ROOT,
    dashboard_expressions,
    exported_names,
    metric_names,
    rule_expressions,
)

LEADFLOW_SERVICES = ("init", "worker", "sink", "collector")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


# ------------------------------------------------------------------------------------- compose


def test_compose_has_every_service_of_the_deployment(compose: dict[str, Any]) -> None:
    assert {"kafka", "postgres", "init", "worker", "sink", "prometheus", "grafana"} <= set(services(compose))


def test_every_image_is_pinned_to_a_version(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        image = service.get("image")
        assert image, f"service {name} has no image"
        repository, _, tag = image.rpartition(":")
        assert repository and tag, f"service {name}: image {image!r} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"service {name}: {image!r} is not a pinned version"
    assert services(compose)["kafka"]["image"].startswith("apache/kafka:"), "the official Apache Kafka image"
    assert services(compose)["postgres"]["image"].startswith("postgres:15.")


def test_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    env = environment(services(compose)["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"]


def test_long_running_services_have_healthchecks(compose: dict[str, Any]) -> None:
    for name in ("kafka", "postgres", "worker", "sink", "collector", "prometheus", "grafana"):
        check = services(compose)[name].get("healthcheck")
        assert check and check.get("test"), f"service {name} has no healthcheck"


def test_startup_order_waits_for_health_and_the_init_job(compose: dict[str, Any]) -> None:
    svc = services(compose)
    assert svc["init"]["depends_on"] == {"kafka": {"condition": "service_healthy"},
                                         "postgres": {"condition": "service_healthy"}}
    assert svc["init"]["restart"] == "no"
    init_command = " ".join(svc["init"].get("entrypoint") or svc["init"].get("command"))
    assert "leadflow topics" in init_command and "leadflow db upgrade" in init_command
    for name in ("worker", "sink", "collector"):
        assert svc[name]["depends_on"]["init"] == {"condition": "service_completed_successfully"}, name


def test_two_workers_and_the_sink_run_the_leadflow_image(compose: dict[str, Any]) -> None:
    svc = services(compose)
    assert svc["worker"]["deploy"]["replicas"] == 2
    assert svc["worker"]["command"][0] == "worker"
    assert svc["sink"]["command"] == ["sink"]
    images = {svc[name]["image"] for name in LEADFLOW_SERVICES}
    assert len(images) == 1, f"one leadflow image for every process, got {images}"
    for name in LEADFLOW_SERVICES:
        assert svc[name].get("build") == ".", f"{name} builds the Dockerfile at the root"
    assert environment(svc["sink"])["LEADFLOW_DB"].startswith("postgresql+psycopg://")
    assert environment(svc["worker"])["LEADFLOW_WEB_BIND"] == "0.0.0.0", "Prometheus scrapes from another container"


def test_compose_mounts_the_shipped_prometheus_and_grafana_files(compose: dict[str, Any]) -> None:
    for name in ("prometheus", "grafana"):
        for volume in services(compose)[name]["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"


def test_leadflow_variables_in_compose_are_documented() -> None:
    """Every LEADFLOW_* variable the deployment sets is explained in a configuration table of the
    docs (docs/operations.md, or the collector's in docs/collector.md), which the README links."""
    tables = "".join((ROOT / "docs" / page).read_text() for page in ("operations.md", "collector.md"))
    rows = [line for line in tables.splitlines() if line.startswith("|")]
    for variable in sorted(set(re.findall(r"\bLEADFLOW_[A-Z_]+\b", COMPOSE.read_text()))):
        assert any(f"`{variable}`" in row for row in rows), (
            f"{variable} is set in docker-compose.yml but no configuration table in docs/ explains it")


def test_dockerfile_pins_python_and_installs_the_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base.group(1)), base
    assert re.search(r"pip install \"?\.(\[[a-z,]+\])?\"?", text)
    assert re.search(r"^USER\s+(?!root)\w+", text, re.MULTILINE), "the image does not run as root"


def _compose_client() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_docker_compose_config_accepts_the_file() -> None:
    """The Compose client itself validates the file (offline: `config` needs no engine)."""
    client = _compose_client()
    if client is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed (structure checked above)")
    result = subprocess.run([*client, "-f", str(COMPOSE), "config", "-q"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------------------------------------------------------- prometheus


def _promtool(*args: str, cwd: Path = ROOT, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    if PROMTOOL is None:
        pytest.skip(PROMTOOL_MISSING)
    return subprocess.run([PROMTOOL, *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60)


def test_promtool_check_config() -> None:
    result = _promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", str(ALERT_RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_fire_when_they_should_promtool_test_rules() -> None:
    result = _promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_the_issue_asks_for_exist() -> None:
    assert {
        "LeadflowConsumerLagGrowing", "LeadflowDeadLetterRateHigh", "LeadflowNoEvents", "LeadflowTargetDown",
        "LeadflowNoWorkerUp", "LeadflowProcessingLatencyHigh", "LeadflowResponseOverdueRateHigh",
    } <= set(rule_expressions())
    for group in yaml.safe_load(ALERT_RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_prometheus_scrapes_every_leadflow_process() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"leadflow-worker", "leadflow-sink", "leadflow-collector"} <= set(jobs)
    assert jobs["leadflow-worker"]["dns_sd_configs"][0]["names"] == ["worker"], "every replica, by the service's DNS"


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool parses every dashboard query (as recording rules in a scratch file)."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(dashboard_expressions().values())
    ]}]}
    scratch = tmp_path / "dashboard-queries.yml"
    scratch.write_text(yaml.safe_dump(rules))
    result = _promtool("check", "rules", str(scratch))
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------ metric names


def test_every_query_uses_only_metrics_the_code_exports() -> None:
    exported = exported_names()
    queries = {**{f"alert {k}": v for k, v in rule_expressions().items()}, **dashboard_expressions()}
    assert len(queries) > 20
    unknown = {}
    for where, expr in queries.items():
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        missing = names - exported - PROMETHEUS_OWN
        if missing:
            unknown[where] = sorted(missing)
    assert not unknown, f"queries use metrics no Leadflow process exports: {unknown}"


def test_metric_name_extraction() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, job) (rate(leadflow_x_seconds_bucket{kind="a b",job=~"w.*"}[5m]))) '
            '> 1e3 and on (job) up offset 5m or vector(0) unless absent(leadflow_y_total)')
    assert metric_names(expr) == {"leadflow_x_seconds_bucket", "up", "leadflow_y_total"}


def test_the_issue_s_metrics_are_exported() -> None:
    exported = exported_names()
    for name in (
        "leadflow_events_consumed_total", "leadflow_events_dead_lettered_total", "leadflow_duplicates_skipped_total",
        "leadflow_transitions_total", "leadflow_alerts_total", "leadflow_processing_latency_seconds_bucket",
        "leadflow_event_time_lag_seconds_bucket", "leadflow_consumer_lag", "leadflow_contacts",
        "leadflow_cooling_sweep_duration_seconds_bucket", "leadflow_cooling_contacts_due_total",
        "leadflow_sink_batch_size_bucket", "leadflow_sink_batch_duration_seconds_bucket",
        "leadflow_sink_failures_total", "leadflow_sales_contacts_total",
        "leadflow_time_to_first_contact_seconds_bucket",
    ):
        assert name in exported, name


# -------------------------------------------------------------------------------------- grafana


def test_grafana_provisioning_points_at_the_dashboards_and_prometheus(compose: dict[str, Any]) -> None:
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/leadflow.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services(compose)["grafana"]["volumes"]}
    assert (ROOT / mounts[path]).resolve() == DASHBOARDS[0].parent.resolve(), "provider path is the mounted folder"
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"]
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == source["uid"], panel["title"]


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    queries = " ".join(dashboard_expressions().values())
    for needle in (
        "sum by (source) (rate(leadflow_events_consumed_total",  # events/s by source
        "leadflow_transitions_total{kind=\"stage\"",  # transitions by stage
        "leadflow_alerts_total{type=\"became_hot\"}",  # hot alerts per minute
        "histogram_quantile(0.99, sum by (le) (rate(leadflow_processing_latency_seconds_bucket",  # p99 latency
        "leadflow_event_time_lag_seconds_bucket",  # event-time lag
        "sum by (error_code) (rate(leadflow_events_dead_lettered_total",  # dead-letter rate by code
        "sum by (topic) (leadflow_consumer_lag)",  # consumer lag
    ):
        assert needle in queries, needle
