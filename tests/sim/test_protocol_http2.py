"""``hub sim serve --http2``: HTTP/2 offered by ALPN beside HTTP/1.1, as kube-apiserver
does. Real clients only: kubectl (Go, takes h2 when offered), the official client
(urllib3, HTTP/1.1) on the same port, and a raw ``h2`` client for what the others do not
show (the server's SETTINGS, flow control with the protocol's small default window, a
reset watch, an oversized body), and our own engine for a stream past the limit."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import pytest
import urllib3
import yaml

from clusters import h2wire
from clusters.h2wire import PlainHpackEncoder
from clusters.sim import SimServer
from clusters.sim.http2 import MAX_STREAMS
from tests.conftest import run_kubectl

pytestmark = [pytest.mark.e2e, pytest.mark.sim_only("the simulator's HTTP/2")]


@pytest.fixture
def sim(sim_factory: Callable[..., SimServer]) -> SimServer:
    return sim_factory(clusters=["one", "two"], http2=True)


def stats(sim: SimServer) -> dict[str, Any]:
    pool = urllib3.PoolManager(ssl_context=ssl.create_default_context(cadata=sim.ca_pem.decode()))
    try:
        resp = pool.request(
            "GET",
            sim.url + "/sim/stats",
            headers={"Authorization": f"Bearer {sim.admin_token}"},
            timeout=10,
        )
    finally:
        pool.clear()
    assert resp.status == 200, resp.data
    return dict(json.loads(resp.data))


def h2_socket(sim: SimServer) -> ssl.SSLSocket:
    """A TLS connection to the simulator that chose h2 in its handshake."""
    url = urlsplit(sim.url)
    ctx = ssl.create_default_context(cadata=sim.ca_pem.decode())
    ctx.set_alpn_protocols(["h2"])
    sock = ctx.wrap_socket(
        socket.create_connection((url.hostname, url.port), timeout=10),
        server_hostname=url.hostname,
    )
    assert sock.selected_alpn_protocol() == "h2"
    return sock


class RawH2:
    """A blocking HTTP/2 client on the ``h2`` library with the protocol's defaults (a
    64 KiB window): it acknowledges data as it arrives, nothing more."""

    def __init__(self, sim: SimServer) -> None:
        self.sock = h2_socket(sim)
        self.authority = urlsplit(sim.url).netloc.encode()
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.h2.initiate_connection()
        self.sock.sendall(self.h2.data_to_send())
        self.bodies: dict[int, bytearray] = {}
        self.status: dict[int, int] = {}
        self.ended: set[int] = set()
        self.reset: set[int] = set()

    def request(self, path: str, token: str, method: str = "GET", body: bytes | None = None) -> int:
        sid = self.h2.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", self.authority),
            (b":path", path.encode()),
            (b"authorization", f"Bearer {token}".encode()),
            (b"accept", b"application/json"),
        ]
        if body is not None:
            headers.append((b"content-type", b"application/json"))
        self.h2.send_headers(sid, headers, end_stream=body is None)
        if body is not None:  # in frames the server takes (its window is 1 MiB)
            step = self.h2.max_outbound_frame_size
            for start in range(0, len(body), step):
                end = start + step >= len(body)
                self.h2.send_data(sid, body[start : start + step], end_stream=end)
        self.sock.sendall(self.h2.data_to_send())
        self.bodies[sid] = bytearray()
        return sid

    def pump(self, until: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, "no answer in time"
            data = self.sock.recv(65536)
            assert data, "the server closed the connection"
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    self.status[event.stream_id or 0] = int(dict(event.headers or ())[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    sid = event.stream_id or 0
                    self.bodies[sid] += event.data or b""
                    self.h2.acknowledge_received_data(event.flow_controlled_length or 0, sid)
                elif isinstance(event, h2.events.StreamEnded):
                    self.ended.add(event.stream_id or 0)
                elif isinstance(event, h2.events.StreamReset):
                    self.reset.add(event.stream_id or 0)
            out = self.h2.data_to_send()
            if out:
                self.sock.sendall(out)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(sim: SimServer) -> Iterator[RawH2]:
    client = RawH2(sim)
    try:
        yield client
    finally:
        client.close()


def test_kubectl_speaks_http2_to_it_on_one_connection(sim: SimServer, tmp_path: Any) -> None:
    before = stats(sim)
    manifest = yaml.safe_dump_all(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}"}} for i in range(5)
    )
    applied = run_kubectl(
        sim.kubeconfig_path, "apply", "-f", "-", context="one", input=manifest,
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    got = run_kubectl(
        sim.kubeconfig_path, "get", "cm", "-o", "name", context="one",
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    assert got.returncode == 0 and "configmap/cm-4" in got.stdout, got.stderr
    after = stats(sim)
    # kubectl runs twice; each run multiplexes discovery, GETs and PATCHes on one connection
    assert after["h2_connections_opened"] - before["h2_connections_opened"] == 2
    assert after["h2_streams_opened"] - before["h2_streams_opened"] >= 5 + 5 + 1


def test_an_http1_client_is_served_on_the_same_port(sim: SimServer) -> None:
    from kubernetes import client, config

    api = client.CoreV1Api(
        config.new_client_from_config(config_file=str(sim.kubeconfig_path), context="one")
    )
    before = stats(sim)
    names = [ns.metadata.name for ns in api.list_namespace().items]
    assert "default" in names
    after = stats(sim)
    assert after["h2_connections_opened"] == before["h2_connections_opened"]
    assert after["http1_connections_open"] >= 1


def test_the_server_advertises_go_s_stream_limit(sim: SimServer, raw: RawH2) -> None:
    sid = raw.request("/clusters/one/version", sim.token("one"))
    raw.pump(lambda: sid in raw.ended)
    assert raw.status[sid] == 200
    assert raw.h2.remote_settings.max_concurrent_streams == MAX_STREAMS == 250
    assert raw.h2.remote_settings.enable_push == 0


def test_a_large_list_waits_for_the_client_s_window(sim: SimServer, raw: RawH2) -> None:
    token = sim.token("one")
    data = {"k": "x" * 4096}
    for i in range(60):  # ~250 KiB listed, four times the client's 64 KiB window
        body = json.dumps({"metadata": {"name": f"big-{i}"}, "data": data}).encode()
        sid = raw.request("/clusters/one/api/v1/namespaces/default/configmaps", token, "POST", body)
        raw.pump(lambda sid=sid: sid in raw.ended)  # type: ignore[misc]
        assert raw.status[sid] == 201, raw.bodies[sid]
    sid = raw.request("/clusters/one/api/v1/namespaces/default/configmaps", token)
    raw.pump(lambda: sid in raw.ended)
    listed = json.loads(bytes(raw.bodies[sid]))
    assert len(raw.bodies[sid]) > 4 * 65535
    assert sum(1 for o in listed["items"] if o["metadata"]["name"].startswith("big-")) == 60


def test_a_watch_streams_events_and_a_reset_ends_it_alone(sim: SimServer, raw: RawH2) -> None:
    token = sim.token("one")
    base = "/clusters/one/api/v1/namespaces/default/configmaps"
    listed = raw.request(base, token)
    raw.pump(lambda: listed in raw.ended)
    rv = json.loads(bytes(raw.bodies[listed]))["metadata"]["resourceVersion"]
    watching = stats(sim)["watches"]  # the simulated controllers' own
    watch = raw.request(f"{base}?watch=1&resourceVersion={rv}", token)
    raw.pump(lambda: watch in raw.status)
    assert stats(sim)["watches"] == watching + 1
    created = raw.request(base, token, "POST", json.dumps({"metadata": {"name": "w"}}).encode())
    raw.pump(lambda: created in raw.ended and b"\n" in raw.bodies[watch])
    event = json.loads(bytes(raw.bodies[watch]).splitlines()[0])
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "w")
    raw.h2.reset_stream(watch)
    raw.sock.sendall(raw.h2.data_to_send())
    deadline = time.monotonic() + 10
    while stats(sim)["watches"] > watching and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats(sim)["watches"] == watching  # the server stopped watching for it
    after = raw.request("/clusters/one/version", token)  # the connection lives on
    raw.pump(lambda: after in raw.ended)
    assert raw.status[after] == 200


def test_an_oversized_body_is_refused_and_the_connection_kept(sim: SimServer, raw: RawH2) -> None:
    token = sim.token("one")
    huge = json.dumps({"metadata": {"name": "huge"}, "data": {"k": "x" * (4 << 20)}}).encode()
    sid = raw.h2.get_next_available_stream_id()
    raw.h2.send_headers(
        sid,
        [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", raw.authority),
            (b":path", b"/clusters/one/api/v1/namespaces/default/configmaps"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
        ],
    )
    raw.bodies[sid] = bytearray()
    sent = 0
    while sent < len(huge):  # within the server's windows, as they open
        window = min(raw.h2.local_flow_control_window(sid), raw.h2.max_outbound_frame_size)
        if window == 0:
            raw.pump(lambda: raw.h2.local_flow_control_window(sid) > 0)
            continue
        chunk = huge[sent : sent + window]
        sent += len(chunk)
        raw.h2.send_data(sid, chunk, end_stream=sent == len(huge))
        raw.sock.sendall(raw.h2.data_to_send())
    raw.pump(lambda: sid in raw.ended)
    assert raw.status[sid] == 413
    assert json.loads(bytes(raw.bodies[sid]))["reason"] == "RequestEntityTooLarge"
    after = raw.request("/clusters/one/version", token)
    raw.pump(lambda: after in raw.ended)
    assert raw.status[after] == 200


def test_an_outage_drops_that_cluster_s_connection_only(sim: SimServer) -> None:
    one, two = RawH2(sim), RawH2(sim)
    try:
        for client, name in ((one, "one"), (two, "two")):
            sid = client.request(f"/clusters/{name}/version", sim.token(name))
            client.pump(lambda c=client, s=sid: s in c.ended)  # type: ignore[misc]
        sim.faults("one").set(outage="refuse")
        try:
            sid = one.request("/clusters/one/version", sim.token("one"))
            with pytest.raises((AssertionError, OSError), match=r"closed|reset"):
                one.pump(lambda: sid in one.ended)
            sid = two.request("/clusters/two/version", sim.token("two"))
            two.pump(lambda: sid in two.ended)
            assert two.status[sid] == 200
        finally:
            sim.faults("one").clear()
    finally:
        one.close()
        two.close()


def test_stopping_says_goaway(sim_factory: Callable[..., SimServer]) -> None:
    server = sim_factory(clusters=["one"], http2=True)
    client = RawH2(server)
    try:
        sid = client.request("/clusters/one/version", server.token("one"))
        client.pump(lambda: sid in client.ended)
        server.stop()
        terminated: list[h2.events.ConnectionTerminated] = []
        client.sock.settimeout(10)
        while not terminated:
            data = client.sock.recv(65536)
            if not data:
                break
            terminated += [
                e
                for e in client.h2.receive_data(data)
                if isinstance(e, h2.events.ConnectionTerminated)
            ]
        assert terminated and terminated[0].last_stream_id == sid
    finally:
        client.close()


def test_an_answer_over_one_frame_needs_no_window_update(sim: SimServer, raw: RawH2) -> None:
    # 20 KiB: more than one 16 KiB frame, less than the client's 64 KiB window, so the
    # client has no reason to send a WINDOW_UPDATE; a server that waited for one after
    # the first frame stalled the answer for good (a burst of watch events, too)
    token = sim.token("one")
    body = json.dumps({"metadata": {"name": "wide"}, "data": {"k": "x" * 20480}}).encode()
    sid = raw.request("/clusters/one/api/v1/namespaces/default/configmaps", token, "POST", body)
    raw.pump(lambda: sid in raw.ended)
    assert raw.status[sid] == 201
    sid = raw.request("/clusters/one/api/v1/namespaces/default/configmaps/wide", token)
    raw.pump(lambda: sid in raw.ended, timeout=5)
    assert len(json.loads(bytes(raw.bodies[sid]))["data"]["k"]) == 20480


def test_a_stream_past_the_limit_is_refused_alone(sim: SimServer) -> None:
    # The h2 library will not open more streams than the server allows, so our own engine
    # plays a client that does: MAX_STREAMS watches held open, then one more request.
    url = urlsplit(sim.url)
    sock = h2_socket(sim)
    conn = h2wire.ClientConnection(PlainHpackEncoder())
    conn.initiate({h2wire.ENABLE_PUSH: 0}, 1 << 20)
    token = f"Bearer {sim.token('one')}".encode()

    def get(path: str) -> int:
        sid = conn.next_stream_id()
        headers = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", url.netloc.encode()),
            (b":path", path.encode()),
            (b"authorization", token),
        ]
        conn.send_headers(sid, headers, end_stream=True)
        return sid

    answered: dict[int, int] = {}
    ended: set[int] = set()
    reset: dict[int, int] = {}

    def pump(until: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 15
        while not until():
            sock.sendall(conn.data_to_send())
            assert time.monotonic() < deadline, "no answer in time"
            data = sock.recv(65536)
            assert data, "the server closed the connection"
            for event in conn.receive(data):
                if event[0] == h2wire.RESPONSE:
                    answered[event[1]] = int(dict(event[2])[b":status"])
                elif event[0] == h2wire.DATA:
                    conn.acknowledge(event[1], event[3])
                elif event[0] == h2wire.ENDED:
                    ended.add(event[1])
                elif event[0] == h2wire.RESET:
                    reset[event[1]] = event[2]

    try:
        pump(lambda: conn.max_concurrent_streams == MAX_STREAMS)
        watches = [
            get("/clusters/one/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=60")
            for _ in range(MAX_STREAMS)
        ]
        pump(lambda: all(w in answered for w in watches))
        extra = get("/clusters/one/version")
        pump(lambda: extra in reset)
        assert reset[extra] == h2wire.ErrorCode.REFUSED_STREAM
        assert not set(watches) & (ended | set(reset))  # the others carry on
        # the reset goes out before the next request (one write): it frees a slot
        conn.reset_stream(watches[0], h2wire.ErrorCode.CANCEL)
        after = get("/clusters/one/version")
        pump(lambda: after in ended)
        assert answered[after] == 200
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", h2wire.ErrorCode.PROTOCOL_ERROR),  # not HTTP/2
        # a request on an even (server's) stream
        (h2wire.PREFACE + b"\0\0\0\x04\0\0\0\0\0" + b"\0\0\x01\x01\x05\0\0\0\x02\x82",
         h2wire.ErrorCode.PROTOCOL_ERROR),
        # a frame over 16 KiB
        (h2wire.PREFACE + b"\x01\0\0\0\0\0\0\0\0", h2wire.ErrorCode.FRAME_SIZE_ERROR),
    ],
)  # fmt: skip
def test_a_client_breaking_the_protocol_loses_its_connection_alone(
    sim: SimServer, raw: RawH2, wire: bytes, code: int
) -> None:
    sock = h2_socket(sim)
    try:
        sock.sendall(wire)
        received = b""
        while chunk := sock.recv(65536):  # until the server closes it
            received += chunk
    finally:
        sock.close()
    frames = []
    while len(received) >= 9:
        length = int.from_bytes(received[:3], "big")
        frames.append((received[3], received[9 : 9 + length]))
        received = received[9 + length :]
    goaways = [payload for kind, payload in frames if kind == 0x7]
    assert len(goaways) == 1 and int.from_bytes(goaways[0][4:8], "big") == code
    # the server and its other connections carry on
    sid = raw.request("/clusters/one/version", sim.token("one"))
    raw.pump(lambda: sid in raw.ended)
    assert raw.status[sid] == 200
