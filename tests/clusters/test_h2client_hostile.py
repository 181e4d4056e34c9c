"""The HTTP/2 client (``clusters.h2client``) against a hostile or broken server: malformed
frames, odd status lines, pushes, stream limits of 0, flow-control violations, header
floods, GOAWAY 0, a server that never speaks HTTP/2, resets and drops mid-body.

What each test holds the client to (the project's rule for input from a cluster): a clear
``StreamFailed`` or ``TimeoutError``, never an exception out of the protocol callbacks,
never a wait without end, memory bounded, and no bearer token in any error text.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from typing import Any

import h2.errors
import h2.settings
import hpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clusters.h2client as h2client
from clusters import h2wire
from clusters.h2client import Http2Connection, Http2Stream, StreamFailed

from .test_h2client import ROUTES, H2TestServer, _ServerConn

TOKEN = "Bearer s3cr3t-t0ken-value"
AUTH = [("authorization", TOKEN)]

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", sid)
        + payload
    )


DATA, HEADERS, RST, SETTINGS, PUSH, PING, GOAWAY, WINDOW, CONTINUATION = 0, 1, 3, 4, 5, 6, 7, 8, 9
END_STREAM, END_HEADERS = 0x1, 0x4


def _raw_headers(
    conn: _ServerConn, sid: int, headers: list[tuple[bytes, bytes]], *, end: bool
) -> None:
    """A HEADERS frame the server's h2 would refuse to send, encoded with its own HPACK
    encoder (the client's decoder stays in step)."""
    assert conn.transport is not None
    block = conn.h2.encoder.encode(headers)
    conn.transport.write(_frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), sid, block))


async def _start(srv: H2TestServer) -> H2TestServer:
    srv.routes = dict(ROUTES)
    await srv.start(["h2"])
    return srv


@pytest.fixture
async def server() -> AsyncIterator[H2TestServer]:
    srv = await _start(H2TestServer())
    yield srv
    await srv.stop()


def _no_token(exc: BaseException | None) -> None:
    text = repr(exc) + str(exc)
    assert "s3cr3t" not in text


async def _read_all(stream: Http2Stream) -> bytes:
    return b"".join([chunk async for chunk in stream.chunks(read_s=5)])


# -- odd answers


async def test_a_non_numeric_status_fails_the_stream(server: H2TestServer) -> None:
    async def route(conn: _ServerConn, sid: int, *_: Any) -> None:
        _raw_headers(conn, sid, [(b":status", b"abc")], end=False)

    server.routes["/odd"] = route
    conn = await server.connect()
    for path in ["/odd", "/odd"]:
        with pytest.raises(StreamFailed, match="bad :status") as err:
            await conn.request("GET", path, AUTH, None, timeout_s=5)
        _no_token(err.value)
    assert conn.open_streams == 0 and conn._h2.open_outbound_streams == 0
    await asyncio.sleep(0.1)
    assert len(server.resets) == 2  # the streams are reset, not left open at the server
    assert await _get_ok(conn, "/echo")  # the connection is still good
    await conn.close()


async def test_an_answer_without_status_fails_the_stream(server: H2TestServer) -> None:
    async def route(conn: _ServerConn, sid: int, *_: Any) -> None:
        _raw_headers(conn, sid, [(b"content-type", b"text/plain")], end=True)

    server.routes["/nostatus"] = route
    conn = await server.connect()
    with pytest.raises(StreamFailed) as err:
        await conn.request("GET", "/nostatus", AUTH, None, timeout_s=5)
    _no_token(err.value)
    await conn.close()


async def test_informational_headers_then_answer_then_trailers(server: H2TestServer) -> None:
    async def route(conn: _ServerConn, sid: int, *_: Any) -> None:
        conn.h2.send_headers(sid, [(b":status", b"103"), (b"link", b"</x>")])
        conn.h2.send_headers(sid, [(b":status", b"100")])
        conn.respond(sid, 201)
        await conn.send(sid, b"body", end=False)
        conn.h2.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)
        conn.flush()

    server.routes["/info"] = route
    conn = await server.connect()
    stream = await conn.request("GET", "/info", AUTH, None, timeout_s=5)
    try:
        assert stream.status == 201  # not the 1xx
        assert await _read_all(stream) == b"body"
    finally:
        stream.close()
    assert conn.usable and conn.open_streams == 0
    await conn.close()


# -- server push


async def test_push_is_disabled_and_a_push_anyway_fails_clearly(server: H2TestServer) -> None:
    async def route(conn: _ServerConn, sid: int, *_: Any) -> None:
        assert conn.transport is not None
        block = conn.h2.encoder.encode(
            [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"x"), (b":path", b"/p")]
        )
        conn.transport.write(_frame(PUSH, END_HEADERS, sid, struct.pack(">I", 2) + block))
        conn.respond(sid)
        await conn.send(sid, b"ok")

    server.routes["/push"] = route
    conn = await server.connect()
    assert await _get_ok(conn, "/echo")  # the client's SETTINGS reached the server
    assert server.connections[0].h2.remote_settings.enable_push == 0
    with pytest.raises(StreamFailed) as err:  # PROTOCOL_ERROR, the connection is done
        stream = await conn.request("GET", "/push", AUTH, None, timeout_s=5)
        try:
            await _read_all(stream)
        finally:
            stream.close()
    _no_token(err.value)
    assert not conn.usable
    await conn.close()


async def _get_ok(conn: Http2Connection, path: str) -> bytes:
    stream = await conn.request("GET", path, AUTH, None, timeout_s=5)
    try:
        assert stream.status == 200
        return await _read_all(stream)
    finally:
        stream.close()


# -- stream limits and silent servers


async def test_a_stream_limit_of_zero_times_out_a_request() -> None:
    srv = await _start(H2TestServer(max_streams=0))
    try:
        conn = await srv.connect()
        await asyncio.sleep(0.1)  # the server's SETTINGS are in
        assert not conn.has_room
        request = asyncio.ensure_future(conn.request("GET", "/echo", AUTH, None, timeout_s=0.3))
        done, _ = await asyncio.wait([request], timeout=3)
        assert done, "a request waited past its timeout for a stream slot"
        assert isinstance(request.exception(), TimeoutError)
        await conn.close()
    finally:
        await srv.stop()


async def test_a_stream_limit_raised_later_lets_every_waiter_in() -> None:
    srv = await _start(H2TestServer(max_streams=0))
    try:
        conn = await srv.connect()
        await asyncio.sleep(0.1)
        watches = [
            asyncio.ensure_future(conn.request("GET", "/silent", AUTH, None, timeout_s=5))
            for _ in range(5)
        ]
        await asyncio.sleep(0.1)
        assert not any(w.done() for w in watches)
        server_conn = srv.connections[0]
        server_conn.h2.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 10})
        server_conn.flush()
        # long-lived streams: nothing ends to pass the wake-up along, the raise must
        done, _ = await asyncio.wait(watches, timeout=2)
        assert len(done) == 5 and all(w.exception() is None for w in done)
        for w in watches:
            w.result().close()
        await conn.close()
    finally:
        await srv.stop()


async def test_a_server_that_never_speaks_http2_is_not_opened() -> None:
    # TLS with ALPN h2, then not even the server's SETTINGS: open() waits for them (until
    # then the stream limit is a guess) within its timeout, and closes the socket
    srv = await _start(H2TestServer())
    srv.mute = True
    try:
        with pytest.raises(TimeoutError):
            await Http2Connection.open(
                "127.0.0.1",
                srv.port,
                ssl_context=srv.client_context(),
                server_hostname="127.0.0.1",
                timeout_s=0.5,
            )
        for _ in range(50):
            if all(c.transport is None for c in srv.connections):
                break
            await asyncio.sleep(0.05)
        assert srv.connections and all(c.transport is None for c in srv.connections)
    finally:
        await srv.stop()


# -- flow control and memory


async def test_data_beyond_the_window_fails_the_connection(
    server: H2TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(h2client, "STREAM_WINDOW", 100_000)

    async def route(conn: _ServerConn, sid: int, *_: Any) -> None:
        conn.respond(sid)
        assert conn.transport is not None
        for _ in range(20):  # 320 KB on a 100 KB window, nothing acknowledged
            conn.transport.write(_frame(DATA, 0, sid, b"x" * 16384))
            await asyncio.sleep(0)

    server.routes["/flood"] = route
    conn = await server.connect()
    stream = await conn.request("GET", "/flood", AUTH, None, timeout_s=5)
    await asyncio.sleep(0.3)  # not read: the window is the only bound
    assert sum(len(d) for d, _ in stream._pending) <= 100_000
    with pytest.raises(StreamFailed, match="FlowControl"):
        await _read_all(stream)
    stream.close()
    assert not conn.usable


async def test_a_continuation_flood_is_cut_off(server: H2TestServer) -> None:
    sent = [0]

    async def route(conn: _ServerConn, sid: int, *_: Any) -> None:
        assert conn.transport is not None
        block = conn.h2.encoder.encode([(b":status", b"200")])
        conn.transport.write(_frame(HEADERS, 0, sid, block))
        for _ in range(2000):  # 32 MB of header block if nobody stops it
            conn.transport.write(_frame(CONTINUATION, 0, sid, b"\x00" * 16384))
            sent[0] += 1
            await asyncio.sleep(0)
            if conn.transport is None:
                return

    server.routes["/cont"] = route
    conn = await server.connect()
    with pytest.raises(StreamFailed) as err:
        await conn.request("GET", "/cont", AUTH, None, timeout_s=10)
    _no_token(err.value)
    assert not conn.usable
    # the client gives up at MAX_HEADER_BLOCK (128 KiB, 8 frames), long before 32 MB; the
    # server wrote a few more frames before it saw the connection closed
    assert h2wire.MAX_HEADER_BLOCK <= 256 * 1024
    await asyncio.sleep(0.1)
    assert sent[0] < 500, sent


async def test_an_enormous_header_list_is_refused(server: H2TestServer) -> None:
    async def route(conn: _ServerConn, sid: int, *_: Any) -> None:
        headers = [(b":status", b"200")] + [(b"x-h%d" % i, b"v" * 4000) for i in range(40)]
        _raw_headers(conn, sid, headers, end=True)  # 160 KB > h2's 64 KiB list limit

    server.routes["/fat"] = route
    conn = await server.connect()
    with pytest.raises(StreamFailed):
        await conn.request("GET", "/fat", AUTH, None, timeout_s=5)
    await conn.close()


# -- GOAWAY, resets, drops


async def test_goaway_zero_with_streams_in_flight_fails_them_all(server: H2TestServer) -> None:
    conn = await server.connect()
    watches = [await conn.request("GET", "/silent", AUTH, None, timeout_s=5) for _ in range(3)]
    readers = [asyncio.ensure_future(_read_all(w)) for w in watches]
    server_conn = server.connections[0]
    server_conn.h2.close_connection(last_stream_id=0)  # and the socket stays open
    server_conn.flush()
    done, _ = await asyncio.wait(readers, timeout=3)
    assert len(done) == 3
    assert all(isinstance(r.exception(), StreamFailed) for r in done)
    assert not conn.usable
    with pytest.raises(StreamFailed, match="GOAWAY"):
        await conn.request("GET", "/echo", AUTH, None, timeout_s=1)
    for w in watches:
        w.close()
    await asyncio.sleep(0.1)
    assert conn.transport is None  # the client closed the socket the server left open
    fresh = await server.connect()
    assert await _get_ok(fresh, "/echo")
    await fresh.close()


async def test_a_reset_with_the_body_half_read(server: H2TestServer) -> None:
    async def route(conn: _ServerConn, sid: int, *_: Any) -> None:
        conn.respond(sid)
        await conn.send(sid, b"a" * 50_000, end=False)
        await asyncio.sleep(0.2)
        conn.h2.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
        conn.flush()

    server.routes["/half"] = route
    conn = await server.connect()
    stream = await conn.request("GET", "/half", AUTH, None, timeout_s=5)
    got = 0
    with pytest.raises(StreamFailed, match="INTERNAL_ERROR"):
        async for chunk in stream.chunks(read_s=5):
            got += len(chunk)
    assert got == 50_000
    stream.close()
    assert conn.usable and await _get_ok(conn, "/echo")
    await conn.close()


async def test_the_peer_closing_mid_body(server: H2TestServer) -> None:
    async def route(conn: _ServerConn, sid: int, *_: Any) -> None:
        conn.respond(sid)
        await conn.send(sid, b"b" * 3_000_000, end=False)
        await asyncio.sleep(0.1)
        assert conn.transport is not None
        conn.transport.abort()

    server.routes["/cut"] = route
    conn = await server.connect()
    stream = await conn.request("GET", "/cut", AUTH, None, timeout_s=5)
    with pytest.raises(StreamFailed) as err:
        await _read_all(stream)
    _no_token(err.value)
    stream.close()
    assert not conn.usable


# -- arbitrary frames straight into the protocol


class _FakeSSL:
    def selected_alpn_protocol(self) -> str:
        return "h2"


class _FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return _FakeSSL() if name == "ssl_object" else default

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


_frames = st.one_of(
    st.binary(max_size=40),
    st.builds(
        _frame,
        st.sampled_from(
            [DATA, HEADERS, RST, SETTINGS, PUSH, PING, GOAWAY, WINDOW, CONTINUATION, 2, 10, 99]
        ),
        st.integers(0, 255),
        st.sampled_from([0, 1, 3, 5, 7, 2**31 - 1]),
        st.binary(max_size=40),
    ),
    st.builds(
        lambda sid, status, extra, flags: _frame(
            HEADERS, flags, sid, hpack.Encoder().encode([(b":status", status), *extra])
        ),
        st.sampled_from([1, 3, 5]),
        st.one_of(st.sampled_from([b"200", b"103", b"404"]), st.binary(max_size=5)),
        st.lists(st.tuples(st.binary(max_size=8), st.binary(max_size=8)), max_size=3),
        st.sampled_from([END_HEADERS, END_HEADERS | END_STREAM, 0]),
    ),
)


async def _fuzz(frames: list[bytes]) -> None:
    conn = Http2Connection("example:443")
    conn.connection_made(_FakeTransport())
    conn.data_received(_frame(SETTINGS, 0, 0, b""))  # the server's preface
    requests = [
        asyncio.ensure_future(conn.request("GET", f"/w{i}", AUTH, None, timeout_s=None))
        for i in range(3)
    ]
    await asyncio.sleep(0)
    for data in frames:
        conn.data_received(data)  # must never raise
        await asyncio.sleep(0)
    conn.connection_lost(None)  # whatever is left, the connection is gone
    for task in requests:
        exc = await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 1)
        result = exc[0]
        if isinstance(result, BaseException):
            assert isinstance(result, StreamFailed), repr(result)
            _no_token(result)
            continue
        stream: Http2Stream = result
        try:
            await asyncio.wait_for(_read_all(stream), 1)
        except StreamFailed as failed:
            _no_token(failed)
        stream.close()
    assert conn.open_streams == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_frames, max_size=12))
def test_arbitrary_frames_never_escape_the_protocol(frames: list[bytes]) -> None:
    asyncio.run(_fuzz(frames))


class _StuckTransport(_FakeTransport):
    """A peer that reads nothing: every write stays in the buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.buffered = 0

    def write(self, data: Any) -> None:
        self.buffered += len(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered


async def test_a_ping_flood_to_a_peer_that_reads_nothing_is_cut_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(h2client, "MAX_WRITE_BUFFER", 64 * 1024, raising=False)
    conn = Http2Connection("example:443")
    transport = _StuckTransport()
    conn.connection_made(transport)
    conn.data_received(_frame(SETTINGS, 0, 0, b""))
    request = asyncio.ensure_future(conn.request("GET", "/w", AUTH, None, timeout_s=None))
    await asyncio.sleep(0)
    ping = _frame(PING, 0, 0, b"12345678")
    for _ in range(100):  # 170 KB of PING ACKs the client would queue for nobody
        conn.data_received(ping * 100)
        if transport.closed:
            break
    assert transport.closed and not conn.usable
    assert transport.buffered < 2 * 64 * 1024  # bounded: not 1.7 MB
    conn.connection_lost(None)
    with pytest.raises(StreamFailed, match="not reading"):
        await request


async def test_pushes_before_our_settings_are_acknowledged_leave_no_state() -> None:
    conn = Http2Connection("example:443")
    conn.connection_made(_FakeTransport())
    conn.data_received(_frame(SETTINGS, 0, 0, b""))  # no ACK of ours: push still allowed
    request = asyncio.ensure_future(conn.request("GET", "/w", AUTH, None, timeout_s=None))
    await asyncio.sleep(0)
    enc = hpack.Encoder()
    block = enc.encode(
        [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"x"), (b":path", b"/p")]
    )
    for promised in range(2, 4002, 2):
        conn.data_received(_frame(PUSH, END_HEADERS, 1, struct.pack(">I", promised) + block))
    assert conn.has_room  # (h2 drops closed streams when it counts open ones)
    assert conn._h2.stream_ids() == [1]  # each refused, not kept reserved
    assert conn.usable
    conn.connection_lost(None)
    with pytest.raises(StreamFailed):
        await request


async def test_a_body_the_server_never_opens_a_window_for_times_out() -> None:
    srv = await _start(H2TestServer(receive_window=0))
    try:
        conn = await srv.connect()
        assert await _get_ok(conn, "/echo")  # the server's SETTINGS (a window of 0) are in
        post = asyncio.ensure_future(conn.request("POST", "/echo", AUTH, b"x" * 10, timeout_s=0.3))
        done, _ = await asyncio.wait([post], timeout=3)
        assert done, "a request body waited past the request's timeout for a window"
        assert isinstance(post.exception(), TimeoutError)
        assert conn.open_streams == 0
        await conn.close()
    finally:
        await srv.stop()


async def test_a_slot_handed_to_a_cancelled_waiter_passes_on(server: H2TestServer) -> None:
    server.max_streams = 1
    conn = await server.connect()
    first = await conn.request("GET", "/silent", AUTH, None, timeout_s=5)
    a = asyncio.ensure_future(conn.request("GET", "/silent", AUTH, None, timeout_s=5))
    b = asyncio.ensure_future(conn.request("GET", "/silent", AUTH, None, timeout_s=5))
    await asyncio.sleep(0.1)
    assert not a.done() and not b.done()
    first.close()  # the slot goes to a's waiter...
    a.cancel()  # ...whose request is cancelled before it runs
    done, _ = await asyncio.wait([b], timeout=2)
    assert done, "the freed slot was lost with the cancelled waiter"
    b.result().close()
    await conn.close()


async def _post_waiting_for_window(
    srv: H2TestServer,
) -> tuple[Http2Connection, asyncio.Future[Http2Stream], _ServerConn, int]:
    """A POST whose body waits for a window the server (``receive_window=0``) never
    opens: the client connection, the request, the server's side and the stream id."""
    conn = await srv.connect()
    assert await _get_ok(conn, "/echo")
    post = asyncio.ensure_future(conn.request("POST", "/echo", AUTH, b"x" * 10, timeout_s=None))
    await asyncio.sleep(0.1)
    server_conn = srv.connections[0]
    return conn, post, server_conn, max(server_conn.bodies)


async def test_a_reset_while_the_body_waits_for_window_fails_at_once() -> None:
    srv = await _start(H2TestServer(receive_window=0))
    try:
        conn, post, server_conn, sid = await _post_waiting_for_window(srv)
        server_conn.h2.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
        server_conn.flush()
        done, _ = await asyncio.wait([post], timeout=2)
        assert done, "the body sender kept waiting for a window on a reset stream"
        assert isinstance(post.exception(), StreamFailed)
        assert conn.open_streams == 0 and conn.usable
        await conn.close()
    finally:
        await srv.stop()


async def test_an_early_answer_while_the_body_waits_for_window() -> None:
    srv = await _start(H2TestServer(receive_window=0))
    try:
        conn, post, server_conn, sid = await _post_waiting_for_window(srv)
        # "too large": a complete answer before the body, no window for it, no reset
        server_conn.h2.send_headers(sid, [(b":status", b"413")], end_stream=True)
        server_conn.flush()
        done, _ = await asyncio.wait([post], timeout=2)
        assert done, "the body sender kept waiting for a window after the answer"
        stream = post.result()
        assert stream.status == 413
        stream.close()
        assert conn.open_streams == 0
        assert conn._h2.open_outbound_streams == 0  # our half is closed too: no slot held
        await conn.close()
    finally:
        await srv.stop()


async def test_a_server_that_never_finishes_tls_times_out_open() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # TCP accepted, not a byte of TLS back

    tcp = await asyncio.start_server(mute, "127.0.0.1", 0)
    srv = H2TestServer()  # only for its client TLS context
    try:
        port = tcp.sockets[0].getsockname()[1]
        opening = asyncio.ensure_future(
            Http2Connection.open(
                "127.0.0.1",
                port,
                ssl_context=srv.client_context(),
                server_hostname="127.0.0.1",
                timeout_s=0.3,
            )
        )
        done, _ = await asyncio.wait([opening], timeout=3)
        assert done and isinstance(opening.exception(), TimeoutError)
    finally:
        for writer in accepted:
            writer.close()
        tcp.close()
        await tcp.wait_closed()


class _SlowTransport(_FakeTransport):
    """A peer that reads only when told: writing pauses at 64 KiB buffered."""

    def __init__(self) -> None:
        super().__init__()
        self.buffered = 0
        self.proto: Http2Connection | None = None
        self.paused = False

    def write(self, data: Any) -> None:
        self.buffered += len(data)
        if self.buffered > 65536 and not self.paused and self.proto is not None:
            self.paused = True
            self.proto.pause_writing()

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def drain(self) -> None:
        self.buffered = 0
        if self.paused and self.proto is not None:
            self.paused = False
            self.proto.resume_writing()


async def test_every_body_sender_waiting_for_the_write_buffer_goes_on() -> None:
    conn = Http2Connection("example:443")
    transport = _SlowTransport()
    transport.proto = conn
    conn.connection_made(transport)
    window = struct.pack(">HI", 4, 8 * 1024 * 1024)  # INITIAL_WINDOW_SIZE
    conn.data_received(_frame(SETTINGS, 0, 0, window))
    conn.data_received(_frame(WINDOW, 0, 0, struct.pack(">I", 16 * 1024 * 1024)))
    posts = [
        asyncio.ensure_future(conn.request("POST", "/p", AUTH, b"y" * 300_000, timeout_s=None))
        for _ in range(3)
    ]
    for _ in range(100):  # the peer reads now and then
        await asyncio.sleep(0.001)
        transport.drain()
    sent = [conn._h2.sent_everything(sid) for sid in (1, 3, 5)]
    assert sent == [True] * 3, sent  # every body sent to its end (the answers to come)
    assert transport.buffered < 1024 * 1024
    conn.connection_lost(None)
    for post in posts:
        with pytest.raises(StreamFailed):
            await post


async def test_a_connection_out_of_stream_ids_fails_and_is_not_used_again() -> None:
    conn = Http2Connection("example:443")
    conn.connection_made(_FakeTransport())
    conn.data_received(_frame(SETTINGS, 0, 0, b""))
    conn._h2._next_id = 2**31 + 1  # every odd id below 2^31 used
    with pytest.raises(StreamFailed, match="stream id"):
        await conn.request("GET", "/w", AUTH, None, timeout_s=1)
    assert not conn.usable and conn.open_streams == 0
    conn.connection_lost(None)
