"""Soak benchmark (not a test): the pipeline at a steady rate for a long time, to show nothing
grows without bound.

``make bench-soak`` (30 minutes, 200,000 contacts, 300 events/s) or, shorter,
``python benchmarks/bench_soak.py --minutes 3``. It starts the embedded broker and one
``leadflow worker`` process (RocksDB store, wall-clock sweep), then publishes website and email
events of contacts drawn uniformly from ``--contacts`` ids at ``--rate`` events/s (kafka-python,
keyed by contact), and every ``--every`` seconds samples: the worker's resident memory
(``/proc/<pid>/status`` VmRSS), its consumer lag (sum of ``leadflow_consumer_lag``), the
processing latency p50 / p99 of that interval (from the deltas of
```leadflow_processing_latency_seconds`` buckets), events applied, contacts in its table, and the
CPU the worker and the broker used over the interval.
Writes ``soak.csv`` and ``soak.svg`` (three panels over time) to ``--out`` and prints a summary:
memory at the start of the second half and at the end, its slope over the second half, the
largest lag, the worst interval p99.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kafka import KafkaProducer

from pipeline.config.settings import from_env
from pipeline.config.topics import TopicNames
from pipeline.devtools.demo import wait_ready, worker_process
from pipeline.kafka.tools import ensure_topics
from pipeline.state_machine.clock import to_rfc3339
from pipeline.streaming.embedded_broker import EmbeddedBroker, free_port


@dataclass
class Sample:
    seconds: float
    rss_mb: float
    lag: float
    p50_ms: float
    p99_ms: float
    applied: float
    contacts: float
    published: int
    worker_cpu: float  # % of one core over the interval
    broker_cpu: float


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text: str = response.read().decode()
        return text


def total(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def buckets(text: str) -> list[tuple[float, float]]:
    found = re.findall(r'^leadflow_processing_latency_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.MULTILINE)
    return sorted((float("inf") if le == "+Inf" else float(le), float(n)) for le, n in found)


def quantile(delta: list[tuple[float, float]], q: float) -> float:
    """The upper bound of the bucket holding quantile ``q`` of an interval's observations (s)."""
    count = delta[-1][1] if delta else 0
    if count <= 0:
        return 0.0
    for bound, cumulative in delta:
        if cumulative >= q * count:
            return bound
    return delta[-1][0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Publisher(threading.Thread):
    """Events of random contacts at a steady rate (in 100 ms slices) until stopped."""

    def __init__(self, settings: object, contacts: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.names = TopicNames.of(settings)  # type: ignore[arg-type]
        self.producer = KafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=5, acks=1)  # type: ignore[attr-defined]
        self.contacts, self.rate = contacts, rate
        self.published = 0
        self.stopping = threading.Event()

    def event(self, i: int) -> tuple[str, bytes, bytes]:
        contact = f"c{random.randrange(self.contacts):06d}"
        now = to_rfc3339(time.time_ns() // 1000)
        roll = random.random()
        if roll < 0.6:
            body = {"event_type": "page_view", "properties": {"url": f"https://shop.example/p/{i % 500}"}}
            family = "website"
        elif roll < 0.97:
            body = {"event_type": random.choice(("email_opened", "email_clicked")),
                    "properties": {"campaign_id": f"cmp{i % 20}", "url": "https://shop.example/offer"}}
            family = "email"
        else:
            body = {"event_type": random.choice(("signup", "demo_request")), "properties": {}}
            family = "website"
        body.update(event_id=f"soak-{i}", contact_id=contact, occurred_at=now)
        return self.names.inputs[family], contact.encode(), orjson.dumps(body)

    def run(self) -> None:
        started, i = time.monotonic(), 0
        while not self.stopping.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while i < due:
                topic, key, value = self.event(i)
                self.producer.send(topic, value=value, key=key)
                i += 1
            self.published = i
            time.sleep(0.1)
        self.producer.flush()
        self.producer.close()


def plot(samples: list[Sample], path: Path) -> None:
    """Three panels (memory, lag, latency p50/p99) over time, as a plain SVG."""
    width, height, pad = 900, 210, 50
    panels = [("resident memory (MB)", [("rss", [s.rss_mb for s in samples], "#1f77b4")]),
              ("consumer lag (messages)", [("lag", [s.lag for s in samples], "#d62728")]),
              ("processing latency (ms)", [("p99", [s.p99_ms for s in samples], "#ff7f0e"),
                                           ("p50", [s.p50_ms for s in samples], "#2ca02c")])]
    xs = [s.seconds for s in samples] or [0.0]
    x_max = max(xs) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height * 3}" '
             'font-family="sans-serif" font-size="12">', f'<rect width="{width}" height="{height * 3}" fill="white"/>']
    for index, (title, series) in enumerate(panels):
        top = index * height
        y_max = max([max(values) for _, values, _ in series if values] + [1e-9]) * 1.1
        parts.append(f'<text x="{pad}" y="{top + 18}" font-weight="bold">{title}</text>')
        parts.append(f'<line x1="{pad}" y1="{top + height - 30}" x2="{width - 20}" y2="{top + height - 30}" '
                     'stroke="#999"/>')
        parts.append(f'<text x="{pad - 5}" y="{top + 35}" text-anchor="end">{y_max:.0f}</text>')
        parts.append(f'<text x="{width - 20}" y="{top + height - 14}" text-anchor="end">{x_max / 60:.1f} min</text>')
        for offset, (name, values, colour) in enumerate(series):
            points = " ".join(
                f"{pad + (x / x_max) * (width - pad - 20):.1f},"
                f"{top + height - 30 - (y / y_max) * (height - 60):.1f}" for x, y in zip(xs, values, strict=False))
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
            parts.append(f'<text x="{width - 80}" y="{top + 18 + 14 * offset}" fill="{colour}">{name}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long (default 30)")
    parser.add_argument("--contacts", type=int, default=200_000, help="distinct contacts (default 200,000)")
    parser.add_argument("--rate", type=float, default=300.0, help="events per second (default 300)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--out", default=f"out/soak-{time.strftime('%Y%m%d-%H%M%S')}", help="output directory")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []
    with EmbeddedBroker(log_dir=out / "broker") as broker:
        settings = from_env({}, bootstrap=broker.bootstrap, profile="tansu", topic_prefix="soak.", app_id="soak",
                            partitions=4, store="rocksdb", data_dir=str(out / "data"), web_port=free_port())
        ensure_topics(settings)
        with worker_process(settings, out / "worker.log") as worker:
            wait_ready(settings.web_port, worker)
            publisher = Publisher(settings, args.contacts, args.rate)
            publisher.start()
            started, previous = time.monotonic(), buckets(scrape(settings.web_port))
            assert broker.pid is not None
            cpu = {"worker": cpu_seconds(worker.pid), "broker": cpu_seconds(broker.pid), "at": time.monotonic()}
            try:
                while time.monotonic() - started < args.minutes * 60:
                    time.sleep(args.every)
                    text = scrape(settings.web_port)
                    now = buckets(text)
                    delta = [(b, n - dict(previous).get(b, 0.0)) for b, n in now]
                    previous = now
                    used = {"worker": cpu_seconds(worker.pid), "broker": cpu_seconds(broker.pid),
                            "at": time.monotonic()}
                    span = used["at"] - cpu["at"]
                    worker_cpu, broker_cpu = (round(100 * (used[k] - cpu[k]) / span, 1) for k in ("worker", "broker"))
                    cpu = used
                    sample = Sample(
                        seconds=round(time.monotonic() - started, 1), rss_mb=round(rss_mb(worker.pid), 1),
                        lag=total(text, "leadflow_consumer_lag"), p50_ms=quantile(delta, 0.5) * 1000,
                        p99_ms=quantile(delta, 0.99) * 1000, applied=total(text, "leadflow_events_applied_total"),
                        contacts=total(text, "leadflow_contacts"), published=publisher.published,
                        worker_cpu=worker_cpu, broker_cpu=broker_cpu,
                    )
                    samples.append(sample)
                    print(f"{sample.seconds / 60:5.1f} min  rss {sample.rss_mb:7.1f} MB  lag {sample.lag:7.0f}  "
                          f"p50 {sample.p50_ms:6.0f} ms  p99 {sample.p99_ms:6.0f} ms  applied {sample.applied:9.0f} "
                          f"(published {sample.published:9d})  contacts {sample.contacts:7.0f}  "
                          f"cpu worker {sample.worker_cpu:3.0f}% broker {sample.broker_cpu:3.0f}%", flush=True)
            finally:
                publisher.stopping.set()
                publisher.join(30)
    with open(out / "soak.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(Sample.__dataclass_fields__))
        writer.writerows([list(vars(s).values()) for s in samples])
    plot(samples, out / "soak.svg")
    if samples:
        half = samples[len(samples) // 2:]
        minutes = (half[-1].seconds - half[0].seconds) / 60 or 1
        slope = (half[-1].rss_mb - half[0].rss_mb) / minutes
        print(f"bench-soak: {args.minutes:g} min, {args.rate:g} ev/s, {args.contacts:,} contacts: rss "
              f"{half[0].rss_mb:.0f} MB at {half[0].seconds / 60:.1f} min -> {half[-1].rss_mb:.0f} MB at the end "
              f"({slope:+.2f} MB/min over the second half); max lag {max(s.lag for s in samples):.0f}; worst "
              f"interval p99 {max(s.p99_ms for s in samples):.0f} ms; contacts {samples[-1].contacts:.0f}; "
              f"applied {samples[-1].applied:.0f} of {samples[-1].published} published")
    print(f"files: {out}/soak.csv, {out}/soak.svg, {out}/worker.log")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
