"""Delivering one record to one subscription: attempts, backoff with jitter, and the dead letter.

:meth:`Retrier.deliver` POSTs until the receiver answers 2xx or the retry window is used up; then
it writes a dead letter to ``webhooks.deadletter`` and waits for the broker's acknowledgement
(retrying that write until it succeeds). Either way the record is then finished. A success of any
delivery ends the wait of retries that failed because the receiver was unreachable (timeout,
connection, 5xx), so a receiver that comes back gets its backlog at once instead of after the
longest backoff. On :meth:`stop` waits end at once and nothing more is attempted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from pipeline.webhooks import metrics, sender
from pipeline.webhooks.backoff import next_delay
from pipeline.webhooks.config import Subscription
from pipeline.webhooks.deadletter import RETRIES_EXHAUSTED, UNREADABLE_RECORD
from pipeline.webhooks.deadletter import encode as encode_deadletter
from pipeline.webhooks.events import Delivery

log = logging.getLogger(__name__)

#: Failures that say the receiver as a whole is unwell: a success of another delivery ends their wait.
OUTAGE_REASONS = frozenset({"timeout", "connection", "http_5xx"})


class DeadLetterSink(Protocol):
    async def publish(self, value: bytes, key: bytes | None) -> None:
        """Write one dead letter; return once the broker acknowledged it (raise otherwise)."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record came from."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None


@dataclass(slots=True)
class SubscriptionStats:
    """What one subscription did since the process started (``/stats`` shows it)."""

    delivered: int = 0
    dead_lettered: int = 0
    failed_attempts: int = 0
    filtered: int = 0


class Retrier:
    """Delivers records of one subscription, each until it is delivered or dead-lettered."""

    def __init__(
        self,
        subscription: Subscription,
        session: aiohttp.ClientSession,
        deadletters: DeadLetterSink,
        stats: SubscriptionStats,
        clock: Callable[[], float] = time.time,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.subscription = subscription
        self.draw = draw  # the jitter: a float in [0, 1)
        self.session = session
        self.deadletters = deadletters
        self.stats = stats
        self.clock = clock
        self._labels = {"subscription": subscription.name}
        self._stopping = False
        self._wake = asyncio.Event()  # set (and replaced) on a success, and on stop

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def deliver(self, source: Source, delivery: Delivery) -> bool:
        """``True`` once delivered or dead-lettered; ``False`` if stopped first (deliver it again later)."""
        name = self.subscription.name
        started = time.monotonic()
        first_attempt = self.clock()
        attempts = 0
        while True:
            attempts += 1
            if attempts > 1:
                metrics.RETRIES.labels(**self._labels).inc()
            now = self.clock()
            result = await sender.post(self.session, self.subscription, delivery, attempts, self.clock)
            metrics.REQUEST_DURATION.labels(**self._labels).observe(result.duration)
            if result.ok:
                self.stats.delivered += 1
                metrics.DELIVERIES.labels(outcome="delivered", **self._labels).inc()
                if source.timestamp_ms is not None and source.timestamp_ms > 0:
                    latency = max(0.0, self.clock() - source.timestamp_ms / 1000)
                    metrics.DELIVERY_LATENCY.labels(**self._labels).observe(latency)
                self._wake.set()  # the receiver answers: end the waits of retries that failed on an outage
                self._wake = asyncio.Event()
                return True
            self.stats.failed_attempts += 1
            metrics.FAILURES.labels(reason=result.reason or "http_other", **self._labels).inc()
            elapsed = time.monotonic() - started
            delay = next_delay(self.subscription.retry, attempts, elapsed, result.retry_after, self.draw)
            if delay is None:
                detail = f"{result.error} on attempt {attempts}, {elapsed:,.1f}s after the first"
                log.warning("webhooks %s: giving up on %s %s: %s", name, delivery.event, delivery.delivery_id, detail)
                await self._dead_letter(
                    source, delivery, RETRIES_EXHAUSTED, detail, attempts, result, first_attempt, now
                )
                return True
            log.info(
                "webhooks %s: attempt %d of %s failed (%s); retrying in %.1fs",
                name, attempts, delivery.delivery_id, result.error, delay,
            )
            if not await self._pause(delay, wake_on_recovery=result.reason in OUTAGE_REASONS):
                return False

    async def give_up_unreadable(self, source: Source, why: str) -> None:
        """Dead-letter a record that is not a readable alert or transition."""
        log.warning("webhooks %s: unreadable record at %s[%d]@%d: %s",
                    self.subscription.name, source.topic, source.partition, source.offset, why)
        await self._dead_letter(source, None, UNREADABLE_RECORD, why, 0, None, None, None)

    async def _pause(self, delay: float, wake_on_recovery: bool) -> bool:
        """Wait ``delay`` seconds, or less when another delivery succeeds and ``wake_on_recovery``.
        ``False`` when stopping."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while not self._stopping:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return True
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return not self._stopping
            if wake_on_recovery and not self._stopping:
                return True
            await asyncio.sleep(0)  # the event was replaced by a success: wait on the new one
        return False

    async def _dead_letter(
        self,
        source: Source,
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
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            value=source.value,
        )
        key = delivery.delivery_id.encode() if delivery else source.key
        wait = 0.5
        while True:
            try:
                await self.deadletters.publish(value, key)
                break
            except Exception as exc:
                log.error("webhooks %s: cannot write a dead letter (%s); retrying in %.1fs",
                          self.subscription.name, exc, wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, 30.0)
        self.stats.dead_lettered += 1
        metrics.DELIVERIES.labels(outcome="dead_lettered", **self._labels).inc()
