"""Actions need the API token; they reach the hub through HubHandle."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api.conftest import TOKEN
from tests.api.fleet import RecordingHub, run_client

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {TOKEN}"}

ACTIONS = [
    (
        "/api/v1/applications/web-east/sync",
        {"prune": True, "revision": "v2"},
        ("sync", "web-east", True, "v2", "role:admin"),
    ),
    ("/api/v1/applications/web-east/sync", None, ("sync", "web-east", False, None, "role:admin")),
    (
        "/api/v1/applications/web-west/rollback",
        {"id": 0},
        ("rollback", "web-west", 0, "role:admin"),
    ),
    ("/api/v1/applications/tools/refresh", None, ("refresh", "tools")),
    ("/api/v1/refresh", None, ("refresh", None)),
]


@pytest.mark.parametrize(("path", "body", "call"), ACTIONS)
def test_an_action_with_the_token_is_queued_in_the_hub(
    make_app: Any, hub: RecordingHub, path: str, body: Any, call: tuple[Any, ...]
) -> None:
    async def scenario(client: Client) -> tuple[int, Any]:
        response = (
            await client.post(path, json=body, headers=AUTH)
            if body is not None
            else await client.post(path, headers=AUTH)
        )
        return response.status, await response.json()

    status, doc = run_client(make_app(), scenario)
    assert status == 202, doc
    assert doc["queued"] is True
    assert hub.calls == [call]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
)
@pytest.mark.parametrize(("path", "body", "call"), ACTIONS)
def test_an_action_without_the_right_token_is_refused_and_reaches_nothing(
    make_app: Any, hub: RecordingHub, headers: dict[str, str], path: str, body: Any, call: Any
) -> None:
    async def scenario(client: Client) -> tuple[int, str, str]:
        response = await client.post(path, json=body or {}, headers=headers)
        return response.status, response.headers.get("WWW-Authenticate", ""), await response.text()

    status, challenge, text = run_client(make_app(), scenario)
    assert status == 401
    assert challenge.startswith("Bearer")
    assert TOKEN not in text
    assert hub.calls == []


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/v1/applications/ghost/sync", {}, 404),
        ("/api/v1/applications/web-east/sync", {"prune": "yes"}, 400),
        ("/api/v1/applications/web-east/rollback", {"id": "1"}, 400),
        ("/api/v1/applications/web-east/rollback", {}, 400),
        ("/api/v1/applications/web-east/rollback", {"id": 500}, 409),  # the hub refuses it
    ],
)
def test_bad_actions_get_clear_errors(
    make_app: Any, hub: RecordingHub, path: str, body: Any, status: int
) -> None:
    async def scenario(client: Client) -> tuple[int, Any]:
        response = await client.post(path, json=body, headers=AUTH)
        return response.status, await response.json()

    got, doc = run_client(make_app(), scenario)
    assert got == status, doc
    assert doc["error"]["message"]
    assert hub.calls == []


def test_a_body_that_is_not_json_is_a_bad_request(make_app: Any) -> None:
    async def scenario(client: Client) -> int:
        response = await client.post(
            "/api/v1/applications/web-east/sync",
            data=b"{not json",
            headers={**AUTH, "Content-Type": "application/json"},
        )
        return response.status

    assert run_client(make_app(), scenario) == 400


def test_actions_without_a_running_hub_say_so(make_app: Any) -> None:
    async def scenario(client: Client) -> tuple[int, Any]:
        response = await client.post("/api/v1/applications/web-east/sync", json={}, headers=AUTH)
        return response.status, await response.json()

    status, doc = run_client(make_app(handle=None), scenario)
    assert status == 503
    assert "hub serve" in doc["error"]["message"]


def test_api_requests_are_counted_by_route_pattern(make_app: Any) -> None:
    async def scenario(client: Client) -> str:
        await client.get("/api/v1/applications/web-east")
        await client.get("/api/v1/applications/web-west")
        await client.get("/api/v1/applications/ghost")
        return await (await client.get("/metrics")).text()

    text = run_client(make_app(), scenario)
    assert (
        'hub_http_requests_total{method="GET",route="/api/v1/applications/{name}",status="200"} 2.0'
        in text
    )
    assert (
        'hub_http_requests_total{method="GET",route="/api/v1/applications/{name}",status="404"} 1.0'
        in text
    )
