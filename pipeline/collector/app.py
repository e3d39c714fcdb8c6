"""Wiring of the collector process: the aiohttp application, its routes, startup and shutdown.

``build_app`` is what the tests and ``leadflow collector`` run. Shutdown (SIGTERM or SIGINT)
stops accepting connections, lets requests in flight finish (they wait for their acks), then
flushes and closes the producer.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from pipeline.collector.config import MAX_BODY_BYTES, CollectorConfig
from pipeline.collector.server import EVENTS_ROUTE, Collector, count_requests
from pipeline.config.settings import Settings
from pipeline.ops.web import add_service_routes

log = logging.getLogger(__name__)

COLLECTOR = web.AppKey("collector", Collector)
TRACKER_CACHE_SECONDS = 3600


def tracker_source() -> bytes:
    """The browser tracker shipped with the package (``pipeline/collector/tracker.js``)."""
    return resources.files(__package__).joinpath("tracker.js").read_bytes()


class TrackerScript:
    """``GET /v1/tracker.js``: the tracker with an ``ETag`` and a cache lifetime."""

    def __init__(self) -> None:
        self.body = tracker_source()
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:20] + '"'

    async def get(self, request: web.Request) -> web.StreamResponse:
        headers = {"ETag": self.etag, "Cache-Control": f"public, max-age={TRACKER_CACHE_SECONDS}"}
        if self.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=self.body, headers=headers, content_type="application/javascript", charset="utf-8")


def _readiness(collector: Collector) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def readiness() -> dict[str, Any]:
        report = await collector.publisher.readiness()
        report["inflight_requests"] = collector.inflight
        return report

    return readiness


def build_app(settings: Settings, config: CollectorConfig) -> web.Application:
    """The collector as an aiohttp application (the producer starts with the application)."""
    app = web.Application(middlewares=[count_requests], client_max_size=MAX_BODY_BYTES)
    collector = Collector(settings, config)
    app[COLLECTOR] = collector
    tracker = TrackerScript()
    app.router.add_post(EVENTS_ROUTE, collector.post_events)
    app.router.add_route("OPTIONS", EVENTS_ROUTE, collector.preflight)
    app.router.add_get("/v1/tracker.js", tracker.get)
    add_service_routes(app, _readiness(collector))

    async def start_publisher(app: web.Application) -> None:
        await collector.publisher.start()

    async def stop_publisher(app: web.Application) -> None:
        await collector.publisher.stop()

    app.on_startup.append(start_publisher)
    app.on_cleanup.append(stop_publisher)
    return app


class AccessLog(AbstractAccessLogger):
    """One line per request without the query string (it may carry a write key)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %d %.1fms", request.remote, request.method, request.path, response.status,
                         time * 1000)


def run_collector(settings: Settings, config: CollectorConfig) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code."""
    if not config.write_keys:
        log.warning("collector: no write keys configured (LEADFLOW_COLLECTOR_WRITE_KEYS): every event request gets 401")
    app = build_app(settings, config)

    def announce(*args: object) -> None:
        log.info("collector: listening on http://%s:%d (Kafka %s, topics %s)", config.bind, config.port,
                 settings.bootstrap, ", ".join(app[COLLECTOR].publisher.topics.inputs.values()))

    web.run_app(
        app,
        host=config.bind,
        port=config.port,
        shutdown_timeout=config.publish_timeout + 5,
        access_log=logging.getLogger("leadflow.collector.access") if config.access_log else None,
        access_log_class=AccessLog,
        print=announce,
    )
    return 0
