"""Abuse limits of the collector: token buckets per write key and per client address.

A browser tracker's write key is in every page, so anyone can send with it. Each limited request
takes one token from its write key's bucket and one from its client address's bucket; a bucket
holds at most ``burst`` tokens and refills at ``rate`` per second. A request that finds a bucket
empty is answered ``429`` with ``Retry-After`` (whole seconds until a token is back) and costs
nothing more. Buckets are kept for at most ``max_keys`` keys (least recently used dropped first:
a dropped bucket comes back full), so a flood of spoofed addresses cannot exhaust memory.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate`` requests per second, bursts of up to ``burst``."""

    rate: float
    burst: float

    def __str__(self) -> str:
        return f"{self.rate:g}/s (burst {self.burst:g})"


def parse_limit(text: str) -> Limit | None:
    """``"RATE"`` or ``"RATE/BURST"`` (requests per second, bucket size; burst defaults to 2 × rate);
    ``"0"`` or ``"off"``: no limit. Raises ``ValueError`` with what to write."""
    text = text.strip().lower()
    if text in ("0", "off", "none"):
        return None
    rate_text, _, burst_text = text.partition("/")
    try:
        rate = float(rate_text)
        burst = float(burst_text) if burst_text else max(1.0, 2 * rate)
    except ValueError:
        raise ValueError(f"{text!r} is not RATE or RATE/BURST (e.g. 20/100), or off") from None
    if not (rate > 0 and burst >= 1) or math.isinf(rate) or math.isinf(burst):
        raise ValueError(f"{text!r}: the rate must be above 0 and the burst at least 1")
    return Limit(rate, burst)


class TokenBuckets:
    """One token bucket per key, under one :class:`Limit`."""

    def __init__(self, limit: Limit, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, updated at)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Take a token for ``key``: ``0.0`` when there was one, else the seconds until there is."""
        now, limit = self.clock(), self.limit
        tokens, updated = self._buckets.pop(key, (limit.burst, now))
        tokens = min(limit.burst, tokens + (now - updated) * limit.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / limit.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def retry_after(wait: float) -> int:
    """``Retry-After`` in whole seconds (at least 1) for a wait of ``wait`` seconds."""
    return max(1, math.ceil(wait))
