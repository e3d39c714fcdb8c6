"""Prometheus metrics of the webhook deliverer (prometheus-client, the default registry).

Label values are bounded: ``subscription`` is a configured name, ``outcome`` / ``reason`` /
``result`` are the fixed sets listed in each help text. Never a URL, a contact or a delivery id.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter(
    "leadflow_webhook_deliveries_total",
    "Records finished per subscription, by outcome (delivered: the receiver answered 2xx; "
    "dead_lettered: retries exhausted or the record unreadable, written to webhooks.deadletter).",
    ["subscription", "outcome"],
)
RECORDS = Counter(
    "leadflow_webhook_records_total",
    "Records a subscription read, by result (matched: to deliver; filtered: not selected by its filter; "
    "invalid: not a readable alert or transition).",
    ["subscription", "result"],
)
RETRIES = Counter(
    "leadflow_webhook_retries_total",
    "Delivery attempts after the first one, per subscription.",
    ["subscription"],
)
FAILURES = Counter(
    "leadflow_webhook_failures_total",
    "Failed delivery attempts per subscription, by reason "
    "(timeout, connection, http_3xx, http_4xx, http_5xx, http_other).",
    ["subscription", "reason"],
)
DELIVERY_LATENCY = Histogram(
    "leadflow_webhook_delivery_latency_seconds",
    "From the record's Kafka timestamp to the receiver's 2xx answer, retries included.",
    ["subscription"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86_400),
)
REQUEST_DURATION = Histogram(
    "leadflow_webhook_request_duration_seconds",
    "Duration of one HTTP attempt (connect to response headers), whatever its result.",
    ["subscription"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
IN_FLIGHT = Gauge(
    "leadflow_webhook_in_flight",
    "Records of a subscription being delivered or waiting for a retry.",
    ["subscription"],
)
