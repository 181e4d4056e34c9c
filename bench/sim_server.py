"""Benchmark of ``hub sim``: one process serving many clusters.

Prints (no assertions):
- memory per empty cluster: server RSS growth from 0 to N clusters, divided by N;
- GET and server-side-apply PATCH throughput and p50/p99 latency from one client on
  loopback (the server runs in its own process, so client and server use different cores);
- watch fan-out latency: W watchers on one collection, time from a write's request to each
  watcher receiving its event.

Run:  python bench/sim_server.py [--clusters 1000] [--requests 5000] [--watchers 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# -- server side (a child process) ----------------------------------------------------------


async def serve(clusters: int, info_path: Path) -> None:
    import gc

    from clusters.sim.server import RunningSim, SimConfig

    running = RunningSim(SimConfig(names=(), kubeconfig_path=info_path.with_suffix(".kubeconfig")))
    await running.start()
    fleet = running.fleet
    assert fleet is not None
    gc.collect()
    before = rss_kib(os.getpid())
    started = time.perf_counter()
    for i in range(1, clusters + 1):
        fleet.add(f"sim-{i}")
        if i % 100 == 0:
            await asyncio.sleep(0)  # let controllers start their watches
    await asyncio.sleep(1.0)
    gc.collect()
    after = rss_kib(os.getpid())
    info = {
        "url": running.url,
        "ca": running.ca_pem.decode(),
        "tokens": {c.name: c.token for c in fleet.clusters.values()},
        "rss_before_kib": before,
        "rss_after_kib": after,
        "add_seconds": time.perf_counter() - started,
    }
    tmp = info_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.rename(info_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await running.stop()


# -- client side -------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


class Client:
    def __init__(self, info: dict[str, Any]) -> None:
        self.url = info["url"]
        self.tokens: dict[str, str] = info["tokens"]
        ctx = ssl.create_default_context(cadata=info["ca"])
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=64))

    def headers(self, cluster: str, content_type: str = "application/json") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[cluster]}", "Content-Type": content_type}

    async def close(self) -> None:
        await self.session.close()


async def timed_requests(
    client: Client, make: Any, total: int, concurrency: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = list(range(total))

    async def worker() -> None:
        while queue:
            i = queue.pop()
            method, url, headers, body = make(i)
            t0 = time.perf_counter()
            async with client.session.request(method, url, headers=headers, data=body) as resp:
                await resp.read()
                if resp.status >= 300:
                    raise RuntimeError(f"{method} {url}: {resp.status} {await resp.text()}")
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def report(name: str, elapsed: float, latencies: list[float], concurrency: int) -> None:
    print(
        f"{name:<34} {len(latencies) / elapsed:8.0f} req/s   p50 {fmt_ms(statistics.median(latencies)):>10}"
        f"   p99 {fmt_ms(pct(latencies, 0.99)):>10}   (concurrency {concurrency})"
    )


async def bench_requests(client: Client, total: int) -> None:
    clusters = list(client.tokens)
    rng = random.Random(1)
    # one object per cluster to read back
    for name in clusters:
        body = json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "bench"},
                "data": {"v": "0"},
            }
        )
        async with client.session.post(
            f"{client.url}/clusters/{name}/api/v1/namespaces/default/configmaps",
            headers=client.headers(name),
            data=body,
        ) as resp:
            await resp.read()

    def get(i: int) -> tuple[str, str, dict[str, str], None]:
        name = rng.choice(clusters)
        return (
            "GET",
            f"{client.url}/clusters/{name}/api/v1/namespaces/default/configmaps/bench",
            client.headers(name),
            None,
        )

    def apply(i: int) -> tuple[str, str, dict[str, str], bytes]:
        name = rng.choice(clusters)
        body = (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bench\n  labels: {bench: 'yes'}\n"
            f"data:\n  v: '{i}'\n  fixed: 'x'\n"
        ).encode()
        url = f"{client.url}/clusters/{name}/api/v1/namespaces/default/configmaps/bench?fieldManager=bench&force=true"
        return "PATCH", url, client.headers(name, "application/apply-patch+yaml"), body

    await timed_requests(client, get, 500, 8)  # warm up connections and caches
    for concurrency in (1, 16):
        elapsed, lat = await timed_requests(client, get, total, concurrency)
        report("GET configmap (keep-alive, TLS)", elapsed, lat, concurrency)
    for concurrency in (1, 16):
        elapsed, lat = await timed_requests(client, apply, total // 2, concurrency)
        report("PATCH apply-patch+yaml (SSA)", elapsed, lat, concurrency)


async def bench_watch(client: Client, watchers: int, writes: int) -> None:
    cluster = next(iter(client.tokens))
    base = f"{client.url}/clusters/{cluster}/api/v1/namespaces/default/configmaps"
    async with client.session.get(base, headers=client.headers(cluster)) as resp:
        rv = (await resp.json())["metadata"]["resourceVersion"]
    sent: dict[str, float] = {}
    received: list[float] = []
    ready = 0
    all_ready = asyncio.Event()
    connector = aiohttp.TCPConnector(ssl=client.session.connector._ssl, limit=watchers + 4)  # type: ignore[union-attr]
    async with aiohttp.ClientSession(connector=connector) as wsession:

        async def watch() -> None:
            nonlocal ready
            url = f"{base}?watch=1&resourceVersion={rv}&timeoutSeconds=60&labelSelector=fan%3Dout"
            async with wsession.get(url, headers=client.headers(cluster)) as resp:
                ready += 1
                if ready == watchers:
                    all_ready.set()
                seen = 0
                async for line in resp.content:
                    event = json.loads(line)
                    key = event["object"]["metadata"]["name"]
                    received.append(time.perf_counter() - sent[key])
                    seen += 1
                    if seen == writes:
                        return

        tasks = [asyncio.create_task(watch()) for _ in range(watchers)]
        await asyncio.wait_for(all_ready.wait(), 30)
        await asyncio.sleep(0.2)
        for i in range(writes):
            name = f"fan-{i}"
            body = json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name, "labels": {"fan": "out"}},
                }
            )
            sent[name] = time.perf_counter()
            async with client.session.post(
                base, headers=client.headers(cluster), data=body
            ) as resp:
                await resp.read()
            await asyncio.sleep(0.02)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    print(
        f"watch fan-out ({watchers} watchers x {writes} writes)  p50 {fmt_ms(statistics.median(received))}"
        f"   p99 {fmt_ms(pct(received, 0.99))}   max {fmt_ms(max(received))}"
    )


async def client_main(info: dict[str, Any], args: argparse.Namespace) -> None:
    client = Client(info)
    try:
        await bench_requests(client, args.requests)
        await bench_watch(client, args.watchers, args.writes)
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--writes", type=int, default=50)
    parser.add_argument("--serve-info", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_info is not None:
        asyncio.run(serve(args.clusters, args.serve_info))
        return
    with tempfile.TemporaryDirectory(prefix="hub-sim-bench-") as tmp:
        info_path = Path(tmp) / "info.json"
        proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--clusters",
                str(args.clusters),
                "--serve-info",
                str(info_path),
            ]
        )
        try:
            deadline = time.monotonic() + 300
            while not info_path.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the benchmark server did not start")
                time.sleep(0.1)
            info = json.loads(info_path.read_text())
            per_cluster = (info["rss_after_kib"] - info["rss_before_kib"]) / max(1, args.clusters)
            print(
                f"hub sim benchmark: {args.clusters} clusters in one process (python {sys.version.split()[0]}, {os.cpu_count()} cores)"
            )
            print(
                f"memory per empty cluster           {per_cluster:8.1f} KiB   (RSS {info['rss_before_kib'] / 1024:.0f} -> "
                f"{info['rss_after_kib'] / 1024:.0f} MiB; {args.clusters} clusters added in {info['add_seconds']:.1f} s)"
            )
            asyncio.run(client_main(info, args))
        finally:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
