"""The contact processor's unit of work: one batch's effects, in the order at-least-once needs.

A batch of the internal ``contact-events`` topic produces outputs (transitions, alerts, snapshots,
routed referral credit) and changed contact states. Faust commits the batch's input offsets once
they are acknowledged, so by then everything the batch caused must be durable:

1. every output is acknowledged by the broker;
2. only then is each changed state put into the local store (the table) and appended to the
   table's changelog, and every changelog record is acknowledged;
3. only then is the batch reported complete (:attr:`UnitOfWork.completed`) and its input offsets
   acknowledged.

The worker overlaps batches (:class:`CommitPipeline`): batch k+1 is computed and its outputs sent
while batch k's acknowledgements are awaited, and batch k+1 commits only after batch k did. Its
input offsets are acknowledged only when its own commit is done, so an offset is never committed
before everything it produced is durable.

Every write is made by the partitions' owner only: a unit of work given the worker's
:class:`~pipeline.streaming.membership.Membership` records the group generation it was computed
under and confirms it before each output and before its states are stored and written (a worker
that was frozen past its session timeout waits for the coordinator's word; one that was expelled
drops the batch: :mod:`pipeline.streaming.membership`).

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
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from pipeline.state_machine import ContactState
from pipeline.streaming.membership import Fenced, Lease, Membership

log = logging.getLogger(__name__)

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
    """Appends partitions' changed contact states to the table's changelog.

    Each state goes to the changelog partition with the same number as the input partition (what
    table recovery reads back). Returns, per partition, acknowledgements that resolve to the offset
    of the last record each covers."""

    async def write(
        self, flush: Sequence[tuple[int, Mapping[str, ContactState]]]
    ) -> Sequence[tuple[int, Sequence[Awaitable[int]]]]: ...


class UnitOfWork:
    """One batch's outputs and state writes; :meth:`commit` makes them durable in order.

    The contact processor calls :meth:`bind` before it reads a partition's states, :meth:`send`
    for each output, :meth:`stage` with each partition's changed states, and finally
    :meth:`commit` (directly, or through a :class:`CommitPipeline`). A unit of work serves one
    batch.
    """

    def __init__(self, outputs: OutputSender, store: LocalStore, changelog: ChangelogWriter,
                 membership: Membership | None = None) -> None:
        self.outputs = outputs
        self.store = store
        self.changelog = changelog
        self.completed = False  # True once commit() returned: the batch's offsets may be committed
        self._lease = Lease(membership) if membership is not None else None
        self._fenced: Fenced | None = None  # set by a send refused: commit() raises it
        self._acks: list[Ack] = []
        self._staged: list[tuple[int, dict[str, ContactState]]] = []

    def bind(self, partition: int) -> None:
        """The next reads are of ``partition``'s contacts."""
        self.store.bind(partition)

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        """Queue an output record; its acknowledgement is awaited before any state is written. Once
        the worker is found not to own the batch's partitions any more, nothing more is sent."""
        lease = self._lease
        if lease is not None and self._fenced is None:
            try:
                if not lease.current():  # the fast path: no await
                    await lease.confirm()
            except Fenced as fenced:
                self._fenced = fenced
        if self._fenced is not None:
            return
        self._acks.append(await self.outputs.send(topic, key, value, partition))

    async def outputs_acknowledged(self) -> None:
        """Wait until every output sent so far is acknowledged (raises if one was refused)."""
        acks, self._acks = self._acks, []
        await acknowledged(acks)

    def stage(self, partition: int, states: dict[str, ContactState]) -> None:
        """Changed states of ``partition``, to be written by :meth:`commit` after the outputs."""
        if states:
            self._staged.append((partition, states))

    async def commit(self) -> None:
        """Outputs acknowledged, then each staged state stored and every partition's changelog
        records written at once and acknowledged; then the batch is complete. Raises (and the
        batch stays incomplete) when an acknowledgement fails."""
        if self.completed:
            raise RuntimeError("a unit of work commits one batch, once")
        if self._fenced is not None:
            raise self._fenced
        await self.outputs_acknowledged()
        if self._lease is not None:  # the outputs may have taken a while: still the owner?
            await self._lease.confirm()
        staged, self._staged = self._staged, []
        for partition, states in staged:
            self.store.bind(partition)
            for key, state in states.items():
                self.store.put(key, state)
        written = await self.changelog.write(staged) if staged else []
        checkpoint = getattr(self.store, "checkpoint", None)  # optional: a store that records it
        for partition, acks in written:
            offsets = await acknowledged(acks)
            if offsets and checkpoint is not None:
                checkpoint(partition, max(offsets))
        self.completed = True


async def acknowledged(acks: Sequence[Awaitable[Any]]) -> list[Any]:
    """Every acknowledgement's result, in order; raises the first failure. Awaiting each in turn
    costs next to nothing for the acks already resolved (most of them, by the time the last is
    awaited), where ``asyncio.gather`` adds a callback (or a task) per ack: at thousands of outputs
    per batch that was 2% of the worker's time."""
    return [await ack for ack in acks]


class CommitPipeline:
    """Commits batches in order, one at a time, while the next batch is computed.

    :meth:`submit` starts a batch's commit in a task of its own and returns as soon as the commit
    before it finished, so batch k+1 is decoded, applied and its outputs sent while batch k's
    outputs and changelog records are in flight. A commit runs only after the one before it
    succeeded; ``durable`` (e.g. acknowledging the batch's input offsets) runs only after its own
    commit succeeded. After a failed commit nothing is committed again: :meth:`submit` raises the
    failure, ``on_failure`` is called once (the worker crashes and restarts from the committed
    offsets and its changelog), and the batch and every later one stay unacknowledged. A commit
    refused because the worker was expelled from the group (:class:`Fenced` with ``expelled``) is
    dropped instead: its batch stays unacknowledged, nothing of it was stored or written, and the
    rebalance that follows revokes its partitions (their new owner processes the batch);
    ``on_dropped`` is called then, while no other commit is in flight."""

    def __init__(self, on_failure: Callable[[BaseException], Awaitable[None]] | None = None,
                 on_dropped: Callable[[], None] | None = None) -> None:
        self.on_failure = on_failure
        self.on_dropped = on_dropped  # e.g. forget the in-memory states the dropped batch left
        self.failure: BaseException | None = None
        self.dropped = 0  # batches dropped because the worker was expelled (Fenced)
        self._inflight: asyncio.Task[None] | None = None

    async def submit(self, commit: Callable[[], Awaitable[None]], durable: Callable[[], None]) -> None:
        """Wait for the commit in flight, then start this one (``durable`` runs once it is done)."""
        await self.drain()
        self._inflight = asyncio.ensure_future(self._run(commit, durable))

    async def drain(self) -> None:
        """Wait for the commit in flight; raises the first failure (now and at every later call)."""
        inflight = self._inflight
        if inflight is not None:
            # asyncio.wait, not await: cancelling the caller (Faust restarts its agents on a
            # rebalance) must not cancel a commit half-way; it completes (or fails) on its own.
            await asyncio.wait([inflight])
            if self._inflight is inflight:
                self._inflight = None
        if self.failure is not None:
            raise self.failure

    async def _run(self, commit: Callable[[], Awaitable[None]], durable: Callable[[], None]) -> None:
        try:
            await commit()
        except Fenced as fenced:
            if not fenced.expelled:
                await self._failed(fenced)
                return
            self.dropped += 1
            if self.on_dropped is not None:
                self.on_dropped()
            log.warning("a batch was dropped, not written: %s (this worker was expelled from the group; "
                        "the partitions' new owner processes its events)", fenced)
            return
        except BaseException as exc:
            await self._failed(exc)
            if not isinstance(exc, Exception):
                raise
            return
        durable()

    async def _failed(self, exc: BaseException) -> None:
        self.failure = exc
        if self.on_failure is not None:
            await self.on_failure(exc)
