"""The resource types a simulated cluster serves: the built-in table plus CRD-served kinds.

A ``ResourceType`` is one (group, version, plural) the API serves. Objects are stored per
group and kind, so a kind served at several versions (a CRD with two served versions)
shares one set of objects, as it does in a real cluster's storage.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
NAMESPACE_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS = ("get", "patch", "update")

GroupKind = tuple[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceType:
    """One served resource: where it lives in the URL space and how it behaves."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # Whether writes keep metadata.generation (bumped on spec changes).
    has_generation: bool = False
    # True for kinds defined by a CustomResourceDefinition.
    custom: bool = False
    # CRD scale subresource paths (spec, status, label selector), when served.
    scale_paths: tuple[str, str, str] | None = None
    printer_columns: tuple[tuple[str, str, str], ...] = ()  # (name, type, jsonPath)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_kind(self) -> GroupKind:
        return (self.group, self.kind)

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def qualified_plural(self) -> str:
        """How error messages name the resource: ``deployments.apps``, ``configmaps``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def has_status(self) -> bool:
        return "status" in self.subresources


def _rt(
    group: str,
    version: str,
    kind: str,
    plural: str,
    *,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    sub: tuple[str, ...] = (),
    cats: tuple[str, ...] = (),
    gen: bool = False,
    verbs: tuple[str, ...] = ALL_VERBS,
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=namespaced,
        short_names=short,
        subresources=sub,
        categories=cats,
        has_generation=gen,
        verbs=verbs,
    )


_ALL = ("all",)
_ST = ("status",)
_ST_SCALE = ("status", "scale")

BUILTIN: tuple[ResourceType, ...] = (
    # core/v1
    _rt("", "v1", "Namespace", "namespaces", namespaced=False, short=("ns",), sub=("status", "finalize"), verbs=NAMESPACE_VERBS),
    _rt("", "v1", "ConfigMap", "configmaps", short=("cm",)),
    _rt("", "v1", "Secret", "secrets"),
    _rt("", "v1", "ServiceAccount", "serviceaccounts", short=("sa",)),
    _rt("", "v1", "Service", "services", short=("svc",), sub=_ST, cats=_ALL, verbs=NAMESPACE_VERBS),
    _rt("", "v1", "Endpoints", "endpoints", short=("ep",)),
    _rt("", "v1", "Pod", "pods", short=("po",), sub=_ST, cats=_ALL),
    _rt("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short=("pvc",), sub=_ST),
    _rt("", "v1", "PersistentVolume", "persistentvolumes", namespaced=False, short=("pv",), sub=_ST),
    _rt("", "v1", "Event", "events", short=("ev",)),
    _rt("", "v1", "Node", "nodes", namespaced=False, short=("no",), sub=_ST),
    _rt("", "v1", "ResourceQuota", "resourcequotas", short=("quota",), sub=_ST),
    _rt("", "v1", "LimitRange", "limitranges", short=("limits",)),
    # apps/v1
    _rt("apps", "v1", "Deployment", "deployments", short=("deploy",), sub=_ST_SCALE, cats=_ALL, gen=True),
    _rt("apps", "v1", "ReplicaSet", "replicasets", short=("rs",), sub=_ST_SCALE, cats=_ALL, gen=True),
    _rt("apps", "v1", "StatefulSet", "statefulsets", short=("sts",), sub=_ST_SCALE, cats=_ALL, gen=True),
    _rt("apps", "v1", "DaemonSet", "daemonsets", short=("ds",), sub=_ST, cats=_ALL, gen=True),
    _rt("apps", "v1", "ControllerRevision", "controllerrevisions"),
    # batch/v1
    _rt("batch", "v1", "Job", "jobs", sub=_ST, cats=_ALL, gen=True),
    _rt("batch", "v1", "CronJob", "cronjobs", short=("cj",), sub=_ST, cats=_ALL, gen=True),
    # networking.k8s.io/v1
    _rt("networking.k8s.io", "v1", "Ingress", "ingresses", short=("ing",), sub=_ST, gen=True),
    _rt("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short=("netpol",), gen=True),
    _rt("networking.k8s.io", "v1", "IngressClass", "ingressclasses", namespaced=False),
    # autoscaling/v2
    _rt("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", short=("hpa",), sub=_ST, cats=_ALL),
    # policy/v1
    _rt("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short=("pdb",), sub=_ST, gen=True),
    # rbac.authorization.k8s.io/v1
    _rt("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    _rt("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    _rt("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
    _rt("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False),
    # storage.k8s.io/v1
    _rt("storage.k8s.io", "v1", "StorageClass", "storageclasses", namespaced=False, short=("sc",)),
    # coordination.k8s.io/v1
    _rt("coordination.k8s.io", "v1", "Lease", "leases"),
    # apiextensions.k8s.io/v1
    _rt("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False, short=("crd", "crds"), sub=_ST, gen=True),
)  # fmt: skip

CRD_GROUP_KIND: GroupKind = ("apiextensions.k8s.io", "CustomResourceDefinition")
NAMESPACE_GROUP_KIND: GroupKind = ("", "Namespace")


class InvalidCRD(ValueError):
    """A CRD spec the simulator cannot serve; the message names the field."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field_path = field_path
        self.detail = message


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The resource types a CRD serves (one per served version); raises ``InvalidCRD``."""
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        raise InvalidCRD("spec", "Required value")
    group = spec.get("group")
    if not isinstance(group, str) or not group or "." not in group:
        raise InvalidCRD("spec.group", "Required value: should be a domain with at least one dot")
    names = spec.get("names")
    if not isinstance(names, dict):
        raise InvalidCRD("spec.names", "Required value")
    plural, kind = names.get("plural"), names.get("kind")
    if not isinstance(plural, str) or not plural or plural != plural.lower():
        raise InvalidCRD("spec.names.plural", "Required value: must be a lowercase name")
    if not isinstance(kind, str) or not kind:
        raise InvalidCRD("spec.names.kind", "Required value")
    name = (crd.get("metadata") or {}).get("name")
    if name != f"{plural}.{group}":
        raise InvalidCRD(
            "metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'
        )
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        raise InvalidCRD(
            "spec.scope", 'Unsupported value: supported values: "Cluster", "Namespaced"'
        )
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        raise InvalidCRD(
            "spec.versions",
            "Required value: must have exactly one version marked as storage version",
        )
    if sum(1 for v in versions if isinstance(v, dict) and v.get("storage")) != 1:
        raise InvalidCRD(
            "spec.versions",
            "Invalid value: must have exactly one version marked as storage version",
        )
    singular = names.get("singular") or kind.lower()
    short = tuple(str(s) for s in names.get("shortNames") or ())
    cats = tuple(str(c) for c in names.get("categories") or ())
    out: list[ResourceType] = []
    for i, version in enumerate(versions):
        if not isinstance(version, dict) or not isinstance(version.get("name"), str):
            raise InvalidCRD(f"spec.versions[{i}].name", "Required value")
        if not version.get("served", False):
            continue
        subs = version.get("subresources") or {}
        sub: list[str] = []
        scale_paths: tuple[str, str, str] | None = None
        if isinstance(subs, dict):
            if "status" in subs:
                sub.append("status")
            scale = subs.get("scale")
            if isinstance(scale, dict):
                sub.append("scale")
                scale_paths = (
                    str(scale.get("specReplicasPath", ".spec.replicas")),
                    str(scale.get("statusReplicasPath", ".status.replicas")),
                    str(scale.get("labelSelectorPath", "")),
                )
        columns = tuple(
            (str(c.get("name", "")), str(c.get("type", "string")), str(c.get("jsonPath", "")))
            for c in version.get("additionalPrinterColumns") or ()
            if isinstance(c, dict)
        )
        out.append(
            ResourceType(
                group=group,
                version=version["name"],
                kind=kind,
                plural=plural,
                singular=singular,
                namespaced=scope == "Namespaced",
                short_names=short,
                subresources=tuple(sub),
                categories=cats,
                has_generation=True,
                custom=True,
                scale_paths=scale_paths,
                printer_columns=columns,
            )
        )
    return out


def _version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version ordering: GA > beta > alpha, then higher numbers first."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0, version)  # non-kube-like versions sort last, alphabetically
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0), "")


@dataclass(slots=True)
class KindRegistry:
    """The types one cluster serves: shared built-ins plus the kinds of its CRDs."""

    # crd name -> the types it serves
    _custom: dict[str, list[ResourceType]] = field(default_factory=dict)
    # bumped on every change so discovery caches know when to rebuild
    revision: int = 0

    def all(self) -> Iterator[ResourceType]:
        yield from BUILTIN
        for types in self._custom.values():
            yield from types

    def set_crd(self, crd_name: str, types: Iterable[ResourceType]) -> None:
        self._custom[crd_name] = list(types)
        self.revision += 1

    def remove_crd(self, crd_name: str) -> None:
        if self._custom.pop(crd_name, None) is not None:
            self.revision += 1

    def has_custom(self) -> bool:
        return bool(self._custom)

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        if not self._custom:
            return _BUILTIN_BY_PATH.get((group, version, plural))
        for rt in self.all():
            if rt.group == group and rt.version == version and rt.plural == plural:
                return rt
        return None

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rt in self.all():
            if rt.kind == kind and rt.group == group and rt.version == version:
                return rt
        return None

    def preferred(self, group: str, kind: str) -> ResourceType | None:
        """The preferred served version of a group/kind (for events and storage)."""
        best: ResourceType | None = None
        for rt in self.all():
            if (
                rt.group == group
                and rt.kind == kind
                and (
                    best is None or _version_priority(rt.version) < _version_priority(best.version)
                )
            ):
                best = rt
        return best

    def groups(self) -> list[tuple[str, list[str]]]:
        """Served API groups (core excluded) with their versions, preferred first."""
        seen: dict[str, set[str]] = {}
        order: list[str] = []
        for rt in self.all():
            if not rt.group:
                continue
            if rt.group not in seen:
                seen[rt.group] = set()
                order.append(rt.group)
            seen[rt.group].add(rt.version)
        return [(g, sorted(seen[g], key=_version_priority)) for g in order]

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self.all() if rt.group == group and rt.version == version]


_BUILTIN_BY_PATH = {(rt.group, rt.version, rt.plural): rt for rt in BUILTIN}
