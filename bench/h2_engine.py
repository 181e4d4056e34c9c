"""The hub's HTTP/2 client engine (``clusters.h2wire``) against the ``h2`` library's, per
request and per watch event, in memory (no sockets, no TLS).

An ``h2`` server answers; the bytes it sends are recorded once and fed to each client
engine, which also encodes the requests and acknowledges what it reads, as
``clusters.h2client`` does:

- a request: HEADERS out; HEADERS, one DATA frame of ``--body`` bytes and END_STREAM in;
- a watch event: one DATA frame of ``--event`` bytes on an open stream, acknowledged.

Prints microseconds per request and per event for each engine (best of ``--rounds``).

    python bench/h2_engine.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clusters import h2wire
from clusters.h2client import CONNECTION_WINDOW, STREAM_WINDOW
from clusters.h2wire import PlainHpackEncoder

REQUEST = [
    (b":method", b"PATCH"),
    (b":scheme", b"https"),
    (b":authority", b"127.0.0.1:6443"),
    (b":path", b"/apis/apps/v1/namespaces/svc-1/deployments/web?fieldManager=gitops-hub"),
    (b"accept", b"application/json"),
    (b"content-type", b"application/apply-patch+yaml"),
    (b"authorization", b"Bearer xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    (b"user-agent", b"gitops-hub/0.1"),
]
ANSWER = [
    (b":status", b"200"),
    (b"content-type", b"application/json"),
    (b"audit-id", b"5c8a0f8e-2f3e-4a65-9a4e-000000000000"),
    (b"cache-control", b"no-cache, private"),
    (b"x-kubernetes-pf-flowschema-uid", b"7f6a2c71-0000-0000-0000-000000000000"),
]


class _H2Client:
    """The h2 library as ``clusters.h2client`` configured it before h2wire."""

    def __init__(self) -> None:
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.encoder = PlainHpackEncoder()
        self.conn.initiate_connection()
        self.conn.update_settings(
            {
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            }
        )
        self.conn.increment_flow_control_window(
            CONNECTION_WINDOW - self.conn.inbound_flow_control_window
        )

    def start(self, headers: list[tuple[bytes, bytes]]) -> int:
        sid: int = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, headers, end_stream=True)
        return sid

    def feed(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(
                    event.flow_controlled_length or 0, event.stream_id or 0
                )

    def out(self) -> bytes:
        return self.conn.data_to_send()


class _WireClient:
    def __init__(self) -> None:
        self.conn = h2wire.ClientConnection(PlainHpackEncoder())
        self.conn.initiate(
            {
                h2wire.ENABLE_PUSH: 0,
                h2wire.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2wire.MAX_HEADER_LIST_SIZE: h2wire.MAX_HEADER_LIST,
            },
            CONNECTION_WINDOW,
        )

    def start(self, headers: list[tuple[bytes, bytes]]) -> int:
        sid = self.conn.next_stream_id()
        self.conn.send_headers(sid, headers, end_stream=True)
        return sid

    def feed(self, data: bytes) -> None:
        for event in self.conn.receive(data):
            if event[0] == h2wire.DATA:
                self.conn.acknowledge(event[1], event[3])

    def out(self) -> bytes:
        return self.conn.data_to_send()


def _server() -> h2.connection.H2Connection:
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    server.initiate_connection()
    return server


def _recorded(requests: int, body: int, events: int, event_size: int) -> tuple[bytes, list[bytes]]:
    """What the server sends: its preface, then per request one reply, then the watch's
    events as separate reads."""
    server = _server()
    client = _WireClient()
    server.receive_data(client.out())
    preface = server.data_to_send()
    replies = []
    for _ in range(requests):
        sid = client.start(REQUEST)
        server.receive_data(client.out())
        server.send_headers(sid, ANSWER)
        server.send_data(sid, b"x" * body, end_stream=True)
        replies.append(server.data_to_send())
        client.feed(replies[-1])
        server.receive_data(client.out())
    watch = client.start(REQUEST)
    server.receive_data(client.out())
    server.send_headers(watch, ANSWER)
    first = server.data_to_send()
    client.feed(first)
    chunks = [first]
    for _ in range(events):
        server.send_data(watch, b"y" * event_size)
        chunks.append(server.data_to_send())
        client.feed(chunks[-1])
        server.receive_data(client.out())
    return preface, replies + chunks


def _run(factory: Any, preface: bytes, reads: list[bytes], requests: int) -> tuple[float, float]:
    client = factory()
    client.feed(preface)
    client.out()
    started = time.perf_counter()
    for reply in reads[:requests]:
        client.start(REQUEST)
        client.out()
        client.feed(reply)
        client.out()
    per_request = (time.perf_counter() - started) / requests
    client.start(REQUEST)
    client.out()
    watch = reads[requests:]
    client.feed(watch[0])
    started = time.perf_counter()
    for chunk in watch[1:]:
        client.feed(chunk)
        client.out()
    per_event = (time.perf_counter() - started) / max(1, len(watch) - 1)
    return per_request, per_event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--body", type=int, default=1800, help="Bytes of each answer's body.")
    parser.add_argument("--event", type=int, default=2500, help="Bytes of each watch event.")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    preface, reads = _recorded(args.requests, args.body, args.events, args.event)
    for name, factory in (("h2 library", _H2Client), ("h2wire", _WireClient)):
        best = min(
            (_run(factory, preface, reads, args.requests) for _ in range(args.rounds)),
            key=lambda r: r[0] + r[1],
        )
        print(
            f"{name:11} request {1e6 * best[0]:6.1f} us   watch event {1e6 * best[1]:6.1f} us",
            flush=True,
        )


if __name__ == "__main__":
    main()
