"""HTTP/2 framing (RFC 9113) for both ends, without I/O: bytes in, events out, bytes to
send. ``ClientConnection`` carries the hub's requests and watches (``clusters.h2client``);
``ServerConnection`` answers them in the simulator (``clusters.sim.http2``).

Both ran on the ``h2`` library's state machine. Its generality (both roles in one
machine, server push, priorities, every stream state, an event object per frame, per-frame
flag sets) cost about a tenth of the hub's event loop in a rollout, and as much of the
simulator's. This module does what a client of an API server, and an API server, need and
no more, with the same rules where they matter:

- frames are parsed straight from the received bytes, at most ``MAX_FRAME_SIZE`` (we never
  advertise more than the protocol's 16 KiB); a longer one is a ``FRAME_SIZE_ERROR``;
- the receive windows are enforced (data beyond one is a ``FLOW_CONTROL_ERROR``) and
  reopened as the caller consumes data (``acknowledge``), half a window at a time;
- the send windows follow the peer's SETTINGS and WINDOW_UPDATEs (``send_window``);
- header blocks are decoded with ``hpack`` (the dynamic table must stay in step even for
  streams we reset), with the header list limit we advertise, and a block split over
  CONTINUATION frames is bounded (twice that limit: ``MAX_HEADER_BLOCK`` for the client);
- frames for streams we closed or reset are dropped (their data still counts against,
  and is given back to, the connection window); frames for streams never opened, or on
  stream 0 where a stream is needed, are a ``PROTOCOL_ERROR``.

The client refuses server push: a PUSH_PROMISE after the server acknowledged our
``ENABLE_PUSH = 0`` is a ``PROTOCOL_ERROR``; one before that (allowed until then) is
answered with RST_STREAM ``REFUSED_STREAM`` and leaves no state. The server checks the
client's preface, takes streams in rising odd ids, and refuses a stream past the
``MAX_CONCURRENT_STREAMS`` it advertised with RST_STREAM ``REFUSED_STREAM`` (the stream
alone, as Go's server does); a client's PUSH_PROMISE is a ``PROTOCOL_ERROR``.

Every error of the peer is a connection error (RFC 9113 5.4.1 lets an endpoint treat a
stream error so): ``receive`` queues a GOAWAY with the code and raises ``ProtocolError``
(a subclass naming the code), after which the connection is done.

Events are tuples, first the kind: ``(RESPONSE, stream_id, headers)`` (client),
``(REQUEST, stream_id, headers)`` (server), ``(DATA, stream_id, data,
flow_controlled_length)``, ``(ENDED, stream_id)`` (the peer's side of the stream ended),
``(RESET, stream_id, error_code)``, ``(WINDOW,)`` (a send window grew), ``(SETTINGS,)``
(the peer's settings changed), ``(GOAWAY, last_stream_id, error_code)``. A 1xx answer and
trailers are not reported (trailers end the stream: ``ENDED``).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import hpack
import hpack.exceptions

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
_PUSH_PROMISE, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9

# flags
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

# settings
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE_SETTING, MAX_HEADER_LIST_SIZE = 0x4, 0x5, 0x6

# event kinds
RESPONSE, DATA, ENDED, RESET, WINDOW, SETTINGS, GOAWAY, REQUEST = range(8)

#: The largest frame we accept (the protocol's default; we never advertise more).
MAX_FRAME_SIZE = 16384
#: The largest header list we accept, decoded (advertised in our SETTINGS, as h2 did).
MAX_HEADER_LIST = 65536
#: The largest header block, encoded, before it is decoded: a server sending CONTINUATION
#: frames without end would otherwise have us buffer without bound.
MAX_HEADER_BLOCK = 2 * MAX_HEADER_LIST
#: The protocol's limits on windows and frame sizes.
MAX_WINDOW = 2**31 - 1
_DEFAULT_WINDOW = 65535
_LARGEST_FRAME = 2**24 - 1
_LAST_STREAM_ID = 2**31 - 1

_HEAD = struct.Struct(">BHBBL")  # length (24 bits, split 8 + 16), type, flags, stream id
_SETTING = struct.Struct(">HL")
_U32 = struct.Struct(">L")
_TWO_U32 = struct.Struct(">LL")


class ErrorCode(enum.IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


def error_name(code: int) -> str:
    """The name of an error code, or ``error N`` for one the protocol does not define."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error {code}"


class ProtocolError(Exception):
    """The peer broke the protocol: the connection is done (a GOAWAY is queued)."""

    code = ErrorCode.PROTOCOL_ERROR


class FlowControlError(ProtocolError):
    code = ErrorCode.FLOW_CONTROL_ERROR


class FrameSizeError(ProtocolError):
    code = ErrorCode.FRAME_SIZE_ERROR


class CompressionError(ProtocolError):
    code = ErrorCode.COMPRESSION_ERROR


class StreamIdsExhausted(Exception):
    """Every client stream id of this connection is used: open another connection."""


class PlainHpackEncoder(hpack.Encoder):
    """HPACK without Huffman coding of literal strings (RFC 7541 5.2 lets the sender
    choose). A request's new literal (its :path) coded bit by bit in pure Python cost
    ~25 us of CPU on each side, about a tenth of a request; plain, it costs a few
    dozen bytes more on the wire."""

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)


_Events = list[tuple[Any, ...]]
#: What a complete header block goes to (the block, the events of this ``receive``).
_Finish = Callable[[bytes, _Events], None]


@dataclass(slots=True)
class _Block:
    """A header block split over CONTINUATION frames, so far."""

    stream_id: int
    finish: _Finish
    fragments: list[bytes]
    size: int


@dataclass(slots=True)
class _Stream:
    send_window: int
    recv_window: int
    unacked: int = 0  # consumed by the caller, not yet given back to the server
    local_closed: bool = False  # we sent END_STREAM
    remote_closed: bool = False  # the peer did
    headed: bool = False  # the peer's headers arrived (for a client: a final, non-1xx answer)


class _Endpoint:
    """What both ends of a connection do alike: windows, settings, pings, resets, GOAWAY,
    header blocks and the frame loop. The subclasses say which streams exist and what
    a HEADERS or PUSH_PROMISE frame means."""

    def __init__(self, encoder: hpack.Encoder, max_header_list: int) -> None:
        self._encoder = encoder
        self._decoder = hpack.Decoder(max_header_list_size=max_header_list)
        self._max_header_list = max_header_list
        self._out: list[bytes] = []
        self._buffer = b""
        self._streams: dict[int, _Stream] = {}
        # the peer's settings
        self.max_concurrent_streams = 2**31 - 1  # unlimited until it says
        self.max_outbound_frame_size = MAX_FRAME_SIZE
        self._remote_initial_window = _DEFAULT_WINDOW
        # ours
        self._local_initial_window = _DEFAULT_WINDOW
        self._settings_unacked = 0
        # connection windows
        self._send_window = _DEFAULT_WINDOW
        self._recv_window = _DEFAULT_WINDOW
        self._recv_window_max = _DEFAULT_WINDOW
        self._unacked = 0
        self._block: _Block | None = None  # a header block awaiting CONTINUATION frames
        self._closed = False

    # -- what the caller reads

    def stream_ids(self) -> list[int]:
        """The open streams' ids (for tests and diagnostics)."""
        return list(self._streams)

    def sent_everything(self, stream_id: int) -> bool:
        """We sent this open stream's END_STREAM."""
        stream = self._streams.get(stream_id)
        return stream is not None and stream.local_closed

    def send_window(self, stream_id: int) -> int | None:
        """Bytes of body the stream may send now (its window and the connection's); None
        when the stream is not open."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return None
        return min(stream.send_window, self._send_window)

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    # -- what the caller sends

    def _send_settings(self, settings: dict[int, int], connection_window: int) -> None:
        """Our SETTINGS, and the connection's receive window raised to ``connection_window``."""
        payload = b"".join(_SETTING.pack(k, v) for k, v in settings.items())
        self._out.append(_frame(_SETTINGS, 0, 0, payload))
        self._settings_unacked += 1
        if INITIAL_WINDOW_SIZE in settings:
            self._local_initial_window = settings[INITIAL_WINDOW_SIZE]
        increment = connection_window - self._recv_window
        if increment > 0:
            self._out.append(_frame(_WINDOW_UPDATE, 0, 0, _U32.pack(increment)))
            self._recv_window = self._recv_window_max = connection_window

    def _send_block(self, stream_id: int, headers: Any, end_stream: bool) -> None:
        """A HEADERS frame, and CONTINUATION frames for what does not fit in it."""
        block = self._encoder.encode(headers)
        size = self.max_outbound_frame_size
        flags = _END_STREAM if end_stream else 0
        if len(block) <= size:
            self._out.append(_frame(_HEADERS, flags | _END_HEADERS, stream_id, block))
            return
        view = memoryview(block)
        self._out.append(_frame(_HEADERS, flags, stream_id, bytes(view[:size])))
        for at in range(size, len(block), size):
            last = at + size >= len(block)
            part = bytes(view[at : at + size])
            self._out.append(_frame(_CONTINUATION, _END_HEADERS if last else 0, stream_id, part))

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        """Send body ``data`` (one frame: at most ``send_window`` and the frame size)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed:
            raise ValueError(f"stream {stream_id} cannot send")
        size = len(data)
        if size > min(stream.send_window, self._send_window, self.max_outbound_frame_size):
            raise ValueError(f"{size} bytes exceed stream {stream_id}'s window or frame size")
        stream.send_window -= size
        self._send_window -= size
        self._out.append(_frame(_DATA, _END_STREAM if end_stream else 0, stream_id, data))
        if end_stream:
            self._local_end(stream_id, stream)

    def _local_end(self, stream_id: int, stream: _Stream) -> None:
        stream.local_closed = True
        if stream.remote_closed:
            del self._streams[stream_id]

    def reset_stream(self, stream_id: int, code: int) -> None:
        """RST_STREAM for an open stream (nothing for one already closed)."""
        if self._streams.pop(stream_id, None) is not None:
            self._out.append(_frame(_RST_STREAM, 0, stream_id, _U32.pack(code)))

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The caller consumed ``size`` flow-controlled bytes of ``stream_id``: give them
        back to the peer, half a window at a time."""
        if size <= 0 or self._closed:
            return
        self._unacked += size
        if self._unacked >= self._recv_window_max // 2:
            self._out.append(_frame(_WINDOW_UPDATE, 0, 0, _U32.pack(self._unacked)))
            self._recv_window += self._unacked
            self._unacked = 0
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_closed:
            return  # the peer sends nothing more on it
        stream.unacked += size
        if stream.unacked >= self._local_initial_window // 2:
            self._out.append(_frame(_WINDOW_UPDATE, 0, stream_id, _U32.pack(stream.unacked)))
            stream.recv_window += stream.unacked
            stream.unacked = 0

    def ping(self, payload: bytes) -> None:
        self._out.append(_frame(_PING, 0, 0, payload[:8].ljust(8, b"\0")))

    def close(self, code: int = ErrorCode.NO_ERROR) -> None:
        """GOAWAY: the connection takes no more streams (it names the last stream of the
        peer's it processed), and reads nothing more."""
        if not self._closed:
            self._closed = True
            self._out.append(_frame(_GOAWAY, 0, 0, _TWO_U32.pack(self._last_peer_stream(), code)))

    def _last_peer_stream(self) -> int:
        return 0

    # -- what the peer sends

    def receive(self, data: bytes) -> _Events:
        """Feed bytes read from the connection; the events of every whole frame in them.
        Raises ``ProtocolError`` (a GOAWAY queued) when the peer broke the protocol."""
        if self._closed:
            return []
        buffer = self._buffer + data if self._buffer else data
        events: _Events = []
        at, end = 0, len(buffer)
        try:
            while end - at >= 9:
                high, low, kind, flags, stream_id = _HEAD.unpack_from(buffer, at)
                length = high << 16 | low
                if length > MAX_FRAME_SIZE:
                    raise FrameSizeError(f"a frame of {length} bytes (limit {MAX_FRAME_SIZE})")
                if end - at - 9 < length:
                    break
                payload = buffer[at + 9 : at + 9 + length]
                at += 9 + length
                self._frame(kind, flags, stream_id & _LAST_STREAM_ID, payload, events)
        except ProtocolError as exc:
            self._buffer = b""
            self.close(exc.code)
            raise
        self._buffer = buffer[at:] if at < end else b""
        return events

    def _frame(
        self, kind: int, flags: int, stream_id: int, payload: bytes, events: _Events
    ) -> None:
        if self._block is not None and kind != _CONTINUATION:
            raise ProtocolError("a frame inside a header block (CONTINUATION expected)")
        if kind == _DATA:
            self._data(flags, stream_id, payload, events)
        elif kind == _HEADERS:
            if not stream_id:
                raise ProtocolError("HEADERS on stream 0")
            block = self._unpad(flags, payload, "HEADERS")
            if flags & _PRIORITY_FLAG:
                if len(block) < 5:
                    raise FrameSizeError("HEADERS too short for its priority")
                block = block[5:]
            self._header_block(flags, stream_id, block, self._headers_of(flags, stream_id), events)
        elif kind == _CONTINUATION:
            self._continuation(flags, stream_id, payload, events)
        elif kind == _WINDOW_UPDATE:
            self._window_update(stream_id, payload, events)
        elif kind == _RST_STREAM:
            self._rst_stream(stream_id, payload, events)
        elif kind == _SETTINGS:
            self._settings(flags, stream_id, payload, events)
        elif kind == _PING:
            if stream_id:
                raise ProtocolError("PING on a stream")
            if len(payload) != 8:
                raise FrameSizeError(f"PING of {len(payload)} bytes")
            if not flags & _ACK:
                self._out.append(_frame(_PING, _ACK, 0, payload))
        elif kind == _GOAWAY:
            if stream_id:
                raise ProtocolError("GOAWAY on a stream")
            if len(payload) < 8:
                raise FrameSizeError(f"GOAWAY of {len(payload)} bytes")
            last, code = _TWO_U32.unpack_from(payload)
            events.append((GOAWAY, last & _LAST_STREAM_ID, code))
        elif kind == _PUSH_PROMISE:
            self._push_promise(flags, stream_id, payload, events)
        elif kind == _PRIORITY:
            if not stream_id:
                raise ProtocolError("PRIORITY on stream 0")
            if len(payload) != 5:
                raise FrameSizeError(f"PRIORITY of {len(payload)} bytes")
        # frames of unknown types are ignored (RFC 9113 4.1)

    def _known(self, stream_id: int, what: str) -> _Stream | None:
        """The open stream ``stream_id``; None for one closed; an error for stream 0 or
        one never opened."""
        raise NotImplementedError

    def _headers_of(self, flags: int, stream_id: int) -> _Finish:
        """What finishes a HEADERS block of ``stream_id``."""
        raise NotImplementedError

    def _push_promise(self, flags: int, stream_id: int, payload: bytes, events: _Events) -> None:
        raise NotImplementedError

    @staticmethod
    def _unpad(flags: int, payload: bytes, what: str) -> bytes:
        if not flags & _PADDED:
            return payload
        if not payload or payload[0] >= len(payload):
            raise ProtocolError(f"{what} with more padding than payload")
        return payload[1 : len(payload) - payload[0]]

    def _data(self, flags: int, stream_id: int, payload: bytes, events: _Events) -> None:
        stream = self._known(stream_id, "DATA")
        size = len(payload)
        self._recv_window -= size
        if self._recv_window < 0:
            raise FlowControlError("DATA beyond the connection's window")
        if stream is None:
            self.acknowledge(0, size)  # a stream closed or reset: its data only counts
            return
        if stream.remote_closed:
            raise ProtocolError(f"DATA after the end of stream {stream_id}")
        if not stream.headed:
            raise ProtocolError(f"DATA before the answer's headers on stream {stream_id}")
        stream.recv_window -= size
        if stream.recv_window < 0:
            raise FlowControlError(f"DATA beyond stream {stream_id}'s window")
        body = self._unpad(flags, payload, "DATA")
        events.append((DATA, stream_id, body, size))
        if flags & _END_STREAM:
            self._remote_end(stream_id, stream, events)

    def _remote_end(self, stream_id: int, stream: _Stream, events: _Events) -> None:
        stream.remote_closed = True
        if stream.local_closed:
            del self._streams[stream_id]
        events.append((ENDED, stream_id))

    def _header_block(
        self, flags: int, stream_id: int, fragment: bytes, finish: _Finish, events: _Events
    ) -> None:
        """``finish`` the block now, or once its CONTINUATION frames are in."""
        if flags & _END_HEADERS:
            finish(fragment, events)
        else:
            self._block = _Block(stream_id, finish, [fragment], len(fragment))

    def _continuation(self, flags: int, stream_id: int, payload: bytes, events: _Events) -> None:
        block = self._block
        if block is None or block.stream_id != stream_id:
            raise ProtocolError(f"CONTINUATION on stream {stream_id} outside a header block")
        block.size += len(payload)
        if block.size > 2 * self._max_header_list:
            raise ProtocolError(f"a header block over {2 * self._max_header_list} bytes")
        block.fragments.append(payload)
        if flags & _END_HEADERS:
            self._block = None
            block.finish(b"".join(block.fragments), events)

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        try:
            return [
                (bytes(name), bytes(value)) for name, value in self._decoder.decode(block, raw=True)
            ]
        except hpack.exceptions.OversizedHeaderListError:
            raise ProtocolError(f"a header list over {self._max_header_list} bytes") from None
        except (hpack.exceptions.HPACKError, ValueError, IndexError) as exc:
            raise CompressionError(f"an undecodable header block ({type(exc).__name__})") from None

    def _window_update(self, stream_id: int, payload: bytes, events: _Events) -> None:
        if len(payload) != 4:
            raise FrameSizeError(f"WINDOW_UPDATE of {len(payload)} bytes")
        increment = _U32.unpack(payload)[0] & MAX_WINDOW
        if not stream_id:
            if not increment:
                raise ProtocolError("a WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise FlowControlError("the connection's window beyond 2^31-1")
        else:
            stream = self._known(stream_id, "WINDOW_UPDATE")
            if stream is None:
                return
            if not increment:
                raise ProtocolError(f"a WINDOW_UPDATE of 0 on stream {stream_id}")
            stream.send_window += increment
            if stream.send_window > MAX_WINDOW:
                raise FlowControlError(f"stream {stream_id}'s window beyond 2^31-1")
        events.append((WINDOW,))

    def _rst_stream(self, stream_id: int, payload: bytes, events: _Events) -> None:
        if len(payload) != 4:
            raise FrameSizeError(f"RST_STREAM of {len(payload)} bytes")
        if self._known(stream_id, "RST_STREAM") is None:
            return
        del self._streams[stream_id]
        events.append((RESET, stream_id, _U32.unpack(payload)[0]))

    def _settings_acknowledged(self) -> None:
        """Every SETTINGS we sent is acknowledged: the peer now follows them."""

    def _settings(self, flags: int, stream_id: int, payload: bytes, events: _Events) -> None:
        if stream_id:
            raise ProtocolError("SETTINGS on a stream")
        if flags & _ACK:
            if payload:
                raise FrameSizeError("a SETTINGS acknowledgement with a payload")
            if self._settings_unacked:
                self._settings_unacked -= 1
                if not self._settings_unacked:
                    self._settings_acknowledged()
            return
        if len(payload) % 6:
            raise FrameSizeError(f"SETTINGS of {len(payload)} bytes")
        for at in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, at)
            if key == HEADER_TABLE_SIZE:
                self._encoder.header_table_size = value
            elif key == ENABLE_PUSH:
                if value > 1:
                    raise ProtocolError(f"ENABLE_PUSH {value}")
            elif key == MAX_CONCURRENT_STREAMS:
                self.max_concurrent_streams = value
            elif key == INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise FlowControlError(f"INITIAL_WINDOW_SIZE {value}")
                delta = value - self._remote_initial_window
                self._remote_initial_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise FlowControlError("a stream's window beyond 2^31-1")
            elif key == MAX_FRAME_SIZE_SETTING:
                if not MAX_FRAME_SIZE <= value <= _LARGEST_FRAME:
                    raise ProtocolError(f"MAX_FRAME_SIZE {value}")
                self.max_outbound_frame_size = value
            # MAX_HEADER_LIST_SIZE is advisory; unknown settings are ignored (6.5.2)
        self._out.append(_frame(_SETTINGS, _ACK, 0, b""))
        events.append((SETTINGS,))


class ClientConnection(_Endpoint):
    """One HTTP/2 client connection's protocol state. ``encoder``: the HPACK encoder of our
    header blocks (``PlainHpackEncoder``)."""

    def __init__(self, encoder: hpack.Encoder) -> None:
        super().__init__(encoder, MAX_HEADER_LIST)
        self._next_id = 1
        self._push_refused = False  # our ENABLE_PUSH = 0 is acknowledged

    @property
    def open_outbound_streams(self) -> int:
        """Streams we opened that are not closed yet (count against the server's limit)."""
        return len(self._streams)

    def initiate(self, settings: dict[int, int], connection_window: int) -> None:
        """The client's preface: our SETTINGS, and the connection's receive window raised
        to ``connection_window``."""
        self._out.append(PREFACE)
        self._send_settings(settings, connection_window)

    def next_stream_id(self) -> int:
        if self._next_id > _LAST_STREAM_ID:
            raise StreamIdsExhausted("every stream id of the connection is used")
        return self._next_id

    def send_headers(self, stream_id: int, headers: Any, *, end_stream: bool) -> None:
        """Open stream ``stream_id`` (``next_stream_id()``) with a request's headers."""
        if stream_id != self._next_id:
            raise ValueError(f"stream {stream_id} is not the next stream ({self._next_id})")
        self._next_id += 2
        self._streams[stream_id] = _Stream(
            send_window=self._remote_initial_window,
            recv_window=self._local_initial_window,
            local_closed=end_stream,
        )
        self._send_block(stream_id, headers, end_stream)

    def _settings_acknowledged(self) -> None:
        self._push_refused = True

    def _known(self, stream_id: int, what: str) -> _Stream | None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream
        # stream 0, one never opened, or a server-initiated one (we accept none)
        if not stream_id or not stream_id & 1 or stream_id >= self._next_id:
            raise ProtocolError(f"{what} on stream {stream_id}, which was never opened")
        return None

    def _headers_of(self, flags: int, stream_id: int) -> _Finish:
        return partial(self._answer, stream_id, bool(flags & _END_STREAM))

    def _refuse_push(self, block: bytes, events: _Events) -> None:
        """RST_STREAM REFUSED_STREAM for a promised stream, which leaves no state."""
        promised = _U32.unpack_from(block)[0] & _LAST_STREAM_ID
        if not promised or promised & 1:
            raise ProtocolError(f"PUSH_PROMISE of stream {promised}, not a server's stream")
        # decoded all the same: the table must stay in step with the server's encoder
        self._decode(block[4:])
        self._out.append(_frame(_RST_STREAM, 0, promised, _U32.pack(ErrorCode.REFUSED_STREAM)))

    def _answer(self, stream_id: int, end_stream: bool, block: bytes, events: _Events) -> None:
        """A HEADERS block of one of our streams: its answer, a 1xx, or its trailers."""
        stream = self._known(stream_id, "HEADERS")
        headers = self._decode(block)
        if stream is None:
            return  # an answer to a stream we reset
        if stream.remote_closed:
            raise ProtocolError(f"HEADERS after the end of stream {stream_id}")
        if not stream.headed:
            status = _status_of(headers)
            if len(status) == 3 and status[:1] == b"1" and not end_stream:
                return  # informational (1xx): the answer follows
            stream.headed = True
            events.append((RESPONSE, stream_id, headers))
        elif not end_stream:
            raise ProtocolError(f"trailers without END_STREAM on stream {stream_id}")
        if end_stream:
            self._remote_end(stream_id, stream, events)

    def _push_promise(self, flags: int, stream_id: int, payload: bytes, events: _Events) -> None:
        if self._push_refused:
            raise ProtocolError("PUSH_PROMISE although push is disabled")
        self._known(stream_id, "PUSH_PROMISE")
        block = self._unpad(flags, payload, "PUSH_PROMISE")
        if len(block) < 4:
            raise FrameSizeError("PUSH_PROMISE without a promised stream")
        self._header_block(flags, stream_id, block, self._refuse_push, events)


class ServerConnection(_Endpoint):
    """One HTTP/2 server connection's protocol state (the simulator's API servers).
    ``max_header_list``: the largest decoded header list a request may have, as our
    SETTINGS advertise it."""

    def __init__(self, encoder: hpack.Encoder, *, max_header_list: int = MAX_HEADER_LIST) -> None:
        super().__init__(encoder, max_header_list)
        self._preface_left = PREFACE  # what of the client's preface is still to come
        self._highest = 0  # the highest stream id the client opened
        self._max_streams = 2**31 - 1  # as our SETTINGS say (``initiate``)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def initiate(self, settings: dict[int, int], connection_window: int) -> None:
        """The server's preface: our SETTINGS, and the connection's receive window raised
        to ``connection_window``. Streams past our ``MAX_CONCURRENT_STREAMS`` are refused."""
        self._max_streams = settings.get(MAX_CONCURRENT_STREAMS, self._max_streams)
        self._send_settings(settings, connection_window)

    def send_headers(self, stream_id: int, headers: Any, *, end_stream: bool) -> None:
        """The answer's headers on an open stream (``ValueError`` once it is closed)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed:
            raise ValueError(f"stream {stream_id} cannot send")
        self._send_block(stream_id, headers, end_stream)
        if end_stream:
            self._local_end(stream_id, stream)

    def receive(self, data: bytes) -> _Events:
        if self._preface_left and not self._closed:
            take = data[: len(self._preface_left)]
            if not self._preface_left.startswith(take):
                self._buffer = b""
                self.close(ErrorCode.PROTOCOL_ERROR)
                raise ProtocolError("the client's preface is not HTTP/2's")
            self._preface_left = self._preface_left[len(take) :]
            data = data[len(take) :]
            if not data:
                return []
        return super().receive(data)

    def _last_peer_stream(self) -> int:
        return self._highest

    def _known(self, stream_id: int, what: str) -> _Stream | None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream
        if not stream_id or not stream_id & 1 or stream_id > self._highest:
            raise ProtocolError(f"{what} on stream {stream_id}, which was never opened")
        return None

    def _headers_of(self, flags: int, stream_id: int) -> _Finish:
        return partial(self._request, stream_id, bool(flags & _END_STREAM))

    def _request(self, stream_id: int, end_stream: bool, block: bytes, events: _Events) -> None:
        """A HEADERS block from the client: a new stream's request, or its trailers."""
        # decoded first, whatever becomes of the stream: the table must stay in step
        headers = self._decode(block)
        stream = self._streams.get(stream_id)
        if stream is not None:
            if stream.remote_closed:
                raise ProtocolError(f"HEADERS after the end of stream {stream_id}")
            if not end_stream:
                raise ProtocolError(f"trailers without END_STREAM on stream {stream_id}")
            self._remote_end(stream_id, stream, events)
            return
        if not stream_id & 1:
            raise ProtocolError(f"HEADERS opening stream {stream_id}, not a client's stream")
        if stream_id <= self._highest:
            return  # a stream we reset or refused, or one already done: dropped
        self._highest = stream_id
        if len(self._streams) >= self._max_streams:
            self._out.append(_frame(_RST_STREAM, 0, stream_id, _U32.pack(ErrorCode.REFUSED_STREAM)))
            return
        stream = _Stream(
            send_window=self._remote_initial_window,
            recv_window=self._local_initial_window,
            headed=True,
        )
        self._streams[stream_id] = stream
        events.append((REQUEST, stream_id, headers))
        if end_stream:
            self._remote_end(stream_id, stream, events)

    def _push_promise(self, flags: int, stream_id: int, payload: bytes, events: _Events) -> None:
        raise ProtocolError("PUSH_PROMISE from a client")


def _status_of(headers: list[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == b":status":
            return value
    return b""


def _frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    length = len(payload)
    return _HEAD.pack(length >> 16, length & 0xFFFF, kind, flags, stream_id) + payload
