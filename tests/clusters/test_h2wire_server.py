"""``clusters.h2wire.ServerConnection``, the simulator's HTTP/2 protocol engine, without
sockets: frames written by hand for each server rule, and a fuzz of arbitrary frames
(conversations with other clients: tests/clusters/test_h2wire_interop.py)."""

from __future__ import annotations

from typing import Any

import hpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusters import h2wire
from clusters.h2wire import (
    DATA,
    ENDED,
    GOAWAY,
    PREFACE,
    REQUEST,
    RESET,
    SETTINGS,
    WINDOW,
    ErrorCode,
    FlowControlError,
    PlainHpackEncoder,
    ProtocolError,
    ServerConnection,
)
from tests.clusters.test_h2client_hostile import _frame as frame
from tests.clusters.test_h2wire import GET, _frames, frames_of

_RST_STREAM, _SETTINGS, _GOAWAY, _PUSH_PROMISE = 0x3, 0x4, 0x7, 0x5
_HEADERS, _DATA, _WINDOW_UPDATE = 0x1, 0x0, 0x8
_END_STREAM, _END_HEADERS = 0x1, 0x4


def server(max_streams: int = 250, window: int = 65535) -> ServerConnection:
    conn = ServerConnection(PlainHpackEncoder())
    conn.initiate(
        {h2wire.MAX_CONCURRENT_STREAMS: max_streams, h2wire.INITIAL_WINDOW_SIZE: window}, 65535
    )
    conn.data_to_send()
    assert conn.receive(PREFACE + frame(_SETTINGS, 0, 0, b"")) == [(SETTINGS,)]
    conn.data_to_send()  # our acknowledgement
    return conn


def request(sid: int, *, end_stream: bool = True, encoder: hpack.Encoder | None = None) -> bytes:
    block = (encoder or hpack.Encoder()).encode(GET)
    flags = _END_HEADERS | (_END_STREAM if end_stream else 0)
    return frame(_HEADERS, flags, sid, block)


def goaway_code(conn: ServerConnection) -> tuple[int, int]:
    """(last stream id, error code) of the GOAWAY the engine queued."""
    sent = [f for f in frames_of(conn.data_to_send()) if f[0] == _GOAWAY]
    assert len(sent) == 1
    payload = sent[0][3]
    return int.from_bytes(payload[:4], "big"), int.from_bytes(payload[4:8], "big")


# -- the preface, requests and answers


def test_the_preface_is_checked_even_split_over_reads() -> None:
    conn = ServerConnection(PlainHpackEncoder())
    conn.initiate({h2wire.MAX_CONCURRENT_STREAMS: 10}, 1 << 20)
    sent = frames_of(conn.data_to_send())
    # no preface from a server: its SETTINGS first, then the connection window
    assert [f[0] for f in sent] == [_SETTINGS, _WINDOW_UPDATE]
    assert conn.receive(PREFACE[:5]) == []
    assert conn.receive(PREFACE[5:] + request(1)) == [(REQUEST, 1, GET), (ENDED, 1)]

    bad = ServerConnection(PlainHpackEncoder())
    with pytest.raises(ProtocolError):
        bad.receive(b"GET / HTTP/1.1\r\n\r\n")
    assert goaway_code(bad) == (0, ErrorCode.PROTOCOL_ERROR)
    assert bad.receive(PREFACE) == []  # done for good
    assert bad.receive(b"more garbage") == []


def test_a_request_with_a_body_its_answer_and_the_stream_gone() -> None:
    conn = server()
    events = conn.receive(request(1, end_stream=False) + frame(_DATA, _END_STREAM, 1, b"abc"))
    assert events == [(REQUEST, 1, GET), (DATA, 1, b"abc", 3), (ENDED, 1)]
    conn.send_headers(1, [(b":status", b"200")], end_stream=False)
    conn.send_data(1, b"hello", end_stream=True)
    sent = frames_of(conn.data_to_send())
    assert [(f[0], f[1], f[2]) for f in sent] == [(_HEADERS, _END_HEADERS, 1), (_DATA, 1, 1)]
    assert sent[1][3] == b"hello"
    assert conn.open_streams == 0
    with pytest.raises(ValueError):
        conn.send_headers(1, [(b":status", b"200")], end_stream=True)


def test_a_request_body_beyond_our_window_is_a_flow_control_error() -> None:
    conn = server(window=10)
    conn.receive(request(1, end_stream=False))
    assert conn.receive(frame(_DATA, 0, 1, b"x" * 10))[0][0] == DATA
    with pytest.raises(FlowControlError):
        conn.receive(frame(_DATA, 0, 1, b"y"))
    assert goaway_code(conn) == (1, ErrorCode.FLOW_CONTROL_ERROR)


def test_trailers_end_a_request() -> None:
    conn = server()
    enc = hpack.Encoder()
    conn.receive(request(1, end_stream=False, encoder=enc))
    trailers = frame(_HEADERS, _END_HEADERS | _END_STREAM, 1, enc.encode([(b"x-t", b"1")]))
    assert conn.receive(trailers) == [(ENDED, 1)]
    with pytest.raises(ProtocolError):
        conn.receive(frame(_HEADERS, _END_HEADERS | _END_STREAM, 1, enc.encode([(b"x", b"2")])))


# -- streams: ids, the limit, resets


def test_a_stream_past_the_limit_is_refused_alone() -> None:
    conn = server(max_streams=2)
    enc = hpack.Encoder()
    events = conn.receive(
        request(1, end_stream=False, encoder=enc)
        + request(3, end_stream=False, encoder=enc)
        + request(5, end_stream=False, encoder=enc)  # one too many: refused
        + frame(_DATA, _END_STREAM, 5, b"late")  # its body only counts for the connection
    )
    assert [e[:2] for e in events] == [(REQUEST, 1), (REQUEST, 3)]
    sent = frames_of(conn.data_to_send())
    assert (_RST_STREAM, 5, ErrorCode.REFUSED_STREAM) in [
        (f[0], f[2], int.from_bytes(f[3], "big")) for f in sent
    ]
    # the table stayed in step: once a stream ends, the next one is served
    conn.receive(frame(_DATA, _END_STREAM, 1, b""))
    conn.send_headers(1, [(b":status", b"204")], end_stream=True)
    assert conn.receive(request(7, encoder=enc)) == [(REQUEST, 7, GET), (ENDED, 7)]


def test_a_client_reset_ends_its_stream_and_frames_after_it_are_dropped() -> None:
    conn = server()
    conn.receive(request(1, end_stream=False))
    assert conn.receive(frame(_RST_STREAM, 0, 1, (8).to_bytes(4, "big"))) == [(RESET, 1, 8)]
    assert conn.receive(frame(_DATA, 0, 1, b"late")) == []
    assert conn.send_window(1) is None


@pytest.mark.parametrize(
    ("wire", "what"),
    [
        (lambda: request(2), "an even stream"),
        (lambda: frame(_DATA, 0, 9, b"x"), "data on a stream never opened"),
        (
            lambda: frame(_WINDOW_UPDATE, 0, 9, (1).to_bytes(4, "big")),
            "a window of one never opened",
        ),
        (lambda: frame(_PUSH_PROMISE, _END_HEADERS, 1, b"\0\0\0\2"), "a client's push"),
        (lambda: frame(_HEADERS, _END_HEADERS, 1, b"\xff\xff\xff"), "an undecodable block"),
    ],
)
def test_the_clients_protocol_errors(wire: Any, what: str) -> None:
    conn = server()
    with pytest.raises(ProtocolError):
        conn.receive(wire())
    _last, code = goaway_code(conn)
    assert code in (ErrorCode.PROTOCOL_ERROR, ErrorCode.COMPRESSION_ERROR), what


def test_a_lower_stream_id_after_a_higher_one_is_dropped_and_goaway_names_the_highest() -> None:
    conn = server()
    enc = hpack.Encoder()
    conn.receive(request(5, encoder=enc))
    assert conn.receive(request(3, encoder=enc)) == []
    conn.close()
    assert goaway_code(conn) == (5, ErrorCode.NO_ERROR)
    assert conn.receive(request(7, encoder=enc)) == []


def test_the_client_goes_away() -> None:
    conn = server()
    assert conn.receive(frame(_GOAWAY, 0, 0, bytes(8))) == [(GOAWAY, 0, 0)]


# -- arbitrary frames (the client engine's fuzz strategy)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_frames, max_size=15), st.integers(0, 2))
def test_arbitrary_frames_give_events_or_a_protocol_error_and_windows_hold(
    wires: list[bytes], requests: int
) -> None:
    conn = server(max_streams=2)
    enc = hpack.Encoder()
    conn.receive(
        b"".join(request(2 * n + 1, end_stream=False, encoder=enc) for n in range(requests))
    )
    for wire in wires:
        try:
            events = conn.receive(wire)
        except ProtocolError:
            assert conn.receive(request(99)) == []
            return
        for event in events:
            assert event[0] in (REQUEST, DATA, ENDED, RESET, WINDOW, SETTINGS, GOAWAY)
            if event[0] == DATA:
                conn.acknowledge(event[1], event[3])
        assert conn._recv_window >= 0
        assert all(s.recv_window >= 0 for s in conn._streams.values())
        assert conn.open_streams <= 2
        conn.data_to_send()
