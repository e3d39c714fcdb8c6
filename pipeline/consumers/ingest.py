"""Source consumers: one per input family (website, email, purchase, sales).

Each reads its input topic in large polls (aiokafka ``getmany``), decodes and validates every
message with the shared contract code, dead-letters what cannot be applied (with the topic,
partition and offset of the input), and forwards the valid events to the internal
``contact-events`` topic: one message per target partition per poll, so the stream processor's
per-message cost is paid per batch, not per event. Input offsets are committed only after every
forwarded message and dead letter was acknowledged by the broker: at-least-once, and the contact
processor drops what a redelivery repeats.

No business rule lives here: decode, validate, route, publish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.config.settings import Settings
from pipeline.config.topics import TopicNames, partition_for
from pipeline.contracts import DeadLetter, decode_message, encode_deadletter
from pipeline.contracts import internal as wire
from pipeline.kafka.options import consumer_options
from pipeline.kafka.retry import Retry
from pipeline.ops import metrics
from pipeline.state_machine import Event

log = logging.getLogger(__name__)

#: Events per internal message (keeps each message well under the broker's 1 MB default).
CHUNK = 500


class Producer(Protocol):
    """Sends one record; awaiting the call returns a future for the broker's acknowledgement."""

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> Awaitable[Any]: ...


@dataclass(slots=True)
class IngestCounts:
    """What one source consumer did since it started (exported as metrics)."""

    messages: int = 0
    events: Counter[str] = field(default_factory=Counter)  # by event type
    dead_lettered: Counter[str] = field(default_factory=Counter)  # by error code
    forwarded_messages: int = 0


class SourceConsumer:
    """Consumes one family's input topic and forwards it, keyed by contact, to the processor."""

    def __init__(
        self,
        family: str,
        settings: Settings,
        producer: Producer,
        on_batch: Callable[[str, IngestCounts], None] | None = None,
    ) -> None:
        self.family = family
        self.settings = settings
        self.topics = TopicNames.of(settings)
        self.topic = self.topics.inputs[family]
        self.producer = producer
        self.counts = IngestCounts()
        self.on_batch = on_batch
        self.assigned = False
        self.metrics = settings.metrics
        self.committed: dict[TopicPartition, int] = {}  # offsets this consumer committed (for the lag)
        self._consumer: AIOKafkaConsumer | None = None

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            self.topic,
            **consumer_options(
                self.settings,
                f"{self.settings.app_id}-ingest-{self.family}",
                max_poll_records=self.settings.ingest_batch,
                max_partition_fetch_bytes=4 * 1024 * 1024,
            ),
        )

    async def run(self) -> None:
        """Consume until cancelled; survives broker hiccups by restarting with backoff."""
        retry = Retry()
        while True:
            consumer = self._new_consumer()
            self._consumer = consumer
            self.committed = {}
            delay: float | None = None
            try:
                await consumer.start()
                retry.succeeded()
                await self._loop(consumer)
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = retry.failed()
                log.exception("ingest %s: consumer failed; restarting in %.1fs", self.family, delay)
            finally:
                self.assigned = False
                try:
                    await consumer.stop()
                except Exception:  # pragma: no cover - best effort on shutdown
                    log.debug("ingest %s: error while stopping consumer", self.family, exc_info=True)
            if delay is not None:
                await retry.pause(delay)

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        # A poll's offsets are committed once everything it forwarded is acknowledged; the commit
        # runs while the next poll is forwarded, and is awaited (its error raised) before the next.
        committing: asyncio.Task[None] | None = None
        try:
            while True:
                records = await consumer.getmany(timeout_ms=200, max_records=self.settings.ingest_batch)
                self.assigned = bool(consumer.assignment())
                if not records:
                    continue
                await self.forward(records)
                if committing is not None:
                    await committing
                offsets = {tp: messages[-1].offset + 1 for tp, messages in records.items()}
                committing = asyncio.ensure_future(self._commit(consumer, offsets))
        finally:
            if committing is not None and not committing.done():
                committing.cancel()

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        await consumer.commit(offsets)
        self.committed.update(offsets)

    async def lag(self) -> list[tuple[str, int, int]]:
        """``(topic, partition, messages behind)`` for the partitions this consumer is assigned:
        the log end offset from the latest fetch minus the committed offset (or the position, before
        the first commit). Partitions not fetched yet are left out."""
        consumer = self._consumer
        if consumer is None:
            return []
        out = []
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is None:
                continue
            done = self.committed.get(tp)
            if done is None:
                try:  # known once the partition was fetched (it was: it has a highwater)
                    done = await asyncio.wait_for(consumer.position(tp), 1.0)
                except Exception:
                    continue
            out.append((tp.topic, tp.partition, max(0, end - done)))
        return out

    async def forward(self, records: dict[TopicPartition, list[object]]) -> None:
        """Decode a poll's messages, publish events by partition and dead letters; wait for acks."""
        received_at = time.time_ns() // 1000
        partitions = self.settings.partitions
        by_partition: dict[int, list[Event]] = {}
        dead_letters: list[DeadLetter] = []
        pending: list[Awaitable[object]] = []
        counts = self.counts
        by_type: Counter[str] = Counter()  # this poll's events by type; dead letters by error code
        rejected: Counter[str] = Counter()
        polled = 0
        for tp, messages in records.items():
            polled += len(messages)
            counts.messages += len(messages)
            for message in messages:
                value = getattr(message, "value", None) or b""
                for item in decode_message(value, family=self.family, received_at=received_at):
                    if isinstance(item, Event):
                        by_type[item.event_type] += 1
                        by_partition.setdefault(partition_for(item.contact, partitions), []).append(item)
                    else:
                        rejected[item.error_code] += 1
                        offset = getattr(message, "offset", -1)
                        dead_letters.append(
                            msgspec.structs.replace(item, topic=tp.topic, partition=tp.partition, offset=offset)
                        )
        for dead in dead_letters:
            key = dead.event_id.encode() if dead.event_id else None
            pending.append(await self.producer.send(self.topics.deadletter, encode_deadletter(dead), key=key))
        for partition, events in by_partition.items():
            for start in range(0, len(events), CHUNK):
                data = wire.encode(wire.ContactBatch(events[start : start + CHUNK], received_at))
                pending.append(await self.producer.send(self.topics.contact_events, data, partition=partition))
                counts.forwarded_messages += 1
        if pending:
            await asyncio.gather(*pending)
        counts.events.update(by_type)  # counted once the broker has acknowledged what they became
        counts.dead_lettered.update(rejected)
        if self.metrics:
            metrics.count_ingest_poll(self.family, polled, by_type, rejected)
        if self.on_batch is not None:
            self.on_batch(self.family, counts)
