"""`hub serve` reads the hub's health rules from `$HUB_HOME/health-rules.yaml`."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusters.sim import SimServer
from tests.e2e.serve_support import WEB_APPSET, Fleet, start_hub
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(180)]


STATE = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: state
data:
  state: broken
"""

RULES = """
rules:
  - group: ""
    kind: ConfigMap
    field: data.state
    map: {ok: Healthy, broken: Degraded}
"""


def test_serve_applies_the_homes_health_rules_and_refuses_a_bad_file(tmp_path: Path) -> None:
    with SimServer(clusters=["one"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        repo = GitRepo(tmp_path / "repo")
        repo.write({"sets/web.yaml": WEB_APPSET.format(repo=repo.path), "web/state.yaml": STATE})
        f = Fleet(tmp_path / "home", sim, repo, tmp_path / "log")
        f.cli.ok("init")
        f.cli.ok("cluster", "add", "one", "--kubeconfig", str(sim.kubeconfig_path),
                 "--context", "one")  # fmt: skip
        f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "sets")
        # Without rules a ConfigMap has no health: the app is Healthy.
        f.cli.ok("serve", "--once", "--timeout", "20")
        assert f.apps()["one-web"].health_status == "Healthy"

        (f.home / "health-rules.yaml").write_text(RULES)
        run = f.cli("serve", "--once", "--timeout", "5")
        assert run.exit_code == 1, run.output
        assert "one-web (one)" in run.output and "Degraded" in run.output
        assert f.apps()["one-web"].health_status == "Degraded"

        (f.home / "health-rules.yaml").write_text("rules: [{group: '', kind: ConfigMap}]\n")
        bad = f.cli("serve", "--once")
        assert bad.exit_code == 2, bad.output
        assert "health-rules.yaml: rules[0]: give exactly one of health" in bad.output
        assert "Traceback" not in bad.output
        # The long-running hub refuses to start the same way (nothing started, exit 2).
        proc = start_hub(f, "--port", "0")
        assert proc.wait(timeout=60) == 2
        assert "rules[0]: give exactly one of health" in f.hub_log()
        assert "Traceback" not in f.hub_log()
