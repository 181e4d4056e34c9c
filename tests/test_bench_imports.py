"""The benchmarks under bench/ reuse a few of the suite's helpers (a Git repository, the
CLI driver, a PostgreSQL server) but never ``tests/conftest.py``: whatever the suite turns
on there for itself (the simulator's doubled status-write check, ``HUB_SIM_CHECK_WRITES``)
must not reach a benchmark's figures. Round 11 measured 40% slower rollouts when it did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clusters.sim.store import CHECK_WRITES_ENV

ROOT = Path(__file__).resolve().parent.parent
BENCHES = sorted(p.stem for p in (ROOT / "bench").glob("*.py"))

PROBE = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("bench_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print("tests.conftest" in sys.modules)
print(os.environ.get(sys.argv[2]))
"""


def test_every_benchmark_is_checked() -> None:
    assert {"fleet", "memory", "replicas", "sync_profile", "tree_renders"} <= set(BENCHES)


@pytest.mark.parametrize("bench", BENCHES)
def test_a_benchmark_imports_no_test_configuration(bench: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != CHECK_WRITES_ENV}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / "bench" / f"{bench}.py"), CHECK_WRITES_ENV],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded, check_writes = done.stdout.splitlines()[-2:]
    assert loaded == "False", f"bench/{bench}.py loads tests/conftest.py"
    assert check_writes == "None"
