"""`hub serve` end to end: a push webhook syncs without waiting for the poll; a hub killed
mid-sync records the interrupted operation on restart and runs no hook a second time."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusters.sim import SimServer
from hub.home import load_keyring, open_store
from hub.sync.history import SyncHistory
from tests.e2e.serve_support import (
    CONFIGMAP,
    DEPLOYMENT,
    NS,
    Fleet,
    hub_url,
    start_hub,
    stop_hub,
    wait_for,
)
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(240)]

CLUSTER = "solo"

APP = """
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: shop
spec:
  project: default
  source:
    repoURL: {repo}
    targetRevision: main
    path: guestbook
  destination:
    name: solo
    namespace: guestbook
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
    syncOptions:
      - CreateNamespace=true
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
          image: busybox
"""


def make_fleet(root: Path, sim: SimServer, files: dict[str, str]) -> Fleet:
    repo = GitRepo(root / "repo")
    repo.write({"apps/shop.yaml": APP.format(repo=repo.path), **files}, "shop")
    f = Fleet(root / "home", sim, repo, root / "hub.log")
    f.cli.ok("init")
    f.cli.ok(
        "cluster", "add", CLUSTER, "--kubeconfig", str(sim.kubeconfig_path), "--context", CLUSTER
    )
    f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "apps")
    return f


def shop_ok(f: Fleet, image: str) -> bool:
    app = f.apps().get("shop")
    return (
        app is not None
        and (app.sync_status, app.health_status) == ("Synced", "Healthy")
        and f.image(CLUSTER) == image
    )


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with SimServer(
        clusters=[CLUSTER], ready_delay=0.2, kubeconfig_path=tmp_path / "sim.kubeconfig"
    ) as sim:
        yield make_fleet(
            tmp_path,
            sim,
            {
                "guestbook/deployment.yaml": DEPLOYMENT.format(image="nginx:1.25"),
                "guestbook/configmap.yaml": CONFIGMAP,
            },
        )


def test_a_push_webhook_syncs_without_waiting_for_the_poll(fleet: Fleet) -> None:
    # Polls are 10 minutes apart: only the webhook can bring the new commit in time.
    start_hub(fleet, "--git-poll", "600", "--resync", "600", "--port", "0")
    try:
        url = hub_url(fleet)
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        wait_for("the first sync", lambda: shop_ok(fleet, "nginx:1.25"), timeout=60)
        fleet.commit_image("nginx:1.26")
        body = json.dumps(
            {"ref": "refs/heads/main", "repository": {"clone_url": str(fleet.repo.path)}}
        )
        request = urllib.request.Request(
            f"{url}/api/webhook/git",
            data=body.encode(),
            headers={"X-GitHub-Event": "push", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["matched"] == 1
        wait_for("the pushed image", lambda: shop_ok(fleet, "nginx:1.26"), timeout=60)
    finally:
        assert stop_hub(fleet) == 0, fleet.hub_log()[-3000:]
    assert not (fleet.home / "serve.json").exists()  # the CLI falls back to the store


def reconciles(url: str) -> int:
    """How many times the hub compared an app with the cluster (its /metrics)."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(f'hub_reconcile_duration_seconds_count{{cluster="{CLUSTER}"}}'):
            return int(float(line.split()[-1]))
    return 0


def hook_jobs(f: Fleet) -> list[str]:
    out = f.kubectl(CLUSTER, "get", "jobs", "-n", NS, "-o", "json")
    if out.returncode != 0:
        return []
    return [j["metadata"]["name"] for j in json.loads(out.stdout)["items"]]


def test_a_hub_killed_mid_sync_records_the_interruption_and_runs_no_hook_twice(
    tmp_path: Path,
) -> None:
    # Pods take 3 s to finish here, so the PreSync hook is still running when the hub dies.
    with SimServer(
        clusters=[CLUSTER], ready_delay=3.0, kubeconfig_path=tmp_path / "sim.kubeconfig"
    ) as sim:
        f = make_fleet(
            tmp_path,
            sim,
            {
                "guestbook/deployment.yaml": DEPLOYMENT.format(image="nginx:1.25"),
                "guestbook/hook.yaml": HOOK,
            },
        )
        start_hub(f, "--git-poll", "600", "--resync", "1", "--port", "0")
        try:
            wait_for("the hook Job created", lambda: hook_jobs(f), timeout=60)
        finally:
            assert f.proc is not None
            f.proc.send_signal(signal.SIGKILL)
            f.proc.wait(timeout=30)
        first = hook_jobs(f)
        assert len(first) == 1
        start_hub(f, "--git-poll", "600", "--resync", "1", "--port", "0")
        try:
            url = hub_url(f)
            store = open_store(f.home)
            try:
                history = SyncHistory(store, lambda: load_keyring(f.home))
                entry = wait_for(
                    "the interrupted operation in the history",
                    lambda: [e for e in history.entries("shop") if "interrupted" in e.message],
                )[0]
                assert entry.phase.value == "Error"
                assert not history.interrupted()
            finally:
                store.close()
            # Several resyncs later the app has been compared again, and still one hook Job.
            first_count = wait_for("a first compare", lambda: reconciles(url), timeout=60)
            wait_for("more compares", lambda: reconciles(url) >= first_count + 3, timeout=60)
            assert hook_jobs(f) == first
            assert f.apps()["shop"].operation_state["phase"] == "Error"  # type: ignore[index]
        finally:
            assert stop_hub(f) == 0, f.hub_log()[-3000:]


def test_sigterm_mid_sync_lets_the_operation_end_and_records_it(tmp_path: Path) -> None:
    with SimServer(
        clusters=[CLUSTER], ready_delay=2.0, kubeconfig_path=tmp_path / "sim.kubeconfig"
    ) as sim:
        f = make_fleet(
            tmp_path,
            sim,
            {
                "guestbook/deployment.yaml": DEPLOYMENT.format(image="nginx:1.25"),
                "guestbook/hook.yaml": HOOK,
            },
        )
        start_hub(f, "--git-poll", "600", "--resync", "600", "--port", "0")
        wait_for("the hook Job created (sync in flight)", lambda: hook_jobs(f), timeout=60)
        code = stop_hub(f)
        assert code == 0, f.hub_log()[-3000:]
        store = open_store(f.home)
        try:
            history = SyncHistory(store, lambda: load_keyring(f.home))
            assert not history.interrupted()  # nothing left in flight for a restart to find
            entries = history.entries("shop")
            assert entries and entries[-1].phase.value in ("Succeeded", "Failed")
        finally:
            store.close()
        state = f.apps()["shop"].operation_state
        assert state is not None and state["phase"] in ("Succeeded", "Failed")
