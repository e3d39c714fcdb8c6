"""Wiring: builds the Faust app, its topics, table, agents, timers and ingest consumers.

This is the only module that knows how the pieces fit. A worker is ``build_worker(settings)``
followed by ``app.main()`` (see :mod:`pipeline.cli` ``leadflow worker``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaProducer
from faust.serializers import codecs
from faust.streams import _current_event

from pipeline.config.settings import Settings
from pipeline.config.topics import CONTACTS_TABLE, TopicNames
from pipeline.consumers.contacts import ContactRuntime
from pipeline.consumers.ingest import SourceConsumer
from pipeline.consumers.wire import SweepTick, encode
from pipeline.state_machine import SOURCES, Model, decode_state, encode_state, resolve_model
from pipeline.state_machine.state import ContactState
from pipeline.streaming import observability
from pipeline.streaming.faust_tuning import LeadflowTransport

log = logging.getLogger("leadflow")


class ContactStateCodec(codecs.Codec):
    """Contact states in the table and its changelog: compact MessagePack."""

    def _dumps(self, obj: Any) -> bytes:
        return encode_state(obj)

    def _loads(self, s: bytes) -> Any:
        return decode_state(s)


codecs.register("leadflow_state", ContactStateCodec())


def _json_key(key: str) -> bytes:
    """A table key as Faust's ``json`` key serializer writes it (what recovery reads back)."""
    return orjson.dumps(key)


class ContactStateValue:
    """The contact table's value type for Faust: names the codec; values are ContactStates.

    Faust picks a table's serializer from its value type's ``_options.serializer`` and hands the
    decoded payload to ``from_data``; the codec already returns a :class:`ContactState`.
    """

    _options = SimpleNamespace(serializer="leadflow_state")

    @classmethod
    def from_data(cls, data: Any, preferred_type: Any = None) -> Any:
        return data


@dataclass
class Worker:
    """A built worker: the Faust app plus handles the CLI, health checks and tests use."""

    app: faust.App
    settings: Settings
    model: Model
    topics: TopicNames
    runtime: ContactRuntime
    ingest: list[SourceConsumer] = field(default_factory=list)
    table: Any = None

    def stats(self) -> dict[str, Any]:
        """Counters since start (the same figures the metrics export), as plain JSON."""
        counts = self.runtime.counts
        return {
            "ingest": {
                consumer.family: {
                    "messages": consumer.counts.messages,
                    "events": sum(consumer.counts.events.values()),
                    "dead_lettered": dict(consumer.counts.dead_lettered),
                }
                for consumer in self.ingest
            },
            "processor": {
                "applied": counts.applied,
                "duplicates": counts.duplicates,
                "late": counts.late,
                "alerts": counts.alerts,
                "transitions": sum(counts.transitions.values()),
                "referral_credits_routed": counts.referral_credits_routed,
                "batches": counts.batches,
                "partitions": sorted(self.runtime.partitions),
                "contacts_in_table": len(self.table),
            },
        }

    def readiness(self) -> dict[str, Any]:
        """What is not ready yet in this process (empty ``problems`` = ready); ``/readyz`` adds the
        broker check (:mod:`pipeline.observability`)."""
        problems: list[str] = []
        assignment = self.app.assignor.assigned_actives()
        assigned = any(tp.topic == self.topics.contact_events for tp in assignment)
        if not assigned:
            problems.append("contact processor: no partitions assigned yet")
        recovered = self.app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        if not recovered:
            problems.append("contact table: changelog recovery not finished")
        for consumer in self.ingest:
            if not consumer.assigned:
                assigned = False
                problems.append(f"ingest {consumer.family}: no partitions assigned yet")
        checks = {"partitions_assigned": assigned, "table_recovered": recovered}
        return {"ready": not problems, "problems": problems, "checks": checks}


def _faust_settings(settings: Settings) -> dict[str, Any]:
    broker = settings.broker
    servers = [f"kafka://{server.strip()}" for server in settings.bootstrap.split(",") if server.strip()]
    return {
        "broker": servers,
        "store": f"{settings.table_store}://",
        "datadir": settings.data_dir,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": broker["replication_factor"],
        "topic_allow_declare": True,
        "table_standby_replicas": 0,
        "broker_session_timeout": broker["session_timeout_ms"] / 1000,
        "broker_heartbeat_interval": broker["heartbeat_interval_ms"] / 1000,
        "broker_rebalance_timeout": broker["rebalance_timeout_ms"] / 1000,
        "broker_commit_interval": 0.5,
        "consumer_auto_offset_reset": "earliest",
        "consumer_max_fetch_size": 4 * 1024 * 1024,
        "producer_acks": -1,
        "producer_max_batch_size": broker["producer_batch_bytes"],
        "producer_linger": 0.002,
        "processing_guarantee": "at_least_once",
        "stream_buffer_maxsize": 8192,
        "web_port": settings.web_port,
        "web_bind": settings.web_bind,
        "web_enabled": True,
        "web_in_thread": False,
    }


def build_worker(settings: Settings) -> Worker:
    """Build (but do not start) a worker for ``settings``."""
    model = resolve_model(settings.model)
    topics = TopicNames.of(settings)
    app = faust.App(settings.app_id, autodiscover=False, **_faust_settings(settings))
    app.transport = LeadflowTransport(
        app.conf.broker_consumer, app, fetch_max_wait_ms=settings.broker["fetch_max_wait_ms"]
    )
    contact_topic = app.topic(
        topics.contact_events,
        value_serializer="raw",
        key_serializer="raw",
        partitions=settings.partitions,
        internal=False,
    )
    table = app.Table(
        CONTACTS_TABLE, partitions=settings.partitions, key_type=str, value_type=ContactStateValue
    )

    async def send(topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> Any:
        return await app.producer.send(topic, key, value, partition, None, None)

    runtime = ContactRuntime(model, settings, table, send)
    worker = Worker(app=app, settings=settings, model=model, topics=topics, runtime=runtime, table=table)

    def partition_binder(events: list[Any]) -> Any:
        by_partition = {event.message.partition: event for event in events}

        def bind(partition: int) -> None:
            # Faust's RocksDB store keeps a database per partition and picks it from the current
            # event: make it an event of the partition being processed.
            _current_event.set(weakref.ref(by_partition[partition]))

        return bind

    changelog_producer: list[AIOKafkaProducer] = []

    async def write_states(partition: int, staged: dict[str, ContactState]) -> None:
        """Store changed states locally and in the changelog, waiting for the broker's acks.

        Faust's own table writes go through a buffer that its commit does not always drain (its
        flush gives up after 0.1 s without progress), so offsets could be committed before the
        state they cover: we send the changelog records ourselves and await them, with a
        producer of their own (the broker profile may need the changelog in one-record batches).
        """
        if not changelog_producer:
            producer = AIOKafkaProducer(
                bootstrap_servers=settings.bootstrap,
                acks="all",
                linger_ms=1,
                max_batch_size=settings.broker["changelog_batch_bytes"],
                client_id=f"{settings.app_id}-changelog",
            )
            await producer.start()
            changelog_producer.append(producer)
        changelog, producer = table.changelog_topic.get_topic_name(), changelog_producer[0]
        pending = []
        for key, state in staged.items():
            table.data[key] = state
            pending.append(await producer.send(changelog, encode_state(state), key=_json_key(key), partition=partition))
        await asyncio.gather(*pending)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_changelog_producer(app: faust.App, **kwargs: Any) -> None:
        while changelog_producer:
            await changelog_producer.pop().stop()

    @app.agent(contact_topic, name="leadflow.contacts")
    async def process_contacts(stream: Any) -> None:
        async for events in stream.take_events(4096, within=settings.reorder_window):
            await runtime.handle(
                [(event.message.partition, event.value) for event in events],
                write_states,
                partition_binder(events),
            )

    @app.timer(settings.sweep_interval, name="leadflow.sweep")  # type: ignore[untyped-decorator]
    async def sweep() -> None:
        """Ask each owned partition to fire the cooling that is due by now (wall-clock mode)."""
        if settings.sweep_clock != "wall":
            return
        tick = encode(SweepTick(clock=time.time_ns() // 1000))
        for tp in app.assignor.assigned_actives():
            if tp.topic == topics.contact_events:
                await app.producer.send(tp.topic, None, tick, tp.partition, None, None)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        runtime.forget([tp.partition for tp in revoked if tp.topic == topics.contact_events])

    for family in SOURCES:
        worker.ingest.append(SourceConsumer(family, settings, _ProducerAdapter(app)))

    @app.task  # type: ignore[untyped-decorator]
    async def run_ingest() -> None:
        await asyncio.gather(*(consumer.run() for consumer in worker.ingest))

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"alive": True})

    @app.page("/stats")
    async def stats(web: Any, request: Any) -> Any:
        return web.json(worker.stats())

    observability.install(worker)  # /readyz (with a broker probe) and /metrics
    return worker


class _ProducerAdapter:
    """The aiokafka-style ``send(topic, value, key=, partition=)`` the ingest consumers use,
    over the Faust app's producer (one producer per worker)."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def send(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None) -> Any:
        return await self.app.producer.send(topic, key, value, partition, None, None)
