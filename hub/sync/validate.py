"""Validate every rendered manifest before anything is applied.

One invalid manifest fails the whole sync before the first write: all problems are collected
and reported together, each naming the file it came from and the object. Namespaces are settled
here: cluster-scoped kinds must not carry one, namespaced kinds get the destination namespace
or fail. Which kinds are cluster-scoped comes from discovery when the caller has it
(``KindScopes.from_discovery``), else from a built-in table of the standard API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from hub.sync.model import ManifestError
from hub.sync.resources import (
    ResourceKey,
    clone_tree,
    group_of,
    is_hook,
    sync_wave_problem,
    unknown_hook_values,
)

# (group, kind) of the cluster-scoped kinds of a current Kubernetes release.
DEFAULT_CLUSTER_SCOPED: frozenset[tuple[str, str]] = frozenset(
    {
        ("", "Namespace"),
        ("", "Node"),
        ("", "PersistentVolume"),
        ("", "ComponentStatus"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("apiregistration.k8s.io", "APIService"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "CSINode"),
        ("storage.k8s.io", "VolumeAttachment"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("networking.k8s.io", "IngressClass"),
        ("networking.k8s.io", "IPAddress"),
        ("networking.k8s.io", "ServiceCIDR"),
        ("node.k8s.io", "RuntimeClass"),
        ("policy", "PodSecurityPolicy"),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
        ("authentication.k8s.io", "TokenReview"),
        ("authorization.k8s.io", "SubjectAccessReview"),
        ("authorization.k8s.io", "SelfSubjectAccessReview"),
        ("authorization.k8s.io", "SelfSubjectRulesReview"),
        ("resource.k8s.io", "DeviceClass"),
        ("resource.k8s.io", "ResourceSlice"),
    }
)


@dataclass(frozen=True, kw_only=True)
class KindScopes:
    """Which (group, kind) pairs are cluster-scoped.

    With ``complete=True`` (built from discovery) a kind that is in neither set is unknown to
    the cluster and fails validation, unless a CRD in the same render defines it.
    """

    cluster_scoped: frozenset[tuple[str, str]] = DEFAULT_CLUSTER_SCOPED
    namespaced: frozenset[tuple[str, str]] = frozenset()
    complete: bool = False

    @classmethod
    def from_discovery(
        cls, *, cluster_scoped: Iterable[tuple[str, str]], namespaced: Iterable[tuple[str, str]]
    ) -> KindScopes:
        return cls(
            cluster_scoped=frozenset(cluster_scoped),
            namespaced=frozenset(namespaced),
            complete=True,
        )

    def is_cluster_scoped(self, group: str, kind: str) -> bool | None:
        """True / False, or None when the kind is unknown."""
        if (group, kind) in self.cluster_scoped:
            return True
        if (group, kind) in self.namespaced or not self.complete:
            return False
        return None


@dataclass(frozen=True, kw_only=True)
class SourcedManifest:
    """A desired object and where it came from (``path/file.yaml#2``), for error messages."""

    obj: dict[str, Any]
    origin: str = ""

    @cached_property
    def key(self) -> ResourceKey:
        # Asked many times per sync and refresh; manifests are not changed once wrapped
        # (validation fixes a copy and wraps that).
        return ResourceKey.of(self.obj)

    def describe(self) -> str:
        meta = self.obj.get("metadata") if isinstance(self.obj.get("metadata"), Mapping) else {}
        assert isinstance(meta, Mapping)
        name = meta.get("name") or (
            f"{meta.get('generateName')}*" if meta.get("generateName") else "?"
        )
        kind = self.obj.get("kind") or "?"
        where = f"{self.origin}: " if self.origin else ""
        return f"{where}{kind} {name!s}"


@dataclass(frozen=True, kw_only=True)
class ValidatedManifests:
    manifests: tuple[SourcedManifest, ...]
    warnings: tuple[str, ...] = field(default=())


def _crd_scopes(manifests: Sequence[SourcedManifest]) -> dict[tuple[str, str], bool]:
    """Scopes declared by CRDs in the same render (their CRs may not be discoverable yet)."""
    out: dict[tuple[str, str], bool] = {}
    for m in manifests:
        obj = m.obj
        if not isinstance(obj, Mapping) or obj.get("kind") != "CustomResourceDefinition":
            continue
        if group_of(str(obj.get("apiVersion") or "")) != "apiextensions.k8s.io":
            continue
        spec = obj.get("spec")
        if not isinstance(spec, Mapping):
            continue
        names = spec.get("names")
        kind = names.get("kind") if isinstance(names, Mapping) else None
        if isinstance(spec.get("group"), str) and isinstance(kind, str):
            out[(spec["group"], kind)] = spec.get("scope") == "Cluster"
    return out


def _string_map_problem(meta: Mapping[str, Any], field: str) -> str | None:
    """Kubernetes only takes strings here; an unquoted ``sync-wave: 1`` would fail at apply."""
    value = meta.get(field)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return f"metadata.{field} must be a mapping, got {type(value).__name__}"
    for k, v in value.items():
        if not isinstance(k, str):
            return f"metadata.{field} key {k!r} must be a string"
        if not isinstance(v, str):
            hint = f'; quote it: {k}: "{v}"' if isinstance(v, int | float | bool) else ""
            return f"metadata.{field}[{k}] must be a string, got {v!r}{hint}"
    return None


def _non_string_key(value: Any, path: str) -> str | None:
    """JSON (and so Kubernetes) keys are strings; YAML allows ``1: x`` or ``true: x``."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"key {k!r} at {path or '(top level)'} is not a string; quote it"
            found = _non_string_key(v, f"{path}.{k}" if path else k)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _non_string_key(item, f"{path}[{i}]")
            if found:
                return found
    return None


def _add(problems: list[str], bad: set[int], index: int, message: str) -> None:
    problems.append(message)
    bad.add(index)


def validate_manifests(
    manifests: Sequence[SourcedManifest],
    *,
    destination_namespace: str,
    scopes: KindScopes | None = None,
) -> ValidatedManifests:
    """Check every manifest and settle namespaces; raise ``ManifestError`` listing every problem.

    Returns copies; the inputs are not modified.
    """
    scopes = scopes or KindScopes()
    crd_scopes = _crd_scopes(manifests)
    problems: list[str] = []
    warnings: list[str] = []
    out: list[SourcedManifest] = []
    seen: dict[ResourceKey, SourcedManifest] = {}

    bad: set[int] = set()
    for index, m in enumerate(manifests):
        obj = m.obj
        what = m.describe() if isinstance(obj, Mapping) else f"{m.origin}: document"
        if not isinstance(obj, Mapping):
            _add(problems, bad, index, f"{what}: expected a Kubernetes object (a mapping)")
            continue
        api_version = obj.get("apiVersion")
        kind = obj.get("kind")
        if not isinstance(api_version, str) or not api_version:
            _add(
                problems,
                bad,
                index,
                f"{what}: apiVersion is missing; every manifest needs apiVersion",
            )
        if not isinstance(kind, str) or not kind:
            _add(problems, bad, index, f"{what}: kind is missing; every manifest needs kind")
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping):
            _add(
                problems,
                bad,
                index,
                f"{what}: metadata is missing; every manifest needs metadata.name",
            )
            continue
        if not (isinstance(api_version, str) and api_version and isinstance(kind, str) and kind):
            continue
        name = meta.get("name")
        generate_name = meta.get("generateName")
        hook = is_hook(obj)
        if not name:
            if hook and isinstance(generate_name, str) and generate_name:
                pass
            elif generate_name:
                _add(
                    problems,
                    bad,
                    index,
                    f"{what}: metadata.generateName is only supported on hooks "
                    "(argocd.argoproj.io/hook); give the object a metadata.name",
                )
                continue
            else:
                _add(problems, bad, index, f"{what}: metadata.name is missing")
                continue
        elif not isinstance(name, str):
            _add(problems, bad, index, f"{what}: metadata.name must be a string, got {name!r}")
            continue
        namespace = meta.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            _add(
                problems,
                bad,
                index,
                f"{what}: metadata.namespace must be a string, got {namespace!r}",
            )
            continue
        map_problem = (
            _string_map_problem(meta, "annotations")
            or _string_map_problem(meta, "labels")
            or _non_string_key(obj, "")
        )
        if map_problem:
            _add(problems, bad, index, f"{what}: {map_problem}")
            continue

        group = group_of(api_version)
        cluster = crd_scopes.get((group, kind))
        if cluster is None:
            cluster = scopes.is_cluster_scoped(group, kind)
        if cluster is None:
            _add(
                problems,
                bad,
                index,
                f"{what}: kind {kind} ({api_version}) is not known to the cluster; "
                "install its CRD first or fix apiVersion/kind",
            )
            continue
        fixed: dict[str, Any] = clone_tree(dict(obj))
        fixed_meta = fixed["metadata"]
        if cluster:
            if namespace:
                _add(
                    problems,
                    bad,
                    index,
                    f"{what}: {kind} is cluster-scoped but has metadata.namespace "
                    f"{namespace!r}; remove the namespace",
                )
                continue
            fixed_meta.pop("namespace", None)
        elif not namespace:
            if not destination_namespace:
                _add(
                    problems,
                    bad,
                    index,
                    f"{what}: {kind} is namespaced but has no metadata.namespace and the "
                    "Application has no spec.destination.namespace; set one of them",
                )
                continue
            fixed_meta["namespace"] = destination_namespace

        for problem in (sync_wave_problem(obj),):
            if problem:
                warnings.append(f"{what}: {problem}")
        unknown = unknown_hook_values(obj)
        if unknown:
            warnings.append(f"{what}: unknown hook type(s) {', '.join(unknown)} are ignored")

        validated = SourcedManifest(obj=fixed, origin=m.origin)
        if fixed_meta.get("name"):
            key = validated.key
            if key in seen:
                _add(
                    problems,
                    bad,
                    index,
                    f"{what}: {key} is declared twice (also in {seen[key].origin or 'the render'})",
                )
                continue
            seen[key] = validated
        out.append(validated)

    if problems:
        count = len(bad)
        head = f"{count} invalid manifest{'s' if count > 1 else ''}; nothing was applied"
        raise ManifestError(head + ": " + "; ".join(problems), problems=tuple(problems))
    return ValidatedManifests(manifests=tuple(out), warnings=tuple(warnings))
