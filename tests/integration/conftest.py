"""Fixtures for integration tests: real brokers, one of each kind per session.

``broker`` is parametrized over Apache Kafka and the embedded Tansu broker
(:mod:`tests.support.brokers`): a test that takes it runs on both, and pytest groups the tests by
broker so that each starts once. A test that needs one kind only says so, and why, with
``@pytest.mark.broker("tansu")`` (or ``"kafka"``).

Every test gets its own topic prefix and app id, so tests never see each other's data and never
reuse a consumer group id (which can stall a join on Tansu).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from pipeline.streaming.embedded_broker import EmbeddedBroker
from pipeline.streaming.local_kafka import LocalKafka
from tests.integration.streaming.equivalence import Reference, load_sample, sample_end
from tests.support.brokers import TestBroker, selected_brokers

_counter = itertools.count(1)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("broker")
    kinds = [k for k in selected_brokers() if marker is None or k in marker.args]
    metafunc.parametrize("broker", kinds, indirect=True, scope="session")


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestBroker]:
    if request.param == "kafka":
        with LocalKafka(nodes=1, data_dir=tmp_path_factory.mktemp("kafka")) as kafka:
            yield kafka
    else:
        with EmbeddedBroker(log_dir=tmp_path_factory.mktemp("broker")) as tansu:
            yield tansu


@pytest.fixture
def namespace() -> str:
    """A unique name for this test's topics and consumer groups."""
    return f"t{os.getpid()}x{next(_counter)}"

# The shipped sample and what `leadflow replay` makes of it (the equivalence tests' reference).


@pytest.fixture(scope="module")
def sample() -> list[bytes]:
    return load_sample()


@pytest.fixture(scope="module")
def until(sample: list[bytes]) -> int:
    return sample_end(sample)


@pytest.fixture(scope="module")
def reference(sample: list[bytes], until: int) -> Reference:
    return Reference(sample, until)
