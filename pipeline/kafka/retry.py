"""The one reconnect/retry loop: capped exponential backoff with jitter, stoppable.

Every process that talks to Kafka or to the history database survives an outage the same way:
after the n-th consecutive failure it waits ``min(maximum, first * factor ** (n - 1))`` seconds
(0.5 s, 1 s, 2 s, ... capped at 10 s by default), jittered to between half and all of that so
many clients that lost the same broker do not come back in lockstep. A success starts the
schedule again. A wait ends early when the owner's ``stopping`` event is set.

:class:`Retry` holds one schedule (for loops that restart a long-running consumer);
:func:`retry_until` calls an operation until it succeeds (for connecting, or writing a batch).
``sleep`` and ``jitter`` can be injected: tests run the schedule without waiting, and the history
sink keeps its consumer polling while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

#: Turns the schedule's ceiling for this wait into the actual wait.
Jitter = Callable[[float], float]
#: Waits the given seconds.
Sleep = Callable[[float], Awaitable[None]]


def equal_jitter(ceiling: float) -> float:
    """A uniformly random wait between half the ceiling and the ceiling."""
    return random.uniform(ceiling / 2, ceiling)


def no_jitter(ceiling: float) -> float:
    """The ceiling itself (for tests and for reading a schedule)."""
    return ceiling


@dataclass(frozen=True, slots=True)
class Backoff:
    """A capped exponential schedule, in seconds."""

    first: float = 0.5
    maximum: float = 10.0
    factor: float = 2.0

    def ceiling(self, failures: int) -> float:
        """The longest wait after ``failures`` consecutive failures (``failures`` ≥ 1)."""
        exponent = min(max(failures - 1, 0), 64)  # far beyond any cap; no float overflow
        return min(self.maximum, self.first * self.factor**exponent)


#: Reconnecting to Kafka, reopening the database, retrying a refused batch: 0.5 s doubling to 10 s.
RECONNECT = Backoff()


class Retry:
    """Consecutive failures of one operation, and the waits between its attempts."""

    __slots__ = ("_sleep", "failures", "jitter", "policy", "stopping")

    def __init__(
        self,
        policy: Backoff = RECONNECT,
        *,
        stopping: asyncio.Event | None = None,
        sleep: Sleep | None = None,
        jitter: Jitter = equal_jitter,
    ) -> None:
        self.policy = policy
        self.stopping = stopping
        self.jitter = jitter
        self.failures = 0
        self._sleep = sleep

    @property
    def stopped(self) -> bool:
        return self.stopping is not None and self.stopping.is_set()

    def failed(self) -> float:
        """Count a failure; return the seconds to wait before the next attempt."""
        self.failures += 1
        return self.jitter(self.policy.ceiling(self.failures))

    def succeeded(self) -> None:
        """The operation works again: the next failure waits the first delay."""
        self.failures = 0

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` (ended early by ``stopping``); ``True`` when another attempt should follow."""
        if self.stopped:
            return False
        if self._sleep is not None:
            await self._sleep(seconds)
        elif self.stopping is None:
            await asyncio.sleep(seconds)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), seconds)
        return not self.stopped


async def retry_until(
    attempt: Callable[[], Awaitable[T]],
    retry: Retry,
    *,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    on_failure: Callable[[BaseException, float], None] | None = None,
) -> T | None:
    """Await ``attempt()`` until it returns; ``None`` if ``retry.stopping`` is set first.

    An exception of ``retry_on`` is reported to ``on_failure(exc, seconds until the next attempt)``
    and retried after the wait; any other exception (and cancellation) propagates.
    """
    while not retry.stopped:
        try:
            result = await attempt()
        except retry_on as exc:
            delay = retry.failed()
            if on_failure is not None:
                on_failure(exc, delay)
            await retry.pause(delay)
            continue
        retry.succeeded()
        return result
    return None
