"""The one retry loop: its schedule, reset on success, jitter, stopping, injected sleep."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.kafka.retry import RECONNECT, Backoff, Retry, equal_jitter, no_jitter, retry_until


class Waits:
    """An injected sleep that records the waits instead of waiting."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def test_schedule_doubles_from_half_a_second_to_ten() -> None:
    assert [RECONNECT.ceiling(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 10, 10, 10]
    assert RECONNECT.ceiling(10_000) == 10.0  # no overflow
    assert Backoff(first=0.5, maximum=5.0).ceiling(5) == 5.0


def test_equal_jitter_stays_between_half_and_all() -> None:
    waits = [equal_jitter(8.0) for _ in range(200)]
    assert all(4.0 <= w <= 8.0 for w in waits) and len(set(waits)) > 1


def test_failures_grow_and_success_resets() -> None:
    retry = Retry(jitter=no_jitter)
    assert [retry.failed() for _ in range(3)] == [0.5, 1.0, 2.0]
    retry.succeeded()
    assert retry.failed() == 0.5


def test_retry_until_retries_then_returns() -> None:
    outcomes: list[object] = [ConnectionError("down"), ConnectionError("down"), "connected"]
    reported: list[tuple[str, float]] = []
    waits = Waits()

    async def attempt() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)

    retry = Retry(sleep=waits, jitter=no_jitter)
    result = asyncio.run(retry_until(attempt, retry, on_failure=lambda exc, delay: reported.append((str(exc), delay))))
    assert result == "connected"
    assert waits.seconds == [0.5, 1.0] and reported == [("down", 0.5), ("down", 1.0)]
    assert retry.failures == 0


def test_other_errors_propagate() -> None:
    async def attempt() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        asyncio.run(retry_until(attempt, Retry(sleep=Waits()), retry_on=ConnectionError))


def test_stopping_ends_the_wait_and_the_loop() -> None:
    async def scenario() -> tuple[object, float, int]:
        stopping = asyncio.Event()
        calls = 0

        async def attempt() -> int:
            nonlocal calls
            calls += 1
            raise ConnectionError("down")

        retry = Retry(Backoff(first=60.0, maximum=60.0), stopping=stopping)
        loop = asyncio.get_running_loop()
        started = loop.time()
        loop.call_later(0.05, stopping.set)
        result = await retry_until(attempt, retry)
        return result, loop.time() - started, calls

    result, took, calls = asyncio.run(scenario())
    assert result is None and calls == 1 and took < 5.0


def test_nothing_is_attempted_once_stopped() -> None:
    async def scenario() -> tuple[object, bool]:
        stopping = asyncio.Event()
        stopping.set()
        retry = Retry(stopping=stopping)

        async def attempt() -> str:
            raise AssertionError("not called")

        result = await retry_until(attempt, retry)
        return result, await retry.pause(1.0)

    assert asyncio.run(scenario()) == (None, False)
