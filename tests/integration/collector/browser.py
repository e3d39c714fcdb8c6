"""Headless Chromium driven over the Chrome DevTools Protocol (aiohttp's websocket client).

Just enough CDP for the tracker test: open a page, wait for its load event, evaluate
JavaScript, type, and click with real mouse events. No browser download: the Debian
``chromium`` package.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from pipeline.streaming.embedded_broker import die_with_parent

CHROMIUM = os.environ.get("LEADFLOW_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-port=0",
]


class CdpError(RuntimeError):
    """The browser answered a command with an error, or did not do what was asked in time."""


class Page:
    """One page target: commands and events over its websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: list[tuple[str, Callable[[dict[str, Any]], bool], asyncio.Future[dict[str, Any]]]] = []
        self.console: list[str] = []
        self.requests: list[dict[str, Any]] = []  # Network.requestWillBeSent: url, method, type
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = message.json()
            if "id" in data:
                future = self._replies.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
                continue
            method, params = data.get("method"), data.get("params", {})
            if method == "Network.requestWillBeSent":
                request = params["request"]
                self.requests.append({"url": request["url"], "method": request["method"], "type": params.get("type")})
            if method == "Runtime.consoleAPICalled":
                self.console.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            for waiter in list(self._waiters):
                name, predicate, future = waiter
                if name == method and not future.done() and predicate(params):
                    future.set_result(params)
                    self._waiters.remove(waiter)

    async def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[message_id] = future
        await self.ws.send_json({"id": message_id, "method": method, "params": params})
        reply = await asyncio.wait_for(future, timeout)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    def expect(self, method: str, predicate: Callable[[dict[str, Any]], bool] = lambda _: True
               ) -> asyncio.Future[dict[str, Any]]:
        """A future for the next ``method`` event matching ``predicate`` (register before acting)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((method, predicate, future))
        return future

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def navigate(self, url: str, timeout: float = 30.0) -> None:
        loaded = self.expect("Page.loadEventFired")
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(loaded, timeout)

    async def click(self, selector: str) -> None:
        """A real left click (mouse pressed and released) at the centre of ``selector``."""
        box = await self.evaluate(
            f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    async def type(self, text: str) -> None:
        await self.send("Input.insertText", text=text)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        await self.ws.close()


@contextlib.asynccontextmanager
async def chromium(profile_dir: Path, timeout: float = 30.0) -> AsyncIterator[Page]:
    """A headless Chromium with a fresh profile; yields its first page (Page and Runtime enabled)."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        raise CdpError(f"no Chromium at {CHROMIUM}: install the Debian package 'chromium' (or set LEADFLOW_CHROMIUM)")
    profile_dir.mkdir(parents=True, exist_ok=True)
    log = open(profile_dir.parent / "chromium.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent,
    )
    session = aiohttp.ClientSession()
    page: Page | None = None
    try:
        port_file = profile_dir / "DevToolsActivePort"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not port_file.exists() or not port_file.read_text().strip():
            if process.poll() is not None or loop.time() > deadline:
                raise CdpError(f"Chromium did not open its DevTools port; see {log.name}")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        targets: list[dict[str, Any]] = []
        while not targets:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = [t for t in await response.json() if t.get("type") == "page"]
            if not targets:
                await asyncio.sleep(0.05)
        ws = await session.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        for domain in ("Page.enable", "Runtime.enable", "Network.enable"):
            await page.send(domain)
        yield page
    finally:
        if page is not None:
            await page.close()
        await session.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        shutil.rmtree(profile_dir, ignore_errors=True)
