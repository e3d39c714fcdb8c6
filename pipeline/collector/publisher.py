"""The collector's Kafka producer: publish a request's events and wait for the broker's acks.

One aiokafka producer per collector process, ``acks=all`` (every in-sync replica), idempotent
where the broker supports it (``producer_idempotence`` in the broker profile). :meth:`publish`
returns only after the broker acknowledged every record, or raises :class:`BrokerUnavailable`
(the HTTP layer answers 503): a request is never answered 2xx for an event that is not in Kafka.
A 503 may still leave some of its events in Kafka (acknowledged after the deadline, or some of a
batch before another failed): clients resend, and the pipeline drops repeats by ``event_id``.

The producer connects in the background and keeps retrying, so the collector serves ``/healthz``
and answers 503 (not a crash) while the broker is away at startup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka import AIOKafkaProducer

from pipeline.collector.config import CollectorConfig
from pipeline.collector.metrics import BROKER_UP, PUBLISH_SECONDS
from pipeline.config.settings import Settings
from pipeline.config.topics import TopicNames
from pipeline.kafka.options import producer_options
from pipeline.kafka.retry import Backoff, Retry, retry_until

log = logging.getLogger(__name__)

#: Longest a readiness probe waits for the broker's metadata answer.
READINESS_TIMEOUT = 3.0
#: Reconnecting at startup: 0.5 s doubling to 5 s (not 10 s: until connected every request gets 503).
CONNECT_BACKOFF = Backoff(first=0.5, maximum=5.0)


class BrokerUnavailable(Exception):
    """The broker did not acknowledge a request's events; the message says what happened."""


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a late delivery result as seen (no "exception was never retrieved" noise)."""
    if not future.cancelled():
        future.exception()


class Publisher:
    """Publishes records to the input topics and reports whether the broker is reachable."""

    def __init__(self, settings: Settings, config: CollectorConfig) -> None:
        self.settings = settings
        self.config = config
        self.topics = TopicNames.of(settings)
        self._producer: AIOKafkaProducer | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._probe_lock = asyncio.Lock()

    def _options(self) -> dict[str, Any]:
        return producer_options(
            self.settings,
            f"{self.settings.app_id}-collector",
            idempotent=True,
            linger_ms=self.config.linger_ms,
            request_timeout_ms=int(self.config.publish_timeout * 1000),
            retry_backoff_ms=100,
        )

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Start connecting in the background (returns at once)."""
        BROKER_UP.set(0)
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._connect(), name="collector-producer-connect")

    async def _connect(self) -> None:
        """Start the producer, retrying with backoff until the broker answers (or cancelled)."""

        async def start() -> AIOKafkaProducer:
            producer = AIOKafkaProducer(**self._options())
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            return producer

        def failed(exc: BaseException, delay: float) -> None:
            # aiokafka raises several kinds; all mean "not reachable yet"
            log.warning("collector: cannot reach the broker at %s (%s); retrying in %.1fs",
                        self.settings.bootstrap, exc, delay)

        producer = await retry_until(start, Retry(CONNECT_BACKOFF), on_failure=failed)
        if producer is None:  # pragma: no cover - no stopping event: only cancellation ends the loop
            return
        self._producer = producer
        BROKER_UP.set(1)
        log.info("collector: producer connected to %s", self.settings.bootstrap)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop connecting; flush what is buffered (at most ``timeout`` seconds) and close."""
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connecting
            self._connecting = None
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), timeout)
            except Exception as exc:  # pragma: no cover - best effort at shutdown
                log.warning("collector: producer did not stop cleanly: %s", exc)
        BROKER_UP.set(0)

    async def publish(self, source: str, records: list[tuple[bytes | None, bytes]]) -> None:
        """Send ``(key, value)`` records to ``source``'s input topic; return once all are acknowledged.

        Raises :class:`BrokerUnavailable` when not connected, on any delivery error, or when the
        acknowledgements do not all arrive within the publish timeout.
        """
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable(f"not connected to the broker at {self.settings.bootstrap} yet")
        topic = self.topics.inputs[source]
        timeout = self.config.publish_timeout
        started = time.perf_counter()
        futures: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(timeout):
                for key, value in records:
                    futures.append(await producer.send(topic, value, key=key))
                await asyncio.wait(futures)
        except TimeoutError:
            self._abandon(futures)
            BROKER_UP.set(0)
            raise BrokerUnavailable(f"the broker did not acknowledge within {timeout:g}s") from None
        except Exception as exc:  # send() itself failed (metadata, buffer): nothing more will be sent
            self._abandon(futures)
            BROKER_UP.set(0)
            raise BrokerUnavailable(f"cannot publish to {topic}: {exc!r}") from exc
        failures = [future.exception() for future in futures if future.exception() is not None]
        if failures:
            BROKER_UP.set(0)
            raise BrokerUnavailable(f"{len(failures)} of {len(futures)} events not acknowledged: {failures[0]!r}")
        BROKER_UP.set(1)
        PUBLISH_SECONDS.observe(time.perf_counter() - started)

    @staticmethod
    def _abandon(futures: list[asyncio.Future[Any]]) -> None:
        for future in futures:
            future.add_done_callback(_retrieve)

    async def readiness(self) -> dict[str, Any]:
        """``{"ready": bool, "broker": ..., "problems": [...]}``: the broker answers metadata
        requests within :data:`READINESS_TIMEOUT` and every input topic exists."""
        report: dict[str, Any] = {"ready": False, "broker": self.settings.bootstrap, "problems": []}
        producer = self._producer
        if producer is None:
            report["problems"].append(f"not connected to the broker at {self.settings.bootstrap} yet")
            return report
        async with self._probe_lock:
            try:
                metadata = await asyncio.wait_for(producer.client.fetch_all_metadata(), READINESS_TIMEOUT)
            except Exception as exc:
                BROKER_UP.set(0)
                report["problems"].append(f"the broker at {self.settings.bootstrap} does not answer: {exc!r}")
                return report
        existing = metadata.topics()
        missing = sorted(topic for topic in self.topics.inputs.values() if topic not in existing)
        if missing:
            report["problems"].append(f"input topics missing (run `leadflow topics`): {', '.join(missing)}")
        BROKER_UP.set(1)
        report["ready"] = not report["problems"]
        return report
