"""Shared pieces of the long-running benchmarks (``bench_soak.py`` and the steady-load run of
``bench_stream.py``): a paced publisher of website/email events over N contacts with optional
``demo_request`` probes, a listener noting when each probe's alert arrives, the worker's
``/metrics`` read (consumer lag, processing-latency buckets), per-process CPU and memory from
``/proc``, signal handling that lets every started process be stopped, and a small SVG/HTML
time-series plot.

The plot is hand-written SVG (inline in a self-contained HTML file for the steady run): a few
polylines over time are all these benchmarks need, and a plotting library (matplotlib pulls in
numpy, pillow, fonttools and friends) is not worth a dev dependency for that.
"""

from __future__ import annotations

import html
import math
import os
import random
import re
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition

from pipeline.state_machine.clock import to_rfc3339

# ------------------------------------------------------------------------------ process accounting


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (Linux ``/proc``; 0 when unknown or gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (``/proc/<pid>/status`` VmRSS; 0 when unknown)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def stop_on_signals() -> None:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt (as SIGINT already is), so the ``with`` /
    ``finally`` blocks that stop the broker and the worker run on any of them; once stopping has
    begun, further signals (a second Ctrl-C) are noted and ignored instead of interrupting the
    cleanup half way (which would leave a process behind)."""
    stopping = [False]

    def handler(signum: int, frame: Any) -> None:
        if stopping[0]:
            print(f"\n(signal {signum} ignored: still stopping the worker and the broker)", file=sys.stderr)
            return
        stopping[0] = True
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


# ---------------------------------------------------------------------------------- /metrics


def scrape(port: int) -> str:
    """The worker's Prometheus text (``/metrics`` on its web port)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text: str = response.read().decode()
        return text


def total(text: str, name: str) -> float:
    """Sum of every series of metric ``name``."""
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def lag_by_topic(text: str) -> dict[str, float]:
    """``leadflow_consumer_lag`` summed over partitions, by topic. On Tansu the end offset it is
    computed from is short after multi-record batches, so this can under-state the backlog."""
    out: dict[str, float] = {}
    for labels, value in re.findall(r"^leadflow_consumer_lag\{([^}]*)\} (\S+)$", text, re.MULTILINE):
        found = re.search(r'topic="([^"]*)"', labels)
        topic = found.group(1) if found else "?"
        out[topic] = out.get(topic, 0.0) + float(value)
    return out


def buckets(text: str) -> list[tuple[float, float]]:
    """The cumulative buckets of ``leadflow_processing_latency_seconds``: [(le, count), ...]."""
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


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``math.nan`` for no values; ``math.inf`` entries sort last)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# ------------------------------------------------------------------------------------ load


class Publisher(threading.Thread):
    """Events of contacts drawn uniformly from ``contacts`` ids at a steady ``rate`` (events/s),
    paced in ``slice_seconds`` slices, until stopped; kafka-python, keyed by contact.

    The mix: 60% page views, the rest email opens/clicks, of which ``intent_share`` of all
    events are signups or demo requests of those contacts. With ``probe_interval``, every that
    many seconds a ``demo_request`` of a fresh identified contact (``<probe_prefix>-<n>``) goes
    out too; ``probes`` maps each probe's contact to ``time.perf_counter()`` taken just before
    it was handed to the producer. ``published`` counts background events; ``behind`` is the
    largest number of events that were due but not yet handed over (the producer not keeping up).
    """

    def __init__(self, bootstrap: str, topics: dict[str, str], contacts: int, rate: float, *,
                 intent_share: float = 0.03, slice_seconds: float = 0.1, probe_interval: float | None = None,
                 probe_prefix: str = "probe", linger_ms: int = 5, batch_bytes: int = 16384, prefix: str = "c",
                 seed: int | None = None) -> None:
        super().__init__(daemon=True, name="publisher")
        self.topics = topics
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, acks=1,
                                      batch_size=batch_bytes)
        self.contacts, self.rate, self.intent_share = contacts, rate, intent_share
        self.slice_seconds, self.probe_interval, self.probe_prefix = slice_seconds, probe_interval, probe_prefix
        self.prefix = prefix
        self.random = random.Random(seed)
        self.published = 0
        self.behind = 0
        self.probes: dict[str, float] = {}
        self.started_at: float | None = None  # perf_counter when publishing began
        self.stopped_at: float | None = None
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def event(self, i: int) -> tuple[str, bytes, bytes]:
        rng = self.random
        contact = f"{self.prefix}{rng.randrange(self.contacts):06d}"
        now = to_rfc3339(time.time_ns() // 1000)
        roll = rng.random()
        body: dict[str, Any]
        if roll < 0.6:
            body = {"event_type": "page_view", "properties": {"url": f"https://shop.example/p/{i % 500}"}}
            family = "website"
        elif roll < 1 - self.intent_share:
            body = {"event_type": rng.choice(("email_opened", "email_clicked")),
                    "properties": {"campaign_id": f"cmp{i % 20}", "url": "https://shop.example/offer"}}
            family = "email"
        else:
            body = {"event_type": rng.choice(("signup", "demo_request")), "properties": {}}
            family = "website"
        body.update(event_id=f"{self.prefix}-{i}", contact_id=contact, occurred_at=now)
        return self.topics[family], contact.encode(), orjson.dumps(body)

    def probe(self, n: int) -> None:
        contact = f"{self.probe_prefix}-{n}"
        value = orjson.dumps({"event_id": f"{contact}-1", "event_type": "demo_request", "contact_id": contact,
                              "occurred_at": to_rfc3339(time.time_ns() // 1000), "properties": {}})
        self.probes[contact] = time.perf_counter()
        self.producer.send(self.topics["website"], value=value, key=contact.encode())

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the caller (achieved rate, error)
            self.error = exc
        finally:
            self.stopped_at = time.perf_counter()
            try:
                self.producer.flush(10)
            finally:
                self.producer.close(5)

    def _run(self) -> None:
        started = self.started_at = time.perf_counter()
        i = probes = 0
        while not self.stopping.is_set():
            elapsed = time.perf_counter() - started
            due = int(elapsed * self.rate)
            self.behind = max(self.behind, due - i)
            while i < due:
                if self.probe_interval and probes * self.probe_interval <= (i / self.rate if self.rate else elapsed):
                    probes += 1
                    self.probe(probes)
                topic, key, value = self.event(i)
                self.producer.send(topic, value=value, key=key)
                i += 1
                self.published = i
            if self.probe_interval and not self.rate:
                while probes * self.probe_interval <= elapsed:
                    probes += 1
                    self.probe(probes)
            ahead = self.slice_seconds - (time.perf_counter() - started - elapsed)
            if ahead > 0:
                time.sleep(ahead)

    def achieved(self) -> float:
        """Background events/s handed to the producer so far."""
        if self.started_at is None:
            return 0.0
        end = self.stopped_at if self.stopped_at is not None else time.perf_counter()
        return self.published / max(end - self.started_at, 1e-9)


class AlertListener(threading.Thread):
    """Notes when the first alert of each contact arrives on the alerts topic (kafka-python,
    manual assignment, 5 ms fetch wait), positioned at the end before any probe goes out:
    ``received[contact] = time.perf_counter()``."""

    def __init__(self, bootstrap: str, topic: str, partitions: int,
                 wanted: Callable[[str], bool] | None = None) -> None:
        super().__init__(daemon=True, name="alerts-listener")
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.wanted = wanted
        self.received: dict[str, float] = {}
        self.positioned, self.stopping = threading.Event(), threading.Event()

    def run(self) -> None:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                 fetch_max_wait_ms=5, fetch_min_bytes=1)
        try:
            tps = [KafkaTopicPartition(self.topic, p) for p in range(self.partitions)]
            consumer.assign(tps)
            consumer.seek_to_end(*tps)
            for tp in tps:
                consumer.position(tp)  # resolve the lazy seek before the first probe goes out
            self.positioned.set()
            while not self.stopping.is_set():
                for records in consumer.poll(timeout_ms=10).values():
                    now = time.perf_counter()
                    for record in records:
                        contact = orjson.loads(record.value)["contact_id"]
                        if self.wanted is None or self.wanted(contact):
                            self.received.setdefault(contact, now)
        finally:
            consumer.close()

    def start_positioned(self, timeout: float = 30.0) -> None:
        self.start()
        if not self.positioned.wait(timeout):
            raise RuntimeError("the alerts listener could not position itself")

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


class RoundTripProbe(threading.Thread):
    """The broker's produce round trip under the load: one small record every ``every`` seconds to
    a topic of its own (created here, one partition), ``acks=all``, no linger; ``samples`` holds
    ``(perf_counter when sent, round trip in ms)``. An event crosses three produce round trips on
    its way to an alert (publisher, ingest forward, alert) and three fetches, so this is the floor
    under the event-to-alert latency that no worker setting removes."""

    def __init__(self, bootstrap: str, topic: str, every: float = 0.05) -> None:
        super().__init__(daemon=True, name="rtt-probe")
        self.bootstrap, self.topic, self.every = bootstrap, topic, every
        self.samples: list[tuple[float, float]] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        from kafka.admin import KafkaAdminClient, NewTopic

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
            try:
                if self.topic not in admin.list_topics():
                    admin.create_topics([NewTopic(self.topic, 1, 1)])
            finally:
                admin.close()
            producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0)
        except BaseException as exc:  # reported by the caller
            self.error = exc
            return
        try:
            while not self.stopping.wait(self.every):
                sent = time.perf_counter()
                producer.send(self.topic, b"rtt").get(timeout=30)
                self.samples.append((sent, (time.perf_counter() - sent) * 1000))
        except BaseException as exc:
            self.error = exc
        finally:
            producer.close(5)

    def between(self, start: float, end: float) -> list[float]:
        """Round trips (ms) of the records sent in [start, end) (perf_counter)."""
        return [ms for sent, ms in list(self.samples) if start <= sent < end]

    def stop(self) -> None:
        self.stopping.set()
        self.join(35)


# ------------------------------------------------------------------------------------- plot

Series = tuple[str, Sequence[float], str]  # name, values (one per x), colour


def svg_panels(xs: Sequence[float], panels: Sequence[tuple[str, Sequence[Series]]], width: int = 900,
               height: int = 210, x_label: str = "min", x_scale: float = 60.0) -> str:
    """Stacked panels of polylines over the same x axis (seconds), as one SVG document. Infinite
    or NaN values are drawn at the top of their panel."""
    pad = 50
    xs = list(xs) or [0.0]
    x_max = max(xs) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height * len(panels)}" '
             'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height * len(panels)}" fill="white"/>']
    for index, (title, series) in enumerate(panels):
        top = index * height
        finite = [v for _, values, _ in series for v in values if math.isfinite(v)]
        y_max = max([*finite, 1e-9]) * 1.1
        parts.append(f'<text x="{pad}" y="{top + 18}" font-weight="bold">{html.escape(title)}</text>')
        parts.append(f'<line x1="{pad}" y1="{top + height - 30}" x2="{width - 20}" y2="{top + height - 30}" '
                     'stroke="#999"/>')
        parts.append(f'<text x="{pad - 5}" y="{top + 35}" text-anchor="end">{y_max:.0f}</text>')
        parts.append(f'<text x="{pad - 5}" y="{top + height - 30}" text-anchor="end">0</text>')
        parts.append(f'<text x="{width - 20}" y="{top + height - 14}" text-anchor="end">'
                     f'{x_max / x_scale:.1f} {x_label}</text>')
        for offset, (name, values, colour) in enumerate(series):
            points = " ".join(
                f"{pad + (x / x_max) * (width - pad - 20):.1f},"
                f"{top + height - 30 - (min(y, y_max) if math.isfinite(y) else y_max) / y_max * (height - 60):.1f}"
                for x, y in zip(xs, values, strict=False))
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
            parts.append(f'<text x="{width - 120}" y="{top + 18 + 14 * offset}" fill="{colour}">'
                         f'{html.escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def html_page(title: str, svg: str, lines: Sequence[str]) -> str:
    """A self-contained HTML page: a title, the SVG inline, and preformatted text below it."""
    body = html.escape("\n".join(lines))
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>\n"
            f"<body style=\"font-family:sans-serif\"><h2>{html.escape(title)}</h2>\n{svg}\n"
            f"<pre>{body}</pre></body></html>\n")
