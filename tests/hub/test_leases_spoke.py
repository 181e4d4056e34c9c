"""The spoke side of fencing: a worker's connection refuses writes once its lease's local
deadline has passed, against a real (simulated) cluster read back with kubectl."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusters.connect import connect
from clusters.kube import KubeClient
from clusters.kubeconfig import read_context
from clusters.registry import NewCluster, Registry
from hub.home import init_home, open_registry, open_store
from hub.leases import ClusterFence, Fences, LeaseLost, cluster_lease
from tests.conftest import KubeEnv, run_kubectl


@pytest.fixture
def registry(tmp_path: Path, kube: KubeEnv) -> Iterator[Registry]:
    init_home(tmp_path / "home", env={})
    reg = open_registry(tmp_path / "home")
    ctx = read_context(kube.kubeconfig, kube.context)
    reg.add(
        NewCluster(name=kube.context, server=ctx.server, tls=ctx.tls, credential=ctx.credential)
    )
    yield reg
    reg.close()


def _configmap(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"k": "v"},
    }


def test_a_connection_past_its_lease_refuses_writes_but_not_reads(
    registry: Registry, kube: KubeEnv, tmp_path: Path
) -> None:
    cluster = kube.context
    store = open_store(tmp_path / "home")
    fences = Fences(store)
    fence = ClusterFence(cluster_lease(cluster), 1, time.monotonic() + 60)
    fences.put(cluster, fence)
    kube_client = KubeClient(fences.guard_connection(cluster, connect(registry, cluster)))
    held, late = f"held-{uuid.uuid4().hex[:6]}", f"late-{uuid.uuid4().hex[:6]}"
    kube_client.apply(_configmap(held))
    fence.extend(time.monotonic() - 1)  # no effect: a deadline only moves forward
    assert fence.valid()
    fence._deadline = time.monotonic() - 0.001  # what the passing of time does
    with pytest.raises(LeaseLost, match="not renewed in time"):
        kube_client.apply(_configmap(late))
    with pytest.raises(LeaseLost):
        kube_client.delete(kube_client.resource_for("", "ConfigMap"), held, "default")
    assert kube_client.resources()  # reads still go through
    store.close()
    out = run_kubectl(
        kube.kubeconfig, "get", "configmap", "-n", "default", "-o", "name", context=cluster
    )
    assert f"configmap/{held}" in out.stdout  # not deleted
    assert f"configmap/{late}" not in out.stdout  # never created
    run_kubectl(kube.kubeconfig, "delete", "configmap", held, "-n", "default", context=cluster)
