"""``hub sim serve`` as a process: prints where it listens, serves kubectl, stops cleanly."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import run_kubectl

pytestmark = [pytest.mark.e2e, pytest.mark.sim_only("starts hub sim serve")]


def _start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    kubeconfig = tmp_path / "kc"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "sim", "serve", "--kubeconfig-out", str(kubeconfig), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HUB_HOME": str(tmp_path / "home")},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        if line.startswith("try:"):
            break
    else:
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"hub sim serve did not start: {err}")
    return proc, lines


def _stop(proc: subprocess.Popen[str], sig: int) -> int:
    proc.send_signal(sig)
    try:
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_announces_its_contexts_and_exits_zero_on_a_signal(tmp_path: Path, sig: int) -> None:
    proc, lines = _start(tmp_path, "--names", "east,west", "--ready-delay", "0.1")
    try:
        text = "\n".join(lines)
        assert "serving 2 cluster(s) on https://127.0.0.1:" in text
        assert "contexts: east, west" in text
        assert f"kubectl --kubeconfig {tmp_path / 'kc'} --context east get ns" in text
        result = run_kubectl(
            tmp_path / "kc", "get", "ns", "-o", "name", context="west", cache_dir=tmp_path / "cache"
        )
        assert result.returncode == 0, result.stderr
        assert "namespace/kube-system" in result.stdout.split()
    finally:
        code = _stop(proc, sig)
    assert code == 0


def test_serve_with_a_state_dir_keeps_objects_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc, _ = _start(tmp_path, "--clusters", "1", "--state-dir", str(state))
    try:
        manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept, namespace: default}\ndata: {a: b}\n"
        created = run_kubectl(
            tmp_path / "kc", "apply", "-f", "-", input=manifest, cache_dir=tmp_path / "cache"
        )
        assert created.returncode == 0, created.stderr
    finally:
        assert _stop(proc, signal.SIGTERM) == 0
    proc, _ = _start(tmp_path, "--clusters", "1", "--state-dir", str(state))
    try:
        result = run_kubectl(
            tmp_path / "kc",
            "get",
            "configmap",
            "kept",
            "-o",
            "jsonpath={.data.a}",
            cache_dir=tmp_path / "cache",
        )
        assert result.returncode == 0 and result.stdout == "b", result.stderr
    finally:
        assert _stop(proc, signal.SIGTERM) == 0


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hub",
            "sim",
            "serve",
            "--names",
            "Not_Valid",
            "--kubeconfig-out",
            str(tmp_path / "kc"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HUB_HOME": str(tmp_path / "home")},
    )
    assert result.returncode == 2
    assert "Not_Valid" in result.stderr and "Traceback" not in result.stderr


def test_serve_takes_the_gc_delay_and_the_anonymous_auth_choice(tmp_path: Path) -> None:
    proc, lines = _start(tmp_path, "--names", "slow", "--gc-delay", "30", "--no-anonymous-auth")
    try:
        kc, cache = tmp_path / "kc", tmp_path / "cache"
        made = run_kubectl(kc, "create", "configmap", "lagging", "-n", "default", cache_dir=cache)
        assert made.returncode == 0, made.stderr
        deleted = run_kubectl(
            kc, "delete", "configmap", "lagging", "-n", "default", "--cascade=foreground",
            "--wait=false", cache_dir=cache,
        )  # fmt: skip
        assert deleted.returncode == 0, deleted.stderr
        held = run_kubectl(
            kc, "get", "configmap", "lagging", "-n", "default", "-o",
            "jsonpath={.metadata.finalizers}", cache_dir=cache,
        )  # fmt: skip
        assert held.returncode == 0 and "foregroundDeletion" in held.stdout, held.stderr

        url = next(line.split()[-1] for line in lines if line.strip().startswith("slow "))
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{url}/version", context=insecure, timeout=10)
        err.value.close()
        assert err.value.code == 401  # --no-anonymous-auth: no token, no answer
    finally:
        assert _stop(proc, signal.SIGTERM) == 0
