"""Which offset a subscription may commit: the lowest record of a partition not yet finished.

A record is finished when it was delivered, dead-lettered (and the dead letter acknowledged by the
broker), or is not for this subscription. Deliveries finish out of order (retries, concurrency),
so the committable position of a partition is its lowest unfinished offset, or the offset after
the last record taken when nothing is unfinished. After a restart the subscription resumes there:
nothing is lost, and what finished after that point is delivered again (same delivery id).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field


@dataclass(slots=True)
class PartitionProgress:
    """Offsets of one partition taken for delivery and not finished yet."""

    next_offset: int | None = None  # after the last record taken
    _unfinished: list[int] = field(default_factory=list)  # heap
    _finished: set[int] = field(default_factory=set)  # finished but still above the heap's minimum

    def take(self, offset: int) -> None:
        """A record was handed to a delivery (offsets arrive in increasing order)."""
        heapq.heappush(self._unfinished, offset)
        self.next_offset = offset + 1

    def skip(self, offset: int) -> None:
        """A record needs no delivery (filtered out): finished at once. Nothing is remembered: a
        restart from a lower unfinished offset just filters it out again."""
        self.next_offset = offset + 1

    def finish(self, offset: int) -> None:
        self._finished.add(offset)
        while self._unfinished and self._unfinished[0] in self._finished:
            self._finished.discard(heapq.heappop(self._unfinished))

    @property
    def unfinished(self) -> int:
        return len(self._unfinished) - len(self._finished)

    @property
    def held(self) -> int:
        """Offsets remembered: unfinished ones, and finished ones above the lowest unfinished."""
        return len(self._unfinished)

    def committable(self) -> int | None:
        """The offset to commit (the next record to deliver after a restart), or ``None`` if nothing was taken."""
        if self._unfinished:
            return self._unfinished[0]
        return self.next_offset
