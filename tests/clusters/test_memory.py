"""What a cluster costs the hub in memory (issue 12, docs/benchmarks.md "Memory per
cluster"): small TLS read buffers that still carry large answers, bounded discovery
fan-out, discovery shared between clusters, cached managedFields shared between objects.
Sizes are asserted against the limits the code sets, never as measured bytes."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from clusters import kube as kube_module
from clusters import wirejson
from clusters.cache import LiveCache, compact
from clusters.connect import Connection
from clusters.eventloop import HUB_DEFAULT, anyio_backend_options
from clusters.kube import (
    DISCOVERY_PARALLEL,
    TLS_READ_BUFFER,
    ApiResource,
    AsyncKube,
    KubeClient,
)
from clusters.kubeconfig import BearerToken
from clusters.sim import SimServer
from hub.sync.diff import SyncStatus, compare_app, managed_fields_of
from hub.sync.model import IgnoreDifference
from tests.clusters.test_async_watch import connection_to, tracked_cm
from tests.clusters.test_cache import ANN, CM, owner

pytestmark = pytest.mark.sim_only("needs simulated clusters")


@pytest.fixture
def sim(sim_factory: Callable[..., SimServer]) -> SimServer:
    return sim_factory(clusters=["one", "two"], bookmark_interval=60.0)


@pytest.fixture
def connections(sim: SimServer) -> Iterator[dict[str, Connection]]:
    made = {
        name: connection_to(sim, BearerToken(token=sim.token(name)), name)
        for name in ("one", "two")
    }
    try:
        yield made
    finally:
        for c in made.values():
            c.close()


def big_cm(name: str, size: int, app: str = "shop") -> dict[str, Any]:
    # not one repeated byte: the answer must not compress into a few TLS records
    blob = "".join(f"{i:07d}," for i in range(size // 8))
    return {**tracked_cm(name, app), "data": {"blob": blob}}


def tls_buffers(transport: AsyncKube) -> list[int]:
    """The read buffer size of every TLS connection the cluster's pool holds open."""
    session = transport._pool.session
    assert session is not None
    connector: Any = session.connector
    sizes = []
    for protos in connector._conns.values():  # aiohttp's idle connections per host
        for proto, _ in protos:
            ssl_protocol = proto.transport._ssl_protocol
            sizes.append(len(ssl_protocol._ssl_buffer))
    return sizes


def test_large_answers_arrive_whole_through_small_tls_buffers(
    connections: dict[str, Connection],
) -> None:
    sync = KubeClient(connections["one"])
    for i in range(12):
        sync.apply(big_cm(f"big-{i}", 100_000))  # 1.2 MB in one LIST, 100 KB per object
    expected, _ = sync.list(CM, namespace="default")
    seen: dict[str, Any] = {}

    async def main() -> None:
        transport = AsyncKube(connections["one"])
        try:
            items, rv = await transport.list(CM, namespace="default")
            seen["items"] = items
            seen["buffers"] = tls_buffers(transport)
            await anyio.to_thread.run_sync(sync.apply, big_cm("big-0", 150_000))
            async for event in transport.watch(CM, resource_version=rv, timeout_s=1):
                if event.object["metadata"]["name"] == "big-0":
                    seen["event"] = event.object
        finally:
            await transport.aclose()

    # On the loop `hub serve` runs on: uvloop's compiled TLS layer keeps its 256 KiB buffer
    # out of reach (clusters/eventloop.py), and this test would fail on it.
    anyio.run(main, backend_options=anyio_backend_options(HUB_DEFAULT))
    assert json.dumps(seen["items"], sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert seen["event"]["data"] == big_cm("big-0", 150_000)["data"]
    assert seen["buffers"] and all(size <= TLS_READ_BUFFER for size in seen["buffers"])


def test_discovery_is_bounded_per_cluster_and_shared_between_clusters(
    connections: dict[str, Connection],
) -> None:
    in_flight = {"now": 0, "max": 0}
    found: dict[str, Any] = {}
    send = AsyncKube._send

    async def counted(self: AsyncKube, *a: Any, **kw: Any) -> Any:
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"])
        try:
            return await send(self, *a, **kw)
        finally:
            in_flight["now"] -= 1

    async def main() -> None:
        one, two = AsyncKube(connections["one"]), AsyncKube(connections["two"])
        try:
            found["one"] = await one.resources()
            found["two"] = await two.resources()
        finally:
            await one.aclose()
            await two.aclose()

    patch = pytest.MonkeyPatch()
    patch.setattr(AsyncKube, "_send", counted)
    try:
        anyio.run(main)
    finally:
        patch.undo()
    one, two = found["one"], found["two"]
    assert len(one) > 2 * DISCOVERY_PARALLEL  # enough groups for the bound to matter
    assert 1 <= in_flight["max"] <= DISCOVERY_PARALLEL
    assert one == two  # the same simulated API...
    assert all(one[gk] is two[gk] for gk in one)  # ...held once for the fleet
    assert one[("apps", "Deployment")].plural == "deployments"


def test_shared_resources_are_freed_with_the_last_cluster() -> None:
    res = kube_module._shared(
        kube_module.ApiResource(
            group="example.com", version="v9", kind="Gadget", plural="gadgets", namespaced=True
        )
    )
    same = kube_module.ApiResource(
        group="example.com", version="v9", kind="Gadget", plural="gadgets", namespaced=True
    )
    assert kube_module._shared(same) is res
    key = ("example.com", "v9", "Gadget", "gadgets", True, frozenset())
    assert kube_module._SHARED_RESOURCES.get(key) is res
    del res, same
    assert kube_module._SHARED_RESOURCES.get(key) is None


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.05)


def shop_objects_once(
    connection: Connection,
    res: ApiResource,
    done: Callable[[LiveCache], bool],
    *,
    listed: Callable[[LiveCache], bool] | None = None,
    then: Callable[[], object] | None = None,
) -> list[dict[str, Any]]:
    """Run a live cache of ``res`` until ``done(cache)`` and return app shop's objects as
    it keeps them; ``then`` runs (in a thread) once ``listed(cache)`` holds."""
    held: dict[str, list[dict[str, Any]]] = {}

    async def main() -> None:
        transport = AsyncKube(connection)
        cache = LiveCache(transport, owner_of=owner, on_change=lambda _apps: None)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(cache.run_kind, res)
                if listed is not None:
                    await until(lambda: listed(cache))
                if then is not None:
                    await anyio.to_thread.run_sync(then)
                await until(lambda: done(cache))
                held["objects"] = cache.tracked("shop")
                tg.cancel_scope.cancel()
        finally:
            await transport.aclose()

    anyio.run(main)
    return held["objects"]


def managed(manager: str, time: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": "v1",
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }


def obj_with_fields(name: str, time: str) -> dict[str, Any]:
    fields = {"f:data": {"f:greeting": {}}, "f:metadata": {"f:annotations": {f"f:{ANN}": {}}}}
    # decoded by the wire decoder, as the cache receives objects
    return wirejson.loads(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": name,
                    "namespace": "default",
                    "managedFields": [managed("gitops-hub", time, fields)],
                    "resourceVersion": "7",
                },
                "data": {"greeting": name},
            }
        )
    )


def test_compact_objects_are_equal_and_share_their_field_sets() -> None:
    a, b = (
        obj_with_fields("a", "2026-01-01T00:00:00Z"),
        obj_with_fields("b", "2026-02-02T00:00:00Z"),
    )
    original = json.dumps(a)
    ca, cb = compact(a), compact(b)
    assert ca == a and cb == b
    assert json.dumps(ca) == original  # same content, same key order
    assert json.dumps(a) == original  # the object given is left as it was
    fa = ca["metadata"]["managedFields"][0]["fieldsV1"]
    fb = cb["metadata"]["managedFields"][0]["fieldsV1"]
    assert fa is fb  # one tree for the two objects
    # every key string is held once, however many objects carry it: the metadata's
    # interned by the cache, the rest as the wire decoder shares them
    assert next(iter(ca["data"])) is next(iter(cb["data"]))
    assert all(k is sys.intern(k) for k in ca["metadata"])
    assert ca["data"] is a["data"]  # kept as decoded: the caller hands the object over
    assert ca["metadata"]["managedFields"][0]["time"] != cb["metadata"]["managedFields"][0]["time"]
    owned = managed_fields_of(ca, "gitops-hub")
    assert owned is not None and owned == managed_fields_of(a, "gitops-hub")
    odd = {"metadata": {"managedFields": "not a list"}}
    assert compact(odd) == odd


def test_the_cache_keeps_the_managed_fields_the_api_returned(
    connections: dict[str, Connection],
) -> None:
    """A tracked object read from the cache equals the API's own answer, managedFields
    included (the diff reads them), and two equal field sets are one object."""
    sync = KubeClient(connections["one"])
    for name in ("a", "b"):
        sync.apply(big_cm(name, 64))
    objects = shop_objects_once(
        connections["one"],
        CM,
        lambda cache: (
            (cache.get_tracked(("", "ConfigMap", "default", "a")) or {}).get("data") == {"x": "y"}
        ),
        listed=lambda cache: len(cache.tracked("shop")) == 2,
        then=lambda: sync.apply({**big_cm("a", 64), "data": {"x": "y"}}),
    )
    a, b = objects
    assert a == sync.get(CM, "a", "default") and b == sync.get(CM, "b", "default")
    assert managed_fields_of(a, "gitops-hub") is not None
    assert a["metadata"]["managedFields"][0]["fieldsV1"] is not None
    fields_b = b["metadata"]["managedFields"][0]["fieldsV1"]
    other = compact(json.loads(json.dumps(sync.get(CM, "b", "default"))))
    assert other["metadata"]["managedFields"][0]["fieldsV1"] is fields_b


def deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "annotations": {ANN: "shop:apps/Deployment:default/web"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1"}]},
            },
        },
    }


def test_the_diff_reads_another_managers_fields_from_the_compact_cache(
    connections: dict[str, Connection],
) -> None:
    """ignoreDifferences' managedFieldsManagers needs the managedFields of managers other
    than the hub: a scaler that took spec.replicas over is ignored when named, drift when
    not, on the object as the cache keeps it."""
    sync = KubeClient(connections["one"])
    sync.apply(deployment(3))
    scaled = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 5},
    }
    sync.apply(scaled, field_manager="autoscaler")
    deploy_res = sync.resource_for("apps", "Deployment")
    live = shop_objects_once(
        connections["one"],
        deploy_res,
        lambda cache: any(
            (o.get("spec") or {}).get("replicas") == 5 for o in cache.tracked("shop")
        ),
    )
    managers = {e["manager"] for e in live[0]["metadata"]["managedFields"]}
    assert {"gitops-hub", "autoscaler"} <= managers
    desired = [deployment(3)]
    drift = compare_app(desired, live, app="shop")
    assert drift.status is SyncStatus.OUT_OF_SYNC
    rule = IgnoreDifference(
        group="apps", kind="Deployment", managed_fields_managers=("autoscaler",)
    )
    assert compare_app(desired, live, app="shop", ignore_differences=[rule]).status is (
        SyncStatus.SYNCED
    )
