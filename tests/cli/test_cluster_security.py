"""No secret anywhere it should not be; a wrong master key fails cleanly and alters nothing."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from clusters.sim import SimServer
from tests.clusters.cli_support import Hub, kubeconfig_with, token_of
from tests.conftest import KubeEnv


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    h = Hub(tmp_path / "home")
    h.ok("init")
    return h


def all_outputs(hub: Hub, names: list[str]) -> str:
    """Every read command, every format, at -vv, plus a failing add and check."""
    chunks = []
    for fmt in ("table", "json", "yaml"):
        chunks.append(hub.ok("-vvv", "cluster", "list", "-o", fmt).output)
        for name in names:
            chunks.append(hub.ok("-vvv", "cluster", "get", name, "-o", fmt).output)
        chunks.append(hub("-vvv", "cluster", "check", "-o", fmt).output)
    for name in names:
        chunks.append(hub.ok("-vvv", "cluster", "export", name).output)
        chunks.append(hub.ok("-vvv", "cluster", "label", name, "x=y").output)
    return "\n".join(chunks)


def test_no_token_or_key_in_output_logs_or_database(
    hub: Hub, sim: SimServer, kube: KubeEnv, tmp_path: Path
) -> None:
    token = token_of(kube.kubeconfig, kube.context)
    master_key = (hub.home / "master.key").read_text().strip()
    secrets = [token, master_key]
    chunks = [
        hub.ok(
            "-vvv",
            "cluster",
            "add",
            "one",
            "--kubeconfig",
            str(kube.kubeconfig),
            "--context",
            kube.context,
        ).output
    ]
    # An upsert, a refused add with a wrong token and a failing check also stay quiet.
    chunks.append(
        hub.ok(
            "-vvv",
            "cluster",
            "add",
            "one",
            "--upsert",
            "--kubeconfig",
            str(kube.kubeconfig),
            "--context",
            kube.context,
        ).output
    )
    wrong = "wrong-token-" + "z" * 20
    secrets.append(wrong)
    bad = kubeconfig_with(kube.kubeconfig, tmp_path / "bad", kube.context, token=wrong)
    chunks.append(hub("-vvv", "cluster", "add", "two", "--kubeconfig", str(bad)).output)
    chunks.append(
        hub(
            "-vvv",
            "cluster",
            "add",
            "two",
            "--kubeconfig",
            str(bad),
            "--skip-check",
            "--allow-same-server",
            "test",
        ).output
    )
    chunks.append(all_outputs(hub, ["one", "two"]))
    chunks.append(hub.ok("-vvv", "key", "rotate").output)
    new_master = (hub.home / "master.key").read_text().strip()
    secrets.append(new_master)
    chunks.append(hub("-vvv", "cluster", "check").output)
    text = "\n".join(chunks)
    assert "DEBUG" in text  # -vv really logged
    for secret in secrets:
        assert secret not in text
    for path in hub.home.glob("hub.db*"):  # the database, -wal and -shm files
        data = path.read_bytes()
        for secret in (token, wrong):
            assert secret.encode() not in data, path
        for key in (master_key, new_master):
            assert base64.b64decode(key) not in data, path


def test_a_failing_exec_plugin_does_not_leak_its_environment(
    hub: Hub, kube: KubeEnv, tmp_path: Path
) -> None:
    secret = "exec-env-secret-" + "q" * 16
    plugin = tmp_path / "fail"
    plugin.write_text('#!/bin/sh\necho "failed with $SECRET_VALUE" >&2\nexit 3\n')
    plugin.chmod(0o700)
    config = kubeconfig_with(
        kube.kubeconfig,
        tmp_path / "exec",
        kube.context,
        exec={
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(plugin),
            "env": [{"name": "SECRET_VALUE", "value": secret}],
        },
    )
    run = hub("-vvv", "cluster", "add", "ex", "--kubeconfig", str(config))
    assert run.exit_code == 1
    assert "exec credential plugin failed" in run.stderr
    assert secret not in run.output


def test_a_wrong_master_key_fails_with_the_documented_message_and_alters_nothing(
    hub: Hub, kube: KubeEnv, sim_factory: Callable[..., SimServer]
) -> None:
    hub.ok("cluster", "add", "one", "--kubeconfig", str(kube.kubeconfig), "--context", kube.context)
    key_before = (hub.home / "master.key").read_bytes()
    listing = hub.ok("cluster", "list", "-o", "json").stdout
    wrong = {"HUB_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
    expected = "error: cannot decrypt credentials for cluster one: wrong master key?"
    for args in (
        ["cluster", "check"],
        ["cluster", "check", "one"],
        ["cluster", "export", "one", "--show-secrets"],
        ["key", "rotate"],
    ):
        env = {**wrong, "HUB_NEW_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
        run = hub(*args, env=env)
        assert run.exit_code == 1, args
        if args[1] == "check":  # every record is tried and reported in the table
            assert expected.removeprefix("error: ") in run.stdout, args
            assert run.stderr.strip() == "error: 1 cluster(s) failed the check: one", args
        else:
            assert run.stderr.strip() == expected, args
    run = hub(
        "cluster",
        "add",
        "two",
        "--kubeconfig",
        str(kube.kubeconfig),
        "--context",
        kube.context,
        "--allow-same-server",
        "test",
        env=wrong,
    )
    assert run.exit_code == 1 and "wrong master key? nothing was changed" in run.stderr
    # Nothing altered: same records (last check included), same key, no rotation files.
    assert hub.ok("cluster", "list", "-o", "json").stdout == listing
    assert sorted(p.name for p in hub.home.glob("master.key*")) == ["master.key"]
    assert (hub.home / "master.key").read_bytes() == key_before
    hub.ok("cluster", "check", "one")  # the right key still works
