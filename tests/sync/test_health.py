"""Per-kind health as Argo CD assesses it, freshness, custom rules and app health."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hub.sync.health import (
    Health,
    HealthRules,
    HealthStatus,
    Outcome,
    app_health,
    gate_health,
    is_fresh,
    resource_health,
    task_outcome,
)

H, P, D, S, U, M = (
    HealthStatus.HEALTHY,
    HealthStatus.PROGRESSING,
    HealthStatus.DEGRADED,
    HealthStatus.SUSPENDED,
    HealthStatus.UNKNOWN,
    HealthStatus.MISSING,
)


def k(
    api: str, kind: str, *, spec: Any = None, status: Any = None, gen: int = 1, **meta: Any
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": "x", "namespace": "n", "generation": gen, **meta},
    }
    if spec is not None:
        obj["spec"] = spec
    if status is not None:
        obj["status"] = status
    return obj


def deploy(
    status: dict[str, Any], *, gen: int = 2, replicas: int = 3, paused: bool = False
) -> dict[str, Any]:
    spec: dict[str, Any] = {"replicas": replicas}
    if paused:
        spec["paused"] = True
    return k("apps/v1", "Deployment", spec=spec, status=status, gen=gen)


ROLLED = {
    "observedGeneration": 2,
    "replicas": 3,
    "updatedReplicas": 3,
    "readyReplicas": 3,
    "availableReplicas": 3,
}


def running_pod(
    ready: bool, *, restart: str = "Always", waiting: str | None = None, restarted: bool = False
) -> dict[str, Any]:
    cs: dict[str, Any] = {
        "name": "app",
        "ready": ready,
        "restartCount": 1 if restarted else 0,
        "state": {"running": {}},
    }
    if waiting:
        cs["state"] = {"waiting": {"reason": waiting, "message": f"back-off: {waiting}"}}
    if restarted:
        cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error"}}
    return k(
        "v1",
        "Pod",
        spec={"restartPolicy": restart, "containers": [{"name": "app"}]},
        status={
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [cs],
        },
    )


CASES: list[tuple[str, dict[str, Any], HealthStatus]] = [
    ("deployment rolled out", deploy(ROLLED), H),
    ("deployment paused", deploy(ROLLED, paused=True), S),
    ("deployment generation not observed", deploy(ROLLED | {"observedGeneration": 1}), P),
    ("deployment updating", deploy(ROLLED | {"updatedReplicas": 1}), P),
    ("deployment old replicas terminating", deploy(ROLLED | {"replicas": 4}), P),
    ("deployment not available", deploy(ROLLED | {"availableReplicas": 2}), P),
    (
        "deployment progress deadline exceeded",
        deploy(
            ROLLED
            | {
                "availableReplicas": 0,
                "conditions": [
                    {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
                ],
            }
        ),
        D,
    ),
    (
        "statefulset never observed",
        k("apps/v1", "StatefulSet", spec={"replicas": 2}, status={"observedGeneration": 0}),
        P,
    ),
    (
        "statefulset not ready",
        k(
            "apps/v1",
            "StatefulSet",
            spec={"replicas": 2},
            status={"observedGeneration": 1, "readyReplicas": 1},
        ),
        P,
    ),
    (
        "statefulset partition pending",
        k(
            "apps/v1",
            "StatefulSet",
            spec={
                "replicas": 3,
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
            },
            status={"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 1},
        ),
        P,
    ),
    (
        "statefulset revision rolling",
        k(
            "apps/v1",
            "StatefulSet",
            spec={"replicas": 2, "updateStrategy": {"type": "RollingUpdate"}},
            status={
                "observedGeneration": 1,
                "readyReplicas": 2,
                "currentRevision": "a",
                "updateRevision": "b",
            },
        ),
        P,
    ),
    (
        "statefulset done",
        k(
            "apps/v1",
            "StatefulSet",
            spec={"replicas": 2},
            status={
                "observedGeneration": 1,
                "readyReplicas": 2,
                "currentRevision": "a",
                "updateRevision": "a",
            },
        ),
        H,
    ),
    (
        "daemonset updating",
        k(
            "apps/v1",
            "DaemonSet",
            status={
                "observedGeneration": 1,
                "desiredNumberScheduled": 3,
                "updatedNumberScheduled": 2,
                "numberAvailable": 3,
            },
        ),
        P,
    ),
    (
        "daemonset on delete",
        k(
            "apps/v1",
            "DaemonSet",
            spec={"updateStrategy": {"type": "OnDelete"}},
            status={"observedGeneration": 1, "desiredNumberScheduled": 3},
        ),
        H,
    ),
    (
        "daemonset done",
        k(
            "apps/v1",
            "DaemonSet",
            status={
                "observedGeneration": 1,
                "desiredNumberScheduled": 3,
                "updatedNumberScheduled": 3,
                "numberAvailable": 3,
            },
        ),
        H,
    ),
    (
        "replicaset failure",
        k(
            "apps/v1",
            "ReplicaSet",
            spec={"replicas": 1},
            status={
                "observedGeneration": 1,
                "conditions": [{"type": "ReplicaFailure", "status": "True", "message": "quota"}],
            },
        ),
        D,
    ),
    (
        "replicaset short",
        k(
            "apps/v1",
            "ReplicaSet",
            spec={"replicas": 2},
            status={"observedGeneration": 1, "availableReplicas": 1},
        ),
        P,
    ),
    ("job running", k("batch/v1", "Job", status={"active": 1}), P),
    (
        "job complete",
        k(
            "batch/v1",
            "Job",
            status={"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
        ),
        H,
    ),
    (
        "job failed",
        k(
            "batch/v1",
            "Job",
            status={
                "failed": 6,
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    }
                ],
            },
        ),
        D,
    ),
    (
        "job suspended",
        k("batch/v1", "Job", status={"conditions": [{"type": "Suspended", "status": "True"}]}),
        S,
    ),
    ("pod ready", running_pod(True), H),
    ("pod crash looping", running_pod(False, waiting="CrashLoopBackOff", restarted=True), D),
    ("pod image pull error", running_pod(False, waiting="ErrImagePull"), D),
    ("pod not ready after a restart", running_pod(False, restarted=True), D),
    ("pod starting", running_pod(False), P),
    ("finite pod running", running_pod(False, restart="Never", waiting="ImagePullBackOff"), P),
    ("pod pending", k("v1", "Pod", status={"phase": "Pending"}), P),
    ("pod succeeded", k("v1", "Pod", status={"phase": "Succeeded"}), H),
    (
        "pod failed",
        k(
            "v1",
            "Pod",
            status={
                "phase": "Failed",
                "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 2}}}],
            },
        ),
        D,
    ),
    ("pod phase unknown", k("v1", "Pod", status={"phase": "Unknown"}), U),
    ("pvc bound", k("v1", "PersistentVolumeClaim", status={"phase": "Bound"}), H),
    ("pvc pending", k("v1", "PersistentVolumeClaim", status={"phase": "Pending"}), P),
    ("pvc lost", k("v1", "PersistentVolumeClaim", status={"phase": "Lost"}), D),
    ("service cluster ip", k("v1", "Service", spec={"type": "ClusterIP"}), H),
    (
        "service lb pending",
        k("v1", "Service", spec={"type": "LoadBalancer"}, status={"loadBalancer": {}}),
        P,
    ),
    (
        "service lb ready",
        k(
            "v1",
            "Service",
            spec={"type": "LoadBalancer"},
            status={"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}]}},
        ),
        H,
    ),
    ("ingress no address", k("networking.k8s.io/v1", "Ingress", status={"loadBalancer": {}}), P),
    (
        "ingress address",
        k(
            "networking.k8s.io/v1",
            "Ingress",
            status={"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}},
        ),
        H,
    ),
    (
        "apiservice available",
        k(
            "apiregistration.k8s.io/v1",
            "APIService",
            status={"conditions": [{"type": "Available", "status": "True"}]},
        ),
        H,
    ),
    (
        "apiservice unavailable is never degraded",
        k(
            "apiregistration.k8s.io/v1",
            "APIService",
            status={
                "conditions": [
                    {"type": "Available", "status": "False", "reason": "MissingEndpoints"}
                ]
            },
        ),
        P,
    ),
    (
        "hpa v2 able to scale",
        k(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            status={
                "conditions": [
                    {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}
                ]
            },
        ),
        H,
    ),
    (
        "hpa v2 failed metric",
        k(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            status={
                "conditions": [
                    {
                        "type": "ScalingActive",
                        "status": "False",
                        "reason": "FailedGetResourceMetric",
                    }
                ]
            },
        ),
        D,
    ),
    ("hpa v2 no conditions", k("autoscaling/v2", "HorizontalPodAutoscaler", status={}), P),
    (
        "hpa v1 annotation",
        k(
            "autoscaling/v1",
            "HorizontalPodAutoscaler",
            annotations={
                "autoscaling.alpha.kubernetes.io/conditions": json.dumps(
                    [{"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale"}]
                )
            },
        ),
        H,
    ),
    (
        "hpa v1 degraded annotation",
        k(
            "autoscaling/v1",
            "HorizontalPodAutoscaler",
            annotations={
                "autoscaling.alpha.kubernetes.io/conditions": json.dumps(
                    [{"type": "AbleToScale", "status": "False", "reason": "FailedGetScale"}]
                )
            },
        ),
        D,
    ),
    ("hpa v1 without annotation", k("autoscaling/v1", "HorizontalPodAutoscaler"), P),
    ("cronjob suspended", k("batch/v1", "CronJob", spec={"suspend": True}, status={}), S),
    ("cronjob no status yet", k("batch/v1", "CronJob", spec={}), P),
    ("cronjob never scheduled", k("batch/v1", "CronJob", spec={}, status={}), H),
    (
        "cronjob last run failed",
        k(
            "batch/v1",
            "CronJob",
            spec={},
            status={
                "lastScheduleTime": "2026-11-21T10:00:00Z",
                "lastSuccessfulTime": "2026-11-21T09:00:00Z",
            },
        ),
        D,
    ),
    (
        "cronjob running",
        k(
            "batch/v1",
            "CronJob",
            spec={},
            status={
                "lastScheduleTime": "2026-11-21T10:00:00Z",
                "lastSuccessfulTime": "2026-11-21T09:00:00Z",
                "active": [{"name": "j"}],
            },
        ),
        H,
    ),
    (
        "cronjob last run succeeded",
        k(
            "batch/v1",
            "CronJob",
            spec={},
            status={
                "lastScheduleTime": "2026-11-21T10:00:00Z",
                "lastSuccessfulTime": "2026-11-21T10:00:05Z",
            },
        ),
        H,
    ),
    (
        "crd without conditions",
        k("apiextensions.k8s.io/v1", "CustomResourceDefinition", status={}),
        P,
    ),
    (
        "crd established",
        k(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            status={
                "conditions": [
                    {"type": "NamesAccepted", "status": "True"},
                    {"type": "Established", "status": "True"},
                ]
            },
        ),
        H,
    ),
    (
        "crd names rejected",
        k(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            status={
                "conditions": [{"type": "NamesAccepted", "status": "False", "message": "taken"}]
            },
        ),
        D,
    ),
    (
        "child application",
        k("argoproj.io/v1alpha1", "Application", status={"health": {"status": "Degraded"}}),
        D,
    ),
    ("child application without status", k("argoproj.io/v1alpha1", "Application"), P),
    (
        "being deleted",
        k(
            "v1",
            "PersistentVolumeClaim",
            status={"phase": "Bound"},
            deletionTimestamp="2026-11-21T10:00:00Z",
        ),
        P,
    ),
]


@pytest.mark.parametrize(
    ("obj", "expected"), [(o, e) for _, o, e in CASES], ids=[c[0] for c in CASES]
)
def test_builtin_health_rules(obj: dict[str, Any], expected: HealthStatus) -> None:
    health = resource_health(obj)
    assert health is not None
    assert health.status is expected, health.message


@pytest.mark.parametrize(
    "obj",
    [
        k("v1", "ConfigMap"),
        k("v1", "Secret"),
        k("example.com/v1", "Widget", status={"phase": "Failed"}),
    ],
)
def test_kinds_without_a_health_check_have_none(obj: dict[str, Any]) -> None:
    assert resource_health(obj) is None


def test_statuses_are_ordered_best_to_worst() -> None:
    assert sorted([U, D, M, P, S, H], key=lambda s: s.rank) == [H, S, P, M, D, U]
    assert D.is_worse_than(P) and not H.is_worse_than(S)


def test_app_of_apps_health_can_be_switched_off_like_argo_cd_1_8() -> None:
    child = k("argoproj.io/v1alpha1", "Application", status={"health": {"status": "Degraded"}})
    assert resource_health(child, HealthRules.default(app_of_apps=False)) is None


def test_custom_rules_are_consulted_before_builtins_and_may_defer() -> None:
    def widget(obj: Any) -> Health | None:
        phase = (obj.get("status") or {}).get("phase")
        return Health(status=HealthStatus.DEGRADED if phase == "Failed" else HealthStatus.HEALTHY)

    def ingress_without_address_is_fine(obj: Any) -> Health | None:
        return Health(status=HealthStatus.HEALTHY, message="on-prem ingress")

    base = HealthRules.default()
    rules = base.with_rule("example.com", "Widget", widget).with_rule(
        "networking.k8s.io", "Ingress", ingress_without_address_is_fine
    )
    widget_obj = k("example.com/v1", "Widget", status={"phase": "Failed"})
    assert resource_health(widget_obj, rules) == Health(status=HealthStatus.DEGRADED)
    ingress = k("networking.k8s.io/v1", "Ingress", status={"loadBalancer": {}})
    assert resource_health(ingress, rules) == Health(status=H, message="on-prem ingress")
    # the original registry is untouched: nothing global to reset
    assert resource_health(ingress, base) == Health(status=P)
    deferring = base.with_rule("*", "*", lambda obj: None)
    assert resource_health(ingress, deferring) == Health(status=P)


def test_a_failing_custom_rule_reports_unknown() -> None:
    def broken(obj: Any) -> Health | None:
        raise KeyError("status")

    health = resource_health(
        k("example.com/v1", "Widget"),
        HealthRules.default().with_rule("example.com", "Widget", broken),
    )
    assert health is not None and health.status is U and "health check failed" in health.message


@pytest.mark.parametrize(
    ("status", "written", "fresh"),
    [
        ({"observedGeneration": 3}, 3, True),
        ({"observedGeneration": 2}, 3, False),
        ({"observedGeneration": 4}, 3, True),
        ({"phase": "Bound"}, 3, True),  # nothing to wait for
        (None, None, True),
    ],
)
def test_freshness_compares_observed_generation_with_what_we_wrote(
    status: dict[str, Any] | None, written: int | None, fresh: bool
) -> None:
    assert (
        is_fresh(k("apps/v1", "Deployment", status=status, gen=3), written_generation=written)
        is fresh
    )


def test_gate_waits_on_stale_status_that_looks_healthy() -> None:
    # A Deployment we just updated to generation 3 whose status still describes 2 and is
    # fully rolled out: Argo's 2 s delay exists because this looked Healthy (argo-cd#4669).
    stale = deploy(ROLLED, gen=2)
    assert resource_health(stale) == Health(status=H)
    gated = gate_health(stale, written_generation=3)
    assert gated is not None and gated.status is P and "observe generation 3" in gated.message
    assert gate_health(
        deploy(ROLLED | {"observedGeneration": 3}, gen=3), written_generation=3
    ) == Health(status=H)
    assert gate_health(None) == Health(status=M, message="not found in the cluster yet")
    assert gate_health(k("v1", "ConfigMap")) is None


def test_gate_waits_for_a_new_crd_to_be_established_instead_of_failing_the_wave() -> None:
    accepting = k(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        status={"conditions": [{"type": "NamesAccepted", "status": "True"}]},
    )
    assert resource_health(accepting) == Health(status=D, message="CRD is not established")
    gated = gate_health(accepting)
    assert gated is not None and gated.status is P
    established = k(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        status={
            "conditions": [
                {"type": "NamesAccepted", "status": "True"},
                {"type": "Established", "status": "True"},
            ]
        },
    )
    assert gate_health(established) == Health(status=H, message="CRD is healthy")
    rejected = k(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        status={"conditions": [{"type": "NamesAccepted", "status": "False", "message": "taken"}]},
    )
    gated = gate_health(rejected)
    assert gated is not None and gated.status is D


def test_app_health_is_the_worst_of_its_resources_with_argos_exclusions() -> None:
    degraded_pod = running_pod(False, waiting="CrashLoopBackOff")
    hook = k(
        "batch/v1",
        "Job",
        annotations={"argocd.argoproj.io/hook": "PreSync"},
        status={"conditions": [{"type": "Failed", "status": "True"}]},
    )
    ignored = k(
        "batch/v1",
        "Job",
        annotations={"argocd.argoproj.io/ignore-healthcheck": "true"},
        status={"conditions": [{"type": "Failed", "status": "True"}]},
    )
    missing_child_app = k(
        "argoproj.io/v1alpha1", "Application", status={"health": {"status": "Unknown"}}
    )
    cm = k("v1", "ConfigMap")
    assert app_health([(None, deploy(ROLLED)), (cm, cm)]).status is H
    assert (
        app_health(
            [(None, deploy(ROLLED)), (None, hook), (None, ignored), (None, missing_child_app)]
        ).status
        is H
    )
    assert app_health([(None, deploy(ROLLED)), (None, degraded_pod)]).status is D
    # a declared resource that is not live yet does not lower health (OutOfSync says it) ...
    assert app_health([(deploy(ROLLED), None), (cm, cm)]).status is H
    # ... unless nothing at all is live
    assert app_health([(deploy(ROLLED), None)]).status is M
    assert app_health([]).status is H
    # hooks in Git are run, not managed: they never count, even before they exist
    assert app_health([(hook, None), (cm, cm)]).status is H
    suspended_job = k(
        "batch/v1", "Job", status={"conditions": [{"type": "Suspended", "status": "True"}]}
    )
    assert app_health([(None, suspended_job)]).status is H


@pytest.mark.parametrize(
    ("health", "hook", "outcome"),
    [
        (None, False, Outcome.SUCCEEDED),
        (None, True, Outcome.SUCCEEDED),
        (Health(status=H), False, Outcome.SUCCEEDED),
        (Health(status=D), False, Outcome.FAILED),
        (Health(status=D), True, Outcome.FAILED),
        (Health(status=U), True, Outcome.FAILED),
        (Health(status=U), False, Outcome.RUNNING),
        (Health(status=P), True, Outcome.RUNNING),
        (Health(status=S), False, Outcome.RUNNING),
        (Health(status=M), False, Outcome.RUNNING),
    ],
)
def test_task_outcome_follows_gitops_engine(
    health: Health | None, hook: bool, outcome: Outcome
) -> None:
    assert task_outcome(health, hook=hook) is outcome
