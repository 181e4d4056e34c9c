"""Replicas benchmark (issue 16): N `hub serve` replicas on one PostgreSQL against one
`hub serve` on SQLite, same fleet, same commits.

For each setup, in order: start the hub process(es), time the first commit -> every
Application Synced and Healthy, then an image commit -> Synced and Healthy, then idle for
``--idle`` seconds; and record per hub process its resident memory, threads and CPU time
(user + system, from /proc) at the end of each phase. PostgreSQL is the tests' throwaway
server (tests/pg.py: Debian's binaries, a temp directory, a loopback port); its own CPU is
reported too. The simulated clusters run in one `hub sim serve` process (bench/fleet.py's
``Sim``), as the manifests and ApplicationSets are bench/fleet.py's.

    python bench/replicas.py --clusters 30 --apps 3 --replicas 3

Figures go to stdout (and ``--json FILE``); docs/benchmarks.md is the lead's to update.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fleet import APPSET, RETRY, SERVICE, Sim, wait_for  # noqa: E402
from hub.apps import AppStore  # noqa: E402
from hub.store import Store  # noqa: E402
from tests.clusters.cli_support import Hub as Cli  # noqa: E402
from tests.e2e.serve_support import free_port  # noqa: E402
from tests.pg import PostgresServer, find_bindir  # noqa: E402
from tests.sync.e2e_helpers import GitRepo  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def proc_figures(pid: int) -> dict[str, float]:
    """RSS (MB), threads and CPU seconds (user + system) of one process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / TICK  # utime, stime
    return {
        "rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
        "threads": int(fields["Threads"]),
        "cpu_s": round(cpu, 2),
    }


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds of processes and their children that were waited for (PostgreSQL)."""
    total = 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in stat[11:15]) / TICK  # utime stime cutime cstime
    return round(total, 2)


def postgres_pids(server: PostgresServer) -> list[int]:
    """The postmaster (its cutime counts backends that ended) and its live children."""

    def pgrep(*args: str) -> list[int]:
        out = subprocess.run(["pgrep", *args], capture_output=True, text=True, check=False)
        return [int(p) for p in out.stdout.split()]

    main = pgrep("-f", str(server.data))
    return main + [c for m in main for c in pgrep("-P", str(m))]


def setup(tmp: Path, kubeconfig: Path, m: int, url: str | None) -> tuple[Path, GitRepo]:
    names = [c["name"] for c in yaml.safe_load(kubeconfig.read_text())["contexts"]]
    admin = tmp / "admin"
    cli = Cli(admin)
    cli.ok("init", *(("--database", url) if url else ()))
    for name in names:
        cli.ok("cluster", "add", name, "--kubeconfig", str(kubeconfig), "--context", name)
    repo = GitRepo(tmp / "repo")
    files = {
        f"appsets/svc-{i}.yaml": APPSET.format(i=i, repo=repo.path, retry=RETRY) for i in range(m)
    }
    files |= {f"services/svc-{i}/all.yaml": SERVICE.format(i=i, image="nginx:1") for i in range(m)}
    repo.write(files, "services")
    cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "appsets")
    return admin, repo


def start(home: Path, name: str, lease: float, log: Path) -> subprocess.Popen[str]:
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hub", "--home", str(home), "serve", "--port",
             str(free_port()), "--git-poll", "2", "--resync", "3600", "--lease", str(lease),
             "--replica-id", name],
            stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


def run_setup(
    label: str,
    tmp: Path,
    kubeconfig: Path,
    args: argparse.Namespace,
    url: str | None,
    replicas: int,
    pg: PostgresServer | None,
) -> dict[str, Any]:
    total = args.clusters * args.apps
    admin, repo = setup(tmp, kubeconfig, args.apps, url)
    store = Store.open(url or admin / "hub.db")
    apps = AppStore(store)
    homes = []
    for i in range(replicas):
        if url is None:
            homes.append(admin)
            break
        home = tmp / f"r{i + 1}"
        home.mkdir(mode=0o700)
        for f in ("master.key", "database.url"):
            shutil.copy(admin / f, home / f)
            (home / f).chmod(0o600)
        homes.append(home)

    def converged(sha: str) -> bool:
        rows = apps.list_apps()
        return len(rows) == total and all(
            r.sync_status == "Synced" and r.health_status == "Healthy" and r.synced_sha == sha
            for r in rows
        )

    pg_pids = postgres_pids(pg) if pg is not None else []
    pg_cpu0 = tree_cpu(pg_pids)
    figures: dict[str, Any] = {"setup": label, "processes": len(homes)}
    procs = [start(h, f"r{i + 1}", args.lease, tmp / f"r{i + 1}.log") for i, h in enumerate(homes)]
    try:
        t0 = time.monotonic()
        sha1 = repo.git("rev-parse", "HEAD")
        wait_for("the first sync", lambda: converged(sha1), args.timeout)
        figures["start_to_synced_healthy_s"] = round(time.monotonic() - t0, 1)
        figures["after_first_sync"] = [proc_figures(p.pid) for p in procs]
        sha2 = repo.write(
            {
                f"services/svc-{i}/all.yaml": SERVICE.format(i=i, image="nginx:2")
                for i in range(args.apps)
            },
            "image nginx:2",
        )
        t0 = time.monotonic()
        wait_for("the image rollout", lambda: converged(sha2), args.timeout)
        figures["commit_to_synced_healthy_s"] = round(time.monotonic() - t0, 1)
        before = [proc_figures(p.pid) for p in procs]
        figures["after_rollout"] = before
        time.sleep(args.idle)
        after = [proc_figures(p.pid) for p in procs]
        figures["idle_cpu_s_per_process"] = [
            round(a["cpu_s"] - b["cpu_s"], 2) for a, b in zip(after, before, strict=True)
        ]
        figures["end"] = after
        if pg is not None:
            figures["postgres_cpu_s"] = round(tree_cpu(postgres_pids(pg)) - pg_cpu0, 2)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=30)
    parser.add_argument("--apps", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--lease", type=float, default=15.0)
    parser.add_argument("--idle", type=float, default=30.0, help="Idle seconds measured.")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hub-replicas-bench-"))
    print(
        f"replicas benchmark: {args.clusters} clusters x {args.apps} apps; "
        f"{args.replicas} replicas on PostgreSQL vs 1 hub on SQLite ({tmp})",
        flush=True,
    )
    (tmp / "sim1").mkdir()
    sim = Sim(args.clusters, tmp / "sim1", processes=1, profile=None)
    pg = PostgresServer(find_bindir())
    results = []
    try:
        pg.start()
        pg_db = pg.create_database()
        results.append(
            run_setup(
                f"{args.replicas} replicas, PostgreSQL",
                tmp / "pg",
                sim.kubeconfig,
                args,
                pg.url(pg_db),
                args.replicas,
                pg,
            )
        )
        # A fresh sim for the SQLite run: nothing of the first run is on its clusters.
        sim.stop()
        (tmp / "sim2").mkdir()
        sim = Sim(args.clusters, tmp / "sim2", processes=1, profile=None)
        results.append(
            run_setup("1 hub, SQLite", tmp / "sqlite", sim.kubeconfig, args, None, 1, None)
        )
    finally:
        sim.stop()
        pg.stop()
    for r in results:
        print(f"\n== {r['setup']} ({r['processes']} process(es))")
        print(f"  start -> all Synced/Healthy: {r['start_to_synced_healthy_s']}s")
        print(f"  image commit -> all Synced/Healthy: {r['commit_to_synced_healthy_s']}s")
        for i, (f, idle) in enumerate(zip(r["end"], r["idle_cpu_s_per_process"], strict=True)):
            print(
                f"  process {i + 1}: RSS {f['rss_mb']} MB, {f['threads']} threads, "
                f"CPU {f['cpu_s']}s in all, {idle}s over {args.idle:g}s idle"
            )
        if "postgres_cpu_s" in r:
            print(f"  PostgreSQL CPU over the run: {r['postgres_cpu_s']}s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
