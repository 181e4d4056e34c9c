"""Fleet benchmark of `hub serve` (issues 6 and 12): N clusters x M Applications on `hub sim`.

Measures, in one run, and prints against the targets of issue 12 at the end:

1. hub start + first commit -> every Application Synced and Healthy;
2. spoke API requests during one steady-state resync of every Application (GET/LIST per
   app is the figure that should be zero), counted on the hub side;
3. drift-heal latency after ``kubectl scale`` on a sample of clusters spread over the fleet;
4. an image change commit -> every Application Synced and Healthy again (unless
   ``--no-image-commit``; it comes after 2 and 3 so a run too long to finish has those);
5. the hub's resident memory, threads and open files (peaks sampled once a second);
6. with ``--faults``, the thundering herd: one commit touching every Application while 5%
   of the clusters answer 2 s late and 2% answer 503, through the simulator's fault API;
   the healthy clusters' time against the fault-free image commit of the same run, then
   how long the faulty clusters take to converge on their own once the faults are cleared;
7. unless ``--no-baseline``, the push-CI baseline: ``kubectl apply -f`` of the same
   manifests cluster after cluster, and its ratio to the hub's commit-to-Synced time.

Whether the simulator kept up is measured too: its CPU, event-loop lag and request
latency in every phase (``GET /sim/stats`` of each simulator process), so a slow figure
can be told apart from a saturated simulator.

    python bench/fleet.py --clusters 100 --apps 10
    python bench/fleet.py --clusters 1000 --apps 10 --no-baseline --faults --sim-processes 2

The hub runs in this process (anyio, through a blocking portal) so its requests can be
counted; `hub sim serve` runs as a subprocess. Progress goes to stdout every 30 s while
waiting; ``--json FILE`` writes the figures (bench/scaling.py reads them).
docs/benchmarks.md ("Fleet", "Fleet at 1,000 clusters") records runs.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import functools
import gc
import inspect
import json
import os
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anyio.from_thread
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clusters.eventloop import HUB_DEFAULT, anyio_backend_options, chosen_loop  # noqa: E402
from clusters.kube import KubeClient  # noqa: E402
from hub.controller import Hub, HubOptions  # noqa: E402
from hub.home import db_path  # noqa: E402
from tests.clusters.cli_support import Hub as Cli  # noqa: E402
from tests.sync.e2e_helpers import GitRepo  # noqa: E402

APPSET = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: svc-{i}
spec:
  generators:
    - clusters: {{}}
  template:
    metadata:
      name: '{{{{name}}}}-svc-{i}'
    spec:
      project: default
      source: {{repoURL: {repo}, targetRevision: main, path: services/svc-{i}}}
      destination: {{server: '{{{{server}}}}', namespace: svc-{i}}}
      syncPolicy:
        automated: {{prune: true, selfHeal: true}}
        syncOptions: [CreateNamespace=true]{retry}
"""

RETRY = """
        retry: {limit: -1, backoff: {duration: 5s, factor: 2, maxDuration: 60s}}"""

SERVICE = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: svc-{i}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: '{image}'}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: svc-{i}}}
data: {{greeting: hello}}
"""

#: ``--revision-history-limit``: None keeps Kubernetes' default (10 old ReplicaSets).
REVISION_HISTORY_LIMIT: list[int | None] = [None]


def service(i: int, image: str) -> str:
    """The manifests of ``svc-{i}`` with this image. With ``--revision-history-limit`` the
    Deployment keeps that many old ReplicaSets: at 0 every rollout leaves the simulator
    the objects it found, so later commits cost it what earlier ones did (the herd's
    comparison with the image commit), where by default each adds 10,000 ReplicaSets."""
    text = SERVICE.format(i=i, image=image)
    limit = REVISION_HISTORY_LIMIT[0]
    if limit is not None:
        text = text.replace(
            "  replicas: 1\n", f"  replicas: 1\n  revisionHistoryLimit: {limit}\n", 1
        )
    return text


# Issue 12's targets (for 1,000 clusters x 10 apps on this 2-core machine).
TARGET_COMMIT_S = 120.0
TARGET_RSS_MB = 1024.0
TARGET_THREADS = 64
TARGET_DRIFT_P50_S = 1.0
TARGET_DRIFT_P99_S = 3.0
TARGET_RATIO = 3.0
TARGET_HERD_SLOWDOWN = 1.10


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- counting the hub's requests -------------------------------------------------------------


WRITE_VERBS = frozenset({"PATCH", "POST", "PUT", "DELETE"})  # what RequestCounter.writes counts


class RequestCounter:
    """Counts the hub's requests to spokes by (verb, kind of call)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        original = KubeClient._request

        def counted(client: KubeClient, method: str, path: str, **kw: Any) -> Any:
            self.count(method, path, kw)
            return original(client, method, path, **kw)

        KubeClient._request = counted  # type: ignore[method-assign,assignment]
        self._count_async()

    def count(self, method: str, path: str, kw: dict[str, Any]) -> None:
        query = dict(kw.get("query") or [])
        if method == "GET" and query.get("watch"):
            what = "WATCH"
        elif method == "GET" and "limit" in query:  # lists page with limit
            what = "LIST"
        elif method == "GET" and path == "/version":
            what = "PROBE"  # a worker's liveness probe
        elif method == "GET" and path.count("/") <= 3:
            what = "DISCOVERY"  # /api, /apis, /api/v1, /apis/GROUP/VERSION
        elif method == "GET":
            what = "GET"
        else:
            what = method
        with self.lock:
            self.counts[what] += 1

    def _count_async(self) -> None:
        """The live cache's LISTs and WATCHes go through ``AsyncKube`` (event loop) where it
        exists; the same counts, so runs before and after it compare."""
        from clusters import kube

        transport = getattr(kube, "AsyncKube", None)
        if transport is None:
            return
        watch = getattr(transport, "watch", None)
        request = getattr(transport, "_request", None)
        if request is not None and inspect.iscoroutinefunction(request):
            # Every call but watches goes through one request method (the async engine).

            async def counted_request(client: Any, method: str, path: str, **kw: Any) -> Any:
                self.count(method, path, kw)
                return await request(client, method, path, **kw)

            transport._request = counted_request
        else:
            list_ = getattr(transport, "list", None)
            if list_ is not None:

                async def counted_list(client: Any, *a: Any, **kw: Any) -> Any:
                    with self.lock:
                        self.counts["LIST"] += 1
                    return await list_(client, *a, **kw)

                transport.list = counted_list
        if watch is not None:

            def counted_watch(client: Any, *a: Any, **kw: Any) -> Any:
                with self.lock:
                    self.counts["WATCH"] += 1
                return watch(client, *a, **kw)

            transport.watch = counted_watch

    def take(self) -> Counter[str]:
        with self.lock:
            out, self.counts = self.counts, Counter()
        return out

    def writes(self) -> int:
        """PATCH, POST, PUT and DELETE requests sent since the last ``take``."""
        with self.lock:
            return sum(n for what, n in self.counts.items() if what in WRITE_VERBS)


async def _run_sync_in_loop(fn: Callable[[], None]) -> None:
    fn()  # workers are woken from their own event loop


# -- the hub process (this one) ----------------------------------------------------------------


class ProcessPeaks:
    """Samples this process's threads, open files and RSS once a second (the hub runs here)."""

    def __init__(self) -> None:
        self.threads = 0
        self.fds = 0
        self.rss_mb = 0.0
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True, name="bench-peaks").start()

    @staticmethod
    def now() -> tuple[int, int]:
        return len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd"))

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            threads, fds = self.now()
            self.threads, self.fds = max(self.threads, threads), max(self.fds, fds)
            self.rss_mb = max(self.rss_mb, rss_mb())

    def stop(self) -> None:
        self._stop.set()


class WorkCounts:
    """The hub's work per phase that is not a request: watch events its caches applied and
    compares of an Application with its live state (a refresh's ``_evaluate``), per
    Application of the benchmark (``apps``)."""

    def __init__(self, apps: int) -> None:
        from hub.worker.refresher import Refresher

        self.apps = max(1, apps)
        self.compares = 0
        self.verdicts: Counter[tuple[str, str]] = Counter()
        self._events_before = 0
        original = Refresher._evaluate

        def counted(worker: Any, *a: Any, **kw: Any) -> Any:
            self.compares += 1
            out = original(worker, *a, **kw)
            self.verdicts[(str(out.status), out.health)] += 1
            return out

        Refresher._evaluate = counted  # type: ignore[method-assign]

    def take(self, hub: Hub) -> dict[str, Any]:
        events = sum(w.cache.stats.events for w in hub.workers.values() if w.cache is not None)
        out = {
            "events": events - self._events_before,
            "compares": self.compares,
            "compares_per_app": round(self.compares / self.apps, 2),
            "compare_results": {f"{s} {h}": n for (s, h), n in self.verdicts.most_common()},
        }
        self.verdicts = Counter()
        self._events_before, self.compares = events, 0
        return out


LONG_GC_S = 0.05  # a hub collection this long is listed in the JSON (hub_gc.long_pauses)
MAX_LONG_GC = 200  # per phase


class GcTime:
    """The time this process (the hub) spends in the cyclic garbage collector, by
    generation, per phase: a collection stops the event loop and every thread, so it is
    hub CPU that no profile of our own code shows."""

    def __init__(self) -> None:
        self._started = 0.0
        self.seconds = [0.0, 0.0, 0.0]
        self.counts = [0, 0, 0]
        self.longest_full_s = 0.0
        # The collections that stopped the hub for LONG_GC_S or more (wall-clock end,
        # generation, ms): lined up with the simulator's late turns (``ended_at``), they
        # show whether a burst the simulator met followed a stop of the hub.
        self.long: list[tuple[float, int, float]] = []
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self.seconds[generation] += took
        self.counts[generation] += 1
        if generation == 2:
            self.longest_full_s = max(self.longest_full_s, took)
        if took >= LONG_GC_S and len(self.long) < MAX_LONG_GC:
            self.long.append((round(time.time(), 3), generation, round(1000 * took, 1)))

    def take(self) -> dict[str, Any]:
        """The figures since the last take."""
        taken = {
            "total_s": round(sum(self.seconds), 2),
            "by_generation_s": [round(s, 2) for s in self.seconds],
            "collections": list(self.counts),
            "longest_full_s": round(self.longest_full_s, 3),
            "long_pauses": [{"ended_at": at, "generation": g, "ms": ms} for at, g, ms in self.long],
        }
        self.long = []
        self.seconds, self.counts, self.longest_full_s = [0.0, 0.0, 0.0], [0, 0, 0], 0.0
        return taken


class StackSampler:
    """A sampling profiler of this process (the hub): ten times a second, for every
    thread, the innermost frame in the project's own code and the function it is in.
    Cheap enough to leave on in a long run; ``top`` says where the hub's threads and
    event loop spend their time in a phase (waits included: a thread parked in a queue
    shows where it parks)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.counts: Counter[str] = Counter()
        self.samples = 0
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._root = str(ROOT)
        threading.Thread(target=self._run, daemon=True, name="bench-sampler").start()

    def _where(self, frame: Any) -> str | None:
        leaf = f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}"
        while frame is not None:
            name = frame.f_code.co_filename
            if name.startswith(self._root) and "/bench/" not in name and "/.venv/" not in name:
                mine = (
                    f"{Path(name).relative_to(self._root)}:{frame.f_lineno} {frame.f_code.co_name}"
                )
                return mine if mine.endswith(leaf.split(":")[1]) else f"{mine} -> {leaf}"
            frame = frame.f_back
        return None

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self._interval):
            frames = sys._current_frames()
            with self._lock:
                self.samples += 1
                for ident, frame in frames.items():
                    if ident == me:
                        continue
                    where = self._where(frame)
                    if where is not None:
                        self.counts[where] += 1

    def take(self, top: int = 15) -> list[tuple[str, float]]:
        """The top places since the last take, as thread-seconds."""
        with self._lock:
            counts, samples = self.counts, self.samples
            self.counts, self.samples = Counter(), 0
        del samples
        return [(w, round(c * self._interval, 1)) for w, c in counts.most_common(top)]

    def stop(self) -> None:
        self._stop.set()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


# -- the simulator ---------------------------------------------------------------------------


class Sim:
    """`hub sim serve` in a subprocess, and its admin API (stats, faults) per cluster."""

    def __init__(
        self,
        n: int,
        tmp: Path,
        *,
        processes: int,
        profile: Path | None,
        http2: bool,
        cpus: set[int] | None = None,
    ) -> None:
        self.kubeconfig = tmp / "sim.kubeconfig"
        self.token_file = tmp / "sim-admin-token"
        cmd = [sys.executable]
        if profile is not None:
            cmd += ["-m", "cProfile", "-o", str(profile)]
        cmd += [
            "-m", "hub", "--home", str(tmp / "sim-home"), "sim", "serve",
            "--clusters", str(n), "--port", "0", "--kubeconfig-out", str(self.kubeconfig),
            "--admin-token-out", str(self.token_file), "--ready-delay", "0.2",
        ]  # fmt: skip
        if processes > 1:
            cmd += ["--processes", str(processes)]
        if http2:
            cmd += ["--http2"]
        with open(tmp / "sim.log", "w") as sim_log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=sim_log, preexec_fn=pinned_to(cpus)
            )

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"hub sim serve exited ({self.proc.returncode}); see {tmp}/sim.log"
                )
            if not self.kubeconfig.exists() or not self.token_file.exists():
                return False
            try:
                doc = yaml.safe_load(self.kubeconfig.read_text()) or {}
            except yaml.YAMLError:
                return False
            return len(doc.get("contexts") or []) == n

        t0 = time.monotonic()
        wait_for("the simulated clusters", ready, 600)
        log(
            f"simulator: {n} clusters in {processes} process(es), up in {time.monotonic() - t0:.1f}s"
        )
        doc = yaml.safe_load(self.kubeconfig.read_text())
        clusters = {c["name"]: c["cluster"] for c in doc["clusters"]}
        users = {u["name"]: u["user"] for u in doc["users"]}
        self.names: list[str] = []
        self.server: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        ca = b""
        for ctx in doc["contexts"]:
            cluster = clusters[ctx["context"]["cluster"]]
            self.names.append(ctx["name"])
            self.server[ctx["name"]] = cluster["server"]
            self.tokens[ctx["name"]] = users[ctx["context"]["user"]]["token"]
            ca = base64.b64decode(cluster["certificate-authority-data"])
        self.ssl = ssl.create_default_context(cadata=ca.decode())
        self.admin_token = self.token_file.read_text().strip()
        # One admin API per simulator process: the server URL without /clusters/NAME.
        self.processes = sorted({self.admin_base(name) for name in self.names})

    def admin_base(self, name: str) -> str:
        return self.server[name].rsplit("/clusters/", 1)[0]

    def _call(self, method: str, url: str, token: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            url,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, context=self.ssl, timeout=60) as resp:
            return json.loads(resp.read() or b"null")

    def admin(self, method: str, base: str, path: str, body: Any = None) -> Any:
        return self._call(method, f"{base}/sim/{path}", self.admin_token, body)

    def stats(self, *, reset: bool = False) -> list[dict[str, Any]]:
        query = "?reset=true" if reset else ""
        return [self.admin("GET", base, f"stats{query}") for base in self.processes]

    def set_faults(self, name: str, **settings: Any) -> None:
        self.admin("PUT", self.admin_base(name), f"clusters/{name}/faults", settings)

    def clear_faults(self, name: str) -> None:
        self.admin("DELETE", self.admin_base(name), f"clusters/{name}/faults")

    def deployment_replicas(self, name: str, namespace: str) -> int | None:
        url = f"{self.server[name]}/apis/apps/v1/namespaces/{namespace}/deployments/web"
        try:
            return int(self._call("GET", url, self.tokens[name])["spec"]["replicas"])
        except (urllib.error.URLError, KeyError, ValueError, TimeoutError):
            return None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def sim_summary(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """One line of figures over every simulator process of a window."""
    window = max(s["window_s"] for s in stats)
    return {
        "processes": len(stats),
        "window_s": round(window, 1),
        "cpu_s": round(sum(s["cpu_s"] for s in stats), 1),
        "cpu_share_max": max(s["cpu_share"] for s in stats),  # of one core, busiest process
        "loop_lag_p50_ms": max(s["loop_lag"]["p50_ms"] for s in stats),
        "loop_lag_p99_ms": max(s["loop_lag"]["p99_ms"] for s in stats),
        "loop_lag_max_ms": max(s["loop_lag"]["max_ms"] for s in stats),
        "requests": sum(s["requests"]["count"] for s in stats),
        "request_p50_ms": max(s["requests"]["p50_ms"] for s in stats),
        "request_p99_ms": max(s["requests"]["p99_ms"] for s in stats),
        "rss_mb": round(sum(s["rss_mb"] for s in stats), 0),
        "gc_full_count": sum(s.get("gc_pauses", {}).get("gen2", {}).get("count", 0) for s in stats),
        "gc_full_max_ms": max(
            s.get("gc_pauses", {}).get("gen2", {}).get("max_ms", 0.0) for s in stats
        ),
        "gc_full_total_s": round(
            sum(
                s.get("gc_pauses", {}).get("gen2", {}).get("count", 0)
                * s.get("gc_pauses", {}).get("gen2", {}).get("mean_ms", 0.0)
                for s in stats
            )
            / 1000,
            2,
        ),
        # every generation: the young collections cost more than the full ones here
        "gc_total_s": round(
            sum(g["count"] * g["mean_ms"] for s in stats for g in s.get("gc_pauses", {}).values())
            / 1000,
            2,
        ),
        "watches": sum(s.get("watches", 0) for s in stats),
        # the hub's connections as the simulator sees them: one per cluster over HTTP/2
        "h2_connections_open": sum(s.get("h2_connections_open", 0) for s in stats),
        "http1_connections_open": sum(s.get("http1_connections_open", 0) for s in stats),
        "objects": sum(s.get("objects", 0) for s in stats),
        # how long the simulated controllers' keys waited for their reconcile (the
        # controller-manager's queue, which yields the loop to the API servers)
        "controller_wait_p50_ms": max(s.get("controllers", {}).get("p50_ms", 0.0) for s in stats),
        "controller_wait_p99_ms": max(s.get("controllers", {}).get("p99_ms", 0.0) for s in stats),
        "controller_reconciles": sum(s.get("controllers", {}).get("count", 0) for s in stats),
        # the monitor's latest wake-ups: what the process did meanwhile (CPU below the
        # interval: no core for it; the collector's pauses; requests served)
        "late_turns": sorted(
            (t for s in stats for t in s.get("late_turns", [])), key=lambda t: -t["lag_ms"]
        )[:20],
    }


def sim_verdict(s: dict[str, Any]) -> str:
    """Kept up: its loop answered within 100 ms (p99). When it did not, saturated if the
    busiest process had 90% of a core or more; otherwise it was starved (the machine's
    other processes had the cores) or ran long callbacks."""
    if s["loop_lag_p99_ms"] <= 100:
        return "kept up"
    if s["cpu_share_max"] >= 0.9:
        return "SATURATED (loop lag p99 > 100 ms at >= 90% of a core)"
    return "LAGGING (loop lag p99 > 100 ms below 90% of a core: starved or long callbacks)"


def describe_sim(s: dict[str, Any]) -> str:
    return (
        f"sim CPU {s['cpu_s']:.0f}s in {s['window_s']:.0f}s (busiest process "
        f"{100 * s['cpu_share_max']:.0f}% of a core), loop lag p50/p99/max "
        f"{s['loop_lag_p50_ms']:.0f}/{s['loop_lag_p99_ms']:.0f}/{s['loop_lag_max_ms']:.0f} ms, "
        f"{s['requests']} requests p50/p99 {s['request_p50_ms']:.1f}/{s['request_p99_ms']:.0f} ms, "
        f"GC {s['gc_total_s']:.1f}s ({s['gc_full_count']} full, longest "
        f"{s['gc_full_max_ms']:.0f} ms), "
        f"{s['watches']} watches, {s['objects']} objects, RSS {s['rss_mb']:.0f} MB, "
        f"{s['controller_reconciles']} reconciles waiting p50/p99 "
        f"{s['controller_wait_p50_ms']:.0f}/{s['controller_wait_p99_ms']:.0f} ms: " + sim_verdict(s)
    )


# -- waiting ---------------------------------------------------------------------------------


PROGRESS_EVERY_S = [30.0]  # --progress-every


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    progress: Callable[[], str] | None = None,
    every: float = 0.2,
) -> float:
    start = last = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(every)
        if progress is not None and time.monotonic() - last >= PROGRESS_EVERY_S[0]:
            last = time.monotonic()
            log(f"  {time.monotonic() - start:5.0f}s waiting for {what}: {progress()}")
    if progress is not None:
        log(f"  gave up on {what}: {progress()}")
    raise SystemExit(f"timed out after {timeout:g}s waiting for {what}")


class Apps:
    """The Applications' observed state, read straight from the store's table: a few columns
    instead of whole records, so polling 10,000 of them costs the hub (same process) little."""

    def __init__(self, home: Path) -> None:
        self.db = sqlite3.connect(f"file:{db_path(home)}?mode=ro", uri=True)

    def rows(self) -> list[tuple[str, str, str, str | None]]:
        return self.db.execute(
            "SELECT cluster, sync_status, health_status, synced_sha FROM applications"
        ).fetchall()

    def counts(self, sha: str | None, clusters: Iterable[str] | None = None) -> tuple[int, int]:
        """(Applications, those Synced+Healthy at ``sha``) in one aggregate row: fetching
        every row let the polling thread take and drop the interpreter lock once per row,
        thousands of times a poll, and the hub in this process paid for it."""
        where, params = "", list[str]()
        if clusters is not None:
            wanted = sorted(set(clusters))
            where = f" WHERE cluster IN ({','.join('?' * len(wanted))})"
            params = wanted
        good = "sync_status = 'Synced' AND health_status = 'Healthy'"
        if sha is not None:
            good += " AND synced_sha = ?"
            params = [sha, *params]
        total, converged = self.db.execute(
            f"SELECT COUNT(*), COALESCE(SUM({good}), 0) FROM applications{where}", params
        ).fetchone()
        return int(total), int(converged)

    def converged(
        self, sha: str, total: int, clusters: Iterable[str] | None = None
    ) -> Callable[[], bool]:
        wanted = list(clusters) if clusters is not None else None

        def check() -> bool:
            return self.counts(sha, wanted) == (total, total)

        return check

    def count_converged(self, sha: str, clusters: Iterable[str] | None = None) -> int:
        return self.counts(sha, clusters)[1]

    def stages(self, sha: str | None) -> str:
        """Where the Applications are on the way to ``sha``: seen OutOfSync, an operation
        running, synced to it (healthy or not)."""
        if sha is None:
            return ""
        row = self.db.execute(
            "SELECT COALESCE(SUM(sync_status = 'OutOfSync'), 0), "
            'COALESCE(SUM(operation_state LIKE \'%"phase": "Running"%\'), 0), '
            "COALESCE(SUM(synced_sha = ?), 0) FROM applications",
            (sha,),
        ).fetchone()
        return f"OutOfSync {row[0]}, running {row[1]}, synced to it {row[2]}"


def argo_secrets(kubeconfig: Path) -> str:
    """Argo CD declarative cluster Secrets for every context of a sim kubeconfig."""
    doc = yaml.safe_load(kubeconfig.read_text())
    clusters = {c["name"]: c["cluster"] for c in doc["clusters"]}
    users = {u["name"]: u["user"] for u in doc["users"]}
    out = []
    for ctx in doc["contexts"]:
        cluster = clusters[ctx["context"]["cluster"]]
        config = {
            "bearerToken": users[ctx["context"]["user"]]["token"],
            "tlsClientConfig": {"caData": cluster["certificate-authority-data"]},
        }
        out.append(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {
                        "name": f"cluster-{ctx['name']}",
                        "labels": {"argocd.argoproj.io/secret-type": "cluster"},
                    },
                    "stringData": {
                        "name": ctx["name"],
                        "server": cluster["server"],
                        "config": json.dumps(config),
                    },
                }
            )
        )
    return "---\n".join(out)


def split_cpus(cpus: list[int]) -> tuple[set[int], set[int]]:
    """``--pin-sim``: the simulator's CPUs and the hub's, the last one and the rest."""
    if len(cpus) < 2:
        raise SystemExit("--pin-sim needs at least two CPUs")
    return {cpus[-1]}, set(cpus[:-1])


def pinned_to(cpus: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that keeps a child on ``cpus``: set in the child before it runs,
    so the shard processes ``hub sim serve --processes`` starts inherit it."""
    return None if cpus is None else functools.partial(os.sched_setaffinity, 0, cpus)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the run ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--apps", type=int, default=10, help="Applications per cluster.")
    parser.add_argument("--drift-samples", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=900.0, help="Per phase, seconds.")
    parser.add_argument(
        "--progress-every",
        type=float,
        default=30.0,
        help="Seconds between progress lines while waiting for convergence.",
    )
    parser.add_argument(
        "--register",
        choices=("auto", "add", "import"),
        default="auto",
        help="hub cluster add per cluster, or one hub cluster import (auto: import above 200).",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="Skip the kubectl apply loop (large fleets)."
    )
    parser.add_argument(
        "--no-image-commit",
        action="store_true",
        help="Only the first commit, then the steady state and drift (fleets too large to "
        "converge twice in the time there is); no herd, no baseline without it.",
    )
    parser.add_argument(
        "--faults", action="store_true", help="Add the thundering-herd run with faulty clusters."
    )
    parser.add_argument(
        "--revision-history-limit",
        type=int,
        help="The Deployments' revisionHistoryLimit (default: unset, Kubernetes' 10). 0 "
        "makes every commit find the same objects, so the herd compares like with like.",
    )
    parser.add_argument("--slow-share", type=float, default=0.05)
    parser.add_argument("--slow-latency", type=float, default=2.0)
    parser.add_argument("--error-share", type=float, default=0.02)
    parser.add_argument(
        "--error-rate",
        type=float,
        default=1.0,
        help="Share of the 503 clusters' requests that fail (1.0: every one).",
    )
    parser.add_argument(
        "--fault-hold",
        type=float,
        default=120.0,
        help="Seconds to wait for the slow clusters (faults still on) before clearing faults.",
    )
    parser.add_argument(
        "--recovery-timeout",
        type=float,
        default=600.0,
        help="Seconds to wait for the faulty clusters to converge once the faults are cleared.",
    )
    parser.add_argument(
        "--no-retry",
        action="store_true",
        help="ApplicationSets without syncPolicy.retry (a failed automated sync then waits "
        "for the next revision, as in Argo CD).",
    )
    parser.add_argument("--sim-processes", type=int, default=1, help="hub sim serve --processes N.")
    parser.add_argument(
        "--pin-sim",
        action="store_true",
        help="Give the simulator the last CPU and this process (the hub, its CLI, kubectl) "
        "the others, as when the API servers run on machines of their own; the figures then "
        "show each side without the other's load.",
    )
    parser.add_argument(
        "--http1",
        action="store_true",
        help="The simulator offers HTTP/1.1 only (default: HTTP/2 too, as real API servers "
        "do; the hub and kubectl then multiplex each cluster on one connection).",
    )
    parser.add_argument(
        "--sim-profile", type=Path, help="Run the simulator under cProfile, stats to this file."
    )
    parser.add_argument(
        "--trigger",
        choices=("poll", "webhook"),
        default="poll",
        help="How the hub learns of the image commits: its Git poll (every 2 s), or at once "
        "through a push webhook as production set-ups do (the kubectl baseline starts at the "
        "push too). The first commit is always found by the hub's first poll.",
    )
    parser.add_argument(
        "--hub-profile",
        type=Path,
        help="cProfile the hub's event loop during the image commit, stats to this file "
        "(the commit's times then include the profiler's cost).",
    )
    parser.add_argument(
        "--hub-samples",
        action="store_true",
        help="Sample the hub's thread stacks at 10 Hz and print the top places per phase.",
    )
    parser.add_argument(
        "--trim-memory-s",
        type=float,
        default=HubOptions().trim_memory_s,
        help="The hub's trim_memory_s (0: never hand freed memory back; for comparisons).",
    )
    parser.add_argument(
        "--cluster-syncs",
        type=int,
        default=HubOptions().cluster_syncs,
        help="The hub's cluster_syncs (syncs in flight per cluster; for comparisons).",
    )
    parser.add_argument(
        "--global-syncs",
        type=int,
        default=HubOptions().global_syncs,
        help="The hub's global_syncs (syncs in flight hub-wide; for comparisons).",
    )
    parser.add_argument(
        "--no-writes-first",
        action="store_true",
        help="Turn off the hub's writes-first scheduling (hub.sync.priority; for comparisons).",
    )
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    args = parser.parse_args()
    PROGRESS_EVERY_S[0] = args.progress_every
    REVISION_HISTORY_LIMIT[0] = args.revision_history_limit
    n, m = args.clusters, args.apps
    tmp = Path(tempfile.mkdtemp(prefix="hub-fleet-bench-"))
    log(
        f"fleet benchmark: {n} clusters x {m} apps = {n * m} Applications ({tmp}); "
        f"hub event loop: {chosen_loop(HUB_DEFAULT)}"
    )
    sim_cpus = None
    if args.pin_sim:
        sim_cpus, hub_cpus = split_cpus(sorted(os.sched_getaffinity(0)))
        # Before any thread starts: threads and children inherit the calling thread's mask.
        os.sched_setaffinity(0, hub_cpus)
        log(f"pinned: simulator on CPU {sorted(sim_cpus)}, hub and kubectl on {sorted(hub_cpus)}")
    sim = Sim(
        n,
        tmp,
        processes=args.sim_processes,
        profile=args.sim_profile,
        http2=not args.http1,
        cpus=sim_cpus,
    )
    try:
        figures = run(args, tmp, sim)
    finally:
        sim.stop()
    print_targets(figures)
    print(json.dumps(figures, indent=2, sort_keys=True))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def run(args: argparse.Namespace, tmp: Path, sim: Sim) -> dict[str, Any]:
    n, m = args.clusters, args.apps
    total = n * m
    names = sim.names
    kubeconfig = sim.kubeconfig
    cli = Cli(tmp / "home")
    cli.ok("init")
    t0 = time.monotonic()
    if args.register == "add" or (args.register == "auto" and n <= 200):
        for name in names:
            cli.ok("cluster", "add", name, "--kubeconfig", str(kubeconfig), "--context", name)
        how = "hub cluster add, one by one"
    else:
        # One `hub cluster import` of Argo CD cluster Secrets: one transaction for the fleet.
        secrets = tmp / "clusters.yaml"
        secrets.write_text(argo_secrets(kubeconfig))
        cli.ok("cluster", "import", "-f", str(secrets), "--skip-check")
        how = "hub cluster import"
    figures: dict[str, Any] = {
        "clusters": n,
        "apps_per_cluster": m,
        "applications": total,
        "sim_processes": len(sim.processes),
        "sim_pinned": args.pin_sim,
        "hub_cluster_syncs": args.cluster_syncs,
        "hub_global_syncs": args.global_syncs,
        "hub_writes_first": not args.no_writes_first,
        "sim_offers": "HTTP/1.1" if args.http1 else "HTTP/2, HTTP/1.1",
        "trigger": args.trigger,
        "event_loop": chosen_loop(HUB_DEFAULT),  # the hub's (HUB_EVENT_LOOP)
        "sim_event_loop": ",".join(sorted({str(s.get("event_loop")) for s in sim.stats()})),
        # mypyc-compiled or interpreted (clusters/sim/compiled.py), with the reason
        "sim_code": ",".join(sorted({str(s.get("build")) for s in sim.stats()})),
        "registration_s": round(time.monotonic() - t0, 1),
    }
    log(f"registered {n} clusters ({how}) in {figures['registration_s']}s")
    log(f"simulator code: {figures['sim_code']}")
    repo = GitRepo(tmp / "repo")
    # A failed automated sync is not tried again for the same revision without a retry
    # policy (Argo CD's rule), so a fleet that must ride out faults declares one.
    retry = "" if args.no_retry else RETRY
    files = {
        f"appsets/svc-{i}.yaml": APPSET.format(i=i, repo=repo.path, retry=retry) for i in range(m)
    }
    files |= {f"services/svc-{i}/all.yaml": service(i, "nginx:1") for i in range(m)}
    repo.write(files, "services")
    cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "appsets")
    counter = RequestCounter()
    apps = Apps(cli.home)
    poll = 0.2 if total <= 2000 else 1.0

    def progress(sha: str | None = None) -> Callable[[], str]:
        last = [time.monotonic(), cpu_s()]

        def line() -> str:
            now, cpu = time.monotonic(), cpu_s()
            busy = (cpu - last[1]) / max(now - last[0], 1e-3)
            last[:] = [now, cpu]
            count, good = apps.counts(sha)
            threads, fds = ProcessPeaks.now()
            s = sim_summary(sim.stats())
            return (
                f"{good}/{total} Synced+Healthy ({count} apps; {apps.stages(sha)}); "
                f"writes sent {counter.writes()}; "
                f"hub {100 * busy:.0f}% of a core since the last line, threads {threads}, "
                f"fds {fds}, RSS {rss_mb():.0f} MB; sim sees {s['h2_connections_open']} h2 + "
                f"{s['http1_connections_open']} HTTP/1.1 connections, busiest {100 * s['cpu_share_max']:.0f}% "
                f"of a core, lag p99 {s['loop_lag_p99_ms']:.0f} ms; load {os.getloadavg()[0]:.1f}"
            )

        return line

    sampler = StackSampler() if args.hub_samples else None
    peaks = ProcessPeaks()
    gc_time = GcTime()

    opened_so_far = [0]
    work = WorkCounts(total)  # the count the apps' convergence is waited for

    def phase(name: str, hub_cpu_s: float | None = None) -> None:
        """Close a phase: the simulator's figures for it, and a new window. ``hub_cpu_s``:
        the hub's CPU in it, reported per unit of the simulator's CPU too."""
        s = sim_summary(sim.stats(reset=True))
        figures.setdefault("sim", {})[name] = s
        log(f"  {name}: {describe_sim(s)}")
        if hub_cpu_s is not None and s.get("cpu_s"):
            # The VM's speed drifts by 10-25% within minutes and moves both processes
            # alike; this ratio compares the hub's code across runs where times cannot.
            ratio = round(hub_cpu_s / s["cpu_s"], 3)
            figures.setdefault("hub_cpu_per_sim_cpu", {})[name] = ratio
            log(f"  {name}: hub CPU per unit of simulator CPU: {ratio}")
        log(f"  {name}: hub peaks so far: RSS {peaks.rss_mb:.0f} MB, threads {peaks.threads}, "
            f"open files {peaks.fds}")  # fmt: skip
        # TLS handshakes: each connection a pool opened (workers that restarted not counted).
        opened = sum(w.kube.connections_opened for w in hub.workers.values() if w.kube)
        figures.setdefault("connections_opened", {})[name] = opened - opened_so_far[0]
        log(f"  {name}: hub connections opened (TLS handshakes): {opened - opened_so_far[0]}")
        opened_so_far[0] = opened
        done = work.take(hub)
        figures.setdefault("hub_work", {})[name] = done
        log(f"  {name}: hub work: {done['events']} watch events applied, {done['compares']} "
            f"compares ({done['compares_per_app']:.2f} per app: {done['compare_results']})")  # fmt: skip
        collected = gc_time.take()
        figures.setdefault("hub_gc", {})[name] = collected
        log(f"  {name}: hub garbage collector {collected['total_s']}s "
            f"(by generation {collected['by_generation_s']}, collections "
            f"{collected['collections']}, longest full {collected['longest_full_s']}s)")  # fmt: skip
        if sampler is not None:
            top = sampler.take()
            figures.setdefault("hub_samples", {})[name] = top
            log(f"  {name}: where the hub's threads were (thread-seconds, sampled at 10 Hz):")
            for where, seconds in top:
                log(f"    {seconds:8.1f}  {where}")

    hub = Hub(
        cli.home,
        HubOptions(
            git_poll_s=2.0,
            resync_s=3600.0,
            jitter=0.0,
            trim_memory_s=args.trim_memory_s,
            cluster_syncs=args.cluster_syncs,
            global_syncs=args.global_syncs,
            writes_first=not args.no_writes_first,
        ),
    )
    sim.stats(reset=True)
    gc_time.take()
    profiler = cProfile.Profile() if args.hub_profile is not None else None
    # The loop `hub serve` runs on (HUB_EVENT_LOOP chooses, as for `hub serve`).
    loop_options = anyio_backend_options(HUB_DEFAULT)
    with anyio.from_thread.start_blocking_portal(backend_options=loop_options) as portal:

        def pushed() -> None:
            """``--trigger webhook``: tell the hub of a push, as its webhook endpoint does
            (`POST /api/webhook` calls the same method)."""
            if args.trigger == "webhook":
                portal.call(hub.notify_git_push, [str(repo.path)])

        sha1 = repo.git("rev-parse", "HEAD")
        seen = GitCycleClock(hub)
        t0, c0 = time.monotonic(), cpu_s()
        future, _ = portal.start_task(hub.run)
        wait_for("the first sync", apps.converged(sha1, total), args.timeout, progress(sha1), poll)
        first = time.monotonic() - t0
        figures["first_commit_to_synced_healthy_s"] = round(first, 1)
        figures["first_commit_hub_cpu_s"] = round(cpu_s() - c0, 1)
        log(f"hub start + first commit -> {total} Synced/Healthy: {first:.1f}s "
            f"(hub process CPU {figures['first_commit_hub_cpu_s']}s)")  # fmt: skip
        figures["sync_requests_first_commit"] = dict(counter.take())
        log(f"  hub requests from start through the first commit: "
            f"{figures['sync_requests_first_commit']}")  # fmt: skip
        phase("first commit", figures["first_commit_hub_cpu_s"])

        # The steady state and drift come before the image commit, so a fleet too large to
        # converge twice in the time there is still measures them.
        steady_state(hub, portal, counter, work, figures, total)
        phase("steady-state resync")
        drift(args, sim, figures)
        phase("drift heal")

        rollout = 0.0
        if not args.no_image_commit:
            counter.take()
            sha2 = repo.write(
                {f"services/svc-{i}/all.yaml": service(i, "nginx:2")
                 for i in range(m)},
                "image nginx:2",
            )  # fmt: skip
            t0, c0 = time.monotonic(), cpu_s()
            pushed()
            if profiler is not None:
                portal.call(profiler.enable)  # profiles the event loop's thread only
            rollout = wait_for(
                "the image rollout", apps.converged(sha2, total), args.timeout, progress(sha2), poll
            )
            if profiler is not None:
                portal.call(profiler.disable)
                profiler.dump_stats(args.hub_profile)
                log(f"  the hub's event loop during the image commit, cProfile: {args.hub_profile}")
            figures["commit_to_synced_healthy_s"] = round(rollout, 1)
            figures["image_commit_hub_cpu_s"] = round(cpu_s() - c0, 1)
            log(f"image commit -> {total} Synced/Healthy: {rollout:.1f}s "
                f"(hub process CPU {figures['image_commit_hub_cpu_s']}s)")  # fmt: skip
            found = seen.first_seen(sha2)
            if found is not None:
                figures["image_commit_seen_s"] = round(found - t0, 2)
                log(f"  the hub's Git cycle saw the commit {found - t0:.2f}s after it "
                    f"({args.trigger}); Synced/Healthy {t0 + rollout - found:.1f}s later")  # fmt: skip
            figures["sync_requests_image_commit"] = dict(counter.take())
            log(f"  hub requests of the image commit: {figures['sync_requests_image_commit']}")
            phase("image commit", figures["image_commit_hub_cpu_s"])
        if args.faults and not args.no_image_commit:
            herd(args, sim, repo, apps, figures, rollout, progress, phase, pushed)
        figures["hub_rss_mb"] = round(rss_mb(), 0)
        threads, fds = ProcessPeaks.now()
        figures |= {"threads_end": threads, "fds_end": fds}
        figures |= {
            "threads_peak": peaks.threads,
            "fds_peak": peaks.fds,
            "hub_rss_peak_mb": round(peaks.rss_mb, 0),
        }
        log(f"hub: RSS {figures['hub_rss_mb']:.0f} MB (peak {peaks.rss_mb:.0f}), threads "
            f"{threads} (peak {peaks.threads}), open files {fds} (peak {peaks.fds})")  # fmt: skip
        portal.call(hub.shutdown)
        future.result(timeout=300)
    peaks.stop()
    if not args.no_baseline and not args.no_image_commit:
        baseline(names, kubeconfig, tmp, m, figures, rollout)
    return figures


class GitCycleClock:
    """When the hub's Git cycles first resolved each commit (``--trigger poll`` waits up to
    a poll interval for it, and where a commit lands between two polls is the benchmark's
    clock, not the hub's speed; this says how much of a rollout was that wait)."""

    def __init__(self, hub: Hub) -> None:
        self.seen: dict[str, float] = {}
        cycle = hub.git_cycle

        async def timed(*args: Any, **kwargs: Any) -> Any:
            out = await cycle(*args, **kwargs)
            now = time.monotonic()
            for sha in hub.revisions.snapshot().values():
                self.seen.setdefault(sha, now)
            return out

        hub.git_cycle = timed  # type: ignore[method-assign]

    def first_seen(self, sha: str) -> float | None:
        return self.seen.get(sha)


def steady_state(
    hub: Hub,
    portal: Any,
    counter: RequestCounter,
    work: WorkCounts,
    figures: dict[str, Any],
    total: int,
) -> None:
    """Idle, then one full resync of every app: which requests does a compare send?"""
    time.sleep(3.0)
    counter.take()
    before = work.compares

    def resync_all() -> None:
        for worker in hub.workers.values():
            worker.wake(refresh_all=True)

    t0 = time.monotonic()
    portal.call(_run_sync_in_loop, resync_all)
    wait_for("one compare per app", lambda: work.compares - before >= total, 600, every=0.5)
    resync = counter.take()
    figures["resync_s"] = round(time.monotonic() - t0, 1)
    figures["resync_requests"] = dict(resync)
    per_app = (resync["GET"] + resync["LIST"]) / total
    figures["resync_get_list_per_app"] = per_app
    log(f"steady-state resync of {total} apps in {figures['resync_s']}s: requests "
        f"{dict(resync)} (GET+LIST per app: {per_app:.3f})")  # fmt: skip


def drift(args: argparse.Namespace, sim: Sim, figures: dict[str, Any]) -> None:
    """kubectl scale on clusters spread over the fleet; time until the hub set it back."""
    n, m = args.clusters, args.apps
    count = min(args.drift_samples, n)
    if count <= 0:
        return
    step = n / count
    latencies = []
    for k in range(count):
        name = sim.names[int(k * step)]
        namespace = f"svc-{k % m}"
        subprocess.run(
            ["kubectl", "--kubeconfig", str(sim.kubeconfig), "--context", name, "scale",
             "deployment", "web", "-n", namespace, "--replicas=3"],
            check=True, capture_output=True,
        )  # fmt: skip
        t_scaled = time.monotonic()
        wait_for(
            f"drift healed on {name}",
            lambda c=name, ns=namespace: sim.deployment_replicas(c, ns) == 1,
            120,
            every=0.05,
        )
        latencies.append(time.monotonic() - t_scaled)
    p50 = statistics.median(latencies)
    p99 = percentile(latencies, 0.99)
    figures["drift_samples"] = len(latencies)
    figures["drift_heal_p50_s"] = round(p50, 2)
    figures["drift_heal_p99_s"] = round(p99, 2)
    figures["drift_heal_max_s"] = round(max(latencies), 2)
    log(f"drift heal after kubectl scale ({len(latencies)} clusters spread over the fleet; "
        f"from kubectl's return to a GET seeing 1 replica, polled every 50 ms): "
        f"p50 {p50:.2f}s, p99 {p99:.2f}s, max {max(latencies):.2f}s")  # fmt: skip


def herd(
    args: argparse.Namespace,
    sim: Sim,
    repo: GitRepo,
    apps: Apps,
    figures: dict[str, Any],
    fault_free_s: float,
    progress: Callable[[str | None], Callable[[], str]],
    phase: Callable[[str], None],
    pushed: Callable[[], None],
) -> None:
    """One commit touching every Application while some clusters are slow or failing."""
    n, m = args.clusters, args.apps
    names = sim.names
    # Spread over the fleet, deterministic, disjoint: every (1/share)-th cluster.
    slow_count = round(n * args.slow_share)
    error_count = round(n * args.error_share)
    slow = [names[int(k * n / slow_count)] for k in range(slow_count)] if slow_count else []
    rest = [c for c in names if c not in set(slow)]
    error = (
        [rest[int(k * len(rest) / error_count) + 1] for k in range(error_count)]
        if error_count
        else []
    )
    faulty = set(slow) | set(error)
    healthy = [c for c in names if c not in faulty]
    log(f"thundering herd: {len(slow)} clusters {args.slow_latency:g}s slow, {len(error)} "
        f"answering 503 to {100 * args.error_rate:.0f}% of requests, {len(healthy)} healthy")  # fmt: skip
    for name in slow:
        sim.set_faults(name, latency=args.slow_latency)
    for name in error:
        sim.set_faults(name, error_rate=args.error_rate, error_code=503)
    sha3 = repo.write(
        {f"services/svc-{i}/all.yaml": service(i, "nginx:3") for i in range(m)},
        "image nginx:3 (thundering herd)",
    )
    t0 = time.monotonic()
    pushed()
    poll = 0.2 if n * m <= 2000 else 1.0
    healthy_s = wait_for(
        "the healthy clusters under faults",
        apps.converged(sha3, len(healthy) * m, healthy),
        args.timeout,
        progress(sha3),
        poll,
    )
    ratio = healthy_s / max(fault_free_s, 1e-9)
    figures["herd"] = {
        "slow_clusters": len(slow),
        "error_clusters": len(error),
        "healthy_clusters": len(healthy),
        "fault_free_commit_s": round(fault_free_s, 1),
        "healthy_converged_s": round(healthy_s, 1),
        "healthy_vs_fault_free": round(ratio, 2),
        "slow_converged_at_healthy": apps.count_converged(sha3, slow),
    }
    log(f"healthy clusters' {len(healthy) * m} apps converged in {healthy_s:.1f}s under faults "
        f"against {fault_free_s:.1f}s fault-free: x{ratio:.2f} (target <= {TARGET_HERD_SLOWDOWN})")  # fmt: skip
    phase("herd, healthy clusters converging")
    if slow:
        try:
            slow_s = wait_for(
                "the slow clusters (faults still on)",
                apps.converged(sha3, len(slow) * m, slow),
                args.fault_hold,
                progress(sha3),
                poll,
            )
            figures["herd"]["slow_converged_s"] = round(healthy_s + slow_s, 1)
            log(f"slow clusters converged {healthy_s + slow_s:.1f}s after the commit, faults on")
        except SystemExit:
            figures["herd"]["slow_converged_s"] = None
            log(f"slow clusters: {apps.count_converged(sha3, slow)}/{len(slow) * m} apps "
                f"converged after {args.fault_hold:g}s more with the faults on")  # fmt: skip
    figures["herd"]["error_converged_while_faulty"] = apps.count_converged(sha3, error)
    phase("herd, faults held")
    for name in faulty:
        sim.clear_faults(name)
    t_clear = time.monotonic()
    try:
        recover = wait_for(
            "every cluster once the faults cleared",
            apps.converged(sha3, n * m),
            args.recovery_timeout,
            progress(sha3),
            poll,
        )
    except SystemExit:
        figures["herd"]["recovery_after_clear_s"] = None
        figures["herd"]["not_recovered_apps"] = n * m - apps.count_converged(sha3)
        log(f"faults cleared: {figures['herd']['not_recovered_apps']} Applications still not "
            f"Synced+Healthy after {args.recovery_timeout:g}s")  # fmt: skip
        phase("herd, recovery")
        return
    figures["herd"]["recovery_after_clear_s"] = round(recover, 1)
    figures["herd"]["commit_to_all_s"] = round(time.monotonic() - t0, 1)
    log(f"faults cleared: every Application Synced+Healthy {recover:.1f}s later, with no "
        f"intervention ({time.monotonic() - t_clear:.1f}s)")  # fmt: skip
    phase("herd, recovery")


def baseline(
    names: list[str], kubeconfig: Path, tmp: Path, m: int, figures: dict[str, Any], rollout: float
) -> None:
    """Push-CI: the same manifests, kubectl apply cluster after cluster."""
    manifests = tmp / "baseline"
    manifests.mkdir()
    for i in range(m):
        text = f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: svc-{i}}}\n---\n"
        text += service(i, "nginx:4")
        (manifests / f"svc-{i}.yaml").write_text(text)
    t0 = time.monotonic()
    for k, name in enumerate(names):
        subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "--context", name, "apply",
             "--server-side", "--force-conflicts", "-f", str(manifests)],
            check=True, capture_output=True,
        )  # fmt: skip
        if (k + 1) % 100 == 0:
            log(f"  kubectl loop: {k + 1}/{len(names)} clusters in {time.monotonic() - t0:.0f}s")
    took = time.monotonic() - t0
    figures["push_ci_kubectl_apply_s"] = round(took, 1)
    figures["ratio_push_ci_to_hub"] = round(took / max(rollout, 1e-9), 2)
    log(f"push-CI baseline, kubectl apply over {len(names)} clusters one by one: {took:.1f}s "
        f"(apply only, no health wait); ratio to the hub's commit->Synced+Healthy: "
        f"{took / rollout:.2f}x")  # fmt: skip


def print_targets(f: dict[str, Any]) -> None:
    """Every figure issue 12 sets a target for, against it."""
    n = f["clusters"]
    rows: list[tuple[str, str, str, bool | None]] = []

    def row(what: str, value: Any, target: str, ok: bool | None) -> None:
        rows.append((what, str(value), target, ok))

    def get(key: str) -> Any:
        return f.get(key)

    if get("first_commit_to_synced_healthy_s") is not None:
        v = f["first_commit_to_synced_healthy_s"]
        row("commit -> all Synced+Healthy (hub start + first commit)", f"{v} s",
            f"<= {TARGET_COMMIT_S:g} s", v <= TARGET_COMMIT_S)  # fmt: skip
    if get("commit_to_synced_healthy_s") is not None:
        v = f["commit_to_synced_healthy_s"]
        row("image commit -> all Synced+Healthy", f"{v} s", f"<= {TARGET_COMMIT_S:g} s",
            v <= TARGET_COMMIT_S)  # fmt: skip
    if get("hub_rss_peak_mb") is not None:
        v = f["hub_rss_peak_mb"]
        row("hub RSS (peak, sampled 1/s)", f"{v:.0f} MB", f"<= {TARGET_RSS_MB:.0f} MB",
            v <= TARGET_RSS_MB)  # fmt: skip
    if get("threads_peak") is not None:
        v = f["threads_peak"]
        row("hub threads (peak)", v, f"<= {TARGET_THREADS}", v <= TARGET_THREADS)
    if get("fds_peak") is not None:
        v, limit = f["fds_peak"], n * 2 + 100
        row("hub open fds (peak)", v, f"<= clusters x 2 + 100 = {limit}", v <= limit)
    if get("resync_get_list_per_app") is not None:
        v = f["resync_get_list_per_app"]
        row("steady-state GET/LIST per app per resync", f"{v:.3f}", "0", v == 0)
    if get("drift_heal_p50_s") is not None:
        v = f["drift_heal_p50_s"]
        row(f"drift heal p50 ({f['drift_samples']} samples)", f"{v} s",
            f"<= {TARGET_DRIFT_P50_S:g} s", v <= TARGET_DRIFT_P50_S)  # fmt: skip
        v = f["drift_heal_p99_s"]
        row("drift heal p99", f"{v} s", f"<= {TARGET_DRIFT_P99_S:g} s", v <= TARGET_DRIFT_P99_S)
    if get("ratio_push_ci_to_hub") is not None:
        v = f["ratio_push_ci_to_hub"]
        row("push-CI kubectl loop / hub image commit", v, f">= {TARGET_RATIO:g}",
            v >= TARGET_RATIO)  # fmt: skip
    herd_figures = f.get("herd")
    if herd_figures:
        v = herd_figures["healthy_vs_fault_free"]
        row("herd: healthy clusters' time / fault-free time",
            f"{v} ({herd_figures['healthy_converged_s']} s / "
            f"{herd_figures['fault_free_commit_s']} s)",
            f"<= {TARGET_HERD_SLOWDOWN}", v <= TARGET_HERD_SLOWDOWN)  # fmt: skip
        recovered = herd_figures.get("recovery_after_clear_s")
        row("herd: faulty clusters converge once faults clear",
            f"{recovered} s after clearing" if recovered is not None else
            f"{herd_figures.get('not_recovered_apps')} apps did not",
            "on their own", recovered is not None)  # fmt: skip
    sims = f.get("sim") or {}
    for name, s in sims.items():
        row(f"simulator during {name}: loop lag p99, busiest process CPU",
            f"{s['loop_lag_p99_ms']:.0f} ms, {100 * s['cpu_share_max']:.0f}%",
            "lag <= 100 ms (kept up)", s["loop_lag_p99_ms"] <= 100)  # fmt: skip
    width = max(len(r[0]) for r in rows) if rows else 0
    print(f"\nIssue 12's targets at {n} clusters x {f['apps_per_cluster']} apps "
          f"(the issue sets them for 1,000 x 10):")  # fmt: skip
    for what, value, target, ok in rows:
        verdict = "" if ok is None else ("met" if ok else "NOT MET")
        print(f"  {what:<{width}}  {value:>28}  {target:<34} {verdict}")


if __name__ == "__main__":
    main()
