"""End to end: `kubectl scale` is drift, healed by a self-heal sync unless ignored."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.conftest import KubeEnv
from tests.sync.e2e_helpers import GitRepo, application, hub_app

Kubectl = Callable[..., subprocess.CompletedProcess[str]]

DEPLOYMENT = """
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: payments
    spec:
      replicas: 3
      selector: {matchLabels: {app: payments}}
      template:
        metadata: {labels: {app: payments}}
        spec:
          containers: [{name: payments, image: "nginx:1.27"}]
    """


def _replicas(kubectl: Kubectl, namespace: str) -> str:
    run = kubectl(
        "get", "deployment", "payments", "-n", namespace, "-o", "jsonpath={.spec.replicas}"
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def _scale(kubectl: Kubectl, namespace: str, replicas: int) -> None:
    run = kubectl("scale", "deploy/payments", f"--replicas={replicas}", "-n", namespace)
    assert run.returncode == 0, run.stderr


def test_scaling_by_hand_is_drift_and_self_heal_reverts_it(
    kube: KubeEnv, tmp_path: Path, kubectl: Kubectl, namespace: str
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write({"app/deploy.yaml": DEPLOYMENT})
    h = hub_app(kube, tmp_path)
    automated = {"syncPolicy": {"automated": {"selfHeal": True}}}
    h.write_app(application("payments", repo, namespace=namespace, extra_spec=automated))
    assert h.sync("--timeout", "60").exit_code == 0
    assert h.diff().exit_code == 0
    assert h.diff("--local", str(repo.path / "app")).exit_code == 0

    _scale(kubectl, namespace, 5)
    diff = h.diff()
    assert diff.exit_code == 1, diff.output
    assert "===== apps/Deployment" in diff.stdout
    assert "-  replicas: 5" in diff.stdout and "+  replicas: 3" in diff.stdout

    heal = h.sync("--self-heal", "--timeout", "60")
    assert heal.exit_code == 0, heal.output
    assert "apps/Deployment" in heal.stdout
    assert _replicas(kubectl, namespace) == "3"
    assert h.diff().exit_code == 0
    assert "self-heal" in h("history", "-f", str(h.app_file)).stdout


def test_with_replicas_ignored_a_scaled_deployment_is_left_alone_and_synced(
    kube: KubeEnv, tmp_path: Path, kubectl: Kubectl, namespace: str
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write({"app/deploy.yaml": DEPLOYMENT})
    h = hub_app(kube, tmp_path)
    spec = {
        "syncPolicy": {"automated": {"selfHeal": True}},
        "ignoreDifferences": [
            {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}
        ],
    }
    h.write_app(application("payments", repo, namespace=namespace, extra_spec=spec))
    assert h.sync("--timeout", "60").exit_code == 0

    _scale(kubectl, namespace, 5)
    diff = h.diff()
    assert diff.exit_code == 0, diff.output
    assert diff.stdout == ""
    heal = h.sync("--self-heal", "--timeout", "60")
    assert heal.exit_code == 0, heal.output
    assert "already in sync" in heal.stdout
    assert _replicas(kubectl, namespace) == "5"
