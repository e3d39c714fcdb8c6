"""In-memory fakes of the unit of work's collaborators, for tests without a broker.

:class:`InMemoryBroker` stands for the output topics and the changelog: every send is recorded in
one ``journal`` (in call order), and acknowledgements are futures the test can hold back
(``auto_ack=False``, then :meth:`InMemoryBroker.acknowledge`) or fail (:meth:`InMemoryBroker.refuse`).
:class:`InMemoryStore` is the table's local store. :func:`in_memory_unit` wires a
:class:`~pipeline.streaming.unit_of_work.UnitOfWork` over them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.state_machine import ContactState
from pipeline.streaming.unit_of_work import Ack, UnitOfWork


@dataclass(frozen=True, slots=True)
class Record:
    """One record sent to a topic (``state`` is set for changelog records)."""

    topic: str
    key: bytes | str | None
    value: bytes | None
    partition: int | None
    state: ContactState | None = None


@dataclass
class InMemoryBroker:
    """Output topics and the changelog in one journal; acks resolve at once unless held back."""

    changelog_topic: str = "contacts-changelog"
    auto_ack: bool = True
    journal: list[tuple[str, Any]] = field(default_factory=list)  # ("send" | "append" | "put" | "bind", ...)
    refused: dict[str, BaseException] = field(default_factory=dict)  # topic -> error its acks raise
    _pending: list[tuple[Record, asyncio.Future[None]]] = field(default_factory=list)
    _offsets: dict[int, int] = field(default_factory=dict)  # next changelog offset per partition

    def records_sent(self) -> list[Record]:
        """Every output record (not the changelog), in send order."""
        return [entry for op, entry in self.journal if op == "send"]

    def records(self, topic: str) -> list[Record]:
        """Every record sent or appended to ``topic``, in order."""
        return [entry for op, entry in self.journal if op in ("send", "append") and entry.topic == topic]

    def refuse(self, topic: str, error: BaseException) -> None:
        """Acknowledgements of records sent to ``topic`` from now on raise ``error``."""
        self.refused[topic] = error

    def acknowledge(self) -> int:
        """Resolve every held-back acknowledgement; returns how many."""
        pending, self._pending = self._pending, []
        for record, future in pending:
            self._settle(record, future)
        return len(pending)

    @property
    def unacknowledged(self) -> list[Record]:
        return [record for record, _ in self._pending]

    def _ack(self, record: Record) -> Ack:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.auto_ack:
            self._settle(record, future)
        else:
            self._pending.append((record, future))
        return future

    def _settle(self, record: Record, future: asyncio.Future[None]) -> None:
        error = self.refused.get(record.topic)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(None)

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> Ack:
        """The :class:`~pipeline.streaming.unit_of_work.OutputSender` side."""
        record = Record(topic, key, value, partition)
        self.journal.append(("send", record))
        return self._ack(record)

    async def write(
        self, flush: Sequence[tuple[int, Mapping[str, ContactState]]]
    ) -> list[tuple[int, list[Awaitable[int]]]]:
        """The :class:`~pipeline.streaming.unit_of_work.ChangelogWriter` side: one record per state,
        journaled as ``append``; each ack resolves to the record's offset in its partition."""
        written: list[tuple[int, list[Awaitable[int]]]] = []
        for partition, states in flush:
            acks: list[Awaitable[int]] = []
            for key, state in states.items():
                record = Record(self.changelog_topic, key, None, partition, state)
                self.journal.append(("append", record))
                offset = self._offsets.get(partition, 0)
                self._offsets[partition] = offset + 1
                acks.append(self._offset_when_acked(self._ack(record), offset))
            written.append((partition, acks))
        return written

    @staticmethod
    async def _offset_when_acked(ack: Ack, offset: int) -> int:
        await ack
        return offset


class InMemoryStore(dict[str, ContactState]):
    """The table's local store: a dict (the processor reads it as its table) that journals writes."""

    def __init__(self, journal: list[tuple[str, Any]] | None = None) -> None:
        super().__init__()
        self.journal: list[tuple[str, Any]] = [] if journal is None else journal
        self.bound: int | None = None

    def bind(self, partition: int) -> None:
        self.bound = partition
        self.journal.append(("bind", partition))

    def put(self, key: str, state: ContactState) -> None:
        self[key] = state
        self.journal.append(("put", Record("store", key, None, self.bound, state)))


def in_memory_unit(broker: InMemoryBroker, store: InMemoryStore) -> UnitOfWork:
    """A unit of work whose outputs and changelog go to ``broker`` and states to ``store``."""
    return UnitOfWork(outputs=broker, store=store, changelog=broker)
