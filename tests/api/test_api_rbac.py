"""Two teams on one hub: each token sees and acts on its own project's Applications
only; refusals are 403 naming the rule and land in the audit trail."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from hub.api.app import create_api_app
from hub.auth.policy import PolicyError
from hub.auth.tokens import create_token, revoke_token
from hub.metrics import Metrics
from hub.store import Store
from tests.api.conftest import TOKEN, static_differ
from tests.api.fleet import RecordingHub, run_client

Client = TestClient[Any, Any]
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
TEAMS = {"team-a": ("web-east", "web-west"), "team-b": ("api-east", "tools")}


def project(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": name},
        "spec": {
            "roles": [
                {
                    "name": "deployer",
                    "policies": [
                        f"p, proj:{name}:deployer, applications, get, {name}/*, allow",
                        f"p, proj:{name}:deployer, applications, sync, {name}/*, allow",
                    ],
                }
            ]
        },
    }


@pytest.fixture
def teams(home: Path) -> Iterator[tuple[Store, dict[str, dict[str, str]]]]:
    """Applications moved into team-a and team-b, their AppProjects with a deployer role,
    no default role, and a token per team."""
    (home / "rbac.yaml").write_text("policy.default: ''\n")
    store = Store.open(home / "hub.db")
    with store.write() as db:
        for team, apps in TEAMS.items():
            db.executemany(
                "UPDATE applications SET project = ? WHERE name = ?", [(team, a) for a in apps]
            )
            db.execute(
                "INSERT INTO app_projects (name, source, file, manifest, sha) "
                "VALUES (?, 'root', 'projects.yaml', ?, ?)",
                (team, json.dumps(project(team)), "1" * 40),
            )
    headers = {}
    for team in TEAMS:
        token, _ = create_token(store, subject=f"proj:{team}:deployer", kind="project-role")
        headers[team] = {"Authorization": f"Bearer {token}"}
    yield store, headers
    store.close()


def make(
    home: Path, hub: RecordingHub, store: Store, *, require_auth: bool = False
) -> web.Application:
    return create_api_app(
        home=home,
        handle=hub,
        token=TOKEN,
        metrics=Metrics(app_counts=lambda: {}, connections=None),
        webhook_secret=None,
        differ=static_differ,
        require_auth=require_auth,
    )


def names(doc: dict[str, Any]) -> set[str]:
    return {item["name"] for item in doc["items"]}


def test_each_team_lists_only_its_own_applications(
    home: Path, hub: RecordingHub, teams: tuple[Store, dict[str, dict[str, str]]]
) -> None:
    store, headers = teams

    async def scenario(client: Client) -> dict[str, Any]:
        out = {}
        for who, h in (*headers.items(), ("admin", ADMIN), ("anonymous", {})):
            apps = await (await client.get("/api/v1/applications", headers=h)).json()
            status = await (await client.get("/api/v1/status", headers=h)).json()
            other = "api-east" if who == "team-a" else "web-east"
            one = await client.get(f"/api/v1/applications/{other}", headers=h)
            missing = await client.get("/api/v1/applications/no-such-app", headers=h)
            out[who] = (names(apps), status["totals"], one.status, missing.status)
        return out

    seen = run_client(make(home, hub, store), scenario)
    assert seen["team-a"][0] == {"web-east", "web-west"}
    assert seen["team-b"][0] == {"api-east", "tools"}
    assert seen["admin"][0] == {"web-east", "web-west", "api-east", "tools"}
    assert seen["anonymous"][0] == set()  # policy.default is empty: nothing
    assert seen["team-a"][1]["applications"]["total"] == 2
    assert seen["team-a"][2] == 403 and seen["team-b"][2] == 403 and seen["admin"][2] == 200
    # an unknown name is a 404 only for who may see every project: no probing for names
    assert (seen["team-a"][3], seen["admin"][3]) == (403, 404)


def test_a_team_syncs_its_own_application_and_is_refused_the_others(
    home: Path, hub: RecordingHub, teams: tuple[Store, dict[str, dict[str, str]]]
) -> None:
    store, headers = teams

    async def scenario(client: Client) -> tuple[int, int, Any, Any]:
        ok = await client.post("/api/v1/applications/web-east/sync", headers=headers["team-a"])
        refused = await client.post("/api/v1/applications/web-east/sync", headers=headers["team-b"])
        trail = await (await client.get("/api/v1/audit", headers=ADMIN)).json()
        return ok.status, refused.status, await refused.json(), trail

    ok, refused, body, trail = run_client(make(home, hub, store), scenario)
    assert ok == 202
    assert hub.calls == [("sync", "web-east", False, None, "proj:team-a:deployer")]
    assert refused == 403
    error = body["error"]
    assert (error["subject"], error["action"], error["resource"], error["object"]) == (
        "proj:team-b:deployer",
        "sync",
        "applications",
        "team-a/web-east",
    )
    assert "proj:team-b:deployer may not sync applications team-a/web-east" in error["message"]
    results = [(e["actor"], e["action"], e["target"], e["result"]) for e in trail["items"]]
    assert results == [
        ("proj:team-a:deployer", "app.sync", "team-a/web-east", "ok"),
        ("proj:team-b:deployer", "app.sync", "team-a/web-east", "refused"),
    ]
    assert all(e["via"] == "api" and e["tokenId"] and e["remote"] for e in trail["items"])


def test_the_audit_trail_is_for_admins_only(
    home: Path, hub: RecordingHub, teams: tuple[Store, dict[str, dict[str, str]]]
) -> None:
    store, headers = teams

    async def scenario(client: Client) -> list[int]:
        return [
            (await client.get("/api/v1/audit", headers=h)).status
            for h in (headers["team-a"], {}, ADMIN)
        ]

    assert run_client(make(home, hub, store), scenario) == [403, 401, 200]


def test_the_session_says_who_and_which_buttons_to_show(
    home: Path, hub: RecordingHub, teams: tuple[Store, dict[str, dict[str, str]]]
) -> None:
    store, headers = teams

    async def scenario(client: Client) -> Any:
        return await (await client.get("/api/v1/session", headers=headers["team-a"])).json()

    doc = run_client(make(home, hub, store), scenario)
    assert doc["subject"] == "proj:team-a:deployer"
    assert set(doc["applications"]) == {"web-east", "web-west"}
    assert "sync" in doc["applications"]["web-east"]
    assert doc["audit"] is False and doc["refreshAll"] is False


def test_reads_need_a_token_when_required_and_bad_tokens_never_read(
    home: Path, hub: RecordingHub, teams: tuple[Store, dict[str, dict[str, str]]]
) -> None:
    store, headers = teams
    token_id = next(t for t in store_tokens(store))
    revoke_token(store, token_id)

    async def scenario(client: Client) -> list[int]:
        bad = {"Authorization": "Bearer hub_000000000000_" + "A" * 43}
        return [
            (await client.get("/api/v1/applications", headers=h)).status
            for h in ({}, bad, headers["team-a"], headers["team-b"])
        ]

    # team-a's token (created first) is revoked
    assert run_client(make(home, hub, store, require_auth=True), scenario) == [401, 401, 401, 200]

    async def write(client: Client) -> int:
        response = await client.post(
            "/api/v1/applications/web-east/sync", headers=headers["team-a"]
        )
        return response.status

    assert run_client(make(home, hub, store), write) == 401
    from hub.auth.audit import entries

    last = entries(store)[-1]
    assert (last.actor, last.action, last.result, last.detail) == (
        "", "POST /api/v1/applications/web-east/sync", "refused", "bad token",
    )  # fmt: skip
    assert last.remote and hub.calls == []


def store_tokens(store: Store) -> list[str]:
    with store.read() as db:
        return [r[0] for r in db.execute("SELECT id FROM api_tokens ORDER BY rowid")]


def test_no_token_secret_reaches_the_store_or_the_log(
    home: Path,
    hub: RecordingHub,
    teams: tuple[Store, dict[str, dict[str, str]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, headers = teams
    caplog.set_level(logging.DEBUG)

    async def scenario(client: Client) -> None:
        for h in headers.values():
            await client.post("/api/v1/applications/web-east/sync", headers=h)
            await client.get("/api/v1/applications/web-east", headers=h)

    run_client(make(home, hub, store), scenario)
    assert "audit: app.sync team-a/web-east refused by proj:team-b:deployer" in caplog.text
    raw = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    for h in headers.values():
        secret = h["Authorization"].removeprefix("Bearer ").split("_", 2)[2]
        assert secret not in caplog.text
        assert secret.encode() not in raw


def test_a_broken_policy_file_stops_the_api_naming_the_line(
    home: Path, hub: RecordingHub, teams: tuple[Store, dict[str, dict[str, str]]]
) -> None:
    store, _ = teams
    (home / "rbac.csv").write_text("p, alice, applications, sync, */*\n")

    async def start() -> None:  # as `hub serve` does
        runner = web.AppRunner(make(home, hub, store))
        try:
            await runner.setup()
        finally:
            await runner.cleanup()

    with pytest.raises(PolicyError, match=r"rbac.csv line 1 .*6 fields"):
        asyncio.run(start())


def test_the_event_stream_carries_only_the_subjects_applications(
    home: Path, hub: RecordingHub, teams: tuple[Store, dict[str, dict[str, str]]]
) -> None:
    store, headers = teams

    async def scenario(client: Client) -> dict[str, int]:
        totals = {}
        for who, h in (("team-a", headers["team-a"]), ("admin", ADMIN)):
            response = await client.get("/api/events", headers=h)
            event = (await response.content.readuntil(b"\n\n")).decode()
            response.close()
            data = json.loads(event.split("data: ", 1)[1])
            totals[who] = data["totals"]["applications"]["total"]
        return totals

    assert run_client(make(home, hub, store), scenario) == {"team-a": 2, "admin": 4}
