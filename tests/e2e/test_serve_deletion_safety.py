"""Deleting while the hub works: `hub cluster rm --cascade` beside a running `hub serve`,
hook finalizers left by a SIGKILL, and cascade deletions in `hub serve --once`.

Real Git, `hub sim` clusters registered with the real CLI, the hub as a subprocess where
it runs for long, kubectl to look at the clusters. The long-running hook is a PreSync Job
created suspended: it never finishes, so its sync stays in flight (and its Job keeps our
`gitops-hub/hook-finalizer`) for as long as a test needs.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusters.sim import SimServer
from hub.sync.resources import HOOK_FINALIZER
from tests.clusters.cli_support import Run
from tests.e2e.serve_support import Fleet, start_hub, stop_hub, wait_for
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(240)]

NS = "hooked"

APPSET = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: hooked
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
      name: '{{{{name}}}}-hooked'
      finalizers:
        - resources-finalizer.argocd.argoproj.io
    spec:
      project: default
      source: {{repoURL: {repo}, targetRevision: main, path: app}}
      destination: {{server: '{{{{server}}}}', namespace: hooked}}
      syncPolicy:
        automated: {{prune: true, selfHeal: true}}
"""

NAMESPACE = """
apiVersion: v1
kind: Namespace
metadata:
  name: hooked
"""

CONFIGMAP = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: hooked
data:
  greeting: hello
"""

# Never finishes: the sync waits in PreSync with the Job holding our finalizer.
SLOW_HOOK = """
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  namespace: hooked
  annotations:
    argocd.argoproj.io/hook: PreSync
    argocd.argoproj.io/sync-wave: "1"
spec:
  suspend: true
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: busybox:1.36
"""


def _fleet(root: Path, sim: SimServer, *, hook: bool) -> Fleet:
    repo = GitRepo(root / "repo")
    files = {
        "sets/hooked.yaml": APPSET.format(repo=repo.path),
        "app/namespace.yaml": NAMESPACE,
        "app/configmap.yaml": CONFIGMAP,
    }
    if hook:
        files["app/hook.yaml"] = SLOW_HOOK
    repo.write(files, "an app")
    f = Fleet(root / "home", sim, repo, root / "hub.log")
    f.cli.ok("init")
    f.cli.ok(
        "cluster", "add", "one", "--kubeconfig", str(sim.kubeconfig_path),
        "--context", "one", "--label", "env=prod",
    )  # fmt: skip
    f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "sets")
    return f


@pytest.fixture
def hooked(tmp_path: Path) -> Iterator[Fleet]:
    """One cluster whose app's sync hangs on a PreSync hook."""
    with SimServer(clusters=["one"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        f = _fleet(tmp_path, sim, hook=True)
        try:
            yield f
        finally:
            if f.proc is not None and f.proc.poll() is None:
                f.proc.kill()
                f.proc.wait(timeout=30)


def _hook_finalizers(f: Fleet) -> list[str] | None:
    """The finalizers of the hook Job, None when it does not exist."""
    out = f.kubectl("one", "get", "job", "migrate", "-n", NS, "-o", "json")
    if out.returncode != 0:
        return None
    return list(json.loads(out.stdout)["metadata"].get("finalizers") or [])


def _gone(f: Fleet, *what: str) -> bool:
    return f.kubectl("one", "get", *what).returncode != 0


def _hook_running(f: Fleet) -> bool:
    return HOOK_FINALIZER in (_hook_finalizers(f) or [])


def _kill(f: Fleet) -> None:
    assert f.proc is not None
    f.proc.send_signal(signal.SIGKILL)
    f.proc.wait(timeout=30)
    f.proc = None


def test_cascade_rm_beside_a_running_hub_fences_cancels_the_sync_and_deletes_everything(
    hooked: Fleet,
) -> None:
    f = hooked
    start_hub(f, "--git-poll", "1", "--port", "0")
    wait_for("the PreSync hook running", lambda: _hook_running(f), timeout=90)
    assert f.apps()["one-hooked"].operation_state["phase"] == "Running"

    run = f.cli("cluster", "rm", "one", "--cascade", "--yes")

    assert run.exit_code == 0, run.output + f.hub_log()[-3000:]
    assert "every resource the hub managed on one was deleted (by the running hub)" in run.stdout
    assert "cluster one removed" in run.stdout
    assert "left running" not in run.output  # one story, not two
    assert f.cli.names() == []
    assert f.apps() == {}
    for what in (("namespace", NS), ("job", "migrate", "-n", NS), ("cm", "settings", "-n", NS)):
        assert _gone(f, *what), what
    log = f.hub_log()
    assert "cluster one: fenced" in log
    assert "cluster one left the registry" in wait_for(
        "the worker stopped", lambda: "left the registry" in f.hub_log() and f.hub_log()
    )
    # The sync in flight was cancelled through its token (recorded), not left running.
    assert "terminated" in log
    assert stop_hub(f) == 0


def test_cascade_rm_beside_a_self_healing_hub_leaves_nothing_applied_again(
    tmp_path: Path,
) -> None:
    # The cascade deletes; a hub with selfHeal that has not seen the deletion yet would
    # put everything back. Fenced first, the hub itself deletes once its syncs stop.
    with SimServer(clusters=["one"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        f = _fleet(tmp_path, sim, hook=False)
        f.repo.write({"app/kept.yaml": KEPT}, "a resource to keep")
        start_hub(f, "--git-poll", "1", "--port", "0")
        try:
            wait_for(
                "the app Synced and Healthy",
                lambda: (
                    (a := f.apps().get("one-hooked")) is not None
                    and (a.sync_status, a.health_status) == ("Synced", "Healthy")
                ),
                timeout=90,
            )
            run = f.cli("cluster", "rm", "one", "--cascade", "--yes")
            assert run.exit_code == 0, run.output
            assert "was deleted (by the running hub), except 1 kept by Delete=false" in run.stdout
            assert "/ConfigMap default/kept (Delete=false)" in run.stdout
            assert "left running" not in run.output
            wait_for("the worker stopped", lambda: "left the registry" in f.hub_log())
            assert _gone(f, "cm", "settings", "-n", NS) and _gone(f, "namespace", NS)
            assert not _gone(f, "cm", "kept", "-n", "default")
            assert "self-heal sync of" not in f.hub_log()
        finally:
            code = stop_hub(f)
        assert code == 0


def test_a_hook_finalizer_left_by_sigkill_is_freed_when_the_hub_starts_again(
    hooked: Fleet,
) -> None:
    f = hooked
    start_hub(f, "--git-poll", "1", "--port", "0")
    wait_for("the PreSync hook running", lambda: _hook_running(f), timeout=90)
    _kill(f)
    assert _hook_running(f)  # nobody left to take it off

    start_hub(f, "--git-poll", "1", "--port", "0")
    wait_for("the finalizer freed at start", lambda: _hook_finalizers(f) == [], timeout=60)
    app = wait_for(
        "the interrupted operation recorded",
        lambda: (a := f.apps()["one-hooked"]).operation_state["phase"] == "Error" and a,
    )
    assert "interrupted" in app.operation_state["message"]
    # And the cascade deletion of that app (its cluster leaves the selector) completes.
    f.cli.ok("cluster", "label", "one", "env=gone")
    wait_for("the app deleted", lambda: "one-hooked" not in f.apps(), timeout=90)
    assert _gone(f, "namespace", NS)
    assert stop_hub(f) == 0


def test_cascade_rm_without_a_hub_frees_a_hook_finalizer_left_by_sigkill(hooked: Fleet) -> None:
    f = hooked
    start_hub(f, "--git-poll", "1", "--port", "0")
    wait_for("the PreSync hook running", lambda: _hook_running(f), timeout=90)
    _kill(f)
    assert _hook_running(f)

    run = f.cli("cluster", "rm", "one", "--cascade", "--yes")

    assert run.exit_code == 0, run.output
    assert "every resource the hub managed on one was deleted (by this command)" in run.stdout
    assert "left running" not in run.output
    assert _gone(f, "namespace", NS) and _gone(f, "job", "migrate", "-n", NS)
    assert f.cli.names() == [] and f.apps() == {}


def test_serve_once_runs_the_pending_cascade_deletion_of_a_cluster_leaving_the_selector(
    tmp_path: Path,
) -> None:
    with SimServer(clusters=["one"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        f = _fleet(tmp_path, sim, hook=False)
        f.cli.ok("serve", "--once", "--timeout", "30")
        assert not _gone(f, "cm", "settings", "-n", NS)

        f.cli.ok("cluster", "label", "one", "env=staging")
        run = f.cli("serve", "--once", "--timeout", "30")

        assert run.exit_code == 0, run.output
        assert f.apps() == {}
        assert _gone(f, "cm", "settings", "-n", NS) and _gone(f, "namespace", NS)
        assert f.cli.names() == ["one"]  # only the app went, not the cluster


KEPT = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: kept
  namespace: default  # not in the app's namespace, which goes with everything in it
  annotations:
    argocd.argoproj.io/sync-options: Delete=false
"""

CONFIRM = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: asks
  namespace: default
  annotations:
    argocd.argoproj.io/sync-options: Delete=confirm
"""


def test_delete_false_is_kept_without_blocking_and_delete_confirm_says_what_to_do(
    tmp_path: Path,
) -> None:
    with SimServer(clusters=["one"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        f = _fleet(tmp_path, sim, hook=False)
        f.repo.write({"app/kept.yaml": KEPT, "app/asks.yaml": CONFIRM}, "delete options")
        f.cli.ok("serve", "--once", "--timeout", "30")
        f.cli.ok("cluster", "label", "one", "env=staging")

        run = f.cli("serve", "--once", "--timeout", "30")

        # Delete=confirm cannot be confirmed: the deletion stops there and says how to go on.
        assert run.exit_code == 1, run.output
        assert "deletion not finished" in run.output and "Delete=confirm" in run.output
        assert "remove Delete=confirm" in run.output
        app = f.apps()["one-hooked"]
        assert app.deleting and "Delete=confirm" in app.conditions[0].message
        assert not _gone(f, "cm", "asks", "-n", "default")

        out = f.kubectl(
            "one", "annotate", "cm", "asks", "-n", "default",
            "argocd.argoproj.io/sync-options-",
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        f.cli.ok("serve", "--once", "--timeout", "30")

        assert f.apps() == {}  # Delete=false did not hold the deletion up
        assert _gone(f, "cm", "asks", "-n", "default") and _gone(f, "cm", "settings", "-n", NS)
        assert not _gone(f, "cm", "kept", "-n", "default")


PRUNE_CONFIRM = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: asks
  namespace: hooked
  annotations:
    argocd.argoproj.io/sync-options: Prune=confirm
"""


def test_prune_confirm_is_refused_with_a_condition_saying_what_to_do(tmp_path: Path) -> None:
    with SimServer(clusters=["one"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        f = _fleet(tmp_path, sim, hook=False)
        f.repo.write({"app/asks.yaml": PRUNE_CONFIRM}, "a resource asking for confirmation")
        start_hub(f, "--git-poll", "1", "--port", "0")
        try:
            wait_for("asks applied", lambda: not _gone(f, "cm", "asks", "-n", NS), timeout=90)
            f.repo.write({"app/asks.yaml": None}, "drop it from Git")

            def warned() -> str | None:
                app = f.apps()["one-hooked"]
                found = [c for c in app.conditions if c.type == "UnsupportedOptionWarning"]
                return found[0].message if found else None

            message = wait_for("the unsupported-option condition", warned)
        finally:
            assert stop_hub(f) == 0
        assert "/ConfigMap hooked/asks: Prune=confirm" in message
        assert "remove Prune=confirm" in message
        assert not _gone(f, "cm", "asks", "-n", NS)  # never pruned without a confirmation
        # `hub serve --once` says the same after its sync.
        f.cli("serve", "--once", "--timeout", "30")
        assert warned() == message


def test_cascade_rm_goes_on_itself_when_the_hub_it_waits_for_dies(tmp_path: Path) -> None:
    with SimServer(clusters=["one"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        f = _fleet(tmp_path, sim, hook=False)
        # Delete=confirm holds the hub's deletion: the command is still waiting when we kill it.
        f.repo.write({"app/asks.yaml": CONFIRM}, "a resource that blocks deletion")
        start_hub(f, "--git-poll", "1", "--port", "0")
        wait_for("asks applied", lambda: not _gone(f, "cm", "asks", "-n", "default"), timeout=90)
        runs: list[Run] = []
        worker = threading.Thread(
            target=lambda: runs.append(f.cli("cluster", "rm", "one", "--cascade", "--yes"))
        )
        worker.start()
        try:
            wait_for(
                "the hub's deletion to stall on Delete=confirm",
                lambda: any(c.type == "DeletionError" for c in f.apps()["one-hooked"].conditions),
            )
        finally:
            _kill(f)
        worker.join(timeout=150)
        assert runs, "the command still waits for a dead hub"
        run = runs[0]
        assert run.exit_code == 1, run.output
        assert "the hub stopped answering; deleting the rest here" in run.output
        assert "Delete=confirm" in run.output and "cluster one kept" in run.output
        assert _gone(f, "cm", "settings", "-n", NS)  # the rest was deleted
        assert f.cli.names() == ["one"]
