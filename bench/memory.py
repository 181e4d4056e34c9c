"""Memory per cluster of `hub serve` (issue 12): where the hub's bytes go with N clusters.

Starts `hub sim serve` with N clusters, registers them (one `hub cluster import` of Argo CD
cluster Secrets), starts the hub in this process (as bench/fleet.py does), optionally with
M Applications per cluster (each a Deployment and a ConfigMap, synced), waits until every
worker is connected and idle, then prints:

- RSS of this process before the hub started and once idle, and the difference per
  cluster (RSS is measured with tracemalloc's own bookkeeping subtracted, see below);
- tracemalloc's top places (file:line) and the same grouped by module and by package, of
  what the hub allocated since it started and still holds;
- per cluster: cached objects (full bodies held, keys known), watched kinds, open
  connections (sockets held by the cluster's aiohttp connector), and the discovery cache
  (resources, and how many distinct discovery maps the fleet holds).

    python bench/memory.py --clusters 200
    python bench/memory.py --clusters 200 --apps 5
    python bench/memory.py --clusters 200 --no-tracemalloc   # RSS alone, no tracing cost

The hub runs in this process so its objects can be counted; `hub sim serve` runs as a
subprocess. docs/benchmarks.md ("Memory per cluster (issue 12)") records runs.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import anyio.from_thread

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fleet import (  # noqa: E402
    APPSET,
    SERVICE,
    Apps,
    Sim,
    argo_secrets,
    log,
    rss_mb,
    wait_for,
)
from hub.controller import Hub, HubOptions  # noqa: E402
from tests.clusters.cli_support import Hub as Cli  # noqa: E402
from tests.sync.e2e_helpers import GitRepo  # noqa: E402


def trimmed_rss_mb() -> float:
    """RSS once the C allocator returned its free pages to the system (glibc's
    ``malloc_trim``): what is left is held, the difference to ``clean_rss_mb`` is memory
    freed but kept by the allocator (fragmentation, peaks). Same as clean where no glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return clean_rss_mb()


def clean_rss_mb() -> float:
    """RSS after a full collection, less what tracemalloc itself holds for its traces."""
    gc.collect()
    overhead = tracemalloc.get_tracemalloc_memory() if tracemalloc.is_tracing() else 0
    return rss_mb() - overhead / 2**20


async def _fleet_state(hub: Hub) -> dict[str, Any]:
    """Counts over every worker, read on the hub's loop (nothing moves meanwhile)."""
    workers = list(hub.workers.values())
    tracked: list[int] = []
    keys: list[int] = []
    kinds: list[int] = []
    conns: list[int] = []
    resources: list[int] = []
    distinct: set[int] = set()
    kind_names: Counter[str] = Counter()
    for w in workers:
        cache, kube = w.cache, w.kube
        if cache is not None:
            with cache._lock:
                tracked.append(len(cache._tracked))
                keys.append(sum(len(k.refs) for k in cache._kinds.values()))
                kinds.append(len(cache._kinds))
                kind_names.update(f"{g}/{k}" if g else k for g, k in cache._kinds)
        if kube is not None:
            pool = kube._pool
            session = pool.session
            if session is not None and not session.closed:
                connector: Any = session.connector
                idle = sum(len(v) for v in getattr(connector, "_conns", {}).values())
                conns.append(idle + len(getattr(connector, "_acquired", ())))
            if pool.resources is not None:
                resources.append(len(pool.resources))
                distinct.add(id(pool.resources))

    def mean(xs: list[int]) -> float:
        return round(sum(xs) / len(xs), 1) if xs else 0.0

    return {
        "workers": len(workers),
        "connected": sum(w.connection.state == "Connected" for w in workers),
        "idle": sum(not w._dirty and not w.syncs_in_flight for w in workers),
        "tracked_objects_per_cluster": mean(tracked),
        "known_keys_per_cluster": mean(keys),
        "watched_kinds_per_cluster": mean(kinds),
        "watched_kinds": dict(kind_names.most_common()),
        "connections_per_cluster": mean(conns),
        "discovery_resources_per_cluster": mean(resources),
        "distinct_discovery_maps": len(distinct),
    }


def top_places(snapshot: tracemalloc.Snapshot, base: tracemalloc.Snapshot | None, n: int) -> None:
    def show(title: str, stats: list[Any], label: Any) -> None:
        log(title)
        for s in stats[:n]:
            size = getattr(s, "size_diff", s.size)
            count = getattr(s, "count_diff", s.count)
            log(f"  {size / 2**20:8.2f} MB {count:9d} blocks  {label(s)}")

    def diff(key: str) -> list[Any]:
        if base is None:
            return snapshot.statistics(key)
        return sorted(snapshot.compare_to(base, key), key=lambda s: -s.size_diff)

    root = str(ROOT) + "/"

    def where(s: Any) -> str:
        frame = s.traceback[0]
        return f"{frame.filename.replace(root, '')}:{frame.lineno}"

    show(f"tracemalloc top {n} by file:line (held since the hub started):", diff("lineno"), where)
    by_module: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    for s in diff("filename"):
        name = s.traceback[0].filename.replace(root, "")
        size = getattr(s, "size_diff", s.size)
        by_module[name] += size
        if "site-packages/" in name:
            package = name.split("site-packages/", 1)[1].split("/", 1)[0]
        elif name.startswith("<") or "/lib/python" in name:
            package = "stdlib:" + Path(name).stem
        else:
            package = name.split("/", 1)[0]
        by_package[package] += size
    log("by module:")
    for name, size in by_module.most_common(n):
        log(f"  {size / 2**20:8.2f} MB  {name}")
    log("by package (top dir of ours, site-packages name, stdlib module):")
    for name, size in by_package.most_common(n):
        log(f"  {size / 2**20:8.2f} MB  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--apps", type=int, default=0, help="Applications per cluster.")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--settle", type=float, default=5.0, help="Idle seconds before measuring.")
    parser.add_argument(
        "--idle-window", type=float, default=20.0, help="Seconds of idle CPU measured."
    )
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    args = parser.parse_args()
    n, m = args.clusters, args.apps
    tmp = Path(tempfile.mkdtemp(prefix="hub-memory-bench-"))
    log(f"memory benchmark: {n} clusters x {m} apps ({tmp})")
    sim = Sim(n, tmp, processes=1, profile=None)
    try:
        figures = run(args, tmp, sim)
    finally:
        sim.stop()
    print(json.dumps(figures, indent=2, sort_keys=True))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def run(args: argparse.Namespace, tmp: Path, sim: Sim) -> dict[str, Any]:
    n, m = args.clusters, args.apps
    cli = Cli(tmp / "home")
    cli.ok("init")
    secrets = tmp / "clusters.yaml"
    secrets.write_text(argo_secrets(sim.kubeconfig))
    cli.ok("cluster", "import", "-f", str(secrets), "--skip-check")
    if m:
        repo = GitRepo(tmp / "repo")
        files = {f"appsets/svc-{i}.yaml": APPSET.format(i=i, repo=repo.path, retry="")
                 for i in range(m)}  # fmt: skip
        files |= {f"services/svc-{i}/all.yaml": SERVICE.format(i=i, image="nginx:1")
                  for i in range(m)}  # fmt: skip
        repo.write(files, "services")
        cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "appsets")
    apps = Apps(cli.home)
    hub = Hub(cli.home, HubOptions(git_poll_s=2.0, resync_s=3600.0, jitter=0.0))
    figures: dict[str, Any] = {"clusters": n, "apps_per_cluster": m}
    with anyio.from_thread.start_blocking_portal() as portal:
        base: tracemalloc.Snapshot | None = None
        if not args.no_tracemalloc:
            tracemalloc.start(1)
            base = tracemalloc.take_snapshot()
        rss0 = clean_rss_mb()
        t0 = time.monotonic()
        future, _ = portal.start_task(hub.run)

        def ready() -> bool:
            state = portal.call(_fleet_state, hub)
            if state["workers"] < n or state["connected"] < n or state["idle"] < n:
                return False
            if not m:
                return True
            return apps.counts(None) == (n * m, n * m)

        def progress() -> str:
            s = portal.call(_fleet_state, hub)
            return (f"{s['connected']}/{n} connected, {s['idle']} idle; "
                    f"RSS {rss_mb():.0f} MB")  # fmt: skip

        wait_for("every worker connected and idle", ready, args.timeout, progress, 1.0)
        figures["ready_s"] = round(time.monotonic() - t0, 1)
        time.sleep(args.settle)
        # What an idle fleet costs: the process's CPU over a quiet window (probes, watch
        # bookmarks and re-watches, the workers' ticks, the Git poll).
        log(f"idle window: {args.idle_window:g}s")

        def opened() -> int:
            return sum(w.kube.connections_opened for w in hub.workers.values() if w.kube)

        cpu0, wall0, opened0 = time.process_time(), time.monotonic(), portal.call(opened)
        time.sleep(args.idle_window)
        idle_share = (time.process_time() - cpu0) / (time.monotonic() - wall0)
        figures["idle_cpu_share"] = round(idle_share, 3)
        figures["idle_connections_opened"] = portal.call(opened) - opened0
        log(f"idle: {100 * idle_share:.1f}% of a core over {args.idle_window:g}s, "
            f"{figures['idle_connections_opened']} connections opened")  # fmt: skip
        state = portal.call(_fleet_state, hub)
        rss1 = clean_rss_mb()
        rss_trimmed = trimmed_rss_mb()
        snapshot = tracemalloc.take_snapshot() if base is not None else None
        traced = tracemalloc.get_traced_memory()[0] / 2**20 if base is not None else 0.0
        figures |= state
        figures |= {
            "rss_before_hub_mb": round(rss0, 1),
            "rss_idle_mb": round(rss1, 1),
            "rss_per_cluster_mb": round((rss1 - rss0) / n, 3),
            "rss_trimmed_mb": round(rss_trimmed, 1),
            "rss_trimmed_per_cluster_mb": round((rss_trimmed - rss0) / n, 3),
            "traced_mb": round(traced, 1),
        }
        log(f"ready in {figures['ready_s']}s; RSS {rss0:.0f} MB before the hub, {rss1:.0f} MB "
            f"idle: {figures['rss_per_cluster_mb'] * 1024:.0f} KB per cluster "
            f"(tracemalloc overhead subtracted; traced now {traced:.0f} MB)")  # fmt: skip
        log(f"after malloc_trim: RSS {rss_trimmed:.0f} MB, "
            f"{figures['rss_trimmed_per_cluster_mb'] * 1024:.0f} KB per cluster")  # fmt: skip
        log(f"per cluster: {state['tracked_objects_per_cluster']} tracked objects, "
            f"{state['known_keys_per_cluster']} known keys, "
            f"{state['watched_kinds_per_cluster']} watched kinds {state['watched_kinds']}, "
            f"{state['connections_per_cluster']} connections, "
            f"{state['discovery_resources_per_cluster']} discovery resources "
            f"({state['distinct_discovery_maps']} distinct maps in the fleet)")  # fmt: skip
        if snapshot is not None:
            snapshot = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            top_places(snapshot, base, args.top)
            tracemalloc.stop()
        portal.call(hub.shutdown)
        future.result(timeout=300)
    return figures


if __name__ == "__main__":
    main()
