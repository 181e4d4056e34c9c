"""The DaemonSet controller: one pod per Node (node selectors and taints are not simulated).

A RollingUpdate replaces pods of an old template ``maxUnavailable`` at a time (default 1),
counting pods that are not yet available; OnDelete leaves them.
"""

from __future__ import annotations

from typing import Any

from clusters.sim.clock import now_epoch
from clusters.sim.controllers._util import (
    availability,
    int_field,
    int_or_percent,
    is_terminating,
    owned_by,
    owner_reference,
    pod_available_at,
    pod_is_active,
    prune_zero,
    spec_of,
    status_of,
    template_hash,
)
from clusters.sim.controllers.revisions import sync_revisions
from clusters.sim.controllers.runtime import Runtime
from clusters.sim.controllers.templates import create_named, pod_from_template
from clusters.sim.interface import Obj

REVISION_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"


async def reconcile_daemonset(rt: Runtime, namespace: str, name: str) -> float | None:
    api = rt.api
    ds = await api.get("apps/v1", "DaemonSet", namespace, name)
    if ds is None or is_terminating(ds):
        return None
    spec = spec_of(ds)
    template = spec.get("template") or {}
    revision = template_hash(template, int_field(status_of(ds), "collisionCount", 0))
    min_ready = int_field(spec, "minReadySeconds", 0)
    nodes = await rt.nodes()
    node_names = {n.name for n in nodes}

    by_node: dict[str, list[Obj]] = {}
    for pod in await rt.select("v1", "Pod", namespace, spec.get("selector")):
        if owned_by(pod, ds) and pod_is_active(pod):
            by_node.setdefault(str((pod.get("spec") or {}).get("nodeName", "")), []).append(pod)

    # Pods on nodes that are gone, and duplicates on one node, are removed.
    for node_name, pods in list(by_node.items()):
        extra = pods if node_name not in node_names else pods[1:]
        for pod in extra:
            await api.delete("v1", "Pod", namespace, pod["metadata"]["name"])
        if node_name not in node_names:
            del by_node[node_name]
        else:
            by_node[node_name] = pods[:1]

    for node in nodes:
        if node.name in by_node:
            continue
        pod = pod_from_template(
            template,
            name="",
            namespace=namespace,
            owner_ref=owner_reference(ds),
            labels={
                REVISION_LABEL: revision,
                GENERATION_LABEL: str(ds["metadata"].get("generation", 1)),
            },
            node_name=node.name,
        )
        by_node[node.name] = [await create_named(rt, pod, name)]

    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        rolling = strategy.get("rollingUpdate") or {}
        budget = max(
            int_or_percent(rolling.get("maxUnavailable"), len(nodes), round_up=True, default="1"),
            1,
        )
        now = now_epoch()
        unavailable = sum(
            1
            for pods in by_node.values()
            if (at := pod_available_at(pods[0], min_ready)) is None or at > now
        )
        outdated = [
            pods[0]
            for pods in by_node.values()
            if (pods[0]["metadata"].get("labels") or {}).get(REVISION_LABEL) != revision
        ]
        for pod in outdated[: max(budget - unavailable, 0)]:
            await api.delete("v1", "Pod", namespace, pod["metadata"]["name"])
            del by_node[pod["spec"]["nodeName"]]

    in_use = {
        f"{name}-{(pods[0]['metadata'].get('labels') or {}).get(REVISION_LABEL)}"
        for pods in by_node.values()
    }
    await sync_revisions(rt, ds, template, revision, keep=in_use)
    status, wait = _status(ds, by_node, len(nodes), revision)
    await rt.write_status(ds, status)
    return wait


def _status(
    ds: Obj, by_node: dict[str, list[Obj]], desired: int, revision: str
) -> tuple[dict[str, Any], float | None]:
    min_ready = int_field(spec_of(ds), "minReadySeconds", 0)
    now = now_epoch()
    first = [pods[0] for pods in by_node.values()]
    updated = sum(
        (pod["metadata"].get("labels") or {}).get(REVISION_LABEL) == revision for pod in first
    )
    ready, available, wait = availability(first, min_ready, now)
    status = prune_zero(
        {
            "currentNumberScheduled": len(by_node),
            "numberMisscheduled": 0,
            "desiredNumberScheduled": desired,
            "numberReady": ready,
            "observedGeneration": ds["metadata"].get("generation", 0),
            "updatedNumberScheduled": updated,
            "numberAvailable": available,
            "numberUnavailable": desired - available,
        },
        keep=(
            "currentNumberScheduled",
            "numberMisscheduled",
            "desiredNumberScheduled",
            "numberReady",
        ),
    )
    conditions = status_of(ds).get("conditions")
    if conditions:
        status["conditions"] = conditions
    return status, (wait + 0.01 if wait is not None else None)
