"""The contact table on Faust and aiokafka: its value codec and the unit of work's adapters.

* :class:`ContactStateValue` / ``leadflow_state`` codec: contact states in the table and its
  changelog as compact MessagePack.
* :class:`TableStore`: the :class:`~pipeline.streaming.unit_of_work.LocalStore` over a Faust table
  (the table's local data, bound to a partition through Faust's current event).
* :class:`KafkaChangelog`: the :class:`~pipeline.streaming.unit_of_work.ChangelogWriter` with an
  aiokafka producer of its own, started and stopped explicitly. Faust's own table writes go
  through a buffer that its commit does not always drain (its flush gives up after 0.1 s without
  progress), so offsets could be committed before the state they cover: we send the changelog
  records ourselves and the unit of work awaits their acks. The broker profile's
  ``changelog_batch_bytes`` sizes the producer's batches (Tansu: one record per batch).
* :class:`FaustOutputs`: outputs over the Faust app's producer; :class:`IngestProducer`: the
  ingest consumers' producer, of its own.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import faust
import msgspec
import orjson
from aiokafka import AIOKafkaProducer
from faust.serializers import codecs
from faust.streams import _current_event
from faust.types import TP

from pipeline.config.settings import Settings
from pipeline.consumers.partition_state import UndecodableState
from pipeline.kafka.options import producer_options
from pipeline.state_machine import ContactState, decode_state, encode_state
from pipeline.streaming.unit_of_work import Ack


class ContactStateCodec(codecs.Codec):
    """Contact states in the table and its changelog: compact MessagePack.

    ``share``: decoded states share their repeated values (:func:`decode_state`), for a store that
    keeps them in memory; a read-through store (RocksDB decodes on every read and drops the state
    after use) decodes without it, which is about twice as fast."""

    def __init__(self, share: bool = True) -> None:
        super().__init__()
        self.share = share

    def _dumps(self, obj: Any) -> bytes:
        return encode_state(obj)

    def _loads(self, s: bytes) -> Any:
        try:
            return decode_state(s, share=self.share)
        except msgspec.DecodeError as exc:  # never stop the changelog recovery: see UndecodableState
            return UndecodableState(bytes(s), str(exc))


codecs.register("leadflow_state", ContactStateCodec())
codecs.register("leadflow_state_unshared", ContactStateCodec(share=False))


class ContactStateValue:
    """The contact table's value type for Faust: names the codec; values are ContactStates.

    Faust picks a table's serializer from its value type's ``_options.serializer`` and hands the
    decoded payload to ``from_data``; the codec already returns a :class:`ContactState`. This one
    is for the memory store (states kept decoded: shared values); :func:`value_type_for` picks.
    """

    _options = SimpleNamespace(serializer="leadflow_state")

    @classmethod
    def from_data(cls, data: Any, preferred_type: Any = None) -> Any:
        return data


class ReadThroughStateValue(ContactStateValue):
    """The value type for a read-through store (RocksDB): states decoded without sharing."""

    _options = SimpleNamespace(serializer="leadflow_state_unshared")


def value_type_for(store: str) -> type[ContactStateValue]:
    """The contact table's value type for ``store`` (``Settings.table_store``)."""
    return ContactStateValue if store == "memory" else ReadThroughStateValue


def table_key(key: str) -> bytes:
    """A table key as Faust's ``json`` key serializer writes it (what recovery reads back)."""
    return orjson.dumps(key)


class TableStore:
    """A Faust table's local data, for one batch of events.

    Faust's RocksDB store keeps a database per partition and picks it from the current event:
    :meth:`bind` makes that an event of the partition being processed."""

    def __init__(self, table: Any, events: Iterable[Any]) -> None:
        self.table = table
        self._by_partition = {event.message.partition: event for event in events}

    def bind(self, partition: int) -> None:
        _current_event.set(weakref.ref(self._by_partition[partition]))

    def put(self, key: str, state: ContactState) -> None:
        self.table.data[key] = state  # the local store only: the changelog is written by KafkaChangelog

    def checkpoint(self, partition: int, offset: int) -> None:
        """The local store holds the partition's changelog up to ``offset`` (acknowledged): what
        recovery resumes after, and what :mod:`pipeline.streaming.store_check` compares with the
        changelog's end."""
        self.table.data.set_persisted_offset(TP(self.table.changelog_topic.get_topic_name(), partition), offset)


ProducerFactory = Callable[..., Any]


class OwnedProducer:
    """An aiokafka producer of the worker's own, beside the Faust app's: :meth:`start` before the
    first send (idempotent), :meth:`stop` at shutdown. ``producer_factory`` builds the producer
    (aiokafka's by default; tests pass a fake)."""

    def __init__(self, settings: Settings, producer_factory: ProducerFactory = AIOKafkaProducer) -> None:
        self.settings = settings
        self.producer_factory = producer_factory
        self._producer: Any = None
        self._lock = asyncio.Lock()

    def producer_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        async with self._lock:
            if self._producer is None:
                producer = self.producer_factory(**self.producer_config())
                await producer.start()
                self._producer = producer

    async def stop(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
            if producer is not None:
                await producer.stop()

    def _started(self) -> Any:
        if self._producer is None:
            raise RuntimeError(f"the producer is not started ({type(self).__name__}.start)")
        return self._producer


class KafkaChangelog(OwnedProducer):
    """Writes contact states to the table's changelog topic with a producer of its own."""

    def __init__(self, settings: Settings, topic: str, producer_factory: ProducerFactory = AIOKafkaProducer) -> None:
        super().__init__(settings, producer_factory)
        self.topic = topic

    def producer_config(self) -> dict[str, Any]:
        """Every record acknowledged by all in-sync replicas; batches as the broker profile says."""
        return producer_options(
            self.settings, f"{self.settings.app_id}-changelog", linger_ms=1,
            max_batch_size=self.settings.broker.changelog_batch_bytes,
        )

    async def write(
        self, flush: Sequence[tuple[int, Mapping[str, ContactState]]]
    ) -> list[tuple[int, list[Awaitable[int]]]]:
        """Partitions' changed states, each partition's in as few record batches as the profile's
        ``changelog_batch_bytes`` allows (aiokafka sends one batch per partition per request, so
        every partition's first batch shares one produce request). With
        ``changelog_single_record_tail`` the last record of each partition goes alone in a final
        batch, sent after every partition's other batches: a broker that reports a partition's end
        offset as its last batch's base offset + 1 (Tansu 0.6) then reports it right after every
        flush, for two produce round trips per flush. Returns each partition's acks, one per
        batch, in order; each resolves to the offset of its batch's last record."""
        producer = self._started()
        tailed = self.settings.broker.changelog_single_record_tail
        acks: list[tuple[int, list[Awaitable[int]]]] = []
        tails: list[tuple[int, bytes, bytes, list[Awaitable[int]]]] = []
        for partition, states in flush:
            records = [(table_key(key), encode_state(state)) for key, state in states.items()]
            sent: list[Awaitable[int]] = []
            acks.append((partition, sent))
            if not records:
                continue
            if tailed:
                key, value = records.pop()
                tails.append((partition, key, value, sent))
            batch = producer.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: send, start another
                    sent.append(await self._send_batch(producer, batch, partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"a changelog record of {len(value)} bytes does not fit in a batch of "
                                         f"{self.settings.broker.changelog_batch_bytes} bytes (changelog_batch_bytes)")
            if batch.record_count():
                sent.append(await self._send_batch(producer, batch, partition))
        for partition, key, value, sent in tails:
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)
            sent.append(await self._send_batch(producer, batch, partition))
        return acks

    async def _send_batch(self, producer: Any, batch: Any, partition: int) -> Awaitable[int]:
        batch.close()
        records = batch.record_count()
        ack = await producer.send_batch(batch, self.topic, partition=partition)
        return _last_offset(ack, records)


async def _last_offset(ack: Ack, records: int) -> int:
    """The offset of a batch's last record, once the batch is acknowledged (its metadata gives
    the first record's)."""
    metadata = await ack
    return int(metadata.offset) + records - 1


class FaustOutputs:
    """The :class:`~pipeline.streaming.unit_of_work.OutputSender` over the Faust app's producer."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> Ack:
        ack: Ack = await self.app.producer.send(topic, key, value, partition, None, None)
        return ack


class IngestProducer(OwnedProducer):
    """The producer the ingest consumers forward with (``send(topic, value, key=, partition=)``),
    of its own: its requests do not queue behind the outputs' on the Faust producer's connection,
    and its batches hold a whole forwarded message (up to 500 events: ``consumers.ingest.CHUNK``)."""

    def producer_config(self) -> dict[str, Any]:
        return producer_options(self.settings, f"{self.settings.app_id}-ingest", linger_ms=1,
                                max_batch_size=INGEST_BATCH_BYTES)

    async def send(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None) -> Any:
        return await self._started().send(topic, value, key=key, partition=partition)


#: Record batch size of the ingest producer: under the broker's default message.max.bytes (1 MiB).
INGEST_BATCH_BYTES = 1_000_000
