"""Resource identity, tracking ids and Argo CD's resource annotations.

Readers here mirror gitops-engine (``sync/syncwaves``, ``sync/hook``, ``sync/resource``): a bad
``sync-wave`` falls back to Helm's ``hook-weight`` and then 0, comma lists are trimmed and
de-duplicated, hook delete policy defaults to BeforeHookCreation. ``validate.py`` turns the
silent fallbacks into warnings so the user learns about them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

import re2

from hub.sync.model import SyncOptions

TRACKING_ANNOTATION = "gitops-hub/tracking-id"
HOOK_FINALIZER = "gitops-hub/hook-finalizer"
FIELD_MANAGER = "gitops-hub"
#: The kind a sync reads to know which namespaces exist (the worker watches it for that).
NAMESPACE_KIND = ("", "Namespace")

ANN_SYNC_WAVE = "argocd.argoproj.io/sync-wave"
ANN_HOOK = "argocd.argoproj.io/hook"
ANN_HOOK_DELETE_POLICY = "argocd.argoproj.io/hook-delete-policy"
ANN_SYNC_OPTIONS = "argocd.argoproj.io/sync-options"
ANN_COMPARE_OPTIONS = "argocd.argoproj.io/compare-options"
ANN_IGNORE_HEALTHCHECK = "argocd.argoproj.io/ignore-healthcheck"
ANN_IGNORE_RESTART_POLICY = "argocd.argoproj.io/ignore-restart-policy"
HELM_HOOK = "helm.sh/hook"
HELM_HOOK_WEIGHT = "helm.sh/hook-weight"
HELM_HOOK_DELETE_POLICY = "helm.sh/hook-delete-policy"

Manifest = dict[str, Any]


class Phase(StrEnum):
    PRE_SYNC = "PreSync"
    SYNC = "Sync"
    POST_SYNC = "PostSync"
    SYNC_FAIL = "SyncFail"

    @property
    def order(self) -> int:
        return _PHASE_ORDER[self]


_PHASE_ORDER = {Phase.PRE_SYNC: -1, Phase.SYNC: 0, Phase.POST_SYNC: 1, Phase.SYNC_FAIL: 2}


class HookType(StrEnum):
    PRE_SYNC = "PreSync"
    SYNC = "Sync"
    POST_SYNC = "PostSync"
    SYNC_FAIL = "SyncFail"
    SKIP = "Skip"
    PRE_DELETE = "PreDelete"
    POST_DELETE = "PostDelete"


class HookDeletePolicy(StrEnum):
    HOOK_SUCCEEDED = "HookSucceeded"
    HOOK_FAILED = "HookFailed"
    BEFORE_HOOK_CREATION = "BeforeHookCreation"


_HOOK_TYPES = {t.value: t for t in HookType}  # Argo's annotation values
_HELM_HOOK_TYPES = {
    "pre-install": HookType.PRE_SYNC,
    "pre-upgrade": HookType.PRE_SYNC,
    "post-install": HookType.POST_SYNC,
    "post-upgrade": HookType.POST_SYNC,
    "pre-delete": HookType.PRE_DELETE,
    "post-delete": HookType.POST_DELETE,
}
#: The hook types that run when an Application is deleted with cascade, never in a sync.
DELETE_HOOK_TYPES = frozenset({HookType.PRE_DELETE, HookType.POST_DELETE})
_HELM_DELETE_POLICIES = {
    "before-hook-creation": HookDeletePolicy.BEFORE_HOOK_CREATION,
    "hook-succeeded": HookDeletePolicy.HOOK_SUCCEEDED,
    "hook-failed": HookDeletePolicy.HOOK_FAILED,
}


# --------------------------------------------------------------------------- identity


def group_of(api_version: str) -> str:
    """``apps/v1`` -> ``apps``; ``v1`` -> ``""`` (the core group)."""
    group, sep, _ = api_version.rpartition("/")
    return group if sep else ""


@dataclass(frozen=True, kw_only=True, order=True)
class ResourceKey:
    """What Argo CD matches target and live objects by: (group, kind, namespace, name)."""

    group: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ResourceKey:
        meta = obj.get("metadata") or {}
        return cls(
            group=group_of(str(obj.get("apiVersion") or "")),
            kind=str(obj.get("kind") or ""),
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
        )

    @property
    def group_kind(self) -> tuple[str, str]:
        return (self.group, self.kind)

    def __str__(self) -> str:
        return f"{self.group}/{self.kind} {self.namespace}/{self.name}"


def tracking_id(app: str, key: ResourceKey) -> str:
    """``<app>:<group>/<kind>:<namespace>/<name>`` (DESIGN.md; Argo's annotation format)."""
    return f"{app}:{key.group}/{key.kind}:{key.namespace}/{key.name}"


_TRACKING_RE = re.compile(
    r"^(?P<app>[^:]+):(?P<group>[^/:]*)/(?P<kind>[^:/]+):(?P<ns>[^/]*)/(?P<name>.+)$"
)


def parse_tracking_id(text: str) -> tuple[str, ResourceKey] | None:
    """``(app, key)`` from a tracking id, or None when it is not one."""
    m = _TRACKING_RE.match(text.strip())
    if m is None:
        return None
    key = ResourceKey(group=m["group"], kind=m["kind"], namespace=m["ns"], name=m["name"])
    return m["app"], key


def owning_app(obj: Mapping[str, Any]) -> str | None:
    """The app a live object belongs to, per its tracking id.

    An id copied onto another object (``kubectl get -o yaml | kubectl apply``, a template
    reused) names a different resource; like Argo CD we ignore it, so such an object is never
    pruned or claimed by mistake.
    """
    text = annotations_of(obj).get(TRACKING_ANNOTATION)
    if not text:
        return None
    parsed = parse_tracking_id(text)
    if parsed is None:
        return None
    app, key = parsed
    return app if key == ResourceKey.of(obj) else None


def with_tracking_id(obj: Mapping[str, Any], app: str) -> Manifest:
    """A copy of ``obj`` carrying the tracking id naming itself."""
    out = _copy(obj)
    meta = out.setdefault("metadata", {})
    anns = dict(meta.get("annotations") or {})
    anns[TRACKING_ANNOTATION] = tracking_id(app, ResourceKey.of(out))
    meta["annotations"] = anns
    return out


def _copy(obj: Mapping[str, Any]) -> Manifest:
    out: Manifest = clone_tree(dict(obj))
    return out


def clone_tree(value: Any) -> Any:
    """A copy of a JSON-shaped tree (dicts, lists, scalars); several times faster than
    ``copy.deepcopy``, which matters when an app has thousands of objects."""
    if isinstance(value, dict):
        return {k: clone_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone_tree(v) for v in value]
    return value


# --------------------------------------------------------------------------- annotations


def annotations_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    meta = obj.get("metadata")
    if type(meta) is not dict and not isinstance(meta, Mapping):  # dict: no ABC lookup
        return {}
    anns = meta.get("annotations")
    return anns if type(anns) is dict or isinstance(anns, Mapping) else {}


def annotation_csv(obj: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """Comma-separated annotation values, trimmed, empty ones dropped, de-duplicated."""
    seen: list[str] = []
    for item in str(annotations_of(obj).get(key) or "").split(","):
        value = item.strip()
        if value and value not in seen:
            seen.append(value)
    return tuple(seen)


_ATOI = re.compile(r"^[+-]?\d+$")  # Go's strconv.Atoi: no spaces, no underscores


def _atoi(text: object) -> int | None:
    if isinstance(text, str) and _ATOI.match(text):
        return int(text)
    return None


def sync_wave(obj: Mapping[str, Any]) -> int:
    """The object's wave: ``sync-wave`` if it parses, else Helm ``hook-weight``, else 0."""
    anns = annotations_of(obj)
    wave = _atoi(anns.get(ANN_SYNC_WAVE))
    if wave is not None:
        return wave
    weight = _atoi(anns.get(HELM_HOOK_WEIGHT))
    return weight if weight is not None else 0


def sync_wave_problem(obj: Mapping[str, Any]) -> str | None:
    """Why the ``sync-wave`` annotation was ignored (Argo silently falls back), or None."""
    anns = annotations_of(obj)
    if ANN_SYNC_WAVE in anns and _atoi(anns.get(ANN_SYNC_WAVE)) is None:
        return (
            f"annotation {ANN_SYNC_WAVE}={anns.get(ANN_SYNC_WAVE)!r} is not an integer; "
            f"using wave {sync_wave(obj)} as Argo CD does"
        )
    return None


def hook_types(obj: Mapping[str, Any]) -> tuple[HookType, ...]:
    """Hook types from ``argocd.argoproj.io/hook``; Helm's only when Argo's names none."""
    anns = annotations_of(obj)
    if ANN_HOOK not in anns and HELM_HOOK not in anns:
        return ()  # most objects (a sync asks this of each object several times)
    types = [_HOOK_TYPES[v] for v in annotation_csv(obj, ANN_HOOK) if v in _HOOK_TYPES]
    if not types:
        types = [
            _HELM_HOOK_TYPES[v] for v in annotation_csv(obj, HELM_HOOK) if v in _HELM_HOOK_TYPES
        ]
    return tuple(dict.fromkeys(types))


def is_delete_hook(obj: Mapping[str, Any], hook_type: HookType) -> bool:
    """``obj`` is a hook of ``hook_type`` (PreDelete or PostDelete), by Argo's annotation or
    Helm's ``pre-delete``/``post-delete``; a hook may also name sync phases beside it."""
    return is_hook(obj) and hook_type in hook_types(obj)


def unknown_hook_values(obj: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(v for v in annotation_csv(obj, ANN_HOOK) if v not in _HOOK_TYPES)


def is_skip(obj: Mapping[str, Any]) -> bool:
    """``hook: Skip`` alone: never applied, never compared (Argo's ``hook.Skip``)."""
    types = hook_types(obj)
    return HookType.SKIP in types and len(types) == 1


def is_hook(obj: Mapping[str, Any]) -> bool:
    anns = annotations_of(obj)
    if ANN_HOOK in anns:
        return not is_skip(obj)
    helm = anns.get(HELM_HOOK)
    # Helm marks CRDs with crd-install; they are ordinary resources, not hooks.
    return helm is not None and helm != "crd-install"


def hook_phases(obj: Mapping[str, Any]) -> tuple[Phase, ...]:
    """The sync phases an object runs in: hooks in theirs (PreDelete/PostDelete in none),
    Skip in none, everything else in Sync. Ordered by phase."""
    if is_skip(obj):
        return ()
    if not is_hook(obj):
        return (Phase.SYNC,)
    phases = {Phase(t.value) for t in hook_types(obj) if t.value in {p.value for p in Phase}}
    return tuple(sorted(phases, key=lambda p: p.order))


def hook_delete_policies(obj: Mapping[str, Any]) -> frozenset[HookDeletePolicy]:
    known = {p.value: p for p in HookDeletePolicy}
    policies = {known[v] for v in annotation_csv(obj, ANN_HOOK_DELETE_POLICY) if v in known}
    policies |= {
        _HELM_DELETE_POLICIES[v]
        for v in annotation_csv(obj, HELM_HOOK_DELETE_POLICY)
        if v in _HELM_DELETE_POLICIES
    }
    return frozenset(policies or {HookDeletePolicy.BEFORE_HOOK_CREATION})


def resource_sync_options(obj: Mapping[str, Any] | None) -> SyncOptions:
    if obj is None:
        return SyncOptions()
    return SyncOptions.parse(annotation_csv(obj, ANN_SYNC_OPTIONS))


def effective_sync_options(obj: Mapping[str, Any] | None, app_options: SyncOptions) -> SyncOptions:
    """The resource's ``sync-options`` annotation wins over the app's, key by key."""
    return resource_sync_options(obj).merged_over(app_options)


def compare_options(obj: Mapping[str, Any] | None) -> frozenset[str]:
    if obj is None:
        return frozenset()
    return frozenset(annotation_csv(obj, ANN_COMPARE_OPTIONS))


def ignores_extraneous(obj: Mapping[str, Any] | None) -> bool:
    return "IgnoreExtraneous" in compare_options(obj)


def ignores_health(obj: Mapping[str, Any] | None) -> bool:
    return obj is not None and annotations_of(obj).get(ANN_IGNORE_HEALTHCHECK) == "true"


# --------------------------------------------------------------------------- globs


def _char_class(body: str) -> str:
    """A glob class body (``a-z0``) as a regex class body, every character escaped."""
    out: list[str] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            out.append(f"{re.escape(body[i])}-{re.escape(body[i + 2])}")
            i += 3
        else:
            out.append(re.escape(body[i]))
            i += 1
    return "".join(out)


@lru_cache(maxsize=256)
def _compile_glob(pattern: str) -> Any:  # an RE2 pattern (the package is untyped)
    """gobwas/glob without separators: ``*``/``**`` any run, ``?`` one char, ``[a-z]``,
    ``[!a-z]``, ``{a,b}`` alternatives (nestable), ``\\`` escapes."""

    def parse(pos: int, in_braces: bool) -> tuple[str, int]:
        out: list[str] = []
        alternatives: list[str] = []
        while pos < len(pattern):
            c = pattern[pos]
            if c == "\\":
                if pos + 1 >= len(pattern):
                    raise ValueError("pattern ends with an escape")
                out.append(re.escape(pattern[pos + 1]))
                pos += 2
            elif c == "*":
                while pos < len(pattern) and pattern[pos] == "*":
                    pos += 1
                out.append(".*")
            elif c == "?":
                out.append(".")
                pos += 1
            elif c == "[":
                end = pattern.find("]", pos + 2)
                if end < 0:
                    raise ValueError("unterminated [")
                body = pattern[pos + 1 : end]
                negate = body.startswith("!")
                if negate:
                    body = body[1:]
                if not body:
                    raise ValueError("empty []")
                chars = _char_class(body)
                out.append(f"[{'^' if negate else ''}{chars}]")
                pos = end + 1
            elif c == "{":
                inner, pos = parse(pos + 1, True)
                out.append(inner)
            elif c == "," and in_braces:
                alternatives.append("".join(out))
                out = []
                pos += 1
            elif c == "}" and in_braces:
                alternatives.append("".join(out))
                return "(?:" + "|".join(alternatives) + ")", pos + 1
            else:
                out.append(re.escape(c))
                pos += 1
        if in_braces:
            raise ValueError("unterminated {")
        return "".join(out), pos

    body, _ = parse(0, False)
    # RE2, as gobwas/glob is linear: `*a*a*a*a*b` against a long name backtracks for seconds
    # in Python's `re`, and patterns come from Git (ignoreDifferences, sync options).
    try:
        return re2.compile("(?s)" + body)
    except re2.error as exc:  # e.g. a reversed range [b-a]
        raise ValueError(str(exc)) from exc


def argo_glob_match(pattern: str, text: str) -> bool:
    """Argo CD's ``glob.Match`` (gobwas/glob, no separators); ``ValueError`` on a bad pattern."""
    return _compile_glob(pattern).fullmatch(text) is not None
