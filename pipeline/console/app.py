"""The console's aiohttp application: pages, JSON reads, the live feed and the one action.

Reads go through the history store's port (:func:`~pipeline.storage.open_history_store`), run in
a thread so a slow database never blocks the live feed. Two background tasks refresh what every
open page shares -- the hot-lead queue (from the database, every ``refresh_seconds``) and the
pipeline figures (scraped from the processes) -- and ``GET /api/stream`` pushes them as
server-sent events (``hot`` when the queue changed, ``pipeline`` every tick). Dead-letter examples
come from the ``events.deadletter`` topic when a broker is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from pipeline.config.settings import Settings
from pipeline.config.topics import TopicNames
from pipeline.console.access import access_middleware
from pipeline.console.answer import CHANNELS, AnswerError, contacted_event, record_answer, sales_family_exists
from pipeline.console.config import ConsoleConfig
from pipeline.console.health import HealthSampler
from pipeline.ops.web import add_service_routes
from pipeline.state_machine import resolve_model
from pipeline.storage import HistoryStore, StorageError, StoredAlert, open_history_store
from pipeline.storage.reports.html import render_html
from pipeline.storage.reports.text import contact_as_dict

STATIC = Path(__file__).with_name("static")
EXAMPLES_PER_CODE = 5
_HEARTBEAT_SECONDS = 15.0


def hot_entry(stored: StoredAlert) -> dict[str, Any]:
    """One open alert as the Hot leads page shows it."""
    a = stored.alert
    return {
        "alert_id": a.alert_id,
        "contact_id": a.contact_id,
        "stage": a.stage,
        "score": round(a.score, 1),
        "occurred_at": a.occurred_at,
        "respond_by": a.respond_by,
        "reasons": [{"event_type": r.event_type, "points": r.points} for r in a.reasons],
        "first_touch": {
            "source": a.first_touch.source,
            "utm_source": a.first_touch.utm_source,
            "utm_medium": a.first_touch.utm_medium,
            "utm_campaign": a.first_touch.utm_campaign,
        },
    }


class Console:
    """What the handlers share: the store, the latest queue and figures, and who is listening."""

    def __init__(self, config: ConsoleConfig, settings: Settings | None) -> None:
        self.config = config
        self.settings = settings
        self.store: HistoryStore | None = None
        self.hot: list[dict[str, Any]] = []
        self.hot_error: str | None = None
        self.hot_version = 0
        self.sampler = HealthSampler(config.metrics)
        self.changed = asyncio.Event()
        self.dead_examples: dict[str, deque[dict[str, Any]]] = {}
        self._tail_stop = threading.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.session: aiohttp.ClientSession | None = None
        self.can_answer = sales_family_exists() and bool(config.collector_url and config.sales_key)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, _app: web.Application) -> None:
        self.session = aiohttp.ClientSession()
        self._tasks = [asyncio.create_task(self._refresh_hot()), asyncio.create_task(self._refresh_health())]
        if self.settings is not None:
            threading.Thread(target=self._tail_deadletters, daemon=True, name="console-deadletters").start()

    async def stop(self, _app: web.Application) -> None:
        self._tail_stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.session is not None:
            await self.session.close()
        if self.store is not None:
            self.store.close()

    def _store(self) -> HistoryStore:
        if self.store is None:
            self.store = open_history_store(self.config.db_url)
        return self.store

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def _refresh_hot(self) -> None:
        while True:
            try:
                found = await asyncio.to_thread(lambda: [hot_entry(a) for a in self._store().open_alerts()])
                error = None
            except StorageError as exc:
                found, error = self.hot, str(exc)
            if found != self.hot or error != self.hot_error:
                self.hot, self.hot_error = found, error
                self.hot_version += 1
                self._notify()
            await asyncio.sleep(self.config.refresh_seconds)

    async def _refresh_health(self) -> None:
        assert self.session is not None
        while True:
            samples = await self.sampler.scrape(self.session)
            self.sampler.update(samples)
            self._notify()
            await asyncio.sleep(1.0)

    def _tail_deadletters(self) -> None:
        from pipeline.kafka.tools import tail

        assert self.settings is not None

        def keep(value: bytes) -> None:
            with contextlib.suppress(orjson.JSONDecodeError, TypeError, AttributeError):
                record = orjson.loads(value)
                code = str(record.get("error_code", "unknown"))
                examples = self.dead_examples.setdefault(code, deque(maxlen=EXAMPLES_PER_CODE))
                examples.append({k: record.get(k) for k in ("error_code", "error_detail", "topic", "offset",
                                                             "event_id", "failed_at")})

        while not self._tail_stop.is_set():
            try:
                tail(TopicNames.of(self.settings).deadletter, self.settings, True, keep,
                     keep_going=lambda: not self._tail_stop.is_set())
            except Exception:  # the broker is away or the topic not there yet: try again
                self._tail_stop.wait(2.0)

    # -- documents ---------------------------------------------------------------------------------

    def hot_document(self) -> dict[str, Any]:
        return {"alerts": self.hot, "error": self.hot_error, "can_answer": self.can_answer,
                "server_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}

    def pipeline_document(self) -> dict[str, Any]:
        document = dict(self.sampler.last)
        document["dead_letter_examples"] = {code: list(ex) for code, ex in self.dead_examples.items()}
        return document

    # -- handlers ----------------------------------------------------------------------------------

    async def index(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def info(self, _request: web.Request) -> web.Response:
        return web.json_response({"can_answer": self.can_answer, "sales_family": sales_family_exists(),
                                  "metrics": sorted(self.config.metrics), "segments": False})

    async def hot_leads(self, _request: web.Request) -> web.Response:
        return web.json_response(self.hot_document())

    async def pipeline(self, _request: web.Request) -> web.Response:
        return web.json_response(self.pipeline_document())

    async def contact(self, request: web.Request) -> web.Response:
        contact_id = request.match_info["contact_id"]
        try:
            history = await asyncio.to_thread(self._store().contact_timeline, contact_id)
        except StorageError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        if history is None:
            return web.json_response({"error": f"no contact {contact_id!r} in the history"}, status=404)
        return web.json_response(contact_as_dict(history))

    async def funnel(self, request: web.Request) -> web.Response:
        from pipeline.storage import GROUP_BY

        by = request.query.get("by", "source")
        if by not in GROUP_BY:
            return web.json_response({"error": f"by: choose one of {', '.join(GROUP_BY)}"}, status=400)
        try:
            since = _bound(request.query.get("since"))
            until = _bound(request.query.get("until"))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        model = resolve_model(self.config.model)
        try:
            report = await asyncio.to_thread(
                lambda: self._store().funnel(model, by=by, since=since, until=until)
            )
        except StorageError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        only = request.query.get("group", "").strip()
        if only:  # one first-touch group (a source, a campaign...): its own funnel, which is then the total
            kept = tuple(g for g in report.groups if g.group == only)
            if not kept:
                return web.Response(text=f"<p>No contacts with {by} = {html.escape(only)} in this period.</p>",
                                    content_type="text/html")
            report = dataclasses.replace(report, groups=kept, total=kept[0])
        return web.Response(text=render_html(report), content_type="text/html")

    async def answer(self, request: web.Request) -> web.Response:
        if not self.can_answer or self.session is None:
            return web.json_response({"error": "the sales event family is not installed: no answer action"},
                                     status=404)
        try:
            body = await request.json()
            alert_id, contact_id = str(body["alert_id"]), str(body["contact_id"])
            channel = str(body.get("channel", "call"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return web.json_response({"error": "send {\"alert_id\": ..., \"contact_id\": ...}"}, status=400)
        if channel not in CHANNELS:
            return web.json_response({"error": f"channel: choose one of {', '.join(CHANNELS)}"}, status=400)
        if not any(a["alert_id"] == alert_id and a["contact_id"] == contact_id for a in self.hot):
            return web.json_response({"error": f"alert {alert_id} is not an open alert of {contact_id}"}, status=404)
        event = contacted_event(contact_id, alert_id, datetime.now(UTC), channel)
        assert self.config.collector_url is not None and self.config.sales_key is not None
        try:
            result = await record_answer(self.session, self.config.collector_url, self.config.sales_key, event)
        except (AnswerError, aiohttp.ClientError, TimeoutError) as exc:
            return web.json_response({"error": str(exc)}, status=502)
        return web.json_response({"recorded": event, "collector": result}, status=202)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        sent_hot = -1
        try:
            while True:
                if sent_hot != self.hot_version:
                    sent_hot = self.hot_version
                    await response.write(_event("hot", self.hot_document()))
                await response.write(_event("pipeline", self.pipeline_document()))
                changed = self.changed
                try:
                    await asyncio.wait_for(changed.wait(), _HEARTBEAT_SECONDS)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response


def _event(name: str, document: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(document) + b"\n\n"


def _bound(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def build_app(config: ConsoleConfig, settings: Settings | None = None) -> web.Application:
    """The console application (:meth:`ConsoleConfig.check` must have passed)."""
    console = Console(config, settings)
    app = web.Application(middlewares=[access_middleware(config)])
    app.on_startup.append(console.start)
    app.on_cleanup.append(console.stop)
    app.router.add_get("/", console.index)
    app.router.add_static("/static/", STATIC)
    app.router.add_get("/api/info", console.info)
    app.router.add_get("/api/hot", console.hot_leads)
    app.router.add_get("/api/pipeline", console.pipeline)
    app.router.add_get("/api/contact/{contact_id}", console.contact)
    app.router.add_get("/api/stream", console.stream)
    app.router.add_get("/funnel", console.funnel)
    app.router.add_post("/api/answer", console.answer)
    add_service_routes(app, lambda: {"ready": True})
    app["console"] = console
    return app


def run_console(config: ConsoleConfig, settings: Settings | None = None) -> int:
    """Serve the console until SIGINT or SIGTERM; the exit code."""
    config.check()
    print(f"console on http://{config.bind}:{config.port}/ (history {config.db_url})", flush=True)
    web.run_app(build_app(config, settings), host=config.bind, port=config.port, print=None,
                access_log=None, shutdown_timeout=2.0)
    return 0
