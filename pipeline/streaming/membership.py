"""Writes only while this worker is still the member that owns its partitions (zombie fencing).

A worker frozen past its session timeout (a long pause, a stopped VM, SIGSTOP) is expelled from
the consumer group and its partitions go to another worker, which restores their states from the
changelog and carries on. When the frozen worker wakes, the batch it had in hand goes on where
it stopped: without a guard its outputs and changelog records land *after* the newer ones of the
partitions' new owner, and a contact's changelog (and its ``lead.contacts`` snapshot, a compacted
topic) goes back to an older state (``tests/integration/cluster/test_cluster.py``, the zombie
test, found 10 such writes 0.2 s after the thaw). Leadflow does not use Kafka transactions (the
embedded broker has none, and Faust's changelog recovery does not expect transaction markers), so
the broker cannot fence those writes; the worker fences itself:

* each batch's unit of work records the consumer group **generation** it was computed under;
* before each output is sent and before the batch's states are stored and written to the
  changelog, it confirms that the generation is unchanged **and** that the group coordinator
  heard from this member recently: a heartbeat *sent* (or a join completed) less than ``hold_after``
  seconds ago was accepted. The coordinator cannot have expelled a member whose heartbeat it
  accepted less than a session timeout ago, so a write confirmed this way is made by the owner;
* when the last accepted heartbeat is older than that (the process was frozen, or the
  coordinator is unreachable), the write **waits**: for the next accepted heartbeat (the member
  is still in the group: it goes on), or for the generation to change (the coordinator answered
  ``UNKNOWN_MEMBER_ID`` / ``ILLEGAL_GENERATION``: it was expelled) or ``max_hold`` seconds to
  pass. Both of those raise :class:`Fenced`. After a generation change the batch is dropped:
  nothing of it is stored or written, its input offsets are not committed, and its events are
  processed again from the committed offsets after the rebalance (by the partitions' new owner,
  or by this worker if it gets them back: the same outputs, with the same ids). The worker then
  forgets its in-memory states (later batches read only what was written), and a batch computed
  before the drop, which may have read the dropped batch's states, is refused too.
* A refusal that no rebalance follows (no answer for ``max_hold``; a batch of the current
  generation computed on a dropped batch's states) stops the worker: it restarts from its
  committed offsets, as after a failed acknowledgement.

What this cannot stop: records the frozen process had already handed to the Kafka client before
it froze but that were not yet on the wire (aiokafka's accumulator; the worker's changelog
producer lingers 1 ms). They are sent when it wakes. docs/streaming.md says so and what the test
measured.

The generation and the heartbeat times are read from aiokafka's group coordinator, which runs in
Faust's consumer thread: :meth:`Membership.attach` wraps its heartbeat and join calls to note
when each accepted request was sent (plain float and int attributes: reads from the worker's
loop need no lock).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

#: aiokafka's generation after the coordinator forgot the member (``reset_generation``)
NO_GENERATION = -1


class Fenced(Exception):
    """This worker is no longer (or cannot show it is still) the owner its batch was computed by.

    ``expelled``: the generation moved on, so a rebalance revokes the partitions and the batch
    can simply be dropped; otherwise (no heartbeat accepted for ``max_hold`` seconds) the member
    may still own them, and the worker must restart from its committed offsets (a batch that
    was dropped without a rebalance would leave later batches built on states never written)."""

    def __init__(self, reason: str, *, expelled: bool) -> None:
        super().__init__(reason)
        self.expelled = expelled


class Membership:
    """The worker's consumer group membership, as its writes need to know it."""

    def __init__(self, session_timeout: float, heartbeat_interval: float, max_hold: float,
                 poll: float = 0.05) -> None:
        #: A write made within this many seconds of an accepted heartbeat's sending goes ahead at
        #: once: half the session timeout (at least two heartbeat intervals), well inside it.
        self.hold_after = max(session_timeout / 2, 2 * heartbeat_interval)
        self.max_hold = max_hold
        self.poll = poll
        self.renewed_at = time.monotonic()
        self._coordinator: Any = None
        self._hold_noted = 0.0
        #: Batches dropped so far. A batch computed before a drop may have read the dropped
        #: batch's states (never written): it is dropped too (see :meth:`dropped`).
        self.drops = 0

    @property
    def generation(self) -> int | None:
        """The group generation now (``None``: no group coordinator attached: nothing is guarded)."""
        coordinator = self._coordinator
        return None if coordinator is None else int(coordinator.generation)

    def attach(self, coordinator: Any) -> None:
        """Follow aiokafka's ``GroupCoordinator``: the send time of each accepted heartbeat or join."""
        heartbeat, rejoin = coordinator._do_heartbeat, coordinator._do_rejoin_group

        async def do_heartbeat() -> bool:
            sent = time.monotonic()
            accepted = bool(await heartbeat())
            if accepted:
                self.renewed_at = sent
            return accepted

        async def do_rejoin_group(subscription: Any) -> bool:
            joined = bool(await rejoin(subscription))
            if joined:  # the coordinator starts the members' session timers as the join completes
                self.renewed_at = time.monotonic()
            return joined

        coordinator._do_heartbeat, coordinator._do_rejoin_group = do_heartbeat, do_rejoin_group
        self.renewed_at = time.monotonic()
        self._coordinator = coordinator

    async def confirm(self, generation: int | None, drops: int = 0) -> None:
        """Return when a write computed under ``generation`` (after ``drops`` dropped batches) may
        be made; raise :class:`Fenced` when it must not be (module docstring)."""
        if self.current(generation, drops):
            return
        assert generation is not None
        waited_from = time.monotonic()
        if self._hold_noted != self.renewed_at:  # once per silence, not once per batch
            self._hold_noted = self.renewed_at
            log.warning("no heartbeat accepted for %.1fs: holding this batch's writes until the group "
                        "coordinator confirms this worker still owns its partitions", waited_from - self.renewed_at)
        while True:
            await asyncio.sleep(self.poll)
            self._check(generation, drops)
            now = time.monotonic()
            if now - self.renewed_at <= self.hold_after:
                return
            if now - waited_from > self.max_hold:
                raise Fenced(f"no heartbeat accepted for {now - self.renewed_at:.0f}s", expelled=False)

    def dropped(self) -> None:
        """A batch was dropped: every batch computed before now is suspect (the caller forgets
        the in-memory states, so later batches read only what was written)."""
        self.drops += 1

    def current(self, generation: int | None, drops: int = 0) -> bool:
        """The fast path: ``True`` when a write computed under ``generation`` may go ahead now
        (raises :class:`Fenced` when the generation moved on; ``False``: :meth:`confirm` waits)."""
        if generation is None:
            return True
        self._check(generation, drops)
        return time.monotonic() - self.renewed_at <= self.hold_after

    def _check(self, generation: int, drops: int) -> None:
        current = self.generation
        if generation == NO_GENERATION:
            raise Fenced("computed while this worker was out of the group (no generation)", expelled=True)
        if current != generation:
            raise Fenced(f"the group generation moved on ({generation} -> {current})", expelled=True)
        if drops != self.drops:
            # Same generation: its events will not be delivered again without a restart.
            raise Fenced("computed on the states of a batch that was dropped", expelled=False)


class Lease:
    """One batch's claim: the generation it was computed under, and the drops before it."""

    __slots__ = ("drops", "generation", "membership")

    def __init__(self, membership: Membership) -> None:
        self.membership = membership
        self.generation = membership.generation
        self.drops = membership.drops

    def current(self) -> bool:
        return self.membership.current(self.generation, self.drops)

    async def confirm(self) -> None:
        if not self.current():
            await self.membership.confirm(self.generation, self.drops)
