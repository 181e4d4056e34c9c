"""Stamping pods out of pod templates, and choosing which pods go first on scale-down."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from clusters.sim.controllers._util import (
    parse_time,
    pod_is_ready,
    random_suffix,
    status_of,
)
from clusters.sim.controllers.runtime import Runtime, error_reason
from clusters.sim.interface import Obj
from clusters.sim.readonly import thaw

_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def pod_from_template(
    template: Mapping[str, Any],
    *,
    name: str,
    namespace: str,
    owner_ref: Mapping[str, Any],
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    node_name: str | None = None,
    spec_overrides: Mapping[str, Any] | None = None,
) -> Obj:
    """A Pod manifest from a template, the way the workload controllers build one."""
    tmeta = template.get("metadata") or {}
    pod_labels = {**(tmeta.get("labels") or {}), **(labels or {})}
    pod_annotations = {**(tmeta.get("annotations") or {}), **(annotations or {})}
    spec = thaw(dict(template.get("spec") or {}))
    spec.update(spec_overrides or {})
    if node_name:
        spec["nodeName"] = node_name
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": pod_labels,
        "ownerReferences": [dict(owner_ref)],
    }
    if pod_annotations:
        metadata["annotations"] = pod_annotations
    if tmeta.get("finalizers"):
        metadata["finalizers"] = list(tmeta["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


async def create_named(rt: Runtime, obj: Obj, prefix: str) -> Obj:
    """Create with a generated ``prefix-xxxxx`` name, drawing again if the name is taken."""
    for attempt in range(5):
        obj["metadata"]["name"] = f"{prefix}-{random_suffix()}"
        try:
            return await rt.api.create(obj)
        except Exception as exc:
            if error_reason(exc) != "AlreadyExists" or attempt == 4:
                raise
    raise AssertionError("unreachable")


def deletion_order(pods: Sequence[Obj]) -> list[Obj]:
    """Pods to remove first on scale-down, like controller.ActivePods: unscheduled before
    scheduled, pending before running, not ready before ready, more restarts first,
    newer before older."""

    def key(pod: Obj) -> tuple[int, int, int, int, float, str]:
        status = status_of(pod)
        scheduled = 1 if (pod.get("spec") or {}).get("nodeName") else 0
        phase = _PHASE_RANK.get(str(status.get("phase")), 0)
        ready = 1 if pod_is_ready(pod) else 0
        restarts = max(
            (int(c.get("restartCount", 0)) for c in status.get("containerStatuses") or []),
            default=0,
        )
        created = parse_time(pod.get("metadata", {}).get("creationTimestamp")) or 0.0
        return (scheduled, phase, ready, -restarts, -created, pod["metadata"]["name"])

    return sorted(pods, key=key)
