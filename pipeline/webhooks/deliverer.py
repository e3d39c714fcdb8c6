"""One subscription's delivery loop: its own consumer group, its own concurrency, its own offsets.

Each subscription reads the output topics it needs (``lead.alerts`` and/or ``lead.transitions``)
in a consumer group of its own (``<app-id>-webhooks-<name>``), so a receiver that is slow or down
only lags its own group: the pipeline and the other receivers never wait for it.

Records the filter selects become delivery tasks, at most ``max_in_flight`` at a time (a task
holds its slot while it waits for a retry). A task retries with exponential backoff and full
jitter until it is delivered or its retry window is used up; then it writes a dead letter to
``webhooks.deadletter`` and waits for the broker's acknowledgement. Only then is its record
finished. Offsets are committed up to the lowest unfinished record of each partition, so a restart
loses nothing and repeats at most what finished above that point (same delivery id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from ..settings import Settings
from . import metrics, sender
from .backoff import next_delay
from .config import Subscription
from .deadletter import RETRIES_EXHAUSTED, UNREADABLE_RECORD
from .deadletter import encode as encode_deadletter
from .events import Delivery, UndeliverableRecord, select
from .offsets import PartitionProgress

log = logging.getLogger(__name__)

#: Offsets one subscription remembers at most (unfinished records, and finished ones above the lowest
#: unfinished). A record that keeps failing holds the committed offset back; up to this many later
#: records are delivered meanwhile, then the subscription waits for it.
MAX_HELD_OFFSETS = 10_000
COMMIT_INTERVAL = 1.0  # seconds between offset commits
#: Failures that say the receiver as a whole is unwell: a success of another delivery ends their wait.
OUTAGE_REASONS = frozenset({"timeout", "connection", "http_5xx"})


class DeadLetterSink(Protocol):
    async def publish(self, value: bytes, key: bytes | None) -> None:
        """Write one dead letter; return once the broker acknowledged it (raise otherwise)."""


@dataclass(slots=True)
class SubscriptionStats:
    """What one subscription did since the process started (``/readyz`` shows it)."""

    delivered: int = 0
    dead_lettered: int = 0
    failed_attempts: int = 0
    filtered: int = 0


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
        self._labels = {"subscription": subscription.name}
        self._progress: dict[TopicPartition, PartitionProgress] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self._in_flight = 0
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()  # set (and replaced) on a success, and on stop
        self._session: aiohttp.ClientSession | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self.failure: str | None = None  # the last consumer failure, while restarting

    # ------------------------------------------------------------------------------ lifecycle
    def _new_consumer(self) -> AIOKafkaConsumer:
        broker = self.settings.broker
        group = self.subscription.group_id(self.settings.app_id)
        return AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap,
            group_id=group,
            client_id=group,
            enable_auto_commit=False,
            auto_offset_reset=self.subscription.start_from,
            fetch_max_wait_ms=broker["fetch_max_wait_ms"],
            session_timeout_ms=broker["session_timeout_ms"],
            heartbeat_interval_ms=broker["heartbeat_interval_ms"],
            rebalance_timeout_ms=broker["rebalance_timeout_ms"],
        )

    async def run(self) -> None:
        """Consume and deliver until :meth:`stop`; a failed consumer is restarted with backoff."""
        self._session = sender.new_session(self.subscription)
        delay = 0.5
        try:
            while not self._stopping.is_set():
                consumer = self._new_consumer()
                self._consumer = consumer
                try:
                    await consumer.start()
                    consumer.subscribe(sorted(self.kinds), listener=_Rebalance(self))
                    self.failure = None
                    await self._loop(consumer)
                    delay = 0.5
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.failure = f"{type(exc).__name__}: {exc}"
                    log.exception("webhooks %s: consumer failed; restarting in %.1fs", self.subscription.name, delay)
                finally:
                    self.joined = False
                    await self._drain(consumer)
                    with contextlib.suppress(Exception):
                        await consumer.stop()
                if not self._stopping.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), delay)
                    delay = min(delay * 2, 10.0)
        finally:
            await self._session.close()

    def stop(self) -> None:
        """Stop taking records; deliveries waiting for a retry end at once, a request under way
        finishes (bounded by the timeout). Unfinished records are delivered after a restart."""
        self._stopping.set()
        self._wake.set()

    async def _drain(self, consumer: AIOKafkaConsumer) -> None:
        """Let requests under way end, then commit what finished and forget every partition."""
        tasks = [task for group in self._tasks.values() for task in group]
        if tasks:
            pending: set[asyncio.Task[None]] = set(tasks)
            if self._stopping.is_set():  # a clean stop: requests under way may still succeed
                _done, pending = await asyncio.wait(tasks, timeout=self.subscription.retry.timeout + 1)
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
        last_commit = time.monotonic()
        while not self._stopping.is_set():
            assignment = consumer.assignment()
            for tp in assignment - self._progress.keys():
                await self._adopt(consumer, tp)
            free = limit - self._in_flight
            held = sum(progress.held for progress in self._progress.values())
            if free <= 0 or held >= MAX_HELD_OFFSETS:
                consumer.pause(*assignment)
            elif consumer.paused():
                consumer.resume(*consumer.paused())
            batch = await consumer.getmany(timeout_ms=200, max_records=max(free, 1))
            for tp, messages in batch.items():
                progress = self._progress.get(tp)
                if progress is None:  # assigned during this poll
                    await self._adopt(consumer, tp)
                    progress = self._progress[tp]
                for message in messages:
                    self._take(tp, progress, message)
            if time.monotonic() - last_commit >= COMMIT_INTERVAL:
                await self._commit(consumer, list(self._progress))
                last_commit = time.monotonic()

    async def _adopt(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        """Start tracking a newly assigned partition. A partition the group never committed gets its
        starting position committed now, so a restart resumes there (not at a later 'latest')."""
        self._progress[tp] = PartitionProgress()
        self._tasks.setdefault(tp, set())
        committed = await consumer.committed(tp)
        if committed is None:
            position = await consumer.position(tp)
            await consumer.commit({tp: position})
            committed = position
        self._committed[tp] = committed

    def _take(self, tp: TopicPartition, progress: PartitionProgress, message: Any) -> None:
        kind = self.kinds.get(tp.topic, "")
        try:
            delivery = select(kind, message.value, self.subscription.filter)
        except UndeliverableRecord as exc:
            metrics.RECORDS.labels(result="invalid", **self._labels).inc()
            progress.take(message.offset)
            self._spawn(tp, self._give_up_unreadable(progress, tp, message, str(exc)))
            return
        if delivery is None:
            self.stats.filtered += 1
            metrics.RECORDS.labels(result="filtered", **self._labels).inc()
            progress.skip(message.offset)
            return
        metrics.RECORDS.labels(result="matched", **self._labels).inc()
        progress.take(message.offset)
        self._spawn(tp, self._deliver(progress, tp, message, delivery))

    def _spawn(self, tp: TopicPartition, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        group = self._tasks.setdefault(tp, set())
        group.add(task)
        self._in_flight += 1
        metrics.IN_FLIGHT.labels(**self._labels).inc()

        def done(finished: asyncio.Task[None]) -> None:
            group.discard(finished)
            self._in_flight -= 1
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

    # ------------------------------------------------------------------------------ delivering
    async def _deliver(self, progress: PartitionProgress, tp: TopicPartition, message: Any, delivery: Delivery) -> None:
        policy = self.subscription.retry
        name = self.subscription.name
        first_attempt: float | None = None
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            if attempts > 1:
                metrics.RETRIES.labels(**self._labels).inc()
            now = self.clock()
            first_attempt = now if first_attempt is None else first_attempt
            assert self._session is not None
            result = await sender.post(self._session, self.subscription, delivery, attempts, self.clock)
            metrics.REQUEST_DURATION.labels(**self._labels).observe(result.duration)
            if result.ok:
                self.stats.delivered += 1
                metrics.DELIVERIES.labels(outcome="delivered", **self._labels).inc()
                if message.timestamp is not None and message.timestamp > 0:
                    latency = max(0.0, self.clock() - message.timestamp / 1000)
                    metrics.DELIVERY_LATENCY.labels(**self._labels).observe(latency)
                self._wake.set()  # the receiver answers: end the waits of retries that failed on an outage
                self._wake = asyncio.Event()
                progress.finish(message.offset)
                return
            self.stats.failed_attempts += 1
            metrics.FAILURES.labels(reason=result.reason or "http_other", **self._labels).inc()
            delay = next_delay(policy, attempts, time.monotonic() - started, result.retry_after)
            if delay is None:
                detail = f"{result.error} on attempt {attempts}, {time.monotonic() - started:,.0f}s after the first"
                log.warning("webhooks %s: giving up on %s %s: %s", name, delivery.event, delivery.delivery_id, detail)
                await self._dead_letter(
                    tp, message, delivery, RETRIES_EXHAUSTED, detail, attempts, result, first_attempt, now
                )
                progress.finish(message.offset)
                return
            log.info(
                "webhooks %s: attempt %d of %s failed (%s); retrying in %.1fs",
                name, attempts, delivery.delivery_id, result.error, delay,
            )
            if not await self._pause(delay, wake_on_recovery=result.reason in OUTAGE_REASONS):
                return  # stopping: unfinished, delivered again after the restart

    async def _pause(self, delay: float, wake_on_recovery: bool) -> bool:
        """Wait ``delay`` seconds, or less when another delivery succeeds and ``wake_on_recovery``.
        ``False`` when the deliverer is stopping."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while not self._stopping.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return True
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return not self._stopping.is_set()
            if wake_on_recovery and not self._stopping.is_set():
                return True
            if not self._stopping.is_set():
                await asyncio.sleep(0)  # the event was replaced: wait on the new one
        return False

    async def _give_up_unreadable(
        self, progress: PartitionProgress, tp: TopicPartition, message: Any, why: str
    ) -> None:
        log.warning("webhooks %s: unreadable record at %s[%d]@%d: %s",
                    self.subscription.name, tp.topic, tp.partition, message.offset, why)
        await self._dead_letter(tp, message, None, UNREADABLE_RECORD, why, 0, None, None, None)
        progress.finish(message.offset)

    async def _dead_letter(
        self,
        tp: TopicPartition,
        message: Any,
        delivery: Delivery | None,
        reason: str,
        detail: str,
        attempts: int,
        result: sender.AttemptResult | None,
        first_attempt: float | None,
        last_attempt: float | None,
    ) -> None:
        """Write the dead letter, retrying until the broker acknowledges it (the record stays
        unfinished, so uncommitted, meanwhile)."""
        value = encode_deadletter(
            subscription=self.subscription.name,
            delivery_id=delivery.delivery_id if delivery else None,
            event=delivery.event if delivery else None,
            reason=reason,
            detail=detail,
            attempts=attempts,
            last_status=result.status if result else None,
            last_error=result.error if result else None,
            first_attempt_at=first_attempt,
            last_attempt_at=last_attempt,
            now=self.clock(),
            topic=tp.topic,
            partition=tp.partition,
            offset=message.offset,
            value=message.value,
        )
        key = delivery.delivery_id.encode() if delivery else message.key
        wait = 0.5
        while True:
            try:
                await self.deadletters.publish(value, key)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("webhooks %s: cannot write a dead letter (%s); retrying in %.0fs",
                          self.subscription.name, exc, wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, 30.0)
        self.stats.dead_lettered += 1
        metrics.DELIVERIES.labels(outcome="dead_lettered", **self._labels).inc()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, deliverer: SubscriptionDeliverer) -> None:
        self.deliverer = deliverer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.deliverer.revoke(list(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.deliverer.joined = True
