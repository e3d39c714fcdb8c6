"""The retry schedule: exponential backoff with full jitter, bounded by a retry window.

After the n-th failed attempt (n ≥ 1) the next one waits a uniformly random time between 0 and
``min(backoff_max, backoff_initial * 2 ** (n - 1))`` ("full jitter"): retries of many records
spread out instead of hammering a receiver that just came back all at once. A receiver's
``Retry-After`` (seconds) is honoured, capped at ``backoff_max``. Once the next attempt would start
after the retry window (``retry_for`` seconds after the first attempt) the record is dead-lettered.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pipeline.webhooks.config import RetryPolicy


def backoff_delay(policy: RetryPolicy, failures: int, draw: Callable[[], float] = random.random) -> float:
    """Seconds to wait after ``failures`` failed attempts; ``draw`` returns a float in [0, 1)."""
    exponent = min(max(failures - 1, 0), 60)  # 2**60 s is far beyond any cap
    ceiling = min(policy.backoff_max, policy.backoff_initial * (2.0**exponent))
    return ceiling * draw()


def next_delay(
    policy: RetryPolicy,
    failures: int,
    elapsed: float,
    retry_after: float | None = None,
    draw: Callable[[], float] = random.random,
) -> float | None:
    """The wait before the next attempt, or ``None`` when the retry window is used up.

    ``elapsed``: seconds since the first attempt started. ``retry_after``: the receiver's
    ``Retry-After`` in seconds, when it sent one.
    """
    delay = backoff_delay(policy, failures, draw)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.backoff_max))
    if elapsed + delay > policy.retry_for:
        return None
    return delay


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` given in seconds (the HTTP-date form is ignored: receivers rarely send it)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < 10 * 86_400 else None
