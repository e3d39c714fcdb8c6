"""The contact processor's unit of work: one batch's effects, in the order at-least-once needs.

A batch of the internal ``contact-events`` topic produces outputs (transitions, alerts, snapshots,
routed referral credit) and changed contact states. Faust commits the batch's input offsets once
the agent returns from the batch, so by then everything the batch caused must be durable:

1. every output is acknowledged by the broker;
2. only then is each changed state put into the local store (the table) and appended to the
   table's changelog, and every changelog record is acknowledged;
3. only then is the batch reported complete (:attr:`UnitOfWork.completed`), and the agent returns.

A crash or a failed acknowledgement anywhere before 3 raises out of :meth:`UnitOfWork.commit`, so
the batch is never reported complete and its offsets are not committed: the batch is processed
again (same ids, same bytes) and the per-contact de-duplication makes the repeat a no-op. Outputs
first means a state is never durable without the outputs it caused.

The unit of work knows its collaborators only through the small Protocols below. The Faust and
aiokafka adapters are in :mod:`pipeline.streaming.faust_state`, in-memory fakes for tests in
:mod:`pipeline.streaming.in_memory`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol

from pipeline.state_machine import ContactState

#: What a send returns once the record is queued: it resolves when the broker acknowledged it
#: (and raises when the broker refused it).
Ack = Awaitable[Any]


class OutputSender(Protocol):
    """Sends a record to an output topic; returns the record's acknowledgement."""

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> Ack: ...


class LocalStore(Protocol):
    """The table's local store (one database per partition, e.g. RocksDB)."""

    def bind(self, partition: int) -> None:
        """Select ``partition``'s database for the reads and writes that follow."""

    def put(self, key: str, state: ContactState) -> None:
        """Store ``state`` locally, without writing the changelog."""


class ChangelogWriter(Protocol):
    """Appends a contact's state to the table's changelog; returns the record's acknowledgement.

    The record goes to the changelog partition with the same number as the input partition (what
    table recovery reads back)."""

    async def append(self, partition: int, key: str, state: ContactState) -> Ack: ...


class UnitOfWork:
    """One batch's outputs and state writes; :meth:`commit` makes them durable in order.

    The contact processor calls :meth:`bind` before it reads a partition's states, :meth:`send`
    for each output, :meth:`outputs_acknowledged` when it wants the outputs' acks (e.g. to
    measure latency), :meth:`stage` with each partition's changed states, and finally
    :meth:`commit`. A unit of work serves one batch.
    """

    def __init__(self, outputs: OutputSender, store: LocalStore, changelog: ChangelogWriter) -> None:
        self.outputs = outputs
        self.store = store
        self.changelog = changelog
        self.completed = False  # True once commit() returned: the batch's offsets may be committed
        self._acks: list[Ack] = []
        self._staged: list[tuple[int, dict[str, ContactState]]] = []

    def bind(self, partition: int) -> None:
        """The next reads are of ``partition``'s contacts."""
        self.store.bind(partition)

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        """Queue an output record; its acknowledgement is awaited before any state is written."""
        self._acks.append(await self.outputs.send(topic, key, value, partition))

    async def outputs_acknowledged(self) -> None:
        """Wait until every output sent so far is acknowledged (raises if one was refused)."""
        acks, self._acks = self._acks, []
        if acks:
            await asyncio.gather(*acks)

    def stage(self, partition: int, states: dict[str, ContactState]) -> None:
        """Changed states of ``partition``, to be written by :meth:`commit` after the outputs."""
        if states:
            self._staged.append((partition, states))

    async def commit(self) -> None:
        """Outputs acknowledged, then each staged state stored and its changelog record
        acknowledged, partition by partition; then the batch is complete. Raises (and the batch
        stays incomplete) when an acknowledgement fails."""
        if self.completed:
            raise RuntimeError("a unit of work commits one batch, once")
        await self.outputs_acknowledged()
        staged, self._staged = self._staged, []
        for partition, states in staged:
            self.store.bind(partition)
            acks: list[Ack] = []
            for key, state in states.items():
                self.store.put(key, state)
                acks.append(await self.changelog.append(partition, key, state))
            results = await asyncio.gather(*acks)
            offsets = [offset for offset in (getattr(r, "offset", None) for r in results) if isinstance(offset, int)]
            checkpoint = getattr(self.store, "checkpoint", None)  # optional: a store that records it
            if offsets and checkpoint is not None:
                checkpoint(partition, max(offsets))
        self.completed = True
