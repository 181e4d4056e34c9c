"""CPU of the simulator's controllers and storage alone, without HTTP (issue 12).

``bench/fleet.py`` measures the whole simulator process, whose figures move by a few
seconds from run to run on a shared machine and include every API request of the hub.
This runs the same shape in-process: CLUSTERS stores, each with its controllers, and APPS
one-replica Deployments per cluster created through ``StoreObjectAPI`` (as the hub's
applies land), then their image changed; it prints the process CPU seconds until every
Deployment is rolled out, per phase, and the reconciles the controllers ran.

    python bench/sim_controllers.py --clusters 100 --apps 10
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import time
from collections import Counter
from typing import Any

from clusters.sim.controllers import HANDLERS
from clusters.sim.controllers.runtime import Runtime
from clusters.sim.objectapi import StoreObjectAPI
from clusters.sim.store import ClusterStore

NS = "apps"


def deployment(n: int, image: str) -> dict[str, Any]:
    labels = {"app": f"app{n}"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"app{n}", "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }


def rolled_out(stores: list[ClusterStore], image: str) -> bool:
    # Read the stored objects directly: the check must not cost what it measures.
    for store in stores:
        for d in store.objects(("apps", "Deployment")).values():
            status = d.get("status") or {}
            if (
                d["spec"]["template"]["spec"]["containers"][0]["image"] != image
                or status.get("observedGeneration") != d["metadata"]["generation"]
                or status.get("updatedReplicas") != 1
                or status.get("availableReplicas") != 1
                or status.get("replicas") != 1
            ):
                return False
    return True


async def run(clusters: int, apps: int, ready_delay: float) -> None:
    stores = [ClusterStore(f"c{i}") for i in range(clusters)]
    apis = [StoreObjectAPI(s, check_reads=False) for s in stores]
    runtimes = [Runtime(a, ready_delay=ready_delay, handlers=HANDLERS) for a in apis]
    tasks = [asyncio.create_task(rt.run()) for rt in runtimes]
    for api in apis:
        await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    await asyncio.sleep(0.5)
    for phase, image in (("create", "nginx:1.27"), ("image change", "nginx:1.28")):
        for rt in runtimes:
            rt.reconciles.clear()
        cpu, wall = time.process_time(), time.monotonic()
        for api in apis:
            for n in range(apps):
                if phase == "create":
                    await api.create(deployment(n, image))
                    continue
                current = await api.get("apps/v1", "Deployment", NS, f"app{n}")
                assert current is not None
                changed = copy.deepcopy(current)
                changed["spec"]["template"]["spec"]["containers"][0]["image"] = image
                await api.update(changed)
        while not rolled_out(stores, image):
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # what is still queued runs, and is counted
        reconciles: Counter[str] = Counter()
        for rt in runtimes:
            reconciles.update(rt.reconciles)
        print(
            f"{phase}: {clusters * apps} Deployments, CPU {time.process_time() - cpu:.2f}s "
            f"in {time.monotonic() - wall:.1f}s, reconciles {sum(reconciles.values())} "
            f"{dict(sorted(reconciles.items()))}",
            flush=True,
        )
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--apps", type=int, default=10, help="Deployments per cluster.")
    parser.add_argument("--ready-delay", type=float, default=0.2)
    args = parser.parse_args()
    asyncio.run(run(args.clusters, args.apps, args.ready_delay))


if __name__ == "__main__":
    main()
