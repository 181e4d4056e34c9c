"""`hub serve` watches on its event loop: adding clusters (each watching its kinds) adds no
thread per watch. Threads of the hub process blocked on I/O are counted in /proc/PID/task
before and after adding clusters, a relative comparison; nothing is timed."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusters.sim import SimServer
from tests.e2e.serve_support import (
    CONFIGMAP,
    DEPLOYMENT,
    Fleet,
    guestbook_appset,
    start_hub,
    stop_hub,
    wait_for,
)
from tests.sync.e2e_helpers import GitRepo

pytestmark = [
    pytest.mark.sim_only("needs simulated clusters"),
    pytest.mark.timeout(300),
    pytest.mark.skipif(os.uname().machine not in ("x86_64", "aarch64"), reason="futex number"),
]

FIRST = ["c0"]
ADDED = [f"c{i}" for i in range(1, 9)]
KINDS_PER_CLUSTER = 3  # Deployments, ConfigMaps, Namespaces (CreateNamespace)


FUTEX = {"x86_64": 202, "aarch64": 98}.get(os.uname().machine)


def waiting_threads(pid: int) -> int:
    """Threads of ``pid`` blocked anywhere but on a lock or condition (a futex): a thread
    reading a watch stream waits in poll/read; an idle pool thread waits on a futex. Pool
    threads come and go with the load; a thread per watch would be counted here."""
    count = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            syscall = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()[0]
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
        if syscall != str(FUTEX):
            count += 1
    return count


def most_waiting_threads(pid: int, samples: int = 20) -> int:
    seen = []
    for _ in range(samples):
        seen.append(waiting_threads(pid))
        time.sleep(0.25)
    return max(seen)


@pytest.fixture(params=["uvloop", "asyncio"])  # HUB_EVENT_LOOP: neither loop adds threads
def fleet(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    root = tmp_path
    with SimServer(
        clusters=FIRST + ADDED, ready_delay=0.1, kubeconfig_path=root / "sim.kubeconfig"
    ) as sim:
        repo = GitRepo(root / "repo")
        repo.write(
            {
                "appsets/guestbook.yaml": guestbook_appset(repo.path),
                "guestbook/deployment.yaml": DEPLOYMENT.format(image="nginx:1.25"),
                "guestbook/configmap.yaml": CONFIGMAP,
            },
            "guestbook everywhere",
        )
        f = Fleet(root / "home", sim, repo, root / "hub.log")
        f.cli.ok("init")
        f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "appsets")
        for name in FIRST:
            f.cli.ok(
                "cluster", "add", name, "--kubeconfig", str(sim.kubeconfig_path), "--context", name
            )  # fmt: skip
        start_hub(
            f, "--git-poll", "5", "--resync", "300", "--port", "0",
            env={"HUB_EVENT_LOOP": request.param},
        )  # fmt: skip
        try:
            wait_for("the hub's API", lambda: "HTTP API on" in f.hub_log())
            assert f"(event loop: {request.param})" in f.hub_log()
            yield f
        finally:
            code = stop_hub(f)
        assert code == 0, f.hub_log()[-4000:]


def test_more_clusters_and_kinds_add_no_thread_per_watch(fleet: Fleet) -> None:
    assert fleet.proc is not None
    pid = fleet.proc.pid
    wait_for("the first cluster Synced and Healthy", lambda: fleet.all_good(FIRST, "nginx:1.25"))
    before = most_waiting_threads(pid)
    for name in ADDED:
        fleet.cli.ok(
            "cluster", "add", name, "--kubeconfig", str(fleet.sim.kubeconfig_path),
            "--context", name,
        )  # fmt: skip
    wait_for(
        "every cluster Synced and Healthy",
        lambda: fleet.all_good(FIRST + ADDED, "nginx:1.25"),
        timeout=180,
    )
    after = most_waiting_threads(pid)
    watches_added = len(ADDED) * KINDS_PER_CLUSTER
    # A thread per (cluster, kind) would add 24 threads blocked on sockets; watches on the
    # event loop add none (the loop's own thread waits in epoll for all of them).
    assert after - before < len(ADDED), (before, after, watches_added)
