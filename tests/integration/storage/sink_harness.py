"""A ``leadflow sink`` process under test, the records it is fed, and a private PostgreSQL server.

Everything is real: the embedded broker, kafka-python producers, the sink started exactly as an
operator starts it, and PostgreSQL servers (the shared one, or a private one that a test may stop).
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from pipeline.config.settings import Settings
from pipeline.offline.replay import read_lines, replay
from pipeline.state_machine import builtin_model
from pipeline.state_machine.clock import parse_rfc3339
from pipeline.streaming.embedded_broker import free_port
from tests.support.brokers import TestBroker, broker_settings

SAMPLE = Path(__file__).parents[3] / "samples" / "journeys.jsonl"
UNTIL = parse_rfc3339("2026-11-01T00:00:00Z")  # the sample's cooling fires up to here
RECEIVED_AT = parse_rfc3339("2026-11-27T00:00:00Z")


def sample_outputs() -> dict[str, list[bytes]]:
    """The replay of the shipped sample: its transitions, alerts and contact snapshots (JSON lines)."""
    out, alerts, contacts = io.BytesIO(), io.BytesIO(), io.BytesIO()
    with open(SAMPLE, "rb") as stream:
        replay(read_lines(stream), builtin_model(), received_at=RECEIVED_AT, until=UNTIL, out=out, alerts=alerts,
               contacts=contacts)
    return {name: buffer.getvalue().splitlines() for name, buffer in
            (("transitions", out), ("alerts", alerts), ("contacts", contacts))}


def sink_settings(broker: TestBroker, namespace: str, db_url: str, **overrides: Any) -> Settings:
    return broker_settings(broker, topic_prefix=f"{namespace}.", app_id=namespace,
                           partitions=4, db_url=db_url, web_port=free_port(), **overrides)


def publish(settings: Settings, topic: str, lines: list[bytes]) -> None:
    """Publish records keyed by their contact, as the worker does, and wait for the acks."""
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=5)
    try:
        for line in lines:
            try:
                key = str(json.loads(line)["contact_id"]).encode()
            except (ValueError, KeyError, TypeError):
                key = b"garbage"
            producer.send(topic, line, key=key)
        producer.flush(30)
    finally:
        producer.close()


class SinkProcess:
    """A running ``leadflow sink``: its /stats, /readyz and /metrics, and its log."""

    def __init__(self, process: subprocess.Popen[bytes], settings: Settings, log: Path) -> None:
        self.process, self.settings, self.log = process, settings, log
        self.base = f"http://127.0.0.1:{settings.web_port}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def stats(self) -> dict[str, Any]:
        status, body = self.get("/stats")
        assert status == 200
        return json.loads(body)  # type: ignore[no-any-return]

    def metric(self, name: str) -> float:
        """The sum of every sample of ``name`` on /metrics (0 when absent)."""
        _, body = self.get("/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_for(self, condition: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        stats: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the sink exited ({self.process.returncode}):\n{self.tail()}"
            with contextlib.suppress(OSError):
                stats = self.stats()
                if condition(stats):
                    return stats
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; last stats {stats}\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def sink_process(settings: Settings, log: Path) -> Iterator[SinkProcess]:
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "sink", "--loglevel", "info"],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    sink = SinkProcess(process, settings, log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the sink exited ({process.returncode}):\n{sink.tail()}"
            with contextlib.suppress(OSError):
                if sink.get("/healthz")[0] == 200:
                    break
            time.sleep(0.2)
        yield sink
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class PrivatePostgres:
    """A PostgreSQL server of this test's own (``initdb`` + ``pg_ctl``) on a free loopback port,
    so a test can stop and start it while the shared server stays up."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found and shutil.which("initdb") is None:
            raise RuntimeError("initdb not found (Debian: postgresql)")
        self.bin = Path(found[-1]).parent if found else Path(shutil.which("initdb") or "").parent
        # Its own directory under /tmp: pytest's tmp_path is private to root, and the server runs as
        # the postgres user when the tests run as root (PostgreSQL refuses root).
        self.workdir = Path(tempfile.mkdtemp(prefix="leadflow-pg-"))
        self.data = self.workdir / "pgdata"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.workdir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as_postgres, str(self.bin / tool), *args], check=True, capture_output=True,
                       timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.workdir / "postgres.log"),
                  "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.workdir, ignore_errors=True)
