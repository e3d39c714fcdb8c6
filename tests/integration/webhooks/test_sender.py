"""One HTTP attempt against a real aiohttp server on loopback: headers, signature, and how every
kind of answer (or its absence) is classified. No broker needed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from pipeline.streaming.embedded_broker import free_port
from pipeline.webhooks import sender
from pipeline.webhooks.config import EventFilter, RetryPolicy, Subscription
from pipeline.webhooks.events import BECAME_HOT, Delivery
from pipeline.webhooks.signature import verify

pytestmark = pytest.mark.integration

SECRET = "whsec_0123456789abcdef"
BODY = b'{"alert_id":"a-1","type":"became_hot","contact_id":"c-1"}'
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def attempt(handler: Handler | None, timeout: float = 2.0) -> tuple[sender.AttemptResult, list[dict[str, Any]]]:
    """POST once to a server answering with ``handler`` (None: nothing listens on the port)."""
    seen: list[dict[str, Any]] = []

    async def run() -> sender.AttemptResult:
        port = free_port()
        runner = None
        if handler is not None:
            async def record(request: web.Request) -> web.StreamResponse:
                seen.append({"headers": dict(request.headers), "body": await request.read()})
                return await handler(request)

            app = web.Application()
            app.router.add_post("/hook", record)
            app.router.add_post("/elsewhere", record)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
        subscription = Subscription(
            name="crm", url=f"http://127.0.0.1:{port}/hook", secret=SECRET, filter=EventFilter(became_hot=True),
            retry=RetryPolicy(timeout=timeout), max_in_flight=2,
        )
        session = sender.new_session(subscription)
        try:
            return await sender.post(session, subscription, Delivery("a-1", BECAME_HOT, BODY), attempt=3)
        finally:
            await session.close()
            if runner is not None:
                await runner.cleanup()

    return asyncio.run(run()), seen


def answer(status: int, text: str = "", headers: dict[str, str] | None = None) -> Handler:
    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=text, headers=headers)

    return handler


def test_a_2xx_is_success_and_the_request_is_signed_and_labelled() -> None:
    result, seen = attempt(answer(204))
    assert result.ok and result.status == 204 and result.error is None
    (request,) = seen
    headers = request["headers"]
    assert request["body"] == BODY
    verify(SECRET, request["body"], headers["Leadflow-Signature"])
    assert headers["Leadflow-Delivery-Id"] == "a-1" and headers["Leadflow-Event"] == "lead.became_hot"
    assert headers["Leadflow-Attempt"] == "3" and headers["Content-Type"] == "application/json"


def test_a_5xx_keeps_an_excerpt_of_the_answer_and_its_retry_after() -> None:
    result, _ = attempt(answer(503, "maintenance until noon " + "x" * 500, {"Retry-After": "30"}))
    assert not result.ok and result.status == 503 and result.reason == "http_5xx"
    assert result.error is not None and result.error.startswith("HTTP 503: maintenance until noon")
    assert len(result.error) <= len("HTTP 503: ") + sender.ERROR_EXCERPT
    assert result.retry_after == 30


def test_a_4xx_is_a_failure_to_retry() -> None:
    result, _ = attempt(answer(400, "bad signature"))
    assert (result.ok, result.status, result.reason) == (False, 400, "http_4xx")
    assert result.error == "HTTP 400: bad signature"


def test_redirects_are_not_followed() -> None:
    result, seen = attempt(answer(307, headers={"Location": "/elsewhere"}))
    assert not result.ok and result.status == 307 and result.reason == "http_3xx"
    assert len(seen) == 1, "the redirect target was not called"


def test_a_receiver_that_does_not_answer_in_time_is_a_timeout() -> None:
    async def stall(_request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.Response()

    result, _ = attempt(stall, timeout=0.3)
    assert not result.ok and result.status is None and result.reason == "timeout"
    assert result.error == "no answer within 0.3s"


def test_nothing_listening_is_a_connection_failure() -> None:
    result, _ = attempt(None)
    assert not result.ok and result.status is None and result.reason == "connection"


def test_a_dropped_connection_is_a_connection_failure() -> None:
    async def drop(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(1)
        return web.Response()

    result, _ = attempt(drop)
    assert not result.ok and result.reason == "connection"
