"""JSON reads: clusters without credentials, ApplicationSets, Applications, rollups."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.api.fleet import APPS, CLUSTER_TOKENS, run_client

Client = TestClient[Any, Any]


def keys_of(doc: Any) -> set[str]:
    if isinstance(doc, dict):
        return set(doc) | {k for v in doc.values() for k in keys_of(v)}
    if isinstance(doc, list):
        return {k for v in doc for k in keys_of(v)}
    return set()


async def get(client: Client, path: str, status: int = 200) -> Any:
    response = await client.get(path)
    assert response.status == status, await response.text()
    return await response.json()


def test_status_rollups_match_the_store_and_the_hubs_connection_states(make_app: Any) -> None:
    async def scenario(client: Client) -> Any:
        return await get(client, "/api/v1/status")

    doc = run_client(make_app(), scenario)
    assert doc["schemaVersion"] == 1
    rows = {c["name"]: c for c in doc["clusters"]}
    assert rows["east"]["connection"]["state"] == "Connected"
    assert rows["west"]["connection"] == {
        "state": "Unreachable",
        "message": "connection refused",
        "since": "",
    }
    for cluster in ("east", "west"):
        expected = [a for a in APPS.values() if a[1] == cluster]
        counts = rows[cluster]["applications"]
        assert counts["total"] == len(expected)
        for status in ("Synced", "OutOfSync", "Unknown"):
            assert counts["sync"][status] == sum(1 for a in expected if a[2] == status)
        for health in ("Healthy", "Progressing", "Degraded", "Unknown"):
            assert counts["health"][health] == sum(1 for a in expected if a[3] == health)
    # the newest history entry of each cluster
    assert rows["west"]["lastSync"]["revision"] == "2" * 40
    assert rows["east"]["lastSync"]["app"] == "web-east"
    web = next(r for r in doc["matrix"]["rows"] if r["appset"] == "web")
    assert {c["cluster"]: (c["sync"], c["health"]) for c in web["cells"]} == {
        "east": ("Synced", "Healthy"),
        "west": ("OutOfSync", "Degraded"),
    }
    assert doc["totals"]["applications"]["total"] == len(APPS)


def test_status_filters_and_unknown_names(make_app: Any) -> None:
    async def scenario(client: Client) -> tuple[Any, Any]:
        narrowed = await get(client, "/api/v1/status?appset=web&cluster=west")
        missing = await get(client, "/api/v1/status?cluster=nowhere", status=400)
        return narrowed, missing

    narrowed, missing = run_client(make_app(), scenario)
    assert [c["name"] for c in narrowed["clusters"]] == ["west"]
    assert narrowed["totals"]["applications"]["total"] == 1
    assert "nowhere" in missing["error"]["message"]


def test_clusters_never_carry_credentials(make_app: Any) -> None:
    async def scenario(client: Client) -> tuple[str, str]:
        listing = await client.get("/api/v1/clusters")
        one = await client.get("/api/v1/clusters/east")
        return await listing.text(), await one.text()

    listing, one = run_client(make_app(), scenario)
    for body in (listing, one):
        for token in CLUSTER_TOKENS.values():
            assert token not in body
        assert not keys_of(json.loads(body)) & {
            "token",
            "ciphertext",
            "wrappedKey",
            "caData",
            "clientKey",
        }
    assert '"name": "east"' in one


def test_applicationsets_list_their_generated_applications(make_app: Any) -> None:
    async def scenario(client: Client) -> tuple[Any, Any, Any]:
        return (
            await get(client, "/api/v1/applicationsets"),
            await get(client, "/api/v1/applicationsets/web"),
            await get(client, "/api/v1/applicationsets/nope", status=404),
        )

    listing, web, missing = run_client(make_app(), scenario)
    assert [s["name"] for s in listing["items"]] == ["api", "web"]
    assert [a["name"] for a in web["applications"]] == ["web-east", "web-west"]
    assert web["counts"]["health"]["Degraded"] == 1
    assert "nope" in missing["error"]["message"]


def test_application_list_filters(make_app: Any) -> None:
    async def scenario(client: Client) -> list[list[str]]:
        out = []
        for query in (
            "",
            "?cluster=east",
            "?appset=web",
            "?sync=OutOfSync",
            "?health=Unknown&cluster=east",
        ):
            doc = await get(client, "/api/v1/applications" + query)
            out.append([a["name"] for a in doc["items"]])
        return out

    assert run_client(make_app(), scenario) == [
        sorted(APPS),
        ["api-east", "tools", "web-east"],
        ["web-east", "web-west"],
        ["web-west"],
        ["tools"],
    ]


def test_application_detail_has_resources_conditions_history_and_diff(make_app: Any) -> None:
    async def scenario(client: Client) -> tuple[Any, ...]:
        return (
            await get(client, "/api/v1/applications/web-west"),
            await get(client, "/api/v1/applications/web-west/resources"),
            await get(client, "/api/v1/applications/web-west/history"),
            await get(client, "/api/v1/applications/web-west/diff"),
            await get(client, "/api/v1/applications/ghost", status=404),
            await (await client.get("/api/v1/applications/web-west/history")).text(),
        )

    detail, resources, history, diff, missing, history_text = run_client(make_app(), scenario)
    assert (detail["sync"], detail["health"], detail["cluster"]) == (
        "OutOfSync",
        "Degraded",
        "west",
    )
    assert detail["conditions"][0]["type"] == "SyncError"
    assert detail["resourcesFrom"] == "history"
    kinds = {(r["kind"], r["name"], r["wave"], r["sync"]) for r in detail["resources"]}
    assert kinds == {
        ("Deployment", "web-west", 1, "Synced"),
        ("ConfigMap", "web-west-config", 0, "Synced"),
    }
    assert resources["items"] == detail["resources"]
    assert [(e["id"], e["phase"]) for e in history["items"]] == [(0, "Failed"), (1, "Succeeded")]
    assert history["items"][0]["resources"][0]["sync"] == "SyncFailed"
    assert "c2VjcmV0" not in history_text  # sealed manifests are never read back here
    assert diff["status"] == "OutOfSync" and "web-west" in diff["diff"]
    assert "ghost" in missing["error"]["message"]


def test_probes_without_a_running_hub(make_app: Any) -> None:
    async def scenario(client: Client) -> tuple[int, int, int]:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        status = await client.get("/api/v1/status")
        return health.status, ready.status, status.status

    assert run_client(make_app(handle=None), scenario) == (200, 503, 200)


def test_readyz_follows_the_hub(make_app: Any, hub: Any) -> None:
    async def scenario(client: Client) -> list[int]:
        out = [(await client.get("/readyz")).status]
        hub.is_ready = False
        out.append((await client.get("/readyz")).status)
        return out

    assert run_client(make_app(), scenario) == [200, 503]


def test_the_dashboard_and_its_assets_are_served_with_a_strict_policy(make_app: Any) -> None:
    async def scenario(client: Client) -> tuple[Any, ...]:
        page = await client.get("/")
        js = await client.get("/static/app.js")
        css = await client.get("/static/app.css")
        return (
            page.status,
            page.headers.get("Content-Security-Policy", ""),
            await page.text(),
            js.status,
            css.status,
        )

    status, csp, html, js, css = run_client(make_app(), scenario)
    assert (status, js, css) == (200, 200, 200)
    assert "script-src 'self'" in csp
    assert '<script src="/static/app.js"' in html


def test_a_read_changes_nothing_in_the_store(make_app: Any, home: Path) -> None:
    import hashlib

    def digest() -> str:
        from hub.store import Store

        with Store.open(home / "hub.db") as store, store.read() as db:
            rows = [
                db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                for t in ("applications", "applicationsets", "clusters", "sync_history")
            ]
        return hashlib.sha256(repr(rows).encode()).hexdigest()

    before = digest()

    async def scenario(client: Client) -> None:
        for path in (
            "/api/v1/status",
            "/api/v1/clusters",
            "/api/v1/applications/web-east",
            "/api/v1/applicationsets/web",
            "/metrics",
        ):
            await get(client, path) if path != "/metrics" else await client.get(path)

    run_client(make_app(), scenario)
    assert digest() == before


def test_a_diff_the_cluster_cannot_answer_is_a_bad_gateway_with_the_reason(home: Path) -> None:
    from clusters.errors import ClusterError
    from hub.api.app import create_api_app
    from hub.apps import AppRecord
    from hub.metrics import Metrics

    def unreachable(record: AppRecord) -> Any:
        raise ClusterError(f"cluster {record.cluster}: connection refused")

    app = create_api_app(
        home=home,
        handle=None,
        token="t" * 20,
        metrics=Metrics(),
        webhook_secret=None,
        differ=unreachable,
    )

    async def scenario(client: Client) -> tuple[int, Any]:
        response = await client.get("/api/v1/applications/web-west/diff")
        return response.status, await response.json()

    status, doc = run_client(app, scenario)
    assert status == 502
    assert doc["error"]["message"] == "cluster west: connection refused"
