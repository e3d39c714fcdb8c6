"""A collector process on the session broker, shared by the tests of one module."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from pipeline.collector.config import CollectorConfig
from pipeline.config.settings import Settings
from pipeline.kafka.topics import ensure_topics
from tests.support.brokers import TestBroker, broker_settings

from .harness import ALLOWED_ORIGIN, EMAIL_KEY, WEBSITE_KEY, Collector, running_collector

_modules = itertools.count(1)


def collector_settings(broker: TestBroker, name: str) -> Settings:
    return broker_settings(broker, topic_prefix=f"{name}.", app_id=name, partitions=2)


def collector_config(**changes: object) -> CollectorConfig:
    return CollectorConfig(
        port=0,  # a free port is chosen at start
        write_keys={"website": (WEBSITE_KEY,), "email": (EMAIL_KEY,)},
        cors_origins=frozenset({ALLOWED_ORIGIN}),
        publish_timeout=5.0,
        retry_after=3,
        # Every request of these tests comes from 127.0.0.1 with one key: no abuse limits, except in
        # the tests of the limits (test_rate_limits.py), which set them.
        key_limit=None,
        ip_limit=None,
    ).with_(**changes)


@pytest.fixture(scope="module")
def collector(broker: TestBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    name = f"t{os.getpid()}c{next(_modules)}"
    settings = collector_settings(broker, name)
    ensure_topics(settings)
    with running_collector(settings, collector_config(), tmp_path_factory.mktemp("collector") / "collector.log") as c:
        yield c
