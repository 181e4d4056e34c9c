"""The ReplicaSet controller: keep spec.replicas active pods, report their readiness."""

from __future__ import annotations

from typing import Any

from clusters.sim.clock import now_epoch
from clusters.sim.controllers._util import (
    availability,
    int_field,
    is_terminating,
    owned_by,
    owner_reference,
    pod_is_active,
    prune_zero,
    spec_of,
    stable_int,
    status_of,
)
from clusters.sim.controllers.runtime import Runtime
from clusters.sim.controllers.templates import create_named, deletion_order, pod_from_template
from clusters.sim.interface import Obj


async def reconcile_replicaset(rt: Runtime, namespace: str, name: str) -> float | None:
    api = rt.api
    rs = await api.get("apps/v1", "ReplicaSet", namespace, name)
    if rs is None or is_terminating(rs):
        return None
    spec = spec_of(rs)
    desired = int_field(spec, "replicas", 1)
    template = spec.get("template") or {}
    pods = [
        p for p in await rt.select("v1", "Pod", namespace, spec.get("selector")) if owned_by(p, rs)
    ]
    active = [p for p in pods if pod_is_active(p)]

    if len(active) < desired:
        nodes = await rt.nodes()
        for _ in range(desired - len(active)):
            pod = pod_from_template(
                template, name="", namespace=namespace, owner_ref=owner_reference(rs)
            )
            index = stable_int(namespace, name, str(len(active)))
            pod["spec"]["nodeName"] = nodes[index % len(nodes)].name
            active.append(await create_named(rt, pod, name))
    elif len(active) > desired:
        victims = deletion_order(active)[: len(active) - desired]
        for pod in victims:
            await api.delete("v1", "Pod", namespace, pod["metadata"]["name"])
        gone = {p["metadata"]["name"] for p in victims}
        active = [p for p in active if p["metadata"]["name"] not in gone]

    status, wait = replicaset_status(rs, active)
    await rt.write_status(rs, status)
    return wait


def replicaset_status(rs: Obj, active: list[Obj]) -> tuple[dict[str, Any], float | None]:
    """The ReplicaSetStatus for these active pods, and seconds until one becomes available."""
    spec = spec_of(rs)
    min_ready = int_field(spec, "minReadySeconds", 0)
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    now = now_epoch()
    labeled = 0
    for pod in active:
        labels = pod.get("metadata", {}).get("labels") or {}
        if all(labels.get(k) == v for k, v in template_labels.items()):
            labeled += 1
    ready, available, wait = availability(active, min_ready, now)
    status: dict[str, Any] = prune_zero(
        {
            "replicas": len(active),
            "fullyLabeledReplicas": labeled,
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": rs.get("metadata", {}).get("generation", 0),
        },
        keep=("replicas",),
    )
    conditions = status_of(rs).get("conditions")
    if conditions:
        status["conditions"] = conditions
    return status, (wait + 0.01 if wait is not None else None)
