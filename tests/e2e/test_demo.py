"""`hub demo --fast` end to end: the real command as a subprocess, as a newcomer runs it.

It starts its own simulated clusters, hub home, Git repository and `hub serve`, and checks
every step against the clusters itself; this test asserts that it reports each step OK,
exits 0 and leaves nothing behind. Never asserts how long anything took.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hub.demo import ClusterSpec, cluster_specs, order_problem
from hub.errors import HubUsageError
from tests.clusters.cli_support import CLEAN_ENV

STEPS = 6


def run_demo(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    # The demo must never touch the user's home: point HUB_HOME somewhere watchable.
    env["HUB_HOME"] = str(tmp_path / "users-home")
    env["TMPDIR"] = str(tmp_path)
    return subprocess.run(
        [sys.executable, "-m", "hub", "demo", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
    )


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.sim_only("the demo runs its own simulated clusters and fault images")
@pytest.mark.timeout(300)
def test_hub_demo_fast_reports_every_step_ok_exits_0_and_cleans_up(tmp_path: Path) -> None:
    done = run_demo("--fast", tmp_path=tmp_path)
    out = done.stdout
    assert done.returncode == 0, out[-6000:] + done.stderr[-3000:]
    for n in range(1, STEPS + 1):
        assert re.search(rf"^Step {n} OK: ", out, re.M), f"step {n} not OK:\n{out[-4000:]}"
    assert "demo OK: all 6 expectations held" in out
    # The status rollup is printed after each step, from the running hub's API.
    assert out.count("whole fleet — from the running hub") >= STEPS
    # Everything it created lived under TMPDIR and is gone; the user's home untouched.
    assert not (tmp_path / "users-home").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_hub_demo_refuses_a_cluster_name_without_an_environment(tmp_path: Path) -> None:
    done = run_demo("--clusters", "dev,qa", tmp_path=tmp_path)
    assert done.returncode == 2
    assert "cannot tell the environment of 'qa'" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.parametrize(
    ("name", "env", "region"),
    [
        ("dev", "dev", "us-east"),
        ("dev-2", "dev", "us-east"),
        ("staging", "staging", "us-east"),
        ("stage-b", "staging", "us-east"),
        ("prod-eu-west", "production", "eu-west"),
        ("prod", "production", "us-east"),
    ],
)
def test_a_cluster_name_gives_its_env_and_region_labels(name: str, env: str, region: str) -> None:
    specs = cluster_specs(["dev", name] if name != "dev" else ["dev", "prod"])
    assert specs[-1 if name != "dev" else 0] == ClusterSpec(name=name, env=env, region=region)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["dev", "qa"], "cannot tell the environment of 'qa'"),
        (["staging", "prod"], "include a cluster named 'dev'"),
        (["dev"], "at least two clusters"),
        (["dev", "dev"], "named twice"),
        (["", " "], "at least one cluster"),
    ],
)
def test_cluster_lists_the_demo_cannot_run_are_usage_errors(names: list[str], message: str) -> None:
    with pytest.raises(HubUsageError, match=message):
        cluster_specs(names)


GOOD = [
    ("PreSync", 0, "Job/payments-migrate"),
    ("Sync", -2, "Namespace/payments"),
    ("Sync", 1, "Deployment/payments"),
    ("PostSync", 0, "Job/payments-smoke-test"),
]


@pytest.mark.parametrize(
    ("order", "problem"),
    [
        (GOOD, None),
        ([GOOD[0], GOOD[2], GOOD[1], GOOD[3]], "Namespace/payments (Sync wave -2) ran after"),
        ([GOOD[3], *GOOD[:3]], "Job/payments-migrate (PreSync wave 0) ran after"),
        (GOOD[1:], "no PreSync hook (migration) ran"),
        (GOOD[:3], "no PostSync hook (smoke test) ran"),
    ],
)
def test_the_wave_check_accepts_only_phases_then_ascending_waves(
    order: list[tuple[str, int, str]], problem: str | None
) -> None:
    found = order_problem(order)
    assert (found is None) if problem is None else (found is not None and problem in found)
