"""GET /api/events: the rollup as server-sent events, again whenever it changes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from hub.apps import AppStore
from hub.home import open_store
from tests.api.fleet import run_client

Client = TestClient[Any, Any]


async def next_event(response: Any) -> tuple[str, dict[str, Any]]:
    event, data = "", ""
    while True:
        line = (await asyncio.wait_for(response.content.readline(), timeout=30)).decode()
        if line.startswith(":"):
            continue  # keep-alive comment
        if line.startswith("event: "):
            event = line[7:].strip()
        elif line.startswith("data: "):
            data += line[6:].strip()
        elif line == "\n" and event:
            return event, json.loads(data)


def test_a_change_in_the_store_is_pushed_to_the_page(make_app: Any, home: Path) -> None:
    async def scenario(client: Client) -> tuple[dict[str, Any], dict[str, Any]]:
        response = await client.get("/api/events")
        assert response.headers["Content-Type"].startswith("text/event-stream")
        kind, first = await next_event(response)
        assert kind == "status"
        store = open_store(home)
        try:
            await asyncio.to_thread(
                AppStore(store).set_status,
                "web-west",
                sync_status="Synced",
                health_status="Healthy",
            )
        finally:
            store.close()
        kind, second = await next_event(response)
        assert kind == "status"
        response.close()
        return first, second

    first, second = run_client(make_app(), scenario)
    assert first["schemaVersion"] == 1
    assert first["totals"]["applications"]["health"]["Degraded"] == 1
    assert second["totals"]["applications"]["health"]["Degraded"] == 0


def test_shutting_down_ends_open_streams_at_once(make_app: Any) -> None:
    async def scenario(client: Client) -> bytes:
        response = await client.get("/api/events")
        await next_event(response)
        await client.app.shutdown()  # what AppRunner.cleanup runs first
        # the stream ends without waiting for the server's graceful-shutdown timeout
        return await asyncio.wait_for(response.content.read(), timeout=10)

    assert run_client(make_app(), scenario) == b""
