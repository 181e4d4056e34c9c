"""Several `hub serve` replicas on one PostgreSQL database sharing ten `hub sim` clusters
(issue 16; docs/replicas.md).

Real processes throughout: each replica is `hub serve` in its own home (the same master
key and database URL), the clusters are one `hub sim` server, PostgreSQL is the test
fixture's throwaway server, and the spoke side is read with kubectl.

Spoke-side evidence of "one writer per operation": every Application has a PreSync hook
Job created with ``generateName`` whose image names the commit; a second run of the same
operation would create a second Job with that image. The lease table is sampled from
the test process all along: no fencing token ever names two owners.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from clusters.sim import SimServer
from hub.apps import AppRecord, AppStore
from hub.home import load_keyring
from hub.leases import CLUSTER_PREFIX, LEADER, read_shards
from hub.store import Store
from hub.sync.history import SyncHistory
from tests.clusters.cli_support import CLEAN_ENV, Hub
from tests.conftest import run_kubectl
from tests.e2e.serve_support import free_port, wait_for
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(240)]

CLUSTERS = [f"c{i}" for i in range(10)]
NS = "shop"
LEASE_S = 3.0

APPSET = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: shop
spec:
  generators:
    - clusters: {{}}
  template:
    metadata:
      name: '{{{{name}}}}-shop'
    spec:
      project: default
      source: {{repoURL: '{repo}', targetRevision: main, path: shop}}
      destination: {{server: '{{{{server}}}}', namespace: shop}}
      syncPolicy:
        automated: {{prune: true, selfHeal: true}}
        syncOptions: [CreateNamespace=true]
"""

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: nginx:{tag}
"""

HOOK = """
apiVersion: batch/v1
kind: Job
metadata:
  generateName: migrate-
  annotations:
    argocd.argoproj.io/hook: PreSync
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: migrate:{tag}
"""


def shop(tag: str) -> dict[str, str]:
    return {
        "shop/deployment.yaml": DEPLOYMENT.format(tag=tag),
        "shop/hook.yaml": HOOK.format(tag=tag),
    }


class Replicas:
    """The fleet: an admin home that registered everything, and replica homes."""

    def __init__(self, root: Path, sim: SimServer, url: str) -> None:
        self.root = root
        self.sim = sim
        self.url = url
        self.repo = GitRepo(root / "repo")
        self.repo.write(
            {"apps/shop.yaml": APPSET.format(repo=self.repo.path), **shop("1")}, "shop 1"
        )
        admin = root / "admin"
        self.cli = Hub(admin)
        self.cli.ok("init", "--database", url)
        for name in CLUSTERS:
            self.cli.ok(
                "cluster", "add", name, "--kubeconfig", str(sim.kubeconfig_path), "--context", name
            )
        self.cli.ok("source", "add", "root", "--repo", str(self.repo.path), "--path", "apps")
        self.admin = admin
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.ports: dict[str, int] = {}
        self.store = Store.open(url)

    def start(self, name: str, git_poll: float = 2.0) -> None:
        home = self.root / name
        if not home.exists():
            home.mkdir(mode=0o700)
            for f in ("master.key", "database.url"):
                shutil.copy(self.admin / f, home / f)
                (home / f).chmod(0o600)
        env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
        port = self.ports.setdefault(name, free_port())
        with (self.root / f"{name}.log").open("a") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "hub", "--home", str(home), "-v", "serve",
                 "--port", str(port), "--git-poll", str(git_poll), "--resync", "2",
                 "--lease", str(LEASE_S), "--replica-id", name],
                stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
            )  # fmt: skip

    def stop(self, name: str) -> int:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait(timeout=30)
        self.store.close()

    # -- reading

    def owners(self) -> dict[str, tuple[str, int]]:
        """cluster -> (owner, token) of every unexpired cluster lease, one snapshot."""
        now, _, leases = read_shards(self.store)
        return {
            r.name[len(CLUSTER_PREFIX) :]: (r.owner, r.token)
            for r in leases
            if r.name.startswith(CLUSTER_PREFIX) and r.owner and r.expires_at >= now
        }

    def leader(self) -> str | None:
        now, _, leases = read_shards(self.store)
        return next(
            (r.owner for r in leases if r.name == LEADER and r.owner and r.expires_at >= now),
            None,
        )

    def apps(self) -> dict[str, AppRecord]:
        return {a.name: a for a in AppStore(self.store).list_apps()}

    def kubectl(self, cluster: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.sim.kubeconfig_path, *args, context=cluster)

    def image(self, cluster: str) -> str | None:
        out = self.kubectl(cluster, "get", "deployment", "web", "-n", NS, "-o", "json")
        if out.returncode != 0:
            return None
        return str(json.loads(out.stdout)["spec"]["template"]["spec"]["containers"][0]["image"])

    def hook_images(self, cluster: str) -> Counter[str]:
        """How many hook Jobs the cluster holds per image (one per operation run)."""
        out = self.kubectl(cluster, "get", "jobs", "-n", NS, "-o", "json")
        if out.returncode != 0:
            return Counter()
        return Counter(
            j["spec"]["template"]["spec"]["containers"][0]["image"]
            for j in json.loads(out.stdout)["items"]
        )

    def converged(self, tag: str, clusters: list[str] = CLUSTERS) -> bool:
        apps = self.apps()
        for c in clusters:
            app = apps.get(f"{c}-shop")
            if app is None or (app.sync_status, app.health_status) != ("Synced", "Healthy"):
                return False
            if self.image(c) != f"nginx:{tag}":
                return False
        return True


class LeaseSampler:
    """Samples the lease table in the background, all along the test, and records
    every cluster lease's (token, owner) pairs: ``violations`` lists each token seen
    with two owners or a token that went down. That is the mutual exclusion the hub
    promises: a replica writes only under its token (fenced in the store, deadline-bound
    on the spokes), so one owner per token is one writer at a time.

    How long a cluster goes without an unexpired owner is deliberately not asserted: a
    lease lapses whenever its holder cannot renew for ``lease - heartbeat`` (2 s here),
    e.g. while the machine is paused (a VM snapshot once did it mid-suite: every replica
    found its leases expired, stopped those workers and acquired them again under new
    tokens). That is the lease doing its job. That the hub never lets a healthy replica's
    renewal wait behind other work is tested without timing in tests/hub/test_leases.py
    (a writer stalled in its transaction, a full store-call limiter)."""

    def __init__(self, fleet: Replicas) -> None:
        self.fleet = fleet
        self.samples = 0
        self.owner_of: dict[tuple[str, int], str] = {}  # (cluster, token) -> owner
        self.token: dict[str, int] = {}  # cluster -> the last token seen
        self.violations: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        store = Store.open(self.fleet.url)
        try:
            while not self._stop.wait(0.2):
                _now, _replicas, leases = read_shards(store)
                self.samples += 1
                for row in leases:
                    if row.name.startswith(CLUSTER_PREFIX):
                        self._see(row.name[len(CLUSTER_PREFIX) :], row.token, row.owner)
        finally:
            store.close()

    def _see(self, cluster: str, token: int, owner: str | None) -> None:
        where = f"sample {self.samples}: {cluster}"
        if token < self.token.get(cluster, 0):
            self.violations.append(f"{where}: token {token} after {self.token[cluster]}")
        self.token[cluster] = max(token, self.token.get(cluster, 0))
        if owner is None:  # released (hand-off) or never held: the token keeps its owner
            return
        first = self.owner_of.setdefault((cluster, token), owner)
        if first != owner:
            self.violations.append(f"{where}: token {token} held by {first} and {owner}")

    def __enter__(self) -> LeaseSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def check_views(fleet: Replicas, owners: dict[str, tuple[str, int]]) -> None:
    """`hub shard list`, the replicas section of `hub status` and /metrics agree with the
    lease table."""
    doc = json.loads(fleet.cli.ok("shard", "list", "-o", "json").stdout)
    assert {c["cluster"]: c["owner"] for c in doc["clusters"]} == {
        c: o for c, (o, _) in owners.items()
    }
    assert doc["leader"] in ("r1", "r2", "r3")
    per = {r["id"]: len(r["clusters"]) for r in doc["replicas"] if r["live"]}
    assert sum(per.values()) == len(CLUSTERS) and set(per) == {"r1", "r2", "r3"}
    table = fleet.cli.ok("shard", "list").stdout
    assert f"{doc['leader']} *" in table and "EXPIRES IN" in table
    status = fleet.cli.ok("status", "--offline").stdout
    assert "replicas (hub shard list):" in status and "c9" in status
    leader = doc["leader"]
    with urllib.request.urlopen(f"http://127.0.0.1:{fleet.ports['r1']}/metrics") as r:
        metrics = r.read().decode()
    assert f'hub_replica_leader{{replica="{leader}"}} 1.0' in metrics
    held = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("hub_replica_clusters{")
    ]
    assert sum(held) == len(CLUSTERS)
    assert "hub_replicas 3.0" in metrics
    assert metrics.count("hub_cluster_lease_age_seconds{") == len(CLUSTERS)


@contextmanager
def make_fleet(tmp_path: Path, url: str, ready_delay: float) -> Iterator[Replicas]:
    with SimServer(
        clusters=CLUSTERS, ready_delay=ready_delay, kubeconfig_path=tmp_path / "sim.kubeconfig"
    ) as sim:
        f = Replicas(tmp_path, sim, url)
        try:
            yield f
        finally:
            f.close()


@pytest.fixture
def fleet(tmp_path: Path, postgres_url: str) -> Iterator[Replicas]:
    # Jobs and Pods take a second to finish: a sync is in flight long enough to be hit.
    with make_fleet(tmp_path, postgres_url, 1.0) as f:
        yield f


@pytest.fixture
def slow_fleet(tmp_path: Path, postgres_url: str) -> Iterator[Replicas]:
    # A hook Job runs 3 s: a replica stopped while it runs is stopped mid-operation.
    with make_fleet(tmp_path, postgres_url, 3.0) as f:
        yield f


def test_three_replicas_share_the_fleet_and_a_killed_one_is_taken_over(
    fleet: Replicas,
) -> None:
    for name in ("r1", "r2", "r3"):
        fleet.start(name)
    with LeaseSampler(fleet) as sampler:
        wait_for("every app Synced and Healthy", lambda: fleet.converged("1"), timeout=90)
        owners = fleet.owners()
        assert sorted(owners) == CLUSTERS
        assert set(o for o, _ in owners.values()) == {"r1", "r2", "r3"}  # all three share
        check_views(fleet, owners)
        # One operation per cluster so far, run by one replica: one hook Job each.
        for c in CLUSTERS:
            assert fleet.hook_images(c) == Counter({"migrate:1": 1}), c

        # A commit rolls out; the replica owning the most clusters dies mid-sync.
        victim = Counter(o for o, _ in owners.values()).most_common(1)[0][0]
        theirs = sorted(c for c, (o, _) in owners.items() if o == victim)
        fleet.repo.write(shop("2"), "shop 2")
        wait_for(
            f"a sync of {victim} in flight (its new hook Job created)",
            lambda: any(fleet.hook_images(c)["migrate:2"] for c in theirs),
            timeout=60,
        )
        fleet.procs[victim].send_signal(signal.SIGKILL)
        fleet.procs.pop(victim).wait(timeout=30)
        wait_for(
            f"the clusters of {victim} taken over",
            lambda: all(fleet.owners().get(c, (victim, 0))[0] not in (victim,) for c in theirs),
            timeout=60,
        )
        after = fleet.owners()
        for c in theirs:
            assert after[c][1] > owners[c][1]  # a new token: the take-over was an acquisition
        # The clusters of the survivors converge; the operations the victim left in flight
        # are recorded (by the new owner) as interrupted, not lost and not run again.
        history = SyncHistory(fleet.store, lambda: load_keyring(fleet.admin))
        wait_for("the operations left in flight recorded", lambda: not history.interrupted())
        cut = [
            c
            for c in theirs
            if any("interrupted" in e.message for e in history.entries(f"{c}-shop"))
        ]
        assert cut  # it was killed mid-sync
        survivors = [c for c in CLUSTERS if c not in cut]
        wait_for("the other clusters at the new commit", lambda: fleet.converged("2", survivors))
        time.sleep(3.0)  # a resync of the new owners: nothing runs the cut hooks again
        hooks_cut = {c: fleet.hook_images(c)["migrate:2"] for c in cut}
        for c in cut:  # the hook of an operation cut short ran at most once (0: cut before it)
            assert hooks_cut[c] <= 1, c
        for c in survivors:
            assert fleet.hook_images(c) == Counter({"migrate:1": 1, "migrate:2": 1}), c

        # A sync asked of any replica reaches the owner (forwarded through the store).
        for c in cut:
            asker = next(r for r in fleet.procs if after[c][0] != r)  # not the owner
            token = (fleet.root / asker / "api-token").read_text().strip()
            out = fleet.cli(
                "app",
                "sync",
                f"{c}-shop",
                "--server",
                f"http://127.0.0.1:{fleet.ports[asker]}",
                env={"HUB_API_TOKEN": token},
            )
            assert out.exit_code == 0, out.output
            assert f"forwarded to the owner of {c}" in fleet.log(asker)
        wait_for("every app at the new commit", lambda: fleet.converged("2"), timeout=90)
        for c in cut:  # the sync asked for ran its hook once
            assert fleet.hook_images(c)["migrate:2"] == hooks_cut[c] + 1, c
    assert sampler.samples > 20
    # Each take-over was seen as a new token under a new owner, never as a second owner.
    assert {c for c, _ in sampler.owner_of} == set(CLUSTERS)
    assert all(sampler.token[c] > owners[c][1] for c in theirs)
    assert not sampler.violations, sampler.violations[:5]
    assert fleet.leader() in fleet.procs


def test_a_replica_paused_past_its_lease_cannot_write_when_it_resumes(
    slow_fleet: Replicas,
) -> None:
    fleet = slow_fleet
    for name in ("r1", "r2"):
        fleet.start(name, git_poll=600)  # commits arrive by webhook only
    wait_for("every app Synced and Healthy", lambda: fleet.converged("1"), timeout=90)
    owners = fleet.owners()
    theirs = sorted(c for c, (o, _) in owners.items() if o == "r1")
    assert theirs
    fleet.repo.write(shop("2"), "shop 2")
    # The push webhook reaches the replica that is not the leader: it forwards it.
    follower = next(r for r in ("r1", "r2") if r != fleet.leader())
    body = json.dumps({"ref": "refs/heads/main", "repository": {"clone_url": str(fleet.repo.path)}})
    request = urllib.request.Request(
        f"http://127.0.0.1:{fleet.ports[follower]}/api/webhook/git",
        data=body.encode(),
        headers={"X-GitHub-Event": "push", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["matched"] == 1
    wait_for(
        "a sync of r1 in flight (its new hook Job created)",
        lambda: any(fleet.hook_images(c)["migrate:2"] for c in theirs),
        timeout=60,
    )
    fleet.procs["r1"].send_signal(signal.SIGSTOP)
    try:
        time.sleep(0.5)  # a request already sent lands
        # Stopped mid-operation: the hook runs, the Deployment is not applied yet.
        paused = [
            c for c in theirs if fleet.hook_images(c)["migrate:2"] and fleet.image(c) == "nginx:1"
        ]
        assert paused
        # Past its lease: r2 takes r1's clusters (new tokens) and records the operations
        # r1 had in flight as interrupted.
        wait_for(
            "r1's clusters taken over by r2",
            lambda: all(fleet.owners().get(c, ("r1", 0))[0] == "r2" for c in theirs),
            timeout=60,
        )
        history = SyncHistory(fleet.store, lambda: load_keyring(fleet.admin))
        wait_for("the operations r1 left in flight recorded", lambda: not history.interrupted())
    finally:
        fleet.procs["r1"].send_signal(signal.SIGCONT)
    # r1 resumes where it stopped: its engine would apply nginx:2 once the hook it waits
    # for completes. Its lease is gone, so it writes neither to the spokes nor the store.
    time.sleep(2.0)  # the hooks completed while r1 was stopped: it went on at once
    apps = fleet.apps()
    for c in paused:
        assert fleet.image(c) == "nginx:1", f"{c}: the paused replica applied after resuming"
        state = apps[f"{c}-shop"].operation_state or {}
        assert "interrupted" in str(state.get("message")), state  # r2's record stands
        assert fleet.hook_images(c)["migrate:2"] == 1
    log = fleet.log("r1")
    lines = [line for line in log.splitlines() if "lease" in line or "refused" in line]
    # A lease lost mid-sync is expected with replicas: a warning line, not a traceback.
    assert ": stopping its worker" in log, lines
    assert "failed unexpectedly" not in log and "Traceback" not in log, lines
    assert fleet.procs["r1"].poll() is None  # still running, a replica like the others


def test_scaling_three_to_five_to_two_while_a_commit_rolls_out_converges(
    fleet: Replicas,
) -> None:
    for name in ("r1", "r2", "r3"):
        fleet.start(name)
    wait_for("every app Synced and Healthy", lambda: fleet.converged("1"), timeout=90)
    fleet.repo.write(shop("2"), "shop 2")
    fleet.start("r4")
    fleet.start("r5")
    wait_for(
        "the new replicas owning clusters",
        lambda: {"r4", "r5"} <= {o for o, _ in fleet.owners().values()},
        timeout=60,
    )
    for name in ("r1", "r4", "r5"):  # graceful: each hands its clusters over
        assert fleet.stop(name) == 0, fleet.log(name)[-3000:]
    # SIGTERM released the leases and removed the replica rows (no waiting for expiry).
    doc = json.loads(fleet.cli.ok("shard", "list", "-o", "json").stdout)
    assert {r["id"] for r in doc["replicas"]} == {"r2", "r3"}
    wait_for("every app at the new commit", lambda: fleet.converged("2"), timeout=90)
    assert {o for o, _ in fleet.owners().values()} == {"r2", "r3"}
    for c in CLUSTERS:
        # One operation per commit whoever ran it: hand-offs let syncs finish.
        assert fleet.hook_images(c) == Counter({"migrate:1": 1, "migrate:2": 1}), c
