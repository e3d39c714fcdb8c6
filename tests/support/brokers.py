"""The brokers the integration suite runs on, and the settings a test derives from one.

Every streaming integration test runs twice: on Apache Kafka (one KRaft node from Maven Central's
jars, :mod:`pipeline.streaming.local_kafka`: the broker users run, the ``kafka`` profile) and on
the embedded Tansu broker (``tansu`` profile: the default of ``leadflow up`` and ``leadflow demo``).
``LEADFLOW_TEST_BROKERS=kafka`` (or ``tansu``) runs one of them only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Protocol

from pipeline.config.settings import Settings, from_env

#: The brokers of the matrix, in the order the suite runs them.
BROKERS = ("kafka", "tansu")


class TestBroker(Protocol):
    """What a test needs of a running broker (EmbeddedBroker and LocalKafka both are one)."""

    __test__ = False  # a Protocol named Test*, not a test class

    @property
    def bootstrap(self) -> str: ...

    @property
    def profile(self) -> str: ...

    @property
    def replication_factor(self) -> int: ...

    def create_topics(self, names: Iterable[str], partitions: int = 4, timeout: float = 10.0) -> list[str]: ...


def selected_brokers() -> list[str]:
    wanted = [b.strip() for b in os.environ.get("LEADFLOW_TEST_BROKERS", ",".join(BROKERS)).split(",") if b.strip()]
    unknown = sorted(set(wanted) - set(BROKERS))
    if unknown:
        raise ValueError(
            f"LEADFLOW_TEST_BROKERS: unknown broker(s) {', '.join(unknown)}: choose from {', '.join(BROKERS)}"
        )
    return wanted


def broker_settings(broker: TestBroker, **overrides: Any) -> Settings:
    """Settings for a client of ``broker``: its bootstrap, its profile and a replication factor
    it can honour (one node: 1), with ``overrides`` applied."""
    return from_env(
        {},
        **{
            "bootstrap": broker.bootstrap,
            "profile": broker.profile,
            "replication_factor": broker.replication_factor,
            **overrides,
        },
    )


def broker_env(broker: TestBroker) -> dict[str, str]:
    """The same as ``LEADFLOW_*`` variables, for a command started as a process."""
    return {
        "LEADFLOW_KAFKA": broker.bootstrap,
        "LEADFLOW_BROKER_PROFILE": broker.profile,
        "LEADFLOW_REPLICATION_FACTOR": str(broker.replication_factor),
    }
