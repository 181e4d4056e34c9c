"""The async transport (``AsyncKube``) and the live cache's watch loop on the event loop,
against ``hub sim``: error kinds, 410 Gone, an outage and its recovery, exec-plugin token
refresh. Every test runs twice: against a simulator speaking HTTP/1.1 only (aiohttp's
pool), and one offering HTTP/2 as real API servers do (``clusters.h2client``)."""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from clusters import kube as kube_module
from clusters.cache import LiveCache
from clusters.connect import Connection, build_connection
from clusters.kube import (
    REQUEST_SLOTS,
    ApiResource,
    AsyncKube,
    Conflict,
    Gone,
    Invalid,
    KubeClient,
    KubeError,
    NotFound,
    Transient,
    Unauthorized,
)
from clusters.kubeconfig import BearerToken, ExecPlugin, TLSSettings
from clusters.registry import ClusterCredentials
from clusters.sim import SimServer
from tests.clusters.test_cache import ANN, CM, owner, running, wait_until

pytestmark = pytest.mark.sim_only("needs simulated clusters and faults")


def connection_to(sim: SimServer, credential: Any, name: str = "one") -> Connection:
    return build_connection(
        ClusterCredentials(
            name=name,
            server=sim.server_url(name),
            tls=TLSSettings(ca_data=sim.ca_pem),
            credential=credential,
            credential_rev="t",
        )
    )


@pytest.fixture(params=["HTTP/1.1", "HTTP/2"])
def sim(sim_factory: Callable[..., SimServer], request: pytest.FixtureRequest) -> SimServer:
    return sim_factory(clusters=["one"], bookmark_interval=60.0, http2=request.param == "HTTP/2")


@pytest.fixture
def kube(sim: SimServer) -> Iterator[KubeClient]:
    connection = connection_to(sim, BearerToken(token=sim.token("one")))
    try:
        yield KubeClient(connection)
    finally:
        connection.close()


def tracked_cm(name: str, app: str = "shop") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": {ANN: f"{app}:/ConfigMap:default/{name}"},
        },
        "data": {"k": "v"},
    }


def test_the_async_transport_lists_watches_and_raises_the_same_error_kinds(
    sim: SimServer, kube: KubeClient
) -> None:
    kube.apply(tracked_cm("a"))
    missing = ApiResource(group="", version="v1", kind="Nope", plural="nopes", namespaced=True)
    wrong = connection_to(sim, BearerToken(token="not-the-token-" + "x" * 20))
    errors: dict[str, type[BaseException]] = {}

    async def main() -> None:
        transport = AsyncKube(kube.connection)
        intruder = AsyncKube(wrong)
        try:
            items, rv = await transport.list(CM, namespace="default")
            # every namespace also holds kube-root-ca.crt, published by the control plane
            names = sorted(o["metadata"]["name"] for o in items)
            assert names == ["a", "kube-root-ca.crt"]
            assert all(o["kind"] == "ConfigMap" for o in items) and rv
            assert transport.protocol == ("HTTP/2" if sim.http2 else "HTTP/1.1")
            await anyio.to_thread.run_sync(kube.apply, tracked_cm("b"))
            seen = []
            async for event in transport.watch(CM, resource_version=rv, timeout_s=1):
                seen.append((event.type, event.object["metadata"]["name"]))
            assert ("ADDED", "b") in seen
            for what, call in (
                ("missing kind", transport.list(missing)),
                ("wrong token", intruder.list(CM)),
            ):
                try:
                    await call
                except KubeError as exc:
                    errors[what] = type(exc)
            # history forgotten: a watch from before it is 410 Gone
            await anyio.to_thread.run_sync(kube.apply, tracked_cm("c"))
            await anyio.to_thread.run_sync(sim.compact, "one")
            try:
                async for _ in transport.watch(CM, resource_version=rv, timeout_s=1):
                    pass
            except KubeError as exc:
                errors["old version"] = type(exc)
        finally:
            await transport.aclose()
            await intruder.aclose()

    try:
        anyio.run(main)
    finally:
        wrong.close()
    assert errors == {"missing kind": NotFound, "wrong token": Unauthorized, "old version": Gone}


def test_an_outage_is_reported_backed_off_and_recovered_from(
    sim: SimServer, kube: KubeClient
) -> None:
    states: list[KubeError | None] = []
    cache = LiveCache(
        AsyncKube(kube.connection),
        owner_of=owner,
        on_change=lambda _apps: None,
        on_state=lambda _res, err: states.append(err),
        window_s=1.0,
    )
    kube.apply(tracked_cm("before"))
    with running(cache, CM):
        wait_until(lambda: cache.is_current(("", "ConfigMap")), "the first list")
        sim.faults("one").set(outage="refuse")
        try:
            wait_until(lambda: cache.stats.errors >= 2, "two failed watches (a retry)")
            assert not cache.is_current(("", "ConfigMap"))
            assert all(isinstance(e, Transient) for e in states if e is not None)
        finally:
            sim.faults("one").clear()
        kube.apply(tracked_cm("after"))
        wait_until(
            lambda: cache.is_current(("", "ConfigMap")) and len(cache.tracked("shop")) == 2,
            "the watch to resume and see the change made after the outage",
        )
        wait_until(lambda: states[-1] is None, "the cluster reported as answering again")


def test_an_exec_plugin_token_is_refreshed_by_the_async_transport(
    sim: SimServer, kube: KubeClient, tmp_path: Path
) -> None:
    # The plugin's first token (taken when the connection is built) is refused by the
    # cluster; every later run gives the real one. Each token expires within the refresh
    # margin, so every request must ask the plugin again: a transport that kept the token
    # it started with would get 401 and never list.
    runs = tmp_path / "runs"
    plugin = tmp_path / "plugin.sh"
    plugin.write_text(
        "#!/bin/sh\n"
        f"echo run >> {runs}\n"
        f'if [ "$(wc -l < {runs})" -eq 1 ]; then tok=stale-token; else tok={sim.token("one")}; fi\n'
        "exp=$(date -u -d '+30 seconds' +%Y-%m-%dT%H:%M:%SZ)\n"
        'printf \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
        '"status":{"token":"%s","expirationTimestamp":"%s"}}\' "$tok" "$exp"\n'
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    connection = connection_to(
        sim, ExecPlugin(api_version="client.authentication.k8s.io/v1", command=str(plugin))
    )
    states: list[KubeError | None] = []
    try:
        cache = LiveCache(
            AsyncKube(connection),  # CM is given as is: no discovery
            owner_of=owner,
            on_change=lambda _apps: None,
            on_state=lambda _res, err: states.append(err),
            window_s=1.0,
        )
        kube.apply(tracked_cm("one"))
        with running(cache, CM):
            wait_until(lambda: cache.is_current(("", "ConfigMap")), "the first list")
            first_runs = len(runs.read_text().splitlines())
            kube.apply(tracked_cm("two"))
            wait_until(lambda: len(cache.tracked("shop")) == 2, "the watch event")
            wait_until(
                lambda: len(runs.read_text().splitlines()) > first_runs + 1,
                "the plugin asked again for the next watch windows",
            )
        assert not [e for e in states if e is not None]
    finally:
        connection.close()


def test_the_async_client_has_every_verb_with_the_sync_clients_error_kinds(
    sim: SimServer, kube: KubeClient
) -> None:
    """get / get_or_none / apply (and its dry run) / create / replace / merge_patch /
    delete, discovery and the server version, on the loop, against a real ``hub sim``;
    what each did is checked with the blocking client (a second opinion)."""
    seen: dict[str, Any] = {}

    async def main() -> None:
        client = AsyncKube(kube.connection)
        try:
            resources = await client.resources()
            assert resources[("apps", "Deployment")].plural == "deployments"
            seen["version"] = await client.server_version()
            cm_res = await client.resource_for("", "ConfigMap")
            with pytest.raises(NotFound, match="is not served"):
                await client.resource_for("example.com", "Nope")

            # a dry run's verdict is that it returns (its answer is not decoded), and it
            # writes nothing; one the server refuses raises as the apply would
            assert await client.apply(tracked_cm("v"), dry_run=True) == {}
            with pytest.raises(Invalid):
                await client.apply(tracked_cm("Bad_Name"), dry_run=True)
            seen["after dry run"] = await client.get_or_none(cm_res, "v", "default")
            applied = await client.apply(tracked_cm("v"))
            managers = [m["manager"] for m in applied["metadata"]["managedFields"]]
            assert "gitops-hub" in managers
            got = await client.get(cm_res, "v", "default")
            assert got["kind"] == "ConfigMap" and got["data"] == {"k": "v"}

            created = await client.create(tracked_cm("w"))
            assert created["metadata"]["uid"]
            with pytest.raises(Conflict):  # already exists
                await client.create(tracked_cm("w"))

            replaced = await client.replace({**tracked_cm("w"), "data": {"k": "replaced"}})
            assert replaced["data"] == {"k": "replaced"}
            fresh = await client.replace({**tracked_cm("x"), "data": {"k": "new"}})
            assert fresh["metadata"]["name"] == "x"  # absent: created

            patched = await client.merge_patch(
                cm_res, "w", "default", {"metadata": {"labels": {"patched": "yes"}}}
            )
            assert patched["metadata"]["labels"] == {"patched": "yes"}
            stale = {"metadata": {"resourceVersion": "1", "labels": {"stale": "yes"}}}
            with pytest.raises(Conflict):  # an outdated resourceVersion
                await client.merge_patch(cm_res, "w", "default", stale)

            with pytest.raises(Invalid):
                await client.apply({**tracked_cm("Bad_Name")})

            assert await client.delete(cm_res, "w", "default", propagation="Background")
            assert not await client.delete(cm_res, "never-was", "default")
            with pytest.raises(NotFound):
                await client.get(cm_res, "never-was", "default")
        finally:
            await client.aclose()

    anyio.run(main)
    assert seen["version"] == kube.server_version() and seen["version"]
    assert seen["after dry run"] is None
    cm_res = kube.resource_for("", "ConfigMap")
    assert kube.get(cm_res, "v", "default")["data"] == {"k": "v"}
    assert kube.get(cm_res, "x", "default")["data"] == {"k": "new"}
    assert kube.get_or_none(cm_res, "w", "default") is None or kube.get(cm_res, "w", "default")[
        "metadata"
    ].get("deletionTimestamp")


def requests_asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of every request ``AsyncKube`` sends from now on, in order."""
    asked: list[str] = []
    original = AsyncKube._request

    async def counted(client: AsyncKube, method: str, path: str, **kw: Any) -> Any:
        asked.append(path)
        return await original(client, method, path, **kw)

    monkeypatch.setattr(AsyncKube, "_request", counted)
    return asked


def test_one_discovery_serves_concurrent_callers_of_a_cluster(
    sim: SimServer, kube: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = requests_asked(monkeypatch)

    async def main() -> None:
        client = AsyncKube(kube.connection)
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(client.resources)
                    tg.start_soon(client.with_retry(None).resources)
        finally:
            await client.aclose()

    anyio.run(main)
    assert asked.count("/api") == 1 and asked.count("/apis") == 1


def test_a_write_guard_refuses_writes_and_never_reads(sim: SimServer, kube: KubeClient) -> None:
    """Hub replicas fence spoke writes (hub.leases): the guard runs before every
    POST/PUT/PATCH/DELETE of the client and its views; what it raises reaches the caller;
    GETs (and watches) are never refused."""

    class Refused(Exception):
        pass

    allowed = [True]
    checks: list[str] = []

    def guard() -> None:
        checks.append("write")
        if not allowed[0]:
            raise Refused("lease lost")

    async def main() -> None:
        client = AsyncKube(kube.connection, write_guard=guard)
        try:
            await client.apply(tracked_cm("fenced"))
            allowed[0] = False
            for write in (
                client.with_retry(None).apply(tracked_cm("fenced-2")),
                client.create(tracked_cm("fenced-3")),
                client.delete(CM, "fenced", "default"),
            ):
                with pytest.raises(Refused):
                    await write
            assert (await client.get(CM, "fenced", "default"))["metadata"]["name"] == "fenced"
            items, _ = await client.list(CM, namespace="default")
            assert "fenced-2" not in {o["metadata"]["name"] for o in items}
        finally:
            await client.aclose()

    anyio.run(main)
    assert len(checks) == 4


def test_a_cluster_s_requests_share_a_few_kept_alive_connections(
    sim: SimServer, kube: KubeClient
) -> None:
    async def main() -> tuple[int, int]:
        client = AsyncKube(kube.connection)
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(6 * REQUEST_SLOTS):
                    tg.start_soon(client.ping)
            burst = client.connections_opened
            async with anyio.create_task_group() as tg:
                for _ in range(6 * REQUEST_SLOTS):
                    tg.start_soon(client.ping)
            return burst, client.connections_opened
        finally:
            await client.aclose()

    burst, after = anyio.run(main)
    if sim.http2:
        assert burst == 1  # every request a stream of the one connection
    else:
        assert 1 <= burst <= REQUEST_SLOTS  # not one connection (and handshake) per request
    assert after == burst  # the second burst reuses them


def test_a_request_waiting_for_a_slot_keeps_its_deadline(sim: SimServer, kube: KubeClient) -> None:
    # Every slot is held by a request the cluster answers in 2 s; one more with a 3 s
    # deadline waits 2 s for a slot, then 2 s for its answer: past its deadline, so it
    # fails (it succeeded after 4 s when only the request itself was timed).
    outcome: list[str] = []

    async def main() -> None:
        client = AsyncKube(kube.connection)
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(REQUEST_SLOTS):
                    tg.start_soon(client.ping)
                await anyio.sleep(0.2)
                try:
                    await client.ping(timeout_s=3.0)
                    outcome.append("answered")
                except Transient as exc:
                    outcome.append(str(exc))
        finally:
            await client.aclose()

    sim.faults("one").set(latency=2.0)
    try:
        anyio.run(main)
    finally:
        sim.faults("one").clear()
    assert outcome == ["one: GET /version: no answer within 3s"]


def test_answered_at_moves_with_every_2xx_answer_and_only_then(
    sim: SimServer, kube: KubeClient
) -> None:
    # the worker skips its liveness probe while this is recent (hub.worker.connection)
    missing = ApiResource(group="", version="v1", kind="Nope", plural="nopes", namespaced=True)

    async def main() -> list[float]:
        client = AsyncKube(kube.connection)
        try:
            seen = [client.answered_at]
            await client.ping()
            seen.append(client.answered_at)
            await anyio.sleep(0.01)
            await client.list(CM, namespace="default")
            seen.append(client.answered_at)
            with pytest.raises(NotFound):
                await client.list(missing)
            seen.append(client.answered_at)
            return seen
        finally:
            await client.aclose()

    before, pinged, listed, refused = anyio.run(main)
    assert before == 0.0 < pinged < listed == refused


def test_discovery_is_two_requests_and_finds_what_the_legacy_protocol_finds(
    sim: SimServer, kube: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Aggregated discovery: ``/api`` and ``/apis`` carry every kind; a server that answers
    plain JSON (here: a client that does not ask) takes a request per group version, and
    both clients end with the same kinds at the same versions."""
    asked = requests_asked(monkeypatch)

    async def discover() -> dict[tuple[str, str], ApiResource]:
        client = AsyncKube(kube.connection)
        try:
            return await client.resources(refresh=True)
        finally:
            await client.aclose()

    aggregated = anyio.run(discover)
    assert asked == ["/api", "/apis"]
    assert kube.resources(refresh=True) == aggregated  # the blocking client, same answer

    asked.clear()
    monkeypatch.setattr(kube_module, "DISCOVERY_ACCEPT", "application/json")
    legacy = anyio.run(discover)
    assert asked[:2] == ["/api", "/apis"] and len(asked) > 2
    assert legacy == aggregated
    assert kube.resources(refresh=True) == legacy
    deployment = aggregated[("apps", "Deployment")]
    assert (deployment.version, deployment.plural, deployment.namespaced) == (
        "v1",
        "deployments",
        True,
    )
    assert {"list", "watch", "patch"} <= deployment.verbs
