"""End to end: clusters.kube.KubeClient against hub sim — discovery refresh, errors, retrier."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clusters.connect import connect
from clusters.kube import Invalid, KubeClient, NotFound, Transient
from clusters.sim import SimServer
from hub.home import open_registry
from tests.conftest import KubeEnv
from tests.sync.e2e_helpers import CLUSTER, hub_app

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


@pytest.fixture
def private(
    sim_factory: Callable[..., SimServer], tmp_path: Path
) -> Iterator[tuple[SimServer, KubeClient]]:
    sim = sim_factory(clusters=1, ready_delay=0.1)
    env = KubeEnv(kubeconfig=sim.kubeconfig_path, contexts=sim.cluster_names, sim=sim)
    h = hub_app(env, tmp_path)
    registry = open_registry(h.hub.home)
    try:
        yield sim, KubeClient(connect(registry, CLUSTER), timeout_s=10)
    finally:
        registry.close()


@pytest.mark.sim_only("a private simulator per test")
def test_a_kind_whose_crd_was_just_applied_is_found_by_rediscovery(
    private: tuple[SimServer, KubeClient],
) -> None:
    _, kube = private
    with pytest.raises(NotFound, match="Gadget is not served"):
        kube.resource_for("example.com", "Gadget")
    applied = kube.apply(CRD)
    assert applied["metadata"]["generation"] == 1
    crd_res = kube.resource_of(CRD)
    for _ in range(100):  # the API server establishes a CRD shortly after it is created
        crd = kube.get(crd_res, "gadgets.example.com")
        conditions = (crd.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            break
        time.sleep(0.05)
    res = kube.resource_for("example.com", "Gadget")
    assert (res.plural, res.namespaced, res.version) == ("gadgets", True, "v1")
    obj = kube.apply(
        {
            "apiVersion": "example.com/v1",
            "kind": "Gadget",
            "metadata": {"name": "g", "namespace": "default"},
            "spec": {"size": 3},
        }
    )
    assert obj["spec"] == {"size": 3}
    items, rv = kube.list(res)
    assert [i["metadata"]["name"] for i in items] == ["g"] and items[0]["kind"] == "Gadget"
    assert rv


@pytest.mark.sim_only("a private simulator per test")
def test_errors_come_as_the_adapters_own_kinds(private: tuple[SimServer, KubeClient]) -> None:
    sim, kube = private
    cm = kube.resource_for("", "ConfigMap")
    with pytest.raises(NotFound, match="HTTP 404"):
        kube.get(cm, "absent", "default")
    assert kube.delete(cm, "absent", "default") is False
    with pytest.raises(Invalid) as invalid:
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "Not_A_Valid_Name", "namespace": "default"},
            }
        )
    assert invalid.value.status in (400, 422)
    sim.faults(sim.cluster_names[0]).set(error_rate=1.0, error_code=503)
    try:
        with pytest.raises(Transient, match="HTTP 503"):
            kube.get(cm, "absent", "default")
        calls: list[str] = []

        def retrier(what: str, send: Callable[[], Any]) -> Any:
            calls.append(what)
            try:
                return send()
            except Transient:
                sim.faults(sim.cluster_names[0]).clear()  # the next attempt gets through
                return send()

        sim.faults(sim.cluster_names[0]).set(error_rate=1.0, error_code=503)
        with pytest.raises(NotFound):
            kube.with_retry(retrier).get(cm, "absent", "default")
        assert calls == ["GET /api/v1/namespaces/default/configmaps/absent"]
    finally:
        sim.faults(sim.cluster_names[0]).clear()
