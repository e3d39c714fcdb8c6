"""Wiring: builds the Faust app, its topics, table, agents, timers and ingest consumers.

This is the only module that knows how the pieces fit: the contact processor
(:class:`~pipeline.consumers.contacts.ContactRuntime`) runs each batch in a
:class:`~pipeline.streaming.unit_of_work.UnitOfWork` over the Faust table and the changelog
producer (:mod:`pipeline.streaming.faust_state`). A worker is ``build_worker(settings)`` followed
by ``app.main()`` (see :mod:`pipeline.cli` ``leadflow worker``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import faust

from pipeline.config.settings import Settings
from pipeline.config.topics import CONTACTS_TABLE, TopicNames
from pipeline.consumers.contacts import ContactRuntime
from pipeline.consumers.ingest import SourceConsumer
from pipeline.contracts.internal import SweepTick, encode
from pipeline.kafka.retry import Retry
from pipeline.kafka.tools import cluster_id
from pipeline.kafka.topics import role_configs
from pipeline.state_machine import SOURCES, resolve_model
from pipeline.streaming import observability, store_check
from pipeline.streaming.faust_state import FaustOutputs, IngestProducer, KafkaChangelog, TableStore, value_type_for
from pipeline.streaming.faust_tuning import LeadflowTransport
from pipeline.streaming.membership import Fenced, Membership
from pipeline.streaming.unit_of_work import CommitPipeline, UnitOfWork
from pipeline.streaming.worker_handle import Worker

__all__ = ["Worker", "build_worker"]

log = logging.getLogger(__name__)


def _faust_settings(settings: Settings) -> dict[str, Any]:
    broker = settings.broker
    servers = [f"kafka://{server.strip()}" for server in settings.bootstrap.split(",") if server.strip()]
    return {
        "broker": servers,
        # RocksDB through the checked store: local data that does not belong to this cluster,
        # changelog and model is discarded and rebuilt (pipeline/streaming/store_check.py).
        "store": f"{store_check.SCHEME if settings.table_store == 'rocksdb' else settings.table_store}://",
        "datadir": settings.data_dir,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": broker.replication_factor,
        "topic_allow_declare": True,
        "table_standby_replicas": 0,
        "broker_session_timeout": broker.session_timeout_ms / 1000,
        "broker_heartbeat_interval": broker.heartbeat_interval_ms / 1000,
        "broker_rebalance_timeout": broker.rebalance_timeout_ms / 1000,
        "broker_commit_interval": 0.5,
        "consumer_auto_offset_reset": "earliest",
        "consumer_max_fetch_size": 4 * 1024 * 1024,
        "producer_acks": -1,
        "producer_max_batch_size": broker.producer_batch_bytes,
        "producer_linger": 0.002,
        "processing_guarantee": "at_least_once",
        "stream_buffer_maxsize": 8192,
        "web_port": settings.web_port,
        "web_bind": settings.web_bind,
        "web_enabled": True,
        "web_in_thread": False,
        "broker_credentials": _faust_credentials(settings),
    }


def _faust_credentials(settings: Settings) -> Any:
    """Faust's TLS / SASL credentials from ``Settings.security`` (``None``: plaintext)."""
    security = settings.security
    if security.sasl:
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=security.sasl_password.value if security.sasl_password else None,
            ssl_context=security.ssl_context(), mechanism=security.sasl_mechanism,
        )
    if security.tls:
        return faust.SSLCredentials(security.ssl_context())
    return None


def build_worker(settings: Settings) -> Worker:
    """Build (but do not start) a worker for ``settings``."""
    model, topics = resolve_model(settings.model), TopicNames.of(settings)
    app = faust.App(settings.app_id, autodiscover=False, **_faust_settings(settings))
    broker = settings.broker
    # The worker's writes are fenced by its group membership (pipeline/streaming/membership.py);
    # a write held longer than this without a heartbeat accepted restarts it: the larger of the
    # rebalance timeout and three sessions (a join may take a session timeout on Tansu).
    membership = Membership(broker.session_timeout_ms / 1000, broker.heartbeat_interval_ms / 1000,
                            max_hold=max(broker.rebalance_timeout_ms, 3 * broker.session_timeout_ms) / 1000)
    app.transport = LeadflowTransport(
        app.conf.broker_consumer, app, fetch_max_wait_ms=broker.fetch_max_wait_ms, membership=membership
    )
    contact_topic = app.topic(
        topics.contact_events, value_serializer="raw", key_serializer="raw", partitions=settings.partitions,
        internal=False,
    )
    # Faust declares the changelog compacted; min.insync.replicas as for Leadflow's own topics.
    changelog_configs = {k: v for k, v in role_configs("changelog", settings).items() if k == "min.insync.replicas"}
    # RocksDB: memtables of rocksdb_write_buffer_mb, at most 3 per partition (bounds the memory
    # the table's writes take before they are flushed to disk; docs/performance.md#soak).
    store_options = ({"write_buffer_size": settings.rocksdb_write_buffer_mb * 2**20, "max_write_buffer_number": 3}
                     if settings.table_store == "rocksdb" else None)
    table = app.Table(CONTACTS_TABLE, partitions=settings.partitions, key_type=str,
                      value_type=value_type_for(settings.table_store), extra_topic_configs=changelog_configs,
                      options=store_options)
    if isinstance(table.data, store_check.CheckedRocksDBStore):
        changelog_name, model_name = table.changelog_topic.get_topic_name(), f"{model.name}@{model.version}"
        table.data.expected = lambda: store_check.StoreIdentity(cluster_id(settings), changelog_name, model_name)
    outputs, changelog = FaustOutputs(app), KafkaChangelog(settings, table.changelog_topic.get_topic_name())
    runtime = ContactRuntime(model, settings, table, outputs.send)
    worker = Worker(app=app, settings=settings, model=model, topics=topics, runtime=runtime, table=table)
    ingest_producer = IngestProducer(settings)
    worker.ingest.extend(SourceConsumer(family, settings, ingest_producer) for family in SOURCES)

    def forget_states() -> None:
        """A batch was dropped (this worker was expelled): its states, staged in memory, were never
        written; every partition's are read from the table again, and batches computed before now
        are refused (pipeline/streaming/membership.py)."""
        membership.dropped()
        runtime.forget(list(runtime.partitions))

    commits = CommitPipeline(on_failure=lambda exc: _crash(app, exc), on_dropped=forget_states)

    @app.agent(contact_topic, name="leadflow.contacts")
    async def process_contacts(stream: Any) -> None:
        await changelog.start()  # stopped before the app shuts down (stop_changelog below)
        async for events in stream.take_events(4096, within=settings.reorder_window):
            # One more reference per event: Faust acks an event when the next batch is taken, but
            # its offset may be committed only when its batch is durable (the pipeline acks it).
            for event in events:
                event.message.incref()
            # Shielded: Faust may cancel and restart its agent on a rebalance; a batch it has
            # started is still applied whole and handed to the pipeline (never half-applied).
            await asyncio.shield(run_batch(list(events)))

    async def run_batch(events: list[Any]) -> None:
        unit = UnitOfWork(outputs, TableStore(table, events), changelog, membership)
        durable = await runtime.run_batch([(event.message.partition, event.value) for event in events], unit)
        # Starts this batch's commit once the previous one is done; the next batch is computed
        # while it is in flight.
        await commits.submit(unit.commit, partial(_acknowledge, durable, events))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_changelog(app: faust.App, **kwargs: Any) -> None:
        with contextlib.suppress(Exception):  # a failed commit already crashed the worker
            await commits.drain()
        await changelog.stop()
        await ingest_producer.stop()

    @app.timer(settings.sweep_interval, name="leadflow.sweep")  # type: ignore[untyped-decorator]
    async def sweep() -> None:
        """Ask each owned partition to fire the cooling that is due by the watermark, now minus the
        allowed lateness (wall-clock mode)."""
        if settings.sweep_clock != "wall":
            return
        tick = encode(SweepTick(clock=time.time_ns() // 1000 - round(settings.allowed_lateness * 1_000_000)))
        for tp in app.assignor.assigned_actives():
            if tp.topic == topics.contact_events:
                await app.producer.send(tp.topic, None, tick, tp.partition, None, None)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        with contextlib.suppress(Exception):  # the table holds every state computed so far
            await commits.drain()
        runtime.forget([tp.partition for tp in revoked if tp.topic == topics.contact_events])

    @app.task  # type: ignore[untyped-decorator]
    async def run_ingest() -> None:
        retry = Retry()
        while not ingest_producer.started:  # stopped before the app shuts down (stop_changelog above)
            try:
                await ingest_producer.start()
            except Exception as exc:
                delay = retry.failed()
                log.warning("ingest producer: cannot start (%s); retrying in %.1fs", exc, delay)
                await retry.pause(delay)
        await asyncio.gather(*(consumer.run() for consumer in worker.ingest))

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"alive": True})

    @app.page("/stats")
    async def stats(web: Any, request: Any) -> Any:
        return web.json(worker.stats())

    observability.install(worker)  # /readyz (with a broker probe) and /metrics
    return worker


def _acknowledge(durable: Callable[[], None], events: Sequence[Any]) -> None:
    """A batch is durable: settle its states, and ack its events (their offsets may be committed)."""
    durable()
    for event in events:
        event.ack()


async def _crash(app: faust.App, exc: BaseException) -> None:
    """A batch could not be made durable (an acknowledgement failed): nothing after it may be
    committed, and the in-memory states are ahead of the table. Crash the worker: it restarts from
    the committed offsets and the changelog, and reprocesses the batch (at-least-once)."""
    what = ("the group coordinator could not confirm this worker still owns its partitions"
            if isinstance(exc, Fenced) else "a batch's outputs or changelog records were not acknowledged")
    log.critical("%s (%s: %s); the worker stops and restarts from its committed offsets", what,
                 type(exc).__name__, exc)
    await app.crash(exc)
