"""Benchmark (not a test): ``leadflow webhooks`` delivery rate and latency on loopback.

    PYTHONPATH=. python benchmarks/bench_webhooks.py [--alerts 5000] [--in-flight 10 50]

Starts the embedded broker, publishes N ``became_hot`` alerts to ``lead.alerts``, starts a
receiver (aiohttp on 127.0.0.1, verifies every signature, answers 204) and, for each
``max_in_flight`` given, a ``leadflow webhooks`` process with a fresh subscription reading from
the beginning. Timed from the receiver's first request to the moment it has every alert id
(group joins excluded), so the figure is deliveries per second of one subscription. Also prints
the p50 / p99 of ``leadflow_webhook_request_duration_seconds`` buckets as the process saw them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import msgspec
from aiohttp import web
from kafka import KafkaProducer

from pipeline.config.settings import from_env
from pipeline.config.topics import TopicNames
from pipeline.devtools.demo import stop_process, wait_ready
from pipeline.kafka.topics import ensure_topics
from pipeline.streaming.embedded_broker import EmbeddedBroker, die_with_parent, free_port
from pipeline.webhooks.service import ensure_deadletter_topic
from pipeline.webhooks.signature import verify

SECRET = "whsec_bench_0123456789abcdef"


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.ids: set[str] = set()
        self.first: float | None = None
        self.last: float | None = None
        self.bad = 0
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            now = time.monotonic()
            self.first = self.first or now
            try:
                verify(SECRET, body, request.headers.get("Leadflow-Signature"))
            except ValueError:
                self.bad += 1
                return web.Response(status=400)
            self.ids.add(request.headers["Leadflow-Delivery-Id"])
            self.last = now
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()

    def reset(self) -> None:
        self.ids, self.first, self.last, self.bad = set(), None, None, 0


def quantile(text: str, q: float) -> float:
    """A quantile from the cumulative histogram buckets of /metrics (upper bucket bound)."""
    buckets = []
    for line in text.splitlines():
        if line.startswith("leadflow_webhook_request_duration_seconds_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0
    for bound, count in buckets:
        if total and count >= q * total:
            return bound
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--alerts", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[10, 50])
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    with EmbeddedBroker(log_dir=workdir) as broker:
        settings = from_env({}, bootstrap=broker.bootstrap, profile="tansu", topic_prefix="bench.", app_id="bench",
                            partitions=4)
        ensure_topics(settings)
        ensure_deadletter_topic(settings)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
        ids = set()
        for n in range(args.alerts):
            alert_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{n}"))
            ids.add(alert_id)
            value = msgspec.json.encode({"alert_id": alert_id, "type": "became_hot", "contact_id": f"c{n % 500}",
                                         "stage": "lead", "score": 60.0, "occurred_at": "2026-03-01T10:00:00Z",
                                         "respond_by": "2026-03-01T11:00:00Z", "reasons": [],
                                         "first_touch": {"source": "website", "utm_source": None,
                                                         "utm_medium": None, "utm_campaign": None},
                                         "model": "default@1"})
            producer.send(TopicNames.of(settings).alerts, value=value, key=f"c{n % 500}".encode())
        producer.flush()
        producer.close()
        receiver = Receiver()
        print(f"{args.alerts} alerts published; receiver on 127.0.0.1:{receiver.port}")
        for limit in args.in_flight:
            receiver.reset()
            config = workdir / f"hooks-{limit}.toml"
            config.write_text(f'[[subscriptions]]\nname = "bench{limit}"\nurl = "http://127.0.0.1:{receiver.port}/hook"\n'
                              f'secret = "{SECRET}"\nstart_from = "earliest"\nmax_in_flight = {limit}\n'
                              'filter = { became_hot = true }\n')
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
            env.update(settings.to_env())
            env.update({"LEADFLOW_WEBHOOKS": str(config), "LEADFLOW_WEBHOOKS_WEB_PORT": str(port)})
            with open(workdir / f"webhooks-{limit}.log", "wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "pipeline.cli", "webhooks", "--no-create-topics", "--loglevel", "warning"],
                    env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
            try:
                wait_ready(port, process, 60)
                deadline = time.monotonic() + 600
                while len(receiver.ids) < len(ids) and time.monotonic() < deadline:
                    time.sleep(0.05)
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    metrics = response.read().decode()
            finally:
                stop_process(process)
            assert receiver.first is not None and receiver.last is not None
            seconds = receiver.last - receiver.first
            print(f"max_in_flight={limit:>3}: {len(receiver.ids)}/{len(ids)} delivered in {seconds:.2f}s = "
                  f"{len(receiver.ids) / seconds:,.0f}/s; bad signatures {receiver.bad}; request duration "
                  f"p50 <= {quantile(metrics, 0.5) * 1000:g} ms, p99 <= {quantile(metrics, 0.99) * 1000:g} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
