"""Small controllers that move a simulated cluster's objects to their real status over time.

Like KWOK, they stand in for kube-controller-manager, the scheduler and the kubelets, and
they reach the objects only through ``clusters.sim.interface.ObjectAPI``, so the same code
could drive a real API server. Behaviour and fault images: docs/sim-controllers.md.
Namespace phases and CRD conditions are the server's (clusters/sim/store.py), not ours.
"""

from __future__ import annotations

from clusters.sim import compiled as _compiled

# The mypyc build of these modules, when it is current (clusters/sim/compiled.py).
__path__ = _compiled.package_path(__name__, __path__)

from clusters.sim.controllers.cronjobs import reconcile_cronjob
from clusters.sim.controllers.daemonsets import reconcile_daemonset
from clusters.sim.controllers.deployments import reconcile_deployment
from clusters.sim.controllers.hpa import reconcile_hpa
from clusters.sim.controllers.jobs import reconcile_job
from clusters.sim.controllers.network import reconcile_ingress, reconcile_service
from clusters.sim.controllers.pods import reconcile_pod
from clusters.sim.controllers.replicasets import reconcile_replicaset
from clusters.sim.controllers.runtime import (
    ALL_DAEMONSETS,
    PERSISTENT_VOLUME,
    Handler,
    Runtime,
)
from clusters.sim.controllers.scheduler import Scheduler
from clusters.sim.controllers.statefulsets import reconcile_statefulset
from clusters.sim.controllers.storage import reconcile_claim, reconcile_volume
from clusters.sim.interface import ObjectAPI

__all__ = ["HANDLERS", "run_controllers"]


async def _fan_out_daemonsets(rt: Runtime, _namespace: str, _name: str) -> float | None:
    for ds in await rt.api.list("apps/v1", "DaemonSet"):
        md = ds["metadata"]
        rt.enqueue(("DaemonSet", md.get("namespace", ""), md["name"]))
    return None


HANDLERS: dict[str, Handler] = {
    "Pod": reconcile_pod,
    "ReplicaSet": reconcile_replicaset,
    "Deployment": reconcile_deployment,
    "StatefulSet": reconcile_statefulset,
    "DaemonSet": reconcile_daemonset,
    "Job": reconcile_job,
    "CronJob": reconcile_cronjob,
    "PersistentVolumeClaim": reconcile_claim,
    PERSISTENT_VOLUME: reconcile_volume,
    "Service": reconcile_service,
    "Ingress": reconcile_ingress,
    "HorizontalPodAutoscaler": reconcile_hpa,
    ALL_DAEMONSETS: _fan_out_daemonsets,
}


async def run_controllers(
    api: ObjectAPI, *, ready_delay: float, scheduler: Scheduler | None = None
) -> None:
    """Run one cluster's controllers until cancelled (one call per cluster, on the
    server's event loop). A server passes the ``scheduler`` all its clusters share;
    without one the cluster runs its own."""
    await Runtime(api, ready_delay=ready_delay, handlers=HANDLERS, scheduler=scheduler).run()
