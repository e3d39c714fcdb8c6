"""A real ``leadflow collector`` process on the embedded broker, an HTTP client, Kafka readers.

Nothing is mocked: the collector is started as an operator would start it (``python -m
pipeline.cli collector`` with ``LEADFLOW_*`` variables), requests go over loopback TCP, and what
arrived is read back from the broker with kafka-python.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from pipeline.collector.config import CollectorConfig
from pipeline.config.settings import Settings
from pipeline.devtools.demo import stop_process
from pipeline.streaming.embedded_broker import die_with_parent, free_port

WEBSITE_KEY = "pk_website_test_0001"
EMAIL_KEY = "sk_email_test_0002"
ALLOWED_ORIGIN = "https://www.example.com"


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


class Collector:
    """A collector child process; stopped (SIGTERM, then SIGKILL) when the context exits."""

    def __init__(self, settings: Settings, config: CollectorConfig, log_path: Path) -> None:
        self.settings = settings
        self.config = config.with_(port=config.port or free_port())
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self.config.port

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Collector:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
        env.update(self.settings.to_env())
        env.update(self.config.to_env())
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "collector", "--loglevel", "info"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent,
            )
        return self

    def stop(self) -> int | None:
        if self.process is not None:
            stop_process(self.process)
            return self.process.returncode
        return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_alive(self, timeout: float = 20.0) -> None:
        self._wait("/healthz", timeout)

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        return self._wait("/readyz", timeout)

    def _wait(self, path: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = "no answer"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the collector exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                reply = self.request("GET", path, timeout=5)
                last = reply.json
                if reply.status == 200:
                    return dict(last)
            except OSError as exc:
                last = exc
            time.sleep(0.1)
        raise TimeoutError(f"collector {path} not OK after {timeout:.0f}s: {last}\n{self.log()[-3000:]}")

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def post(self, source: str, body: bytes, content_type: str = "application/json", key: str | None = WEBSITE_KEY,
             **headers: str) -> Reply:
        sent = {"Content-Type": content_type, **headers}
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        return self.request("POST", f"/v1/events/{source}", body, sent)


@contextlib.contextmanager
def running_collector(settings: Settings, config: CollectorConfig, log_path: Path, ready: bool = True
                      ) -> Iterator[Collector]:
    collector = Collector(settings, config, log_path).start()
    try:
        if ready:
            collector.wait_ready()
        else:
            collector.wait_alive()
        yield collector
    finally:
        collector.stop()


def envelope(event_id: str, event_type: str = "page_view", **fields: Any) -> dict[str, Any]:
    """A valid website envelope (occurred a minute ago)."""
    occurred = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    base: dict[str, Any] = {"event_id": event_id, "event_type": event_type, "anonymous_id": f"anon-{event_id}",
                            "occurred_at": occurred}
    if event_type == "page_view":
        base["properties"] = {"url": f"https://www.example.com/{event_id}"}
    base.update(fields)
    return base


def _consumer(settings: Settings, topic: str) -> tuple[KafkaConsumer, list[TopicPartition]]:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False, group_id=None,
                             fetch_max_wait_ms=settings.broker.fetch_max_wait_ms)
    deadline = time.monotonic() + 10
    partitions = consumer.partitions_for_topic(topic) or set()
    while not partitions and time.monotonic() < deadline:
        time.sleep(0.1)
        partitions = consumer.partitions_for_topic(topic) or set()
    assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assignment)
    consumer.seek_to_beginning(*assignment)
    return consumer, assignment


def read_records(settings: Settings, topic: str, expect: int, timeout: float = 20.0, quiet: float = 0.5
                 ) -> list[tuple[bytes | None, dict[str, Any]]]:
    """``(key, envelope)`` of every record of ``topic``: waits until ``expect`` arrived, then until
    nothing more arrives for ``quiet`` seconds (so that extra records would be seen too)."""
    consumer, _ = _consumer(settings, topic)
    records: list[tuple[bytes | None, dict[str, Any]]] = []
    try:
        deadline = time.monotonic() + timeout
        last_seen = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=100)
            for messages in batch.values():
                records.extend((m.key, orjson.loads(m.value)) for m in messages)
            if batch:
                last_seen = time.monotonic()
            elif len(records) >= expect and time.monotonic() - last_seen >= quiet:
                return records
        raise TimeoutError(f"{topic}: {len(records)} records after {timeout}s, expected {expect}")
    finally:
        consumer.close()


class LiveReader(threading.Thread):
    """Reads ``topic`` continuously into ``event_ids`` until :meth:`finish` (survives a dying broker)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__(daemon=True, name=f"read-{topic}")
        self.settings, self.topic = settings, topic
        self.event_ids: set[str] = set()
        self.lock = threading.Lock()
        self._halt = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        consumer, _ = _consumer(self.settings, self.topic)
        self.ready.set()
        try:
            while not self._halt.is_set():
                try:
                    batch = consumer.poll(timeout_ms=50)
                except Exception:  # the broker went away: keep trying until told to stop
                    time.sleep(0.05)
                    continue
                ids = [orjson.loads(m.value)["event_id"] for messages in batch.values() for m in messages]
                with self.lock:
                    self.event_ids.update(ids)
        finally:
            with contextlib.suppress(Exception):
                consumer.close(autocommit=False)

    def seen(self) -> set[str]:
        with self.lock:
            return set(self.event_ids)

    def wait_for(self, ids: set[str], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ids <= self.seen():
                return
            time.sleep(0.05)
        raise AssertionError(f"{len(ids - self.seen())} accepted events never arrived in {self.topic}")

    def finish(self) -> None:
        self._halt.set()
        self.join(10)
