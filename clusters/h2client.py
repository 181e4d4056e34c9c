"""HTTP/2 to one API server: every request and watch of a cluster on one connection.

Real API servers offer HTTP/2 (ALPN ``h2``) and client-go multiplexes all of a cluster's
watches and calls over one connection. Over HTTP/1.1 each open watch holds a socket of
its own: a hub watching three kinds on 1,000 clusters held ~4,400 sockets, each with its
TLS state (~60 KB). ``Http2Connection.open`` offers h2 during the TLS handshake and
returns None when the server does not take it, so the caller keeps to HTTP/1.1.

The framing, HPACK and flow-control bookkeeping are ``clusters.h2wire``'s (the client
side of our protocol engine; the ``h2`` library's did the same at several times the CPU); this
module is the asyncio glue around it: a protocol that feeds received bytes to the engine
and hands each event to its stream, one ``Http2Stream`` per request whose answer is read
as chunks, and the three waits a sender needs (a free stream slot under the server's
``MAX_CONCURRENT_STREAMS``, send window for a request body, room in the transport's write
buffer). A reader acknowledges data as it consumes it, so a watch nobody reads stops its
own stream (the server waits for window), not the connection.

Failures of a stream or its connection raise ``StreamFailed``, a ``ConnectionError``:
``clusters.kube`` maps it to ``Transient`` like any dropped connection. After a GOAWAY
or a lost connection ``usable`` is False and the caller opens a new one.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator, Iterable
from typing import cast

from clusters import h2wire
from clusters.h2wire import (
    DATA,
    ENDED,
    GOAWAY,
    RESET,
    RESPONSE,
    SETTINGS,
    WINDOW,
    ErrorCode,
    PlainHpackEncoder,
)

#: Receive window per stream: a large LIST arrives without waiting for WINDOW_UPDATEs
#: (the protocol's default, 64 KiB, would cost a round trip every 64 KiB).
STREAM_WINDOW = 4 * 1024 * 1024
#: Receive window of the whole connection (every stream of the cluster shares it).
CONNECTION_WINDOW = 64 * 1024 * 1024

#: A connection silent this long while streams are open is asked for a PING; one that
#: does not answer within ``PING_TIMEOUT_S`` is dropped, failing its streams so they are
#: retried on a new connection. A black-holed TCP connection (a NAT or load balancer that
#: forgot it) otherwise keeps every watch of the cluster waiting on it: client-go's
#: ReadIdleTimeout and PingTimeout, with its values.
READ_IDLE_S = 30.0
PING_TIMEOUT_S = 15.0

#: Streams opened before the server's SETTINGS say how many it takes (Go's client assumes
#: the same); the protocol's own default is unlimited, and a burst of requests on a new
#: connection would have the excess refused.
FIRST_STREAM_LIMIT = 100

#: Bytes queued for a server that does not read them before the connection is dropped.
#: Request bodies wait for the buffer to drain (``_drain``), but what h2 answers by itself
#: (PING and SETTINGS acknowledgements, WINDOW_UPDATEs) does not: a server flooding PINGs
#: and reading nothing grew the buffer without bound (the "ping flood", CVE-2019-9512).
MAX_WRITE_BUFFER = 16 * 1024 * 1024


class StreamFailed(ConnectionError):
    """A stream or its connection ended without a complete answer (reset, GOAWAY, the
    connection lost or broken); safe to retry on a new stream or connection."""


class Http2Stream:
    """One request's answer: ``status`` and ``headers`` once ``Http2Connection.request``
    returned, then the body through ``read()`` or ``chunks()``. ``close()`` (always, a
    ``finally``) resets the stream if the answer was not read to its end."""

    __slots__ = ("_conn", "_ended", "_error", "_pending", "_waiter", "headers", "id", "status")

    def __init__(self, conn: Http2Connection, stream_id: int) -> None:
        self._conn = conn
        self.id = stream_id
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._pending: collections.deque[tuple[bytes, int]] = collections.deque()
        self._ended = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    # -- the protocol's side

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_headers(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """False when the answer's ``:status`` is not a final status (three digits,
        200-599; h2 hands 1xx over apart): the stream fails, the caller resets it. A
        hostile ``:status`` must not raise out of ``data_received`` (it did, a ValueError
        that left the request waiting) nor leave ``status`` 0."""
        status = dict(headers).get(b":status", b"")
        if len(status) != 3 or not status.isdigit() or not 200 <= int(status) <= 599:
            self._on_error(StreamFailed(f"the server answered with a bad :status {status[:16]!r}"))
            return False
        self.status = int(status)
        self.headers = headers
        self._wake()
        return True

    def _on_data(self, data: bytes, flow_controlled: int) -> None:
        self._pending.append((data, flow_controlled))
        self._wake()

    def _on_end(self) -> None:
        self._ended = True
        self._wake()

    def _on_error(self, error: BaseException) -> None:
        if not self._ended:
            self._error = error
        self._wake()

    # -- the reader's side

    async def _wait(self, timeout_s: float | None) -> None:
        if self._error is not None:
            raise self._error
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            if timeout_s is None:
                await self._waiter
            else:
                async with asyncio.timeout(timeout_s):
                    await self._waiter
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    async def _response(self, timeout_s: float | None) -> None:
        while not self.status:
            if self._ended:
                raise StreamFailed("the stream ended without an answer")
            await self._wait(timeout_s)

    def _take(self) -> bytes:
        """The data received so far, acknowledged (the server may send that much more)."""
        parts = []
        acked = 0
        pending = self._pending
        while pending:
            data, flow_controlled = pending.popleft()
            parts.append(data)
            acked += flow_controlled
        if acked:
            self._conn._acknowledge(self.id, acked)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def chunks(self, read_s: float | None = None) -> AsyncIterator[bytes]:
        """The body as it arrives; ``TimeoutError`` when ``read_s`` passes with nothing
        received (a watch's dead connection), ``StreamFailed`` when it ends early."""
        while True:
            if self._pending:
                yield self._take()
                continue
            if self._ended:
                return
            await self._wait(read_s)

    async def read(self, read_s: float | None = None) -> bytes:
        """The whole body (``read_s``: as in ``chunks``)."""
        parts = [chunk async for chunk in self.chunks(read_s)]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """Done with the stream: reset it unless its answer ended, acknowledge what was
        received and not read (the connection's window counts it)."""
        if self._pending:
            self._take()
        self._conn._forget(self, reset=not self._ended and self._error is None)


class Http2Connection(asyncio.Protocol):
    """A client HTTP/2 connection to one server (see the module docstring). Open it with
    ``open``; ``request`` starts a stream; ``close`` sends GOAWAY and closes."""

    def __init__(self, authority: str) -> None:
        self._authority = authority.encode()
        self._h2 = h2wire.ClientConnection(PlainHpackEncoder())
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, Http2Stream] = {}
        self._failure: StreamFailed | None = None  # set: no new streams
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._window_waiters: list[asyncio.Future[None]] = []
        # every body sender waiting for the write buffer to drain (one slot, as it was,
        # kept only the last: the others waited forever once two bodies were sent at once)
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._write_paused = False
        self._flush_pending = False
        self.negotiated = False
        self.streams_opened = 0
        self._settings_seen = False
        self._settings_waiter: asyncio.Future[None] | None = None
        self._last_read = 0.0
        self._ping_sent = 0.0
        self._health: asyncio.TimerHandle | None = None

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None,
        timeout_s: float,
    ) -> Http2Connection | None:
        """Connect over TLS offering h2 (``ssl_context`` must list ``h2`` in its ALPN
        protocols); None, and the socket closed, when the server chose HTTP/1.1."""
        loop = asyncio.get_running_loop()
        authority = host if port == 443 else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            authority = f"[{host}]:{port}"
        async with asyncio.timeout(timeout_s):
            transport, proto = await loop.create_connection(
                lambda: cls(authority),
                host,
                port,
                ssl=ssl_context,
                server_hostname=server_hostname or host,
            )
            if not proto.negotiated:
                transport.close()
                return None
            try:
                await proto._server_settings()
            except BaseException:
                transport.abort()
                raise
        return proto

    async def _server_settings(self) -> None:
        """Wait for the server's SETTINGS (its connection preface, sent at once): until
        then its stream limit is a guess, and a server allowing fewer streams than
        guessed drops the connection for the excess (a burst of watches on a new
        connection would then open one connection after another)."""
        if self._settings_seen:
            return
        self._check()
        self._settings_waiter = asyncio.get_running_loop().create_future()
        try:
            await self._settings_waiter
        finally:
            self._settings_waiter = None
        self._check()

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        self.negotiated = ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2"
        if not self.negotiated:
            return
        self._h2.initiate(
            {
                h2wire.ENABLE_PUSH: 0,
                h2wire.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2wire.MAX_HEADER_LIST_SIZE: h2wire.MAX_HEADER_LIST,
            },
            CONNECTION_WINDOW,
        )
        self._flush()
        loop = asyncio.get_running_loop()
        self._last_read = loop.time()
        self._health = loop.call_later(READ_IDLE_S, self._check_health)

    def _check_health(self) -> None:
        """The PING watchdog (``READ_IDLE_S``): runs every so often while connected."""
        transport = self._transport
        if transport is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._ping_sent and self._last_read < self._ping_sent:
            if now - self._ping_sent >= PING_TIMEOUT_S:
                self._fail(StreamFailed(f"no answer to a PING within {PING_TIMEOUT_S:g}s"))
                transport.abort()
                return
            self._health = loop.call_later(PING_TIMEOUT_S, self._check_health)
            return
        idle = now - self._last_read
        if idle >= READ_IDLE_S and self._streams:
            self._ping_sent = now
            self._h2.ping(b"hub-ping")
            self._flush()
            self._health = loop.call_later(PING_TIMEOUT_S, self._check_health)
            return
        self._health = loop.call_later(max(1.0, READ_IDLE_S - idle), self._check_health)

    def data_received(self, data: bytes) -> None:
        self._last_read = asyncio.get_running_loop().time()
        try:
            events = self._h2.receive(data)
        except h2wire.ProtocolError as exc:
            self._flush()  # the GOAWAY queued
            self._fail(StreamFailed(f"HTTP/2 protocol error: {type(exc).__name__}: {exc}"))
            if self._transport is not None:
                self._transport.close()
            return
        streams = self._streams
        for event in events:
            kind = event[0]
            if kind == DATA:
                stream = streams.get(event[1])
                if stream is not None:
                    stream._on_data(event[2], event[3])
                elif event[3]:
                    self._acknowledge(event[1], event[3])
            elif kind == RESPONSE:
                stream = streams.get(event[1])
                if stream is not None and not stream._on_headers(event[2]):
                    self._h2.reset_stream(stream.id, ErrorCode.PROTOCOL_ERROR)
            elif kind == ENDED:
                stream = streams.get(event[1])
                if stream is not None:
                    stream._on_end()
                self._wake_slot()
                self._wake_windows()  # an answer before the whole body: see _send_body
            elif kind == RESET:
                stream = streams.get(event[1])
                if stream is not None:
                    code = h2wire.error_name(event[2])
                    stream._on_error(StreamFailed(f"the server reset the stream ({code})"))
                self._wake_slot()
                # a body sender waiting for this stream's window looks again and sees the
                # reset (no WINDOW_UPDATE will come for it: it waited forever)
                self._wake_windows()
            elif kind == WINDOW:
                self._wake_windows()
                self._wake_slot()
            elif kind == SETTINGS:
                self._wake_windows()
                self._settings_seen = True
                if self._settings_waiter is not None and not self._settings_waiter.done():
                    self._settings_waiter.set_result(None)
                # the limit may have gone up by many (from 0, say): every waiter looks
                # again; waking one left the rest waiting for a stream to end, and
                # watches do not end
                self._wake_all_slots()
            elif kind == GOAWAY:
                self._on_goaway(event[1], event[2])
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        why = f": {type(exc).__name__}" if exc is not None else ""
        self._fail(StreamFailed(f"the connection closed{why}"))
        self._transport = None
        if self._health is not None:
            self._health.cancel()
        self._wake_drains()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drains()

    def _wake_drains(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- requests

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._transport

    @property
    def usable(self) -> bool:
        """True while new streams may be opened (no GOAWAY, not lost)."""
        return self._failure is None and self._transport is not None

    @property
    def has_room(self) -> bool:
        """Usable, and a new stream would not wait for one of the server's slots."""
        return self.usable and self._h2.open_outbound_streams < self._stream_limit()

    def _stream_limit(self) -> int:
        limit = self._h2.max_concurrent_streams
        return limit if self._settings_seen else min(limit, FIRST_STREAM_LIMIT)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    async def request(
        self,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | None,
        *,
        timeout_s: float | None,
    ) -> Http2Stream:
        """Start a request and wait (up to ``timeout_s``) for its answer's headers; the
        caller reads the body and must ``close()`` the stream. ``timeout_s`` covers the
        whole start: the wait for one of the server's stream slots (a server that says
        MAX_CONCURRENT_STREAMS 0 and never more held the request forever, no stream open
        so not even the PING watchdog ran) and the sending of the body (a server that
        opens no window for it held it forever, answering PINGs meanwhile)."""
        async with asyncio.timeout(timeout_s):
            await self._stream_slot()
            h2c = self._h2
            try:
                stream_id = h2c.next_stream_id()
            except h2wire.StreamIdsExhausted as exc:
                failure = StreamFailed(str(exc))
                self._fail(failure)  # not usable: the caller opens a new connection
                raise failure from None
            stream = Http2Stream(self, stream_id)
            self._streams[stream_id] = stream
            self.streams_opened += 1
            sent = [
                (b":method", method.encode()),
                (b":scheme", b"https"),
                (b":authority", self._authority),
                (b":path", path.encode()),
            ]
            sent.extend((name.lower().encode(), value.encode()) for name, value in headers)
            try:
                h2c.send_headers(stream_id, sent, end_stream=not body)
                self._flush_soon()
                if body:
                    await self._send_body(stream_id, body)
                await stream._response(None)
            except BaseException:
                stream.close()
                raise
        return stream

    async def close(self) -> None:
        """GOAWAY, then close the socket; every open stream fails."""
        transport = self._transport
        if transport is None:
            return
        self._fail(StreamFailed("the connection was closed by the client"))
        self._h2.close()
        self._flush()
        transport.close()

    # -- internals

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._transport is None:
            raise StreamFailed("the connection is closed")

    async def _stream_slot(self) -> None:
        while True:
            self._check()
            if self._h2.open_outbound_streams < self._stream_limit():
                return
            waiter = asyncio.get_running_loop().create_future()
            self._slot_waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    # a slot was handed to us as we were cancelled (a timeout): pass it
                    # on, or the next waiter waits for another stream to end
                    self._wake_slot()
                raise
            finally:
                if waiter in self._slot_waiters:
                    self._slot_waiters.remove(waiter)

    def _wake_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_windows(self) -> None:
        waiters, self._window_waiters = self._window_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _send_body(self, stream_id: int, body: bytes) -> None:
        h2c = self._h2
        view = memoryview(body)
        sent = 0
        while sent < len(body):
            self._check()
            stream = self._streams.get(stream_id)
            if stream is not None and stream._error is not None:
                raise stream._error
            if stream is not None and stream._ended:
                # the server answered in full before the body (a 413, say): the rest of
                # the body is not wanted and no window may come for it; close our half
                # (NO_ERROR, RFC 9113 8.1), else the stream held a slot for good
                h2c.reset_stream(stream_id, ErrorCode.NO_ERROR)
                self._flush()
                return
            window = h2c.send_window(stream_id)
            if window is None:  # closed under us; its StreamFailed is on its way
                raise StreamFailed("the stream closed before its body was sent")
            room = min(window, h2c.max_outbound_frame_size)
            if room <= 0:
                waiter = asyncio.get_running_loop().create_future()
                self._window_waiters.append(waiter)
                await waiter
                continue
            part = bytes(view[sent : sent + room])
            sent += len(part)
            h2c.send_data(stream_id, part, end_stream=sent >= len(body))
            if sent == len(part) == len(body):
                # A body of one frame (an apply's) goes out with the rest of this turn's
                # requests, as a request without a body does: a burst of syncs on one
                # cluster is one TLS record and one send, not one per request. The
                # write buffer's back-pressure still holds it while the server lags.
                self._flush_soon()
            else:
                # a large body: part by part, each meeting the back-pressure at once
                self._flush()
            await self._drain()

    async def _drain(self) -> None:
        if self._write_paused and self._transport is not None:
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._drain_waiters:
                    self._drain_waiters.remove(waiter)

    def _acknowledge(self, stream_id: int, size: int) -> None:
        if self._transport is None:
            return
        self._h2.acknowledge(stream_id, size)
        self._flush_soon()

    def _forget(self, stream: Http2Stream, *, reset: bool) -> None:
        if self._streams.pop(stream.id, None) is None:
            return
        if reset and self._transport is not None:
            # (nothing is sent for a stream that ended meanwhile; after a GOAWAY the reset
            # still goes: the streams it let live are the server's to finish or drop)
            self._h2.reset_stream(stream.id, ErrorCode.CANCEL)
            self._flush_soon()
        self._wake_slot()
        if self._failure is not None and not self._streams and self._transport is not None:
            self._flush()
            self._transport.close()  # after a GOAWAY: the last stream it let finish is done

    def _flush_soon(self) -> None:
        """Write what h2 queued at the end of this turn of the event loop: the requests,
        bodies, acknowledgements and resets of one turn (a burst of syncs) go out as one
        TLS record and one send instead of one each."""
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop running (a stream closed at shutdown)
            self._flush()
            return
        self._flush_pending = True
        loop.call_soon(self._flush_deferred)

    def _flush_deferred(self) -> None:
        self._flush_pending = False
        self._flush()

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        transport = self._transport
        # closing (after a protocol error, until connection_lost): an asyncio SSL transport
        # raises AttributeError on a write then, out of close() or a stream's close()
        if data and transport is not None and not transport.is_closing():
            transport.write(data)
            queued = transport.get_write_buffer_size()
            if queued > MAX_WRITE_BUFFER:
                self._fail(StreamFailed(f"the server is not reading ({queued} bytes queued)"))
                transport.abort()

    def _on_goaway(self, last: int, error_code: int) -> None:
        """No new streams; streams the server never saw (above ``last``) fail, the others
        may still finish."""
        code = h2wire.error_name(error_code)
        failure = StreamFailed(f"the server is closing the connection (GOAWAY {code})")
        if self._failure is None:
            self._failure = failure
        for stream_id, stream in list(self._streams.items()):
            if stream_id > last:
                stream._on_error(failure)
        self._wake_all()
        if not self._streams and self._transport is not None:
            self._transport.close()

    def _fail(self, failure: StreamFailed) -> None:
        if self._failure is None:
            self._failure = failure
        for stream in list(self._streams.values()):
            stream._on_error(self._failure)
        self._wake_all()

    def _wake_all(self) -> None:
        self._wake_windows()
        self._wake_all_slots()
        if self._settings_waiter is not None and not self._settings_waiter.done():
            self._settings_waiter.set_result(None)  # ``_check`` then raises the failure

    def _wake_all_slots(self) -> None:
        waiters, self._slot_waiters = self._slot_waiters, collections.deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
