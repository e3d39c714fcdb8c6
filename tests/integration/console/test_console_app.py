"""The console's reads over a stored history (SQLite): the hot-lead queue, a contact, the funnel
filtered to one group, and the action refused for an alert that is not open."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.console.app import build_app
from pipeline.console.config import ConsoleConfig
from pipeline.storage import open_history_store, upgrade_database
from tests.integration.storage.conftest import fixture_history

pytestmark = pytest.mark.integration


def run(db_url: str, scenario: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        app = build_app(ConsoleConfig(db_url=db_url, refresh_seconds=0.1))
        async with TestClient(TestServer(app)) as client:
            await scenario(client)

    asyncio.run(main())


def test_reads_over_a_stored_history(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'console.db'}"
    upgrade_database(url)
    transitions, alerts, contacts = fixture_history()
    with open_history_store(url) as store:
        store.write_batch(transitions, alerts, contacts)
        expected = [a.alert.alert_id for a in store.open_alerts()]
    contact_id = alerts[0].contact_id

    async def scenario(client: TestClient[Any, Any]) -> None:
        for _ in range(50):
            hot = await (await client.get("/api/hot")).json()
            if hot["alerts"]:
                break
            await asyncio.sleep(0.1)
        assert [a["alert_id"] for a in hot["alerts"]] == expected
        assert hot["alerts"][0]["reasons"] and "source" in hot["alerts"][0]["first_touch"]
        contact = await client.get(f"/api/contact/{contact_id}")
        assert contact.status == 200 and (await contact.json())["contact_id"] == contact_id
        assert (await client.get("/api/contact/nobody")).status == 404
        page = await client.get("/funnel")
        assert page.status == 200 and "<svg" in await page.text()
        group = alerts[0].first_touch.source or ""
        only = await (await client.get(f"/funnel?group={group}")).text()
        assert group in only
        assert "No contacts" in await (await client.get("/funnel?group=no-such-source")).text()
        assert (await client.get("/funnel?by=colour")).status == 400
        own = str(client.make_url("/")).rstrip("/")
        refused = await client.post("/api/answer", json={"alert_id": "x", "contact_id": "y"}, headers={"Origin": own})
        assert refused.status == 404  # not an open alert (or no sales key): nothing is sent
        index = await client.get("/")
        assert index.status == 200 and "Hot leads" in await index.text()

    run(url, scenario)
