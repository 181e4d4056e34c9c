"""Per-kind structure knowledge shared by strategic merge patch and server-side apply.

A real API server knows every field of every built-in type from its OpenAPI schema. The
simulator only needs the parts where merging differs from the obvious: lists that are keyed
maps (and by which keys), lists that are sets of primitives, and maps or structs that are
atomic (owned and replaced as a whole). Everything else is "deduced" the way
structured-merge-diff deduces an untyped value: maps merge field by field, lists are atomic,
and strategic merge patch replaces lists.

Two notions live side by side because the server keeps both: the strategic-merge-patch
metadata (``patchStrategy``/``patchMergeKey`` struct tags) and the server-side-apply list
types (``x-kubernetes-list-type``/``x-kubernetes-list-map-keys``). They usually agree but not
always: container ports merge by ``containerPort`` in a strategic merge patch, yet are keyed
by ``[containerPort, protocol]`` for apply; Job conditions merge by ``type`` but are atomic
for apply.

The table is built once at import; lookups are dict reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ListRelation = Literal["map", "set", "atomic"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MapNode:
    """A JSON object: a struct or a free-form map, merged field by field unless atomic.

    ``fields`` names only the children whose type is not deduced from their value.
    """

    fields: Mapping[str, Node] = field(default_factory=dict)
    atomic: bool = False
    # SMP honours ``$retainKeys`` on such structs (Deployment strategy, pod volumes); the
    # directive itself is processed wherever it appears, as the server does.
    retain_keys: bool = False

    def child(self, name: str) -> Node | None:
        return self.fields.get(name)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListNode:
    """A JSON array with its apply relation and its strategic-merge-patch strategy."""

    relation: ListRelation = "atomic"
    keys: tuple[str, ...] = ()
    elem: MapNode | None = None
    # Strategic merge patch: merge (by ``smp_key`` for maps, as a set for primitives) or
    # replace the whole list (the default for lists without a patch strategy).
    smp_merge: bool = False
    smp_key: str = ""


Node = MapNode | ListNode

ATOMIC = MapNode(atomic=True)
DEDUCED = MapNode()
ATOMIC_LIST = ListNode()


def keyed(*keys: str, elem: MapNode | None = None, smp_key: str | None = None) -> ListNode:
    """A list-map for apply that strategic merge patch merges by its (first) key."""
    return ListNode(
        relation="map",
        keys=keys,
        elem=elem or DEDUCED,
        smp_merge=True,
        smp_key=keys[0] if smp_key is None else smp_key,
    )


def atomic_merged(smp_key: str) -> ListNode:
    """Atomic for apply, yet merged by a key in strategic merge patch (e.g. Job conditions)."""
    return ListNode(relation="atomic", smp_merge=True, smp_key=smp_key)


SET = ListNode(relation="set", smp_merge=True)

# --- shared building blocks -------------------------------------------------------------

OBJECT_META = MapNode(
    fields={
        "finalizers": SET,
        "ownerReferences": keyed("uid"),
    }
)

CONDITIONS = keyed("type")

_ENV_VAR = MapNode(
    fields={
        "valueFrom": MapNode(
            fields={
                "configMapKeyRef": ATOMIC,
                "secretKeyRef": ATOMIC,
                "fieldRef": ATOMIC,
                "resourceFieldRef": ATOMIC,
            }
        )
    }
)

CONTAINER = MapNode(
    fields={
        "ports": keyed("containerPort", "protocol"),
        "env": keyed("name", elem=_ENV_VAR),
        "volumeMounts": keyed("mountPath"),
        "volumeDevices": keyed("devicePath"),
    }
)

_VOLUME = MapNode(
    retain_keys=True,
    fields={
        "csi": MapNode(fields={"nodePublishSecretRef": ATOMIC}),
        "persistentVolumeClaim": DEDUCED,
    },
)

POD_SPEC = MapNode(
    fields={
        "containers": keyed("name", elem=CONTAINER),
        "initContainers": keyed("name", elem=CONTAINER),
        "ephemeralContainers": keyed("name", elem=CONTAINER),
        "volumes": keyed("name", elem=_VOLUME),
        # LocalObjectReference is an atomic struct; as a list-map element it is owned whole.
        "imagePullSecrets": keyed("name", elem=ATOMIC),
        "hostAliases": keyed("ip"),
        "topologySpreadConstraints": keyed("topologyKey", "whenUnsatisfiable"),
        "schedulingGates": keyed("name"),
        "resourceClaims": keyed("name"),
        "securityContext": DEDUCED,
    }
)

POD_TEMPLATE = MapNode(fields={"metadata": OBJECT_META, "spec": POD_SPEC})

POD_STATUS = MapNode(fields={"conditions": CONDITIONS})

_WORKLOAD_STATUS = MapNode(fields={"conditions": CONDITIONS})


def _root(spec: Mapping[str, Node] | None = None, status: MapNode | None = None) -> MapNode:
    fields: dict[str, Node] = {"metadata": OBJECT_META}
    if spec is not None:
        fields["spec"] = MapNode(fields=spec)
    if status is not None:
        fields["status"] = status
    return MapNode(fields=fields)


_JOB_SPEC: dict[str, Node] = {"selector": ATOMIC, "template": POD_TEMPLATE}

_PVC = _root(spec={}, status=MapNode(fields={"conditions": CONDITIONS}))

GroupKind = tuple[str, str]

ROOTS: dict[GroupKind, MapNode] = {
    ("", "Pod"): _root(spec=POD_SPEC.fields, status=POD_STATUS),
    ("", "PodTemplate"): MapNode(fields={"metadata": OBJECT_META, "template": POD_TEMPLATE}),
    ("", "ReplicationController"): _root(spec={"template": POD_TEMPLATE}, status=_WORKLOAD_STATUS),
    ("", "Namespace"): _root(spec={}, status=MapNode(fields={"conditions": CONDITIONS})),
    ("", "ConfigMap"): _root(),
    ("", "Secret"): _root(),
    ("", "ServiceAccount"): MapNode(
        fields={"metadata": OBJECT_META, "secrets": keyed("name")},
    ),
    ("", "Service"): _root(
        spec={
            "ports": keyed("port", "protocol", smp_key="port"),
            "selector": ATOMIC,
        },
        status=MapNode(fields={"conditions": CONDITIONS}),
    ),
    ("", "Endpoints"): _root(),
    ("", "PersistentVolumeClaim"): _PVC,
    ("", "Event"): _root(),
    ("", "ResourceQuota"): _root(spec={}, status=DEDUCED),
    ("", "LimitRange"): _root(spec={}),
    ("apps", "Deployment"): _root(
        spec={
            "selector": ATOMIC,
            "template": POD_TEMPLATE,
            "strategy": MapNode(retain_keys=True),
        },
        status=_WORKLOAD_STATUS,
    ),
    ("apps", "ReplicaSet"): _root(
        spec={"selector": ATOMIC, "template": POD_TEMPLATE}, status=_WORKLOAD_STATUS
    ),
    ("apps", "StatefulSet"): _root(
        spec={"selector": ATOMIC, "template": POD_TEMPLATE}, status=_WORKLOAD_STATUS
    ),
    ("apps", "DaemonSet"): _root(
        spec={"selector": ATOMIC, "template": POD_TEMPLATE}, status=_WORKLOAD_STATUS
    ),
    ("batch", "Job"): _root(
        spec=_JOB_SPEC, status=MapNode(fields={"conditions": atomic_merged("type")})
    ),
    ("batch", "CronJob"): _root(
        spec={
            "jobTemplate": MapNode(
                fields={"metadata": OBJECT_META, "spec": MapNode(fields=_JOB_SPEC)}
            )
        },
        status=DEDUCED,
    ),
    ("networking.k8s.io", "Ingress"): _root(spec={}, status=DEDUCED),
    ("networking.k8s.io", "IngressClass"): _root(spec={}),
    ("networking.k8s.io", "NetworkPolicy"): _root(spec={"podSelector": ATOMIC}),
    ("autoscaling", "HorizontalPodAutoscaler"): _root(
        spec={}, status=MapNode(fields={"conditions": CONDITIONS})
    ),
    ("policy", "PodDisruptionBudget"): _root(
        spec={"selector": ATOMIC}, status=MapNode(fields={"conditions": CONDITIONS})
    ),
    ("rbac.authorization.k8s.io", "Role"): _root(),
    ("rbac.authorization.k8s.io", "ClusterRole"): _root(),
    ("rbac.authorization.k8s.io", "RoleBinding"): MapNode(
        fields={"metadata": OBJECT_META, "roleRef": ATOMIC}
    ),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): MapNode(
        fields={"metadata": OBJECT_META, "roleRef": ATOMIC}
    ),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _root(
        spec={}, status=MapNode(fields={"conditions": CONDITIONS})
    ),
}

# Custom resources (and anything unknown): only metadata has a known shape.
UNKNOWN_ROOT = MapNode(fields={"metadata": OBJECT_META})

# Kinds whose status is written only through the status subresource: writes to the main
# resource neither change nor own ``status`` there (the strategies' reset fields).
STATUS_SUBRESOURCE: frozenset[GroupKind] = frozenset(
    gk
    for gk in ROOTS
    if gk
    not in {
        ("", "ConfigMap"),
        ("", "Secret"),
        ("", "ServiceAccount"),
        ("", "Endpoints"),
        ("", "Event"),
        ("", "LimitRange"),
        ("", "PodTemplate"),
        ("networking.k8s.io", "IngressClass"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "RoleBinding"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    }
)

# Fields the Go types always serialise (non-pointer structs, non-omitempty slices), so a
# freshly created object is compared against an "empty" object that already has them:
# creating an object never makes these paths themselves "added" in managedFields.
_TEMPLATE_ZERO = ("template", "template.metadata", "template.spec", "template.spec.containers")
ZERO_PATHS: dict[GroupKind, tuple[str, ...]] = {
    ("", "Pod"): ("spec", "spec.containers"),
    ("", "Namespace"): ("spec",),
    ("", "Service"): ("spec",),
    ("", "PersistentVolumeClaim"): ("spec", "spec.resources"),
    ("", "ResourceQuota"): ("spec",),
    ("", "LimitRange"): ("spec",),
    ("", "ReplicationController"): ("spec",),
    ("apps", "Deployment"): ("spec", "spec.strategy", *(f"spec.{p}" for p in _TEMPLATE_ZERO)),
    ("apps", "ReplicaSet"): ("spec", *(f"spec.{p}" for p in _TEMPLATE_ZERO)),
    ("apps", "StatefulSet"): (
        "spec",
        "spec.updateStrategy",
        *(f"spec.{p}" for p in _TEMPLATE_ZERO),
    ),
    ("apps", "DaemonSet"): (
        "spec",
        "spec.updateStrategy",
        *(f"spec.{p}" for p in _TEMPLATE_ZERO),
    ),
    ("batch", "Job"): ("spec", *(f"spec.{p}" for p in _TEMPLATE_ZERO)),
    ("batch", "CronJob"): (
        "spec",
        "spec.jobTemplate",
        "spec.jobTemplate.metadata",
        "spec.jobTemplate.spec",
        *(f"spec.jobTemplate.spec.{p}" for p in _TEMPLATE_ZERO),
    ),
    ("networking.k8s.io", "Ingress"): ("spec",),
    ("networking.k8s.io", "NetworkPolicy"): ("spec", "spec.podSelector"),
    ("autoscaling", "HorizontalPodAutoscaler"): ("spec", "spec.scaleTargetRef"),
    ("policy", "PodDisruptionBudget"): ("spec",),
    ("rbac.authorization.k8s.io", "RoleBinding"): ("roleRef",),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): ("roleRef",),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): ("spec", "spec.names"),
}

# Keys of Go maps (omitempty): when apply prunes their last entry the field disappears,
# as it does after the server's typed round trip.
GO_MAP_FIELDS = frozenset(
    {
        "labels",
        "annotations",
        "data",
        "binaryData",
        "stringData",
        "nodeSelector",
        "matchLabels",
        "limits",
        "requests",
        "hard",
        "selector",
    }
)


def group_kind(obj: Mapping[str, object]) -> GroupKind:
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    group = api_version.rpartition("/")[0] if isinstance(api_version, str) else ""
    return (group, kind if isinstance(kind, str) else "")


def root_for(obj: Mapping[str, object]) -> MapNode | None:
    """The schema of a built-in kind, or None for custom resources and unknown kinds."""
    return ROOTS.get(group_kind(obj))


def has_status_subresource(obj: Mapping[str, object]) -> bool:
    return group_kind(obj) in STATUS_SUBRESOURCE
