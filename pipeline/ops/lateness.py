"""How late events reach the contact processor, per source: to choose ``LEADFLOW_ALLOWED_LATENESS``.

``leadflow_event_arrival_lag_seconds{source}`` is, per event, the wall clock when the contact
processor takes it minus its ``occurred_at`` (the sender's delay plus the pipeline's);
``leadflow_events_beyond_lateness_total{source}`` counts the events that arrived later than the
allowed lateness (applied anyway; cooling due before them may already have fired). Both are fed
once per processor batch (one histogram per source, :class:`~pipeline.ops.metrics.BatchHistogram`,
exported as one labelled family).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.ops.metrics import BatchHistogram

ARRIVAL_LAG_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 6 * 3600, 86400)


class ArrivalLag(Collector):
    """The two families above, one child per source seen."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self._by_source: dict[str, BatchHistogram] = {}
        self._beyond: dict[str, int] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe(self, now: int, times_by_source: Mapping[str, Sequence[int]], allowed_lateness: int) -> None:
        """Events taken at ``now`` (µs): their ``occurred_at`` (µs, sorted) per source."""
        for source, times in times_by_source.items():
            histogram = self._by_source.get(source)
            if histogram is None:
                with self._lock:
                    histogram = self._by_source.setdefault(
                        source, BatchHistogram("x", "x", ARRIVAL_LAG_BUCKETS, registry=None))
            histogram.observe_ages(now, times)
            beyond = bisect.bisect_left(times, now - allowed_lateness)  # occurred before the watermark
            if beyond:
                with self._lock:
                    self._beyond[source] = self._beyond.get(source, 0) + beyond

    def describe(self) -> Iterable[Metric]:
        return [
            HistogramMetricFamily("leadflow_event_arrival_lag_seconds", _LAG_DOC, labels=["source"]),
            CounterMetricFamily("leadflow_events_beyond_lateness", _BEYOND_DOC, labels=["source"]),
        ]

    def collect(self) -> Iterable[Metric]:
        lag = HistogramMetricFamily("leadflow_event_arrival_lag_seconds", _LAG_DOC, labels=["source"])
        beyond = CounterMetricFamily("leadflow_events_beyond_lateness", _BEYOND_DOC, labels=["source"])
        with self._lock:
            children, counts = dict(self._by_source), dict(self._beyond)
        for source, histogram in sorted(children.items()):
            [family] = histogram.collect()
            buckets = [(s.labels["le"], s.value) for s in family.samples if s.name == "x_bucket"]
            total = next(s.value for s in family.samples if s.name == "x_sum")
            lag.add_metric([source], buckets, total)
            beyond.add_metric([source], counts.get(source, 0))
        return [lag, beyond]


_LAG_DOC = ("Per event: the wall clock when the contact processor takes it minus its occurred_at, by "
            "source (choose LEADFLOW_ALLOWED_LATENESS above its high percentiles).")
_BEYOND_DOC = "Events that reached the contact processor later than LEADFLOW_ALLOWED_LATENESS after they occurred."

#: The worker's (registered in the default registry).
ARRIVAL_LAG = ArrivalLag()
