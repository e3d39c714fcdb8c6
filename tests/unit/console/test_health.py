"""The Pipeline page's figures from Prometheus text: sums, rates between scrapes, quantiles."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import orjson

from pipeline.console.answer import contacted_event, sales_family_exists
from pipeline.console.health import HealthSampler, parse_samples, quantile

SCRAPE = """\
# TYPE leadflow_events_consumed_total counter
leadflow_events_consumed_total{{source="website",event_type="page_view"}} {consumed}
# TYPE leadflow_events_dead_lettered_total counter
leadflow_events_dead_lettered_total{{source="website",error_code="schema_violation"}} 2
leadflow_events_dead_lettered_total{{source="email",error_code="invalid_json"}} 1
# TYPE leadflow_transitions_total counter
leadflow_transitions_total{{kind="stage",from="niche",to="lead",direction="advance"}} {out}
# TYPE leadflow_alerts_total counter
leadflow_alerts_total{{type="became_hot"}} 1
# TYPE leadflow_consumer_lag gauge
leadflow_consumer_lag{{topic="events.website",partition="0"}} 3
leadflow_consumer_lag{{topic="events.website",partition="1"}} 4
# TYPE leadflow_processing_latency_seconds histogram
leadflow_processing_latency_seconds_bucket{{le="0.01"}} 0
leadflow_processing_latency_seconds_bucket{{le="0.1"}} 50
leadflow_processing_latency_seconds_bucket{{le="1.0"}} 100
leadflow_processing_latency_seconds_bucket{{le="+Inf"}} 100
leadflow_processing_latency_seconds_sum 10
leadflow_processing_latency_seconds_count 100
"""


def test_rates_between_two_scrapes_and_the_figures_of_the_last() -> None:
    sampler = HealthSampler({"worker": "http://x/metrics"})
    first = sampler.update(parse_samples(SCRAPE.format(consumed=100, out=10)), now=1000.0)
    assert first["series"][-1]["in"] == 0.0  # one scrape: no rate yet
    second = sampler.update(parse_samples(SCRAPE.format(consumed=300, out=50)), now=1002.0)
    assert second["series"][-1]["in"] == 100.0  # (300 + 3) - (100 + 3) events in 2 s
    assert second["series"][-1]["out"] == 20.0
    assert second["dead_letters_by_code"] == {"schema_violation": 2.0, "invalid_json": 1.0}
    assert second["consumer_lag"] == 7.0
    assert math.isclose(second["alert_latency_p50_seconds"], 0.1)
    assert math.isclose(second["alert_latency_p95_seconds"], 0.1 + 0.9 * 45 / 50)
    restarted = sampler.update(parse_samples(SCRAPE.format(consumed=5, out=0)), now=1003.0)
    assert restarted["series"][-1]["in"] == 0.0  # a restarted process: no negative rate


def test_quantile_without_observations_is_none() -> None:
    assert quantile([], "leadflow_processing_latency_seconds", 0.5) is None


def test_the_answer_is_a_valid_sales_event_with_an_id_derived_from_the_alert() -> None:
    from pipeline.contracts import decode_event
    from pipeline.state_machine.events import Event

    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = contacted_event("c-1", "al-1", at)
    assert event == contacted_event("c-1", "al-1", at)  # a second click is a duplicate
    assert event["properties"]["channel"] == "call" and event["properties"]["alert_id"] == "al-1"
    if sales_family_exists():
        decoded = decode_event(orjson.dumps(event), family="sales", received_at=1_800_000_000_000_000)
        assert isinstance(decoded, Event), decoded
        assert decoded.event_type == "lead_contacted" and decoded.contact == "c-1"
