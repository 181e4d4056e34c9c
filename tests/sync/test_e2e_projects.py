"""End to end: `hub app sync -f FILE` is bound by the AppProjects `hub serve` enforces."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.conftest import KubeEnv
from tests.sync.e2e_helpers import GitRepo, application, hub_app

Kubectl = Callable[..., subprocess.CompletedProcess[str]]

PROJECT = """
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: team-a}
spec:
  sourceRepos: ['*']
  destinations: [{server: '*', namespace: NS}]
"""

FILES = {
    "app/settings.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n",
    "app/sneaky.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: sneaky, namespace: kube-system}\n"
    ),
}


def test_a_cli_sync_outside_the_project_is_refused_and_applies_nothing(
    kube: KubeEnv, tmp_path: Path, kubectl: Kubectl, namespace: str
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write({"projects/team-a.yaml": PROJECT.replace("NS", namespace), **FILES})
    h = hub_app(kube, tmp_path)
    h.hub.ok("source", "add", "platform", "--repo", str(repo.path), "--path", "projects")
    h.hub.ok("serve", "--once", "--timeout", "20")  # reads the source: the project is stored
    h.write_app(application("cli", repo, namespace=namespace, extra_spec={"project": "team-a"}))

    run = h.sync("--timeout", "30")
    assert run.exit_code == 1, run.output
    assert "ConfigMap kube-system/sneaky" in run.output
    assert "project 'team-a'" in run.output and "destinations" in run.output
    for ns, name in ((namespace, "settings"), ("kube-system", "sneaky")):
        got = kubectl("get", "configmap", name, "-n", ns)
        assert got.returncode != 0 and "NotFound" in got.stderr
