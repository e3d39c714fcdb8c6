"""The collector's HTTP endpoints (aiohttp): events in, answers with per-event results.

``POST /v1/events/{source}`` checks, in this order (the first failure is the answer):
404 unknown source → 403 browser origin not in the allow-list → 401 missing or wrong write key →
429 abuse limit (client address, then write key: :mod:`pipeline.collector.ratelimit`) → 415 content
type → 413 body over 1 MiB (announced, or counted while reading) → 503 too many
requests in flight → 400 unreadable body → per-event validation → publish and wait for the
broker's acknowledgement → **202** (at least one event accepted) or 400 (none valid), or 503 with
``Retry-After`` if the broker did not acknowledge. Also ``OPTIONS`` (CORS preflight),
``GET /v1/tracker.js``, ``/metrics``, ``/healthz`` and ``/readyz`` (:mod:`pipeline.ops.web`).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError

from pipeline.collector.client_ip import client_address, shown_address
from pipeline.collector.config import MAX_BODY_BYTES, CollectorConfig
from pipeline.collector.intake import MEDIA_TYPES, BodyError, Intake, split_body, take_events
from pipeline.collector.metrics import (
    EVENTS_ACCEPTED,
    EVENTS_REJECTED,
    EVENTS_UNAVAILABLE,
    INFLIGHT,
    RATE_LIMITED,
    REQUEST_EVENTS,
    REQUESTS,
)
from pipeline.collector.publisher import BrokerUnavailable, Publisher
from pipeline.collector.ratelimit import TokenBuckets, retry_after
from pipeline.config.settings import Settings
from pipeline.state_machine import SOURCES

EVENTS_ROUTE = "/v1/events/{source}"
_encode = msgspec.json.encode
_READ_CHUNK = 65_536
_CORS_ALLOW_HEADERS = "Authorization, Content-Type"
_PREFLIGHT_MAX_AGE = "7200"


class Collector:
    """The state the handlers share: configuration, the publisher, requests in flight."""

    def __init__(self, settings: Settings, config: CollectorConfig, publisher: Publisher | None = None) -> None:
        self.settings = settings
        self.config = config
        self.publisher = publisher if publisher is not None else Publisher(settings, config)
        self.inflight = 0
        self._keys = {source: tuple(key.encode() for key in keys) for source, keys in config.write_keys.items()}
        self._key_buckets = TokenBuckets(config.key_limit) if config.key_limit else None
        self._ip_buckets = TokenBuckets(config.ip_limit) if config.ip_limit else None

    # -- checks ------------------------------------------------------------------------------

    def cors_headers(self, request: web.BaseRequest) -> dict[str, str] | None:
        """CORS answer headers; ``{}`` without an ``Origin`` (not a browser), ``None`` when the
        origin is not in the allow-list."""
        origin = request.headers.get("Origin")
        if origin is None:
            return {}
        if origin.lower() not in self.config.cors_origins:
            return None
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin", "Access-Control-Expose-Headers": "Retry-After"}

    def authorized(self, source: str, request: web.BaseRequest) -> bool:
        """Whether the request carries one of ``source``'s write keys (constant-time comparison):
        ``Authorization: Bearer <key>``, or ``?write_key=<key>`` (``sendBeacon`` sets no headers)."""
        presented = _presented_key(request)
        if not presented:
            return False
        given = presented.encode("utf-8", "surrogateescape")
        matched = False
        for key in self._keys.get(source, ()):
            matched |= hmac.compare_digest(given, key)
        return matched

    def rate_limited(self, source: str, request: web.BaseRequest, cors: dict[str, str]) -> web.Response | None:
        """``429`` with ``Retry-After`` when the client address's or the write key's bucket is
        empty (sources in ``LEADFLOW_COLLECTOR_RATE_LIMITED_SOURCES`` only); else ``None``."""
        if source not in self.config.limited_sources:
            return None
        if self._ip_buckets is not None:
            address = client_address(request.remote, request.headers.get("X-Forwarded-For"),
                                     self.config.trusted_proxies) or "unknown"
            wait = self._ip_buckets.take(address)
            if wait:
                RATE_LIMITED.labels(source, "client_address").inc()
                return _too_many(f"too many requests from this address (limit {self.config.ip_limit})", wait, cors)
        if self._key_buckets is not None:
            wait = self._key_buckets.take(f"{source}:{_presented_key(request)}")
            if wait:
                RATE_LIMITED.labels(source, "write_key").inc()
                return _too_many(f"too many requests with this write key (limit {self.config.key_limit})", wait,
                                 cors)
        return None

    def client_ip(self, request: web.BaseRequest) -> str | None:
        address = client_address(request.remote, request.headers.get("X-Forwarded-For"), self.config.trusted_proxies)
        return shown_address(address, self.config.ip_mode)

    # -- handlers ----------------------------------------------------------------------------

    async def post_events(self, request: web.Request) -> web.StreamResponse:
        source = request.match_info["source"]
        if source not in SOURCES:
            return error(404, "unknown_source", f"no source {source!r}; use one of {', '.join(SOURCES)}")
        cors = self.cors_headers(request)
        if cors is None:
            return error(403, "origin_not_allowed", f"origin {request.headers['Origin']!r} is not allowed to send "
                         "events (LEADFLOW_COLLECTOR_CORS_ORIGINS)")
        if not self.authorized(source, request):
            return error(401, "unauthorized", f"missing or wrong write key for {source}: send "
                         "'Authorization: Bearer <key>' or ?write_key=<key>",
                         {**cors, "WWW-Authenticate": 'Bearer realm="leadflow"'})
        limited = self.rate_limited(source, request, cors)
        if limited is not None:
            return limited
        media_type = request.content_type
        charset = (request.charset or "utf-8").lower()
        if media_type not in MEDIA_TYPES or charset not in ("utf-8", "utf8"):
            return error(415, "unsupported_media_type", f"content type {request.headers.get('Content-Type')!r}: "
                         "send application/json, application/x-ndjson or text/plain, in UTF-8", cors)
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            return _too_large(f"{length} bytes announced", cors)
        if self.inflight >= self.config.max_inflight:
            return unavailable(f"{self.inflight} requests in flight; try again shortly", self.config.retry_after, cors)
        self.inflight += 1
        INFLIGHT.inc()
        try:
            return await self._take(request, source, media_type, cors)
        finally:
            self.inflight -= 1
            INFLIGHT.dec()

    async def _take(self, request: web.Request, source: str, media_type: str, cors: dict[str, str]) -> web.Response:
        try:
            body = await read_limited(request, MAX_BODY_BYTES)
        except (ConnectionError, ClientPayloadError, HttpProcessingError):
            # the client went away (or broke the framing) before the body was complete: nothing is taken
            response = error(400, "incomplete_body", "the connection ended before the whole body arrived", cors)
            response.force_close()
            return response
        if body is None:
            return _too_large("more than that was sent", cors)
        received_at = time.time_ns() // 1000
        try:
            parsed = split_body(body, media_type)
        except BodyError as exc:
            response = error(exc.status, exc.error_code, exc.detail, cors)
            if exc.status == 413:
                response.force_close()
            return response
        REQUEST_EVENTS.observe(len(parsed.elements))
        intake = take_events(parsed, source, received_at, self.client_ip(request))
        _count_rejected(source, intake)
        if intake.records:
            try:
                await self.publisher.publish(source, intake.records)
            except BrokerUnavailable as exc:
                EVENTS_UNAVAILABLE.labels(source).inc(len(intake.records))
                return unavailable(f"events not accepted: {exc}", self.config.retry_after, cors)
            EVENTS_ACCEPTED.labels(source).inc(len(intake.records))
        results: dict[str, Any] = {"accepted": intake.event_ids, "rejected": [r.as_json() for r in intake.rejected]}
        if intake.records:
            return json_response(202, results, cors)
        if parsed.single:
            only = intake.rejected[0]
            return json_response(400, {"error_code": only.error_code, "detail": only.detail, **results}, cors)
        detail = f"none of the {len(intake.rejected)} events is valid; see rejected"
        return json_response(400, {"error_code": "invalid_events", "detail": detail, **results}, cors)

    async def preflight(self, request: web.Request) -> web.StreamResponse:
        """The CORS preflight of ``POST /v1/events/{source}``."""
        cors = self.cors_headers(request)
        if not cors:
            return error(403, "origin_not_allowed", "preflight from an origin that is not allowed (or without one)")
        if request.headers.get("Access-Control-Request-Method", "POST").upper() != "POST":
            return error(403, "method_not_allowed", "only POST may be sent to this endpoint", cors)
        headers = {
            **cors,
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": _CORS_ALLOW_HEADERS,
            "Access-Control-Max-Age": _PREFLIGHT_MAX_AGE,
        }
        return web.Response(status=204, headers=headers)


# -- helpers ---------------------------------------------------------------------------------


async def read_limited(request: web.BaseRequest, limit: int) -> bytes | None:
    """The request body, or ``None`` as soon as more than ``limit`` bytes arrived (never more
    than ``limit`` plus one chunk is held in memory)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=_encode(data), content_type="application/json", headers=headers)


def error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(status, {"error_code": code, "detail": detail}, headers)


def unavailable(detail: str, retry_after: int, headers: dict[str, str] | None = None) -> web.Response:
    data = {"error_code": "broker_unavailable", "detail": detail, "retry_after": retry_after}
    return json_response(503, data, {**(headers or {}), "Retry-After": str(retry_after)})


def _presented_key(request: web.BaseRequest) -> str:
    """The write key a request presents: ``Authorization: Bearer <key>`` or ``?write_key=``."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else request.query.get("write_key", "")


def _too_many(detail: str, wait: float, cors: dict[str, str]) -> web.Response:
    return error(429, "rate_limited", detail, {**cors, "Retry-After": str(retry_after(wait))})


def _too_large(what: str, cors: dict[str, str]) -> web.Response:
    response = error(413, "too_large", f"the body is limited to {MAX_BODY_BYTES} bytes; {what}", cors)
    response.force_close()  # the rest of the body is not read: the connection cannot be reused
    return response


def _count_rejected(source: str, intake: Intake) -> None:
    if not intake.rejected:
        return
    by_code: dict[str, int] = {}
    for rejected in intake.rejected:
        by_code[rejected.error_code] = by_code.get(rejected.error_code, 0) + 1
    for code, count in by_code.items():
        EVENTS_REJECTED.labels(source, code).inc(count)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``leadflow_collector_requests_total{route, status}`` for every answer, errors included."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        REQUESTS.labels(route, str(exc.status)).inc()
        raise
    except Exception:
        REQUESTS.labels(route, "500").inc()
        raise
    REQUESTS.labels(route, str(response.status)).inc()
    return response
