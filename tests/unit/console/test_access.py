"""Who may use the console: loopback without credentials, a token or basic auth elsewhere, and the
one state-changing request only from the console's own page."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pipeline.console.access import COOKIE, access_middleware
from pipeline.console.config import ConsoleConfig, ConsoleConfigError

TOKEN = "t0k3n-0123456789abcdef"


def run(config: ConsoleConfig, scenario: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        async def page(_request: web.Request) -> web.Response:
            return web.Response(text="ok")

        app = web.Application(middlewares=[access_middleware(config)])
        app.router.add_get("/", page)
        app.router.add_post("/api/answer", page)
        async with TestClient(TestServer(app)) as client:
            await scenario(client)

    asyncio.run(main())


def test_loopback_needs_no_credentials_and_anything_else_refuses_to_start_without() -> None:
    ConsoleConfig(db_url="memory://", bind="127.0.0.1").check()
    ConsoleConfig(db_url="memory://", bind="::1").check()
    with pytest.raises(ConsoleConfigError, match="LEADFLOW_CONSOLE_TOKEN"):
        ConsoleConfig(db_url="memory://", bind="0.0.0.0").check()
    with pytest.raises(ConsoleConfigError, match="shorter than 16"):
        ConsoleConfig(db_url="memory://", bind="0.0.0.0", token="short").check()
    with pytest.raises(ConsoleConfigError, match="both"):
        ConsoleConfig(db_url="memory://", bind="0.0.0.0", user="ana").check()
    ConsoleConfig(db_url="memory://", bind="0.0.0.0", token=TOKEN).check()
    ConsoleConfig(db_url="memory://", bind="10.0.0.5", user="ana", password="secret").check()


def test_a_token_by_header_cookie_or_once_in_the_url() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        assert (await client.get("/")).status == 401
        assert (await client.get("/", headers={"Authorization": "Bearer wrong"})).status == 401
        assert (await client.get("/", headers={"Authorization": f"Bearer {TOKEN}"})).status == 200
        redirect = await client.get(f"/?token={TOKEN}&x=1", allow_redirects=False)
        assert redirect.status == 302 and "token" not in redirect.headers["Location"]
        assert "HttpOnly" in redirect.headers["Set-Cookie"] and "SameSite=Strict" in redirect.headers["Set-Cookie"]
        assert (await client.get("/", cookies={COOKIE: TOKEN})).status == 200

    run(ConsoleConfig(db_url="memory://", bind="0.0.0.0", token=TOKEN), scenario)


def test_basic_auth() -> None:
    good = base64.b64encode(b"ana:secret").decode()
    bad = base64.b64encode(b"ana:nope").decode()

    async def scenario(client: TestClient[Any, Any]) -> None:
        refused = await client.get("/")
        assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
        assert (await client.get("/", headers={"Authorization": f"Basic {bad}"})).status == 401
        assert (await client.get("/", headers={"Authorization": "Basic !!!"})).status == 401
        assert (await client.get("/", headers={"Authorization": f"Basic {good}"})).status == 200

    run(ConsoleConfig(db_url="memory://", bind="0.0.0.0", user="ana", password="secret"), scenario)


def test_the_action_only_from_the_consoles_own_page_and_as_json() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        own = str(client.make_url("/")).rstrip("/")
        assert (await client.post("/api/answer", json={})).status == 403  # no Origin: not a page of ours
        assert (await client.post("/api/answer", json={}, headers={"Origin": "http://evil.test"})).status == 403
        form_type = {"Origin": own, "Content-Type": "application/x-www-form-urlencoded"}
        form = await client.post("/api/answer", data="a=1", headers=form_type)
        assert form.status == 415
        assert (await client.post("/api/answer", json={}, headers={"Origin": own})).status == 200

    run(ConsoleConfig(db_url="memory://"), scenario)
