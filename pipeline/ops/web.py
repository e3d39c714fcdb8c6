"""The HTTP endpoints every aiohttp-based Leadflow process serves (sink, collector, webhooks):
``/healthz`` (the process is alive), ``/readyz`` (JSON saying what is not ready; 503 until ready),
``/stats`` (the process's own counters) and ``/metrics`` (Prometheus exposition of the default
registry). The Faust worker serves the same paths through Faust's web server
(:mod:`pipeline.streaming.observability`)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

Report = Mapping[str, Any]


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"alive": True})


async def metrics(_request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_service_routes(
    app: web.Application,
    readiness: Callable[[], Report | Awaitable[Report]],
    stats: Callable[[], Report] | None = None,
) -> None:
    """Add ``/healthz``, ``/readyz``, ``/metrics`` and (given ``stats``) ``/stats`` to ``app``.
    ``readiness()`` (sync or async) returns a document with a boolean ``ready``."""

    async def readyz(_request: web.Request) -> web.Response:
        report = readiness()
        document = await report if inspect.isawaitable(report) else report
        return web.json_response(dict(document), status=200 if document["ready"] else 503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if stats is not None:

        async def stats_page(_request: web.Request) -> web.Response:
            return web.json_response(dict(stats()))

        app.router.add_get("/stats", stats_page)
