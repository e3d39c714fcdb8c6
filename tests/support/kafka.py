"""Reading a topic to its end, for tests: every record value, partition by partition."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition

from pipeline.config.settings import Settings


def read_topic(topic: str, settings: Settings, timeout: float = 30.0, quiet_ms: int = 300) -> list[bytes]:
    """Every record value of ``topic``, partition by partition in offset order (for tests and
    debugging): reads past the reported end offsets until a fetch brings nothing for
    ``quiet_ms`` (some brokers under-report the end after multi-record batches)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=settings.broker.fetch_max_wait_ms,
    )
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        assignment = [TopicPartition(topic, p) for p in partitions]
        if not assignment:
            return []
        consumer.assign(assignment)
        consumer.seek_to_beginning(*assignment)
        end = consumer.end_offsets(assignment)
        values: dict[int, list[bytes]] = {p: [] for p in partitions}
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: still receiving after {timeout}s")
            batch = consumer.poll(timeout_ms=100)
            for tp, records in batch.items():
                values[tp.partition].extend(record.value for record in records)
            if batch:
                quiet_since = time.monotonic()
            elif all(consumer.position(tp) >= end[tp] for tp in assignment) and (
                time.monotonic() - quiet_since
            ) * 1000 >= quiet_ms:
                break
        return [value for p in partitions for value in values[p]]
    finally:
        consumer.close()
