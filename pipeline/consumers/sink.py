"""The history sink: ``lead.transitions``, ``lead.alerts`` and ``lead.contacts`` into SQL.

``leadflow sink`` runs one :class:`SinkService`. It reads the three output topics in polls of up
to ``LEADFLOW_SINK_BATCH`` records (aiokafka ``getmany``), decodes each record with the same
msgspec types the engine wrote it with, writes the poll to the database in ONE transaction
(:meth:`~pipeline.storage.HistoryStore.write_batch`: insert-or-ignore on ``transition_id`` and
``alert_id``, newest-wins upsert of the contact snapshot), and commits the Kafka offsets only
after the database commit. A crash anywhere repeats a batch, never loses one; the repeat writes
nothing new (the ids are UUIDv5 of the facts).

When the database is away, the sink holds the one batch it read, pauses its partitions (so
nothing more is fetched: backpressure, not a queue), keeps polling the paused consumer (so the
group does not evict it) and retries the same batch with capped exponential backoff, reporting
the outage in its log, in ``leadflow_sink_database_up`` and ``leadflow_sink_failures_total``,
and in ``/readyz``. When a write succeeds it resumes by itself.

A record that cannot be decoded is not retried (it can never succeed): it goes to
``events.deadletter`` with ``error_code`` ``schema_violation`` and the topic, partition and
offset where it was found, and is counted. ``read == stored + invalid`` always.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import asdict, dataclass
from typing import Any

import msgspec
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from pipeline.config.settings import Settings
from pipeline.config.topics import TopicNames
from pipeline.contracts import DeadLetter, encode_deadletter
from pipeline.contracts.deadletter import raw_text
from pipeline.kafka.options import consumer_options, producer_options
from pipeline.kafka.retry import Retry, retry_until
from pipeline.ops import metrics
from pipeline.ops.web import add_service_routes
from pipeline.state_machine.clock import to_rfc3339
from pipeline.state_machine.records import Alert, ContactSnapshot, Transition
from pipeline.storage import HistoryStore, StorageError, StorageUnavailable, open_history_store
from pipeline.storage.database import resolve_url, safe_url

log = logging.getLogger(__name__)

@dataclass(slots=True)
class SinkStats:
    """What the sink did since it started (``/stats``); ``read == stored + invalid``."""

    read: int = 0
    stored: int = 0  # handed to the database in a committed transaction (new or already there)
    invalid: int = 0  # undecodable: dead-lettered
    batches: int = 0
    commits: int = 0  # Kafka offset commits (one per written batch)
    commit_failures: int = 0  # offsets not committed (rebalance): those records come again, harmlessly
    write_failures: int = 0
    held: int = 0  # records read but not yet committed to the database
    max_held: int = 0  # the most ever held at once: bounded by the batch size
    database_up: bool = True
    outage_started: float | None = None  # monotonic time the current outage began
    outages: int = 0
    last_error: str | None = None


class SinkService:
    """Consumes the output topics into a :class:`HistoryStore` (see the module doc)."""

    def __init__(self, settings: Settings, url: str | None = None, *, group_id: str | None = None) -> None:
        self.settings = settings
        self.url = resolve_url(url or settings.db_url)
        self.topics = TopicNames.of(settings)
        self.group_id = group_id or f"{settings.app_id}-history-sink"
        self.batch_size = settings.sink_batch
        self.stats = SinkStats()
        self.assigned: frozenset[TopicPartition] = frozenset()
        self._decoders: dict[str, tuple[str, msgspec.json.Decoder[Any]]] = {
            self.topics.transitions: ("transitions", msgspec.json.Decoder(Transition)),
            self.topics.alerts: ("alerts", msgspec.json.Decoder(Alert)),
            self.topics.contacts: ("contacts", msgspec.json.Decoder(ContactSnapshot)),
        }
        self._store: HistoryStore | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._stopping = asyncio.Event()
        #: Why the broker cannot be reached while the sink waits for it at start (``/readyz``).
        self.broker_problem: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the batch in hand (write it and commit it), then return from :meth:`run`."""
        self._stopping.set()

    async def _open_store(self) -> HistoryStore | None:
        """The database, waiting (with backoff) while it is unreachable; ``None`` if stopped first.
        A database whose schema is not upgraded is an error (``leadflow db upgrade``), not a wait."""
        def failed(exc: BaseException, _delay: float) -> None:
            assert isinstance(exc, StorageUnavailable)
            self._record_failure("unavailable", exc)

        store = await retry_until(
            lambda: asyncio.to_thread(open_history_store, self.url),
            Retry(stopping=self._stopping),
            retry_on=StorageUnavailable,
            on_failure=failed,
        )
        if store is not None:
            self._record_success()
        return store

    async def run(self) -> None:
        """Open the database, consume until :meth:`stop`; always closes what it opened."""
        self._store = await self._open_store()
        if self._store is None:
            return
        clients = await self._connect_kafka()
        if clients is None:
            await asyncio.to_thread(self._store.close)
            return
        consumer, producer = clients
        self._consumer, self._producer = consumer, producer
        try:
            log.info("history sink: %s → %s (group %s, batches of %d)", ", ".join(self._decoders),
                     safe_url(self.url), self.group_id, self.batch_size)
            while not self._stopping.is_set():
                polled = await consumer.getmany(timeout_ms=200, max_records=self.batch_size)
                self.assigned = frozenset(consumer.assignment())
                records = [record for batch in polled.values() for record in batch]
                if records:
                    await self._handle(consumer, records)
        finally:
            for closing in (consumer.stop(), producer.stop()):
                try:
                    await closing
                except Exception:  # closing after a broker failure: nothing left to save
                    log.warning("history sink: error while closing a Kafka client", exc_info=True)
            await asyncio.to_thread(self._store.close)

    async def _connect_kafka(self) -> tuple[AIOKafkaConsumer, AIOKafkaProducer] | None:
        """Started consumer and producer, waiting (with backoff, one log line per attempt and
        ``/readyz`` naming the broker) while Kafka cannot be reached; ``None`` if stopped first."""

        async def connect() -> tuple[AIOKafkaConsumer, AIOKafkaProducer]:
            consumer = AIOKafkaConsumer(
                *self._decoders, **consumer_options(self.settings, self.group_id, max_poll_records=self.batch_size)
            )
            producer = AIOKafkaProducer(**producer_options(self.settings))
            try:
                await producer.start()
                await consumer.start()
            except BaseException:
                for closing in (consumer.stop(), producer.stop()):
                    with contextlib.suppress(Exception):
                        await closing
                raise
            return consumer, producer

        def failed(exc: BaseException, delay: float) -> None:
            self.broker_problem = f"broker: {self.settings.bootstrap} unreachable ({exc})"
            log.warning("history sink: cannot reach the broker at %s (%s); retrying in %.1f s "
                        "(LEADFLOW_KAFKA or --kafka)", self.settings.bootstrap, exc, delay)

        clients = await retry_until(connect, Retry(stopping=self._stopping), retry_on=KafkaError, on_failure=failed)
        self.broker_problem = None
        return clients

    # -- one batch -----------------------------------------------------------------------------------

    async def _handle(self, consumer: AIOKafkaConsumer, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        stats = self.stats
        stats.read += len(records)
        stats.held = len(records)
        stats.max_held = max(stats.max_held, stats.held)
        decoded: dict[str, list[Any]] = {"transitions": [], "alerts": [], "contacts": []}
        invalid: list[tuple[ConsumerRecord[bytes, bytes], str]] = []
        for record in records:
            role, decoder = self._decoders[record.topic]
            try:
                decoded[role].append(decoder.decode(record.value or b""))
            except msgspec.DecodeError as exc:
                invalid.append((record, f"{record.topic} record is not a valid {role[:-1]}: {exc}"))
        if invalid:
            await self._dead_letter(invalid)
        started = time.perf_counter()
        await self._write(consumer, decoded["transitions"], decoded["alerts"], decoded["contacts"])
        metrics.SINK_BATCH_DURATION.observe(time.perf_counter() - started)
        metrics.SINK_BATCH_SIZE.observe(len(records))
        for role, items in decoded.items():
            if items:
                metrics.SINK_RECORDS.labels(role, "stored").inc(len(items))
        stats.stored += len(records) - len(invalid)
        stats.invalid += len(invalid)
        stats.batches += 1
        await self._commit(consumer, records)
        stats.held = 0

    async def _write(
        self,
        consumer: AIOKafkaConsumer,
        transitions: list[Transition],
        alerts: list[Alert],
        contacts: list[ContactSnapshot],
    ) -> None:
        """Write one batch in one transaction; while the database refuses it, hold it and retry
        (until it is written: :meth:`stop` waits for the batch in hand)."""
        store = self._store
        assert store is not None
        paused: set[TopicPartition] = set()

        def failed(exc: BaseException, _delay: float) -> None:
            assert isinstance(exc, StorageError)
            self._record_failure("unavailable" if isinstance(exc, StorageUnavailable) else "error", exc)
            if not paused:  # backpressure: fetch nothing more until this batch is written
                paused.update(consumer.assignment())
                consumer.pause(*paused)

        async def keep_polling(wait: float) -> None:
            # Poll the paused consumer while waiting: it returns nothing, but keeps this
            # member alive in its group (max.poll.interval) however long the outage lasts.
            deadline = time.monotonic() + wait
            while (remaining := deadline - time.monotonic()) > 0:
                await consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000) + 1)

        async def write() -> None:
            await asyncio.to_thread(store.write_batch, transitions, alerts, contacts)

        await retry_until(write, Retry(sleep=keep_polling), retry_on=StorageError, on_failure=failed)
        if paused:
            consumer.resume(*consumer.assignment())
        self._record_success()

    def _record_failure(self, reason: str, exc: StorageError) -> None:
        stats = self.stats
        stats.write_failures += 1
        stats.last_error = str(exc)
        metrics.SINK_FAILURES.labels(reason).inc()
        metrics.SINK_DATABASE_UP.set(0)
        if stats.database_up:
            stats.database_up = False
            stats.outages += 1
            stats.outage_started = time.monotonic()
            log.error("history sink: database write failed (%s); holding %d records, offsets not committed, "
                      "retrying with backoff: %s", reason, stats.held, exc)
        else:
            log.warning("history sink: still failing after %.1fs: %s",
                        time.monotonic() - (stats.outage_started or time.monotonic()), exc)

    def _record_success(self) -> None:
        stats = self.stats
        metrics.SINK_DATABASE_UP.set(1)
        if not stats.database_up:
            lasted = time.monotonic() - (stats.outage_started or time.monotonic())
            log.warning("history sink: database back after %.1fs; the held batch is written", lasted)
            stats.database_up, stats.outage_started = True, None

    async def _commit(self, consumer: AIOKafkaConsumer, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        try:
            await consumer.commit(offsets)
            self.stats.commits += 1
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took some of these partitions away: their new owner reads them again
            # from the last committed offset; the rows are already stored, so that writes nothing.
            self.stats.commit_failures += 1
            log.warning("history sink: offsets not committed (%s); those records will come again", exc)

    async def _dead_letter(self, invalid: list[tuple[ConsumerRecord[bytes, bytes], str]]) -> None:
        assert self._producer is not None
        received_at = to_rfc3339(time.time_ns() // 1000)
        futures = []
        for record, detail in invalid:
            text, encoding, truncated = raw_text(record.value or b"")
            dead = DeadLetter(
                source=None, error_code="schema_violation", error_detail=detail, raw=text, raw_encoding=encoding,
                received_at=received_at, event_id=None, topic=record.topic, partition=record.partition,
                offset=record.offset, raw_truncated=truncated,
            )
            futures.append(await self._producer.send(self.topics.deadletter, encode_deadletter(dead), key=record.key))
            metrics.SINK_RECORDS.labels(self._decoders[record.topic][0], "invalid").inc()
            log.error("history sink: %s (partition %d, offset %d): dead-lettered", detail, record.partition,
                      record.offset)
        await asyncio.gather(*futures)

    # -- health ------------------------------------------------------------------------------------

    def readiness(self) -> dict[str, Any]:
        """``/readyz``: ready when the database takes writes and the group gave us partitions."""
        problems = []
        if self.broker_problem is not None:
            problems.append(self.broker_problem)
        if not self.stats.database_up:
            problems.append(f"database unavailable: {self.stats.last_error}")
        if self._consumer is None or not self.assigned:
            problems.append("no partitions assigned yet")
        return {"ready": not problems, "problems": problems, "partitions": len(self.assigned)}

    def stats_document(self) -> dict[str, Any]:
        document = asdict(self.stats)
        started = document.pop("outage_started")
        document["outage_seconds"] = None if started is None else round(time.monotonic() - started, 3)
        document["batch_size"] = self.batch_size
        document["group_id"] = self.group_id
        return document


def web_app(sink: SinkService) -> web.Application:
    """``/healthz``, ``/readyz``, ``/stats`` and ``/metrics`` of a sink process."""
    app = web.Application()
    add_service_routes(app, sink.readiness, sink.stats_document)
    return app


async def serve(settings: Settings, url: str | None = None) -> SinkService:
    """Run a sink with its web endpoints until SIGTERM or SIGINT; return it (for its stats)."""
    sink = SinkService(settings, url)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, sink.stop)
    runner = web.AppRunner(web_app(sink), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.web_bind, settings.web_port).start()
    log.info("history sink: /healthz /readyz /stats /metrics on http://%s:%d", settings.web_bind, settings.web_port)
    try:
        await sink.run()
    finally:
        await runner.cleanup()
    return sink
