"""The diff against objects shaped by the simulator's server-side apply and defaulting.

``clusters.sim`` reproduces what a kube-apiserver returns (structured-merge-diff
managedFields, SetDefaults_*, Go omitempty); both functions used here are pure. This pins
the contract the sync engine relies on: what we apply compares Synced, what Git drops while
our manager still owns it is drift, and a re-apply converges.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusters.sim import defaults, ssa
from hub.sync.diff import SyncStatus, compare_resource
from hub.sync.resources import FIELD_MANAGER, with_tracking_id


def apply(
    desired: dict[str, Any], live: dict[str, Any] | None = None, *, manager: str = FIELD_MANAGER
) -> dict[str, Any]:
    obj: dict[str, Any] = ssa.server_side_apply(
        live,
        with_tracking_id(desired, "payments"),
        manager=manager,
        force=True,
        now="2026-11-21T20:00:00Z",
    )
    defaults.apply_defaults(
        obj, allocate_cluster_ip=lambda: "10.96.0.10", allocate_node_port=lambda: 30443
    )
    return obj


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "payments", "namespace": "payments"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "payments"}},
            "template": {
                "metadata": {"labels": {"app": "payments"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example/payments:1.4.2",
                            "env": [{"name": "MODE", "value": "live"}],
                            "ports": [{"containerPort": 8080}],
                            "resources": {"requests": {"cpu": "1000m", "memory": "1024Mi"}},
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/etc/app", "readOnly": False}
                            ],
                        }
                    ],
                    "volumes": [{"name": "config", "configMap": {"name": "payments"}}],
                },
            },
        },
    }


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "payments", "namespace": "payments"},
    "spec": {"selector": {"app": "payments"}, "ports": [{"port": 80, "targetPort": 8080}]},
}


NS = "payments"
OTHERS: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
    {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": NS},
        "data": {"a": "1"},
    },
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": NS},
        "stringData": {"p": "x"},
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "r", "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": NS}],
    },
    {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "i", "namespace": NS},
        "spec": {
            "rules": [
                {
                    "host": "pay.example",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": "payments", "port": {"number": 80}}
                                },
                            }
                        ]
                    },
                }
            ]
        },
    },
    {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h", "namespace": NS},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "payments"},
            "minReplicas": 2,
            "maxReplicas": 5,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    },
    {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate", "namespace": NS},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "m", "image": "x", "command": ["migrate"]}],
                }
            }
        },
    },
    {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": NS},
        "spec": {
            "serviceName": "db",
            "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "pg"}]},
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "lb", "namespace": NS},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": "payments"},
            "ports": [{"name": "https", "port": 443, "targetPort": "https"}],
        },
    },
]


@pytest.mark.parametrize(
    "desired",
    [deployment(), SERVICE, *OTHERS],
    ids=["deployment", "service", *(str(o["kind"]) for o in OTHERS)],
)
def test_what_we_applied_compares_synced(desired: dict[str, Any]) -> None:
    result = compare_resource(desired, apply(desired))
    assert result.status is SyncStatus.SYNCED, result.diff_text()


def test_a_field_git_dropped_is_drift_until_reapplied() -> None:
    live = apply(deployment())
    dropped = deployment()
    del dropped["spec"]["template"]["spec"]["containers"][0]["env"]
    result = compare_resource(dropped, live)
    assert result.status is SyncStatus.OUT_OF_SYNC
    assert "-      - env:\n-        - name: MODE\n-          value: live\n" in result.diff_text()
    assert compare_resource(dropped, apply(dropped, live)).status is SyncStatus.SYNCED


def test_a_change_by_another_manager_is_drift() -> None:
    live = apply(deployment())
    scaled = copy.deepcopy(deployment())
    scaled["spec"]["replicas"] = 5
    other = ssa.server_side_apply(
        live, scaled, manager="kubectl", force=True, now="2026-11-21T20:05:00Z"
    )
    result = compare_resource(deployment(), other)
    assert result.status is SyncStatus.OUT_OF_SYNC
    assert "-  replicas: 5\n+  replicas: 3\n" in result.diff_text()
