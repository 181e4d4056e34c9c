"""Async HTTP clients for the hub's watches (issue 12): aiohttp vs httpx (HTTP/1.1, and
HTTP/2 where the server offers it) vs the hub's own HTTP/2 client (``clusters.h2client``,
every request and watch a stream of one connection) against one `hub sim` cluster.

For each client, in a fresh subprocess (so its memory is its own):
- GET of one ConfigMap: throughput and p50/p99 latency, 1 and 16 requests in flight;
- W concurrent watches of the ConfigMaps of one namespace, then E writes: time from a
  write's request to each watcher receiving its event (p50/p99/max);
- memory per watch: the process's RSS growth while the W watches are open, divided by W;
- the HTTP version the server agreed to.

    python bench/transport.py [--watches 200] [--requests 2000] [--writes 20] [--http2]

``--http2``: the simulator offers h2 by ALPN (as real API servers do); without it, only
HTTP/1.1, and the HTTP/2 clients fall back to it (hub-h2 is then skipped).

Needs `httpx[http2]` (not a hub dependency) for the httpx rows; skipped without it.
Figures go to stdout; docs/benchmarks.md ("Transport") records a run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import yaml

NS = "default"
CLIENTS = ("aiohttp", "httpx", "httpx-h2", "hub-h2")
ONLY = os.environ.get("BENCH_CLIENTS", ",".join(CLIENTS)).split(",")


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


class Transport(Protocol):
    version: str

    async def get(self, path: str) -> bytes: ...

    async def send(self, method: str, path: str, body: dict[str, Any]) -> None: ...

    def lines(self, path: str) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


class Aiohttp:
    def __init__(self, base: str, token: str, ctx: ssl.SSLContext) -> None:
        import aiohttp

        self.base = base
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=1024),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        )
        self.version = "HTTP/1.1"  # aiohttp has no HTTP/2 client

    async def get(self, path: str) -> bytes:
        async with self.session.get(self.base + path, headers=self.headers) as resp:
            return await resp.read()

    async def send(self, method: str, path: str, body: dict[str, Any]) -> None:
        async with self.session.request(
            method, self.base + path, headers=self.headers, json=body
        ) as resp:
            await resp.read()
            assert resp.status < 300, resp.status

    async def lines(self, path: str) -> AsyncIterator[bytes]:
        async with self.session.get(self.base + path, headers=self.headers) as resp:
            buffer = bytearray()
            async for chunk in resp.content.iter_any():
                buffer += chunk
                while (end := buffer.find(b"\n")) >= 0:
                    yield bytes(buffer[:end])
                    del buffer[: end + 1]

    async def close(self) -> None:
        await self.session.close()


class Httpx:
    def __init__(self, base: str, token: str, ctx: ssl.SSLContext, http2: bool) -> None:
        import httpx

        self.base = base
        self.client = httpx.AsyncClient(
            verify=ctx,
            http2=http2,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            limits=httpx.Limits(max_connections=1024, max_keepalive_connections=64),
            timeout=httpx.Timeout(30.0, read=None),
        )
        self.version = "?"

    async def get(self, path: str) -> bytes:
        resp = await self.client.get(self.base + path)
        self.version = resp.http_version
        return resp.content

    async def send(self, method: str, path: str, body: dict[str, Any]) -> None:
        resp = await self.client.request(method, self.base + path, json=body)
        assert resp.status_code < 300, resp.status_code

    async def lines(self, path: str) -> AsyncIterator[bytes]:
        async with self.client.stream("GET", self.base + path) as resp:
            async for line in resp.aiter_lines():
                yield line.encode()

    async def close(self) -> None:
        await self.client.aclose()


class HubH2:
    """``clusters.h2client``: one connection, every request and watch a stream of it."""

    def __init__(self, base: str, token: str, ctx: ssl.SSLContext) -> None:
        from urllib.parse import urlsplit

        url = urlsplit(base)
        self.host, self.port, self.prefix = url.hostname or "", url.port or 443, url.path
        self.ctx = ctx
        self.ctx.set_alpn_protocols(["h2", "http/1.1"])
        self.headers = [("authorization", f"Bearer {token}"), ("accept", "application/json")]
        self.conn: Any = None
        self.version = "HTTP/2"

    async def _conn(self) -> Any:
        from clusters.h2client import Http2Connection

        if self.conn is None:
            self.conn = await Http2Connection.open(
                self.host, self.port, ssl_context=self.ctx, server_hostname=None, timeout_s=30
            )
            if self.conn is None:
                raise SystemExit("the simulator offers no HTTP/2 (run with --http2)")
        return self.conn

    async def get(self, path: str) -> bytes:
        stream = await (await self._conn()).request(
            "GET", self.prefix + path, self.headers, None, timeout_s=None
        )
        try:
            body: bytes = await stream.read()
            return body
        finally:
            stream.close()

    async def send(self, method: str, path: str, body: dict[str, Any]) -> None:
        headers = [*self.headers, ("content-type", "application/json")]
        stream = await (await self._conn()).request(
            method, self.prefix + path, headers, json.dumps(body).encode(), timeout_s=None
        )
        try:
            await stream.read()
            assert stream.status < 300, stream.status
        finally:
            stream.close()

    async def lines(self, path: str) -> AsyncIterator[bytes]:
        stream = await (await self._conn()).request(
            "GET", self.prefix + path, self.headers, None, timeout_s=None
        )
        try:
            buffer = bytearray()
            async for chunk in stream.chunks():
                buffer += chunk
                while (end := buffer.find(b"\n")) >= 0:
                    yield bytes(buffer[:end])
                    del buffer[: end + 1]
        finally:
            stream.close()

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


def make(kind: str, base: str, token: str, ca: bytes) -> Transport:
    ctx = ssl.create_default_context(cadata=ca.decode())
    if kind == "aiohttp":
        return Aiohttp(base, token, ctx)
    if kind == "hub-h2":
        return HubH2(base, token, ctx)
    return Httpx(base, token, ctx, http2=kind == "httpx-h2")


async def timed(fn: Callable[[], Awaitable[Any]], total: int, inflight: int) -> dict[str, float]:
    latencies: list[float] = []
    left = [total]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            t0 = time.perf_counter()
            await fn()
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    wall = time.perf_counter() - started
    return {
        "per_s": total / wall,
        "p50_ms": pct(latencies, 0.5) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
    }


async def measure(
    kind: str, base: str, token: str, ca: bytes, args: argparse.Namespace
) -> dict[str, Any]:
    client = make(kind, base, token, ca)
    writer = make("aiohttp", base, token, ca)  # writes go through one client for every row
    out: dict[str, Any] = {"client": kind}
    try:
        cm_path = f"/api/v1/namespaces/{NS}/configmaps"
        await writer.send("POST", cm_path, {"metadata": {"name": f"probe-{kind}"}, "data": {}})
        probe = f"{cm_path}/probe-{kind}"
        await client.get(probe)
        out["version"] = client.version
        for inflight in (1, 16):
            out[f"get_{inflight}"] = await timed(lambda: client.get(probe), args.requests, inflight)

        listed = json.loads(await client.get(cm_path))
        rv = listed["metadata"]["resourceVersion"]
        sent: dict[str, float] = {}
        delays: list[float] = []
        opened = asyncio.Event()
        ready = [0]

        async def watch() -> None:
            path = f"{cm_path}?watch=1&resourceVersion={rv}&timeoutSeconds=600"
            ready[0] += 1
            if ready[0] == args.watches:
                opened.set()
            async for line in client.lines(path):
                if not line.strip():
                    continue
                name = json.loads(line)["object"]["metadata"]["name"]
                if name in sent:
                    delays.append(time.perf_counter() - sent[name])
                    if name == f"w-{kind}-{args.writes - 1}":
                        return

        before = rss_kib()
        tasks = [asyncio.create_task(watch()) for _ in range(args.watches)]
        await opened.wait()
        await asyncio.sleep(2.0)  # every watch request answered and streaming
        out["kib_per_watch"] = (rss_kib() - before) / args.watches
        for i in range(args.writes):
            name = f"w-{kind}-{i}"
            sent[name] = time.perf_counter()
            await writer.send("POST", cm_path, {"metadata": {"name": name}, "data": {"i": str(i)}})
            await asyncio.sleep(0.05)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
        out["events"] = len(delays)
        out["event_p50_ms"] = pct(delays, 0.5) * 1000
        out["event_p99_ms"] = pct(delays, 0.99) * 1000
        out["event_max_ms"] = max(delays) * 1000
    finally:
        await client.close()
        await writer.close()
    return out


def start_sim(tmp: Path, http2: bool) -> tuple[subprocess.Popen[str], str, str, bytes]:
    kubeconfig = tmp / "sim.kubeconfig"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "hub", "--home", str(tmp / "home"), "sim", "serve",
            "--clusters", "1", "--port", "0", "--kubeconfig-out", str(kubeconfig),
        ] + (["--http2"] if http2 else []),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if kubeconfig.exists():
            doc = yaml.safe_load(kubeconfig.read_text()) or {}
            if doc.get("contexts"):
                cluster = doc["clusters"][0]["cluster"]
                token = doc["users"][0]["user"]["token"]
                ca = base64.b64decode(cluster["certificate-authority-data"])
                return proc, str(cluster["server"]), str(token), ca
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit("hub sim did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watches", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--writes", type=int, default=20)
    parser.add_argument(
        "--ssl-buffer", type=int, default=0, help="asyncio's TLS read buffer (default 256 KiB)"
    )
    parser.add_argument("--http2", action="store_true", help="the simulator offers HTTP/2")
    parser.add_argument("--client", choices=CLIENTS, help=argparse.SUPPRESS)  # the child
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        if args.ssl_buffer:
            # imported as a name of its own: "import asyncio.sslproto" here would make
            # asyncio a local of main(), unbound below when no buffer is given
            from asyncio import sslproto

            sslproto.SSLProtocol.max_size = args.ssl_buffer  # type: ignore[misc]
        base, token, ca = json.loads(args.target)
        result = asyncio.run(measure(args.client, base, token, ca.encode(), args))
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        proc, base, token, ca = start_sim(Path(tmp), args.http2)
        try:
            for kind in [c for c in CLIENTS if c in ONLY]:
                if kind == "hub-h2" and not args.http2:
                    print(f"{kind}: skipped (the simulator offers HTTP/1.1 only; --http2)")
                    continue
                if kind.startswith("httpx"):
                    try:
                        import h2  # noqa: F401
                        import httpx  # noqa: F401
                    except ImportError:
                        print(f"{kind}: skipped (pip install 'httpx[http2]')")
                        continue
                child = subprocess.run(
                    [
                        sys.executable, __file__, "--client", kind,
                        "--target", json.dumps([base, token, ca.decode()]),
                        "--watches", str(args.watches), "--requests", str(args.requests),
                        "--writes", str(args.writes), "--ssl-buffer", str(args.ssl_buffer),
                    ],
                    capture_output=True, text=True, env={**os.environ},
                )  # fmt: skip
                if child.returncode != 0:
                    print(f"{kind}: failed\n{child.stderr[-2000:]}")
                    continue
                r = json.loads(child.stdout.strip().splitlines()[-1])
                print(
                    f"{kind:9} {r['version']:9} "
                    f"GET x1 {r['get_1']['per_s']:.0f}/s p50 {r['get_1']['p50_ms']:.2f} ms "
                    f"p99 {r['get_1']['p99_ms']:.2f} ms | "
                    f"x16 {r['get_16']['per_s']:.0f}/s p50 {r['get_16']['p50_ms']:.2f} ms "
                    f"p99 {r['get_16']['p99_ms']:.2f} ms | "
                    f"{args.watches} watches: event p50 {r['event_p50_ms']:.1f} ms "
                    f"p99 {r['event_p99_ms']:.1f} ms max {r['event_max_ms']:.1f} ms "
                    f"({r['events']} events) | {r['kib_per_watch']:.1f} KiB/watch"
                )
                sys.stdout.flush()
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
