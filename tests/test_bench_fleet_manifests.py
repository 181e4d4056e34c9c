"""``bench/fleet.py --revision-history-limit``: the Deployments the benchmark commits keep
that many old ReplicaSets, so later commits can find the objects earlier ones found."""

from __future__ import annotations

import yaml

from tests.test_bench_fleet_pinning import _fleet


def test_by_default_the_deployments_keep_kubernetes_default_history() -> None:
    fleet = _fleet()
    docs = list(yaml.safe_load_all(fleet.service(3, "nginx:9")))
    assert [d["kind"] for d in docs] == ["Deployment", "ConfigMap"]
    assert "revisionHistoryLimit" not in docs[0]["spec"]
    assert docs[0]["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:9"


def test_a_limit_given_lands_in_each_deployment_only() -> None:
    fleet = _fleet()
    fleet.REVISION_HISTORY_LIMIT[0] = 0
    docs = list(yaml.safe_load_all(fleet.service(3, "nginx:9")))
    assert docs[0]["spec"]["revisionHistoryLimit"] == 0
    assert docs[0]["spec"]["replicas"] == 1
    assert docs[0]["metadata"] == {"name": "web", "namespace": "svc-3"}
    assert docs[1] == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "svc-3"},
        "data": {"greeting": "hello"},
    }
