"""`hub serve` end to end: a cluster that hangs (accepts, never answers) costs only itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusters.sim import SimServer
from tests.e2e.serve_support import (
    CONFIGMAP,
    DEPLOYMENT,
    Fleet,
    guestbook_appset,
    start_hub,
    stop_hub,
    wait_for,
)
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated faults"), pytest.mark.timeout(180)]


def test_a_hanging_cluster_goes_unknown_while_the_other_syncs_and_recovers(
    tmp_path: Path,
) -> None:
    with SimServer(
        clusters=["fine", "stuck"], ready_delay=0.2, kubeconfig_path=tmp_path / "k"
    ) as sim:
        repo = GitRepo(tmp_path / "repo")
        repo.write(
            {
                "sets/guestbook.yaml": guestbook_appset(repo.path),
                "guestbook/deployment.yaml": DEPLOYMENT.format(image="nginx:1.25"),
                "guestbook/configmap.yaml": CONFIGMAP,
            }
        )
        f = Fleet(tmp_path / "home", sim, repo, tmp_path / "hub.log")
        f.cli.ok("init")
        for name in ("fine", "stuck"):
            f.cli.ok("cluster", "add", name, "--kubeconfig", str(sim.kubeconfig_path),
                     "--context", name)  # fmt: skip
        f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "sets")
        start_hub(f, "--git-poll", "1", "--resync", "600", "--port", "0")
        try:
            wait_for("both synced", lambda: f.all_good(["fine", "stuck"], "nginx:1.25"))
            sim.faults("stuck").set(outage="hang")
            try:
                f.commit_image("nginx:1.26")
                wait_for(
                    "the healthy cluster on the new image",
                    lambda: f.all_good(["fine"], "nginx:1.26"),
                )
                wait_for(
                    "the hanging cluster's app Unknown",
                    lambda: f.apps()["stuck-guestbook"].sync_status == "Unknown",
                )
                assert "stuck" in f.apps()["stuck-guestbook"].conditions[0].message
            finally:
                sim.faults("stuck").clear()
            wait_for(
                "the hanging cluster to catch up on its own",
                lambda: f.all_good(["fine", "stuck"], "nginx:1.26"),
                timeout=90,
            )
        finally:
            assert stop_hub(f) == 0, f.hub_log()[-3000:]
