"""TLS and SASL for real, on Apache Kafka's own listeners: every Leadflow client, started as a real
``leadflow`` process, over ``SASL_SSL`` with SCRAM-SHA-512 and with PLAIN, and over mutual TLS.

The broker is a :class:`~pipeline.streaming.local_kafka.LocalKafka` node with a ``SASL_SSL``
listener (SCRAM users created at format time, PLAIN users in the listener's JAAS config) and an
``SSL`` listener that requires a client certificate, both with a certificate from a CA made for the
test. A refused login or an untrusted certificate is one line naming the setting, exit 2, from
every client: retrying could never fix it, so no client retries it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.devtools.demo import die_with_parent, free_port, stop_process, wait_ready
from pipeline.streaming.local_kafka import LocalKafka, LocalSecurity
from tests.integration.webhooks.harness import SECRET, Receiver
from tests.support.pki import make_pki

pytestmark = [pytest.mark.integration, pytest.mark.broker("kafka")]

SCRAM = ("SCRAM-SHA-512", "leadflow-scram", "scram-secret-1")
PLAIN = ("PLAIN", "leadflow-plain", "plain-secret-1")
MECHANISMS = {SCRAM[0]: SCRAM, PLAIN[0]: PLAIN}


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka, dict[str, Path]]]:
    home = tmp_path_factory.mktemp("secure-kafka")
    pki = make_pki(home / "pki")
    security = LocalSecurity(cert_file=str(pki["server.pem"]), key_file=str(pki["server.key"]),
                             scram_users={SCRAM[1]: SCRAM[2]}, plain_users={PLAIN[1]: PLAIN[2]},
                             client_ca_file=str(pki["ca.pem"]))
    with LocalKafka(data_dir=home / "kafka", security=security) as kafka:
        yield kafka, pki


def _env(kafka: LocalKafka, pki: dict[str, Path], namespace: str, workdir: Path, mechanism: str = SCRAM[0],
         password: str | None = None, trusted: bool = True) -> dict[str, str]:
    _, user, secret = MECHANISMS[mechanism]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env.update(LEADFLOW_KAFKA=kafka.secure_bootstrap, LEADFLOW_BROKER_PROFILE="kafka",
               LEADFLOW_REPLICATION_FACTOR="1", LEADFLOW_TOPIC_PREFIX=f"{namespace}.", LEADFLOW_APP_ID=namespace,
               LEADFLOW_PARTITIONS="2", LEADFLOW_DATA_DIR=str(workdir / "data"), LEADFLOW_STORE="memory",
               LEADFLOW_KAFKA_SECURITY_PROTOCOL="SASL_SSL", LEADFLOW_KAFKA_SASL_MECHANISM=mechanism,
               LEADFLOW_KAFKA_SASL_USERNAME=user, LEADFLOW_KAFKA_SASL_PASSWORD=password or secret)
    if trusted:
        env["LEADFLOW_KAFKA_SSL_CA_FILE"] = str(pki["ca.pem"])
    return env


def _leadflow(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=env.get("LEADFLOW_DATA_DIR", "."))


def _events(contact: str, prefix: str) -> list[dict[str, object]]:
    start = datetime.now(UTC) - timedelta(minutes=5)
    return [
        {"source": "website", "event_id": f"{prefix}-1", "event_type": "form_submit", "contact_id": contact,
         "occurred_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "properties": {"form_id": "newsletter"}},
        {"source": "website", "event_id": f"{prefix}-2", "event_type": "demo_request", "contact_id": contact,
         "occurred_at": (start + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), "properties": {}},
    ]


def _wait(condition: object, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
    raise AssertionError(f"{what}: not within {timeout:.0f}s\n{tail}")


@pytest.mark.parametrize("mechanism", [SCRAM[0], PLAIN[0]])
def test_every_client_works_over_sasl_ssl(secure_kafka: tuple[LocalKafka, dict[str, Path]], mechanism: str,
                                          tmp_path: Path) -> None:
    kafka, pki = secure_kafka
    namespace = f"sasl{mechanism[:4].lower()}{os.getpid()}"
    (tmp_path / "data").mkdir()
    env = _env(kafka, pki, namespace, tmp_path, mechanism)

    created = _leadflow(["topics"], env)  # kafka-python admin
    assert created.returncode == 0, created.stderr[-3000:]
    assert f"{namespace}.events.website" in created.stdout

    crm = Receiver().start()
    hooks = tmp_path / "hooks.toml"
    hooks.write_text(f'[[subscriptions]]\nname = "crm"\nurl = "{crm.url}"\nsecret = "{SECRET}"\n'
                     'start_from = "earliest"\n[subscriptions.filter]\nbecame_hot = true\n')
    db = tmp_path / "history.db"
    console_port, collector_port = free_port(), free_port()
    out = tmp_path / "up.out"
    # `up --kafka`: worker, sink, collector, webhooks and console as processes, all over SASL_SSL.
    with open(out, "wb") as sink:
        up = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "up", "--kafka", kafka.secure_bootstrap, "--port",
             str(console_port), "--collector-port", str(collector_port), "--data-dir", str(tmp_path / "up"),
             "--db", f"sqlite:///{db}", "--webhooks", str(hooks)],
            stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, preexec_fn=die_with_parent)
    try:
        _wait(lambda: "Leadflow is up" in out.read_text(errors="replace") or up.poll() is not None, 180,
              "leadflow up over SASL_SSL", out)
        assert up.poll() is None, out.read_text()[-4000:]
        found = re.search(r"website:(pk_dev_[0-9a-f]+)", out.read_text())
        assert found, out.read_text()
        key = found.group(1)

        # The collector's producer (aiokafka) publishes what a backend posts.
        request = urllib.request.Request(
            f"http://127.0.0.1:{collector_port}/v1/events/website",
            data=json.dumps(_events("c-http", f"{namespace}-http")).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 202

        # kafka-python's producer: `leadflow produce`.
        events = tmp_path / "events.jsonl"
        events.write_text("".join(json.dumps(e) + "\n" for e in _events("c-file", f"{namespace}-file")))
        produced = _leadflow(["produce", str(events)], env)
        assert produced.returncode == 0, produced.stderr[-3000:]

        # kafka-python's consumer: `leadflow tail` sees both alerts the worker (Faust, aiokafka) published.
        tailed = _leadflow(["tail", "alerts", "--from-beginning", "--max", "2", "--seconds", "120"], env, timeout=180)
        assert tailed.returncode == 0, tailed.stderr[-3000:]
        alerts = [json.loads(line) for line in tailed.stdout.splitlines() if line.startswith("{")]
        assert sorted((a["contact_id"], a["type"]) for a in alerts) == [("c-file", "became_hot"),
                                                                      ("c-http", "became_hot")]

        # The webhook deliverer's consumer delivers both; the sink's consumer stores both.
        _wait(lambda: len({r.delivery_id for r in crm.snapshot()}) >= 2, 120, "two deliveries at the CRM", out)
        assert {json.loads(r.body)["contact_id"] for r in crm.snapshot()} == {"c-file", "c-http"}

        def stored() -> int:
            try:
                with sqlite3.connect(db) as connection:
                    return int(connection.execute("SELECT count(*) FROM alerts").fetchone()[0])
            except sqlite3.Error:
                return 0

        _wait(lambda: stored() >= 2, 120, "two alerts in the history database", out)

        swept = _leadflow(["sweep", "--until", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")], env)
        assert swept.returncode == 0, swept.stderr[-3000:]
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(90)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
        crm.close()
    logs = [out, *(tmp_path / "up" / "logs").glob("*.log")]
    for log in logs:
        assert "Traceback" not in log.read_text(errors="replace"), f"{log}:\n{log.read_text()[-4000:]}"


def test_every_client_works_over_mutual_tls(secure_kafka: tuple[LocalKafka, dict[str, Path]],
                                            tmp_path: Path) -> None:
    kafka, pki = secure_kafka
    namespace = f"mtls{os.getpid()}"
    (tmp_path / "data").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env.update(LEADFLOW_KAFKA=kafka.tls_bootstrap, LEADFLOW_BROKER_PROFILE="kafka", LEADFLOW_REPLICATION_FACTOR="1",
               LEADFLOW_TOPIC_PREFIX=f"{namespace}.", LEADFLOW_APP_ID=namespace, LEADFLOW_PARTITIONS="2",
               LEADFLOW_DATA_DIR=str(tmp_path / "data"), LEADFLOW_STORE="memory",
               LEADFLOW_KAFKA_SECURITY_PROTOCOL="SSL", LEADFLOW_KAFKA_SSL_CA_FILE=str(pki["ca.pem"]),
               LEADFLOW_KAFKA_SSL_CERT_FILE=str(pki["client.pem"]), LEADFLOW_KAFKA_SSL_KEY_FILE=str(pki["client.key"]))
    created = _leadflow(["topics"], env)
    assert created.returncode == 0, created.stderr[-3000:]

    web_port = free_port()
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(  # Faust, aiokafka (ingest, changelog, health probe), kafka-python admin
            [sys.executable, "-m", "pipeline.cli", "worker", "--web-port", str(web_port)], env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
    try:
        try:
            wait_ready(web_port, worker, timeout=120)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{log_path.read_text()[-4000:]}") from exc
        events = tmp_path / "events.jsonl"
        events.write_text("".join(json.dumps(e) + "\n" for e in _events("c-mtls", namespace)))
        produced = _leadflow(["produce", str(events)], env)
        assert produced.returncode == 0, produced.stderr[-3000:]
        tailed = _leadflow(["tail", "alerts", "--from-beginning", "--max", "1", "--seconds", "90"], env, timeout=150)
        assert tailed.returncode == 0, tailed.stderr[-3000:]
        [alert] = [json.loads(line) for line in tailed.stdout.splitlines() if line.startswith("{")]
        assert (alert["contact_id"], alert["type"]) == ("c-mtls", "became_hot")
    finally:
        stop_process(worker)
    assert "Traceback" not in log_path.read_text()

    # Without a client certificate the broker refuses the handshake: one line, exit 2.
    client_files = ("LEADFLOW_KAFKA_SSL_CERT_FILE", "LEADFLOW_KAFKA_SSL_KEY_FILE")
    anonymous = {k: v for k, v in env.items() if k not in client_files}
    refused = _leadflow(["topics"], anonymous)
    assert refused.returncode == 2, (refused.returncode, refused.stderr[-3000:])
    assert "Traceback" not in refused.stderr and "LEADFLOW_KAFKA_SSL_CERT_FILE" in refused.stderr


def _commands(workdir: Path, hooks: Path, events: Path) -> dict[str, list[str]]:
    """Every client, as an operator starts it (long-running ones must stop by themselves: exit 2)."""
    return {
        "topics": ["topics"],
        "produce": ["produce", str(events)],
        "tail": ["tail", "alerts", "--seconds", "5"],
        "sweep": ["sweep", "--until", "2026-01-01T00:00:00Z"],
        "worker": ["worker", "--web-port", str(free_port())],
        "sink": ["sink", "--db", f"sqlite:///{workdir / 'sink.db'}", "--web-port", str(free_port())],
        "collector": ["collector", "--port", str(free_port())],
        "webhooks": ["webhooks", "--config", str(hooks), "--web-port", str(free_port())],
        "up": ["up", "--kafka", "KAFKA", "--port", str(free_port()), "--collector-port", str(free_port()),
               "--data-dir", str(workdir / "up"), "--db", f"sqlite:///{workdir / 'up.db'}"],
    }


@pytest.mark.parametrize("problem", ["wrong password", "unknown user", "untrusted certificate"])
def test_a_refused_login_or_certificate_is_one_line_and_exit_2(
        secure_kafka: tuple[LocalKafka, dict[str, Path]], problem: str, tmp_path: Path) -> None:
    kafka, pki = secure_kafka
    namespace = f"refused{os.getpid()}"
    (tmp_path / "data").mkdir()
    if problem == "wrong password":
        env = _env(kafka, pki, namespace, tmp_path, password="not-the-password")
        setting = "LEADFLOW_KAFKA_SASL_PASSWORD"
    elif problem == "unknown user":
        env = _env(kafka, pki, namespace, tmp_path)
        env["LEADFLOW_KAFKA_SASL_USERNAME"], setting = "nobody", "LEADFLOW_KAFKA_SASL_USERNAME"
    else:
        env, setting = _env(kafka, pki, namespace, tmp_path, trusted=False), "LEADFLOW_KAFKA_SSL_CA_FILE"
    env["LEADFLOW_COLLECTOR_WRITE_KEYS"] = "website:pk_test_refused"
    hooks = tmp_path / "hooks.toml"
    hooks.write_text('[[subscriptions]]\nname = "crm"\nurl = "http://127.0.0.1:9/hook"\nsecret = "s3cret-s3cret"\n')
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in _events("c-refused", namespace)))
    for name, args in _commands(tmp_path, hooks, events).items():
        args = [kafka.secure_bootstrap if a == "KAFKA" else a for a in args]
        done = _leadflow(args, env, timeout=90)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2, (name, done.returncode, done.stderr[-3000:])
        assert "Traceback" not in done.stderr + done.stdout, (name, done.stderr[-3000:])
        assert len(lines) == 1 and setting in lines[0], (name, lines)
        assert "not-the-password" not in done.stderr and MECHANISMS[SCRAM[0]][2] not in done.stderr, name
