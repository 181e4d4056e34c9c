"""End to end: a kustomize source is rendered from the tree exported at the resolved SHA."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.conftest import KubeEnv
from tests.sync.e2e_helpers import GitRepo, application, hub_app

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def test_a_kustomization_is_built_at_the_synced_revision(
    kube: KubeEnv, tmp_path: Path, kubectl: Kubectl, namespace: str
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write(
        {
            "app/kustomization.yaml": """
                namePrefix: team-
                resources: [config.yaml]
                """,
            "app/config.yaml": """
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: settings}
                data: {level: one}
                """,
        }
    )
    h = hub_app(kube, tmp_path)
    h.write_app(application("kz", repo, namespace=namespace))
    # an uncommitted edit in the repository's work tree is not what Git declares
    (repo.path / "app" / "config.yaml").write_text("not: [valid yaml\n")
    run = h.sync()
    assert run.exit_code == 0, run.output
    got = kubectl(
        "get", "configmap", "team-settings", "-n", namespace, "-o", "jsonpath={.data.level}"
    )
    assert got.stdout == "one"
    assert list((h.hub.home / "trees").iterdir())  # built from the exported tree
