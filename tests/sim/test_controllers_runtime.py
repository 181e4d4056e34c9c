"""The controller runtime on the simulator's own storage (``ClusterStore`` behind
``StoreObjectAPI``, in-process, as the server runs it): a settled cluster is quiet,
cancellation leaves nothing behind, and idle clusters are cheap. A bare store has no Node,
so pods land on the made-up ``<cluster>-node-1``."""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from clusters.sim.controllers import HANDLERS, run_controllers
from clusters.sim.controllers.runtime import Runtime
from clusters.sim.controllers.scheduler import Scheduler
from clusters.sim.objectapi import StoreObjectAPI
from clusters.sim.readonly import ReadOnlyError
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


# -- what the queue costs, and what the controllers may do to what they read -----------


def web_deployment(image: str) -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }


async def rolled_out(api: StoreObjectAPI, image: str) -> bool:
    d = await api.get("apps/v1", "Deployment", NS, "web")
    if d is None:
        return False
    status = d.get("status") or {}
    containers = d["spec"]["template"]["spec"]["containers"]
    return (
        containers[0]["image"] == image
        and status.get("observedGeneration") == d["metadata"]["generation"]
        and status.get("updatedReplicas") == 1
        and status.get("availableReplicas") == 1
        and status.get("replicas") == 1
    )


def test_a_rollout_takes_a_bounded_number_of_reconciles() -> None:
    """The fleet benchmark's shape (one replica): the echo of a reconcile's own writes
    does not queue it again, a pod's Pending details do not wake its ReplicaSet, and no
    fan-out key is reconciled. Without the first two, the same rollout took 15
    reconciles of its Deployment, ReplicaSets and Pods to create (7 with) and 20 to
    change the image (11 with)."""

    async def main() -> tuple[dict[str, int], dict[str, int]]:
        store = ClusterStore("counted")
        api = StoreObjectAPI(store)
        rt = Runtime(api, ready_delay=0.05, handlers=HANDLERS)
        controllers = asyncio.create_task(rt.run())
        try:
            await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
            await api.create(web_deployment("nginx:1.27"))
            await eventually("the first rollout", lambda: rolled_out(api, "nginx:1.27"))
            await asyncio.sleep(0.2)  # anything still queued runs and is counted
            created = dict(rt.reconciles)
            rt.reconciles.clear()
            current = await api.get("apps/v1", "Deployment", NS, "web")
            assert current is not None
            changed = copy.deepcopy(current)
            changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
            await api.update(changed)
            await eventually("the image rollout", lambda: rolled_out(api, "nginx:1.28"))
            await asyncio.sleep(0.2)
            return created, dict(rt.reconciles)
        finally:
            controllers.cancel()
            await asyncio.gather(controllers, return_exceptions=True)

    created, changed = asyncio.run(main())
    assert set(created) <= {"Deployment", "ReplicaSet", "Pod"}, created
    assert set(changed) <= {"Deployment", "ReplicaSet", "Pod"}, changed
    assert created["Deployment"] <= 4 and sum(created.values()) <= 9, created
    assert changed["Deployment"] <= 5 and sum(changed.values()) <= 13, changed


def test_reads_are_the_stored_objects_or_frozen_copies_when_checked() -> None:
    async def main() -> None:
        store = ClusterStore("reads")
        for manifest in manifests()[:2]:
            await StoreObjectAPI(store).create(manifest)
        stored = store.find(("apps", "Deployment"), NS, "web")
        assert stored is not None

        shared = StoreObjectAPI(store, check_reads=False)
        assert await shared.get("apps/v1", "Deployment", NS, "web") is stored
        assert (await shared.list("apps/v1", "Deployment", NS))[0] is stored

        checked = StoreObjectAPI(store, check_reads=True)
        for read in (
            await checked.get("apps/v1", "Deployment", NS, "web"),
            (await checked.list("apps/v1", "Deployment", NS))[0],
        ):
            assert read == stored and read is not stored
            assert read is not None
            with pytest.raises(ReadOnlyError):
                read["spec"]["replicas"] = 5
        assert stored["spec"]["replicas"] == 2

    asyncio.run(main())


def test_a_controller_that_changes_what_it_read_stops_the_runtime_when_checked() -> None:
    async def careless(rt: Runtime, namespace: str, name: str) -> float | None:
        d = await rt.api.get("apps/v1", "Deployment", namespace, name)
        assert d is not None
        d["spec"]["replicas"] = 3  # the bug: changing the shared object in place
        return None

    async def main() -> None:
        store = ClusterStore("careless")
        api = StoreObjectAPI(store, check_reads=True)
        for manifest in manifests()[:2]:
            await api.create(manifest)
        rt = Runtime(api, ready_delay=0.05, handlers={"Deployment": careless})
        async with asyncio.timeout(10):
            await rt.run()

    with pytest.raises(ExceptionGroup) as caught:
        asyncio.run(main())
    assert caught.group_contains(ReadOnlyError)


def test_a_careless_cluster_stops_alone_on_a_shared_scheduler() -> None:
    async def careless(rt: Runtime, namespace: str, name: str) -> float | None:
        d = await rt.api.get("apps/v1", "Deployment", namespace, name)
        assert d is not None
        d["spec"]["replicas"] = 3
        return None

    async def main() -> tuple[BaseException | None, bool]:
        scheduler = Scheduler()
        driver = asyncio.create_task(scheduler.run())
        broken_api = StoreObjectAPI(ClusterStore("careless"), check_reads=True)
        fine_api = StoreObjectAPI(ClusterStore("fine"), check_reads=True)
        for manifest in manifests()[:2]:
            await broken_api.create(manifest)
        broken = asyncio.create_task(
            Runtime(
                broken_api, ready_delay=0.05, handlers={"Deployment": careless}, scheduler=scheduler
            ).run()
        )
        fine = asyncio.create_task(run_controllers(fine_api, ready_delay=0.05, scheduler=scheduler))
        await asyncio.wait({broken}, timeout=10)
        for manifest in manifests()[:2]:
            await fine_api.create(manifest)
        try:
            await eventually("the other cluster's rollout", lambda: rolled_out_two(fine_api))
            return broken.exception(), not fine.done() and not driver.done()
        finally:
            for task in (fine, driver):
                task.cancel()
            await asyncio.gather(fine, driver, return_exceptions=True)

    error, others_running = asyncio.run(main())
    assert isinstance(error, ExceptionGroup) and error.subgroup(ReadOnlyError) is not None
    assert others_running


async def rolled_out_two(api: StoreObjectAPI) -> bool:
    d = await api.get("apps/v1", "Deployment", NS, "web")
    return ((d or {}).get("status") or {}).get("availableReplicas") == 2


def test_the_controllers_never_change_a_stored_object_in_place() -> None:
    """What the controllers share without copying stays as it was stored: every object a
    change recorded (and a watch delivered) still encodes the same once all settled."""

    async def main() -> None:
        seen: list[tuple[dict[str, Any], str]] = []

        def snapshot() -> None:
            last = store._history[-1]
            seen.extend((o, json.dumps(o, sort_keys=True)) for o in (last.obj, last.old) if o)

        store = ClusterStore("shared", on_change=snapshot)
        api = StoreObjectAPI(store, check_reads=False)
        controllers = asyncio.create_task(run_controllers(api, ready_delay=0.05))
        try:
            for manifest in manifests():
                await api.create(manifest)
            await eventually("everything settled", lambda: settled(api))
            await asyncio.sleep(0.2)
        finally:
            controllers.cancel()
            await asyncio.gather(controllers, return_exceptions=True)
        assert len(seen) > 50
        changed = [
            o["metadata"].get("name") for o, text in seen if json.dumps(o, sort_keys=True) != text
        ]
        assert changed == []

    asyncio.run(main())


def test_the_runtime_s_clock_is_the_loop_it_runs_in_and_only_while_it_runs() -> None:
    api = StoreObjectAPI(ClusterStore("clock"), check_reads=False)
    rt = Runtime(api, ready_delay=0.05, handlers={})

    async def running() -> None:
        task = asyncio.create_task(rt.run())
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        assert rt._loop is loop  # kept while it runs
        before = loop.time()
        assert before <= rt.clock() <= loop.time()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert rt._loop is None  # and forgotten when it stops

    asyncio.run(running())

    async def later() -> float:
        return rt.clock()  # the loop running now, not the closed one

    assert asyncio.run(later()) > 0
    with pytest.raises(RuntimeError):
        rt.clock()  # no loop runs: as asyncio.get_running_loop
