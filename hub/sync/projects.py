"""AppProject enforcement: a typed AppProject and Argo CD's permission rules, pure.

The rules follow Argo CD's ``app_project_types.go`` (``IsSourcePermitted``,
``IsDestinationPermitted``, ``IsGroupKindPermitted``, ``IsLiveResourcePermitted``):

- Globs: ``*`` any run of characters (within one path segment for ``sourceRepos``, where
  ``**`` crosses ``/``), ``?`` one character, ``[a-z]``/``[!a-z]`` classes, ``{a,b}``
  alternatives, ``\\`` escapes. A pattern that does not compile matches nothing.
- ``!pattern`` is a deny pattern. A source is permitted when some pattern "matches" (a deny
  pattern matches everything it does not deny) and no deny pattern denies it; the same for
  destinations, where a deny on the server, name or namespace of an entry denies.
- Repository URLs are compared normalized: lower case, no ``.git`` suffix, scp-style SSH
  (``git@host:org/repo``) as ``git@host/org/repo``.
- ``namespaceResourceWhitelist`` absent allows every namespaced kind, ``[]`` none;
  ``clusterResourceWhitelist`` absent or ``[]`` allows no cluster-scoped kind. Blacklists
  subtract. Group and kind entries are globs (``*``).
- A namespaced object is also checked against the destinations with its own namespace, so
  an explicit ``metadata.namespace`` cannot escape the project.

A project that is not defined allows nothing, except ``default``, which allows everything
until someone defines it (as in Argo CD).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import re2

from hub.sync.model import SyncError

DEFAULT_PROJECT = "default"


class ProjectError(SyncError):
    """An AppProject that cannot be read, or an app it does not permit."""


# ---------------------------------------------------------------- the typed AppProject


@dataclass(frozen=True)
class GroupKind:
    group: str
    kind: str

    def __str__(self) -> str:
        return f"{self.group or '(core)'}/{self.kind}"


@dataclass(frozen=True)
class ProjectDestination:
    server: str = ""
    name: str = ""
    namespace: str = ""


@dataclass(frozen=True)
class OrphanIgnore:
    group: str = ""
    kind: str = ""
    name: str = ""


@dataclass(frozen=True)
class OrphanedResources:
    warn: bool = True
    ignore: tuple[OrphanIgnore, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Project:
    name: str
    source_repos: tuple[str, ...] = ()
    destinations: tuple[ProjectDestination, ...] = ()
    cluster_whitelist: tuple[GroupKind, ...] = ()
    cluster_blacklist: tuple[GroupKind, ...] = ()
    #: None: the field is absent (every namespaced kind); (): present and empty (none).
    namespace_whitelist: tuple[GroupKind, ...] | None = None
    namespace_blacklist: tuple[GroupKind, ...] = ()
    source_namespaces: tuple[str, ...] = ()
    orphaned_resources: OrphanedResources | None = None
    permit_only_project_scoped_clusters: bool = False
    #: True only for the implicit ``default`` project (no AppProject committed).
    allow_all: bool = False
    #: An app names a project nobody defined: it permits nothing.
    missing: bool = False


def implicit_default() -> Project:
    """The ``default`` project while none is defined: everything is allowed."""
    return Project(
        name=DEFAULT_PROJECT,
        source_repos=("*",),
        destinations=(ProjectDestination(server="*", name="*", namespace="*"),),
        cluster_whitelist=(GroupKind("*", "*"),),
        allow_all=True,
    )


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProjectError(f"{where} must be a list of strings")
    return tuple(value)


def _mappings(value: Any, where: str) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ProjectError(f"{where} must be a list of mappings")
    return list(value)


def _str_field(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProjectError(f"{where}.{key} must be a string, got {type(value).__name__}")
    return value


def _group_kinds(spec: Mapping[str, Any], key: str, where: str) -> tuple[GroupKind, ...]:
    out = []
    for i, item in enumerate(_mappings(spec.get(key), f"{where}.{key}")):
        at = f"{where}.{key}[{i}]"
        kind = _str_field(item, "kind", at)
        if not kind:
            raise ProjectError(f"{at}.kind is required (use '*' for every kind)")
        out.append(GroupKind(_str_field(item, "group", at), kind))
    return tuple(out)


def parse_project(manifest: Mapping[str, Any], where: str = "AppProject") -> Project:
    """A typed ``Project`` from an AppProject manifest; ``ProjectError`` naming the field."""
    meta = manifest.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ProjectError(f"{where}: metadata.name is required")
    where = f"{where} ({name}): spec"
    spec = manifest.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise ProjectError(f"{where} must be a mapping")
    destinations = []
    for i, item in enumerate(_mappings(spec.get("destinations"), f"{where}.destinations")):
        at = f"{where}.destinations[{i}]"
        dest = ProjectDestination(
            server=_str_field(item, "server", at),
            name=_str_field(item, "name", at),
            namespace=_str_field(item, "namespace", at),
        )
        if not dest.server and not dest.name:
            raise ProjectError(f"{at}: needs a server or a name (use '*' for every cluster)")
        destinations.append(dest)
    orphaned = None
    raw_orphaned = spec.get("orphanedResources")
    if raw_orphaned is not None:
        if not isinstance(raw_orphaned, Mapping):
            raise ProjectError(f"{where}.orphanedResources must be a mapping")
        warn = raw_orphaned.get("warn", True)
        if not isinstance(warn, bool):
            raise ProjectError(f"{where}.orphanedResources.warn must be true or false")
        ignores = []
        for i, item in enumerate(
            _mappings(raw_orphaned.get("ignore"), f"{where}.orphanedResources.ignore")
        ):
            at = f"{where}.orphanedResources.ignore[{i}]"
            ignores.append(
                OrphanIgnore(
                    group=_str_field(item, "group", at),
                    kind=_str_field(item, "kind", at),
                    name=_str_field(item, "name", at),
                )
            )
        orphaned = OrphanedResources(warn=warn, ignore=tuple(ignores))
    scoped = spec.get("permitOnlyProjectScopedClusters", False)
    if not isinstance(scoped, bool):
        raise ProjectError(f"{where}.permitOnlyProjectScopedClusters must be true or false")
    ns_whitelist = (
        None
        if spec.get("namespaceResourceWhitelist") is None
        else _group_kinds(spec, "namespaceResourceWhitelist", where)
    )
    return Project(
        name=name,
        source_repos=_strings(spec.get("sourceRepos"), f"{where}.sourceRepos"),
        destinations=tuple(destinations),
        cluster_whitelist=_group_kinds(spec, "clusterResourceWhitelist", where),
        cluster_blacklist=_group_kinds(spec, "clusterResourceBlacklist", where),
        namespace_whitelist=ns_whitelist,
        namespace_blacklist=_group_kinds(spec, "namespaceResourceBlacklist", where),
        source_namespaces=_strings(spec.get("sourceNamespaces"), f"{where}.sourceNamespaces"),
        orphaned_resources=orphaned,
        permit_only_project_scoped_clusters=scoped,
    )


# ---------------------------------------------------------------- globs


def _compile(pattern: str, separators: str) -> Any:
    """gobwas/glob as Argo CD uses it, translated to an RE2 expression (None: invalid).
    RE2 as ``resources.argo_glob_match``: the patterns come from AppProjects in Git, and a
    backtracking engine would let one hostile pattern stall the hub."""
    one = f"[^{re.escape(separators)}]" if separators else "."
    out: list[str] = []
    i, depth = 0, 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                return None
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
            else:
                out.append(one + "*")
                i += 1
            continue
        if c == "?":
            out.append(one)
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern.startswith("[!", i) else i + 1)
            if end < 0:
                return None
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            if not body:
                return None
            chars = re.escape(body).replace("\\-", "-")
            out.append(f"[{'^' if negate else ''}{chars}]")
            i = end + 1
            continue
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}" and depth:
            depth -= 1
            out.append(")")
        elif c == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(c))
        i += 1
    if depth:
        return None
    try:
        return re2.compile("(?s)" + "".join(out))
    except re2.error:
        return None


_compile_cached = lru_cache(maxsize=1024)(_compile)


def glob_match(pattern: str, value: str, separators: str = "") -> bool:
    """Whether ``value`` matches the glob ``pattern`` (no negation here)."""
    if pattern == "*":
        return True
    compiled = _compile_cached(pattern, separators)
    return compiled is not None and compiled.fullmatch(value) is not None


def is_deny(pattern: str) -> bool:
    return pattern.startswith("!")


def glob_match_negatable(pattern: str, value: str, separators: str = "") -> bool:
    """``glob_match``, where ``!p`` matches exactly what ``p`` does not."""
    if is_deny(pattern):
        return not glob_match(pattern[1:], value, separators)
    return glob_match(pattern, value, separators)


_SCP_LIKE = re.compile(r"^[^@/:]+@[^/:]+:")


def normalize_repo_url(url: str) -> str:
    """A repository URL as Argo CD compares it (``git.NormalizeGitURL``)."""
    url = url.strip().lower()
    if "://" not in url and _SCP_LIKE.match(url):
        url = url.replace(":", "/", 1)
    url = url.removeprefix("ssh://")
    return url.removesuffix(".git")


# ---------------------------------------------------------------- the rules


def source_permitted(project: Project, repo_url: str) -> bool:
    """Argo CD's ``IsSourcePermitted``."""
    src = normalize_repo_url(repo_url)
    any_matched = False
    for pattern in project.source_repos:
        if is_deny(pattern):
            normalized = "!" + normalize_repo_url(pattern[1:])
        else:
            normalized = normalize_repo_url(pattern)
        if glob_match_negatable(normalized, src, "/"):
            any_matched = True
        elif is_deny(normalized):
            return False
    return any_matched


@dataclass(frozen=True)
class ClusterRef:
    """A registered cluster as the destination rules see it."""

    name: str
    server: str
    project: str | None = None


def destination_matched(project: Project, server: str, name: str, namespace: str) -> bool:
    """Argo CD's ``isDestinationMatched`` (``server`` and ``name`` both resolved)."""
    any_matched = False
    no_deny_matched = True
    for item in project.destinations:
        name_ok = bool(name) and glob_match_negatable(item.name, name)
        server_ok = bool(server) and glob_match_negatable(item.server, server)
        ns_ok = glob_match_negatable(item.namespace, namespace)
        if (server_ok or name_ok) and ns_ok:
            any_matched = True
        elif (
            (not name_ok and is_deny(item.name))
            or (not server_ok and is_deny(item.server))
            or (not ns_ok and is_deny(item.namespace))
        ):
            no_deny_matched = False
    return any_matched and no_deny_matched


def destination_permitted(
    project: Project, cluster: ClusterRef, namespace: str, clusters: Sequence[ClusterRef] = ()
) -> bool:
    """Argo CD's ``IsDestinationPermitted`` for a destination resolved to ``cluster``."""
    if project.allow_all:
        return True
    if not destination_matched(project, cluster.server, cluster.name, namespace):
        return False
    if project.permit_only_project_scoped_clusters:
        return any(
            c.project == project.name and (c.name == cluster.name or c.server == cluster.server)
            for c in clusters
        )
    return True


def _in_list(gk: GroupKind, items: Iterable[GroupKind]) -> bool:
    return any(glob_match(i.kind, gk.kind) and glob_match(i.group, gk.group) for i in items)


def group_kind_permitted(project: Project, gk: GroupKind, *, namespaced: bool) -> bool:
    """Argo CD's ``IsGroupKindPermitted``."""
    if project.allow_all:
        return True
    if namespaced:
        white = project.namespace_whitelist
        listed = white is None or (len(white) != 0 and _in_list(gk, white))
        return listed and not _in_list(gk, project.namespace_blacklist)
    return _in_list(gk, project.cluster_whitelist) and not _in_list(gk, project.cluster_blacklist)


# ---------------------------------------------------------------- checks with messages


@dataclass(frozen=True, kw_only=True)
class ProjectScope:
    """What a sync of one app checks against: its project and its resolved destination."""

    project: Project
    cluster: ClusterRef
    namespace: str
    clusters: tuple[ClusterRef, ...] = ()


CONTROL_PLANE_NAMESPACE = "argocd"


def app_violation(
    scope: ProjectScope, repo_urls: Sequence[str], app_namespace: str = ""
) -> str | None:
    """Why the project does not permit the app's sources or destination, or None.

    ``app_namespace``: the Application's own ``metadata.namespace``; outside ``argocd`` it
    must match the project's ``sourceNamespaces`` (Argo CD's apps-in-any-namespace)."""
    project = scope.project
    if project.allow_all:
        return None
    if project.missing:
        return (
            f"project {project.name!r} does not exist (commit an AppProject to a source, "
            "or use project 'default')"
        )
    if app_namespace not in ("", CONTROL_PLANE_NAMESPACE) and not any(
        glob_match(p, app_namespace) for p in project.source_namespaces
    ):
        return (
            f"an Application in namespace {app_namespace} is not permitted in project "
            f"{project.name!r} (sourceNamespaces: {', '.join(project.source_namespaces) or 'none'})"
        )
    for url in repo_urls:
        if not source_permitted(project, url):
            return (
                f"application repo {url} is not permitted in project {project.name!r} "
                f"(sourceRepos: {', '.join(project.source_repos) or 'none'})"
            )
    if not destination_permitted(project, scope.cluster, scope.namespace, scope.clusters):
        return destination_message(scope, scope.namespace)
    return None


def destination_message(scope: ProjectScope, namespace: str) -> str:
    project = scope.project
    where = f"server {scope.cluster.server} (cluster {scope.cluster.name}), namespace {namespace or '(none)'}"
    if project.permit_only_project_scoped_clusters and destination_matched(
        project, scope.cluster.server, scope.cluster.name, namespace
    ):
        return (
            f"destination {where} is not permitted in project {project.name!r}: "
            f"permitOnlyProjectScopedClusters and cluster {scope.cluster.name} is not "
            f"scoped to it (hub cluster add --project {project.name})"
        )
    return f"destination {where} is not permitted in project {project.name!r} (destinations)"


def resource_violation(
    scope: ProjectScope, group: str, kind: str, namespace: str, *, namespaced: bool
) -> str | None:
    """Why the project does not permit this object, naming the rule, or None.

    ``namespace``: the object's own namespace (after the destination default)."""
    project = scope.project
    if project.allow_all:
        return None
    gk = GroupKind(group, kind)
    if not group_kind_permitted(project, gk, namespaced=namespaced):
        if namespaced:
            rule = (
                "namespaceResourceBlacklist"
                if _in_list(gk, project.namespace_blacklist)
                else "namespaceResourceWhitelist"
            )
            scope_word = "namespaced"
        else:
            rule = (
                "clusterResourceBlacklist"
                if _in_list(gk, project.cluster_blacklist)
                else "clusterResourceWhitelist"
            )
            scope_word = "cluster-scoped"
        return f"{scope_word} kind {gk} is not permitted in project {project.name!r} ({rule})"
    if namespaced and not destination_permitted(project, scope.cluster, namespace, scope.clusters):
        return (
            f"namespace {namespace} is not permitted in project {project.name!r}: "
            + destination_message(scope, namespace)
        )
    return None


def scope_for(
    project_name: str,
    projects: Mapping[str, Project],
    cluster: ClusterRef,
    namespace: str,
    clusters: Sequence[ClusterRef] = (),
) -> ProjectScope:
    """The scope an app of ``project_name`` syncs in (an undefined one permits nothing)."""
    project = projects.get(project_name)
    if project is None:
        if project_name == DEFAULT_PROJECT:
            project = implicit_default()
        else:
            project = Project(name=project_name, missing=True)
    return ProjectScope(
        project=project, cluster=cluster, namespace=namespace, clusters=tuple(clusters)
    )


def sync_violations(
    scope: ProjectScope, repo_urls: Sequence[str], objects: Iterable[tuple[str, str, str, str]]
) -> list[str]:
    """Every reason the project refuses a sync: the app's source or destination, then each
    ``(group, kind, namespace, name)`` object (namespace empty: cluster-scoped)."""
    problem = app_violation(scope, repo_urls)
    if problem is not None:
        return [problem]
    out = []
    for group, kind, namespace, name in objects:
        why = resource_violation(scope, group, kind, namespace, namespaced=bool(namespace))
        if why is not None:
            where = f"{namespace}/{name}" if namespace else name
            out.append(f"{kind} {where}: {why}")
    return out


def prune_violation(scope: ProjectScope, group: str, kind: str, namespace: str) -> str | None:
    """Why a live object must not be pruned (outside the project), or None."""
    return resource_violation(scope, group, kind, namespace, namespaced=bool(namespace))


@dataclass(frozen=True, kw_only=True)
class LiveObject:
    """What the orphaned-resources rule needs to know of one live namespaced object."""

    group: str
    kind: str
    namespace: str
    name: str
    #: Tracked by some Application (any app's tracking id), or owned by another object.
    managed: bool


def _ignored(rule: OrphanIgnore, obj: LiveObject) -> bool:
    return (
        glob_match(rule.group, obj.group)
        and glob_match(rule.kind, obj.kind)
        and (not rule.name or glob_match(rule.name, obj.name))
    )


def is_known_orphan_exclusion(obj: LiveObject) -> bool:
    """Objects every namespace holds without anyone committing them (published by
    kube-controller-manager or the apiserver): never orphans, as in Argo CD."""
    if obj.group:
        return False
    return (
        (obj.kind == "ServiceAccount" and obj.name == "default")
        or (obj.kind == "ConfigMap" and obj.name == "kube-root-ca.crt")
        or (obj.kind == "Service" and obj.namespace == "default" and obj.name == "kubernetes")
    )


def orphaned_resources(project: Project, objects: Iterable[LiveObject]) -> list[str]:
    """``Kind namespace/name`` of every object no Application manages, minus the ones every
    namespace holds and the project's ``orphanedResources.ignore`` rules; empty unless the
    project asks for the warning."""
    settings = project.orphaned_resources
    if settings is None or not settings.warn:
        return []
    return sorted(
        f"{o.kind} {o.namespace}/{o.name}"
        for o in objects
        if not o.managed
        and not is_known_orphan_exclusion(o)
        and not any(_ignored(r, o) for r in settings.ignore)
    )


def orphaned_warning(orphans: Sequence[str], limit: int = 10) -> str:
    """Argo CD's ``OrphanedResourceWarning`` text, naming the first few objects."""
    shown = ", ".join(orphans[:limit]) + (", ..." if len(orphans) > limit else "")
    return f"OrphanedResourceWarning: application has {len(orphans)} orphaned resource(s): {shown}"
