"""Profile of the sync path (issue 12): a small fleet, every thread of the hub profiled.

    python bench/sync_profile.py --clusters 5 --apps 10 [--top 25] [--profile FILE]

`hub sim serve` runs as a subprocess (its threads are not in the profile); the hub runs in
this process with cProfile enabled in each of its threads (``threading.setprofile``), so
the figures include the sync threads, the store's and the watch caches'. Measures the
first commit -> every Application Synced/Healthy and an image commit -> the same, and
counts renders, server-side dry-run requests and status-write transactions. Prints the
top functions by own time (tottime) and by cumulative time; docs/benchmarks.md ("Sync
cost") records a run. Not the fleet benchmark (bench/fleet.py): a few seconds, not minutes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.from_thread
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import hub.sync.attempt as engine  # noqa: E402  (the engine's render step)
import hub.worker.refresher as worker  # noqa: E402  (the worker's render step)
from bench.fleet import APPSET, RETRY, SERVICE, Apps, Sim, wait_for  # noqa: E402
from clusters.kube import AsyncKube  # noqa: E402
from hub.controller import Hub, HubOptions  # noqa: E402
from hub.store import Store  # noqa: E402
from tests.clusters.cli_support import Hub as Cli  # noqa: E402
from tests.sync.e2e_helpers import GitRepo  # noqa: E402


class Counts:
    """Renders (worker and engine), dry-run requests and store write transactions."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        for module in (worker, engine):
            original = module.render_app

            def counted(*a: Any, _o: Any = original, _m: str = module.__name__, **kw: Any) -> Any:
                rendered = _o(*a, **kw)  # counted once done (an inline try may stop midway)
                self.add(f"render ({_m})")
                return rendered

            module.render_app = counted  # type: ignore[attr-defined]
        request = AsyncKube._request

        async def counted_request(client: AsyncKube, method: str, path: str, **kw: Any) -> Any:
            query = dict(kw.get("query") or [])
            if query.get("dryRun"):
                self.add("dry-run request")
            elif method in ("PATCH", "POST", "PUT", "DELETE"):
                self.add("write request")
            return await request(client, method, path, **kw)

        AsyncKube._request = counted_request  # type: ignore[method-assign]
        write = Store.write

        def counted_write(store: Store, *a: Any, **kw: Any) -> Any:
            self.add("store write transaction")
            return write(store, *a, **kw)

        Store.write = counted_write  # type: ignore[method-assign,assignment]

    def add(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def take(self) -> dict[str, int]:
        with self.lock:
            out, self.counts = dict(self.counts), Counter()
        return out


class ThreadProfiles:
    """One cProfile per thread started from now on, plus the calling thread."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self.lock = threading.Lock()

    def start(self) -> None:
        def begin(_frame: Any, _event: str, _arg: Any) -> None:
            sys.setprofile(None)
            profile = cProfile.Profile()
            with self.lock:
                self.profiles.append(profile)
            profile.enable()

        threading.setprofile(begin)

    def stats(self) -> pstats.Stats:
        threading.setprofile(None)
        out = io.StringIO()
        with self.lock:
            profiles = list(self.profiles)
        for p in profiles:
            p.disable()  # only stops the calling thread's; the others are read as they are
        stats = pstats.Stats(profiles[0], stream=out)
        for p in profiles[1:]:
            with_data = pstats.Stats(p, stream=out) if p.getstats() else None
            if with_data is not None:
                stats.add(with_data)
        return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=5)
    parser.add_argument("--apps", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--profile", type=Path, help="also dump the merged pstats here")
    parser.add_argument("--no-profile", action="store_true", help="time only (no cProfile)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hub-sync-profile-"))
    sim = Sim(args.clusters, tmp, processes=1, profile=None)
    try:
        run(args, tmp, sim.kubeconfig)
    finally:
        sim.stop()


def run(args: argparse.Namespace, tmp: Path, kubeconfig: Path) -> None:
    n, m = args.clusters, args.apps
    total = n * m
    names = [c["name"] for c in yaml.safe_load(kubeconfig.read_text())["contexts"]]
    cli = Cli(tmp / "home")
    cli.ok("init")
    for name in names:
        cli.ok("cluster", "add", name, "--kubeconfig", str(kubeconfig), "--context", name)
    repo = GitRepo(tmp / "repo")
    files = {
        f"appsets/svc-{i}.yaml": APPSET.format(i=i, repo=repo.path, retry=RETRY) for i in range(m)
    }
    files |= {f"services/svc-{i}/all.yaml": SERVICE.format(i=i, image="nginx:1") for i in range(m)}
    repo.write(files, "services")
    cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "appsets")
    # The fleet bench's raw-SQL check: AppStore.list_apps decoding 1,000 records every
    # 0.2 s in this process took half the GIL from the hub it measures.
    apps = Apps(cli.home)
    counts = Counts()

    def converged(sha: str) -> Callable[[], bool]:
        return apps.converged(sha, total)

    profiles = ThreadProfiles()
    if not args.no_profile:
        profiles.start()
    hub = Hub(cli.home, HubOptions(git_poll_s=1.0, resync_s=3600.0, jitter=0.0))
    print(f"sync profile: {n} clusters x {m} apps = {total} Applications ({tmp})")
    with anyio.from_thread.start_blocking_portal() as portal:
        sha1 = repo.git("rev-parse", "HEAD")
        t0 = time.monotonic()
        cpu = time.process_time()  # this process: the hub (the simulator is another)
        portal.start_task(hub.run)
        first = wait_for("the first sync", converged(sha1), args.timeout)
        cpu, used = time.process_time(), time.process_time() - cpu
        print(f"hub start + first commit -> {total} Synced/Healthy: {first:.1f}s (CPU {used:.1f}s)")
        print(f"  {counts.take()}")
        sha2 = repo.write(
            {f"services/svc-{i}/all.yaml": SERVICE.format(i=i, image="nginx:2") for i in range(m)},
            "image nginx:2",
        )
        t0 = time.monotonic()
        rollout = wait_for("the image rollout", converged(sha2), args.timeout)
        used = time.process_time() - cpu
        print(f"image commit -> {total} Synced/Healthy: {rollout:.1f}s (CPU {used:.1f}s)")
        print(f"  {counts.take()}")
        portal.call(hub.shutdown)
    del t0
    if args.no_profile:
        return
    stats = profiles.stats()
    if args.profile:
        stats.dump_stats(str(args.profile))
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats(key).print_stats(args.top)
        print(f"--- top {args.top} by {key}")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))


if __name__ == "__main__":
    main()
