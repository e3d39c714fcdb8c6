"""The brokers a streaming benchmark runs on, chosen with ``--broker``.

``tansu``: the embedded Tansu 0.6 broker (``leadflow up``'s default, the ``tansu`` profile).
``kafka``: one Apache Kafka KRaft node started from the cached Maven Central jars
(:class:`pipeline.streaming.local_kafka.LocalKafka`, the version the tests pin; the ``kafka``
profile, the production path). ``both`` (the default of ``make bench-stream`` and
``make bench-soak``): the whole benchmark on Tansu, then on Apache Kafka, in the same run, so
that the two sets of figures share the machine's state and every ratio between them is taken in
one run.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from pipeline.config.profiles import BROKER_PROFILES, BrokerProfile
from pipeline.streaming.embedded_broker import EmbeddedBroker
from pipeline.streaming.local_kafka import LocalKafka, fetch_jars, kafka_version

#: The order ``both`` runs them in: Tansu first (the figures of earlier waves), then Apache Kafka.
BENCH_BROKERS = ("tansu", "kafka")
CHOICES = (*BENCH_BROKERS, "both")


def chosen(value: str) -> list[str]:
    """The brokers ``--broker VALUE`` names."""
    return list(BENCH_BROKERS) if value == "both" else [value]


def profile(kind: str) -> BrokerProfile:
    return BROKER_PROFILES[kind]


def describe(kind: str) -> str:
    """How a report names the broker."""
    if kind == "kafka":
        return f"one Apache Kafka {kafka_version()} KRaft node (kafka profile)"
    return "one embedded Tansu 0.6 broker (tansu profile)"


def start(kind: str, workdir: Path, stack: contextlib.ExitStack) -> EmbeddedBroker | LocalKafka:
    """Start a broker of ``kind`` whose logs (and, for Kafka, data) go under ``workdir``; the
    stack stops it however the benchmark ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "kafka":
        fetch_jars()  # once: a complete cache folder is never fetched again
        return stack.enter_context(LocalKafka(nodes=1, data_dir=workdir, heap_mb=1024))
    if kind == "tansu":
        return stack.enter_context(EmbeddedBroker(log_dir=workdir))
    raise ValueError(f"unknown broker {kind!r}: choose from {', '.join(CHOICES)}")
