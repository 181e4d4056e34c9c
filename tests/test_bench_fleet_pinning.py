"""``bench/fleet.py --pin-sim`` puts the simulator on a CPU of its own and the hub on the
others, so a run shows whether the two processes slow each other down."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _fleet() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fleet_bench", ROOT / "bench" / "fleet.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_simulator_gets_the_last_cpu_and_the_hub_the_rest() -> None:
    fleet = _fleet()
    assert fleet.split_cpus([0, 1]) == ({1}, {0})
    assert fleet.split_cpus([0, 2, 5, 7]) == ({7}, {0, 2, 5})
    with pytest.raises(SystemExit, match="at least two CPUs"):
        fleet.split_cpus([3])


def test_no_pinning_asked_starts_the_child_as_it_is() -> None:
    assert _fleet().pinned_to(None) is None


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_a_pinned_child_and_its_own_children_run_on_the_cpus_given() -> None:
    before = os.sched_getaffinity(0)
    cpu = sorted(before)[-1]
    # The child starts a grandchild, as `hub sim serve --processes N` starts its shards.
    probe = (
        "import os, subprocess, sys; print(sorted(os.sched_getaffinity(0)));"
        "subprocess.run([sys.executable, '-c', 'import os; print(sorted(os.sched_getaffinity(0)))'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        preexec_fn=_fleet().pinned_to({cpu}),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.split("\n")[:2] == [f"[{cpu}]", f"[{cpu}]"]
    assert os.sched_getaffinity(0) == before  # the parent keeps its own
