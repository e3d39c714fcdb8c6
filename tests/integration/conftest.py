"""Fixtures for integration tests: a real Kafka-protocol broker (embedded Tansu) per session.

Every test gets its own topic prefix and app id, so tests never see each other's data and never
reuse a consumer group id (which can stall a join on Tansu).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from pipeline.streaming.embedded_broker import EmbeddedBroker

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_dir=tmp_path_factory.mktemp("broker")) as running:
        yield running


@pytest.fixture
def namespace() -> str:
    """A unique name for this test's topics and consumer groups."""
    return f"t{os.getpid()}x{next(_counter)}"
