"""The Job controller: run pods until ``completions`` succeed or ``backoffLimit`` is spent.

Conditions as Kubernetes 1.31+ writes them: SuccessCriteriaMet then Complete
(CompletionsReached), FailureTarget then Failed (BackoffLimitExceeded or DeadlineExceeded),
Suspended (JobSuspended / JobResumed). Failed pods are retried at once (the pods themselves
take ``ready_delay`` to fail, so retries are that far apart) instead of Kubernetes'
exponential back-off. Pods of a finished Job stay until the Job is deleted (the server's
garbage collector removes them); ``ttlSecondsAfterFinished`` deletes the Job. The
``batch.kubernetes.io/job-tracking`` finalizer is not used.
"""

from __future__ import annotations

from typing import Any

from clusters.sim.clock import now_epoch, rfc3339
from clusters.sim.controllers._util import (
    find_condition,
    int_field,
    is_terminating,
    owned_by,
    owner_reference,
    parse_time,
    pod_is_active,
    pod_is_ready,
    spec_of,
    status_of,
)
from clusters.sim.controllers.runtime import Runtime
from clusters.sim.controllers.templates import create_named, pod_from_template
from clusters.sim.interface import Obj

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"


def _condition(kind: str, reason: str, message: str, status: str = "True") -> dict[str, Any]:
    now = rfc3339()
    return {
        "type": kind,
        "status": status,
        "lastProbeTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def is_finished(job: Obj) -> str | None:
    """ "Complete" or "Failed" once the Job has finished, else None."""
    for cond in status_of(job).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def finished_at(job: Obj) -> float | None:
    status = status_of(job)
    if status.get("completionTime"):
        return parse_time(status["completionTime"])
    cond = find_condition(status.get("conditions") or [], "Failed")
    return parse_time(cond.get("lastTransitionTime")) if cond else None


async def reconcile_job(rt: Runtime, namespace: str, name: str) -> float | None:
    api = rt.api
    job = await api.get("batch/v1", "Job", namespace, name)
    if job is None or is_terminating(job):
        return None
    spec = spec_of(job)
    old = status_of(job)

    if is_finished(job):
        ttl = spec.get("ttlSecondsAfterFinished")
        if not isinstance(ttl, int):
            return None
        done = finished_at(job) or now_epoch()
        ttl_left = done + ttl - now_epoch()
        if ttl_left > 0:
            return ttl_left + 0.01
        await api.delete("batch/v1", "Job", namespace, name)
        return None

    parallelism = int_field(spec, "parallelism", 1)
    completions: int | None = (
        spec.get("completions") if isinstance(spec.get("completions"), int) else None
    )
    backoff_limit = int_field(spec, "backoffLimit", 6)
    indexed = spec.get("completionMode") == "Indexed"
    suspended = bool(spec.get("suspend"))

    mine = {"batch.kubernetes.io/controller-uid": job["metadata"].get("uid", "")}
    pods = [p for p in await rt.select("v1", "Pod", namespace, mine) if owned_by(p, job)]
    active = [p for p in pods if pod_is_active(p)]
    succeeded_pods = [p for p in pods if status_of(p).get("phase") == "Succeeded"]
    failed = sum(1 for p in pods if status_of(p).get("phase") == "Failed")
    conditions: list[dict[str, Any]] = [dict(c) for c in old.get("conditions") or []]
    status: dict[str, Any] = {}
    start = old.get("startTime")
    wait: float | None = None

    async def remove(victims: list[Obj]) -> None:
        for pod in victims:
            await api.delete("v1", "Pod", namespace, pod["metadata"]["name"])

    suspended_cond = find_condition(conditions, "Suspended")
    if suspended:
        await remove(active)
        active = []
        if not (suspended_cond and suspended_cond.get("status") == "True"):
            conditions = [c for c in conditions if c.get("type") != "Suspended"]
            conditions.append(_condition("Suspended", "JobSuspended", "Job suspended"))
        start = None
    else:
        if suspended_cond and suspended_cond.get("status") == "True":
            conditions = [c for c in conditions if c.get("type") != "Suspended"]
            conditions.append(_condition("Suspended", "JobResumed", "Job resumed", status="False"))
            start = None
        start = start or rfc3339()

    succeeded = len(succeeded_pods)
    if indexed:
        done_indexes = {
            (p["metadata"].get("annotations") or {}).get(INDEX_ANNOTATION) for p in succeeded_pods
        }
        succeeded = len({i for i in done_indexes if i is not None})

    finished_ok = (
        succeeded >= completions if completions is not None else succeeded > 0 and not active
    )
    deadline = spec.get("activeDeadlineSeconds")
    started = parse_time(start)

    if not suspended and finished_ok:
        await remove(active)
        active = []
        message = "Reached expected number of succeeded pods"
        conditions += [
            _condition("SuccessCriteriaMet", "CompletionsReached", message),
            _condition("Complete", "CompletionsReached", message),
        ]
        status["completionTime"] = rfc3339()
    elif not suspended and failed > backoff_limit:
        await remove(active)
        active = []
        message = "Job has reached the specified backoff limit"
        conditions += [
            _condition("FailureTarget", "BackoffLimitExceeded", message),
            _condition("Failed", "BackoffLimitExceeded", message),
        ]
    elif (
        not suspended
        and isinstance(deadline, int)
        and started is not None
        and now_epoch() - started >= deadline
    ):
        await remove(active)
        active = []
        message = "Job was active longer than specified deadline"
        conditions += [
            _condition("FailureTarget", "DeadlineExceeded", message),
            _condition("Failed", "DeadlineExceeded", message),
        ]
    elif not suspended:
        if isinstance(deadline, int) and started is not None:
            wait = started + deadline - now_epoch() + 0.01
        remaining = (completions - succeeded) if completions is not None else parallelism
        want = min(parallelism, max(remaining, 0))
        if completions is None and succeeded > 0:
            want = 0  # a work queue: once one pod succeeded, no new pods start
        if len(active) < want:
            nodes = await rt.nodes()
            busy_indexes = {
                (p["metadata"].get("annotations") or {}).get(INDEX_ANNOTATION)
                for p in active + succeeded_pods
            }
            free = (
                [i for i in range(completions or 0) if str(i) not in busy_indexes]
                if indexed
                else []
            )
            for n in range(want - len(active)):
                labels = {
                    "batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
                    "batch.kubernetes.io/job-name": name,
                    "controller-uid": job["metadata"]["uid"],
                    "job-name": name,
                }
                annotations: dict[str, str] = {}
                prefix = name
                if indexed:
                    if not free:
                        break
                    index = str(free.pop(0))
                    labels[INDEX_LABEL] = index
                    annotations[INDEX_ANNOTATION] = index
                    prefix = f"{name}-{index}"
                pod = pod_from_template(
                    spec.get("template") or {},
                    name="",
                    namespace=namespace,
                    owner_ref=owner_reference(job),
                    labels=labels,
                    annotations=annotations,
                    node_name=nodes[(len(pods) + n) % len(nodes)].name,
                )
                active.append(await create_named(rt, pod, prefix))
        elif len(active) > want:
            await remove(active[want:])
            active = active[:want]

    status.update(
        {
            "active": len(active),
            "ready": sum(1 for p in active if pod_is_ready(p)),
            "succeeded": succeeded,
            "failed": failed,
            "terminating": 0,
        }
    )
    if start and not suspended:
        status["startTime"] = start
    elif old.get("startTime") and suspended:
        pass  # suspending clears startTime, as Kubernetes does
    if status.get("completionTime") is None and old.get("completionTime"):
        status["completionTime"] = old["completionTime"]
    if conditions:
        status["conditions"] = conditions
    status["uncountedTerminatedPods"] = {}
    # omitempty counters; ready and terminating are pointers and always shown
    for key in ("active", "succeeded", "failed"):
        if status.get(key) == 0:
            del status[key]
    await rt.write_status(job, status)
    if is_finished({"status": status}) and isinstance(spec.get("ttlSecondsAfterFinished"), int):
        return float(spec["ttlSecondsAfterFinished"]) + 0.01
    return wait
