"""The collector's token buckets (issue 15): rate, burst, Retry-After, bounded memory, settings."""

from __future__ import annotations

import pytest

from pipeline.collector.config import DEFAULT_IP_LIMIT, CollectorConfigError, config_from_env
from pipeline.collector.ratelimit import Limit, TokenBuckets, parse_limit, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(Limit(rate=2.0, burst=3.0), clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # empty: one token in half a second
    assert buckets.take("b") == 0.0  # another key has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    clock.now += 60
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # refilled up to the burst only
    assert buckets.take("a") > 0


def test_buckets_are_bounded_least_recently_used_first() -> None:
    buckets = TokenBuckets(Limit(rate=1.0, burst=1.0), max_keys=2, clock=Clock())
    for key in ("a", "b", "c"):
        buckets.take(key)
    assert len(buckets) == 2
    assert buckets.take("a") == 0.0  # forgotten, so full again


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert (retry_after(0.01), retry_after(1.0), retry_after(1.2)) == (1, 1, 2)


def test_limits_parse_and_default() -> None:
    assert parse_limit("20/100") == Limit(20.0, 100.0)
    assert parse_limit("5") == Limit(5.0, 10.0)
    assert parse_limit("off") is None
    with pytest.raises(ValueError, match="RATE or RATE/BURST"):
        parse_limit("fast")
    config = config_from_env({})
    assert config.ip_limit == DEFAULT_IP_LIMIT and config.limited_sources == {"website"}
    config = config_from_env({"LEADFLOW_COLLECTOR_IP_RATE_LIMIT": "off", "LEADFLOW_COLLECTOR_KEY_RATE_LIMIT": "50/50",
                              "LEADFLOW_COLLECTOR_RATE_LIMITED_SOURCES": "website,purchase"})
    assert config.ip_limit is None and config.key_limit == Limit(50.0, 50.0)
    assert config.limited_sources == {"website", "purchase"}
    assert config_from_env(config.to_env()) == config
    with pytest.raises(CollectorConfigError, match="LEADFLOW_COLLECTOR_IP_RATE_LIMIT="):
        config_from_env({"LEADFLOW_COLLECTOR_IP_RATE_LIMIT": "-1"})
    with pytest.raises(CollectorConfigError, match="unknown source"):
        config_from_env({"LEADFLOW_COLLECTOR_RATE_LIMITED_SOURCES": "web"})
