"""The HTTP collector: browsers and backends send events over HTTP; the collector validates them
with the shared contract and publishes them to the input topics, answering 202 only once the
broker acknowledged them. Also serves the browser tracker (``tracker.js``).

Modules: :mod:`.config` (``LEADFLOW_COLLECTOR_*``), :mod:`.intake` (body → records, pure),
:mod:`.client_ip`, :mod:`.publisher` (aiokafka, acks), :mod:`.server` (the events endpoint),
:mod:`.app` (wiring, health, metrics, tracker), :mod:`.metrics`, :mod:`.commands` (CLI).
"""

from __future__ import annotations

from pipeline.collector.config import (
    MAX_BODY_BYTES,
    MAX_EVENTS_PER_REQUEST,
    CollectorConfig,
    CollectorConfigError,
    config_from_env,
)

__all__ = ["MAX_BODY_BYTES", "MAX_EVENTS_PER_REQUEST", "CollectorConfig", "CollectorConfigError", "config_from_env"]
