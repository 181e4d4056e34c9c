"""The API against hostile clients: foreign Host headers (DNS rebinding), deeply nested
JSON, stalled uploads, and webhook floods (issue 11 items 10 and 13)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from hub.api.app import create_api_app
from hub.metrics import Metrics, store_app_counts
from hub.store import Store
from tests.api.conftest import TOKEN, static_differ
from tests.api.fleet import REPO, RecordingHub, run_client

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PUSH = json.dumps({"repository": {"clone_url": REPO}}).encode()
GITHUB = {"X-GitHub-Event": "push", "Content-Type": "application/json"}


@pytest.fixture
def make(home: Path, hub: RecordingHub) -> Iterator[Any]:
    stores: list[Store] = []

    def build(**options: Any) -> web.Application:
        store = Store.open(home / "hub.db")
        stores.append(store)
        return create_api_app(
            home=home,
            handle=hub,
            token=TOKEN,
            metrics=Metrics(app_counts=store_app_counts(store), connections=None),
            webhook_secret=None,
            differ=static_differ,
            **options,
        )

    yield build
    for s in stores:
        s.close()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# ---------------------------------------------------------------- Host header


def test_a_foreign_host_header_is_refused_before_any_data_is_read(make: Any) -> None:
    async def scenario(client: Client) -> list[tuple[int, Any]]:
        out = []
        for host in ("rebind.attacker.example:8080", "rebind.attacker.example", "10.1.2.3"):
            for path in ("/api/v1/applications/web-west/diff", "/api/v1/clusters", "/"):
                r = await client.get(path, headers={"Host": host})
                out.append((r.status, await r.text()))
        return out

    for status, text in run_client(make(), scenario):
        assert status == 421
        body = json.loads(text)
        assert "is not a name of this hub" in body["error"]["message"]
        assert "--allowed-host" in body["error"]["message"]
        assert "desired web-west" not in text


def test_loopback_names_and_allowed_hosts_are_served(make: Any) -> None:
    async def scenario(client: Client) -> list[int]:
        out = []
        for host in ("localhost:8080", "127.0.0.1", "[::1]:8080", "LOCALHOST.", "hub.internal"):
            r = await client.get("/api/v1/clusters", headers={"Host": host})
            out.append(r.status)
        return out

    assert run_client(make(allowed_hosts=("hub.internal",)), scenario) == [200] * 5
    assert run_client(make(), scenario) == [200, 200, 200, 200, 421]


@given(st.text(max_size=60))
def test_host_name_never_fails(header: str) -> None:
    from hub.api.app import host_name

    name = host_name(header)
    assert name == name.lower()
    assert not name.endswith(".")


# ---------------------------------------------------------------- bodies


def test_deeply_nested_json_is_a_bad_request_not_a_crash(make: Any, hub: RecordingHub) -> None:
    async def scenario(client: Client) -> list[tuple[int, Any]]:
        out = []
        for path, headers in (
            ("/api/v1/applications/web-west/sync", {**AUTH, "Content-Type": "application/json"}),
            ("/api/v1/applications/web-west/rollback", AUTH),
            ("/api/webhook/git", GITHUB),
        ):
            r = await client.post(path, data=nested(100_000), headers=headers)
            out.append((r.status, await r.json()))
        return out

    results = run_client(make(), scenario)
    assert [status for status, _ in results] == [400, 400, 400]
    for _, body in results:
        assert "nested too deeply" in body["error"]["message"]
    assert hub.calls == []


def test_a_stalled_upload_gets_408_after_the_body_timeout(make: Any, hub: RecordingHub) -> None:
    async def stall() -> AsyncIterator[bytes]:
        yield b'{"prune": '
        await asyncio.sleep(3600)

    async def scenario(client: Client) -> tuple[int, Any]:
        r = await client.post(
            "/api/v1/applications/web-west/sync",
            data=stall(),
            headers={**AUTH, "Content-Type": "application/json"},
        )
        return r.status, await r.json()

    status, body = run_client(make(body_timeout=0.3), scenario)
    assert status == 408
    assert "did not arrive within 0.3 seconds" in body["error"]["message"]
    assert hub.calls == []


# ---------------------------------------------------------------- webhook flood


def test_pushes_inside_the_interval_coalesce_into_one_deferred_fetch(
    make: Any, hub: RecordingHub
) -> None:
    async def scenario(client: Client) -> list[tuple[int, Any]]:
        out = []
        for _ in range(5):
            r = await client.post("/api/webhook/git", data=PUSH, headers=GITHUB)
            out.append((r.status, await r.json()))
        while sum(1 for c in hub.calls if c[0] == "push") < 2:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # room for a wrong third fetch to show up
        return out

    results = run_client(make(webhook_interval=0.5), scenario)
    assert [s for s, _ in results] == [200, 202, 202, 202, 202]
    assert results[0][1]["matched"] == 1
    assert results[1][1]["coalesced"] is False and results[1][1]["queued"] is True
    assert all(body["coalesced"] is True for _, body in results[2:])
    assert hub.calls == [("push", (REPO,)), ("push", (REPO,))]


def test_too_many_waiting_repositories_are_told_to_retry(
    make: Any, hub: RecordingHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hub.api.app.MAX_WEBHOOK_PENDING", 2)

    def push(n: int) -> bytes:
        return json.dumps({"repository": {"clone_url": f"https://git.example/r{n}.git"}}).encode()

    async def scenario(client: Client) -> list[tuple[int, dict[str, str]]]:
        out = []
        for n in (1, 2, 3):  # one fetch each, now
            r = await client.post("/api/webhook/git", data=push(n), headers=GITHUB)
            out.append((r.status, dict(r.headers)))
        for n in (1, 2, 3):  # inside the interval: two may wait, the third may not
            r = await client.post("/api/webhook/git", data=push(n), headers=GITHUB)
            out.append((r.status, dict(r.headers)))
        return out

    results = run_client(make(webhook_interval=3600), scenario)
    assert [s for s, _ in results] == [200, 200, 200, 202, 202, 429]
    assert results[-1][1]["Retry-After"] == "3600"


def test_actions_while_the_hub_is_starting_are_told_to_retry(make: Any, hub: RecordingHub) -> None:
    """`hub serve` listens before its first Git cycle ends (so that serve.json is true)."""
    hub.is_ready = False

    async def scenario(client: Client) -> list[tuple[int, str | None, Any]]:
        out = []
        for path in ("/api/v1/applications/web-west/sync", "/api/v1/refresh"):
            r = await client.post(path, headers=AUTH)
            out.append((r.status, r.headers.get("Retry-After"), await r.json()))
        return out

    for status, retry, body in run_client(make(), scenario):
        assert (status, retry) == (503, "1")
        assert "the hub is starting" in body["error"]["message"]
    assert hub.calls == []


def test_adding_other_urls_to_a_push_does_not_dodge_the_limit(make: Any, hub: RecordingHub) -> None:
    def push(n: int) -> bytes:
        repo = {"clone_url": REPO + ("/" if n % 2 else ""), "html_url": f"https://x.example/{n}"}
        return json.dumps({"repository": repo}).encode()

    async def scenario(client: Client) -> list[int]:
        out = []
        for n in range(4):
            r = await client.post("/api/webhook/git", data=push(n), headers=GITHUB)
            out.append(r.status)
        return out

    assert run_client(make(webhook_interval=3600), scenario) == [200, 202, 202, 202]
    assert [c[0] for c in hub.calls] == ["push"]
