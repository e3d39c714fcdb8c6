"""Who may use the console: credentials when configured, and same-origin for the one action.

With a token, a request is let in with ``Authorization: Bearer TOKEN``, the ``leadflow_console``
cookie, or ``?token=TOKEN`` (which sets that cookie, HttpOnly, SameSite=Strict, and redirects to
the URL without it). With a user and password, HTTP basic auth. Without either (loopback only,
see :mod:`.config`) everyone on this machine is let in. Every ``POST`` must come from the
console's own pages: an ``Origin`` equal to the console's, and a JSON body.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from pipeline.console.config import ConsoleConfig

COOKIE = "leadflow_console"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def authorized(request: web.Request, config: ConsoleConfig) -> bool:
    """Whether ``request`` carries the configured credentials (always True without any)."""
    if config.token is None and config.user is None:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if config.token is not None:
        if scheme.lower() == "bearer" and _same(value.strip(), config.token):
            return True
        if _same(request.cookies.get(COOKIE, ""), config.token):
            return True
    if config.user is not None and config.password is not None and scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return _same(user, config.user) & _same(password, config.password)
    return False


def same_origin(request: web.Request) -> bool:
    """A state-changing request from the console's own page (not another site's form)."""
    origin = request.headers.get("Origin")
    return origin is not None and origin == f"{request.scheme}://{request.host}"


def access_middleware(config: ConsoleConfig) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = request.query.get("token")
        if config.token is not None and token is not None and _same(token, config.token):
            target = request.rel_url.with_query({k: v for k, v in request.query.items() if k != "token"})
            response = web.HTTPFound(str(target))
            response.set_cookie(COOKIE, config.token, httponly=True, samesite="Strict", path="/")
            raise response
        if not authorized(request, config):
            headers = {"WWW-Authenticate": 'Basic realm="leadflow console"'} if config.user else {}
            return web.json_response({"error": "unauthorized"}, status=401, headers=headers)
        if request.method not in ("GET", "HEAD"):
            if not same_origin(request):
                return web.json_response({"error": "forbidden: not from the console's own page"}, status=403)
            if request.content_type != "application/json":
                return web.json_response({"error": "send application/json"}, status=415)
        return await handler(request)

    return check
