"""``clusters.h2wire``, the client's HTTP/2 protocol engine, without sockets.

Frames written by hand for each rule the engine enforces, and a fuzz (conversations with
the ``h2`` library's server and with ours: tests/clusters/test_h2wire_interop.py).
"""

from __future__ import annotations

import struct
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
    RESET,
    RESPONSE,
    SETTINGS,
    WINDOW,
    ClientConnection,
    ErrorCode,
    FlowControlError,
    FrameSizeError,
    PlainHpackEncoder,
    ProtocolError,
)
from tests.clusters.test_h2client_hostile import _frame as frame

GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"x"), (b":path", b"/")]


def frames_of(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream id, payload) of every frame in ``data`` (no preface)."""
    out = []
    while data:
        length = int.from_bytes(data[:3], "big")
        out.append((data[3], data[4], int.from_bytes(data[5:9], "big"), data[9 : 9 + length]))
        data = data[9 + length :]
    return out


def client(window: int = 65535, connection_window: int = 65535) -> ClientConnection:
    conn = ClientConnection(PlainHpackEncoder())
    conn.initiate({h2wire.ENABLE_PUSH: 0, h2wire.INITIAL_WINDOW_SIZE: window}, connection_window)
    conn.data_to_send()
    return conn


def status_block(status: bytes = b"200", encoder: hpack.Encoder | None = None) -> bytes:
    return (encoder or hpack.Encoder()).encode([(b":status", status)])


def answered(conn: ClientConnection) -> int:
    """A GET on a new stream, answered 200 (headers only so far)."""
    sid = conn.next_stream_id()
    conn.send_headers(sid, GET, end_stream=True)
    conn.data_to_send()
    events = conn.receive(frame(1, 0x4, sid, status_block()))
    assert events == [(RESPONSE, sid, [(b":status", b"200")])]
    return sid


# -- the preface and what we send


def test_the_preface_carries_our_settings_and_the_connection_window() -> None:
    conn = ClientConnection(PlainHpackEncoder())
    conn.initiate({h2wire.ENABLE_PUSH: 0, h2wire.INITIAL_WINDOW_SIZE: 1 << 20}, 1 << 26)
    out = conn.data_to_send()
    assert out.startswith(h2wire.PREFACE)
    sent = frames_of(out[len(h2wire.PREFACE) :])
    assert sent[0][:3] == (4, 0, 0)
    assert sent[0][3] == struct.pack(">HLHL", 2, 0, 4, 1 << 20)
    assert sent[1] == (8, 0, 0, struct.pack(">L", (1 << 26) - 65535))


def test_a_header_block_larger_than_a_frame_goes_in_continuations() -> None:
    conn = client()
    sid = conn.next_stream_id()
    conn.send_headers(sid, [*GET, (b"x-big", b"v" * 40000)], end_stream=True)
    sent = frames_of(conn.data_to_send())
    assert [(k, f) for k, f, _, _ in sent] == [(1, 0x1), (9, 0), (9, 0x4)]
    decoded = hpack.Decoder().decode(b"".join(p for _, _, _, p in sent), raw=True)
    assert (b"x-big", b"v" * 40000) in decoded


def test_stream_ids_are_odd_and_rise_and_a_skipped_one_is_refused() -> None:
    conn = client()
    assert conn.next_stream_id() == 1
    conn.send_headers(1, GET, end_stream=True)
    assert conn.next_stream_id() == 3
    with pytest.raises(ValueError):
        conn.send_headers(5, GET, end_stream=True)


def test_stream_ids_run_out_at_two_to_the_31() -> None:
    conn = client()
    conn._next_id = 2**31 - 1
    sid = conn.next_stream_id()
    conn.send_headers(sid, GET, end_stream=True)
    with pytest.raises(h2wire.StreamIdsExhausted):
        conn.next_stream_id()


def test_a_body_is_sent_within_the_windows_only() -> None:
    conn = client()
    sid = conn.next_stream_id()
    conn.send_headers(sid, GET, end_stream=False)
    assert conn.send_window(sid) == 65535
    with pytest.raises(ValueError):
        conn.send_data(sid, b"x" * 16385, end_stream=False)  # over the frame size
    for _ in range(3):
        conn.send_data(sid, b"x" * 16384, end_stream=False)
    conn.send_data(sid, b"x" * 16383, end_stream=False)
    assert conn.send_window(sid) == 0
    with pytest.raises(ValueError):
        conn.send_data(sid, b"x", end_stream=True)
    assert conn.receive(frame(8, 0, sid, struct.pack(">L", 10))) == [(WINDOW,)]
    assert conn.send_window(sid) == 0  # the connection's window is still spent
    conn.receive(frame(8, 0, 0, struct.pack(">L", 100)))
    assert conn.send_window(sid) == 10
    conn.send_data(sid, b"x" * 10, end_stream=True)
    assert conn.sent_everything(sid)


def test_the_servers_initial_window_moves_every_open_stream() -> None:
    conn = client()
    a = conn.next_stream_id()
    conn.send_headers(a, GET, end_stream=False)
    conn.receive(frame(4, 0, 0, struct.pack(">HL", 4, 100)))  # INITIAL_WINDOW_SIZE 100
    assert conn.send_window(a) == 100
    b = conn.next_stream_id()
    conn.send_headers(b, GET, end_stream=False)
    assert conn.send_window(b) == 100
    with pytest.raises(FlowControlError):
        conn.receive(frame(4, 0, 0, struct.pack(">HL", 4, 2**31)))


# -- what the server sends


def test_an_answer_its_data_and_its_end() -> None:
    conn = client()
    sid = answered(conn)
    events = conn.receive(frame(0, 0, sid, b"abc") + frame(0, 0x1, sid, b"def"))
    assert events == [(DATA, sid, b"abc", 3), (DATA, sid, b"def", 3), (ENDED, sid)]
    assert conn.open_outbound_streams == 0


def test_frames_split_anywhere_arrive_whole() -> None:
    conn = client()
    sid = answered(conn)
    wire = frame(0, 0, sid, b"0123456789") + frame(0, 0x1, sid, b"xyz")
    events: list[Any] = []
    for at in range(len(wire)):
        events += conn.receive(wire[at : at + 1])
    assert events == [(DATA, sid, b"0123456789", 10), (DATA, sid, b"xyz", 3), (ENDED, sid)]


def test_padding_is_stripped_and_still_counts_against_the_windows() -> None:
    conn = client()
    sid = answered(conn)
    padded = bytes([4]) + b"body" + b"\0" * 4
    assert conn.receive(frame(0, 0x8, sid, padded)) == [(DATA, sid, b"body", 9)]
    with pytest.raises(ProtocolError, match="padding"):
        conn.receive(frame(0, 0x8, sid, bytes([9]) + b"12345678"))


def test_informational_answers_are_skipped_and_trailers_end_the_stream() -> None:
    conn = client()
    sid = conn.next_stream_id()
    conn.send_headers(sid, GET, end_stream=True)
    enc = hpack.Encoder()
    events = conn.receive(
        frame(1, 0x4, sid, enc.encode([(b":status", b"103")]))
        + frame(1, 0x4, sid, enc.encode([(b":status", b"200"), (b"a", b"b")]))
        + frame(0, 0, sid, b"x")
        + frame(1, 0x5, sid, enc.encode([(b"grpc-status", b"0")]))
    )
    assert events == [
        (RESPONSE, sid, [(b":status", b"200"), (b"a", b"b")]),
        (DATA, sid, b"x", 1),
        (ENDED, sid),
    ]


def test_a_header_block_in_continuations_and_a_frame_inside_one() -> None:
    conn = client()
    sid = conn.next_stream_id()
    conn.send_headers(sid, GET, end_stream=True)
    block = hpack.Encoder().encode([(b":status", b"200"), (b"x", b"y" * 100)])
    events = conn.receive(
        frame(1, 0, sid, block[:10])
        + frame(9, 0, sid, block[10:50])
        + frame(9, 0x4, sid, block[50:])
    )
    assert events == [(RESPONSE, sid, [(b":status", b"200"), (b"x", b"y" * 100)])]
    other = client()
    sid = other.next_stream_id()
    other.send_headers(sid, GET, end_stream=True)
    with pytest.raises(ProtocolError, match="inside a header block"):
        other.receive(frame(1, 0, sid, block[:10]) + frame(6, 0, 0, b"12345678"))


def test_data_beyond_a_window_is_a_flow_control_error_with_a_goaway() -> None:
    conn = client(window=100, connection_window=1000)
    sid = answered(conn)
    conn.receive(frame(0, 0, sid, b"x" * 100))
    with pytest.raises(FlowControlError):
        conn.receive(frame(0, 0, sid, b"x"))
    sent = frames_of(conn.data_to_send())
    assert sent[-1] == (7, 0, 0, struct.pack(">LL", 0, ErrorCode.FLOW_CONTROL_ERROR))
    assert conn.receive(frame(0, 0, sid, b"x")) == []  # done: nothing more is read


def test_consumed_data_reopens_the_windows_half_a_window_at_a_time() -> None:
    conn = client(window=1000)  # the connection's: the protocol's 65,535
    sid = answered(conn)
    conn.receive(frame(0, 0, sid, b"x" * 400))
    conn.acknowledge(sid, 400)
    assert conn.data_to_send() == b""  # under half of either window
    conn.receive(frame(0, 0, sid, b"x" * 200))
    conn.acknowledge(sid, 200)
    assert frames_of(conn.data_to_send()) == [(8, 0, sid, struct.pack(">L", 600))]
    given_back = 0
    for _ in range(70):  # the connection's half (32,767) is reached on the way
        conn.receive(frame(0, 0, sid, b"x" * 500))
        conn.acknowledge(sid, 500)
        for kind, _, on, payload in frames_of(conn.data_to_send()):
            if kind == 8 and on == 0:
                given_back += struct.unpack(">L", payload)[0]
    assert given_back == 600 + 65 * 500  # at the first acknowledgement past half
    # never beyond: the stream's window of 1,000 takes 1,000 more and no byte after
    conn.receive(frame(0, 0, sid, b"x" * 1000))
    with pytest.raises(FlowControlError):
        conn.receive(frame(0, 0, sid, b"x"))


def test_data_of_a_stream_we_reset_only_counts_for_the_connection() -> None:
    conn = client()
    sid = answered(conn)
    conn.reset_stream(sid, ErrorCode.CANCEL)
    assert frames_of(conn.data_to_send()) == [(3, 0, sid, struct.pack(">L", 8))]
    late = frame(0, 0, sid, b"x" * 12000)
    assert conn.receive(late + late) == []
    assert conn.data_to_send() == b""  # 24,000 of the 65,535: not half yet
    assert conn.receive(late) == []
    assert frames_of(conn.data_to_send()) == [(8, 0, 0, struct.pack(">L", 36000))]
    assert conn.receive(frame(1, 0x5, sid, status_block())) == []  # late headers dropped
    assert conn.receive(frame(3, 0, sid, struct.pack(">L", 0))) == []


@pytest.mark.parametrize(
    "wire, error",
    [
        (frame(0, 0, 7, b"x"), "never opened"),  # DATA on a stream not opened
        (frame(0, 0, 2, b"x"), "never opened"),  # a server-initiated stream
        (frame(0, 0, 0, b"x"), "never opened"),
        (frame(1, 0x4, 0, b""), "stream 0"),
        (frame(3, 0, 0, b"\0\0\0\0"), "never opened"),
        (frame(3, 0, 1, b"\0\0\0"), "RST_STREAM of 3 bytes"),
        (frame(4, 0, 1, b""), "SETTINGS on a stream"),
        (frame(4, 0, 0, b"\0\0\0"), "SETTINGS of 3 bytes"),
        (frame(4, 0x1, 0, b"\0"), "acknowledgement with a payload"),
        (frame(4, 0, 0, struct.pack(">HL", 5, 100)), "MAX_FRAME_SIZE 100"),
        (frame(4, 0, 0, struct.pack(">HL", 2, 2)), "ENABLE_PUSH 2"),
        (frame(6, 0, 0, b"1234567"), "PING of 7 bytes"),
        (frame(6, 0, 1, b"12345678"), "PING on a stream"),
        (frame(7, 0, 0, b"1234"), "GOAWAY of 4 bytes"),
        (frame(8, 0, 0, b"\0\0\0\0"), "WINDOW_UPDATE of 0"),
        (frame(8, 0, 0, struct.pack(">L", 2**31 - 1)), "beyond 2\\^31-1"),
        (frame(8, 0, 1, b"\0\0"), "WINDOW_UPDATE of 2 bytes"),
        (frame(9, 0x4, 1, b""), "outside a header block"),
        (frame(2, 0, 1, b"1234"), "PRIORITY of 4 bytes"),
        (frame(0, 0, 1, b"x" * 16385), "a frame of 16385 bytes"),
        (frame(1, 0x4, 1, b"\xff\xff\xff\xff"), "undecodable header block"),
        (frame(5, 0x4, 1, struct.pack(">L", 0)), "not a server's stream"),
        (frame(5, 0x4, 1, struct.pack(">L", 3)), "not a server's stream"),
    ],
)
def test_the_servers_protocol_errors(wire: bytes, error: str) -> None:
    conn = client()
    conn.send_headers(conn.next_stream_id(), GET, end_stream=True)
    with pytest.raises(ProtocolError, match=error):
        conn.receive(wire)
    assert frames_of(conn.data_to_send())[-1][0] == 7  # a GOAWAY


def test_a_frame_larger_than_allowed_is_refused_from_its_header_alone() -> None:
    conn = client()
    with pytest.raises(FrameSizeError):
        conn.receive(b"\x01\x00\x00\x00\x00\x00\x00\x00\x01")  # 65,536 bytes announced


def test_data_before_the_answer_and_after_the_end() -> None:
    conn = client()
    sid = conn.next_stream_id()
    conn.send_headers(sid, GET, end_stream=True)
    with pytest.raises(ProtocolError, match="before the answer"):
        conn.receive(frame(0, 0, sid, b"x"))
    conn = client()
    sid = conn.next_stream_id()
    conn.send_headers(sid, GET, end_stream=False)  # a body still to send
    conn.receive(frame(1, 0x5, sid, status_block()))
    with pytest.raises(ProtocolError, match="after the end"):
        conn.receive(frame(0, 0, sid, b"x"))


def test_settings_pings_and_goaway() -> None:
    conn = client()
    events = conn.receive(frame(4, 0, 0, struct.pack(">HLHL", 3, 7, 5, 20000)))
    assert events == [(SETTINGS,)]
    assert conn.max_concurrent_streams == 7 and conn.max_outbound_frame_size == 20000
    assert frames_of(conn.data_to_send()) == [(4, 1, 0, b"")]  # acknowledged
    assert conn.receive(frame(6, 0, 0, b"pingpong")) == []
    assert frames_of(conn.data_to_send()) == [(6, 1, 0, b"pingpong")]
    assert conn.receive(frame(6, 1, 0, b"pingpong")) == []  # an answer: nothing to do
    assert conn.receive(frame(7, 0, 0, struct.pack(">LL", 5, 0) + b"debug")) == [(GOAWAY, 5, 0)]
    assert conn.receive(frame(99, 0xFF, 3, b"unknown")) == []  # unknown types are ignored


def test_a_reset_ends_one_stream() -> None:
    conn = client()
    a, b = answered(conn), answered(conn)
    assert conn.receive(frame(3, 0, a, struct.pack(">L", 8))) == [(RESET, a, 8)]
    assert conn.stream_ids() == [b]


def test_pushes_before_our_settings_are_acknowledged_are_refused_after_they_are_errors() -> None:
    conn = client()
    sid = answered(conn)
    enc = hpack.Encoder()
    promise = frame(5, 0x4, sid, struct.pack(">L", 2) + enc.encode(GET))
    assert conn.receive(promise) == []
    assert frames_of(conn.data_to_send()) == [(3, 0, 2, struct.pack(">L", 7))]  # REFUSED
    assert conn.stream_ids() == [sid]
    conn.receive(frame(4, 0x1, 0, b""))  # our ENABLE_PUSH 0 is acknowledged now
    with pytest.raises(ProtocolError, match="push is disabled"):
        conn.receive(frame(5, 0x4, sid, struct.pack(">L", 4) + enc.encode(GET)))


def test_the_header_list_and_header_block_limits() -> None:
    conn = client()
    sid = conn.next_stream_id()
    conn.send_headers(sid, GET, end_stream=True)
    fat = hpack.Encoder().encode(
        [(b":status", b"200"), *[(b"x%d" % i, b"v" * 4000) for i in range(20)]]
    )
    with pytest.raises(ProtocolError, match="header list over"):
        parts = [fat[at : at + 16384] for at in range(0, len(fat), 16384)]
        conn.receive(
            frame(1, 0, sid, parts[0])
            + b"".join(frame(9, 0, sid, part) for part in parts[1:-1])
            + frame(9, 0x4, sid, parts[-1])
        )
    conn = client()
    sid = conn.next_stream_id()
    conn.send_headers(sid, GET, end_stream=True)
    flood = frame(1, 0, sid, b"\0") + frame(9, 0, sid, b"\0" * 16384) * 9
    with pytest.raises(ProtocolError, match="header block over"):
        conn.receive(flood)


# -- anything at all


_frames = st.one_of(
    st.binary(max_size=30),
    st.builds(
        frame,
        st.integers(0, 12),
        st.integers(0, 255),
        st.sampled_from([0, 1, 2, 3, 5, 2**31 - 1]),
        st.binary(max_size=40),
    ),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_frames, max_size=15), st.integers(1, 3))
def test_arbitrary_bytes_give_events_or_a_protocol_error_and_windows_hold(
    wires: list[bytes], streams: int
) -> None:
    conn = client()
    for _ in range(streams):
        conn.send_headers(conn.next_stream_id(), GET, end_stream=True)
    for wire in wires:
        try:
            events = conn.receive(wire)
        except ProtocolError:
            return
        for event in events:
            assert event[0] in (RESPONSE, DATA, ENDED, RESET, WINDOW, SETTINGS, GOAWAY)
            if event[0] == DATA:
                conn.acknowledge(event[1], event[3])
        assert conn._recv_window >= 0
        assert all(s.recv_window >= 0 for s in conn._streams.values())
        conn.data_to_send()
