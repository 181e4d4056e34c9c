"""The controller runtime on the simulator's own storage (``ClusterStore`` behind
``StoreObjectAPI``, in-process, as the server runs it): a settled cluster is quiet,
cancellation leaves nothing behind, and idle clusters are cheap. A bare store has no Node,
so pods land on the made-up ``<cluster>-node-1``."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from clusters.sim.controllers import run_controllers
from clusters.sim.objectapi import StoreObjectAPI
from clusters.sim.store import ClusterStore

pytestmark = pytest.mark.sim_only("needs the simulated controllers")
NS = "default"


def manifests() -> list[dict[str, Any]]:
    labels = {"app": "web"}
    pod_template = {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": pod_template},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"type": "LoadBalancer", "selector": labels, "ports": [{"port": 80}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": NS},
            "spec": {
                "replicas": 2,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {**pod_template, "metadata": {"labels": {"app": "db"}}},
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": NS},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {**pod_template, "metadata": {"labels": {"app": "agent"}}},
            },
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "once", "namespace": NS},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "main", "image": "busybox:1.36"}],
                    }
                }
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": NS},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}},
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 3,
            },
        },
    ]


async def eventually(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


async def settled(api: StoreObjectAPI) -> bool:
    """Every object of manifests() shows its final status."""
    d = await api.get("apps/v1", "Deployment", NS, "web")
    sts = await api.get("apps/v1", "StatefulSet", NS, "db")
    ds = await api.get("apps/v1", "DaemonSet", NS, "agent")
    job = await api.get("batch/v1", "Job", NS, "once")
    pvc = await api.get("v1", "PersistentVolumeClaim", NS, "data")
    svc = await api.get("v1", "Service", NS, "web")
    ing = await api.get("networking.k8s.io/v1", "Ingress", NS, "web")
    hpa = await api.get("autoscaling/v2", "HorizontalPodAutoscaler", NS, "web")
    objects = [d, sts, ds, job, pvc, svc, ing, hpa]
    if any(o is None for o in objects):
        return False
    assert d and sts and ds and job and pvc and svc and ing and hpa
    return (
        d.get("status", {}).get("availableReplicas") == 2
        and sts.get("status", {}).get("availableReplicas") == 2
        and ds.get("status", {}).get("numberAvailable") == 1
        and job.get("status", {}).get("succeeded") == 1
        and pvc.get("status", {}).get("phase") == "Bound"
        and bool(svc.get("status", {}).get("loadBalancer", {}).get("ingress"))
        and bool(ing.get("status", {}).get("loadBalancer", {}).get("ingress"))
        and hpa.get("status", {}).get("currentReplicas") == 2
    )


def test_a_settled_cluster_writes_nothing_and_cancelling_leaves_no_task() -> None:
    async def main() -> None:
        store = ClusterStore("quiet")
        api = StoreObjectAPI(store)
        controllers = asyncio.create_task(run_controllers(api, ready_delay=0.05))
        for manifest in manifests():
            await api.create(manifest)
        await eventually("everything settled", lambda: settled(api))
        await asyncio.sleep(0.2)  # the last status writes land
        before = store.resource_version
        # Half a second of nothing: an oscillating reconciler would write here.
        await asyncio.sleep(0.5)
        assert store.resource_version == before

        controllers.cancel()
        with pytest.raises(asyncio.CancelledError):
            await controllers
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(main())


def test_the_controllers_pick_up_objects_that_existed_before_they_started() -> None:
    async def main() -> None:
        store = ClusterStore("restored")
        api = StoreObjectAPI(store)
        for manifest in manifests():
            await api.create(manifest)
        controllers = asyncio.create_task(run_controllers(api, ready_delay=0.05))
        try:
            await eventually("everything settled", lambda: settled(api))
        finally:
            controllers.cancel()
            await asyncio.gather(controllers, return_exceptions=True)

    asyncio.run(main())


def test_idle_clusters_cost_little_memory() -> None:
    clusters = 200

    async def main() -> float:
        apis = [StoreObjectAPI(ClusterStore(f"c{i}")) for i in range(clusters)]
        await asyncio.sleep(0)
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tasks = [asyncio.create_task(run_controllers(a, ready_delay=0.2)) for a in apis]
            await asyncio.sleep(0.3)
            gc.collect()
            used = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return used / clusters

    per_cluster = asyncio.run(main())
    # The whole simulated cluster may use 1 MB; its controllers take a small part of it.
    assert per_cluster < 100 * 1024
