"""HTTP/2 for the simulator, offered the way kube-apiserver offers it.

A real API server takes ``h2`` in the TLS handshake (ALPN), and Go clients (kubectl,
client-go) and the hub then carry every request and watch of a cluster as streams of one
connection. Without it a benchmark cannot show what a fleet of real clusters costs the
hub in connections. ``by_alpn`` picks the protocol of each accepted connection once its
handshake is done: aiohttp's HTTP/1.1 handler, or ``H2ServerConnection`` here.

The framing, HPACK and flow-control bookkeeping are ``clusters.h2wire``'s (its
``ServerConnection``; the ``h2`` library's state machine cost the simulator about a sixth
of its busy time in a rollout). Each request becomes an ``H2Request`` served by the same
handler as HTTP/1.1 (``SimApp.serve``): a ``web.Response`` is sent as headers and DATA
frames within the client's windows, a watch streams through ``H2Request.open_stream``.
As Go's server: at most ``MAX_STREAMS`` concurrent streams per connection, advertised in
SETTINGS, a stream past it refused alone (RST_STREAM ``REFUSED_STREAM``), and a client's
RST_STREAM cancels that stream's handler only. Unlike Go's: a stopping server's GOAWAY
ends the streams in flight with the connection, which clients retry as after any lost
connection.
"""

from __future__ import annotations

import asyncio
import asyncio.protocols  # mypyc: the Python base class of the protocols below
import contextlib
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import parse_qsl, unquote

from aiohttp import web
from multidict import CIMultiDict, MultiDict
from mypy_extensions import mypyc_attr

from clusters import h2wire, wirejson
from clusters.h2wire import (
    DATA,
    ENDED,
    GOAWAY,
    REQUEST,
    RESET,
    SETTINGS,
    WINDOW,
    PlainHpackEncoder,
)
from clusters.sim.httpapi import Answer
from clusters.sim.stats import ProcessStats
from clusters.sim.store import ApiError

#: Concurrent streams a client may open on one connection: Go's net/http2 default, which
#: kube-apiserver keeps unless --http2-max-streams-per-connection says otherwise.
MAX_STREAMS = 250
#: Receive windows for request bodies (a body is read whole before it is served, and
#: acknowledged as it arrives, so these only save round trips).
STREAM_WINDOW = 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024
MAX_HEADER_LIST = 1024 * 1024

# Connection-specific headers have no place in HTTP/2 (RFC 9113 8.2.2); length is ours.
_DROPPED = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})

Serve = Callable[["H2Request"], Awaitable[Answer]]


class H2Request:
    """One request of an HTTP/2 connection, read whole; satisfies ``SimRequest``."""

    __slots__ = ("_body", "_conn", "_stream_id", "headers", "method", "path", "query")

    def __init__(
        self,
        conn: H2ServerConnection,
        stream_id: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        fields: CIMultiDict[str] = CIMultiDict()
        method = raw_path = ""
        for name, value in headers:
            if name[:1] == b":":
                if name == b":method":
                    method = value.decode("latin-1")
                elif name == b":path":
                    raw_path = value.decode("latin-1")
                continue
            fields.add(name.decode("latin-1"), value.decode("latin-1"))
        path, _, query = raw_path.partition("?")
        self.method = method
        self.path = unquote(path)
        self.query: MultiDict[str] = MultiDict(parse_qsl(query, keep_blank_values=True))
        self.headers = fields
        self._body = body
        self._conn = conn
        self._stream_id = stream_id

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._conn.transport

    @property
    def can_read_body(self) -> bool:
        return bool(self._body)

    @property
    def content_type(self) -> str:
        value = self.headers.get("Content-Type", "")
        return value.partition(";")[0].strip().lower() or "application/octet-stream"

    async def read(self) -> bytes:
        return self._body

    async def json(self) -> Any:
        return wirejson.loads(self._body)

    async def open_stream(self, status: int, headers: dict[str, str]) -> H2ResponseStream:
        self._conn.send_headers(self._stream_id, status, headers, end_stream=False)
        return H2ResponseStream(self._conn, self._stream_id)


class H2ResponseStream:
    """A streamed answer (a watch): DATA frames as the handler writes them."""

    __slots__ = ("_conn", "_stream_id", "ended")

    def __init__(self, conn: H2ServerConnection, stream_id: int) -> None:
        self._conn = conn
        self._stream_id = stream_id
        self.ended = False

    async def write(self, data: bytes) -> None:
        await self._conn.send_data(self._stream_id, data, end_stream=False)

    async def write_eof(self, data: bytes = b"") -> None:
        if not self.ended:
            self.ended = True
            await self._conn.send_data(self._stream_id, data, end_stream=True)


class H2Connections:
    """The open HTTP/2 connections of one server: counted for ``/sim/stats``, told to go
    away when the server stops."""

    def __init__(self, stats: ProcessStats) -> None:
        self.stats = stats
        self.open: set[H2ServerConnection] = set()

    @property
    def streams_open(self) -> int:
        return sum(conn.streams_open for conn in self.open)

    def close_all(self) -> None:
        """GOAWAY on every connection, then closed."""
        for conn in list(self.open):
            conn.go_away()

    def abort_all(self) -> None:
        """Drop what ``close_all`` left waiting for the client's TLS close_notify."""
        for conn in list(self.open):
            if conn.transport is not None:
                conn.transport.abort()


@mypyc_attr(native_class=False)  # its base is a Python class
class H2ServerConnection(asyncio.protocols.Protocol):
    """The server side of one HTTP/2 connection (see the module docstring)."""

    def __init__(self, serve: Serve, registry: H2Connections, max_body: int) -> None:
        self._serve = serve
        self._registry = registry
        self._max_body = max_body
        # a plain encoder is cheaper for both ends, as for the hub
        self._h2 = h2wire.ServerConnection(PlainHpackEncoder(), max_header_list=MAX_HEADER_LIST)
        self.transport: asyncio.Transport | None = None
        # streams whose request is still arriving: its headers and body so far
        self._incoming: dict[int, tuple[list[tuple[bytes, bytes]], bytearray]] = {}
        self._too_large: set[int] = set()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._window_waiters: list[asyncio.Future[None]] = []
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._write_paused = False

    @property
    def streams_open(self) -> int:
        return len(self._incoming) + len(self._tasks)

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport = transport
        self._h2.initiate(
            {
                h2wire.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
                h2wire.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2wire.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
                h2wire.ENABLE_PUSH: 0,
            },
            CONNECTION_WINDOW,
        )
        self._flush()
        self._registry.open.add(self)
        self._registry.stats.h2_connections_opened += 1

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive(data)
        except h2wire.ProtocolError:
            # the engine queued the GOAWAY naming the error; the client loses the connection
            self._flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            kind = event[0]
            if kind == DATA:
                self._on_data(event[1], event[2], event[3])
            elif kind == REQUEST:
                self._incoming[event[1]] = (event[2], bytearray())
                self._registry.stats.h2_streams_opened += 1
            elif kind == ENDED:
                self._start(event[1])
            elif kind == RESET:
                sid = event[1]
                self._incoming.pop(sid, None)
                task = self._tasks.pop(sid, None)
                if task is not None:
                    task.cancel()  # the client gave up on it (a watch it no longer wants)
                self._wake(self._window_waiters)
            elif kind in (WINDOW, SETTINGS):
                self._wake(self._window_waiters)
            elif kind == GOAWAY and self.transport:
                # the client goes away: the streams in flight go with the connection
                self.transport.close()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._registry.open.discard(self)
        self._incoming.clear()
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
        self._wake(self._window_waiters)
        self._wake(self._drain_waiters)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake(self._drain_waiters)

    # -- requests

    def _on_data(self, sid: int, data: bytes, size: int) -> None:
        incoming = self._incoming.get(sid)
        if incoming is not None and sid not in self._too_large:
            body = incoming[1]
            if len(body) + len(data) > self._max_body:
                self._too_large.add(sid)
                body.clear()
            else:
                body += data
        self._h2.acknowledge(sid, size)

    def _start(self, sid: int) -> None:
        incoming = self._incoming.pop(sid, None)
        if incoming is None:
            return
        answer: H2Request | web.Response
        if sid in self._too_large:
            self._too_large.discard(sid)
            refusal = ApiError(
                413,
                "RequestEntityTooLarge",
                f"request body larger than {self._max_body} bytes",
            )
            answer = web.Response(
                body=json.dumps(refusal.status()).encode(),
                status=refusal.code,
                content_type="application/json",
            )
        else:
            answer = H2Request(self, sid, incoming[0], bytes(incoming[1]))
        self._tasks[sid] = asyncio.get_running_loop().create_task(self._run(sid, answer))

    async def _run(self, sid: int, request: H2Request | web.Response) -> None:
        """Serve the request (a ``web.Response``: the refusal to send instead) and send
        its answer."""
        try:
            answer = request if isinstance(request, web.Response) else await self._serve(request)
            if isinstance(answer, H2ResponseStream):
                await answer.write_eof()
            elif isinstance(answer, web.Response):
                await self._send(sid, answer)
        except (asyncio.CancelledError, ConnectionError):
            # the client reset the stream, the connection is gone, or an outage fault
            # dropped it: nobody is left to answer
            self._reset(sid)
        finally:
            self._tasks.pop(sid, None)

    async def _send(self, sid: int, response: web.Response) -> None:
        body = response.body
        data = bytes(body) if isinstance(body, (bytes, bytearray, memoryview)) else b""
        headers = {k: v for k, v in response.headers.items() if k.lower() not in _DROPPED}
        headers["content-length"] = str(len(data))
        # one TLS record for headers and a small body: sent by send_data's flush
        self.send_headers(sid, response.status, headers, end_stream=not data, flush=not data)
        if data:
            await self.send_data(sid, data, end_stream=True)

    def _reset(self, sid: int) -> None:
        if self.transport is None:
            return
        self._h2.reset_stream(sid, h2wire.ErrorCode.CANCEL)
        self._flush()

    def send_headers(
        self,
        sid: int,
        status: int,
        headers: dict[str, str],
        *,
        end_stream: bool,
        flush: bool = True,
    ) -> None:
        if self.transport is None:
            raise ConnectionResetError("the connection is closed")
        fields = [(b":status", str(status).encode())]
        fields.extend((k.lower().encode(), v.encode("latin-1")) for k, v in headers.items())
        try:
            self._h2.send_headers(sid, fields, end_stream=end_stream)
        except ValueError:
            raise ConnectionResetError("the stream is closed") from None
        if flush:
            self._flush()

    async def send_data(self, sid: int, data: bytes, *, end_stream: bool) -> None:
        """Send within the client's flow-control windows, waiting for WINDOW_UPDATEs;
        ``ConnectionResetError`` when the stream or connection is gone."""
        view = memoryview(data)
        offset = 0
        h2c = self._h2
        while True:
            if self.transport is None:
                raise ConnectionResetError("the connection is closed")
            window = h2c.send_window(sid)
            if window is None:
                raise ConnectionResetError("the stream is closed")
            left = len(view) - offset
            if left == 0:
                if end_stream:
                    h2c.send_data(sid, b"", end_stream=True)
                    self._flush()
                return
            size = min(left, window, h2c.max_outbound_frame_size)
            if size > 0:
                last = size == left
                chunk = bytes(view[offset : offset + size]) if size < len(view) else data
                h2c.send_data(sid, chunk, end_stream=end_stream and last)
                offset += size
                self._flush()
                if last:
                    if self._write_paused:
                        await self._wait(self._drain_waiters)
                    return
                if not self._write_paused:
                    # more to send in the window that is left: a frame is at most
                    # 16 KiB, and a client sends WINDOW_UPDATE only once it is short
                    # of window, so waiting for one here could wait forever
                    continue
            await self._wait(self._drain_waiters if self._write_paused else self._window_waiters)

    def go_away(self) -> None:
        """Tell the client no more streams will be served (GOAWAY) and close: streams in
        flight end here too, and the client retries them on a new connection."""
        if self.transport is None:
            return
        self._h2.close()
        self._flush()
        self.transport.close()

    async def _wait(self, waiters: list[asyncio.Future[None]]) -> None:
        waiter = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        try:
            await waiter
        finally:
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)


@mypyc_attr(native_class=False)  # its base is a Python class
class _ByAlpn(asyncio.protocols.Protocol):
    """Hands a TLS connection, once its handshake chose, to the chosen protocol."""

    def __init__(
        self,
        http1: Callable[[], asyncio.BaseProtocol],
        http2: Callable[[], asyncio.BaseProtocol],
    ) -> None:
        self._http1 = http1
        self._http2 = http2

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        chosen = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        protocol = self._http2() if chosen == "h2" else self._http1()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


def by_alpn(
    http1: Callable[[], asyncio.BaseProtocol], http2: Callable[[], asyncio.BaseProtocol]
) -> Callable[[], asyncio.Protocol]:
    """A protocol factory for a TLS server offering h2 and http/1.1: each connection is
    handed, once its handshake chose, to ``http2()`` or ``http1()``."""
    return functools.partial(_ByAlpn, http1, http2)
