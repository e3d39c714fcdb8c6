"""Webhook delivery of alerts and transitions to sales tools (``leadflow webhooks``).

Subscriptions (``config``) say where to POST what; each runs as its own consumer group
(``deliverer``) that signs every request (``signature``), retries with backoff and jitter
(``backoff``), dead-letters what it gives up on (``deadletter``) and commits only finished records
(``offsets``). ``service`` is the process; ``metrics`` its Prometheus metrics.

Receivers verify requests with :func:`pipeline.webhooks.signature.verify`.
"""

from __future__ import annotations

from pipeline.webhooks.config import EventFilter, RetryPolicy, Subscription, WebhooksConfig, load_config, parse_config
from pipeline.webhooks.errors import (
    ConfigError,
    MalformedSignature,
    SignatureError,
    SignatureMismatch,
    StaleTimestamp,
    WebhookError,
)
from pipeline.webhooks.signature import sign, verify

__all__ = [
    "ConfigError",
    "EventFilter",
    "MalformedSignature",
    "RetryPolicy",
    "SignatureError",
    "SignatureMismatch",
    "StaleTimestamp",
    "Subscription",
    "WebhookError",
    "WebhooksConfig",
    "load_config",
    "parse_config",
    "sign",
    "verify",
]
