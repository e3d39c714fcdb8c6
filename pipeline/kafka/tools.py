"""Client tools on kafka-python: create topics, publish a JSONL file, tail an output topic.

These are the simplest producers and subscribers of Leadflow: what a web tracker, an email tool
or a shop does to publish events, and what a sales tool does to receive alerts.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from pipeline.config.settings import Settings
from pipeline.config.topics import TopicNames
from pipeline.state_machine import SOURCES


def cluster_id(settings: Settings, patience: float = 60.0) -> str | None:
    """The cluster id the broker reports (``DescribeCluster``). A broker of the bootstrap list
    that is down (a rolling restart, a leader killed) is not an answer: it asks again, a new
    client each time, for up to ``patience`` seconds, then raises the last error."""
    from kafka.errors import KafkaError

    deadline = time.monotonic() + patience
    delay = 0.2
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap, client_id=f"{settings.app_id}-admin",
                                     **settings.security.kafka_python())
            try:
                found = admin.describe_cluster().get("cluster_id")
                return str(found) if found is not None else None
            finally:
                admin.close()
        except (KafkaError, OSError):
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


@dataclass(slots=True)
class ProduceReport:
    """What ``leadflow produce`` did: lines published per topic and lines it could not route."""

    published: Counter[str] = field(default_factory=Counter)
    rejected: list[str] = field(default_factory=list)  # "file:line: reason"

    @property
    def total(self) -> int:
        return sum(self.published.values())


def route(line: bytes, where: str, names: TopicNames) -> tuple[str, bytes | None] | str:
    """The topic and key for one JSONL line, or the reason it cannot be routed."""
    try:
        envelope = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"{where}: not JSON ({exc})"
    if not isinstance(envelope, dict):
        return f"{where}: not a JSON object"
    source = envelope.get("source")
    if source not in SOURCES:
        return f"{where}: field 'source' must be one of {', '.join(SOURCES)} (got {source!r})"
    identity = envelope.get("contact_id") or envelope.get("anonymous_id")
    key = identity.encode() if isinstance(identity, str) else None
    return names.inputs[source], key


def produce_lines(
    lines: Iterable[tuple[str, bytes]],
    settings: Settings,
    progress: Callable[[ProduceReport], None] | None = None,
    pace: float | None = None,
) -> ProduceReport:
    """Publish ``(where, line)`` pairs (``where`` = "file:line") to their family's topic.

    Lines that cannot be routed are reported, not published (the pipeline would dead-letter them,
    but without a ``source`` there is no topic to send them to). ``pace`` = events per second.
    """
    names = TopicNames.of(settings)
    report = ProduceReport()
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap,
        **settings.security.kafka_python(),
        acks="all",
        linger_ms=5,
        retries=5,
        batch_size=settings.broker.producer_batch_bytes,
        max_in_flight_requests_per_connection=1,  # keep each partition's order even on retries
    )
    started = time.monotonic()
    try:
        for where, line in lines:
            routed = route(line, where, names)
            if isinstance(routed, str):
                report.rejected.append(routed)
                continue
            topic, key = routed
            producer.send(topic, value=line, key=key)
            report.published[topic] += 1
            if pace:
                ahead = report.total / pace - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if progress is not None and report.total % 1000 == 0:
                progress(report)
        producer.flush()
    finally:
        producer.close()
    return report


def publish_sweep(settings: Settings, until: int) -> int:
    """Ask the owner of every internal partition to fire the cooling due by ``until``
    (microseconds); returns the number of partitions told."""
    from pipeline.contracts.internal import SweepTick, encode

    topic = TopicNames.of(settings).contact_events
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap,
        **settings.security.kafka_python(),
        acks="all",
        batch_size=settings.broker.producer_batch_bytes,
        max_in_flight_requests_per_connection=1,
    )
    try:
        partitions = sorted(producer.partitions_for(topic))
        tick = encode(SweepTick(clock=until))
        for partition in partitions:
            producer.send(topic, value=tick, partition=partition)
        producer.flush()
    finally:
        producer.close()
    return len(partitions)


def numbered_lines(path: str, stream: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    for number, line in enumerate(stream, start=1):
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield f"{path}:{number}", line


def tail(
    topic: str,
    settings: Settings,
    from_beginning: bool,
    emit: Callable[[bytes], None],
    stop_after: float | None = None,
    max_records: int | None = None,
    keep_going: Callable[[], bool] | None = None,
) -> int:
    """Print records of ``topic`` as they arrive (no consumer group: nothing is committed).

    Stops after ``stop_after`` seconds, ``max_records`` records, or once ``keep_going()`` is false,
    when given; returns the number of records.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        **settings.security.kafka_python(),
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=settings.broker.fetch_max_wait_ms,
    )
    count = 0
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        deadline = time.monotonic() + 10
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            raise LookupError(f"topic {topic!r} does not exist on {settings.bootstrap}")
        assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assignment)
        if from_beginning:
            consumer.seek_to_beginning(*assignment)
        else:
            consumer.seek_to_end(*assignment)
        started = time.monotonic()
        while stop_after is None or time.monotonic() - started < stop_after:
            if keep_going is not None and not keep_going():
                break
            batch = consumer.poll(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    emit(record.value)
                    count += 1
                    if max_records is not None and count >= max_records:
                        return count
    finally:
        consumer.close()
    return count


def print_record(value: bytes, out: IO[str] = sys.stdout) -> None:
    out.write(value.decode("utf-8", "replace") + "\n")
    out.flush()
