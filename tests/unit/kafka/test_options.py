"""The aiokafka argument builders: one consumer and one producer shape from Settings + profile."""

from __future__ import annotations

from pipeline.config.settings import from_env
from pipeline.kafka.options import consumer_options, producer_options


def test_consumer_options_follow_the_profile() -> None:
    settings = from_env({}, bootstrap="b:9092", profile="tansu")
    assert consumer_options(settings, "app-sink", max_poll_records=100) == {
        "bootstrap_servers": "b:9092",
        "group_id": "app-sink",
        "client_id": "app-sink",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": 100,
        "fetch_max_wait_ms": 20,
        "session_timeout_ms": 6_000,
        "heartbeat_interval_ms": 1_000,
        "rebalance_timeout_ms": 6_000,
    }


def test_consumer_options_extras_and_start_position() -> None:
    options = consumer_options(from_env({}), "g", auto_offset_reset="latest", max_partition_fetch_bytes=4 << 20)
    assert options["auto_offset_reset"] == "latest" and options["max_partition_fetch_bytes"] == 4 << 20
    assert "max_poll_records" not in options
    assert (options["fetch_max_wait_ms"], options["session_timeout_ms"]) == (100, 30_000)


def test_producer_options() -> None:
    kafka, tansu = from_env({}), from_env({}, profile="tansu")
    assert producer_options(kafka) == {"bootstrap_servers": "localhost:9092", "acks": "all", "max_batch_size": 524_288}
    assert producer_options(kafka, "c", idempotent=True, linger_ms=5)["enable_idempotence"] is True
    options = producer_options(tansu, "c", idempotent=True, linger_ms=5)
    assert (options["client_id"], options["enable_idempotence"], options["linger_ms"]) == ("c", False, 5)


def test_explicit_overrides_reach_the_clients() -> None:
    settings = from_env({}, client={"fetch_max_wait_ms": 7, "producer_batch_bytes": 1024})
    assert consumer_options(settings, "g")["fetch_max_wait_ms"] == 7
    assert producer_options(settings)["max_batch_size"] == 1024
