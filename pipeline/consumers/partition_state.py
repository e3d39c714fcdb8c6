"""One partition's contact states and deadline index, as the contact processor keeps them.

* :class:`StagedStates`: reads through to the table, writes staged until the batch hands them to
  its unit of work, and in flight until that unit committed (the next batch reads them meanwhile).
* :class:`UndecodableState`: what the table holds for stored bytes that do not decode.
* :class:`CountingDeadlines`: the deadline index, counting what came due (for the sweep metrics).
"""

from __future__ import annotations

from collections import Counter as CounterType
from collections.abc import Iterator, MutableMapping
from typing import Any

from pipeline.state_machine import ContactState
from pipeline.state_machine.processor import DeadlineIndex


class UndecodableState:
    """What the table holds for a stored contact state whose bytes do not decode (the codec returns
    it instead of raising, so a bad changelog record never stops the changelog recovery). Reading
    it raises :class:`UndecodableStateError`: the contact's events become ``processing_error``
    dead letters, the partition goes on."""

    __slots__ = ("data", "reason")

    def __init__(self, data: bytes, reason: str) -> None:
        self.data, self.reason = data, reason


class UndecodableStateError(ValueError):
    """A contact's stored state cannot be decoded; the message names the contact and why."""

    def __init__(self, contact: str, stored: UndecodableState) -> None:
        super().__init__(f"the stored state of {contact} cannot be decoded ({len(stored.data)} bytes): "
                         f"{stored.reason}")


class StagedStates(MutableMapping[str, ContactState]):
    """Contact states of one partition: reads through to the table, writes staged until flushed.

    States taken by :meth:`take_staged` stay visible as *in flight* until :meth:`settled` (the
    batch that changed them committed, so the table holds them): the next batch is computed while
    the one before it commits (:class:`~pipeline.streaming.unit_of_work.CommitPipeline`)."""

    def __init__(self, table: MutableMapping[str, Any], tally: CounterType[tuple[int, int]] | None = None) -> None:
        self.table = table
        self.staged: dict[str, ContactState] = {}
        self.inflight: dict[str, ContactState] = {}
        # Contacts per (stage, band) of the partition, kept current when staged states are taken
        # (None: not counted); _before keeps the stored state of each contact this batch touched.
        self.tally = tally
        self._before: dict[str, ContactState | None] = {}

    def _lookup(self, key: str) -> ContactState | UndecodableState | None:
        state = self.inflight.get(key)
        if state is None:
            return self.table.get(key)
        return state

    def _stored(self, key: str) -> ContactState | None:
        state = self._lookup(key)
        if isinstance(state, UndecodableState):
            raise UndecodableStateError(key, state)
        if self.tally is not None and key not in self._before:
            self._before[key] = state
        return state

    def __getitem__(self, key: str) -> ContactState:
        state = self.staged.get(key)
        if state is None:
            state = self._stored(key)
            if state is None:
                raise KeyError(key)
        return state

    def get(self, key: str, default: Any = None) -> Any:
        state = self.staged.get(key)
        if state is None:
            state = self._stored(key)
        return default if state is None else state

    def __setitem__(self, key: str, value: ContactState) -> None:
        if self.tally is not None and key not in self.staged and key not in self._before:
            before = self._lookup(key)
            self._before[key] = None if isinstance(before, UndecodableState) else before
        self.staged[key] = value

    def __delitem__(self, key: str) -> None:  # contacts are never deleted by the engine
        raise TypeError("contact states are not deleted")

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)

    def take_staged(self) -> dict[str, ContactState]:
        """This batch's changed states (once per contact); they stay readable, in flight, until
        :meth:`settled`."""
        staged, self.staged = self.staged, {}
        self.inflight.update(staged)
        if self.tally is not None:
            tally, before = self.tally, self._before
            for key, state in staged.items():
                old = before.get(key)
                if old is not None:
                    tally[old.stage, old.band] -= 1
                tally[state.stage, state.band] += 1
            before.clear()
        return staged

    def settled(self, states: dict[str, ContactState]) -> None:
        """``states`` (taken by :meth:`take_staged`) are in the table now: stop overlaying those a
        later batch did not change again."""
        inflight = self.inflight
        for key, state in states.items():
            if inflight.get(key) is state:
                del inflight[key]


class CountingDeadlines(DeadlineIndex):
    """The deadline index, counting the contacts whose deadline came due (for the sweep metrics)."""

    def __init__(self) -> None:
        super().__init__()
        self.fired = 0

    def pop_due(self, now: int) -> Iterator[tuple[int, str]]:
        for due in super().pop_due(now):
            self.fired += 1
            yield due
