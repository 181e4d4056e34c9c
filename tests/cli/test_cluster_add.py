"""``hub cluster add`` against hub sim clusters: registering, refusing, bad input, concurrency."""

from __future__ import annotations

import os
import stat
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from clusters.sim import SimServer
from tests.clusters.cli_support import Hub, hub_subprocess, kubeconfig_with, token_of
from tests.conftest import KubeEnv


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    h = Hub(tmp_path / "home")
    h.ok("init")
    return h


def add_args(kube: KubeEnv, name: str, context: str | None = None, *extra: str) -> list[str]:
    return [
        "cluster",
        "add",
        name,
        "--kubeconfig",
        str(kube.kubeconfig),
        "--context",
        context or kube.context,
        *extra,
    ]


def db_snapshot(home: Path) -> bytes:
    return (home / "hub.db").read_bytes()


def test_add_checks_the_cluster_and_records_its_version(hub: Hub, kube: KubeEnv) -> None:
    run = hub.ok(
        *add_args(
            kube,
            "prod",
            None,
            "--label",
            "env=prod",
            "--label",
            "example.com/tier=gold",
            "--annotation",
            "owner=team a",
            "--namespace",
            "web",
            "--namespace",
            "api",
            "--project",
            "p1",
        )
    )
    assert run.stdout.startswith("cluster prod registered: https://")
    record = yaml.safe_load(hub.ok("cluster", "get", "prod", "-o", "yaml").stdout)
    assert record["labels"] == {"env": "prod", "example.com/tier": "gold"}
    assert record["annotations"] == {"owner": "team a"}
    assert record["namespaces"] == ["web", "api"]
    assert record["project"] == "p1"
    assert record["serverVersion"].startswith("v1.")
    assert record["lastCheck"]["ok"] is True
    assert record["credentialKind"] == "token"


def test_add_uses_the_current_context_by_default(hub: Hub, kube: KubeEnv, tmp_path: Path) -> None:
    single = kubeconfig_with(kube.kubeconfig, tmp_path / "one", kube.contexts[-1])
    hub.ok("cluster", "add", "x", "--kubeconfig", str(single))
    assert yaml.safe_load(hub.ok("cluster", "get", "x", "-o", "json").stdout)["server"] == (
        yaml.safe_load(single.read_text())["clusters"][0]["cluster"]["server"].rstrip("/")
    )


def test_skip_check_registers_without_contacting_the_cluster(
    hub: Hub, sim_factory: Callable[..., SimServer]
) -> None:
    down = sim_factory(clusters=["down"])
    down.faults("down").set(outage="refuse")
    run = hub.ok(
        "cluster", "add", "down", "--kubeconfig", str(down.kubeconfig_path), "--skip-check"
    )
    assert "without a connectivity check" in run.stdout
    record = yaml.safe_load(hub.ok("cluster", "get", "down", "-o", "json").stdout)
    assert record["lastCheck"] is None and record["serverVersion"] is None


@pytest.mark.parametrize(
    ("outage", "message"),
    [
        ("refuse", "closed the connection without an answer"),
        ("hang", "no answer from https://"),
    ],
)
def test_an_unreachable_cluster_is_refused(
    hub: Hub, sim_factory: Callable[..., SimServer], outage: str, message: str
) -> None:
    sim = sim_factory(clusters=["edge"])
    sim.faults("edge").set(outage=outage)
    run = hub("cluster", "add", "edge", "--kubeconfig", str(sim.kubeconfig_path), "--timeout", "1")
    assert run.exit_code == 1
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("error: cluster 'edge': unreachable")
    assert message in line and "pass --skip-check" in line
    assert hub.names() == []


def test_a_stopped_server_is_refused_as_connection_refused(
    hub: Hub, sim_factory: Callable[..., SimServer]
) -> None:
    sim = sim_factory(clusters=["gone"])
    kubeconfig = sim.kubeconfig_path
    sim.stop()
    run = hub("cluster", "add", "gone", "--kubeconfig", str(kubeconfig), "--timeout", "2")
    assert run.exit_code == 1
    assert "unreachable: cannot connect to https://" in run.stderr
    assert hub.names() == []


def test_a_wrong_token_is_refused_as_unauthorised(
    hub: Hub, sim: SimServer, kube: KubeEnv, tmp_path: Path
) -> None:
    bad = kubeconfig_with(
        kube.kubeconfig, tmp_path / "bad", kube.context, token="wrong-token-123456"
    )
    run = hub("cluster", "add", "prod", "--kubeconfig", str(bad))
    assert run.exit_code == 1
    assert "unauthorised" in run.stderr and "HTTP 401" in run.stderr
    assert "wrong-token-123456" not in run.output
    assert hub.names() == []


def test_a_cluster_that_answers_500_is_refused(
    hub: Hub, sim_factory: Callable[..., SimServer]
) -> None:
    sim = sim_factory(clusters=["flaky"])
    sim.faults("flaky").set(error_rate=1.0, error_code=500)
    run = hub("cluster", "add", "flaky", "--kubeconfig", str(sim.kubeconfig_path))
    assert run.exit_code == 1
    assert "answered HTTP 500" in run.stderr


def test_tls_settings_are_honoured(hub: Hub, sim: SimServer, kube: KubeEnv, tmp_path: Path) -> None:
    from tests.clusters.conftest import b64, make_cert

    path = kubeconfig_with(kube.kubeconfig, tmp_path / "kc", kube.context)
    doc = yaml.safe_load(path.read_text())
    cluster = doc["clusters"][0]["cluster"]
    other_ca, _ = make_cert("some-other-ca")
    cluster["certificate-authority-data"] = b64(other_ca)
    path.write_text(yaml.safe_dump(doc))
    run = hub("cluster", "add", "wrongca", "--kubeconfig", str(path))
    assert run.exit_code == 1 and "TLS handshake with https://" in run.stderr
    del cluster["certificate-authority-data"]
    cluster["insecure-skip-tls-verify"] = True
    path.write_text(yaml.safe_dump(doc))
    hub.ok("cluster", "add", "insecure", "--kubeconfig", str(path))
    hub.ok("cluster", "check", "insecure")


def test_upsert_replaces_the_credential(
    hub: Hub, sim: SimServer, kube: KubeEnv, tmp_path: Path
) -> None:
    hub.ok(*add_args(kube, "prod", kube.contexts[0], "--label", "a=1"))
    run = hub(*add_args(kube, "prod", kube.contexts[1]))
    assert run.exit_code == 2
    assert "'prod' is already registered; use --upsert" in run.stderr
    run = hub.ok(*add_args(kube, "prod", kube.contexts[1], "--upsert"))
    assert "cluster prod updated" in run.stdout
    record = yaml.safe_load(hub.ok("cluster", "get", "prod", "-o", "json").stdout)
    assert record["server"] == sim.server_url(kube.contexts[1]).rstrip("/")
    assert record["labels"] == {}


def test_an_exec_plugin_credential_is_run_through_the_client(
    hub: Hub, sim: SimServer, kube: KubeEnv, tmp_path: Path
) -> None:
    token = token_of(kube.kubeconfig, kube.context)
    plugin = tmp_path / "get-token"
    plugin.write_text(
        textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os
        print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1",
                          "kind": "ExecCredential",
                          "status": {{"token": os.environ["SIM_TOKEN"]}}}}))
        """)
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    config = kubeconfig_with(
        kube.kubeconfig,
        tmp_path / "exec",
        kube.context,
        exec={
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "./get-token",
            "env": [{"name": "SIM_TOKEN", "value": token}],
        },
    )
    hub.ok("cluster", "add", "viaexec", "--kubeconfig", str(config))
    assert (
        yaml.safe_load(hub.ok("cluster", "get", "viaexec", "-o", "json").stdout)["credentialKind"]
        == "exec"
    )
    hub.ok("cluster", "check", "viaexec")


def _bad_kubeconfig(tmp_path: Path, kube: KubeEnv, case: str) -> list[str]:
    kc = str(kube.kubeconfig)
    if case == "missing kubeconfig":
        return ["x", "--kubeconfig", str(tmp_path / "nope.yaml")]
    if case == "unreadable kubeconfig":
        return ["x", "--kubeconfig", str(tmp_path)]  # a directory: unreadable even as root
    if case == "unknown context":
        return ["x", "--kubeconfig", kc, "--context", "no-such-context"]
    if case == "context without credential":
        path = kubeconfig_with(kube.kubeconfig, tmp_path / "nocred", kube.context, **{"x": 1})
        doc = yaml.safe_load(path.read_text())
        doc["users"][0]["user"] = {}
        path.write_text(yaml.safe_dump(doc))
        return ["x", "--kubeconfig", str(path)]
    if case == "invalid label":
        return ["x", "--kubeconfig", kc, "--context", kube.context, "--label", "bad label=1"]
    if case == "invalid label value":
        return ["x", "--kubeconfig", kc, "--context", kube.context, "--label", "k=-bad-"]
    if case == "name not DNS-1123":
        return ["Prod_1", "--kubeconfig", kc, "--context", kube.context]
    if case == "name too long":
        return ["a" * 64, "--kubeconfig", kc, "--context", kube.context]
    if case == "duplicate without --upsert":
        return ["dup", "--kubeconfig", kc, "--context", kube.context]
    raise AssertionError(case)


BAD_INPUT = {
    "missing kubeconfig": "nope.yaml: no such file",
    "unreadable kubeconfig": "is a directory",
    "unknown context": "context 'no-such-context' not found",
    "context without credential": "has no credential",
    "invalid label": "label key 'bad label' is invalid",
    "invalid label value": "label k='-bad-'",
    "name not DNS-1123": "cluster name 'Prod_1' is not a DNS-1123 label",
    "name too long": "is not a DNS-1123 label",
    "duplicate without --upsert": "cluster 'dup' is already registered; use --upsert",
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_line_naming_it_and_writes_nothing(
    hub: Hub, kube: KubeEnv, tmp_path: Path, case: str
) -> None:
    hub.ok(*add_args(kube, "dup", None, "--skip-check"))
    before = hub.ok("cluster", "list", "-o", "json").stdout
    args = _bad_kubeconfig(tmp_path, kube, case)
    run = hub("cluster", "add", *args, "--skip-check")
    assert run.exit_code == 2, run.output
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert BAD_INPUT[case] in lines[0]
    assert hub.ok("cluster", "list", "-o", "json").stdout == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_kubeconfig_without_read_permission_is_bad_input(
    hub: Hub, kube: KubeEnv, tmp_path: Path
) -> None:
    path = kubeconfig_with(kube.kubeconfig, tmp_path / "locked", kube.context)
    path.chmod(0)
    run = hub("cluster", "add", "x", "--kubeconfig", str(path))
    assert run.exit_code == 2 and "permission denied" in run.stderr


def test_two_concurrent_add_processes_both_succeed(hub: Hub, kube: KubeEnv) -> None:
    procs = [
        hub_subprocess(hub.home, *add_args(kube, f"par{i}", kube.contexts[i % len(kube.contexts)]))
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    assert sorted(hub.names()) == ["par0", "par1"]
    for name in ("par0", "par1"):
        hub.ok("cluster", "check", name)
    import sqlite3

    db = sqlite3.connect(hub.home / "hub.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
