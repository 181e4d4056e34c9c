"""The CronJob controller: a Job ``<cronjob>-<scheduled minute since epoch>`` per run.

Honours suspend, concurrencyPolicy (Allow, Forbid, Replace), startingDeadlineSeconds,
timeZone and the success/failure history limits. Only the most recent missed run starts.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clusters.sim.clock import now_epoch, rfc3339
from clusters.sim.controllers._util import (
    int_field,
    is_terminating,
    owned_by,
    owner_reference,
    parse_time,
    spec_of,
    status_of,
)
from clusters.sim.controllers.cron import CronError, most_recent, parse_schedule
from clusters.sim.controllers.jobs import finished_at, is_finished
from clusters.sim.controllers.runtime import Runtime, error_reason
from clusters.sim.interface import Obj
from clusters.sim.readonly import thaw

log = logging.getLogger("clusters.sim.controllers")
SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"


def job_name(cronjob: str, scheduled: datetime) -> str:
    return f"{cronjob}-{int(scheduled.timestamp()) // 60}"


def _zone(name: object) -> tzinfo:
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("unknown CronJob timeZone %r; using UTC", name)
    return UTC


def _reference(job: Obj) -> dict[str, Any]:
    md = job["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": md["name"],
        "namespace": md.get("namespace", ""),
        "uid": md.get("uid", ""),
        "resourceVersion": md.get("resourceVersion", ""),
    }


async def reconcile_cronjob(rt: Runtime, namespace: str, name: str) -> float | None:
    api = rt.api
    cj = await api.get("batch/v1", "CronJob", namespace, name)
    if cj is None or is_terminating(cj):
        return None
    spec = spec_of(cj)
    old = status_of(cj)
    try:
        schedule = parse_schedule(str(spec.get("schedule", "")))
    except CronError as exc:
        log.warning(
            "%s: CronJob %s/%s: unparseable schedule: %s", api.cluster, namespace, name, exc
        )
        return None
    zone = _zone(spec.get("timeZone"))

    jobs = [j for j in await api.list("batch/v1", "Job", namespace) if owned_by(j, cj)]
    active = [j for j in jobs if not is_finished(j) and not is_terminating(j)]
    last_success = parse_time(old.get("lastSuccessfulTime"))
    for job in jobs:
        if is_finished(job) == "Complete":
            done = finished_at(job)
            if done is not None and (last_success is None or done > last_success):
                last_success = done

    # History limits: keep the newest finished Jobs of each outcome.
    for outcome, key, default in (
        ("Complete", "successfulJobsHistoryLimit", 3),
        ("Failed", "failedJobsHistoryLimit", 1),
    ):
        limit = int_field(spec, key, default)
        finished = sorted(
            (j for j in jobs if is_finished(j) == outcome and not is_terminating(j)),
            key=lambda j: finished_at(j) or 0.0,
        )
        for job in finished[: max(len(finished) - limit, 0)]:
            await api.delete("batch/v1", "Job", namespace, job["metadata"]["name"])

    now = datetime.now(zone)
    wait: float | None = None
    last_schedule = old.get("lastScheduleTime")
    if not spec.get("suspend"):
        since = parse_time(last_schedule) or parse_time(cj["metadata"].get("creationTimestamp"))
        after = datetime.fromtimestamp(since if since is not None else now_epoch(), zone)
        due = most_recent(schedule, after, now)
        deadline = spec.get("startingDeadlineSeconds")
        if (
            due is not None
            and isinstance(deadline, int)
            and due < now - timedelta(seconds=deadline)
        ):
            due = None  # too late to start this run
        policy = spec.get("concurrencyPolicy", "Allow")
        if due is not None and not (policy == "Forbid" and active):
            if policy == "Replace":
                for job in active:
                    await api.delete("batch/v1", "Job", namespace, job["metadata"]["name"])
                active = []
            created = await _start(rt, cj, due)
            if created is not None:
                active.append(created)
            last_schedule = rfc3339(due.timestamp())
        try:
            wait = (schedule.next_after(now) - now).total_seconds() + 0.05
        except CronError:
            wait = None

    status: dict[str, Any] = {}
    if active:
        status["active"] = [_reference(j) for j in active]
    if last_schedule:
        status["lastScheduleTime"] = last_schedule
    if last_success is not None:
        status["lastSuccessfulTime"] = rfc3339(last_success)
    await rt.write_status(cj, status)
    return wait


async def _start(rt: Runtime, cj: Obj, scheduled: datetime) -> Obj | None:
    template = spec_of(cj).get("jobTemplate") or {}
    tmeta = template.get("metadata") or {}
    md = cj["metadata"]
    manifest: Obj = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(md["name"], scheduled),
            "namespace": md.get("namespace", ""),
            "labels": dict(tmeta.get("labels") or {}),
            "annotations": {
                **(tmeta.get("annotations") or {}),
                SCHEDULED_ANNOTATION: scheduled.isoformat().replace("+00:00", "Z"),
            },
            "ownerReferences": [owner_reference(cj)],
        },
        "spec": thaw(template.get("spec") or {}),
    }
    try:
        return await rt.api.create(manifest)
    except Exception as exc:
        if error_reason(exc) == "AlreadyExists":
            return None  # this run was started before
        raise
