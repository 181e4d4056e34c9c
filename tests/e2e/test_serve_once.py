"""`hub serve --once`: one pass, exit 0 only when every Application is Synced and Healthy."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusters.sim import SimServer
from tests.e2e.serve_support import CONFIGMAP, DEPLOYMENT, Fleet
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(180)]

APPSET = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: web
spec:
  generators:
    - clusters: {{}}
  template:
    metadata:
      name: '{{{{name}}}}-web'
    spec:
      project: default
      source: {{repoURL: {repo}, targetRevision: main, path: web}}
      destination: {{server: '{{{{server}}}}', namespace: web}}
      syncPolicy:
        syncOptions: [CreateNamespace=true]
"""


@pytest.mark.parametrize(
    ("image", "code", "says"),
    [
        ("nginx:1.25", 0, "all Applications Synced and Healthy"),
        # the simulated kubelet crash-loops images whose tag says so: never Healthy
        ("nginx:crashloop", 1, "not synced and healthy: one-web"),
    ],
)
def test_once_exits_by_whether_everything_is_synced_and_healthy(
    tmp_path: Path, image: str, code: int, says: str
) -> None:
    with SimServer(clusters=["one", "two"], ready_delay=0.2, kubeconfig_path=tmp_path / "k") as sim:
        repo = GitRepo(tmp_path / "repo")
        repo.write(
            {
                "sets/web.yaml": APPSET.format(repo=repo.path),
                "web/deployment.yaml": DEPLOYMENT.format(image=image),
                "web/configmap.yaml": CONFIGMAP,
            }
        )
        f = Fleet(tmp_path / "home", sim, repo, tmp_path / "log")
        f.cli.ok("init")
        for name in ("one", "two"):
            f.cli.ok("cluster", "add", name, "--kubeconfig", str(sim.kubeconfig_path),
                     "--context", name)  # fmt: skip
        f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "sets")
        run = f.cli("serve", "--once", "--timeout", "20")
        assert run.exit_code == code, run.output
        assert says in run.output
        apps = f.apps()
        assert sorted(apps) == ["one-web", "two-web"]
        healthy = [a.health_status == "Healthy" for a in apps.values()]
        assert all(healthy) if code == 0 else not any(healthy)
        assert all(a.operation_state for a in apps.values())  # each app's sync is recorded
