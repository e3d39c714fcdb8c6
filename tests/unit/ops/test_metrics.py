"""Metric definitions follow Prometheus conventions, and the batch histogram counts exactly what a
histogram fed one value at a time would."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from pipeline.ops import metrics
from pipeline.ops.metrics import BatchHistogram

from .promql import exported_names

#: Label names a Leadflow metric may carry: every one has a small, closed set of values.
BOUNDED_LABELS = {
    "source", "event_type", "error_code", "kind", "from", "to", "direction", "type", "topic", "partition",
    "stage", "temperature", "outcome", "reason", "route", "status", "subscription", "result", "le",
}


def leadflow_families() -> list[object]:
    exported_names()  # imports every process's metrics module
    from prometheus_client import REGISTRY

    return [family for family in REGISTRY.collect() if family.name.startswith("leadflow_")]


def test_names_follow_prometheus_conventions() -> None:
    families = leadflow_families()
    assert len(families) >= 25
    for family in families:
        name, kind = family.name, family.type  # type: ignore[attr-defined]
        assert family.documentation, f"{name} has no help text"  # type: ignore[attr-defined]
        for unit in ("_milliseconds", "_ms", "_minutes", "_hours", "_bytes_kb", "_percent"):
            assert not name.endswith(unit), f"{name}: use base units (seconds, bytes, ratios)"
        if kind == "counter":
            assert not name.endswith("_total"), "prometheus-client adds _total itself"
        if kind == "histogram" and ("latency" in name or "duration" in name or "lag" in name):
            assert name.endswith("_seconds"), f"{name}: time histograms are in seconds"


def test_label_names_are_bounded() -> None:
    """No metric is labelled by a contact, an event id, a URL or anything else unbounded."""
    import pipeline.collector.metrics as collector
    import pipeline.webhooks.metrics as webhooks

    for module in (metrics, collector, webhooks):
        for value in vars(module).values():
            labelnames = getattr(value, "_labelnames", None)
            if labelnames is None:
                continue
            assert set(labelnames) <= BOUNDED_LABELS, f"{value._name}: {labelnames}"  # type: ignore[attr-defined]


def reference(values: list[float], buckets: tuple[float, ...]) -> dict[str, float]:
    registry = CollectorRegistry()
    histogram = Histogram("x_seconds", "x", buckets=buckets, registry=registry)
    for v in values:
        histogram.observe(v)
    return {f"{s.name}{s.labels.get('le', '')}": s.value for m in registry.collect() for s in m.samples
            if not s.name.endswith("_created")}


def samples(histogram: BatchHistogram) -> dict[str, float]:
    return {f"{s.name}{s.labels.get('le', '')}": s.value for m in histogram.collect() for s in m.samples}


BUCKETS = (0.005, 0.05, 0.5, 1.0, 5.0, 60.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100, allow_nan=False), st.integers(1, 5)), max_size=30))
def test_observe_with_a_count_equals_repeated_observations(batch: list[tuple[float, int]]) -> None:
    histogram = BatchHistogram("x_seconds", "x", BUCKETS, registry=None)
    for v, n in batch:
        histogram.observe(v, n)
    expected = reference([v for v, n in batch for _ in range(n)], BUCKETS)
    got = samples(histogram)
    assert got.keys() == expected.keys()
    for key in got:
        assert got[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-9), key


@settings(max_examples=200, deadline=None)
@given(st.integers(10**15, 2 * 10**15), st.lists(st.integers(-120_000_000, 10**8), max_size=40))
def test_observe_ages_equals_one_observation_per_age(now: int, offsets: list[int]) -> None:
    """Ages ``now - t`` of a sorted batch, negative ages (events after now) counted as 0."""
    times = sorted(now - offset for offset in offsets)
    histogram = BatchHistogram("x_seconds", "x", BUCKETS, registry=None)
    histogram.observe_ages(now, times)
    expected = reference([max(0, now - t) / 1e6 for t in times], BUCKETS)
    got = samples(histogram)
    for key in got:
        assert got[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-6), key


def test_batch_histogram_rejects_bad_buckets() -> None:
    for buckets in ((), (1.0, 0.5), (1.0, 1.0), (1.0, math.inf)):
        with pytest.raises(ValueError):
            BatchHistogram("x_seconds", "x", buckets, registry=None)


def test_histogram_exposition_matches_prometheus_client() -> None:
    """Same text format as a native histogram (bucket labels, _count, _sum)."""
    from prometheus_client.exposition import generate_latest

    registry = CollectorRegistry()
    histogram = BatchHistogram("x_seconds", "x", (0.5, 1.0), registry=registry)
    histogram.observe(0.7, 3)
    text = generate_latest(registry).decode()
    assert '# TYPE x_seconds histogram' in text
    assert 'x_seconds_bucket{le="0.5"} 0.0' in text
    assert 'x_seconds_bucket{le="1.0"} 3.0' in text
    assert 'x_seconds_bucket{le="+Inf"} 3.0' in text
    assert "x_seconds_count 3.0" in text
