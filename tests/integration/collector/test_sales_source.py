"""The collector's ``sales`` source (issue 13): a sales tool POSTs lead_contacted, lead_qualified,
... with its own write key; they reach ``events.sales`` keyed by contact, and bad sales input is
answered with the dead letter's code and JSON path."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from pipeline.config.topics import TopicNames
from pipeline.kafka.topics import ensure_topics
from tests.support.brokers import TestBroker

from .conftest import collector_config, collector_settings
from .harness import WEBSITE_KEY, Collector, read_records, running_collector

pytestmark = pytest.mark.integration
SALES_KEY = "sk_sales_test_0003"
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def sales_collector(broker: TestBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    name = f"t{os.getpid()}sales"
    settings = collector_settings(broker, name)
    ensure_topics(settings)
    config = collector_config(write_keys={"website": (WEBSITE_KEY,), "sales": (SALES_KEY,)})
    with running_collector(settings, config, tmp_path_factory.mktemp("collector") / "collector.log") as c:
        yield c


def sales_event(event_type: str, properties: dict[str, Any], contact_id: str = "c-77") -> dict[str, Any]:
    occurred = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    return {"event_id": f"sal-{next(_ids)}", "event_type": event_type, "contact_id": contact_id,
            "occurred_at": occurred, "properties": properties}


def test_a_sales_tool_posts_lead_contacted_and_it_reaches_events_sales(sales_collector: Collector) -> None:
    call = sales_event("lead_contacted", {"channel": "call", "rep_id": "rep-7", "outcome": "connected"})
    qualified = sales_event("lead_qualified", {"budget": True, "authority": True, "need": True})
    reply = sales_collector.post("sales", orjson.dumps([call, qualified]), key=SALES_KEY)
    assert reply.status == 202, reply.body
    assert reply.json == {"accepted": [call["event_id"], qualified["event_id"]], "rejected": []}
    topic = TopicNames.of(sales_collector.settings).inputs["sales"]
    records = read_records(sales_collector.settings, topic, expect=2, timeout=10)
    mine = {value["event_id"]: (key, value) for key, value in records}
    key, value = mine[call["event_id"]]
    assert key == b"c-77" and value["properties"]["channel"] == "call"
    assert qualified["event_id"] in mine


def test_the_sales_source_needs_its_own_key(sales_collector: Collector) -> None:
    call = sales_event("lead_contacted", {"channel": "call"})
    assert sales_collector.post("sales", orjson.dumps(call), key=WEBSITE_KEY).status in (401, 403)
    assert sales_collector.post("sales", orjson.dumps(call), key=None).status == 401


@pytest.mark.parametrize(
    ("event_type", "properties", "detail"),
    [
        ("lead_qualified", {"notes": "nice call"},
         "$.properties: lead_qualified needs at least one of budget, authority, need, timeline"),
        ("lead_disqualified", {"reason": "too_pushy"}, "$.properties.reason: must be one of"),
        ("deal_won", {"amount": -5, "currency": "USD"}, "$.properties.amount: must be a number >= 0 (got -5)"),
    ],
)
def test_bad_sales_input_is_rejected_with_code_and_path(
    sales_collector: Collector, event_type: str, properties: dict[str, Any], detail: str
) -> None:
    bad = sales_event(event_type, properties)
    reply = sales_collector.post("sales", orjson.dumps(bad), key=SALES_KEY)
    assert reply.status in (202, 400), reply.body
    [rejected] = reply.json["rejected"]
    assert rejected["error_code"] == "schema_violation"
    assert rejected["detail"].startswith(detail)


def test_a_website_event_on_the_sales_source_is_the_wrong_source(sales_collector: Collector) -> None:
    page = sales_event("page_view", {"url": "https://shop.example/"})
    reply = sales_collector.post("sales", orjson.dumps(page), key=SALES_KEY)
    [rejected] = reply.json["rejected"]
    assert rejected["error_code"] == "wrong_source"
