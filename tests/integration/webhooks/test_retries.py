"""Retry waits against a real HTTP receiver: a receiver that comes back gets the backlog at once,
a record it rejected waits its full backoff, and a stop ends every wait. No broker needed."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from pipeline.streaming.embedded_broker import free_port
from pipeline.webhooks import sender
from pipeline.webhooks.config import EventFilter, RetryPolicy, Subscription
from pipeline.webhooks.events import BECAME_HOT, Delivery
from pipeline.webhooks.retries import Retrier, Source, SubscriptionStats

pytestmark = pytest.mark.integration

HOUR = 3600.0


class NoDeadLetters:
    async def publish(self, value: bytes, key: bytes | None) -> None:
        raise AssertionError("nothing should be dead-lettered here")


def test_a_recovered_receiver_ends_outage_waits_but_not_rejections() -> None:
    async def run() -> None:
        up = False
        seen: list[tuple[str, int]] = []

        async def hook(request: web.Request) -> web.Response:
            delivery_id = request.headers["Leadflow-Delivery-Id"]
            status = 422 if delivery_id == "rejected" else 200 if up else 503
            seen.append((delivery_id, status))
            return web.Response(status=status)

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        subscription = Subscription(
            name="crm", url=f"http://127.0.0.1:{port}/hook", secret="whsec_0123456789abcdef",
            filter=EventFilter(became_hot=True),
            retry=RetryPolicy(timeout=5, retry_for=24 * HOUR, backoff_initial=HOUR, backoff_max=HOUR),
        )
        session = sender.new_session(subscription)
        stats = SubscriptionStats()
        # draw ~1: every wait is a full hour, unless something ends it
        retrier = Retrier(subscription, session, NoDeadLetters(), stats, draw=lambda: 0.999)

        def deliver(delivery_id: str) -> asyncio.Task[bool]:
            source = Source("lead.alerts", 0, len(seen), None, None, b"{}")
            return asyncio.create_task(retrier.deliver(source, Delivery(delivery_id, BECAME_HOT, b"{}")))

        try:
            waiting = [deliver("a"), deliver("b"), deliver("rejected")]
            while len(seen) < 3:
                await asyncio.sleep(0.01)
            assert sorted(seen) == [("a", 503), ("b", 503), ("rejected", 422)]
            up = True  # the receiver is back; a new record succeeds and wakes the ones that hit the outage
            assert await asyncio.wait_for(deliver("c"), 30)
            assert await asyncio.wait_for(asyncio.gather(waiting[0], waiting[1]), 30) == [True, True]
            assert next(d for d, status in seen if status == 200) == "c"
            assert {d for d, status in seen if status == 200} == {"a", "b", "c"}
            assert [d for d, _ in seen].count("rejected") == 1, "a rejected record waits its full backoff"
            retrier.stop()
            assert await asyncio.wait_for(waiting[2], 30) is False, "stopped: not finished, delivered after restart"
            assert (stats.delivered, stats.failed_attempts, stats.dead_lettered) == (3, 3, 0)
        finally:
            await session.close()
            await runner.cleanup()

    asyncio.run(run())
