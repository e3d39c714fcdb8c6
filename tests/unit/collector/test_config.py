"""LEADFLOW_COLLECTOR_* parsing: good values, and errors that name the variable."""

from __future__ import annotations

import pytest

from pipeline.collector.config import CollectorConfigError, config_from_env


def test_defaults() -> None:
    config = config_from_env({})
    assert (config.bind, config.port, config.ip_mode, config.write_keys, config.cors_origins) == (
        "127.0.0.1", 8080, "truncate", {}, frozenset())


def test_write_keys_several_per_source_and_origins() -> None:
    config = config_from_env({
        "LEADFLOW_COLLECTOR_WRITE_KEYS": "website:pk_live_1234, website:pk_next_5678,purchase:sk_shop_secret",
        "LEADFLOW_COLLECTOR_CORS_ORIGINS": "https://www.Example.com, http://localhost:3000",
    })
    assert config.write_keys == {"website": ("pk_live_1234", "pk_next_5678"), "purchase": ("sk_shop_secret",)}
    assert config.cors_origins == {"https://www.example.com", "http://localhost:3000"}


def test_round_trip_through_the_environment() -> None:
    config = config_from_env({"LEADFLOW_COLLECTOR_WRITE_KEYS": "email:ek_12345678", "LEADFLOW_COLLECTOR_PORT": "9000"})
    assert config_from_env(config.to_env()) == config


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LEADFLOW_COLLECTOR_WRITE_KEYS", "website", "not SOURCE:KEY"),
        ("LEADFLOW_COLLECTOR_WRITE_KEYS", "crm:abcdefghij", "unknown source 'crm'"),
        ("LEADFLOW_COLLECTOR_WRITE_KEYS", "website:short", "shorter than 8"),
        ("LEADFLOW_COLLECTOR_CORS_ORIGINS", "*", "not an origin"),
        ("LEADFLOW_COLLECTOR_CORS_ORIGINS", "https://example.com/path", "not an origin"),
        ("LEADFLOW_COLLECTOR_IP", "hash", "choose one of truncate, full, drop"),
        ("LEADFLOW_COLLECTOR_PORT", "http", "not an integer"),
        ("LEADFLOW_COLLECTOR_PUBLISH_TIMEOUT", "0", "greater than 0"),
        ("LEADFLOW_COLLECTOR_MAX_INFLIGHT", "0", "at least 1"),
    ],
)
def test_errors_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(CollectorConfigError) as caught:
        config_from_env({name: value})
    assert name in str(caught.value) and message in str(caught.value)
