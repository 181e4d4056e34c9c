"""Fault injection hits only its own cluster; the admin endpoint and Python API drive it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import urllib3
from kubernetes import client, config

from clusters.errors import ClusterUsageError
from clusters.sim import SimServer

pytestmark = [pytest.mark.e2e, pytest.mark.sim_only("injects faults")]


@pytest.fixture
def pair(
    sim_factory: Callable[..., SimServer],
) -> Iterator[tuple[SimServer, client.CoreV1Api, client.CoreV1Api]]:
    server = sim_factory(clusters=["sick", "well"], controllers=False)
    clients = [
        config.new_client_from_config(config_file=str(server.kubeconfig_path), context=n)
        for n in ("sick", "well")
    ]
    for c in clients:
        c.configuration.retries = 0
    yield server, client.CoreV1Api(clients[0]), client.CoreV1Api(clients[1])
    for c in clients:
        c.close()


@pytest.mark.parametrize("code", [500, 503])
def test_an_error_rate_of_one_fails_every_request_of_that_cluster_only(
    pair: tuple[SimServer, client.CoreV1Api, client.CoreV1Api], code: int
) -> None:
    server, sick, well = pair
    server.faults("sick").set(error_rate=1.0, error_code=code)
    with pytest.raises(client.ApiException) as err:
        sick.list_namespace()
    assert err.value.status == code
    assert len(well.list_namespace().items) >= 4
    server.faults("sick").clear()
    assert len(sick.list_namespace().items) >= 4


def test_latency_slows_only_its_cluster(
    pair: tuple[SimServer, client.CoreV1Api, client.CoreV1Api],
) -> None:
    server, sick, well = pair
    server.faults("sick").set(latency=5.0)
    with pytest.raises(urllib3.exceptions.HTTPError, match="Read timed out"):
        sick.list_namespace(_request_timeout=0.3)
    assert well.list_namespace(_request_timeout=3).items


@pytest.mark.parametrize("outage", ["refuse", "hang"])
def test_an_outage_cuts_off_only_its_cluster(
    pair: tuple[SimServer, client.CoreV1Api, client.CoreV1Api], outage: str
) -> None:
    server, sick, well = pair
    server.faults("sick").set(outage=outage)
    with pytest.raises((urllib3.exceptions.HTTPError, OSError)):
        sick.list_namespace(_request_timeout=1)
    assert well.list_namespace(_request_timeout=3).items
    server.faults("sick").clear()
    assert sick.list_namespace(_request_timeout=3).items


def test_fault_settings_are_checked(
    pair: tuple[SimServer, client.CoreV1Api, client.CoreV1Api],
) -> None:
    server, _, _ = pair
    with pytest.raises(ClusterUsageError, match="error_rate"):
        server.faults("sick").set(error_rate=2.0)
    with pytest.raises(ClusterUsageError, match="outage"):
        server.faults("sick").set(outage="explode")
    with pytest.raises(ClusterUsageError, match="watch_delay"):
        server.faults("sick").set(watch_delay=-1)


def _admin(
    server: SimServer, method: str, path: str, body: object | None = None, token: str | None = None
) -> urllib3.BaseHTTPResponse:
    import ssl

    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    pool = urllib3.PoolManager(ssl_context=ctx)
    headers = {
        "Authorization": f"Bearer {token if token is not None else server.admin_token}",
        "Content-Type": "application/json",
    }
    data = json.dumps(body).encode() if body is not None else None
    try:
        return pool.request(method, server.url + path, body=data, headers=headers, timeout=10)
    finally:
        pool.clear()


def test_the_admin_endpoint_sets_and_clears_faults(
    pair: tuple[SimServer, client.CoreV1Api, client.CoreV1Api],
) -> None:
    server, sick, _ = pair
    assert _admin(server, "GET", "/sim/clusters", token="wrong").status == 401
    listed = json.loads(_admin(server, "GET", "/sim/clusters").data)
    assert [c["name"] for c in listed["clusters"]] == ["sick", "well"]
    resp = _admin(server, "PUT", "/sim/clusters/sick/faults", {"error_rate": 1, "error_code": 500})
    assert resp.status == 200 and json.loads(resp.data)["error_rate"] == 1
    with pytest.raises(client.ApiException):
        sick.list_namespace()
    assert _admin(server, "PUT", "/sim/clusters/sick/faults", {"error_rate": "lots"}).status == 400
    assert _admin(server, "DELETE", "/sim/clusters/sick/faults").status == 200
    assert sick.list_namespace().items


def test_clusters_come_and_go_at_run_time(sim_factory: Callable[..., SimServer]) -> None:
    server = sim_factory(clusters=1, controllers=False)
    server.add_cluster("extra")
    assert server.cluster_names == ["sim-1", "extra"]
    api = config.new_client_from_config(config_file=str(server.kubeconfig_path), context="extra")
    try:
        assert client.CoreV1Api(api).list_namespace().items
        resp = _admin(server, "POST", "/sim/clusters", {"name": "by-admin"})
        assert resp.status == 201 and json.loads(resp.data)["name"] == "by-admin"
        assert _admin(server, "POST", "/sim/clusters", {"name": "Bad Name"}).status == 400
        assert _admin(server, "DELETE", "/sim/clusters/by-admin").status == 200
        server.remove_cluster("extra")
        with pytest.raises(client.ApiException) as err:
            client.CoreV1Api(api).list_namespace()
        assert err.value.status == 404
        assert server.cluster_names == ["sim-1"]
    finally:
        api.close()


def _open_watch(server: SimServer, name: str, read_s: float = 10) -> urllib3.BaseHTTPResponse:
    import ssl

    pool = urllib3.PoolManager(
        ssl_context=ssl.create_default_context(cadata=server.ca_pem.decode())
    )
    return pool.request(
        "GET",
        f"{server.server_url(name)}/api/v1/namespaces/default/configmaps?watch=true",
        headers={"Authorization": f"Bearer {server.token(name)}"},
        preload_content=False,
        timeout=urllib3.Timeout(connect=5, read=read_s),
    )


def _drain(stream: urllib3.BaseHTTPResponse) -> tuple[list[dict[str, object]], str]:
    """The events until the stream ends, and how it ended (eof / dropped)."""
    events: list[dict[str, object]] = []
    try:
        for line in stream.stream(1 << 16):
            events += [json.loads(x) for x in line.splitlines() if x.strip()]
    except urllib3.exceptions.ReadTimeoutError:
        return events, "still open"
    except urllib3.exceptions.ProtocolError:
        return events, "dropped"
    return events, "eof"


@pytest.mark.parametrize(
    ("fault", "ended"),
    [({"error_rate": 1.0, "error_code": 503}, "eof"), ({"outage": "refuse"}, "dropped")],
)
def test_an_error_or_outage_fault_ends_the_watch_streams_already_open(
    pair: tuple[SimServer, client.CoreV1Api, client.CoreV1Api],
    fault: dict[str, object],
    ended: str,
) -> None:
    server, _, well = pair
    sick_stream, well_stream = _open_watch(server, "sick"), _open_watch(server, "well")
    try:
        server.faults("sick").set(**fault)  # type: ignore[arg-type]
        _, how = _drain(sick_stream)
        assert how == ended
        # The other cluster's stream still delivers.
        well.create_namespaced_config_map(
            "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="after-fault"))
        )
        for line in well_stream.stream(1 << 16):
            if b"after-fault" in line:
                break
    finally:
        server.faults("sick").clear()
        sick_stream.release_conn()
        well_stream.release_conn()


def test_a_watch_delay_holds_back_the_events_of_its_cluster_only(
    pair: tuple[SimServer, client.CoreV1Api, client.CoreV1Api],
) -> None:
    server, sick, well = pair
    sick_stream, well_stream = _open_watch(server, "sick", read_s=1), _open_watch(server, "well")
    try:
        server.faults("sick").set(watch_delay=60.0)  # streams already open are late too
        for api in (sick, well):  # requests are not slowed
            api.create_namespaced_config_map(
                "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="late"))
            )
        for line in well_stream.stream(1 << 16):
            if b'"late"' in line:
                break
        events, how = _drain(sick_stream)  # the existing objects' ADDED came before the fault
        names = [e["object"]["metadata"]["name"] for e in events]  # type: ignore[index]
        assert how == "still open" and "late" not in names  # it is a minute away
    finally:
        server.faults("sick").clear()
        sick_stream.release_conn()
        well_stream.release_conn()
