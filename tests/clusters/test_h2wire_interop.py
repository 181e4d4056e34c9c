"""``clusters.h2wire`` in conversation: our client and our server each against the ``h2``
library (an independent implementation of the protocol), and against each other, in
memory. Random exchanges, bodies of up to 200 KB both ways across window sizes, checked
byte for byte."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import h2.config
import h2.connection
import h2.events
import h2.settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusters import h2wire
from clusters.h2wire import (
    DATA,
    ENDED,
    REQUEST,
    RESPONSE,
    ClientConnection,
    PlainHpackEncoder,
    ServerConnection,
)
from tests.clusters.test_h2wire import GET


class _End(Protocol):
    received: dict[int, bytearray]  # what it received, per stream
    ended: set[int]

    def room(self, sid: int) -> int: ...
    def send(self, sid: int, data: bytes, end: bool) -> None: ...
    def out(self) -> bytes: ...
    def feed(self, data: bytes) -> None: ...


class _Client(_End, Protocol):
    def open(self, body: bool) -> int: ...


class _Server(_End, Protocol):
    def answer_headers(self, sid: int, end: bool) -> None: ...


class _H2LibEnd:
    """The h2 library, in memory: one end, the side given by ``client_side``."""

    def __init__(self, window: int, *, client_side: bool) -> None:
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=client_side, header_encoding=None)
        )
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        # the event that starts a stream's body: the answer's headers, or the request's
        self._starts = h2.events.ResponseReceived if client_side else h2.events.RequestReceived
        self.received: dict[int, bytearray] = {}
        self.ended: set[int] = set()

    def room(self, sid: int) -> int:
        return int(min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size))

    def send(self, sid: int, data: bytes, end: bool) -> None:
        self.conn.send_data(sid, data, end_stream=end)

    def out(self) -> bytes:
        return bytes(self.conn.data_to_send())

    def feed(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, self._starts):
                self.received[event.stream_id] = bytearray()
            elif isinstance(event, h2.events.DataReceived):
                self.received[event.stream_id] += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)


class _H2LibClient(_H2LibEnd):
    def __init__(self, window: int) -> None:
        super().__init__(window, client_side=True)

    def open(self, body: bool) -> int:
        sid: int = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, GET, end_stream=not body)
        return sid


class _H2LibServer(_H2LibEnd):
    def __init__(self, window: int) -> None:
        super().__init__(window, client_side=False)

    def answer_headers(self, sid: int, end: bool) -> None:
        self.conn.send_headers(sid, [(b":status", b"200")], end_stream=end)


class _OurEnd:
    """clusters.h2wire, behind the same few calls: ``starts`` is the event kind that
    starts a stream's body (RESPONSE on a client, REQUEST on a server)."""

    def __init__(self, ours: ClientConnection | ServerConnection, starts: str) -> None:
        self.ours = ours
        self._starts = starts
        self.received: dict[int, bytearray] = {}
        self.ended: set[int] = set()

    def room(self, sid: int) -> int:
        window = self.ours.send_window(sid)
        assert window is not None
        return min(window, self.ours.max_outbound_frame_size)

    def send(self, sid: int, data: bytes, end: bool) -> None:
        self.ours.send_data(sid, data, end_stream=end)

    def out(self) -> bytes:
        return self.ours.data_to_send()

    def feed(self, data: bytes) -> None:
        for event in self.ours.receive(data):
            if event[0] == self._starts:
                if event[0] == REQUEST:
                    assert event[2] == GET
                self.received[event[1]] = bytearray()
            elif event[0] == DATA:
                self.received[event[1]] += event[2]
                self.ours.acknowledge(event[1], event[3])
            elif event[0] == ENDED:
                self.ended.add(event[1])


class _OurClient(_OurEnd):
    def __init__(self, window: int) -> None:
        client = ClientConnection(PlainHpackEncoder())
        client.initiate({h2wire.ENABLE_PUSH: 0, h2wire.INITIAL_WINDOW_SIZE: window}, 1 << 20)
        super().__init__(client, RESPONSE)
        self.client = client

    def open(self, body: bool) -> int:
        sid = self.client.next_stream_id()
        self.client.send_headers(sid, GET, end_stream=not body)
        return sid


class _OurServer(_OurEnd):
    def __init__(self, window: int) -> None:
        server = ServerConnection(PlainHpackEncoder())
        server.initiate(
            {h2wire.MAX_CONCURRENT_STREAMS: 250, h2wire.INITIAL_WINDOW_SIZE: window}, 1 << 20
        )
        super().__init__(server, REQUEST)
        self.server = server

    def answer_headers(self, sid: int, end: bool) -> None:
        self.server.send_headers(sid, [(b":status", b"200")], end_stream=end)


def _pump(client: _Client, server: _Server) -> None:
    """Each side's bytes handed to the other until both are quiet."""
    for _ in range(200):
        to_server, to_client = client.out(), server.out()
        if not to_server and not to_client:
            return
        if to_server:
            server.feed(to_server)
        if to_client:
            client.feed(to_client)
    raise AssertionError("the two sides never went quiet")


def _send_all(side: _End, sid: int, body: bytes, pump: Callable[[], None]) -> None:
    """``body`` on ``sid`` within the windows, pumping while they are shut."""
    view = memoryview(body)
    while view:
        room = side.room(sid)
        if room <= 0:
            pump()
            continue
        side.send(sid, bytes(view[:room]), len(view) <= room)
        view = view[room:]


def _converse(client: _Client, server: _Server, exchanges: list[tuple[int, int]]) -> None:
    def pump() -> None:
        _pump(client, server)

    sent: dict[int, bytes] = {}
    answers: dict[int, bytes] = {}
    pump()
    for n, (request_size, answer_size) in enumerate(exchanges):
        body = bytes([n % 251]) * request_size
        sid = client.open(bool(body))
        sent[sid] = body
        _send_all(client, sid, body, pump)
        pump()
        assert sid in server.ended
        answers[sid] = bytes([(n * 7) % 251]) * answer_size
        server.answer_headers(sid, not answer_size)
        _send_all(server, sid, answers[sid], pump)
        pump()
    assert {sid: bytes(body) for sid, body in server.received.items()} == sent
    assert {sid: bytes(body) for sid, body in client.received.items()} == answers
    assert client.ended == set(sent)


_exchanges = st.lists(
    st.tuples(st.integers(0, 200_000), st.integers(0, 100_000)), min_size=1, max_size=6
)
_windows = st.sampled_from([1000, 65535, 1 << 20])
_slow = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_slow
@given(_exchanges, _windows, _windows)
def test_our_client_and_the_h2_librarys_server(
    exchanges: list[tuple[int, int]], server_window: int, client_window: int
) -> None:
    client = _OurClient(client_window)
    _converse(client, _H2LibServer(server_window), exchanges)
    assert client.client.open_outbound_streams == 0


@_slow
@given(_exchanges, _windows, _windows)
def test_the_h2_librarys_client_and_our_server(
    exchanges: list[tuple[int, int]], server_window: int, client_window: int
) -> None:
    server = _OurServer(server_window)
    _converse(_H2LibClient(client_window), server, exchanges)
    assert server.server.open_streams == 0


@_slow
@given(_exchanges, _windows, _windows)
def test_our_client_and_our_server(
    exchanges: list[tuple[int, int]], server_window: int, client_window: int
) -> None:
    client, server = _OurClient(client_window), _OurServer(server_window)
    _converse(client, server, exchanges)
    assert client.client.open_outbound_streams == 0 and server.server.open_streams == 0
