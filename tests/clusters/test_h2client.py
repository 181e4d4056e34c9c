"""The HTTP/2 client connection (``clusters.h2client``) against a real HTTP/2 server on
loopback, TLS with ALPN: multiplexing, flow control both ways, stream limits, resets,
GOAWAY, a lost connection and the HTTP/1.1 fallback.

The server here is the ``h2`` library's server side with just enough routing to provoke
each case (a Kubernetes API over HTTP/2 is ``hub sim serve --http2``'s job, tested with
the sim); what it proves is the client's protocol handling, which the simulator cannot
be made to misbehave for.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import pytest

from clusters.h2client import Http2Connection, StreamFailed
from clusters.sim.tls import CertificateAuthority

Handler = Callable[["_ServerConn", int, dict[bytes, bytes], bytes], Awaitable[None]]


class _ServerConn(asyncio.Protocol):
    def __init__(self, server: H2TestServer) -> None:
        self.server = server
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self.transport: asyncio.Transport | None = None
        self.bodies: dict[int, bytearray] = {}
        self.headers: dict[int, dict[bytes, bytes]] = {}
        self.window_open = asyncio.Event()
        self.reset_streams: set[int] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections.append(self)
        if self.server.mute:
            return  # TLS (and ALPN h2) accepted, then not a byte of HTTP/2
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.server.max_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.server.receive_window,
            },
        )
        self.h2.initiate_connection()
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.server.black_hole or self.server.mute:
            return  # a peer that vanished without closing: nothing read, nothing sent
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            # h2 takes no frame once it sent a GOAWAY, not even the RST_STREAM of a stream
            # the GOAWAY let live (RFC 9113 6.8 allows them): a peer that drops them
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                sid = event.stream_id or 0
                self.headers[sid] = dict(event.headers or ())
                self.bodies[sid] = bytearray()
                self.server.peak_streams = max(self.server.peak_streams, len(self.bodies))
            elif isinstance(event, h2.events.DataReceived):
                sid = event.stream_id or 0
                self.bodies[sid] += event.data or b""
                # read "slowly": the window opens only once the data was taken in
                self.h2.acknowledge_received_data(event.flow_controlled_length or 0, sid)
            elif isinstance(event, h2.events.StreamEnded):
                sid = event.stream_id or 0
                task = asyncio.ensure_future(self.serve(sid))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            elif isinstance(event, h2.events.StreamReset):
                self.reset_streams.add(event.stream_id or 0)
                self.server.resets.append(event.stream_id or 0)
                self.window_open.set()
            elif isinstance(event, h2.events.WindowUpdated):
                self.window_open.set()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.window_open.set()
        for task in self.tasks:
            task.cancel()

    async def serve(self, sid: int) -> None:
        headers = self.headers[sid]
        body = bytes(self.bodies[sid])
        path = headers[b":path"].decode()
        handler = self.server.routes[path.split("?")[0]]
        try:
            await handler(self, sid, headers, body)
        finally:
            self.bodies.pop(sid, None)

    def respond(self, sid: int, status: int = 200, *, end: bool = False) -> None:
        if sid in self.reset_streams:
            return
        self.h2.send_headers(sid, [(b":status", str(status).encode())], end_stream=end)
        self.flush()

    async def send(self, sid: int, data: bytes, *, end: bool = True) -> None:
        """Send within the client's windows, waiting for WINDOW_UPDATEs."""
        view = memoryview(data)
        while view or end:
            if sid in self.reset_streams or self.transport is None:
                return
            room = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            if view and room <= 0:
                self.window_open.clear()
                await self.window_open.wait()
                continue
            part, view = view[:room], view[room:]
            self.h2.send_data(sid, bytes(part), end_stream=end and not view)
            self.flush()
            if not view:
                return
            await asyncio.sleep(0)


class H2TestServer:
    def __init__(self, *, max_streams: int = 100, receive_window: int = 65535) -> None:
        self.max_streams = max_streams
        self.receive_window = receive_window
        self.connections: list[_ServerConn] = []
        self.resets: list[int] = []
        self.peak_streams = 0
        self.black_hole = False
        self.mute = False
        self.routes: dict[str, Handler] = {}
        self.port = 0
        self.ca = CertificateAuthority.generate()
        self._server: asyncio.Server | None = None

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.ca.cert_pem.decode())
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        return ctx

    async def start(self, alpn: list[str]) -> None:
        cert, key = self.ca.issue_server_cert(["127.0.0.1"])
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "c").write_bytes(cert)
            (Path(tmp) / "k").write_bytes(key)
            ctx.load_cert_chain(Path(tmp) / "c", Path(tmp) / "k")
        ctx.set_alpn_protocols(alpn)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ServerConn(self), "127.0.0.1", 0, ssl=ctx)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        for conn in self.connections:
            if conn.transport is not None:
                conn.transport.abort()
        self._server.close()
        await self._server.wait_closed()

    async def connect(self) -> Http2Connection:
        conn = await Http2Connection.open(
            "127.0.0.1",
            self.port,
            ssl_context=self.client_context(),
            server_hostname="127.0.0.1",
            timeout_s=5,
        )
        assert conn is not None
        return conn


async def _echo(conn: _ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
    conn.respond(sid)
    answer = {
        "path": headers[b":path"].decode(),
        "method": headers[b":method"].decode(),
        "authorization": headers.get(b"authorization", b"").decode(),
        "length": len(body),
        "sum": sum(body) % 65521,
    }
    await conn.send(sid, json.dumps(answer).encode())


async def _big(conn: _ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
    size = int(headers[b":path"].decode().split("n=")[1])
    conn.respond(sid)
    await conn.send(sid, bytes(i % 251 for i in range(size)))


async def _later(conn: _ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
    await asyncio.sleep(0.05)
    conn.respond(sid)
    await conn.send(sid, b"late")


async def _silent(conn: _ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
    conn.respond(sid)  # headers, then nothing: a watch with no events
    await asyncio.sleep(3600)


async def _reset(conn: _ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
    conn.h2.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
    conn.flush()


async def _goaway(conn: _ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
    conn.respond(sid)
    await conn.send(sid, b"bye")
    conn.h2.close_connection(last_stream_id=sid)
    conn.flush()


async def _drop(conn: _ServerConn, sid: int, headers: dict[bytes, bytes], body: bytes) -> None:
    assert conn.transport is not None
    conn.transport.abort()


ROUTES: dict[str, Handler] = {
    "/echo": _echo,
    "/big": _big,
    "/later": _later,
    "/silent": _silent,
    "/reset": _reset,
    "/goaway": _goaway,
    "/drop": _drop,
}


@pytest.fixture
async def server() -> AsyncIterator[H2TestServer]:
    srv = H2TestServer()
    srv.routes = dict(ROUTES)
    await srv.start(["h2", "http/1.1"])
    yield srv
    await srv.stop()


async def _get(conn: Http2Connection, path: str, body: bytes | None = None) -> Any:
    stream = await conn.request(
        "POST" if body else "GET", path, [("authorization", "Bearer x")], body, timeout_s=5
    )
    try:
        assert stream.status == 200
        return await stream.read()
    finally:
        stream.close()


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_many_requests_share_one_connection(server: H2TestServer) -> None:
    conn = await server.connect()
    answers = await asyncio.gather(*(_get(conn, f"/echo?i={i}") for i in range(200)))
    assert [json.loads(a)["path"] for a in answers] == [f"/echo?i={i}" for i in range(200)]
    assert json.loads(answers[0])["authorization"] == "Bearer x"
    assert len(server.connections) == 1
    assert conn.streams_opened == 200 and conn.open_streams == 0
    await conn.close()


async def test_a_burst_of_small_bodies_leaves_in_a_few_writes_not_one_each(
    server: H2TestServer,
) -> None:
    """Requests with a one-frame body started in one turn of the loop (a burst of syncs
    on one cluster) share the turn's TLS write, as requests without a body do."""
    conn = await server.connect()
    transport = conn.transport
    assert transport is not None
    writes = 0
    write = transport.write

    def counted(data: Any) -> None:
        nonlocal writes
        writes += 1
        write(data)

    transport.write = counted  # type: ignore[method-assign]
    bodies = [json.dumps({"i": i}).encode() for i in range(50)]
    answers = await asyncio.gather(*(_get(conn, "/echo", b) for b in bodies))
    assert [json.loads(a)["length"] for a in answers] == [len(b) for b in bodies]
    assert writes < 10, writes  # one per request before
    await conn.close()


async def test_a_body_larger_than_the_servers_window_waits_for_it(server: H2TestServer) -> None:
    conn = await server.connect()
    body = bytes(i % 253 for i in range(300_000))  # the server's window: 65,535 bytes
    answer = json.loads(await _get(conn, "/echo", body))
    assert answer["length"] == len(body) and answer["sum"] == sum(body) % 65521
    await conn.close()


async def test_an_answer_larger_than_our_windows_arrives_whole(server: H2TestServer) -> None:
    conn = await server.connect()
    size = 9 * 1024 * 1024  # over twice the stream window: acknowledged as it is read
    data = await _get(conn, f"/big?n={size}")
    assert len(data) == size and data[:5] == bytes(range(5)) and data[-1] == (size - 1) % 251
    await conn.close()


async def test_an_unread_stream_does_not_stall_the_others(server: H2TestServer) -> None:
    conn = await server.connect()
    hog = await conn.request("GET", "/big?n=20000000", [], None, timeout_s=5)
    await asyncio.sleep(0.3)  # the hog's stream window fills; nobody reads it
    answers = await asyncio.wait_for(
        asyncio.gather(*(_get(conn, "/big?n=100000") for _ in range(20))), 10
    )
    assert all(len(a) == 100_000 for a in answers)
    hog.close()  # not read to its end: reset, and what it had is acknowledged
    await asyncio.sleep(0.2)
    assert hog.id in server.resets
    assert len(await _get(conn, "/big?n=3000000")) == 3_000_000  # the connection flows
    await conn.close()


async def test_the_servers_stream_limit_is_respected() -> None:
    srv = H2TestServer(max_streams=3)
    srv.routes = dict(ROUTES)
    await srv.start(["h2"])
    try:
        conn = await srv.connect()
        await _get(conn, "/echo")  # the server's SETTINGS are in
        answers = await asyncio.wait_for(
            asyncio.gather(*(_get(conn, "/later") for _ in range(30))), 10
        )
        assert answers == [b"late"] * 30
        assert srv.peak_streams <= 3
        await conn.close()
    finally:
        await srv.stop()


async def test_a_reset_stream_fails_alone(server: H2TestServer) -> None:
    conn = await server.connect()
    with pytest.raises(StreamFailed, match="REFUSED_STREAM"):
        await _get(conn, "/reset")
    assert json.loads(await _get(conn, "/echo"))["method"] == "GET"
    assert conn.usable
    await conn.close()


async def test_a_silent_stream_times_out_when_read_with_a_limit(server: H2TestServer) -> None:
    conn = await server.connect()
    stream = await conn.request("GET", "/silent", [], None, timeout_s=5)
    with pytest.raises(TimeoutError):
        async for _ in stream.chunks(read_s=0.2):
            pass
    stream.close()
    await asyncio.sleep(0.1)
    assert stream.id in server.resets
    await conn.close()


async def test_goaway_ends_new_streams_and_lets_old_ones_finish(server: H2TestServer) -> None:
    conn = await server.connect()
    silent = await conn.request("GET", "/silent", [], None, timeout_s=5)
    assert await _get(conn, "/goaway") == b"bye"
    await asyncio.sleep(0.1)
    assert not conn.usable
    with pytest.raises(StreamFailed, match="GOAWAY"):
        await conn.request("GET", "/echo", [], None, timeout_s=5)
    # the stream opened before GOAWAY's last stream id was not failed by it
    assert silent._error is None
    silent.close()
    await conn.close()


async def test_a_lost_connection_fails_every_stream_at_once(server: H2TestServer) -> None:
    conn = await server.connect()
    watches = [await conn.request("GET", "/silent", [], None, timeout_s=5) for _ in range(5)]

    async def read(stream: Any) -> None:
        async for _ in stream.chunks():
            pass

    readers = [asyncio.ensure_future(read(w)) for w in watches]
    with pytest.raises(StreamFailed):
        await _get(conn, "/drop")
    done, _ = await asyncio.wait(readers, timeout=5)
    assert len(done) == 5
    assert all(isinstance(t.exception(), StreamFailed) for t in done)
    assert not conn.usable
    for w in watches:
        w.close()


async def test_a_server_without_h2_leaves_the_client_on_http1() -> None:
    srv = H2TestServer()
    srv.routes = dict(ROUTES)
    await srv.start(["http/1.1"])
    try:
        conn = await Http2Connection.open(
            "127.0.0.1",
            srv.port,
            ssl_context=srv.client_context(),
            server_hostname="127.0.0.1",
            timeout_s=5,
        )
        assert conn is None
    finally:
        await srv.stop()


async def test_cancelling_a_request_resets_its_stream(server: H2TestServer) -> None:
    conn = await server.connect()
    task = asyncio.ensure_future(conn.request("GET", "/later", [], None, timeout_s=5))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.1)
    assert server.resets and conn.open_streams == 0
    assert json.loads(await _get(conn, "/echo"))["method"] == "GET"
    await conn.close()


async def test_a_silent_dead_connection_is_found_by_ping(
    server: H2TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clusters.h2client as h2client

    monkeypatch.setattr(h2client, "READ_IDLE_S", 0.3)
    monkeypatch.setattr(h2client, "PING_TIMEOUT_S", 0.3)
    conn = await server.connect()
    watch = await conn.request("GET", "/silent", [], None, timeout_s=5)

    async def read() -> None:
        async for _ in watch.chunks():
            pass

    # alive and idle: the server answers the PINGs, the watch stays open
    reader = asyncio.ensure_future(read())
    await asyncio.sleep(1.5)
    assert not reader.done() and conn.usable
    server.black_hole = True
    with pytest.raises(StreamFailed, match="PING"):
        await asyncio.wait_for(reader, 3)
    assert not conn.usable
    watch.close()
