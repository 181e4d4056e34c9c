"""End to end: rollback re-applies the manifests of an earlier history id."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.conftest import KubeEnv
from tests.sync.e2e_helpers import GitRepo, application, hub_app

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def deployment(image: str) -> dict[str, str | None]:
    return {
        "app/deploy.yaml": f"""
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: payments
            spec:
              replicas: 2
              selector: {{matchLabels: {{app: payments}}}}
              template:
                metadata: {{labels: {{app: payments}}}}
                spec:
                  containers: [{{name: payments, image: "{image}"}}]
            """,
        "app/secret.yaml": """
            apiVersion: v1
            kind: Secret
            metadata: {name: payments-db}
            stringData: {password: hunter2-rollback-test}
            """,
    }


def _image(kubectl: Kubectl, namespace: str) -> str:
    run = kubectl(
        "get",
        "deployment",
        "payments",
        "-n",
        namespace,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_rollback_to_an_earlier_history_id_restores_the_earlier_image(
    kube: KubeEnv, tmp_path: Path, kubectl: Kubectl, namespace: str
) -> None:
    repo = GitRepo(tmp_path / "repo")
    first = repo.write(deployment("nginx:1.27"), "v1")
    h = hub_app(kube, tmp_path)
    h.write_app(application("payments", repo, namespace=namespace))
    dry = h.sync("--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Sync wave 0" in dry.stdout and "apply  apps/Deployment" in dry.stdout
    assert kubectl("get", "deployment", "payments", "-n", namespace).returncode != 0
    assert h("history", "-f", str(h.app_file)).stdout.count("\n") == 1  # header only
    assert h.sync("--timeout", "60").exit_code == 0
    repo.write(deployment("nginx:1.28"), "v2")
    assert h.sync("--timeout", "60").exit_code == 0
    assert _image(kubectl, namespace) == "nginx:1.28"

    history = h("history", "-f", str(h.app_file))
    lines = history.stdout.splitlines()
    assert lines[1].split()[0] == "0" and first[:10] in lines[1]

    run = h("rollback", "-f", str(h.app_file), "0", "--timeout", "60")
    assert run.exit_code == 0, run.output
    assert _image(kubectl, namespace) == "nginx:1.27"
    # Git still says 1.28: the app is OutOfSync until Git is reverted, as in Argo CD
    diff = h.diff()
    assert diff.exit_code == 1 and "nginx:1.28" in diff.stdout
    last = h("history", "-f", str(h.app_file)).stdout.splitlines()[-1]
    assert "rollback" in last and first[:10] in last
    # the stored manifests (with the Secret) are sealed, never in the database in clear
    assert b"hunter2-rollback-test" not in (h.hub.home / "hub.db").read_bytes()
    wal = h.hub.home / "hub.db-wal"
    assert not wal.exists() or b"hunter2-rollback-test" not in wal.read_bytes()

    missing = h("rollback", "-f", str(h.app_file), "42")
    assert missing.exit_code == 1 and "no history entry 42" in missing.output
