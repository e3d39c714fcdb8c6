"""Settings from the environment: the broker profile, explicit overrides, and the topic names."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.collector.config import CollectorConfigError
from pipeline.config.profiles import BROKER_PROFILES, KAFKA, TANSU, BrokerProfile
from pipeline.config.settings import Settings, SettingsError, from_env
from pipeline.config.topics import TopicNames


def test_default_profile_is_kafka() -> None:
    settings = from_env({})
    assert settings.profile == "kafka" and settings.broker is KAFKA


def test_profiles_by_name() -> None:
    assert dict(BROKER_PROFILES) == {"kafka": KAFKA, "tansu": TANSU}
    assert from_env({"LEADFLOW_BROKER_PROFILE": "tansu"}).broker is TANSU
    assert from_env({"LEADFLOW_BROKER_PROFILE": "tansu"}, profile="kafka").broker is KAFKA  # explicit wins


def test_profile_values_unchanged() -> None:
    assert (KAFKA.session_timeout_ms, KAFKA.heartbeat_interval_ms) == (30_000, 3_000)
    assert KAFKA.rebalance_timeout_ms == 60_000
    assert (KAFKA.fetch_max_wait_ms, KAFKA.replication_factor, KAFKA.changelog_batch_bytes) == (100, 3, 524_288)
    assert not KAFKA.changelog_single_record_tail  # Apache Kafka reports end offsets right
    assert (TANSU.session_timeout_ms, TANSU.heartbeat_interval_ms, TANSU.rebalance_timeout_ms) == (6_000, 1_000, 6_000)
    assert (TANSU.fetch_max_wait_ms, TANSU.replication_factor, TANSU.changelog_batch_bytes) == (20, 1, 524_288)
    assert TANSU.changelog_single_record_tail  # its end offset is right only after a one-record batch
    assert KAFKA.producer_idempotence and not TANSU.producer_idempotence
    assert KAFKA.topic_configs and not TANSU.topic_configs


def test_profile_is_frozen_and_slotted() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        KAFKA.fetch_max_wait_ms = 1  # type: ignore[misc]
    assert not hasattr(KAFKA, "__dict__") and isinstance(KAFKA, BrokerProfile)


def test_explicit_settings_win_over_the_profile() -> None:
    settings = from_env({"LEADFLOW_BROKER_PROFILE": "tansu", "LEADFLOW_REPLICATION_FACTOR": "2"})
    assert settings.broker.replication_factor == 2 and settings.broker.fetch_max_wait_ms == 20
    tuned = Settings(client={"fetch_max_wait_ms": 50})
    assert tuned.broker == dataclasses.replace(KAFKA, fetch_max_wait_ms=50)
    with pytest.raises(SettingsError, match="unknown broker client setting"):
        _ = Settings(client={"fetch_wait": 50}).broker


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LEADFLOW_BROKER_PROFILE", "redpanda", "choose one of kafka, tansu"),
        ("LEADFLOW_PARTITIONS", "0", "must be at least 1"),
        ("LEADFLOW_SINK_BATCH", "0", "must be at least 1"),
        ("LEADFLOW_ROCKSDB_WRITE_BUFFER_MB", "0", "must be at least 1"),
        ("LEADFLOW_INGEST_BATCH", "many", "is not an integer"),
        ("LEADFLOW_METRICS", "perhaps", "use 1/true/yes/on"),
        ("LEADFLOW_REORDER_WINDOW_MS", "-5", "must be at least 0"),
    ],
)
def test_errors_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        from_env({name: value})
    assert name in str(caught.value) and message in str(caught.value)


def test_round_trip_through_the_environment() -> None:
    settings = from_env({}, profile="tansu", partitions=3, reorder_window=0.2, replication_factor=1, db_url="sqlite://",
                        rocksdb_write_buffer_mb=4)
    assert from_env(settings.to_env()) == settings


def test_collector_errors_are_settings_errors() -> None:
    assert issubclass(CollectorConfigError, SettingsError)


def test_every_topic_name_has_the_prefix() -> None:
    names = TopicNames.of(Settings(topic_prefix="t1."))
    assert names.webhooks_deadletter == "t1.webhooks.deadletter"
    assert names.deadletter == "t1.events.deadletter"
    assert names.webhooks_deadletter not in names.all()  # created by `leadflow webhooks`
