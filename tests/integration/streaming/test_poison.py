"""A poison event never stops a partition (issue 15): through the real pipeline, an event whose
application raises is dead-lettered as ``processing_error`` with the event and an error digest,
counted, and the partition goes on with the events after it.

The poison is a stored contact state that cannot be decoded: its bytes are written to the contact
table's changelog before the worker starts, so the worker restores them into its store, and the
first event of that contact raises when the processor reads the state.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from pipeline.config.topics import CONTACTS_TABLE, partition_for
from pipeline.streaming.faust_state import table_key
from tests.support.brokers import TestBroker

from .harness import Pipeline

pytestmark = pytest.mark.integration


def _event(event_id: str, contact: str, event_type: str, minute: int, **properties: object) -> bytes:
    return orjson.dumps({
        "source": "website", "event_id": event_id, "event_type": event_type, "contact_id": contact,
        "occurred_at": f"2026-03-02T09:{minute:02d}:00Z", "properties": properties,
    })


def test_a_poison_event_is_dead_lettered_and_the_partition_goes_on(
    broker: TestBroker, namespace: str, tmp_path: Path
) -> None:
    pipeline = Pipeline(broker, namespace, tmp_path, store="rocksdb")
    partitions = pipeline.settings.partitions
    poisoned = "poison-1"
    partition = partition_for(poisoned, partitions)
    healthy = [c for c in (f"healthy-{i}" for i in range(200)) if partition_for(c, partitions) == partition][:3]
    changelog = f"{pipeline.settings.app_id}-{CONTACTS_TABLE}-changelog"
    # Created as the worker would create it (Apache Kafka, as run in production, creates no topic
    # on first write; Tansu would).
    broker.create_topics([changelog], partitions=partitions)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    producer.send(changelog, key=table_key(poisoned), value=b"\xc1 not a contact state", partition=partition)
    producer.flush()
    producer.close()

    with pipeline.worker() as worker:
        worker.ready()
        lines = [_event("h0", healthy[0], "page_view", 1, url="https://shop.example/a"),
                 _event("p1", poisoned, "signup", 2),
                 *(_event(f"h{i}", contact, "signup", 3 + i) for i, contact in enumerate(healthy, 1)),
                 _event("p2", poisoned, "demo_request", 9)]
        pipeline.publish(lines)
        dead = [d for d in pipeline.wait_for("deadletter", 2) if d["error_code"] == "processing_error"]
        deadline = time.monotonic() + 60
        while worker.stats()["processor"]["applied"] < 1 + len(healthy) and time.monotonic() < deadline:
            time.sleep(0.5)
        stats = worker.stats()["processor"]
        with open(worker.log) as log:
            text = log.read()

    assert sorted(d["event_id"] for d in dead) == ["p1", "p2"]
    first = next(d for d in dead if d["event_id"] == "p1")
    assert first["source"] == "website"
    assert orjson.loads(first["raw"])["event_id"] == "p1"  # the event as the processor had it
    digests = {d["error_detail"].split("digest ")[1].split(",")[0] for d in dead}
    assert len(digests) == 1, dead  # the same fault, the same digest
    assert stats["processing_errors"] == 2
    assert stats["applied"] == 1 + len(healthy)  # every healthy event, before and after the poison
    snapshots = {s["contact_id"] for s in pipeline.records("contacts")}
    assert set(healthy) <= snapshots and poisoned not in snapshots
    assert "dead-lettered as processing_error" in text
