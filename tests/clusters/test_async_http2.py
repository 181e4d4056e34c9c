"""``AsyncKube`` over HTTP/2 against ``hub sim serve --http2``: a cluster's watches and
requests are streams of one connection (counted by the simulator, not by the client), a
second connection only past the server's stream limit, a lost connection replaced, and
``HUB_HTTP2=0`` keeps to HTTP/1.1. The protocol-independent behaviour (error kinds, 410,
outages, deadlines) is tested over both protocols in test_async_watch.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import anyio
import pytest

from clusters import kube as kube_module
from clusters.kube import REQUEST_SLOTS, ApiResource, AsyncKube, KubeClient, Transient
from clusters.sim import SimServer
from tests.clusters.test_async_watch import kube, tracked_cm
from tests.clusters.test_cache import CM
from tests.sim.test_protocol_http2 import stats as sim_stats

pytestmark = pytest.mark.sim_only("needs a simulator offering HTTP/2")
__all__ = ["kube"]  # the fixture (over this module's ``sim``), used by name

SECRET = ApiResource(group="", version="v1", kind="Secret", plural="secrets", namespaced=True)
DEPLOY = ApiResource(
    group="apps", version="v1", kind="Deployment", plural="deployments", namespaced=True
)


@pytest.fixture
def sim(sim_factory: Callable[..., SimServer]) -> SimServer:
    return sim_factory(clusters=["one"], bookmark_interval=60.0, http2=True)


def test_a_cluster_s_watches_and_requests_are_streams_of_one_connection(
    sim: SimServer, kube: KubeClient
) -> None:
    kube.apply(tracked_cm("first"))
    before = sim_stats(sim)
    seen: dict[str, list[str]] = {}

    async def main() -> tuple[str, int]:
        client = AsyncKube(kube.connection)
        try:
            rvs = {}
            for kind in (CM, SECRET, DEPLOY):
                _, rvs[kind.kind] = await client.list(kind, namespace="default")

            async def watch(kind: ApiResource) -> None:
                names = seen.setdefault(kind.kind, [])
                async for event in client.watch(kind, resource_version=rvs[kind.kind], timeout_s=2):
                    names.append(event.object["metadata"]["name"])

            async with anyio.create_task_group() as tg:
                for kind in (CM, SECRET, DEPLOY):
                    tg.start_soon(watch, kind)
                for _ in range(6 * REQUEST_SLOTS):
                    tg.start_soon(client.ping)
                    tg.start_soon(client.get, CM, "first", "default")
                await anyio.sleep(0.3)
                await client.apply(tracked_cm("second"))
            return client.protocol, client.connections_opened
        finally:
            await client.aclose()

    protocol, opened = anyio.run(main)
    after = sim_stats(sim)
    assert protocol == "HTTP/2"
    assert opened == 1
    assert "second" in seen["ConfigMap"]
    # the simulator's own count: one connection carried 3 lists, 3 watches, 24 requests, 1 apply
    assert after["h2_connections_opened"] - before["h2_connections_opened"] == 1
    assert after["h2_streams_opened"] - before["h2_streams_opened"] >= 3 + 3 + 24 + 1


def test_watches_past_the_server_s_stream_limit_open_a_second_connection(
    sim: SimServer, kube: KubeClient
) -> None:
    # the simulator allows 250 concurrent streams per connection, as Go's server does
    watches = 260

    async def main() -> tuple[int, int]:
        client = AsyncKube(kube.connection)
        try:
            _, rv = await client.list(CM, namespace="default")
            started = 0

            async def watch() -> None:
                nonlocal started
                started += 1
                async for _ in client.watch(CM, resource_version=rv, timeout_s=3):
                    pass

            async with anyio.create_task_group() as tg:
                for _ in range(watches):
                    tg.start_soon(watch)
                with anyio.fail_after(20):
                    while sim_open_streams() < watches:
                        await anyio.sleep(0.1)
                await client.ping()  # a request still finds room
                opened = client.connections_opened
                tg.cancel_scope.cancel()
            return opened, started
        finally:
            await client.aclose()

    def sim_open_streams() -> int:
        return int(sim_stats(sim)["h2_streams_open"])

    opened, started = anyio.run(main)
    assert started == watches
    assert opened == 2  # 250 streams on the first, the rest and the ping on a second


def test_a_lost_connection_is_replaced_by_a_new_one(sim: SimServer, kube: KubeClient) -> None:
    failures: list[str] = []

    async def main() -> tuple[str, int]:
        client = AsyncKube(kube.connection)
        try:
            await client.ping()
            sim.faults("one").set(outage="refuse")
            try:
                try:
                    await client.ping(timeout_s=5)
                except Transient as exc:
                    failures.append(str(exc))
            finally:
                sim.faults("one").clear()
            await client.ping()
            return client.protocol, client.connections_opened
        finally:
            await client.aclose()

    protocol, opened = anyio.run(main)
    assert len(failures) == 1 and failures[0].startswith("one: GET /version:"), failures
    assert protocol == "HTTP/2"
    assert opened == 2


def test_http2_can_be_turned_off(
    sim: SimServer, kube: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube_module, "HTTP2", False)
    before = sim_stats(sim)

    async def main() -> str:
        client = AsyncKube(kube.connection)
        try:
            await client.list(CM, namespace="default")
            return client.protocol
        finally:
            await client.aclose()

    assert anyio.run(main) == "HTTP/1.1"
    assert sim_stats(sim)["h2_connections_opened"] == before["h2_connections_opened"]


@pytest.mark.parametrize(
    ("value", "enabled"), [("0", False), ("off", False), ("False", False), ("1", True), ("", True)]
)
def test_hub_http2_environment_variable(value: str, enabled: bool) -> None:
    env = {**os.environ, "HUB_HTTP2": value}
    out = subprocess.run(
        [sys.executable, "-c", "import clusters.kube as k; print(k.HTTP2)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(enabled)
