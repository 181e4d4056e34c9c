"""`hub serve --once`: one pass, exit 0 only when every Application is Synced and Healthy."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusters.sim import SimServer
from tests.e2e.serve_support import CONFIGMAP, DEPLOYMENT, WEB_APPSET, Fleet
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(180)]


@pytest.mark.parametrize(
    ("image", "timeout", "code", "says"),
    [
        ("nginx:1.25", "20", 0, "all Applications Synced and Healthy"),
        # the simulated kubelet crash-loops images whose tag says so: never Healthy, so
        # each sync waits out its whole --timeout (a short one: it only has to end)
        ("nginx:crashloop", "6", 1, "not synced and healthy: one-web"),
    ],
)
def test_once_exits_by_whether_everything_is_synced_and_healthy(
    tmp_path: Path, image: str, timeout: str, code: int, says: str
) -> None:
    with SimServer(clusters=["one", "two"], ready_delay=0.2, kubeconfig_path=tmp_path / "k") as sim:
        repo = GitRepo(tmp_path / "repo")
        repo.write(
            {
                "sets/web.yaml": WEB_APPSET.format(repo=repo.path),
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
        run = f.cli("serve", "--once", "--timeout", timeout)
        assert run.exit_code == code, run.output
        assert says in run.output
        apps = f.apps()
        assert sorted(apps) == ["one-web", "two-web"]
        healthy = [a.health_status == "Healthy" for a in apps.values()]
        assert all(healthy) if code == 0 else not any(healthy)
        assert all(a.operation_state for a in apps.values())  # each app's sync is recorded


def test_cluster_rm_cascade_deletes_what_the_hub_manages_then_the_cluster(tmp_path: Path) -> None:
    with SimServer(clusters=["one"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        repo = GitRepo(tmp_path / "repo")
        repo.write(
            {
                "sets/web.yaml": WEB_APPSET.format(repo=repo.path),
                "web/deployment.yaml": DEPLOYMENT.format(image="nginx:1.25"),
                "web/configmap.yaml": CONFIGMAP,
            }
        )
        f = Fleet(tmp_path / "home", sim, repo, tmp_path / "log")
        f.cli.ok("init")
        f.cli.ok("cluster", "add", "one", "--kubeconfig", str(sim.kubeconfig_path),
                 "--context", "one")  # fmt: skip
        f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "sets")
        f.cli.ok("serve", "--once", "--timeout", "20")
        unmanaged = f.kubectl("one", "create", "configmap", "mine", "-n", "web")
        assert unmanaged.returncode == 0, unmanaged.stderr
        run = f.cli.ok("cluster", "rm", "one", "--cascade", "--yes")
        assert "every resource the hub managed on one was deleted" in run.stdout
        assert f.cli.names() == []
        assert f.apps() == {}
        assert f.kubectl("one", "get", "deployment", "web", "-n", "web").returncode != 0
        assert f.kubectl("one", "get", "configmap", "settings", "-n", "web").returncode != 0
        # never touches what the hub does not track
        assert f.kubectl("one", "get", "configmap", "mine", "-n", "web").returncode == 0
