"""Benchmark (not a test): the history sink's throughput into PostgreSQL, on ONE embedded broker,
against a plain consumer of the same records measured in the same run.

    make bench-sink                      # = python benchmarks/bench_sink.py
    python benchmarks/bench_sink.py --contacts 20000 --batch 1000

1. Simulates ``--contacts`` journeys, replays them, and publishes the replay's transitions,
   alerts and contact snapshots to their topics (4 partitions) as a worker would.
2. Ceiling: an aiokafka consumer group that reads and msgspec-decodes every record and commits
   offsets per poll, writing nothing.
3. Sink: :class:`pipeline.consumers.sink.SinkService` (a fresh group) into a scratch PostgreSQL
   database (created and dropped on ``--server``), until every record is stored.

Both are timed from their first record to their last (group joins excluded). The report gives
records/s, the sink/ceiling ratio, and the output rate the pipeline produces at a given input
rate (``--pipeline-rate``, events/s, from ``make bench-stream``) for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
import uuid
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer
from kafka import KafkaProducer
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config.settings import Settings, from_env
from pipeline.config.topics import TopicNames
from pipeline.consumers.sink import SinkService
from pipeline.devtools.simulator import simulate
from pipeline.kafka.topics import ensure_topics
from pipeline.offline.replay import replay
from pipeline.state_machine import builtin_model
from pipeline.state_machine.records import Alert, ContactSnapshot, Transition
from pipeline.storage import upgrade_database
from pipeline.storage.database import driver_url
from pipeline.storage.sql.tables import transitions
from pipeline.streaming.embedded_broker import EmbeddedBroker


def outputs(contacts: int) -> tuple[dict[str, list[bytes]], int]:
    events = simulate(contacts=contacts, seed=11)
    lines = [msgspec.json.encode(e) for e in events]
    out, alerts, snapshots = io.BytesIO(), io.BytesIO(), io.BytesIO()
    replay(iter(lines), builtin_model(), received_at=time.time_ns() // 1000, out=out, alerts=alerts,
           contacts=snapshots)
    return {"transitions": out.getvalue().splitlines(), "alerts": alerts.getvalue().splitlines(),
            "contacts": snapshots.getvalue().splitlines()}, len(lines)


def publish(settings: Settings, records: dict[str, list[bytes]]) -> None:
    names = TopicNames.of(settings)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=5, batch_size=64 * 1024)
    for role, lines in records.items():
        topic = getattr(names, role)
        for line in lines:
            key = msgspec.json.decode(line)["contact_id"].encode()
            producer.send(topic, line, key=key)
    producer.flush(120)
    producer.close()


async def ceiling(settings: Settings, total: int) -> float:
    names = TopicNames.of(settings)
    decoders = {names.transitions: msgspec.json.Decoder(Transition), names.alerts: msgspec.json.Decoder(Alert),
                names.contacts: msgspec.json.Decoder(ContactSnapshot)}
    broker = settings.broker
    consumer = AIOKafkaConsumer(*decoders, bootstrap_servers=settings.bootstrap, group_id=f"{settings.app_id}-ceiling",
                                enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=1000,
                                fetch_max_wait_ms=broker.fetch_max_wait_ms,
                                session_timeout_ms=broker.session_timeout_ms,
                                heartbeat_interval_ms=broker.heartbeat_interval_ms,
                                rebalance_timeout_ms=broker.rebalance_timeout_ms)
    await consumer.start()
    seen, first = 0, 0.0
    try:
        while seen < total:
            polled = await consumer.getmany(timeout_ms=500, max_records=1000)
            for batch in polled.values():
                for record in batch:
                    decoders[record.topic].decode(record.value)
                    if not seen:
                        first = time.perf_counter()
                    seen += 1
            if polled:
                await consumer.commit()
        return time.perf_counter() - first
    finally:
        await consumer.stop()


async def sink_run(settings: Settings, url: str, total: int) -> tuple[float, SinkService]:
    sink = SinkService(settings, url)
    task = asyncio.create_task(sink.run())
    first = None
    while sink.stats.stored < total:
        if task.done():
            task.result()
        if first is None and sink.stats.read:
            first = time.perf_counter()
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - (first or time.perf_counter())
    sink.stop()
    await task
    return elapsed, sink


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000, help="LEADFLOW_SINK_BATCH")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--pipeline-rate", type=float, default=11_169.0,
                        help="the pipeline's events/s (make bench-stream) to compare with")
    args = parser.parse_args()

    records, events = outputs(args.contacts)
    total = sum(len(v) for v in records.values())
    print(f"{events:,} simulated events -> {len(records['transitions']):,} transitions, "
          f"{len(records['alerts']):,} alerts, {len(records['contacts']):,} contact snapshots ({total:,} records; "
          f"{total / events:.2f} output records per input event)")

    admin = create_engine(driver_url(args.server), isolation_level="AUTOCOMMIT")
    name = f"leadflow_sinkbench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(driver_url(args.server)).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_database(url)
        with EmbeddedBroker() as broker:
            settings = from_env({}, bootstrap=broker.bootstrap, profile="tansu", partitions=4, app_id="bench",
                                topic_prefix="bench.", sink_batch=args.batch, db_url=url)
            ensure_topics(settings)
            publish(settings, records)
            raw = asyncio.run(ceiling(settings, total))
            took, sink = asyncio.run(sink_run(settings, url, total))
        engine = create_engine(url)
        with engine.connect() as connection:
            stored = connection.execute(select(func.count()).select_from(transitions)).scalar_one()
        engine.dispose()
        assert stored == len(records["transitions"]), (stored, len(records["transitions"]))
        raw_rate, sink_rate = total / raw, total / took
        demand = args.pipeline_rate * total / events
        print(f"ceiling (consume + decode + commit): {raw_rate:,.0f} records/s")
        print(f"sink into PostgreSQL (batches of {args.batch}): {sink_rate:,.0f} records/s "
              f"= {sink_rate / raw_rate:.2f}x the ceiling; {sink.stats.batches} transactions")
        print(f"the pipeline at {args.pipeline_rate:,.0f} events/s emits about {demand:,.0f} records/s: "
              f"the sink keeps up with {sink_rate / demand:.1f}x that")
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
