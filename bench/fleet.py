"""Fleet benchmark of `hub serve` (issue 6): N clusters x M Applications on `hub sim`.

Measures, in one run:

1. commit -> every Application Synced and Healthy (the first commit, then an image change);
2. spoke API requests during one steady-state resync cycle (by verb; GET/LIST per app is
   the figure that should be zero) — counted on the hub side, around ``KubeClient``;
3. drift-heal latency after ``kubectl scale`` (p50/p99 over a sample of clusters);
4. the hub's resident memory (the simulated clusters run in another process);
5. the push-CI baseline: ``kubectl apply -f`` of the same manifests, cluster after
   cluster, and the ratio to the hub's commit-to-Synced time.

    python bench/fleet.py --clusters 100 --apps 10

The hub runs in this process (anyio, through a blocking portal) so its requests can be
counted; `hub sim serve` runs as a subprocess. Figures go to stdout; docs/benchmarks.md
("Fleet") records a run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
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

from clusters.kube import KubeClient  # noqa: E402
from hub.apps import AppStore  # noqa: E402
from hub.controller import Hub, HubOptions  # noqa: E402
from hub.home import open_store  # noqa: E402
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
        syncOptions: [CreateNamespace=true]
"""

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


class RequestCounter:
    """Counts the hub's requests to spokes by (verb, kind of call)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        original = KubeClient._request

        def counted(client: KubeClient, method: str, path: str, **kw: Any) -> Any:
            query = dict(kw.get("query") or [])
            if method == "GET" and query.get("watch"):
                what = "WATCH"
            elif method == "GET" and "limit" in query:  # KubeClient.list pages with limit
                what = "LIST"
            elif method == "GET" and (path.count("/") <= 3 or path == "/version"):
                what = "DISCOVERY"  # /api, /apis, /api/v1, /apis/GROUP/VERSION
            elif method == "GET":
                what = "GET"
            else:
                what = method
            with self.lock:
                self.counts[what] += 1
            return original(client, method, path, **kw)

        KubeClient._request = counted  # type: ignore[method-assign,assignment]
        self._count_async()

    def _count_async(self) -> None:
        """The live cache's LISTs and WATCHes go through ``AsyncKube`` (event loop) where it
        exists; the same counts, so runs before and after it compare."""
        from clusters import kube

        transport = getattr(kube, "AsyncKube", None)
        if transport is None:
            return
        list_, watch = transport.list, transport.watch

        async def counted_list(client: Any, *a: Any, **kw: Any) -> Any:
            with self.lock:
                self.counts["LIST"] += 1
            return await list_(client, *a, **kw)

        def counted_watch(client: Any, *a: Any, **kw: Any) -> Any:
            with self.lock:
                self.counts["WATCH"] += 1
            return watch(client, *a, **kw)

        transport.list = counted_list
        transport.watch = counted_watch

    def take(self) -> Counter[str]:
        with self.lock:
            out, self.counts = self.counts, Counter()
        return out


async def _run_sync_in_loop(fn: Callable[[], None]) -> None:
    fn()  # workers are woken from their own event loop


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


class ProcessPeaks:
    """Samples this process's threads and open files once a second (the hub runs here)."""

    def __init__(self) -> None:
        self.threads = 0
        self.fds = 0
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True, name="bench-peaks").start()

    @staticmethod
    def now() -> tuple[int, int]:
        return len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd"))

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            threads, fds = self.now()
            self.threads, self.fds = max(self.threads, threads), max(self.fds, fds)

    def stop(self) -> None:
        self._stop.set()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    progress: Callable[[], str] | None = None,
) -> float:
    start = last = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.2)
        if progress is not None and time.monotonic() - last >= 30:
            last = time.monotonic()
            print(
                f"  {time.monotonic() - start:5.0f}s waiting for {what}: {progress()}", flush=True
            )
    if progress is not None:
        print(f"  gave up on {what}: {progress()}", flush=True)
    raise SystemExit(f"timed out after {timeout:g}s waiting for {what}")


def start_sim(n: int, kubeconfig: Path, state: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "hub", "--home", str(state), "sim", "serve",
            "--clusters", str(n), "--port", "0", "--kubeconfig-out", str(kubeconfig),
            "--ready-delay", "0.2",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip

    def ready() -> bool:
        if not kubeconfig.exists():
            return False
        try:
            doc = yaml.safe_load(kubeconfig.read_text()) or {}
        except yaml.YAMLError:
            return False
        return len(doc.get("contexts") or []) == n

    wait_for("the simulated clusters", ready, 120)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--apps", type=int, default=10)
    parser.add_argument("--drift-samples", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument(
        "--register",
        choices=("auto", "add", "import"),
        default="auto",
        help="hub cluster add per cluster, or one hub cluster import (auto: import above 200).",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="Skip the kubectl apply loop (large fleets)."
    )
    args = parser.parse_args()
    n, m = args.clusters, args.apps
    total = n * m
    tmp = Path(tempfile.mkdtemp(prefix="hub-fleet-bench-"))
    kubeconfig = tmp / "sim.kubeconfig"
    print(f"fleet benchmark: {n} clusters x {m} apps = {total} Applications ({tmp})")
    sim = start_sim(n, kubeconfig, tmp / "sim-home")
    try:
        run(args, tmp, kubeconfig, n, m, total)
    finally:
        sim.terminate()
        sim.wait(timeout=60)


def run(args: argparse.Namespace, tmp: Path, kubeconfig: Path, n: int, m: int, total: int) -> None:
    names = [c["name"] for c in yaml.safe_load(kubeconfig.read_text())["contexts"]]
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
    print(f"registered {n} clusters ({how}) in {time.monotonic() - t0:.1f}s")
    repo = GitRepo(tmp / "repo")
    files = {f"appsets/svc-{i}.yaml": APPSET.format(i=i, repo=repo.path) for i in range(m)}
    files |= {f"services/svc-{i}/all.yaml": SERVICE.format(i=i, image="nginx:1") for i in range(m)}
    repo.write(files, "services")
    cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "appsets")
    counter = RequestCounter()
    store = open_store(cli.home)
    apps = AppStore(store)

    def converged(sha: str) -> Callable[[], bool]:
        def check() -> bool:
            rows = apps.list_apps()
            return len(rows) == total and all(
                r.sync_status == "Synced" and r.health_status == "Healthy" and r.synced_sha == sha
                for r in rows
            )

        return check

    def progress() -> str:
        rows = apps.list_apps()
        good = sum(r.sync_status == "Synced" and r.health_status == "Healthy" for r in rows)
        threads, fds = ProcessPeaks.now()
        return (
            f"{good}/{total} Synced+Healthy ({len(rows)} apps), threads {threads}, "
            f"fds {fds}, RSS {rss_mb():.0f} MB, load {os.getloadavg()[0]:.1f}"
        )

    hub = Hub(cli.home, HubOptions(git_poll_s=2.0, resync_s=3600.0, jitter=0.0))
    figures: dict[str, Any] = {"clusters": n, "apps_per_cluster": m}
    peaks = ProcessPeaks()
    with anyio.from_thread.start_blocking_portal() as portal:
        sha1 = repo.git("rev-parse", "HEAD")
        t0 = time.monotonic()
        future, _ = portal.start_task(hub.run)
        wait_for("the first sync", converged(sha1), args.timeout, progress)
        first = time.monotonic() - t0
        figures["first_commit_to_synced_healthy_s"] = round(first, 1)
        print(f"hub start + first commit -> {total} Synced/Healthy: {first:.1f}s")

        sha2 = repo.write(
            {f"services/svc-{i}/all.yaml": SERVICE.format(i=i, image="nginx:2") for i in range(m)},
            "image nginx:2",
        )
        t0 = time.monotonic()
        rollout = wait_for("the image rollout", converged(sha2), args.timeout, progress)
        figures["commit_to_synced_healthy_s"] = round(rollout, 1)
        print(f"image commit -> {total} Synced/Healthy: {rollout:.1f}s")
        figures["sync_requests"] = dict(counter.take())

        # Steady state: idle, then one full resync of every app.
        time.sleep(3.0)
        counter.take()
        passes = {"n": 0}
        from hub.worker import ClusterWorker

        original_eval = ClusterWorker._evaluate

        def counted_eval(self: ClusterWorker, desired: Any) -> Any:
            passes["n"] += 1
            return original_eval(self, desired)

        ClusterWorker._evaluate = counted_eval  # type: ignore[method-assign]

        def resync_all() -> None:
            for worker in hub.workers.values():
                worker.wake(refresh_all=True)

        portal.call(_run_sync_in_loop, resync_all)
        wait_for("one compare per app", lambda: passes["n"] >= total, 300)
        resync = counter.take()
        ClusterWorker._evaluate = original_eval  # type: ignore[method-assign]
        figures["resync_requests"] = dict(resync)
        per_app = (resync["GET"] + resync["LIST"]) / total
        figures["resync_get_list_per_app"] = per_app
        print(f"steady-state resync of {total} apps: requests {dict(resync)} "
              f"(GET+LIST per app: {per_app:.3f})")  # fmt: skip

        # Drift: kubectl scale on a sample of clusters, time until replicas are back.
        latencies = []
        for name in names[: args.drift_samples]:
            subprocess.run(
                ["kubectl", "--kubeconfig", str(kubeconfig), "--context", name, "scale",
                 "deployment", "web", "-n", "svc-0", "--replicas=3"],
                check=True, capture_output=True,
            )  # fmt: skip
            t_scaled = time.monotonic()

            def healed(ctx: str = name) -> bool:
                out = subprocess.run(
                    ["kubectl", "--kubeconfig", str(kubeconfig), "--context", ctx, "get",
                     "deployment", "web", "-n", "svc-0", "-o", "jsonpath={.spec.replicas}"],
                    capture_output=True, text=True,
                )  # fmt: skip
                return out.stdout.strip() == "1"

            wait_for("drift healed", healed, 60)
            latencies.append(time.monotonic() - t_scaled)
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
        figures["drift_heal_p50_s"] = round(p50, 2)
        figures["drift_heal_p99_s"] = round(p99, 2)
        print(f"drift heal after kubectl scale ({len(latencies)} samples; includes kubectl "
              f"polling): p50 {p50:.2f}s, p99 {p99:.2f}s")  # fmt: skip
        figures["hub_rss_mb"] = round(rss_mb(), 0)
        print(f"hub resident memory (this process, sim elsewhere): {figures['hub_rss_mb']:.0f} MB")
        threads, fds = ProcessPeaks.now()
        figures |= {"threads_end": threads, "fds_end": fds}
        figures |= {"threads_peak": peaks.threads, "fds_peak": peaks.fds}
        print(f"threads {threads} (peak {peaks.threads}), open files {fds} (peak {peaks.fds})")
        portal.call(hub.shutdown)
        future.result(timeout=120)
    store.close()
    if args.no_baseline:
        print(json.dumps(figures, indent=2, sort_keys=True))
        return

    # Push-CI baseline: the same manifests, kubectl apply cluster after cluster.
    manifests = tmp / "baseline"
    manifests.mkdir()
    for i in range(m):
        text = f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: svc-{i}}}\n---\n"
        text += SERVICE.format(i=i, image="nginx:3")
        (manifests / f"svc-{i}.yaml").write_text(text)
    t0 = time.monotonic()
    for name in names:
        subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "--context", name, "apply",
             "--server-side", "--force-conflicts", "-f", str(manifests)],
            check=True, capture_output=True,
        )  # fmt: skip
    baseline = time.monotonic() - t0
    figures["push_ci_kubectl_apply_s"] = round(baseline, 1)
    figures["ratio_push_ci_to_hub"] = round(baseline / max(rollout, 1e-9), 2)
    print(f"push-CI baseline, kubectl apply over {n} clusters one by one: {baseline:.1f}s "
          f"(apply only, no health wait); ratio to the hub's commit->Synced+Healthy: "
          f"{baseline / rollout:.2f}x")  # fmt: skip
    print(json.dumps(figures, indent=2, sort_keys=True))
    os.environ.pop("HUB_HOME", None)


if __name__ == "__main__":
    main()
