"""The browser tracker in a real browser: headless Chromium, a local site, a form, Kafka.

A small site on its own origin loads ``tracker.js`` from the collector (another origin, allowed
by CORS), a visitor arrives from a newsletter link (utm parameters), types an e-mail address and
clicks "Request a demo"; the form's submit navigates to a thank-you page. Everything the tracker
sent must be in the website input topic: the page views with url, referrer and utm fields, the
form submit sent by ``sendBeacon`` while the page was being left, one anonymous id from the
first-party cookie throughout, and the contact id from ``leadflow.identify`` from then on.
"""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from pipeline.config.topics import TopicNames
from pipeline.kafka.topics import ensure_topics
from pipeline.offline.replay import replay
from pipeline.state_machine import ContactState, builtin_model
from pipeline.streaming.embedded_broker import free_port
from tests.support.brokers import TestBroker

from .browser import chromium
from .conftest import collector_config, collector_settings
from .harness import WEBSITE_KEY, read_records, running_collector

pytestmark = pytest.mark.integration

LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>Workshop landing</title>
<script>
  var realBeacon = navigator.sendBeacon.bind(navigator);  // counted, then sent for real
  navigator.sendBeacon = function (url, data) {
    sessionStorage.setItem("beacons", String(Number(sessionStorage.getItem("beacons") || 0) + 1));
    return realBeacon(url, data);
  };
  window.leadflow = window.leadflow || [];
  leadflow.push(["track", "offer_claimed", {offer_id: "early-bird"}]);  // queued before the tracker loads
</script>
<script src="{collector}/v1/tracker.js" data-write-key="{key}" async></script>
</head><body>
<h1>Growth workshop</h1>
<form id="demo-form" action="/thanks" method="get">
  <input id="email" name="email" type="email" placeholder="you@example.com">
  <button id="send" type="submit">Request a demo</button>
</form>
<script>
  document.getElementById("demo-form").addEventListener("submit", function () {
    leadflow.identify("contact:" + document.getElementById("email").value);
    leadflow.track("form_submit", {form_id: "demo-form"});
    leadflow.track("demo_request");
  });
</script>
</body></html>
"""

THANKS = """<!doctype html>
<html><head><meta charset="utf-8"><title>Thank you</title>
<script src="{collector}/v1/tracker.js" data-write-key="{key}" async></script>
</head><body><p>We will call you within the hour.</p></body></html>
"""


async def serve_site(port: int, collector_origin: str) -> web.AppRunner:
    def page(template: str) -> Any:
        body = template.replace("{collector}", collector_origin).replace("{key}", WEBSITE_KEY)

        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=body, content_type="text/html")

        return handler

    app = web.Application()
    app.router.add_get("/landing", page(LANDING))
    app.router.add_get("/thanks", page(THANKS))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def visit(site: str, workdir: Path) -> dict[str, Any]:
    """The visitor's journey; returns what the browser itself saw (cookies, console)."""
    async with chromium(workdir / "profile") as page:
        await page.navigate(f"{site}/landing?utm_source=newsletter&utm_medium=email&utm_campaign=spring")
        assert await page.evaluate("typeof leadflow.track") == "function"
        anonymous_id = await page.evaluate("leadflow.anonymousId()")
        await page.click("#email")
        await page.type("ana@example.com")
        thanks_loaded = page.expect("Page.loadEventFired")
        await page.click("#send")
        await asyncio.wait_for(thanks_loaded, 30)
        assert (await page.evaluate("location.pathname")) == "/thanks"
        await page.evaluate("new Promise(r => setTimeout(r, 1500))")  # the thank-you page_view's batch timer
        cookies = (await page.send("Network.getCookies", urls=[site]))["cookies"]
        return {"anonymous_id": anonymous_id, "cookies": {c["name"]: c for c in cookies}, "console": page.console,
                "requests": page.requests, "beacons": await page.evaluate("sessionStorage.getItem('beacons')")}


def test_tracker_in_headless_chromium_sends_page_views_and_a_form_submit(
    broker: TestBroker, namespace: str, tmp_path: Path
) -> None:
    site_port = free_port()
    site = f"http://127.0.0.1:{site_port}"
    settings = collector_settings(broker, namespace)
    ensure_topics(settings)
    config = collector_config(cors_origins=frozenset({site}))
    with running_collector(settings, config, tmp_path / "collector.log") as collector:

        async def journey() -> dict[str, Any]:
            runner = await serve_site(site_port, collector.origin)
            try:
                return await visit(site, tmp_path)
            finally:
                await runner.cleanup()

        seen = asyncio.run(journey())
        topic = TopicNames.of(settings).inputs["website"]
        records = read_records(settings, topic, expect=5, timeout=30, quiet=1.0)
        metrics = collector.request("GET", "/metrics").body.decode()

    anonymous_id = seen["anonymous_id"]
    assert seen["cookies"]["lf_aid"]["value"] == anonymous_id  # first-party cookie on the site's origin
    assert seen["cookies"]["lf_cid"]["value"] == "contact%3Aana%40example.com"
    events = [value for _, value in records]
    assert sorted(e["event_type"] for e in events) == [
        "demo_request", "form_submit", "offer_claimed", "page_view", "page_view"]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["event_type"], []).append(event)
    assert len(by_type["page_view"]) == 2 and len(events) == 5, events
    landing, thanks = sorted(by_type["page_view"], key=lambda e: e["properties"]["path"])
    assert landing["properties"]["path"] == "/landing" and thanks["properties"]["path"] == "/thanks"
    assert landing["properties"]["url"].startswith(f"{site}/landing?utm_source=newsletter")
    assert {k: landing["properties"][k] for k in ("utm_source", "utm_medium", "utm_campaign", "title")} == {
        "utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring", "title": "Workshop landing"}
    assert "contact_id" not in landing  # not identified yet
    assert thanks["properties"]["referrer"] == landing["properties"]["url"]
    assert thanks["properties"]["url"] == f"{site}/thanks?email=ana%40example.com"
    assert by_type["form_submit"][0]["properties"] == {"form_id": "demo-form"}
    for event in events:
        assert event["anonymous_id"] == anonymous_id
        assert event["context"]["ip"] == "127.0.0.0"
        assert "received_at" in event["context"] and "Chrome" in event["context"]["user_agent"]
    identified = [by_type["form_submit"][0], by_type["demo_request"][0], thanks]
    assert all(e["contact_id"] == "contact:ana@example.com" for e in identified)
    keys = {value["event_id"]: key for key, value in records}
    assert keys[thanks["event_id"]] == b"contact:ana@example.com" and keys[landing["event_id"]] == anonymous_id.encode()
    # batching: fewer requests than events (the queued offer_claimed went with the first page_view)
    count = float(metrics.split("leadflow_collector_request_events_count ")[1].split()[0])
    total = float(metrics.split("leadflow_collector_request_events_sum ")[1].split()[0])
    assert total == 5 and count < total, (count, total)
    assert not [line for line in seen["console"] if "leadflow" in line], seen["console"]
    # how they travelled: navigator.sendBeacon while leaving the landing page, fetch(keepalive) otherwise
    assert int(seen["beacons"] or 0) >= 1
    sent = [r for r in seen["requests"] if "/v1/events/website" in r["url"] and r["method"] == "POST"]
    assert "Fetch" in {r["type"] for r in sent}, sent
    # What Leadflow makes of it (the engine as `leadflow replay` runs it): one person, whose first
    # touch is the landing page's campaign, and the anonymous visitor merged into them.
    lines = [orjson.dumps({"source": "website", **e}) for e in sorted(events, key=lambda e: e["occurred_at"])]
    states: dict[str, ContactState] = {}
    sink = io.BytesIO()
    stats = replay(iter(lines), builtin_model(), received_at=time.time_ns() // 1000, out=sink, alerts=io.BytesIO(),
                   deadletter=io.BytesIO(), keep_states=states)
    assert stats.applied == 5
    person = states["contact:ana@example.com"]
    assert person.merged_into is None and person.events_applied == 5
    assert person.first_touch == ("website", "newsletter", "email", "spring")
    assert states[f"anon:{anonymous_id}"].merged_into == "contact:ana@example.com"
    assert [s for s in states.values() if s.merged_into is None] == [person]
    identity = [orjson.loads(x) for x in sink.getvalue().splitlines() if b'"identity"' in x]
    assert [(t["from"], t["to"], t["reason"]) for t in identity] == [
        (f"anon:{anonymous_id}", "contact:ana@example.com", "merged_anonymous_history")]
