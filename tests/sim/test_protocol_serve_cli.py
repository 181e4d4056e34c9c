"""``hub sim serve`` as a process: prints where it listens, serves kubectl, stops cleanly."""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from clusters.eventloop import ENV
from clusters.sim import compiled
from clusters.sim.shards import split
from hub.ports import free_port
from tests.conftest import run_kubectl

pytestmark = [pytest.mark.e2e, pytest.mark.sim_only("starts hub sim serve")]


def _start(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], list[str]]:
    kubeconfig = tmp_path / "kc"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "sim", "serve", "--kubeconfig-out", str(kubeconfig), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HUB_HOME": str(tmp_path / "home"), **(env or {})},
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


@pytest.mark.parametrize("processes", ["1", "2"])
def test_an_unknown_event_loop_is_one_line_before_anything_starts(
    tmp_path: Path, processes: str
) -> None:
    token = tmp_path / "admin-token"
    result = subprocess.run(
        [sys.executable, "-m", "hub", "sim", "serve", "--clusters", "2",
         "--processes", processes, "--kubeconfig-out", str(tmp_path / "kc"),
         "--admin-token-out", str(token)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "HUB_HOME": str(tmp_path / "home"), ENV: "trio"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"error: {ENV}='trio' is not a loop this hub knows; use uvloop, asyncio or auto"
    ]
    assert not token.exists() and not (tmp_path / "kc").exists()


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


def _call(
    base: str, ca: ssl.SSLContext, method: str, path: str, token: str, body: object = None
) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, context=ca, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read() or b"null")


@pytest.mark.parametrize("wanted", ["0", ""])
def test_serve_says_which_simulator_code_it_runs(tmp_path: Path, wanted: str) -> None:
    """The interpreted code when told so (HUB_SIM_COMPILED=0), else the build's state: on
    standard error at start and in /sim/stats."""
    token_file = tmp_path / "admin-token"
    proc, _ = _start(
        tmp_path,
        *("--clusters", "1", "--admin-token-out", str(token_file)),
        env={compiled.ENV: wanted},
    )
    expected = compiled.BuildState(False, "HUB_SIM_COMPILED=0")
    if not wanted:
        expected = compiled.check_build()
    try:
        doc = yaml.safe_load((tmp_path / "kc").read_text())
        ca = ssl.create_default_context(
            cadata=base64.b64decode(
                doc["clusters"][0]["cluster"]["certificate-authority-data"]
            ).decode()
        )
        base = doc["clusters"][0]["cluster"]["server"].rsplit("/clusters/", 1)[0]
        status, stats = _call(base, ca, "GET", "/sim/stats", token_file.read_text().strip())
        assert status == 200 and isinstance(stats, dict)
        assert (stats["compiled"], stats["build"]) == (expected.compiled, expected.reason)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    code = "compiled" if expected.compiled else "interpreted"
    assert f"code: {code} ({expected.reason})" in err


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_serve_with_processes_shards_clusters_behind_one_kubeconfig(
    tmp_path: Path, loop: str
) -> None:
    token_file = tmp_path / "admin-token"
    proc, lines = _start(
        tmp_path,
        *("--clusters", "3", "--processes", "2", "--admin-token-out", str(token_file)),
        env={ENV: loop},
    )
    pids: list[int] = []
    try:
        assert "serving 3 cluster(s) on 2 processes" in "\n".join(lines)
        kc, cache = tmp_path / "kc", tmp_path / "cache"
        doc = yaml.safe_load(kc.read_text())
        servers = {c["name"]: c["cluster"]["server"] for c in doc["clusters"]}
        tokens = {u["name"]: u["user"]["token"] for u in doc["users"]}
        base = {name: url.rsplit("/clusters/", 1)[0] for name, url in servers.items()}
        assert list(servers) == ["sim-1", "sim-2", "sim-3"]
        assert base["sim-1"] == base["sim-2"] != base["sim-3"]
        for name in servers:
            got = run_kubectl(kc, "get", "ns", "-o", "name", context=name, cache_dir=cache)
            assert got.returncode == 0 and "namespace/kube-system" in got.stdout, got.stderr
        ca = ssl.create_default_context(
            cadata=base64.b64decode(
                doc["clusters"][0]["cluster"]["certificate-authority-data"]
            ).decode()
        )
        admin = token_file.read_text().strip()
        # One admin token for every process; faults are set where the cluster is served.
        status, _ = _call(base["sim-3"], ca, "PUT", "/sim/clusters/sim-3/faults", admin,
                          {"error_rate": 1, "error_code": 503})  # fmt: skip
        assert status == 200
        assert _call(base["sim-1"], ca, "GET", "/sim/clusters/sim-3/faults", admin)[0] == 404
        sick = _call(servers["sim-3"], ca, "GET", "/api/v1/namespaces", tokens["sim-3-admin"])
        assert sick[0] == 503
        well = _call(servers["sim-2"], ca, "GET", "/api/v1/namespaces", tokens["sim-2-admin"])
        assert well[0] == 200
        # Each process reports its own load.
        for url in {base["sim-1"], base["sim-3"]}:
            status, stats = _call(url, ca, "GET", "/sim/stats", admin)
            assert status == 200 and isinstance(stats, dict)
            assert stats["event_loop"] == loop  # HUB_EVENT_LOOP reaches every shard
            # every shard runs the compiled simulator exactly when the build is current
            assert stats["compiled"] is compiled.check_build().compiled, stats["build"]
            pids.append(int(stats["pid"]))
        assert len(set(pids)) == 2 and proc.pid not in pids
        # A cluster added through one process's admin API joins the one kubeconfig.
        status, _ = _call(base["sim-3"], ca, "POST", "/sim/clusters", admin, {"name": "extra"})
        assert status == 201
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            doc = yaml.safe_load(kc.read_text())
            added = [c for c in doc["clusters"] if c["name"] == "extra"]
            if added:
                break
            time.sleep(0.1)
        assert added and added[0]["cluster"]["server"] == f"{base['sim-3']}/clusters/extra"
        assert [c["name"] for c in doc["contexts"]] == ["sim-1", "sim-2", "sim-3", "extra"]
        got = run_kubectl(kc, "get", "ns", "-o", "name", context="extra", cache_dir=cache)
        assert got.returncode == 0 and "namespace/default" in got.stdout, got.stderr
    finally:
        assert _stop(proc, signal.SIGTERM) == 0
    for pid in pids:  # the shards stopped with their parent
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{pid}")


def test_processes_with_a_state_dir_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hub", "sim", "serve", "--processes", "2", "--state-dir",
         str(tmp_path / "state"), "--kubeconfig-out", str(tmp_path / "kc")],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "HUB_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert result.returncode == 2
    assert "--state-dir" in result.stderr and "Traceback" not in result.stderr


def test_shards_split_names_contiguously_and_evenly() -> None:
    names = tuple(f"sim-{i}" for i in range(1, 8))
    assert split(names, 3) == [names[0:3], names[3:5], names[5:7]]
    assert split(names[:2], 4) == [names[0:1], names[1:2]]  # never an empty shard
    assert split((), 2) == [()]


def test_shards_listen_on_port_plus_k_and_a_dead_shard_stops_them_all(tmp_path: Path) -> None:
    port = free_port(2)
    proc, lines = _start(tmp_path, "--clusters", "2", "--processes", "2", "--port", str(port))
    text = "\n".join(lines)
    assert f"https://127.0.0.1:{port}/clusters/sim-1" in text
    assert f"https://127.0.0.1:{port + 1}/clusters/sim-2" in text
    shards = [
        int(p) for p in subprocess.run(
            ["ps", "--ppid", str(proc.pid), "-o", "pid="], capture_output=True, text=True
        ).stdout.split()
    ]  # fmt: skip
    assert len(shards) == 2
    os.kill(shards[0], signal.SIGKILL)
    try:
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{shards[1]}"):
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{shards[1]}")


def test_serve_http2_in_every_shard(tmp_path: Path) -> None:
    token_file = tmp_path / "admin-token"
    proc, _ = _start(
        tmp_path, "--clusters", "2", "--processes", "2", "--http2",
        "--admin-token-out", str(token_file),
    )  # fmt: skip
    try:
        kc, cache = tmp_path / "kc", tmp_path / "cache"
        doc = yaml.safe_load(kc.read_text())
        servers = {c["name"]: c["cluster"]["server"] for c in doc["clusters"]}
        ca = ssl.create_default_context(
            cadata=base64.b64decode(
                doc["clusters"][0]["cluster"]["certificate-authority-data"]
            ).decode()
        )
        admin = token_file.read_text().strip()
        for name, server in servers.items():
            got = run_kubectl(kc, "get", "ns", "-o", "name", context=name, cache_dir=cache)
            assert got.returncode == 0 and "namespace/default" in got.stdout, got.stderr
            # kubectl took h2 from the shard serving this cluster
            status, stats = _call(server.rsplit("/clusters/", 1)[0], ca, "GET", "/sim/stats", admin)
            assert status == 200 and isinstance(stats, dict)
            assert stats["h2_connections_opened"] >= 1, (name, stats)
    finally:
        assert _stop(proc, signal.SIGTERM) == 0
