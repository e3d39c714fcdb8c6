"""Prometheus metrics of every Leadflow process (prometheus-client, the default registry).

Names follow Prometheus conventions: ``leadflow_`` prefix, base units, ``_total`` counters,
``_seconds`` histograms. Label values are bounded sets (topics, event types, error codes, stages):
never a contact id, an event id or a URL.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

# No `<name>_created` series next to every counter and histogram: half the series, no information
# that `rate()` / `increase()` need.
disable_created_metrics()  # type: ignore[no-untyped-call]

# ----------------------------------------------------------------------------------------- sink
SINK_RECORDS = Counter(
    "leadflow_sink_records_total",
    "Records the history sink took from Kafka, by kind (transitions, alerts, contacts) and outcome "
    "(stored: in a committed database transaction, new or already there; invalid: undecodable, dead-lettered).",
    ["kind", "outcome"],
)
SINK_BATCH_SIZE = Histogram(
    "leadflow_sink_batch_size",
    "Records per database transaction of the history sink.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
SINK_BATCH_DURATION = Histogram(
    "leadflow_sink_batch_duration_seconds",
    "Time to write one batch to the database and commit it.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SINK_FAILURES = Counter(
    "leadflow_sink_failures_total",
    "Database writes of the history sink that failed and will be retried, by reason "
    "(unavailable: the database could not be reached; error: any other database error).",
    ["reason"],
)
SINK_DATABASE_UP = Gauge(
    "leadflow_sink_database_up",
    "1 when the history sink's last database round trip succeeded, 0 while the database is away.",
)

# --------------------------------------------------------------------------------------- worker
# Hot-path metrics are updated once per poll (ingest) or per batch (contact processor), never per
# event; the gauges further down are set when /metrics is scraped. ``LEADFLOW_METRICS=0`` turns the
# hot-path updates off (to measure their cost).

MESSAGES_CONSUMED = Counter(
    "leadflow_messages_consumed_total",
    "Input messages the ingest consumers read, by source family (a message holds one envelope or a JSON array).",
    ["source"],
)
EVENTS_CONSUMED = Counter(
    "leadflow_events_consumed_total",
    "Valid input events the ingest consumers read and forwarded to the contact processor, "
    "by source family and event type.",
    ["source", "event_type"],
)
EVENTS_DEAD_LETTERED = Counter(
    "leadflow_events_dead_lettered_total",
    "Inputs published to the dead-letter topic instead of being applied, by source family and error code.",
    ["source", "error_code"],
)
EVENTS_APPLIED = Counter(
    "leadflow_events_applied_total",
    "Events the contact processor applied to a contact (duplicates and routed referral credit excluded).",
)
DUPLICATES_SKIPPED = Counter(
    "leadflow_duplicates_skipped_total",
    "Events the contact processor skipped because their contact had already applied that event_id.",
)
LATE_EVENTS = Counter(
    "leadflow_late_events_total",
    "Events older than their contact's clock when they reached the processor (applied out of order).",
)
IDENTITY_LINKS = Counter(
    "leadflow_identity_links_total",
    "Link events (contact_id + anonymous_id) resolved by the processor, by outcome: merge (an anonymous "
    "history merged), link (an unknown anonymous id linked), linked (already linked to this contact), "
    "conflict (the anonymous id belongs to another contact: usually a shared device).",
    ["outcome"],
)
TRANSITIONS = Counter(
    "leadflow_transitions_total",
    "Transitions published to lead.transitions, by kind (stage, temperature), from, to and direction "
    "(advance, regress).",
    ["kind", "from", "to", "direction"],
)
ALERTS = Counter(
    "leadflow_alerts_total",
    "Alerts published to lead.alerts, by type (became_hot; response_overdue: the escalation of an alert "
    "nobody answered by respond_by; alert_answered: the first lead_contacted after a became_hot).",
    ["type"],
)
SALES_CONTACTS = Counter(
    "leadflow_sales_contacts_total",
    "lead_contacted events applied, by what they meant for speed to lead (answered_in_time, answered_late, "
    "before_alert: dated before the alert, answers nothing; no_alert; already_answered).",
    ["outcome"],
)
TIME_TO_FIRST_CONTACT = Histogram(
    "leadflow_time_to_first_contact_seconds",
    "Time from a became_hot alert to the first lead_contacted that answered it (event time).",
    buckets=(60, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400, 259200),
)
PROCESSOR_BATCHES = Counter(
    "leadflow_processor_batches_total", "Batches of internal messages the contact processor handled."
)
SWEEP_DURATION = Histogram(
    "leadflow_cooling_sweep_duration_seconds",
    "Time one partition took to fire the cooling due at a sweep tick.",
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
COOLING_DUE = Counter(
    "leadflow_cooling_contacts_due_total",
    "Contacts whose cooling deadline was due at a sweep tick (each was re-evaluated; "
    "a move is counted in leadflow_transitions_total).",
)


class BatchHistogram(Collector):
    """A Prometheus histogram fed a batch at a time: ``observe(value, count)`` records ``count``
    equal values at once, ``observe_ages`` a sorted batch of timestamps in O(buckets · log n).

    prometheus-client's Histogram takes one value per call; on the hot path that would be a call
    (and a lock) per event. Exported exactly like a Histogram (``_bucket``, ``_sum``, ``_count``).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        bounds = tuple(float(b) for b in buckets)
        if not bounds or list(bounds) != sorted(set(bounds)) or math.isinf(bounds[-1]):
            raise ValueError("buckets must be finite, distinct and ascending (+Inf is implied)")
        self.name = name
        self.documentation = documentation
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # per bucket (not cumulative); the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe(self, value: float, count: int = 1) -> None:
        """Record ``count`` observations of ``value``."""
        index = bisect.bisect_left(self.bounds, value)  # the first bucket with value <= le
        with self._lock:
            self._counts[index] += count
            self._sum += value * count

    def observe_ages(self, now: int, times: Sequence[int], unit: float = 1e-6) -> None:
        """Record ``now - t`` for every ``t`` in ``times`` (sorted ascending, integers in ``unit``
        seconds); a negative age (a time after ``now``) counts as 0."""
        n = len(times)
        if n == 0:
            return
        per_bucket = []
        below = 0  # observations already placed in lower buckets
        for bound in self.bounds:
            # age <= bound  <=>  t >= now - bound / unit
            cumulative = n - bisect.bisect_left(times, now - bound / unit)
            per_bucket.append(cumulative - below)
            below = cumulative
        per_bucket.append(n - below)
        future = n - bisect.bisect_right(times, now)
        total = n * now - sum(times)  # exact on integer times
        if future:
            total += sum(times[n - future :]) - future * now
        with self._lock:
            for index, added in enumerate(per_bucket):
                self._counts[index] += added
            self._sum += total * unit

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation)]

    def collect(self) -> list[Metric]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        buckets, cumulative = [], 0
        for bound, added in zip((*self.bounds, math.inf), counts, strict=True):
            cumulative += added
            buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
        return [HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)]


PROCESSING_LATENCY = BatchHistogram(
    "leadflow_processing_latency_seconds",
    "Per event: from the ingest consumer's poll of the input to its batch being durable (the broker "
    "acknowledged the outputs the contact processor published for it, then its changelog records).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
EVENT_TIME_LAG = BatchHistogram(
    "leadflow_event_time_lag_seconds",
    "Per event: outputs published minus the event's occurred_at (how far behind real time the "
    "pipeline's view of each contact is; includes the sender's own delay).",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400),
)

# Set at scrape time from the worker's live state (see pipeline.streaming.observability).
CONSUMER_LAG = Gauge(
    "leadflow_consumer_lag",
    "Messages not yet processed, per topic and partition this worker consumes: log end offset minus "
    "the committed offset (ingest topics and the internal contact-events topic).",
    ["topic", "partition"],
)
PARTITIONS_OWNED = Gauge(
    "leadflow_partitions_owned", "Partitions of the internal contact-events topic this worker processes."
)
CONTACTS = Gauge(
    "leadflow_contacts",
    "Contacts in this worker's partitions, by stage and temperature.",
    ["stage", "temperature"],
)
COOLING_PENDING = Gauge(
    "leadflow_cooling_pending_contacts",
    "Contacts in this worker's partitions with a pending cooling deadline.",
)


def count_ingest_poll(source: str, messages: int, events: Mapping[str, int], dead: Mapping[str, int]) -> None:
    """One ingest poll: ``events`` by event type, ``dead`` (dead-lettered inputs) by error code."""
    MESSAGES_CONSUMED.labels(source).inc(messages)
    for event_type, n in events.items():
        EVENTS_CONSUMED.labels(source, event_type).inc(n)
    for code, n in dead.items():
        EVENTS_DEAD_LETTERED.labels(source, code).inc(n)


def count_outputs(moves: Mapping[tuple[str, str, str, str], int], alert_types: Sequence[str]) -> None:
    """Transitions published by ``(kind, from, to, direction)``, and the types of alerts published."""
    for key, n in moves.items():
        TRANSITIONS.labels(*key).inc(n)
    for alert_type in set(alert_types):
        ALERTS.labels(alert_type).inc(alert_types.count(alert_type))


def count_speed_to_lead(response_seconds: Sequence[float], contact_outcomes: Sequence[str]) -> None:
    """A batch's answered alerts (their response times) and its lead_contacted events by outcome."""
    for seconds in response_seconds:
        TIME_TO_FIRST_CONTACT.observe(seconds)
    for outcome in set(contact_outcomes):
        SALES_CONTACTS.labels(outcome).inc(contact_outcomes.count(outcome))


def count_identity_links(outcomes: Mapping[str, int]) -> None:
    """Link events resolved in a batch, by outcome."""
    for outcome, n in outcomes.items():
        IDENTITY_LINKS.labels(outcome).inc(n)


def count_processor_batch(
    published: int,
    received: Sequence[tuple[int, int]],
    event_lists: Sequence[Sequence[Any]],
    applied: int,
    duplicates: int,
    late: int,
) -> None:
    """One contact-processor batch that became durable (outputs, then changelog, acknowledged) at
    ``published`` (µs):
    ``received`` = ``(received_at µs, events)`` per input batch in it; ``event_lists`` = the
    batch's events per partition, each sorted by ``occurred_at``."""
    PROCESSOR_BATCHES.inc()
    if applied:
        EVENTS_APPLIED.inc(applied)
    if duplicates:
        DUPLICATES_SKIPPED.inc(duplicates)
    if late:
        LATE_EVENTS.inc(late)
    for received_at, n in received:
        PROCESSING_LATENCY.observe(max(0, published - received_at) / 1e6, n)
    for events in event_lists:
        if events:
            EVENT_TIME_LAG.observe_ages(published, [event.occurred_at for event in events])


def count_sweep(seconds: float, due: int) -> None:
    """One partition's sweep tick: how long it took, how many contacts were due."""
    SWEEP_DURATION.observe(seconds)
    if due:
        COOLING_DUE.inc(due)
