"""The Pipeline page's figures, from the processes' own ``/metrics`` (Prometheus text format).

A :class:`HealthSampler` scrapes every configured process once per tick and keeps the last samples:
events per second in (what the workers read, dead letters included) and out (transitions and
alerts published), dead letters by error code, consumer lag, the processing latency's median and
95th percentile (poll of an event to the broker's acknowledgement of its alert or transition), and
whether each process answered. Rates are differences between two scrapes, so a restarted process
(counters back to zero) gives one empty point rather than a negative rate.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, dict[str, str], float]

IN_COUNTERS = ("leadflow_events_consumed_total", "leadflow_events_dead_lettered_total")
OUT_COUNTERS = ("leadflow_transitions_total", "leadflow_alerts_total")
COLLECTED = "leadflow_collector_events_accepted_total"
DEAD = "leadflow_events_dead_lettered_total"
LAG = "leadflow_consumer_lag"
LATENCY = "leadflow_processing_latency_seconds"
SINK_STORED = "leadflow_sink_records_total"


def parse_samples(text: str) -> list[Sample]:
    """Every sample of a Prometheus exposition: (name, labels, value)."""
    return [
        (s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(samples: Iterable[Sample], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items()))


def by_label(samples: Iterable[Sample], name: str, label: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for n, lab, v in samples:
        if n == name:
            found[lab.get(label, "")] = found.get(lab.get(label, ""), 0.0) + v
    return found


def quantile(samples: Iterable[Sample], name: str, q: float) -> float | None:
    """The ``q`` quantile of a histogram (summed over processes) by linear interpolation in its
    buckets, as PromQL's ``histogram_quantile``; None without observations."""
    buckets: dict[float, float] = {}
    for n, lab, v in samples:
        if n == f"{name}_bucket":
            bound = float(lab["le"])
            buckets[bound] = buckets.get(bound, 0.0) + v
    if not buckets:
        return None
    bounds = sorted(buckets)
    count = buckets[bounds[-1]]
    if count <= 0:
        return None
    rank = q * count
    lower, below = 0.0, 0.0
    for bound in bounds:
        cumulative = buckets[bound]
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, cumulative
    return lower


@dataclass(slots=True)
class HealthSampler:
    """Scrapes ``targets`` (name -> /metrics URL); :meth:`snapshot` is what the page shows."""

    targets: Mapping[str, str]
    keep: int = 300
    points: deque[dict[str, float]] = field(default_factory=deque)
    last: dict[str, Any] = field(default_factory=dict)
    _previous: tuple[float, float, float, float] | None = None

    async def scrape(self, session: aiohttp.ClientSession) -> list[Sample]:
        samples: list[Sample] = []
        up: dict[str, bool] = {}
        for name, url in self.targets.items():
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    text = await response.text()
                samples += parse_samples(text)
                up[name] = response.status == 200
            except (aiohttp.ClientError, TimeoutError, ValueError):
                up[name] = False
        self.last["up"] = up
        return samples

    def update(self, samples: list[Sample], now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        events_in = sum(total(samples, n) for n in IN_COUNTERS)
        records_out = sum(total(samples, n) for n in OUT_COUNTERS)
        collected = total(samples, COLLECTED)
        point = {"t": now, "in": 0.0, "out": 0.0, "collected": 0.0}
        if self._previous is not None:
            then, was_in, was_out, was_collected = self._previous
            span = max(now - then, 1e-6)
            point["in"] = max(events_in - was_in, 0.0) / span
            point["out"] = max(records_out - was_out, 0.0) / span
            point["collected"] = max(collected - was_collected, 0.0) / span
        self._previous = (now, events_in, records_out, collected)
        self.points.append(point)
        while len(self.points) > self.keep:
            self.points.popleft()
        latency_p50 = quantile(samples, LATENCY, 0.5)
        latency_p95 = quantile(samples, LATENCY, 0.95)
        self.last.update(
            {
                "now": now,
                "events_in_total": events_in,
                "records_out_total": records_out,
                "collected_total": collected,
                "dead_letters_by_code": by_label(samples, DEAD, "error_code"),
                "consumer_lag": total(samples, LAG),
                "alerts_total": total(samples, "leadflow_alerts_total"),
                "alert_latency_p50_seconds": latency_p50,
                "alert_latency_p95_seconds": latency_p95,
                "sink_stored_total": total(samples, SINK_STORED, outcome="stored"),
                "series": list(self.points),
            }
        )
        return self.last
