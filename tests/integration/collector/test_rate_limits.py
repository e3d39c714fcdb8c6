"""Abuse limits at the collector (issue 15), on a real collector process and broker: a client
that floods the public website key is answered 429 with Retry-After while another client keeps
its 202s; server-side keys are not limited by default."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from pipeline.collector.ratelimit import Limit
from pipeline.kafka.topics import ensure_topics
from tests.support.brokers import TestBroker

from .conftest import collector_config, collector_settings
from .harness import EMAIL_KEY, envelope, running_collector

pytestmark = pytest.mark.integration


def test_a_flooding_client_is_limited_and_a_well_behaved_one_is_not(broker: TestBroker, tmp_path: Path) -> None:
    settings = collector_settings(broker, f"t{os.getpid()}rl")
    ensure_topics(settings)
    config = collector_config(ip_limit=Limit(5.0, 5.0), key_limit=Limit(1000.0, 1000.0), trusted_proxies=1)
    with running_collector(settings, config, tmp_path / "collector.log") as collector:
        body = orjson.dumps(envelope("e"))
        flood = [collector.post("website", body, **{"X-Forwarded-For": "203.0.113.7"}) for _ in range(20)]
        calm = [collector.post("website", body, **{"X-Forwarded-For": "198.51.100.2"}) for _ in range(3)]
        server_side = [collector.post("email", orjson.dumps(envelope("m", "email_opened", source="email",
                                                                     properties={"campaign_id": "c1"})),
                                      key=EMAIL_KEY, **{"X-Forwarded-For": "203.0.113.7"}) for _ in range(20)]
        metrics = collector.request("GET", "/metrics").body.decode()
    statuses = [reply.status for reply in flood]
    assert statuses[:5] == [202] * 5 and statuses.count(429) >= 10, statuses
    limited = next(reply for reply in flood if reply.status == 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json["error_code"] == "rate_limited"
    assert [reply.status for reply in calm] == [202, 202, 202]
    assert {reply.status for reply in server_side} == {202}, [r.body for r in server_side if r.status != 202][:2]
    assert 'leadflow_collector_rate_limited_total{reason="client_address",source="website"}' in metrics
