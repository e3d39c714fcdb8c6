"""The batched history writer used by ``leadflow replay --db``, over any :class:`~.port.HistoryStore`.

Records are buffered and written with :meth:`~.port.HistoryStore.write_batch`, one
transaction per batch. Every write is idempotent, so a batch that failed with
:class:`~.errors.StorageUnavailable` can simply be written again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

from pipeline.state_machine.records import Alert, ContactSnapshot, Transition
from pipeline.storage.factory import open_history_store
from pipeline.storage.port import HistoryStore

DEFAULT_BATCH_SIZE = 5000
_R = TypeVar("_R")


@dataclass(slots=True)
class WriteCounts:
    """Records handed to the database (before de-duplication by id) and transactions committed."""

    transitions: int = 0
    alerts: int = 0
    contacts: int = 0
    batches: int = 0


class HistoryWriter:
    """Buffers transitions, alerts and contact snapshots; writes a batch when ``batch_size``
    records are pending and on :meth:`flush` / :meth:`close`.

    ``HistoryWriter(url)`` opens its own store with :func:`~.factory.open_history_store` (the
    schema must be upgraded);
    pass ``store=`` to write through another :class:`HistoryStore`. When a write fails, the
    pending records stay buffered and the exception propagates: call :meth:`flush` again to retry.
    """

    def __init__(
        self, url: str | None = None, *, batch_size: int = DEFAULT_BATCH_SIZE, store: HistoryStore | None = None
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._owns_store = store is None
        self.store: HistoryStore = store if store is not None else open_history_store(url)
        self.batch_size = batch_size
        self.counts = WriteCounts()
        self._transitions: list[Transition] = []
        self._alerts: list[Alert] = []
        self._contacts: list[ContactSnapshot] = []

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        elif self._owns_store:  # an error: do not write a partial tail, just release connections
            self.store.close()

    @property
    def pending(self) -> int:
        return len(self._transitions) + len(self._alerts) + len(self._contacts)

    def add_transitions(self, records: Iterable[Transition]) -> None:
        self._transitions.extend(records)
        self._maybe_flush()

    def add_alerts(self, records: Iterable[Alert]) -> None:
        self._alerts.extend(records)
        self._maybe_flush()

    def add_contacts(self, records: Iterable[ContactSnapshot]) -> None:
        self._contacts.extend(records)
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if self.pending >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Write everything pending in one transaction (nothing to do when nothing is pending)."""
        if not self.pending:
            return
        self.store.write_batch(self._transitions, self._alerts, self._contacts)
        self.counts.transitions += len(self._transitions)
        self.counts.alerts += len(self._alerts)
        self.counts.contacts += len(self._contacts)
        self.counts.batches += 1
        self._transitions, self._alerts, self._contacts = [], [], []

    def close(self) -> None:
        """Flush, then release the store if this writer opened it."""
        try:
            self.flush()
        finally:
            if self._owns_store:
                self.store.close()


def write_replay_history(
    url: str | None,
    transitions_iterable: Iterable[Transition],
    alerts_iterable: Iterable[Alert],
    contacts_iterable: Iterable[ContactSnapshot],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> WriteCounts:
    """Write a whole replay's output: transitions, then alerts, then contact snapshots, in batches
    of ``batch_size`` records (one transaction each). Safe to run twice: the result is the same."""
    with HistoryWriter(url, batch_size=batch_size) as writer:
        for chunk in _chunks(transitions_iterable, batch_size):
            writer.add_transitions(chunk)
        for alert_chunk in _chunks(alerts_iterable, batch_size):
            writer.add_alerts(alert_chunk)
        for contact_chunk in _chunks(contacts_iterable, batch_size):
            writer.add_contacts(contact_chunk)
    return writer.counts


def _chunks(records: Iterable[_R], size: int) -> Iterator[list[_R]]:
    iterator = iter(records)
    while chunk := list(islice(iterator, size)):
        yield chunk
