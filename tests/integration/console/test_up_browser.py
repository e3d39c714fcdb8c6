"""``leadflow up`` end to end in headless Chromium.

A local site with the tracker snippet ``leadflow up`` printed sends a visitor's demo request; the
worker makes the contact hot; the alert appears on the console's Hot leads page, open before the
visit, without a reload; clicking "answered" records ``lead_contacted`` through the collector's
sales source (when the sales family exists) and the contact's history shows it. Screenshots of
every view are decoded by the browser itself and must not be blank. Stopping with Ctrl-C, and
killing the parent with SIGKILL, leave no process behind.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pipeline.console.answer import sales_family_exists
from tests.integration.collector.browser import Page, chromium

from .stack import UpProcess, alive, leadflow_up

pytestmark = pytest.mark.integration

SHOTS = Path(os.environ.get("LEADFLOW_SCREENSHOTS", "/tmp/leadflow-console-screenshots"))

SITE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Growth workshop</title>
{snippet}
</head><body>
<h1>Growth workshop</h1>
<form id="demo-form" action="/thanks" method="get">
  <input id="email" name="email" type="email"><button id="send" type="submit">Request a demo</button>
</form>
<script>
  document.getElementById("demo-form").addEventListener("submit", function () {{
    leadflow.identify("contact:" + document.getElementById("email").value);
    leadflow.track("demo_request");
  }});
</script>
</body></html>
"""

BLANK_CHECK = """
(async (data) => {
  const img = new Image(); img.src = "data:image/png;base64," + data; await img.decode();
  const canvas = document.createElement("canvas"); canvas.width = img.width; canvas.height = img.height;
  const ctx = canvas.getContext("2d"); ctx.drawImage(img, 0, 0);
  const pixels = ctx.getImageData(0, 0, img.width, img.height).data;
  const counts = new Map(); let n = 0;
  for (let i = 0; i < pixels.length; i += 16) {
    const key = (pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2];
    counts.set(key, (counts.get(key) || 0) + 1); n++;
  }
  const top = Math.max(...counts.values());
  return {width: img.width, height: img.height, colors: counts.size, other: 1 - top / n};
})
"""


async def serve_site(sock: socket.socket, snippet: str) -> web.AppRunner:
    body = SITE.format(snippet=snippet)

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="text/html")

    app = web.Application()
    app.router.add_get("/landing", page)
    app.router.add_get("/thanks", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


async def second_page(profile: Path, session: aiohttp.ClientSession, url: str) -> Page:
    """Another tab of the same browser (DevTools HTTP endpoint ``/json/new``)."""
    port = int((profile / "DevToolsActivePort").read_text().split()[0])
    async with session.put(f"http://127.0.0.1:{port}/json/new?{url}") as response:
        target = await response.json()
    page = Page(await session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0))
    for domain in ("Page.enable", "Runtime.enable"):
        await page.send(domain)
    return page


async def shot(page: Page, name: str) -> dict[str, Any]:
    """Screenshot ``page`` to SHOTS/name.png; its pixels as the page itself decodes them."""
    await page.send("Page.bringToFront")
    await asyncio.sleep(0.5)  # (a page's own timers may be throttled while it was in the background)
    data = (await page.send("Page.captureScreenshot", format="png"))["data"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / f"{name}.png").write_bytes(base64.b64decode(data))
    figures: dict[str, Any] = await page.evaluate(f"({BLANK_CHECK})({json.dumps(data)})")
    assert figures["colors"] > 8 and figures["other"] > 0.02, (name, figures)
    return figures


async def wait_for(page: Page, expression: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await page.evaluate(expression)
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"not true within {timeout}s: {expression}")


def contact_json(up: UpProcess, workdir: Path, contact_id: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "contact", contact_id, "--json", "--db",
         f"sqlite:///{workdir / 'up.db'}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_leadflow_up_tracker_to_hot_lead_to_answer_in_chromium(tmp_path: Path) -> None:
    listener = socket.socket()  # bound before `leadflow up` picks its own free ports
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    site = f"http://127.0.0.1:{listener.getsockname()[1]}"
    with leadflow_up(tmp_path, site) as up:
        print(f"\nleadflow up ready in {up.ready_seconds:.1f}s")
        children = up.descendants()
        assert len(children) >= 5, children  # broker, worker, sink, collector, console
        snippet = next(line.strip() for line in up.text().splitlines() if "tracker.js" in line)
        contact_id = f"contact:ana-{os.getpid()}@example.com"

        async def scenario() -> dict[str, Any]:
            runner = await serve_site(listener, snippet)
            profile = tmp_path / "profile"
            try:
                async with chromium(profile) as visitor, aiohttp.ClientSession() as session:
                    console = await second_page(profile, session, "about:blank")
                    await console.navigate(f"{up.console}/#hot")
                    await wait_for(console, "document.getElementById('live').textContent === 'live'", 20)
                    await console.evaluate("window.__noReload = true")
                    await visitor.navigate(f"{site}/landing?utm_source=newsletter&utm_medium=email")
                    await visitor.click("#email")
                    await visitor.type(contact_id.removeprefix("contact:"))
                    await visitor.click("#send")
                    sent = time.monotonic()
                    row = ("[...document.querySelectorAll('#hot-rows tr')]"
                           f".find(r => r.textContent.includes({contact_id!r}))")
                    await wait_for(console, f"!!({row})", 30)
                    seen_after = time.monotonic() - sent
                    assert await console.evaluate("window.__noReload === true")  # live, not reloaded
                    text = await console.evaluate(f"({row}).textContent")
                    assert "demo_request" in text and "website" in text and "newsletter" in text, text
                    figures = {"hot": await shot(console, "hot-leads")}
                    answered = None
                    if sales_family_exists():
                        await console.click("tr[data-alert] button.answer")
                        try:
                            # recorded: the button says so, or the alert already left the queue (answered)
                            await wait_for(console, "[...document.querySelectorAll('button.answer')]"
                                                    f".some(b => b.textContent.includes('✓')) || !({row})", 20)
                        except AssertionError as exc:
                            error = await console.evaluate(
                                "JSON.stringify([document.getElementById('hot-error').textContent,"
                                " [...document.querySelectorAll('button.answer')].map(b => [b.textContent,"
                                " JSON.stringify(b.getBoundingClientRect())]), innerWidth, innerHeight,"
                                " document.visibilityState])")
                            raise AssertionError(f"the answer was not recorded: {error}") from exc
                        answered = True
                    await console.evaluate(f"location.hash = {'#contact/' + contact_id!r}")
                    await wait_for(console, "document.querySelectorAll('.timeline li').length > 0", 20)
                    figures["contact"] = await shot(console, "contact")
                    await console.evaluate("location.hash = '#funnel'")
                    await wait_for(console, "document.getElementById('funnel-frame').contentDocument?.body?.innerText"
                                            "?.includes('lead')", 20)
                    figures["funnel"] = await shot(console, "funnel")
                    await console.evaluate("location.hash = '#pipeline'")
                    await wait_for(console, "document.getElementById('processes').children.length >= 3", 20)
                    await wait_for(console, "Number(document.getElementById('dead-total').textContent) >= 0", 5)
                    figures["pipeline"] = await shot(console, "pipeline")
                    await console.close()
                    return {"seconds": seen_after, "figures": figures, "answered": answered}
            finally:
                await runner.cleanup()

        outcome = asyncio.run(scenario())
        print(f"hot lead on the page {outcome['seconds']:.1f}s after the click; screenshots in {SHOTS}: "
              f"{outcome['figures']}")
        assert outcome["seconds"] < 15
        if outcome["answered"]:
            deadline = time.monotonic() + 30
            while True:
                history = contact_json(up, tmp_path, contact_id)
                alerts = [e for e in history["timeline"] if e["entry"] == "alert" and e.get("type") == "became_hot"]
                # the worker answered the alert (speed to lead), and the sink stored it
                answered = [a for a in alerts if a.get("answered_at") or a.get("acknowledged_at")]
                answered += [e for e in history["timeline"] if e.get("type") == "alert_answered"]
                if answered:
                    break
                assert time.monotonic() < deadline, history
                time.sleep(1)
        up.process.send_signal(signal.SIGINT)
        assert up.process.wait(60) == 0, up.text()
    deadline = time.monotonic() + 10
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(children), f"left behind: {alive(children)}"


def test_sigkill_of_leadflow_up_leaves_no_process_behind(tmp_path: Path) -> None:
    with leadflow_up(tmp_path, "http://127.0.0.1:9") as up:
        children = up.descendants()
        assert len(children) >= 5, children
        up.process.send_signal(signal.SIGKILL)
        up.process.wait(10)
        deadline = time.monotonic() + 15
        while alive(children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(children), f"left behind after SIGKILL of the parent: {alive(children)}"
