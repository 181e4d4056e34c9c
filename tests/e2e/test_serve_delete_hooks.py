"""PreDelete and PostDelete hooks when an Application is deleted with cascade (here: its
cluster leaves the set's selector), end to end: real Git, a `hub sim` cluster registered with
the real CLI, `hub serve` as a subprocess, the official client watching the cluster.

Order is read from resourceVersions, which a cluster hands out from one counter: the event
in which a Job is Complete has a lower version than the one in which the Deployment starts
going exactly when the Job finished first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clusters.sim import SimServer
from tests.e2e.serve_support import Fleet, start_hub, stop_hub, wait_for
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(240)]

NS = "default"  # the app's namespace outlives it: its PostDelete hook runs there

APPSET = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: hooks
spec:
  syncPolicy:
    applicationsSync: sync  # may become empty: its one cluster leaves the selector
  generators:
    - clusters:
        selector:
          matchLabels:
            env: prod
  template:
    metadata:
      name: '{{{{name}}}}-hooks'
      finalizers:
        - resources-finalizer.argocd.argoproj.io
    spec:
      project: default
      source: {{repoURL: {repo}, targetRevision: main, path: app}}
      destination: {{server: '{{{{server}}}}', namespace: default}}
      syncPolicy:
        automated: {{prune: true, selfHeal: true}}
"""

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.25
"""

HOOK = """
apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
  annotations:
    argocd.argoproj.io/hook: {hook}
{policy}spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: {image}
"""


def hook(name: str, kind: str, *, image: str = "busybox:1.36", policy: str = "") -> str:
    line = f"    argocd.argoproj.io/hook-delete-policy: {policy}\n" if policy else ""
    return HOOK.format(name=name, hook=kind, policy=line, image=image)


def _fleet(root: Path, sim: SimServer, hooks: dict[str, str]) -> Fleet:
    repo = GitRepo(root / "repo")
    files = {
        "sets/hooks.yaml": APPSET.format(repo=repo.path),
        "app/deployment.yaml": DEPLOYMENT,
        **{f"app/{name}.yaml": text for name, text in hooks.items()},
    }
    repo.write(files, "an app with delete hooks")
    f = Fleet(root / "home", sim, repo, root / "hub.log")
    f.cli.ok("init")
    f.cli.ok(
        "cluster", "add", "one", "--kubeconfig", str(sim.kubeconfig_path),
        "--context", "one", "--label", "env=prod",
    )  # fmt: skip
    f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "sets")
    return f


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimServer]:
    with SimServer(clusters=["one"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as s:
        yield s


class Recorder:
    """Every watch event of Jobs and Deployments in ``NS`` from now on, in threads:
    (resourceVersion, kind, event type, name, object)."""

    def __init__(self, sim: SimServer) -> None:
        from kubernetes import client, config

        self.api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(sim.kubeconfig_path), context="one"
        )
        self.events: list[tuple[int, str, str, str, dict[str, Any]]] = []
        self.stop = threading.Event()
        batch, apps = client.BatchV1Api(self.api), client.AppsV1Api(self.api)
        self.threads = [
            threading.Thread(target=self._run, args=("Job", batch.list_namespaced_job)),
            threading.Thread(
                target=self._run, args=("Deployment", apps.list_namespaced_deployment)
            ),
        ]
        self.lock = threading.Lock()
        self.started = threading.Barrier(len(self.threads) + 1)
        for t in self.threads:
            t.start()
        self.started.wait(timeout=30)

    def _run(self, kind: str, lister: Callable[..., Any]) -> None:
        from kubernetes import watch

        rv = str(lister(NS).metadata.resource_version)
        self.started.wait(timeout=30)
        while not self.stop.is_set():
            w: Any = watch.Watch()  # type: ignore[no-untyped-call]
            for ev in w.stream(lister, NS, resource_version=rv, timeout_seconds=2):
                obj = self.api.sanitize_for_serialization(ev["object"])
                rv = obj["metadata"]["resourceVersion"]
                with self.lock:
                    self.events.append((int(rv), kind, ev["type"], obj["metadata"]["name"], obj))

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def first(self, name: str, what: Callable[[str, dict[str, Any]], bool]) -> int | None:
        """The resourceVersion of the first event of ``name`` matching ``what``."""
        with self.lock:
            found = [rv for rv, _, typ, n, obj in self.events if n == name and what(typ, obj)]
        return min(found) if found else None


def complete(_: str, obj: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Complete" and c.get("status") == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


def going(typ: str, obj: dict[str, Any]) -> bool:
    return typ == "DELETED" or bool(obj["metadata"].get("deletionTimestamp"))


def deleted(typ: str, _: dict[str, Any]) -> bool:
    return typ == "DELETED"


def added(typ: str, _: dict[str, Any]) -> bool:
    return typ == "ADDED"


def _exists(f: Fleet, *what: str) -> bool:
    return f.kubectl("one", "get", *what, "-n", NS).returncode == 0


def test_predelete_runs_before_the_resources_go_and_postdelete_after_then_is_cleaned_up(
    tmp_path: Path, sim: SimServer
) -> None:
    f = _fleet(
        tmp_path,
        sim,
        {
            "pre.yaml": hook("pre-check", "PreDelete"),
            "post.yaml": hook("goodbye", "PostDelete", policy="HookSucceeded"),
        },
    )
    start_hub(f, "--git-poll", "1", "--port", "0")
    try:
        wait_for(
            "the app synced and healthy",
            lambda: (
                (a := f.apps().get("one-hooks")) is not None
                and (a.sync_status, a.health_status) == ("Synced", "Healthy")
            ),
            timeout=90,
        )
        # A sync never runs delete hooks.
        assert not _exists(f, "job", "pre-check") and not _exists(f, "job", "goodbye")
        rec = Recorder(sim)
        try:
            f.cli.ok("cluster", "label", "one", "env=staging")
            wait_for("the app removed", lambda: not f.apps(), timeout=120)
        finally:
            rec.close()

        pre_done = rec.first("pre-check", complete)
        web_going = rec.first("web", going)
        web_gone = rec.first("web", deleted)
        post_added = rec.first("goodbye", added)
        post_done = rec.first("goodbye", complete)
        post_deleted = rec.first("goodbye", deleted)
        assert None not in (pre_done, web_going, web_gone, post_added, post_done, post_deleted), (
            rec.events,
            f.hub_log()[-3000:],
        )
        assert pre_done < web_going  # type: ignore[operator]
        assert web_gone < post_added < post_done < post_deleted  # type: ignore[operator]
        # PreDelete hooks go with the app; HookSucceeded removed the PostDelete one.
        assert not _exists(f, "job", "pre-check") and not _exists(f, "job", "goodbye")
        assert not _exists(f, "deployment", "web")
        assert "PreDelete hook batch/Job default/pre-check succeeded" in f.hub_log()
    finally:
        stop_hub(f)


def test_a_failing_predelete_hook_keeps_the_app_and_its_resources_with_the_reason(
    tmp_path: Path, sim: SimServer
) -> None:
    f = _fleet(
        tmp_path,
        sim,
        {
            "pre.yaml": hook("pre-check", "PreDelete", image="busybox:fail"),
            "post.yaml": hook("goodbye", "PostDelete"),
        },
    )
    f.cli.ok("serve", "--once", "--timeout", "30")
    assert _exists(f, "deployment", "web")
    f.cli.ok("cluster", "label", "one", "env=staging")

    # --once has rendered nothing: the hooks come from the last sync's sealed manifests.
    run = f.cli("serve", "--once", "--timeout", "30")

    assert run.exit_code == 1, run.output
    assert "deletion not finished" in run.output
    app = f.apps()["one-hooks"]
    assert app.deleting
    (condition,) = app.conditions
    assert condition.type == "DeletionError"
    assert "PreDelete hook batch/Job default/pre-check failed (Degraded)" in condition.message
    assert "backoff limit" in condition.message
    assert _exists(f, "deployment", "web")  # nothing was deleted
    assert not _exists(f, "job", "goodbye")  # and no PostDelete hook ran
    # The failed hook is deleted (as Argo CD does), so that the next attempt runs it again.
    wait_for("the failed hook deleted", lambda: not _exists(f, "job", "pre-check"))


def test_cascade_rm_without_a_hub_runs_the_hooks_of_the_last_sync_and_keeps_postdelete(
    tmp_path: Path, sim: SimServer
) -> None:
    f = _fleet(
        tmp_path,
        sim,
        {"pre.yaml": hook("pre-check", "PreDelete"), "post.yaml": hook("goodbye", "PostDelete")},
    )
    f.cli.ok("serve", "--once", "--timeout", "30")
    rec = Recorder(sim)
    try:
        run = f.cli("cluster", "rm", "one", "--cascade", "--yes")
    finally:
        rec.close()

    assert run.exit_code == 0, run.output
    pre_done, web_going = rec.first("pre-check", complete), rec.first("web", going)
    web_gone, post_added = rec.first("web", deleted), rec.first("goodbye", added)
    assert None not in (pre_done, web_going, web_gone, post_added), rec.events
    assert pre_done < web_going and web_gone < post_added  # type: ignore[operator]
    # created once: the command's later passes run no hooks
    assert len([e for e in rec.events if e[3] == "pre-check" and e[2] == "ADDED"]) == 1
    # No delete policy: Argo's default (BeforeHookCreation) never matches a deletion, so the
    # PostDelete Job stays, finished, and the command says it was kept on purpose.
    assert _exists(f, "job", "goodbye") and not _exists(f, "job", "pre-check")
    assert not _exists(f, "deployment", "web")
    assert "PostDelete hook kept by its delete policy" in run.output


def test_a_failing_postdelete_hook_keeps_the_app_record_with_the_reason(
    tmp_path: Path, sim: SimServer
) -> None:
    f = _fleet(tmp_path, sim, {"post.yaml": hook("goodbye", "PostDelete", image="busybox:fail")})
    f.cli.ok("serve", "--once", "--timeout", "30")
    f.cli.ok("cluster", "label", "one", "env=staging")

    run = f.cli("serve", "--once", "--timeout", "30")

    # As in Argo CD 3: the resources are gone, the record stays until PostDelete succeeds.
    assert run.exit_code == 1, run.output
    assert not _exists(f, "deployment", "web")
    app = f.apps()["one-hooks"]
    assert app.deleting
    (condition,) = app.conditions
    assert condition.type == "DeletionError"
    assert "PostDelete hook batch/Job default/goodbye failed (Degraded)" in condition.message
    wait_for("the failed hook deleted", lambda: not _exists(f, "job", "goodbye"))
