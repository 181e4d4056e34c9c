"""``hub cluster list|get|label|check|rm`` against hub sim clusters."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from clusters.sim import SimServer
from tests.clusters.cli_support import Hub
from tests.conftest import KubeEnv


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    h = Hub(tmp_path / "home")
    h.ok("init")
    return h


def add(hub: Hub, kubeconfig: Path, context: str, name: str, *extra: str) -> None:
    hub.ok("cluster", "add", name, "--kubeconfig", str(kubeconfig), "--context", context, *extra)


def test_list_formats_agree(hub: Hub, kube: KubeEnv) -> None:
    add(hub, kube.kubeconfig, kube.contexts[0], "alpha", "--label", "env=prod")
    add(hub, kube.kubeconfig, kube.contexts[-1], "beta", "--skip-check")
    as_json = json.loads(hub.ok("cluster", "list", "-o", "json").stdout)
    as_yaml = yaml.safe_load(hub.ok("cluster", "list", "-o", "yaml").stdout)
    assert as_json == as_yaml
    assert [c["name"] for c in as_json] == ["alpha", "beta"]
    assert as_json[0]["labels"] == {"env": "prod"}
    table = hub.ok("cluster", "list").stdout.splitlines()
    assert table[0].split() == ["NAME", "SERVER", "VERSION", "CHECK", "LABELS"]
    assert table[1].split()[0] == "alpha" and table[1].split()[3] == "ok"
    assert table[1].split()[-1] == "env=prod"
    assert table[2].split()[0] == "beta" and table[2].split()[2:4] == ["-", "-"]


def test_the_list_table_fits_80_columns_with_long_values(hub: Hub, kube: KubeEnv) -> None:
    long_name = "a-very-long-cluster-name-that-goes-on-and-on-" + "x" * 18
    assert len(long_name) == 63
    labels = [f"--label=example.com/label-number-{i}=value-{i}-{'v' * 30}" for i in range(5)]
    add(hub, kube.kubeconfig, kube.context, long_name, *labels)
    add(hub, kube.kubeconfig, kube.context, "short", "--allow-same-server", "test")
    for line in hub.ok("cluster", "list").stdout.splitlines():
        assert len(line) <= 80, line
    for line in hub.ok("cluster", "get", long_name).stdout.splitlines():
        assert len(line) <= 80, line


def test_an_empty_fleet_lists_as_empty(hub: Hub) -> None:
    assert json.loads(hub.ok("cluster", "list", "-o", "json").stdout) == []
    assert "no clusters registered" in hub.ok("cluster", "list").stdout


def test_get_shows_one_cluster_in_each_format(hub: Hub, kube: KubeEnv) -> None:
    add(hub, kube.kubeconfig, kube.context, "one", "--annotation", "owner=me")
    record = json.loads(hub.ok("cluster", "get", "one", "-o", "json").stdout)
    assert record["name"] == "one" and record["annotations"] == {"owner": "me"}
    assert yaml.safe_load(hub.ok("cluster", "get", "one", "-o", "yaml").stdout) == record
    table = hub.ok("cluster", "get", "one").stdout
    assert "Name:           one" in table and "owner=me" in table
    run = hub("cluster", "get", "nope")
    assert run.exit_code == 2 and "cluster 'nope' is not registered" in run.stderr


def test_label_adds_overwrites_and_removes(hub: Hub, kube: KubeEnv) -> None:
    add(hub, kube.kubeconfig, kube.context, "one", "--label", "a=1", "--label", "b=2")
    run = hub.ok("cluster", "label", "one", "a=9", "c=3", "b-")
    assert "a=9,c=3" in run.stdout
    assert json.loads(hub.ok("cluster", "get", "one", "-o", "json").stdout)["labels"] == {
        "a": "9",
        "c": "3",
    }


@pytest.mark.parametrize("bad", ["no-equals", "bad key=1", "k=bad value", "=v"])
def test_label_refuses_bad_syntax_and_changes_nothing(hub: Hub, kube: KubeEnv, bad: str) -> None:
    add(hub, kube.kubeconfig, kube.context, "one", "--label", "a=1")
    run = hub("cluster", "label", "one", "z=1", bad)
    assert run.exit_code == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "label" in run.stderr
    assert json.loads(hub.ok("cluster", "get", "one", "-o", "json").stdout)["labels"] == {"a": "1"}


def test_check_stores_results_and_fails_for_an_outage(
    hub: Hub, sim_factory: Callable[..., SimServer]
) -> None:
    sim = sim_factory(clusters=["up", "down"])
    add(hub, sim.kubeconfig_path, "up", "up")
    add(hub, sim.kubeconfig_path, "down", "down")
    sim.faults("down").set(outage="hang")
    run = hub("cluster", "check", "--timeout", "1")
    assert run.exit_code == 1
    assert "1 cluster(s) failed the check: down" in run.stderr
    rows = {line.split()[0]: line for line in run.stdout.splitlines()[1:]}
    assert " ok " in rows["up"] and "FAILED" in rows["down"]
    records = {c["name"]: c for c in json.loads(hub.ok("cluster", "list", "-o", "json").stdout)}
    assert records["up"]["lastCheck"]["ok"] is True
    assert records["down"]["lastCheck"]["ok"] is False
    assert "no answer" in records["down"]["lastCheck"]["message"]
    sim.faults("down").clear()
    results = json.loads(hub.ok("cluster", "check", "down", "-o", "json").stdout)
    assert results == [
        {
            "name": "down",
            "ok": True,
            "message": results[0]["message"],
            "serverVersion": results[0]["serverVersion"],
        }
    ]
    record = json.loads(hub.ok("cluster", "get", "down", "-o", "json").stdout)
    assert record["lastCheck"]["ok"] is True and record["serverVersion"].startswith("v1.")


def test_check_of_an_unknown_cluster_is_bad_input(hub: Hub) -> None:
    run = hub("cluster", "check", "ghost")
    assert run.exit_code == 2 and "'ghost' is not registered" in run.stderr


def test_rm_asks_first_unless_yes(hub: Hub, kube: KubeEnv) -> None:
    add(hub, kube.kubeconfig, kube.context, "one")
    add(hub, kube.kubeconfig, kube.context, "two", "--allow-same-server", "test")
    run = hub("cluster", "rm", "one", input="n\n")
    assert run.exit_code == 1 and "Remove cluster one" in run.stderr
    assert "nothing removed" in run.stderr
    assert hub.names() == ["one", "two"]
    hub.ok("cluster", "rm", "one", input="y\n")
    hub.ok("cluster", "rm", "two", "--yes")
    assert hub.names() == []
    run = hub("cluster", "rm", "two", "--yes")
    assert run.exit_code == 2 and "'two' is not registered" in run.stderr
