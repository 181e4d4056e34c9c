"""End to end: a failing PreSync hook and a crash-looping rollout stop the sync."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import KubeEnv
from tests.sync.e2e_helpers import GitRepo, application, hub_app
from tests.sync.test_e2e_seed import seed_files

Kubectl = Callable[..., subprocess.CompletedProcess[str]]

SYNC_FAIL_HOOK = """
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: sync-failed
      annotations:
        argocd.argoproj.io/hook: SyncFail
    data: {reason: "the sync failed"}
    """


def _json(kubectl: Kubectl, *args: str) -> dict:  # type: ignore[type-arg]
    run = kubectl(*args, "-o", "json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)  # type: ignore[no-any-return]


@pytest.mark.sim_only("a failing Job needs the simulator's `fail` image")
def test_a_failing_presync_hook_stops_the_sync_and_keeps_the_old_version(
    kube: KubeEnv, tmp_path: Path, kubectl: Kubectl
) -> None:
    ns = f"pay-{uuid.uuid4().hex[:6]}"
    repo = GitRepo(tmp_path / "repo")
    repo.write(seed_files(ns, image="nginx:1.27"), "v1")
    h = hub_app(kube, tmp_path)
    retry = {"retry": {"limit": 1, "backoff": {"duration": "100ms"}}}
    h.write_app(application("payments", repo, namespace=ns, extra_spec={"syncPolicy": retry}))
    assert h.sync("--timeout", "60").exit_code == 0

    files = seed_files(ns, image="nginx:1.28")
    files["app/03-migrate.yaml"] = str(files["app/03-migrate.yaml"]).replace(
        "busybox:1.36", "busybox:fail"
    )
    files["app/07-sync-fail.yaml"] = SYNC_FAIL_HOOK
    repo.write(files, "v2 with a broken migration")
    run = h.sync("--timeout", "60")

    assert run.exit_code == 1, run.output
    assert "Operation:   Failed" in run.stdout
    assert "hook batch/Job" in run.stdout and "migrate-" in run.stdout
    assert "is Degraded" in run.stdout  # the failed hook is reported with its health
    # nothing after PreSync ran: the new image was never applied, the old one keeps serving
    deploy = _json(kubectl, "get", "deployment", "payments", "-n", ns)
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert deploy["status"]["availableReplicas"] == 3
    assert "\nSync\n" not in run.stdout.split("PreSync", 1)[1]
    # the SyncFail hook ran
    assert "SyncFail" in run.stdout
    hook = _json(kubectl, "get", "configmap", "sync-failed", "-n", ns)
    assert hook["data"]["reason"] == "the sync failed"
    # no hook keeps our finalizer once the operation is over
    jobs = _json(kubectl, "get", "jobs", "-n", ns)["items"]
    assert jobs and all(
        "gitops-hub/hook-finalizer" not in (j["metadata"].get("finalizers") or []) for j in jobs
    )
    # the failed operation was retried once; its hook kept its one deterministic name
    assert "attempt 2 in 0.1s" in run.stdout
    migrations = sorted(
        j["metadata"]["name"] for j in jobs if j["metadata"]["name"].startswith("migrate-")
    )
    assert len(migrations) == 2, migrations  # one per operation, none duplicated by the retry
    assert migrations[1] in run.stdout or migrations[0] in run.stdout
    history = h("history", "-f", str(h.app_file)).stdout
    assert "Failed" in history.splitlines()[-1]


@pytest.mark.sim_only("a crash loop needs the simulator's `crashloop` image")
def test_a_crash_looping_rollout_is_degraded_and_later_waves_never_apply(
    kube: KubeEnv, tmp_path: Path, kubectl: Kubectl, namespace: str
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write(
        {
            "app/deploy.yaml": """
                apiVersion: apps/v1
                kind: Deployment
                metadata:
                  name: payments
                  annotations: {argocd.argoproj.io/sync-wave: "1"}
                spec:
                  replicas: 2
                  progressDeadlineSeconds: 2
                  selector: {matchLabels: {app: payments}}
                  template:
                    metadata: {labels: {app: payments}}
                    spec:
                      containers: [{name: payments, image: "nginx:crashloop"}]
                """,
            "app/later.yaml": """
                apiVersion: v1
                kind: ConfigMap
                metadata:
                  name: later
                  annotations: {argocd.argoproj.io/sync-wave: "2"}
                data: {a: b}
                """,
        }
    )
    h = hub_app(kube, tmp_path)
    h.write_app(application("crashy", repo, namespace=namespace))
    run = h.sync("--timeout", "60")

    assert run.exit_code == 1, run.output
    assert "apps/Deployment" in run.stdout and "is Degraded" in run.stdout
    assert "ProgressDeadlineExceeded" in run.stdout or "progress deadline" in run.stdout
    assert "wave 2" not in run.stdout
    missing = kubectl("get", "configmap", "later", "-n", namespace)
    assert missing.returncode != 0 and "NotFound" in missing.stderr
    assert "Health:      Degraded" in run.stdout


@pytest.mark.sim_only("a rollout that never finishes needs the simulator's `crashloop` image")
def test_the_per_sync_timeout_fails_a_sync_stuck_at_a_health_gate(
    kube: KubeEnv, tmp_path: Path, kubectl: Kubectl, namespace: str
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write(
        {
            "app/deploy.yaml": """
                apiVersion: apps/v1
                kind: Deployment
                metadata: {name: slow}
                spec:
                  replicas: 1
                  progressDeadlineSeconds: 600
                  selector: {matchLabels: {app: slow}}
                  template:
                    metadata: {labels: {app: slow}}
                    spec:
                      containers: [{name: slow, image: "nginx:crashloop"}]
                """,
            "app/later.yaml": """
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: later, annotations: {argocd.argoproj.io/sync-wave: "1"}}
                """,
        }
    )
    h = hub_app(kube, tmp_path)
    h.write_app(application("slow", repo, namespace=namespace))
    run = h.sync("--timeout", "2")
    assert run.exit_code == 1, run.output
    assert "Operation:   Failed: sync timed out after 2s" in run.stdout
    assert kubectl("get", "configmap", "later", "-n", namespace).returncode != 0
