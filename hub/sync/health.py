"""Resource health as Argo CD assesses it (gitops-engine ``pkg/health`` and the bundled Lua
rules for CronJob and CRD), plus the freshness judgement our wave gate adds.

``resource_health`` returns None for kinds without a health check (ConfigMap, Secret, most
CRs): like Argo CD, such resources do not gate waves and do not count in app health.

Custom rules are Python callables in a ``HealthRules`` object that callers pass around; they
are consulted before the built-ins (as Argo's Lua overrides are). No module-level registry.

Freshness (our improvement over Argo's fixed 2 s wave delay, argo-cd#4669): a controller's
status describes the generation it last observed. Right after we write generation N, status
may still describe N-1 and look Healthy. ``is_fresh`` says whether ``status.observedGeneration``
has caught up with the generation we wrote; ``gate_health`` reports Progressing until it has.
Objects without ``observedGeneration`` (Pods, Services, PVCs, Ingresses, ConfigMaps...) are
judged as they are.

App-of-apps: Argo CD removed the built-in health of ``argoproj.io/Application`` in 1.8, so a
parent's waves do not wait for child apps unless a Lua rule is added. gitops-hub ships that
rule (the one Argo's docs suggest: a child's ``status.health``) in ``HealthRules.default()``;
``HealthRules.default(app_of_apps=False)`` gives Argo 1.8+ behaviour.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hub.sync.resources import (
    ANN_HOOK,
    HOOK_FINALIZER,
    HookType,
    ResourceKey,
    annotation_csv,
    group_of,
    ignores_health,
    is_hook,
    is_skip,
)


class HealthStatus(StrEnum):
    HEALTHY = "Healthy"
    SUSPENDED = "Suspended"
    PROGRESSING = "Progressing"
    MISSING = "Missing"
    DEGRADED = "Degraded"
    UNKNOWN = "Unknown"

    @property
    def rank(self) -> int:
        """0 = best; Argo's ``healthOrder``."""
        return _ORDER.index(self)

    def is_worse_than(self, other: HealthStatus) -> bool:
        return self.rank > other.rank


_ORDER = [
    HealthStatus.HEALTHY,
    HealthStatus.SUSPENDED,
    HealthStatus.PROGRESSING,
    HealthStatus.MISSING,
    HealthStatus.DEGRADED,
    HealthStatus.UNKNOWN,
]


@dataclass(frozen=True, kw_only=True)
class Health:
    status: HealthStatus
    message: str = ""
    # How the status counts in app health when it differs (a suspended Job counts as Healthy).
    aggregate_as: HealthStatus | None = None


HealthCheck = Callable[[Mapping[str, Any]], Health | None]

_ARGO_HOOK_FINALIZER = "argocd.argoproj.io/hook-finalizer"


# --------------------------------------------------------------------------- helpers


def _get(obj: Mapping[str, Any], *path: str) -> Any:
    cur: Any = obj
    for p in path:
        # the type test first: a Mapping check is an ABC lookup, and every health check of
        # every watch event walks a dozen paths through plain dicts
        if type(cur) is not dict and not isinstance(cur, Mapping):
            return None
        cur = cur.get(p)
    return cur


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    return default


def _conditions(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    conds = _get(obj, "status", "conditions")
    return [c for c in conds if isinstance(c, Mapping)] if isinstance(conds, list) else []


def _condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for c in _conditions(obj):
        if c.get("type") == ctype:
            return c
    return None


def _generation(obj: Mapping[str, Any]) -> int:
    return _int(_get(obj, "metadata", "generation"))


def _observed(obj: Mapping[str, Any]) -> int:
    return _int(_get(obj, "status", "observedGeneration"))


# --------------------------------------------------------------------------- built-in rules


def deployment_health(obj: Mapping[str, Any]) -> Health:
    if _get(obj, "spec", "paused") is True:
        return Health(status=HealthStatus.SUSPENDED, message="Deployment is paused")
    if _generation(obj) > _observed(obj):
        return Health(
            status=HealthStatus.PROGRESSING,
            message="Waiting for rollout to finish: observed deployment generation less than "
            "desired generation",
        )
    name = _get(obj, "metadata", "name")
    cond = _condition(obj, "Progressing")
    spec_replicas = _get(obj, "spec", "replicas")
    updated = _int(_get(obj, "status", "updatedReplicas"))
    replicas = _int(_get(obj, "status", "replicas"))
    available = _int(_get(obj, "status", "availableReplicas"))
    if cond is not None and cond.get("reason") == "ProgressDeadlineExceeded":
        return Health(
            status=HealthStatus.DEGRADED,
            message=f'Deployment "{name}" exceeded its progress deadline',
        )
    if isinstance(spec_replicas, int) and updated < spec_replicas:
        return Health(
            status=HealthStatus.PROGRESSING,
            message=f"Waiting for rollout to finish: {updated} out of {spec_replicas} new "
            "replicas have been updated...",
        )
    if replicas > updated:
        return Health(
            status=HealthStatus.PROGRESSING,
            message=f"Waiting for rollout to finish: {replicas - updated} old replicas are "
            "pending termination...",
        )
    if available < updated:
        return Health(
            status=HealthStatus.PROGRESSING,
            message=f"Waiting for rollout to finish: {available} of {updated} updated replicas "
            "are available...",
        )
    return Health(status=HealthStatus.HEALTHY)


def statefulset_health(obj: Mapping[str, Any]) -> Health:
    observed = _observed(obj)
    if observed == 0 or _generation(obj) > observed:
        return Health(
            status=HealthStatus.PROGRESSING,
            message="Waiting for statefulset spec update to be observed...",
        )
    spec_replicas = _get(obj, "spec", "replicas")
    ready = _int(_get(obj, "status", "readyReplicas"))
    updated = _int(_get(obj, "status", "updatedReplicas"))
    if isinstance(spec_replicas, int) and ready < spec_replicas:
        return Health(
            status=HealthStatus.PROGRESSING,
            message=f"Waiting for {spec_replicas - ready} pods to be ready...",
        )
    strategy = _get(obj, "spec", "updateStrategy") or {}
    stype = strategy.get("type") if isinstance(strategy, Mapping) else None
    rolling = strategy.get("rollingUpdate") if isinstance(strategy, Mapping) else None
    if stype == "RollingUpdate" and isinstance(rolling, Mapping):
        partition = rolling.get("partition")
        if (
            isinstance(spec_replicas, int)
            and isinstance(partition, int)
            and updated < spec_replicas - partition
        ):
            return Health(
                status=HealthStatus.PROGRESSING,
                message="Waiting for partitioned roll out to finish: "
                f"{updated} out of {spec_replicas - partition} new pods have been updated...",
            )
        return Health(
            status=HealthStatus.HEALTHY,
            message=f"partitioned roll out complete: {updated} new pods have been updated...",
        )
    if stype == "OnDelete":
        return Health(status=HealthStatus.HEALTHY, message=f"statefulset has {ready} ready pods")
    update_rev = _get(obj, "status", "updateRevision")
    current_rev = _get(obj, "status", "currentRevision")
    if update_rev != current_rev:
        return Health(
            status=HealthStatus.PROGRESSING,
            message=f"waiting for statefulset rolling update to complete {updated} pods at "
            f"revision {update_rev}...",
        )
    current = _int(_get(obj, "status", "currentReplicas"))
    return Health(
        status=HealthStatus.HEALTHY,
        message=f"statefulset rolling update complete {current} pods at revision {current_rev}...",
    )


def daemonset_health(obj: Mapping[str, Any]) -> Health:
    if _generation(obj) > _observed(obj):
        return Health(
            status=HealthStatus.PROGRESSING,
            message="Waiting for rollout to finish: observed daemon set generation less than "
            "desired generation",
        )
    desired = _int(_get(obj, "status", "desiredNumberScheduled"))
    updated = _int(_get(obj, "status", "updatedNumberScheduled"))
    available = _int(_get(obj, "status", "numberAvailable"))
    if _get(obj, "spec", "updateStrategy", "type") == "OnDelete":
        return Health(
            status=HealthStatus.HEALTHY,
            message=f"daemon set {updated} out of {desired} new pods have been updated",
        )
    if updated < desired:
        return Health(
            status=HealthStatus.PROGRESSING,
            message=f"Waiting for daemon set rollout to finish: {updated} out of {desired} new "
            "pods have been updated...",
        )
    if available < desired:
        return Health(
            status=HealthStatus.PROGRESSING,
            message=f"Waiting for daemon set rollout to finish: {available} of {desired} updated "
            "pods are available...",
        )
    return Health(status=HealthStatus.HEALTHY)


def replicaset_health(obj: Mapping[str, Any]) -> Health:
    if _generation(obj) > _observed(obj):
        return Health(
            status=HealthStatus.PROGRESSING,
            message="Waiting for rollout to finish: observed replica set generation less than "
            "desired generation",
        )
    failure = _condition(obj, "ReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        return Health(status=HealthStatus.DEGRADED, message=str(failure.get("message") or ""))
    spec_replicas = _get(obj, "spec", "replicas")
    available = _int(_get(obj, "status", "availableReplicas"))
    if isinstance(spec_replicas, int) and available < spec_replicas:
        return Health(
            status=HealthStatus.PROGRESSING,
            message=f"Waiting for rollout to finish: {available} out of {spec_replicas} new "
            "replicas are available...",
        )
    return Health(status=HealthStatus.HEALTHY)


def job_health(obj: Mapping[str, Any]) -> Health:
    failed = complete = suspended = False
    message = fail_message = ""
    for c in _conditions(obj):
        ctype = c.get("type")
        if ctype == "Failed":
            failed = complete = True
            fail_message = str(c.get("message") or "")
        elif ctype == "Complete":
            complete = True
            message = str(c.get("message") or "")
        elif ctype == "Suspended":
            complete = True
            message = str(c.get("message") or "")
            suspended = c.get("status") == "True"
    if not complete:
        return Health(status=HealthStatus.PROGRESSING, message=message)
    if failed:
        return Health(status=HealthStatus.DEGRADED, message=fail_message)
    if suspended:
        return Health(
            status=HealthStatus.SUSPENDED, message=fail_message, aggregate_as=HealthStatus.HEALTHY
        )
    return Health(status=HealthStatus.HEALTHY, message=message)


def _pod_ready(obj: Mapping[str, Any]) -> bool:
    cond = _condition(obj, "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_health(obj: Mapping[str, Any]) -> Health:
    restart = _get(obj, "spec", "restartPolicy") or "Always"
    anns = _get(obj, "metadata", "annotations") or {}
    if (
        restart != "Always"
        and isinstance(anns, Mapping)
        and anns.get("argocd.argoproj.io/ignore-restart-policy") == "true"
        and not is_hook(obj)
    ):
        restart = "Always"
    statuses = _get(obj, "status", "containerStatuses")
    statuses = [s for s in statuses if isinstance(s, Mapping)] if isinstance(statuses, list) else []
    init = _get(obj, "status", "initContainerStatuses")
    init = [s for s in init if isinstance(s, Mapping)] if isinstance(init, list) else []
    pod_message = str(_get(obj, "status", "message") or "")
    if restart == "Always":
        messages = []
        for cs in statuses:
            waiting = _get(cs, "state", "waiting")
            reason = str(waiting.get("reason") or "") if isinstance(waiting, Mapping) else ""
            if isinstance(waiting, Mapping) and (
                reason.startswith("Err") or reason.endswith("Error") or reason.endswith("BackOff")
            ):
                messages.append(str(waiting.get("message") or ""))
        if messages:
            return Health(status=HealthStatus.DEGRADED, message=", ".join(messages))
    phase = _get(obj, "status", "phase")
    if phase == "Pending":
        return Health(status=HealthStatus.PROGRESSING, message=pod_message)
    if phase == "Succeeded":
        return Health(status=HealthStatus.HEALTHY, message=pod_message)
    if phase == "Failed":
        if pod_message:
            return Health(status=HealthStatus.DEGRADED, message=pod_message)
        for cs in [*init, *statuses]:
            term = _get(cs, "state", "terminated")
            if isinstance(term, Mapping):
                if term.get("message"):
                    return Health(status=HealthStatus.DEGRADED, message=str(term["message"]))
                if term.get("reason") == "OOMKilled":
                    return Health(status=HealthStatus.DEGRADED, message="OOMKilled")
                code = _int(term.get("exitCode"))
                if code != 0:
                    return Health(
                        status=HealthStatus.DEGRADED,
                        message=f'container "{cs.get("name")}" failed with exit code {code}',
                    )
        return Health(status=HealthStatus.DEGRADED)
    if phase == "Running":
        if restart == "Always":
            if _pod_ready(obj):
                return Health(status=HealthStatus.HEALTHY, message=pod_message)
            if any(isinstance(_get(cs, "lastState", "terminated"), Mapping) for cs in statuses):
                return Health(status=HealthStatus.DEGRADED, message=pod_message)
            return Health(status=HealthStatus.PROGRESSING, message=pod_message)
        # OnFailure/Never pods are finite (typically hooks): running means not done yet.
        return Health(status=HealthStatus.PROGRESSING, message=pod_message)
    return Health(status=HealthStatus.UNKNOWN, message=pod_message)


def pvc_health(obj: Mapping[str, Any]) -> Health:
    phase = _get(obj, "status", "phase")
    if phase == "Bound":
        return Health(status=HealthStatus.HEALTHY)
    if phase == "Pending":
        return Health(status=HealthStatus.PROGRESSING)
    if phase == "Lost":
        return Health(status=HealthStatus.DEGRADED)
    return Health(status=HealthStatus.UNKNOWN)


def _lb_ingress(obj: Mapping[str, Any]) -> bool:
    ingress = _get(obj, "status", "loadBalancer", "ingress")
    return isinstance(ingress, list) and len(ingress) > 0


def service_health(obj: Mapping[str, Any]) -> Health:
    if _get(obj, "spec", "type") == "LoadBalancer" and not _lb_ingress(obj):
        return Health(status=HealthStatus.PROGRESSING)
    return Health(status=HealthStatus.HEALTHY)


def ingress_health(obj: Mapping[str, Any]) -> Health:
    if _lb_ingress(obj):
        return Health(status=HealthStatus.HEALTHY)
    return Health(status=HealthStatus.PROGRESSING)


def apiservice_health(obj: Mapping[str, Any]) -> Health:
    cond = _condition(obj, "Available")
    if cond is not None:
        message = f"{cond.get('reason') or ''}: {cond.get('message') or ''}"
        if cond.get("status") == "True":
            return Health(status=HealthStatus.HEALTHY, message=message)
        return Health(status=HealthStatus.PROGRESSING, message=message)
    return Health(status=HealthStatus.PROGRESSING, message="Waiting to be processed")


_HPA_DEGRADED = {
    ("AbleToScale", "FailedGetScale"),
    ("AbleToScale", "FailedUpdateScale"),
    ("ScalingActive", "FailedGetResourceMetric"),
    ("ScalingActive", "InvalidSelector"),
}


def hpa_health(obj: Mapping[str, Any]) -> Health:
    """v2: ``status.conditions``; v1: the ``autoscaling.alpha.kubernetes.io/conditions``
    annotation (JSON). First degraded or healthy condition in order wins."""
    waiting = Health(status=HealthStatus.PROGRESSING, message="Waiting to Autoscale")
    conditions: list[Mapping[str, Any]]
    if str(obj.get("apiVersion") or "") == "autoscaling/v1":
        anns = _get(obj, "metadata", "annotations") or {}
        raw = (
            anns.get("autoscaling.alpha.kubernetes.io/conditions")
            if isinstance(anns, Mapping)
            else None
        )
        if raw is None:
            return waiting
        try:
            parsed = json.loads(raw)
        except (TypeError, ValueError):
            return Health(
                status=HealthStatus.UNKNOWN,
                message="failed to convert conditions annotation to typed",
            )
        conditions = (
            [c for c in parsed if isinstance(c, Mapping)] if isinstance(parsed, list) else []
        )
    else:
        conditions = _conditions(obj)
    for c in conditions:
        ctype, reason = c.get("type"), c.get("reason")
        if (ctype, reason) in _HPA_DEGRADED:
            return Health(status=HealthStatus.DEGRADED, message=str(c.get("message") or ""))
        if ctype in ("AbleToScale", "ScalingLimited") and c.get("status") == "True":
            return Health(status=HealthStatus.HEALTHY, message=str(c.get("message") or ""))
    return waiting


def cronjob_health(obj: Mapping[str, Any]) -> Health:
    """Argo's bundled ``batch/CronJob/health.lua`` re-expressed."""
    if _get(obj, "spec", "suspend") is True:
        return Health(status=HealthStatus.SUSPENDED, message="CronJob is Suspended")
    status = obj.get("status")
    if status is None:
        return Health(status=HealthStatus.PROGRESSING, message="Waiting for CronJob")
    last_schedule = _get(obj, "status", "lastScheduleTime")
    if last_schedule is None:
        return Health(status=HealthStatus.HEALTHY, message="CronJob has not been scheduled yet")
    last_success = _get(obj, "status", "lastSuccessfulTime")
    if last_success is None:
        return Health(
            status=HealthStatus.HEALTHY,
            message="The Cronjob never completed succesfully. It may not be healthy",
        )
    active = _get(obj, "status", "active")
    if isinstance(active, list) and active:
        return Health(
            status=HealthStatus.HEALTHY,
            message="The job is running. Its last execution may not have been successful",
        )
    # RFC 3339 UTC timestamps compare correctly as strings, as the Lua rule relies on.
    if str(last_success) < str(last_schedule):
        return Health(
            status=HealthStatus.DEGRADED,
            message="CronJob has not completed its last execution successfully",
        )
    return Health(
        status=HealthStatus.HEALTHY, message="CronJob has completed its last execution successfully"
    )


def crd_health(obj: Mapping[str, Any]) -> Health:
    """Argo's bundled ``CustomResourceDefinition/health.lua`` re-expressed."""
    if _get(obj, "metadata", "deletionTimestamp") is not None:
        return Health(status=HealthStatus.PROGRESSING, message="CRD is terminating")
    conditions = _conditions(obj)
    if not conditions:
        return Health(status=HealthStatus.PROGRESSING, message="Status conditions not found")
    terminating = names_rejected = established = violations = False
    msg = ""
    for c in conditions:
        ctype, cstatus = c.get("type"), c.get("status")
        if ctype == "Terminating" and cstatus == "True":
            terminating, msg = True, str(c.get("message") or "")
        if ctype == "NamesAccepted" and cstatus == "False":
            names_rejected, msg = True, str(c.get("message") or "")
        if ctype == "Established" and cstatus == "True":
            established, msg = True, str(c.get("message") or "")
        if ctype == "NonStructuralSchema" and cstatus == "True":
            violations, msg = True, str(c.get("message") or "")
    if terminating:
        return Health(status=HealthStatus.PROGRESSING, message=f"CRD is terminating: {msg}")
    if names_rejected:
        return Health(
            status=HealthStatus.DEGRADED, message=f"CRD names have not been accepted: {msg}"
        )
    if not established:
        return Health(status=HealthStatus.DEGRADED, message="CRD is not established")
    if violations:
        return Health(status=HealthStatus.DEGRADED, message=f"Schema violations found: {msg}")
    return Health(status=HealthStatus.HEALTHY, message="CRD is healthy")


def application_health(obj: Mapping[str, Any]) -> Health:
    """A child Argo CD Application's own reported health (the rule Argo's docs suggest)."""
    status = _get(obj, "status", "health", "status")
    message = str(_get(obj, "status", "health", "message") or "")
    try:
        return Health(status=HealthStatus(status), message=message)
    except ValueError:
        return Health(status=HealthStatus.PROGRESSING, message=message)


_BUILTIN: dict[tuple[str, str], HealthCheck] = {
    ("apps", "Deployment"): deployment_health,
    ("apps", "StatefulSet"): statefulset_health,
    ("apps", "DaemonSet"): daemonset_health,
    ("apps", "ReplicaSet"): replicaset_health,
    ("batch", "Job"): job_health,
    ("batch", "CronJob"): cronjob_health,
    ("", "Pod"): pod_health,
    ("", "PersistentVolumeClaim"): pvc_health,
    ("", "Service"): service_health,
    ("networking.k8s.io", "Ingress"): ingress_health,
    ("extensions", "Ingress"): ingress_health,
    ("apiregistration.k8s.io", "APIService"): apiservice_health,
    ("autoscaling", "HorizontalPodAutoscaler"): hpa_health,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): crd_health,
}


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True, kw_only=True)
class HealthRules:
    """Health checks by (group, kind). ``custom`` rules win over built-ins; ``"*"`` in a
    custom rule's group or kind matches anything. Immutable: ``with_rule`` returns a copy."""

    custom: tuple[tuple[str, str, HealthCheck], ...] = ()
    builtin: Mapping[tuple[str, str], HealthCheck] = field(default_factory=lambda: dict(_BUILTIN))

    @classmethod
    def default(cls, *, app_of_apps: bool = True) -> HealthRules:
        builtin = dict(_BUILTIN)
        if app_of_apps:
            builtin[("argoproj.io", "Application")] = application_health
        return cls(builtin=builtin)

    def with_rule(self, group: str, kind: str, check: HealthCheck) -> HealthRules:
        return HealthRules(custom=((group, kind, check), *self.custom), builtin=self.builtin)

    def lookup(self, group: str, kind: str) -> list[HealthCheck]:
        """Checks to try in order: matching custom rules, then the built-in one."""
        found = [
            check
            for g, k, check in self.custom
            if (g == "*" or g == group) and (k == "*" or k == kind)
        ]
        builtin = self.builtin.get((group, kind))
        if builtin is not None:
            found.append(builtin)
        return found

    def has_check(self, group: str, kind: str) -> bool:
        return bool(self.lookup(group, kind))


def resource_health(obj: Mapping[str, Any], rules: HealthRules | None = None) -> Health | None:
    """Health of one live object, or None when its kind has no health check.

    A custom rule returning None defers to the next rule; a rule that raises makes the
    status Unknown with the error as message (as Argo does for a failing Lua script).
    """
    rules = rules or HealthRules.default()
    finalizers = _get(obj, "metadata", "finalizers") or []
    hook_finalizer = isinstance(finalizers, list) and (
        HOOK_FINALIZER in finalizers or _ARGO_HOOK_FINALIZER in finalizers
    )
    if _get(obj, "metadata", "deletionTimestamp") is not None and not hook_finalizer:
        return Health(status=HealthStatus.PROGRESSING, message="Pending deletion")
    group = group_of(str(obj.get("apiVersion") or ""))
    kind = str(obj.get("kind") or "")
    for check in rules.lookup(group, kind):
        try:
            result = check(obj)
        except Exception as exc:  # a user rule is arbitrary code; report, don't crash the sync
            return Health(status=HealthStatus.UNKNOWN, message=f"health check failed: {exc}")
        if result is not None:
            return result
    return None


# --------------------------------------------------------------------------- freshness


def is_fresh(obj: Mapping[str, Any], *, written_generation: int | None = None) -> bool:
    """Has the object's controller observed the generation we wrote?

    ``written_generation`` is ``metadata.generation`` from our apply's response; without it
    the live object's own generation is used. Objects whose status has no
    ``observedGeneration`` are judged as they are (there is nothing to wait for).
    """
    observed = _get(obj, "status", "observedGeneration")
    if isinstance(observed, bool) or not isinstance(observed, int):
        return True
    target = written_generation if written_generation is not None else _generation(obj)
    return observed >= target


def _crd_pending(obj: Mapping[str, Any]) -> bool:
    if obj.get("kind") != "CustomResourceDefinition":
        return False
    if group_of(str(obj.get("apiVersion") or "")) != "apiextensions.k8s.io":
        return False
    decided = {
        ("Established", "True"),
        ("NamesAccepted", "False"),
        ("NonStructuralSchema", "True"),
        ("Terminating", "True"),
    }
    return not any((c.get("type"), c.get("status")) in decided for c in _conditions(obj))


def gate_health(
    obj: Mapping[str, Any] | None,
    rules: HealthRules | None = None,
    *,
    written_generation: int | None = None,
) -> Health | None:
    """Health as the wave gate should judge it: Missing when the object is not there yet,
    Progressing while status is stale, else ``resource_health`` (None: no check, do not wait).
    """
    if obj is None:
        return Health(status=HealthStatus.MISSING, message="not found in the cluster yet")
    if _crd_pending(obj):
        # Argo waits for a new CRD to be Established right after applying it
        # (ensureCRDReady); its Lua rule would call the short gap before that Degraded and
        # fail the wave (argo-cd#25084). The gate waits instead.
        return Health(
            status=HealthStatus.PROGRESSING, message="waiting for the CRD to be established"
        )
    if not is_fresh(obj, written_generation=written_generation):
        return Health(
            status=HealthStatus.PROGRESSING,
            message=(
                "waiting for the controller to observe generation "
                f"{written_generation if written_generation is not None else _generation(obj)} "
                f"(status is for {_observed(obj)})"
            ),
        )
    return resource_health(obj, rules)


class Outcome(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


def task_outcome(health: Health | None, *, hook: bool) -> Outcome:
    """What the wave gate makes of an applied object's (gated) health, as gitops-engine does:
    no health check or Healthy -> Succeeded; Degraded -> Failed; a hook that is Unknown has
    failed too; anything else keeps the wave waiting (Argo has no default sync timeout, so
    the executor's per-sync timeout is what ends the wait)."""
    if health is None:
        return Outcome.SUCCEEDED
    status = health.status
    if status is HealthStatus.HEALTHY:
        return Outcome.SUCCEEDED
    if status is HealthStatus.DEGRADED or (hook and status is HealthStatus.UNKNOWN):
        return Outcome.FAILED
    return Outcome.RUNNING


# --------------------------------------------------------------------------- app health


@dataclass(frozen=True, kw_only=True)
class ResourceHealth:
    key: ResourceKey
    health: Health | None  # None: no health check for this kind


@dataclass(frozen=True, kw_only=True)
class AppHealth:
    status: HealthStatus
    resources: tuple[ResourceHealth, ...]


def _is_argo_ignorable(obj: Mapping[str, Any]) -> bool:
    """Argo's ``ignore.Ignore``: a hook annotation naming no hook type at all."""
    return (
        is_hook(obj)
        and not any(v in {t.value for t in HookType} for v in annotation_csv(obj, ANN_HOOK))
        and not annotation_csv(obj, "helm.sh/hook")
    )


def app_health(
    pairs: Iterable[tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]],
    rules: HealthRules | None = None,
) -> AppHealth:
    """App health from (desired, live) pairs of the app's direct managed resources, as Argo's
    ``setApplicationHealth``: the worst status, skipping Skip/hook objects, resources with
    ``ignore-healthcheck``, kinds without a check, missing resources (OutOfSync reports them)
    and child Applications that are Missing/Unknown; Missing when none of them is live."""
    rules = rules or HealthRules.default()
    status = HealthStatus.HEALTHY
    contains = contains_live = False
    results: list[ResourceHealth] = []
    for desired, live in pairs:
        if desired is not None and (is_skip(desired) or is_hook(desired)):
            continue
        if live is not None and (is_hook(live) or _is_argo_ignorable(live)):
            continue
        obj = live if live is not None else desired
        assert obj is not None
        key = ResourceKey.of(obj)
        contains = True
        if live is None:
            results.append(ResourceHealth(key=key, health=Health(status=HealthStatus.MISSING)))
            continue
        contains_live = True
        if ignores_health(live):
            continue
        health = resource_health(live, rules)
        results.append(ResourceHealth(key=key, health=health))
        if health is None:
            continue
        effective = health.aggregate_as or health.status
        if key.group_kind == ("argoproj.io", "Application") and effective in (
            HealthStatus.MISSING,
            HealthStatus.UNKNOWN,
        ):
            continue
        if effective.is_worse_than(status):
            status = effective
    if contains and not contains_live and HealthStatus.MISSING.is_worse_than(status):
        status = HealthStatus.MISSING
    return AppHealth(status=status, resources=tuple(sorted(results, key=lambda r: r.key)))
