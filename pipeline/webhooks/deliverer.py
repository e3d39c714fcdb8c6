"""One subscription's delivery loop: its own consumer group, its own concurrency, its own offsets.

Each subscription reads the output topics it needs (``lead.alerts`` and/or ``lead.transitions``)
in a consumer group of its own (``<app-id>-webhooks-<name>``), so a receiver that is slow or down
only lags its own group: the pipeline and the other receivers never wait for it.

Records the filter selects become delivery tasks (:class:`~pipeline.webhooks.retries.Retrier`),
at most ``max_in_flight`` at a time; a task holds its slot while it waits for a retry, and while
every slot is taken the subscription fetches nothing more (it still polls now and then with its
partitions paused, so it stays in its group). A record is finished once delivered, or dead-lettered with the broker's
acknowledgement. Offsets are committed up to the lowest unfinished record of each partition, so
a restart loses nothing and repeats at most what finished above that point (same delivery id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from pipeline.config.settings import Settings
from pipeline.kafka.options import consumer_options
from pipeline.kafka.retry import Retry
from pipeline.webhooks import metrics, sender
from pipeline.webhooks.config import Subscription
from pipeline.webhooks.events import UndeliverableRecord, select
from pipeline.webhooks.offsets import PartitionProgress
from pipeline.webhooks.retries import DeadLetterSink, Retrier, Source, SubscriptionStats

log = logging.getLogger(__name__)

#: Offsets one subscription remembers at most (unfinished records, and finished ones above the lowest
#: unfinished). A record that keeps failing holds the committed offset back; up to this many later
#: records are delivered meanwhile, then the subscription waits for it.
MAX_HELD_OFFSETS = 10_000
COMMIT_INTERVAL = 1.0  # seconds between offset commits
KEEPALIVE_POLL = 30.0  # seconds between polls while every slot is taken (aiokafka's max_poll_interval: 300 s)
SHUTDOWN_GRACE = 10.0  # seconds a clean stop lets requests under way finish (at most their timeout)


class SubscriptionDeliverer:
    """Delivers one subscription's records until :meth:`stop`."""

    def __init__(
        self,
        subscription: Subscription,
        settings: Settings,
        topics: dict[str, str],  # kind ("alerts" | "transitions") -> topic name
        deadletters: DeadLetterSink,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.subscription = subscription
        self.settings = settings
        wanted = subscription.filter
        self.kinds = {
            topic: kind
            for kind, topic in topics.items()
            if (kind == "alerts" and wanted.wants_alerts) or (kind == "transitions" and wanted.wants_transitions)
        }
        self.deadletters = deadletters
        self.clock = clock
        self.stats = SubscriptionStats()
        self.joined = False
        self.failure: str | None = None  # the last consumer failure, while restarting
        self._labels = {"subscription": subscription.name}
        self._progress: dict[TopicPartition, PartitionProgress] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self._in_flight = 0
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._retrier: Retrier | None = None
        self._consumer: AIOKafkaConsumer | None = None

    # ------------------------------------------------------------------------------ lifecycle
    def _new_consumer(self) -> AIOKafkaConsumer:
        group = self.subscription.group_id(self.settings.app_id)
        return AIOKafkaConsumer(
            **consumer_options(self.settings, group, auto_offset_reset=self.subscription.start_from)
        )

    async def run(self) -> None:
        """Consume and deliver until :meth:`stop`; a failed consumer is restarted with backoff."""
        session = sender.new_session(self.subscription)
        self._retrier = Retrier(self.subscription, session, self.deadletters, self.stats, self.clock)
        if self._stopping.is_set():
            self._retrier.stop()
        retry = Retry(stopping=self._stopping)
        try:
            while not self._stopping.is_set():
                consumer = self._new_consumer()
                self._consumer = consumer
                delay: float | None = None
                try:
                    await consumer.start()
                    consumer.subscribe(sorted(self.kinds), listener=_Rebalance(self))
                    self.failure = None
                    retry.succeeded()  # connected: a later failure waits the first delay again
                    await self._loop(consumer)
                except Exception as exc:
                    self.failure = f"{type(exc).__name__}: {exc}"
                    delay = retry.failed()
                    log.exception("webhooks %s: consumer failed; restarting in %.1fs", self.subscription.name, delay)
                finally:
                    self.joined = False
                    await self._drain(consumer)
                    with contextlib.suppress(Exception):
                        await consumer.stop()
                if delay is not None:
                    await retry.pause(delay)
        finally:
            await session.close()

    def stop(self) -> None:
        """Stop taking records. Deliveries waiting for a retry end at once; a request under way may
        finish (bounded by the timeout). Unfinished records are delivered after a restart."""
        self._stopping.set()
        if self._retrier is not None:
            self._retrier.stop()

    async def _drain(self, consumer: AIOKafkaConsumer) -> None:
        """End every delivery task, commit what finished, forget every partition."""
        tasks = [task for group in self._tasks.values() for task in group]
        if tasks:
            pending: set[asyncio.Task[None]] = set(tasks)
            if self._stopping.is_set():  # a clean stop: requests under way may still succeed
                grace = min(self.subscription.retry.timeout, SHUTDOWN_GRACE) + 1
                _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:  # a failed consumer: its records are delivered again from the commit
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._commit(consumer, list(self._progress))
        self._progress.clear()
        self._committed.clear()
        self._tasks.clear()

    # ------------------------------------------------------------------------------ consuming
    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        limit = self.subscription.max_in_flight
        last_commit = last_poll = time.monotonic()
        while not self._stopping.is_set():
            assignment = consumer.assignment()
            for tp in assignment - self._progress.keys():
                await self._adopt(consumer, tp)
            if time.monotonic() - last_commit >= COMMIT_INTERVAL:
                await self._commit(consumer, list(self._progress))
                last_commit = time.monotonic()
            free = limit - self._in_flight
            if free <= 0 or sum(progress.held for progress in self._progress.values()) >= MAX_HELD_OFFSETS:
                # Full: wait for a slot without fetching. Every KEEPALIVE_POLL seconds poll with the
                # partitions paused (that drops aiokafka's prefetched records, so not on every wait),
                # or the consumer would count as idle and leave its group after max_poll_interval.
                self._slot_freed.clear()
                if time.monotonic() - last_poll >= KEEPALIVE_POLL:
                    consumer.pause(*assignment)
                    await consumer.getmany(timeout_ms=0)
                    last_poll = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot_freed.wait(), COMMIT_INTERVAL)
                continue
            if consumer.paused():
                consumer.resume(*consumer.paused())
            batch = await consumer.getmany(timeout_ms=200, max_records=free)
            last_poll = time.monotonic()
            owned = consumer.assignment()
            for tp, messages in batch.items():
                if tp not in owned:  # revoked while this poll was under way: the new owner delivers it
                    continue
                if tp not in self._progress:  # assigned during this poll
                    await self._adopt(consumer, tp)
                for message in messages:
                    self._take(tp, self._progress[tp], message)

    async def _adopt(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        """Start tracking a newly assigned partition. A partition the group never committed gets its
        starting position committed now, so a restart resumes there (not at a later 'latest')."""
        self._progress[tp] = PartitionProgress()
        self._tasks.setdefault(tp, set())
        committed = await consumer.committed(tp)
        if committed is None:
            committed = await consumer.position(tp)
            await consumer.commit({tp: committed})
        self._committed[tp] = committed

    def _take(self, tp: TopicPartition, progress: PartitionProgress, message: Any) -> None:
        retrier = self._retrier
        assert retrier is not None
        source = Source(tp.topic, tp.partition, message.offset, message.timestamp, message.key, message.value)
        try:
            delivery = select(self.kinds.get(tp.topic, ""), message.value, self.subscription.filter)
        except UndeliverableRecord as exc:
            metrics.RECORDS.labels(result="invalid", **self._labels).inc()
            progress.take(message.offset)
            why = str(exc)
            self._spawn(tp, progress, message.offset, lambda: retrier.give_up_unreadable(source, why))
            return
        if delivery is None:
            self.stats.filtered += 1
            metrics.RECORDS.labels(result="filtered", **self._labels).inc()
            progress.skip(message.offset)
            return
        metrics.RECORDS.labels(result="matched", **self._labels).inc()
        progress.take(message.offset)
        self._spawn(tp, progress, message.offset, lambda: retrier.deliver(source, delivery))

    def _spawn(
        self, tp: TopicPartition, progress: PartitionProgress, offset: int, work: Callable[[], Awaitable[bool | None]]
    ) -> None:
        async def run() -> None:
            if await work() is not False:  # delivered or dead-lettered (False: stopped before either)
                progress.finish(offset)

        task = asyncio.create_task(run())
        group = self._tasks.setdefault(tp, set())
        group.add(task)
        self._in_flight += 1
        metrics.IN_FLIGHT.labels(**self._labels).inc()

        def done(finished: asyncio.Task[None]) -> None:
            group.discard(finished)
            self._in_flight -= 1
            self._slot_freed.set()
            metrics.IN_FLIGHT.labels(**self._labels).dec()
            if not finished.cancelled() and finished.exception() is not None:
                log.error("webhooks %s: delivery task failed", self.subscription.name, exc_info=finished.exception())

        task.add_done_callback(done)

    async def _commit(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for tp in partitions:
            progress = self._progress.get(tp)
            position = progress.committable() if progress is not None else None
            if position is not None and position > self._committed.get(tp, -1):
                offsets[tp] = position
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except Exception as exc:  # a rebalance under way, the coordinator moving: the next commit retries
            log.info("webhooks %s: commit failed (%s); retrying at the next one", self.subscription.name, exc)
            return
        self._committed.update(offsets)

    async def revoke(self, partitions: list[TopicPartition]) -> None:
        """Partitions move to another member: end their deliveries, commit what finished."""
        tasks = [task for tp in partitions for task in self._tasks.get(tp, ())]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._consumer is not None:
            await self._commit(self._consumer, partitions)
        for tp in partitions:
            self._progress.pop(tp, None)
            self._committed.pop(tp, None)
            self._tasks.pop(tp, None)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, deliverer: SubscriptionDeliverer) -> None:
        self.deliverer = deliverer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.deliverer.revoke(list(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.deliverer.joined = True
