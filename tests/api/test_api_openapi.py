"""The OpenAPI description covers every route the API serves, and real answers fit it."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.api.conftest import TOKEN
from tests.api.fleet import run_client

Client = TestClient[Any, Any]
UNDOCUMENTED = {"/", "/static/"}  # the dashboard's HTML and assets, not JSON API


def test_every_served_route_is_documented_with_its_method(make_app: Any) -> None:
    app = make_app()

    async def scenario(client: Client) -> Any:
        return await (await client.get("/api/openapi.json")).json()

    doc = run_client(app, scenario)
    assert doc["openapi"].startswith("3.")
    served = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if route.method == "HEAD" or path in UNDOCUMENTED or (path or "").startswith("/static"):
            continue
        served.add((route.method.lower(), path))
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    for path, ops in doc["paths"].items():
        for op in ops.values():
            for response in op["responses"].values():
                for media in response["content"].values():
                    ref = media["schema"]["$ref"].rsplit("/", 1)[-1]
                    assert ref in doc["components"]["schemas"], (path, ref)


def required_keys(schema: dict[str, Any], schemas: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        return required_keys(schemas[schema["$ref"].rsplit("/", 1)[-1]], schemas)
    if "allOf" in schema:
        return set().union(*(required_keys(s, schemas) for s in schema["allOf"]))
    return set(schema.get("required", []))


def test_real_answers_carry_the_documented_required_keys(make_app: Any) -> None:
    gets = {
        "/api/v1/status": "FleetStatus",
        "/api/v1/clusters/east": "Cluster",
        "/api/v1/applicationsets/web": "AppSet",
        "/api/v1/applications/web-west": "AppDetail",
        "/api/v1/applications/web-west/diff": "Diff",
        "/api/v1/applications/web-west/resources": "ResourceList",
    }
    lists = {
        "/api/v1/clusters": "Cluster",
        "/api/v1/applications": "App",
        "/api/v1/applicationsets": "AppSet",
        "/api/v1/applications/web-west/history": "HistoryEntry",
    }

    async def scenario(client: Client) -> tuple[Any, dict[str, Any], dict[str, Any], Any]:
        spec = await (await client.get("/api/openapi.json")).json()
        one = {p: await (await client.get(p)).json() for p in gets}
        many = {p: await (await client.get(p)).json() for p in lists}
        queued = await (
            await client.post(
                "/api/v1/applications/web-east/sync",
                json={},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        ).json()
        return spec, one, many, queued

    spec, one, many, queued = run_client(make_app(), scenario)
    schemas = spec["components"]["schemas"]
    for path, name in gets.items():
        missing = required_keys(schemas[name], schemas) - set(one[path])
        assert not missing, (path, missing)
    for path, name in lists.items():
        assert many[path]["items"], path
        for item in many[path]["items"]:
            assert not required_keys(schemas[name], schemas) - set(item), path
    assert not required_keys(schemas["Queued"], schemas) - set(queued)
