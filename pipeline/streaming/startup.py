"""Waiting for the broker before a process starts its Kafka clients, with ``/readyz`` saying so.

A worker (or the webhook deliverer) started while its broker cannot be reached does not exit and
does not print a traceback: it serves ``/healthz`` (200) and ``/readyz`` (503, the body names the
broker and why it is unreachable) on its web port, prints one line per failed attempt::

    leadflow: broker kafka:9092 unreachable (...); retrying in 4.0 s (LEADFLOW_KAFKA or --kafka)

and tries again with the shared backoff (:mod:`pipeline.kafka.retry`, 0.5 s doubling to 10 s).
Once the broker answers a metadata request, ``prepare`` runs (creating the missing topics) and the
waiting web server is closed so that the real one can take the port. SIGINT / SIGTERM during the
wait end it (``None``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web
from kafka.errors import KafkaError

from pipeline.config.settings import Settings
from pipeline.kafka.retry import Retry, retry_until
from pipeline.ops.web import add_service_routes
from pipeline.streaming.observability import BrokerProbe

T = TypeVar("T")


class BrokerUnreachable(Exception):
    """The broker did not answer a metadata request; the message says which and why."""


def wait_for_broker(
    settings: Settings, prepare: Callable[[], T], *, bind: str, port: int, retry: Retry | None = None
) -> T | None:
    """Probe the broker until it answers, serving ``/readyz`` on ``bind:port`` meanwhile, then
    return ``prepare()`` (run in a thread; a Kafka error there is retried too). ``None``: stopped
    by a signal first."""
    return asyncio.run(_wait(settings, prepare, bind, port, retry))


async def _wait(settings: Settings, prepare: Callable[[], T], bind: str, port: int, retry: Retry | None) -> T | None:
    probe = BrokerProbe(settings)
    problem = f"broker: {settings.bootstrap} not asked yet"

    def readiness() -> dict[str, Any]:
        return {"ready": False, "problems": [f"{problem}; retrying"],
                "checks": {"broker_reachable": False, "partitions_assigned": False, "table_recovered": False}}

    app = web.Application()
    add_service_routes(app, readiness)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, bind, port).start()
    stopping = asyncio.Event()
    quiet = logging.getLogger("aiokafka")  # it logs every failed connection; one line per attempt is ours
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)

    async def attempt() -> T:
        found = await probe.problem()
        if found is not None:
            raise BrokerUnreachable(found)
        return await asyncio.to_thread(prepare)

    def failed(exc: BaseException, delay: float) -> None:
        nonlocal problem
        problem = str(exc) if isinstance(exc, BrokerUnreachable) else f"broker: {settings.bootstrap}: {exc}"
        print(f"leadflow: {problem.replace('broker: ', 'broker ', 1)}; retrying in {delay:.1f} s "
              "(LEADFLOW_KAFKA or --kafka)", file=sys.stderr, flush=True)

    try:
        if retry is None:
            retry = Retry(stopping=stopping)
        else:
            retry.stopping = stopping
        return await retry_until(attempt, retry, retry_on=(BrokerUnreachable, KafkaError, OSError),
                                 on_failure=failed)
    finally:
        quiet.setLevel(level)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        with contextlib.suppress(Exception):
            await probe.close()
        await runner.cleanup()
