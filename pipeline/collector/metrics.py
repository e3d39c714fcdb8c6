"""Prometheus metrics of the HTTP collector (prometheus-client, the default registry).

Label values are bounded: routes are the collector's route templates (anything else is
``unmatched``), statuses the HTTP codes it answers, sources the three families (an unknown source
is answered 404 before anything is counted by source), error codes the contract's.
Counters are incremented once per request, not once per event.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "leadflow_collector_requests_total",
    "HTTP requests answered by the collector, by route template and status code.",
    ["route", "status"],
)
EVENTS_ACCEPTED = Counter(
    "leadflow_collector_events_accepted_total",
    "Events acknowledged by the broker and answered 202, by source.",
    ["source"],
)
EVENTS_REJECTED = Counter(
    "leadflow_collector_events_rejected_total",
    "Events rejected by the contract (never published), by source and error code.",
    ["source", "error_code"],
)
RATE_LIMITED = Counter(
    "leadflow_collector_rate_limited_total",
    "Requests answered 429 by an abuse limit, by source and reason (write_key, client_address).",
    ["source", "reason"],
)
EVENTS_UNAVAILABLE = Counter(
    "leadflow_collector_events_unavailable_total",
    "Valid events answered 503 because the broker did not acknowledge them in time, by source.",
    ["source"],
)
PUBLISH_SECONDS = Histogram(
    "leadflow_collector_publish_seconds",
    "Time from handing a request's events to the producer until the broker acknowledged all of them.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
REQUEST_EVENTS = Histogram(
    "leadflow_collector_request_events",
    "Envelopes per events request.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
)
INFLIGHT = Gauge(
    "leadflow_collector_inflight_requests",
    "Events requests being handled now (beyond LEADFLOW_COLLECTOR_MAX_INFLIGHT they are answered 503).",
)
BROKER_UP = Gauge(
    "leadflow_collector_broker_up",
    "1 while the collector's producer is connected to the broker, 0 otherwise.",
)
