"""One HTTP attempt: POST a signed delivery to a receiver and classify the answer.

Any 2xx is success. Everything else is a failure to retry: 3xx (redirects are not followed: a
receiver that moved must update the subscription), 4xx, 5xx, a timeout, a refused or dropped
connection. Every request has a total timeout, connect included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from pipeline.webhooks import signature
from pipeline.webhooks.backoff import parse_retry_after
from pipeline.webhooks.config import Subscription
from pipeline.webhooks.events import Delivery

USER_AGENT = "Leadflow-Webhooks/1"
ERROR_EXCERPT = 200  # characters of a failed answer's body kept for the dead letter


@dataclass(frozen=True, slots=True)
class AttemptResult:
    ok: bool
    status: int | None  # HTTP status, None when no answer came
    reason: str | None  # failure class (a metric label): timeout, connection, http_3xx, http_4xx, http_5xx, ...
    error: str | None  # what went wrong, for logs and the dead letter
    retry_after: float | None
    duration: float


def headers(subscription: Subscription, delivery: Delivery, attempt: int, now: float) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signature.HEADER: signature.sign(subscription.secret, delivery.body, int(now)),
        "Leadflow-Delivery-Id": delivery.delivery_id,
        "Leadflow-Event": delivery.event,
        "Leadflow-Attempt": str(attempt),
    }


def new_session(subscription: Subscription) -> aiohttp.ClientSession:
    """A client session for one subscription: its own connection pool, sized to its concurrency."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=subscription.max_in_flight, ttl_dns_cache=300),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=subscription.retry.timeout),
        trust_env=False,
    )


def _status_reason(status: int) -> str:
    return f"http_{status // 100}xx" if 300 <= status < 600 else "http_other"


async def post(
    session: aiohttp.ClientSession,
    subscription: Subscription,
    delivery: Delivery,
    attempt: int,
    clock: Callable[[], float] = time.time,
) -> AttemptResult:
    """POST ``delivery`` once; never raises for a network or HTTP failure (only on cancellation)."""
    started = time.monotonic()
    timeout = subscription.retry.timeout
    try:
        async with session.post(
            subscription.url,
            data=delivery.body,
            headers=headers(subscription, delivery, attempt, clock()),
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            status = response.status
            if 200 <= status < 300:
                return AttemptResult(True, status, None, None, None, time.monotonic() - started)
            try:
                excerpt = (await asyncio.wait_for(response.content.read(ERROR_EXCERPT), timeout)).decode(
                    "utf-8", "replace"
                )
            except (aiohttp.ClientError, TimeoutError):
                excerpt = ""
            text = f"HTTP {status}" + (f": {excerpt.strip()}" if excerpt.strip() else "")
            return AttemptResult(
                False,
                status,
                _status_reason(status),
                text,
                parse_retry_after(response.headers.get("Retry-After")),
                time.monotonic() - started,
            )
    except TimeoutError:
        return AttemptResult(False, None, "timeout", f"no answer within {timeout:g}s", None, time.monotonic() - started)
    except aiohttp.ClientError as exc:
        detail = str(exc) or type(exc).__name__
        return AttemptResult(False, None, "connection", detail, None, time.monotonic() - started)
    except OSError as exc:
        return AttemptResult(False, None, "connection", str(exc), None, time.monotonic() - started)
