"""HorizontalPodAutoscalers (autoscaling/v2) without a metrics pipeline.

There are no metrics, so the recommendation is the target's current replica count: the
HPA only acts when that count is outside [minReplicas, maxReplicas], scaling the target to
the bound through an update (as a real HPA would through the scale subresource). Status and
conditions are those of a healthy HPA (AbleToScale, ScalingActive, ScalingLimited); a
missing target reports AbleToScale False, FailedGetScale.
"""

from __future__ import annotations

from typing import Any

from clusters.sim.clock import rfc3339
from clusters.sim.controllers._util import (
    int_field,
    is_terminating,
    spec_of,
    status_of,
)
from clusters.sim.controllers.runtime import Runtime, error_reason
from clusters.sim.interface import Obj
from clusters.sim.readonly import thaw

_RESOURCES = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "ReplicaSet": "replicasets",
}


def metric_description(spec: dict[str, Any]) -> str:
    """How the real HPA names the metric that produced its recommendation."""
    metrics = spec.get("metrics") or []
    if not metrics:
        return "cpu resource utilization (percentage of request)"
    metric = metrics[0]
    kind = metric.get("type")
    if kind == "Resource":
        resource = metric.get("resource") or {}
        if (resource.get("target") or {}).get("type") == "Utilization":
            return f"{resource.get('name')} resource utilization (percentage of request)"
        return f"{resource.get('name')} resource"
    if kind == "ContainerResource":
        resource = metric.get("containerResource") or {}
        return f"{resource.get('name')} container resource utilization (percentage of request)"
    if kind == "Pods":
        return f"pods metric {(metric.get('pods') or {}).get('metric', {}).get('name')}"
    if kind == "Object":
        return f"object metric {(metric.get('object') or {}).get('metric', {}).get('name')}"
    if kind == "External":
        return f"external metric {(metric.get('external') or {}).get('metric', {}).get('name')}"
    return "metrics"


def _conditions(
    old: list[dict[str, Any]], wanted: list[tuple[str, str, str, str]]
) -> list[dict[str, Any]]:
    now = rfc3339()
    before = {c.get("type"): c for c in old}
    result = []
    for kind, status, reason, message in wanted:
        prev = before.get(kind)
        keep = prev is not None and prev.get("status") == status
        result.append(
            {
                "type": kind,
                "status": status,
                "lastTransitionTime": prev.get("lastTransitionTime") if keep and prev else now,
                "reason": reason,
                "message": message,
            }
        )
    return result


async def reconcile_hpa(rt: Runtime, namespace: str, name: str) -> float | None:
    api = rt.api
    hpa = await api.get("autoscaling/v2", "HorizontalPodAutoscaler", namespace, name)
    if hpa is None or is_terminating(hpa):
        return None
    spec = spec_of(hpa)
    old = status_of(hpa)
    ref = spec.get("scaleTargetRef") or {}
    kind = str(ref.get("kind", "Deployment"))
    try:
        target = await api.get(
            str(ref.get("apiVersion", "apps/v1")), kind, namespace, str(ref.get("name", ""))
        )
    except Exception as exc:
        if error_reason(exc) != "NotFound":
            raise
        target = None  # a kind the server does not serve: no scale to get either
    old_conditions = [c for c in old.get("conditions") or [] if isinstance(c, dict)]
    status: dict[str, Any] = {"desiredReplicas": 0}
    if hpa["metadata"].get("generation"):
        status["observedGeneration"] = hpa["metadata"]["generation"]
    if old.get("lastScaleTime"):
        status["lastScaleTime"] = old["lastScaleTime"]
    if old.get("currentMetrics"):
        status["currentMetrics"] = old["currentMetrics"]

    if target is None:
        resource = _RESOURCES.get(kind, f"{kind.lower()}s")
        group = str(ref.get("apiVersion", "apps/v1")).partition("/")[0]
        message = (
            "the HPA controller was unable to get the target's current scale: "
            f'{resource}.{group} "{ref.get("name")}" not found'
        )
        status["conditions"] = _conditions(
            old_conditions, [("AbleToScale", "False", "FailedGetScale", message)]
        )
        status["currentReplicas"] = int_field(old, "currentReplicas", 0)
        await rt.write_status(hpa, _clean(status))
        return None

    current = int_field(spec_of(target), "replicas", 1)
    low = int_field(spec, "minReplicas", 1)
    high = int_field(spec, "maxReplicas", max(low, 1))
    if current == 0 and low > 0:
        status.update({"currentReplicas": 0, "desiredReplicas": 0})
        status["conditions"] = _conditions(
            old_conditions,
            [
                (
                    "AbleToScale",
                    "True",
                    "SucceededGetScale",
                    "the HPA controller was able to get the target's current scale",
                ),
                (
                    "ScalingActive",
                    "False",
                    "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero",
                ),
            ],
        )
        await rt.write_status(hpa, _clean(status))
        return None

    desired = min(max(current, low), high)
    able: tuple[str, str, str, str]
    if desired != current:
        scaled: Obj = thaw(target)
        scaled["spec"]["replicas"] = desired
        await api.update(scaled)
        status["lastScaleTime"] = rfc3339()
        able = (
            "AbleToScale",
            "True",
            "SucceededRescale",
            f"the HPA controller was able to update the target scale to {desired}",
        )
    else:
        able = ("AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size")
    if current < low:
        limited = (
            "ScalingLimited",
            "True",
            "TooFewReplicas",
            "the desired replica count is less than the minimum replica count",
        )
    elif current > high:
        limited = (
            "ScalingLimited",
            "True",
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        )
    else:
        limited = (
            "ScalingLimited",
            "False",
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
        )
    active = (
        "ScalingActive",
        "True",
        "ValidMetricFound",
        f"the HPA was able to successfully calculate a replica count from {metric_description(spec)}",
    )
    status.update({"currentReplicas": current, "desiredReplicas": desired})
    status["conditions"] = _conditions(old_conditions, [able, active, limited])
    await rt.write_status(hpa, _clean(status))
    return None


def _clean(status: dict[str, Any]) -> dict[str, Any]:
    if not status.get("currentReplicas"):
        status.pop("currentReplicas", None)
    return status
