"""Webhook delivery under test: real HTTP receivers on loopback, ``leadflow webhooks`` processes, and
alert / transition records published to the real broker with kafka-python.

A :class:`Receiver` is an aiohttp server in a thread of its own. It records every request
(headers, raw body, arrival order) and answers through a behaviour the test can switch at any
time: ``ok``, ``fail`` (a status), or ``hold`` (the request waits until the test releases it).
It can be started and stopped on a fixed port to play a receiver that goes down and comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web
from kafka import KafkaProducer

from pipeline.config.settings import Settings
from pipeline.config.topics import TopicNames
from pipeline.devtools.demo import stop_process, wait_ready
from pipeline.kafka.topics import ensure_topics
from pipeline.state_machine import Alert, AlertReason, FirstTouch, Transition
from pipeline.streaming.embedded_broker import die_with_parent, free_port
from pipeline.webhooks.service import ensure_deadletter_topic
from pipeline.webhooks.signature import verify
from tests.support.brokers import TestBroker, broker_settings
from tests.support.kafka import read_topic

SECRET = "whsec_test_0123456789abcdef"


@dataclass(frozen=True)
class Request:
    headers: dict[str, str]
    body: bytes
    arrived: int  # position among all requests this receiver got
    status: int | None  # what the receiver answered (None: never answered, e.g. held until the client left)

    @property
    def delivery_id(self) -> str:
        return self.headers["Leadflow-Delivery-Id"]

    def verified(self, secret: str = SECRET, tolerance: float = 300) -> bool:
        verify(secret, self.body, self.headers.get("Leadflow-Signature"), tolerance=tolerance)
        return True


class Receiver:
    """A sales tool's webhook endpoint on 127.0.0.1, in a background thread."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/leadflow"
        self.requests: list[Request] = []
        self.mode = "ok"
        self.fail_status = 500
        self.fail_body = "receiver failing"
        self.answer_first: int | None = None  # answer this many requests normally, then hold the rest
        self._lock = threading.Lock()
        self._arrivals = 0
        self._loop = asyncio.new_event_loop()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name=f"receiver-{self.port}")
        self._thread.start()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            arrived = self._arrivals
            self._arrivals += 1
            hold = self.mode == "hold" or (self.answer_first is not None and arrived >= self.answer_first)
        status: int | None = None
        try:
            if hold:
                await self._release.wait()
            status = self.fail_status if self.mode == "fail" else 200
            text = self.fail_body if status >= 300 else "ok"
            return web.Response(status=status, text=text)
        finally:
            with self._lock:
                self.requests.append(Request(dict(request.headers), body, arrived, status))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def start(self) -> Receiver:
        async def start() -> None:
            app = web.Application()
            app.router.add_post("/hooks/leadflow", self._handle)
            self._runner = web.AppRunner(app, access_log=None, handler_cancellation=False)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        self._call(start())
        return self

    def stop(self) -> None:
        async def stop() -> None:
            self._release.set()
            if self._runner is not None:
                await self._runner.cleanup()
                self._runner = None

        self._call(stop())

    def hold(self) -> None:
        """Hold every request from now on until :meth:`release`."""
        with self._lock:
            self.mode = "hold"
        self._loop.call_soon_threadsafe(self._release.clear)

    def release(self) -> None:
        """Answer every held request, and stop holding new ones."""
        with self._lock:
            self.mode = "ok" if self.mode == "hold" else self.mode
            self.answer_first = None
        self._loop.call_soon_threadsafe(self._release.set)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # ------------------------------------------------------------------------- what arrived
    def snapshot(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    @property
    def arrivals(self) -> int:
        with self._lock:
            return self._arrivals

    def delivered_ids(self) -> set[str]:
        """Ids the receiver answered with a 2xx."""
        return {r.delivery_id for r in self.snapshot() if r.status is not None and 200 <= r.status < 300}

    def wait_for_ids(self, ids: set[str], timeout: float = 60.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ids <= self.delivered_ids():
                return self.snapshot()
            time.sleep(0.05)
        missing = ids - self.delivered_ids()
        raise AssertionError(f"{len(missing)} of {len(ids)} deliveries missing after {timeout}s: {sorted(missing)[:5]}")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# ----------------------------------------------------------------------------- records
def alert(contact: str, n: int) -> bytes:
    record = Alert(
        alert_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"alert/{contact}/{n}")),
        type="became_hot",
        contact_id=contact,
        stage="lead",
        score=55.0 + n,
        occurred_at="2026-03-01T10:00:00Z",
        respond_by="2026-03-01T11:00:00Z",
        reasons=(AlertReason(f"e-{contact}-{n}", "demo_request", 30.0),),
        first_touch=FirstTouch("website", "google", "cpc", "spring"),
        model="default@1",
    )
    return msgspec.json.encode(record)


def transition(contact: str, n: int, from_: str, to: str, kind: str = "stage") -> bytes:
    record = Transition(
        transition_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"transition/{contact}/{n}")),
        contact_id=contact,
        kind=kind,
        from_=from_,
        to=to,
        direction="advance",
        reason="bought_core_product" if kind == "stage" else "score_rose",
        trigger_event_id=f"e-{contact}-{n}",
        occurred_at="2026-03-01T10:00:00Z",
        stage=to if kind == "stage" else "lead",
        temperature="warm" if kind == "stage" else to,
        score=30.0,
        model="default@1",
    )
    return msgspec.json.encode(record)


def record_id(value: bytes) -> str:
    decoded = msgspec.json.decode(value)
    return str(decoded.get("alert_id") or decoded["transition_id"])


class Setup:
    """Topics with a unique prefix, a producer of output records, and deliverer processes."""

    def __init__(self, broker: TestBroker, namespace: str, workdir: Path) -> None:
        self.settings: Settings = broker_settings(
            # The partitions of the streaming harness (a test may run a pipeline on the same topics).
            broker, topic_prefix=f"{namespace}.", app_id=namespace, partitions=4
        )
        self.workdir = workdir
        self.names = TopicNames.of(self.settings)
        ensure_topics(self.settings)
        ensure_deadletter_topic(self.settings)
        self._producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=2)
        self.logs: list[Path] = []

    def close(self) -> None:
        self._producer.close()

    def publish(self, what: str, values: list[bytes]) -> list[str]:
        """Publish alert or transition records (keyed by contact, as the worker does); their ids."""
        topic = self.names.alerts if what == "alerts" else self.names.transitions
        futures = []
        for value in values:
            key = str(msgspec.json.decode(value).get("contact_id", "x")).encode() if value.startswith(b"{") else b"x"
            futures.append(self._producer.send(topic, value=value, key=key))
        self._producer.flush()
        for future in futures:
            future.get(timeout=30)
        return [record_id(v) for v in values if v.startswith(b"{")]

    def config(self, text: str) -> Path:
        path = self.workdir / f"webhooks-{len(list(self.workdir.glob('webhooks-*.toml')))}.toml"
        path.write_text(text, encoding="utf-8")
        return path

    def deadletters(self) -> list[dict[str, Any]]:
        return [msgspec.json.decode(v) for v in read_topic(self.names.webhooks_deadletter, self.settings)]

    @contextlib.contextmanager
    def deliverer(self, config: Path, name: str = "webhooks") -> Iterator[Deliverer]:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
        env.update(self.settings.to_env())
        env["LEADFLOW_WEBHOOKS"] = str(config)
        env["LEADFLOW_WEBHOOKS_WEB_PORT"] = str(port)
        log = self.workdir / f"{name}-{len(self.logs)}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "webhooks", "--no-create-topics", "--loglevel", "info"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent,
            )
        deliverer = Deliverer(process, port, log)
        try:
            deliverer.ready()
            yield deliverer
        finally:
            stop_process(process)


class Deliverer:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log

    def ready(self, timeout: float = 60.0) -> None:
        try:
            wait_ready(self.port, self.process, timeout)
        except Exception as exc:
            raise AssertionError(f"{exc}\n--- {self.log} ---\n{self.log.read_text()[-4000:]}") from exc

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include ``labels``."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            match = re.match(rf"^{re.escape(name)}(?:{{(.*)}})? (\S+)$", line)
            if not match:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(match.group(2))
        return total

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> int:
        stop_process(self.process)
        return int(self.process.returncode)
