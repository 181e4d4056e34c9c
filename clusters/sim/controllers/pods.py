"""The kubelet of a simulated cluster (with the scheduler's one job, picking a node).

A pod is scheduled at once (``spec.nodeName``), reports ``Pending`` with its containers
``ContainerCreating``, and ``ready_delay`` seconds after it was first seen it runs:

- long-running pods (restartPolicy Always) become Running and Ready;
- finite pods (restartPolicy Never or OnFailure) go straight to Succeeded (exit 0);
- an image tag containing ``crashloop`` or ``fail`` makes the container exit 1: finite pods
  end Failed, long-running ones stay Running but not Ready, waiting in CrashLoopBackOff with
  a growing restartCount (back-off doubling from ready_delay, capped at 5 minutes).

Probes are not run: readiness is the delay alone, so tests stay fast whatever the
manifests say. Graceful termination is not simulated: a pod with a deletionTimestamp and no
finalizers is deleted for good at once.
"""

from __future__ import annotations

from typing import Any, Literal

from clusters.sim.clock import rfc3339
from clusters.sim.controllers._util import (
    fake_digest,
    fake_ip,
    go_duration,
    normalize_image,
    pod_fault,
    spec_of,
    stable_int,
    status_of,
)
from clusters.sim.controllers.runtime import Runtime
from clusters.sim.defaults import qos_class
from clusters.sim.interface import Obj

Mode = Literal["pending", "running", "succeeded", "failed", "crashloop"]

_CONDITION_ORDER = (
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
)
_MAX_BACKOFF = 300.0


def backoff(rt: Runtime, restarts: int) -> float:
    """Seconds a crash-looping container waits before restart number ``restarts + 1``."""
    base = max(rt.ready_delay, 0.05)
    return float(min(base * 2.0 ** max(restarts - 1, 0), _MAX_BACKOFF))


async def reconcile_pod(rt: Runtime, namespace: str, name: str) -> float | None:
    api = rt.api
    path = f"Pod/{namespace}/{name}"
    pod = await api.get("v1", "Pod", namespace, name)
    if pod is None:
        rt.forget(path)
        return None
    md = pod["metadata"]
    if md.get("deletionTimestamp"):
        rt.forget(path)
        if not md.get("finalizers"):
            await api.delete("v1", "Pod", namespace, name)
        return None
    status = status_of(pod)
    phase = status.get("phase")
    if phase in ("Succeeded", "Failed"):
        rt.forget(path)
        return None

    spec = spec_of(pod)
    nodes = await rt.nodes()
    if not spec.get("nodeName"):
        node = nodes[stable_int(namespace, name) % len(nodes)]
        pod = await api.update({**pod, "spec": {**spec, "nodeName": node.name}})
        spec = spec_of(pod)
    node_name = str(spec["nodeName"])
    host_ip = next(
        (n.ip for n in nodes if n.name == node_name), fake_ip("172.18", api.cluster, node_name)
    )

    if phase != "Running":
        waited = rt.waited(path, str(md.get("uid", "")))
        if waited < rt.ready_delay:
            if phase != "Pending" or not status.get("conditions"):
                await rt.write_status(pod, pod_status(pod, "pending", host_ip=host_ip))
            return rt.ready_delay - waited

    fault = pod_fault(spec)
    finite = spec.get("restartPolicy", "Always") in ("Never", "OnFailure")
    if finite:
        mode: Mode = "failed" if fault else "succeeded"
        await rt.write_status(pod, pod_status(pod, mode, host_ip=host_ip))
        rt.forget(path)
        return None
    if fault is None:
        if not (phase == "Running" and _all_ready(pod)):
            await rt.write_status(pod, pod_status(pod, "running", host_ip=host_ip))
        rt.forget(path)
        return None

    # Crash loop: the container keeps exiting 1 and the kubelet keeps restarting it.
    now = rt.clock()
    restarts = _restarts(pod)
    if phase != "Running" or restarts == 0:
        restarts = 1
        await rt.write_status(
            pod, pod_status(pod, "crashloop", host_ip=host_ip, restarts=1, wait=backoff(rt, 1))
        )
        rt.restart_at[path] = now + backoff(rt, 1)
    due = rt.restart_at.setdefault(path, now + backoff(rt, restarts))
    if now >= due:
        restarts += 1
        await rt.write_status(
            pod,
            pod_status(
                pod, "crashloop", host_ip=host_ip, restarts=restarts, wait=backoff(rt, restarts)
            ),
        )
        due = now + backoff(rt, restarts)
        rt.restart_at[path] = due
    return due - now


def _restarts(pod: Obj) -> int:
    return max(
        (int(c.get("restartCount", 0)) for c in status_of(pod).get("containerStatuses") or []),
        default=0,
    )


def _all_ready(pod: Obj) -> bool:
    statuses = status_of(pod).get("containerStatuses") or []
    return bool(statuses) and all(c.get("ready") for c in statuses)


def pod_status(
    pod: Obj, mode: Mode, *, host_ip: str, restarts: int = 0, wait: float = 0.0
) -> dict[str, Any]:
    """The status a kubelet would report for this pod in this state."""
    md = pod["metadata"]
    spec = spec_of(pod)
    old = status_of(pod)
    now = rfc3339()
    uid = str(md.get("uid", ""))
    started_at = old.get("startTime") or now
    pod_ip = fake_ip("10.244", str(md.get("namespace", "")), str(md.get("name", "")), uid)
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    names = [str(c.get("name", "")) for c in containers]

    ready = mode == "running"
    sandbox = mode in ("running", "crashloop")
    finished = mode in ("succeeded", "failed")
    not_ready_reason = "PodCompleted" if mode == "succeeded" else "ContainersNotReady"
    not_ready_msg = (
        None if mode == "succeeded" else f"containers with unready status: [{' '.join(names)}]"
    )
    if mode == "failed":
        not_ready_reason = "PodFailed"
        not_ready_msg = None
    wanted: dict[str, tuple[str, str | None, str | None]] = {
        "PodReadyToStartContainers": ("True" if sandbox else "False", None, None),
        "Initialized": ("True", "PodCompleted" if finished else None, None),
        "Ready": ("True", None, None) if ready else ("False", not_ready_reason, not_ready_msg),
        "ContainersReady": ("True", None, None)
        if ready
        else ("False", not_ready_reason, not_ready_msg),
        "PodScheduled": ("True", None, None),
    }
    previous = {c.get("type"): c for c in old.get("conditions") or [] if isinstance(c, dict)}
    conditions = []
    for kind in _CONDITION_ORDER:
        value, reason, message = wanted[kind]
        before = previous.get(kind)
        since = (
            before.get("lastTransitionTime") if before and before.get("status") == value else now
        )
        cond: dict[str, Any] = {
            "type": kind,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": since or now,
        }
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        conditions.append(cond)

    status: dict[str, Any] = {
        "phase": {
            "pending": "Pending",
            "running": "Running",
            "crashloop": "Running",
            "succeeded": "Succeeded",
            "failed": "Failed",
        }[mode],
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": started_at,
        "qosClass": old.get("qosClass") or qos_class(spec),
    }
    if mode != "pending":
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    old_statuses = {
        c.get("name"): c for c in old.get("containerStatuses") or [] if isinstance(c, dict)
    }
    pod_ref = f"{md.get('name')}_{md.get('namespace')}({uid})"
    status["containerStatuses"] = [
        _container_status(
            c,
            mode,
            uid=uid,
            now=now,
            restarts=restarts,
            wait=wait,
            pod_ref=pod_ref,
            before=old_statuses.get(c.get("name")),
        )
        for c in containers
    ]
    init = [c for c in spec.get("initContainers") or [] if isinstance(c, dict)]
    if init:
        # Init containers are not simulated beyond having run to completion.
        init_mode: Mode = "pending" if mode == "pending" else "succeeded"
        status["initContainerStatuses"] = [
            _container_status(
                c, init_mode, uid=uid, now=now, restarts=0, wait=0.0, pod_ref=pod_ref, before=None
            )
            for c in init
        ]
    return status


def _container_status(
    container: dict[str, Any],
    mode: Mode,
    *,
    uid: str,
    now: str,
    restarts: int,
    wait: float,
    pod_ref: str,
    before: dict[str, Any] | None,
) -> dict[str, Any]:
    name = str(container.get("name", ""))
    image = str(container.get("image", ""))
    full = normalize_image(image)
    repository = full.split("@", 1)[0].rsplit(":", 1)[0] if ":" in full.rsplit("/", 1)[-1] else full
    result: dict[str, Any] = {
        "name": name,
        "image": full,
        "imageID": "",
        "ready": mode == "running",
        "restartCount": restarts,
        "started": mode == "running",
        "state": {},
        "lastState": {},
    }
    if mode == "pending":
        result["state"] = {"waiting": {"reason": "ContainerCreating"}}
        return result
    result["imageID"] = f"{repository}@sha256:{fake_digest(full)}"
    container_id = f"containerd://{fake_digest(uid, name, str(restarts))}"
    result["containerID"] = container_id
    previous_start = ((before or {}).get("state") or {}).get("running", {}).get("startedAt")
    if mode == "running":
        result["state"] = {"running": {"startedAt": previous_start or now}}
    elif mode in ("succeeded", "failed"):
        result["state"] = {
            "terminated": {
                "exitCode": 0 if mode == "succeeded" else 1,
                "reason": "Completed" if mode == "succeeded" else "Error",
                "startedAt": previous_start or now,
                "finishedAt": now,
                "containerID": container_id,
            }
        }
    else:  # crashloop
        result["state"] = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": (
                    f"back-off {go_duration(wait)} restarting failed container={name} pod={pod_ref}"
                ),
            }
        }
        result["lastState"] = {
            "terminated": {
                "exitCode": 1,
                "reason": "Error",
                "startedAt": now,
                "finishedAt": now,
                "containerID": container_id,
            }
        }
    return result
