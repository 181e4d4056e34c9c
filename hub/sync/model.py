"""Argo CD ``Application`` objects parsed once into frozen dataclasses, and the sync errors.

The parser follows Argo CD's ``argoproj.io/v1alpha1`` schema: unknown fields are ignored (as
the Kubernetes API server does for Argo's CRD), wrong types are errors that name the file and
the field path. Source kinds we cannot render yet (plugins) are parsed so that the engine can
report them clearly instead of rendering nothing — an empty render must never look like "Git
declares nothing". ``pick_sources`` is the one place that decides between ``spec.source``
and ``spec.sources``, for a parsed ``Application`` (``declared_sources``) and for a raw
stored spec (``declared_source_specs``) alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

from generators import yamlio
from hub.errors import HubError

API_VERSION = "argoproj.io/v1alpha1"
DEFAULT_PROJECT = "default"
DEFAULT_REVISION_HISTORY_LIMIT = 10

# Argo CD's defaults for spec.syncPolicy.retry.backoff (pkg/apis/application/v1alpha1).
DEFAULT_RETRY_DURATION_S = 5.0
DEFAULT_RETRY_FACTOR = 2
DEFAULT_RETRY_MAX_DURATION_S = 180.0

_S = TypeVar("_S")


def pick_sources(source: _S | None, sources: Sequence[_S]) -> tuple[_S, ...]:
    """Argo CD's rule: ``spec.sources`` when it has entries (``spec.source`` is then
    ignored), else ``spec.source``, else none. Generic so the typed ``Application`` and a raw
    stored spec cannot drift apart."""
    if sources:
        return tuple(sources)
    return () if source is None else (source,)


class SyncError(HubError):
    """A sync, diff or render failure the user can act on."""


class AppSpecError(SyncError):
    """The Application file itself is invalid (exit 2: bad input the user named)."""

    exit_code = 2


class ManifestError(SyncError):
    """One or more rendered manifests are invalid; nothing has been applied."""

    def __init__(self, message: str, *, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


class RenderError(SyncError):
    """Manifests could not be produced from the source (bad YAML, kustomize failure...)."""


class UnsupportedSourceError(SyncError):
    """The Application uses a source type gitops-hub cannot render yet."""


class EmptyRenderGuardError(SyncError):
    """Pruning would delete every resource of the app because the render is empty."""


class SharedResourceError(SyncError):
    """Git declares a resource another app tracks and the app asked to fail on that."""


class DiffError(SyncError):
    """A comparison setting (ignoreDifferences) cannot be evaluated."""


# --------------------------------------------------------------------------- durations

_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(value: object, *, where: str = "duration") -> float:
    """Seconds from an Argo CD duration: Go syntax ("5s", "3m", "1h30m", "500ms") or a bare
    integer meaning seconds, as Argo's ``parseStringToDuration`` accepts."""
    if isinstance(value, bool):
        raise AppSpecError(f"{where}: expected a duration like '5s', got {value!r}")
    if isinstance(value, int):
        return float(value)
    if not isinstance(value, str):
        raise AppSpecError(f"{where}: expected a duration like '5s', got {value!r}")
    text = value.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return float(int(text))
    sign = 1.0
    if text and text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    pos = 0
    total = 0.0
    while pos < len(text):
        m = _GO_PART.match(text, pos)
        if m is None:
            break
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise AppSpecError(
            f"{where}: cannot parse {value!r} as a duration; use Go syntax like '5s', '3m', "
            "'1h30m' or a number of seconds"
        )
    return sign * total


# --------------------------------------------------------------------------- sync options


@dataclass(frozen=True, kw_only=True)
class SyncOptions:
    """``Key=Value`` sync options (app ``syncOptions`` or a resource's annotation).

    Argo CD matches options by exact string ("Prune=false"); keys are kept as written.
    """

    items: tuple[str, ...] = ()

    @classmethod
    def parse(cls, values: Sequence[str]) -> SyncOptions:
        seen: list[str] = []
        for raw in values:
            text = raw.strip()
            if text and text not in seen:
                seen.append(text)
        return cls(items=tuple(seen))

    def get(self, key: str) -> str | None:
        """The value of ``key`` (the last one written wins), or None."""
        found: str | None = None
        for item in self.items:
            k, sep, v = item.partition("=")
            if sep and k.strip() == key:
                found = v.strip()
        return found

    def has(self, key: str, value: str) -> bool:
        v = self.get(key)
        return v is not None and v.lower() == value.lower()

    def merged_over(self, base: SyncOptions) -> SyncOptions:
        """These options taking precedence over ``base`` key by key (resource over app)."""
        mine = {item.partition("=")[0].strip() for item in self.items}
        kept = [item for item in base.items if item.partition("=")[0].strip() not in mine]
        return SyncOptions(items=(*kept, *self.items))


# --------------------------------------------------------------------------- spec types


@dataclass(frozen=True, kw_only=True)
class DirectorySource:
    recurse: bool = False
    include: str = ""
    exclude: str = ""


@dataclass(frozen=True, kw_only=True)
class KustomizeSource:
    """Argo's ``source.kustomize`` overrides. Kept so the engine can refuse them clearly:
    rendering with overrides silently dropped would deploy something Git does not say."""

    name_prefix: str = ""
    name_suffix: str = ""
    namespace: str = ""
    images: tuple[str, ...] = ()
    common_labels: Mapping[str, str] = field(default_factory=dict)
    common_annotations: Mapping[str, str] = field(default_factory=dict)
    version: str = ""
    other_fields: tuple[str, ...] = ()

    def overrides(self) -> tuple[str, ...]:
        """Names of the override fields that are set (empty when the block is a no-op)."""
        names = [
            n
            for n, v in (
                ("namePrefix", self.name_prefix),
                ("nameSuffix", self.name_suffix),
                ("namespace", self.namespace),
                ("images", self.images),
                ("commonLabels", self.common_labels),
                ("commonAnnotations", self.common_annotations),
            )
            if v
        ]
        return (*names, *self.other_fields)


@dataclass(frozen=True, kw_only=True)
class HelmParameter:
    name: str
    value: str
    force_string: bool = False


@dataclass(frozen=True, kw_only=True)
class HelmFileParameter:
    name: str
    path: str


@dataclass(frozen=True, kw_only=True)
class HelmSource:
    """Argo's ``source.helm`` (``ApplicationSourceHelm``). ``values_yaml`` is ``values`` or
    ``valuesObject`` as YAML text (``valuesObject`` wins when both are set, as in Argo)."""

    value_files: tuple[str, ...] = ()
    values_yaml: str = ""
    parameters: tuple[HelmParameter, ...] = ()
    file_parameters: tuple[HelmFileParameter, ...] = ()
    release_name: str = ""
    namespace: str = ""
    skip_crds: bool = False
    skip_schema_validation: bool = False
    skip_tests: bool = False
    ignore_missing_value_files: bool = False
    pass_credentials: bool = False
    kube_version: str = ""
    api_versions: tuple[str, ...] = ()
    version: str = ""


@dataclass(frozen=True, kw_only=True)
class ApplicationSource:
    repo_url: str
    path: str = ""
    target_revision: str = "HEAD"
    chart: str = ""
    ref: str = ""
    directory: DirectorySource | None = None
    kustomize: KustomizeSource | None = None
    helm: HelmSource | None = None
    plugin: bool = False

    @property
    def is_chart_repo(self) -> bool:
        """A chart from a Helm repository (``repoURL`` + ``chart``), not a Git path."""
        return bool(self.chart)

    @property
    def ref_only(self) -> bool:
        """A ``ref:`` source with neither path nor chart: only read for ``$ref`` value
        files, never rendered (Argo CD's multi-source rule)."""
        return bool(self.ref) and not self.path and not self.chart

    @property
    def declared_type(self) -> str:
        """Helm / Plugin / Kustomize / Directory as the spec says; a plain path may still turn
        out to be Kustomize when the directory holds a kustomization file (render decides)."""
        if self.helm is not None or self.chart:
            return "Helm"
        if self.plugin:
            return "Plugin"
        if self.kustomize is not None:
            return "Kustomize"
        return "Directory"

    def unsupported_reason(self) -> str | None:
        kind = self.declared_type
        if kind == "Plugin":
            return "config management plugin sources are not supported yet"
        if self.kustomize is not None and self.kustomize.overrides():
            return (
                "kustomize overrides in the Application ("
                + ", ".join(self.kustomize.overrides())
                + ") are not supported yet; move them into kustomization.yaml"
            )
        return None


@dataclass(frozen=True, kw_only=True)
class Destination:
    server: str = ""
    name: str = ""
    namespace: str = ""


@dataclass(frozen=True, kw_only=True)
class Automated:
    prune: bool = False
    self_heal: bool = False
    allow_empty: bool = False
    enabled: bool = True


@dataclass(frozen=True, kw_only=True)
class Backoff:
    duration_s: float = DEFAULT_RETRY_DURATION_S
    factor: int = DEFAULT_RETRY_FACTOR
    max_duration_s: float = DEFAULT_RETRY_MAX_DURATION_S


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    limit: int = 0  # Argo: < 0 means unlimited
    backoff: Backoff = field(default_factory=Backoff)


@dataclass(frozen=True, kw_only=True)
class SyncPolicy:
    automated: Automated | None = None
    sync_options: SyncOptions = field(default_factory=SyncOptions)
    retry: RetryPolicy | None = None

    @property
    def auto_sync(self) -> bool:
        return self.automated is not None and self.automated.enabled


@dataclass(frozen=True, kw_only=True)
class IgnoreDifference:
    group: str = ""
    kind: str
    name: str = ""
    namespace: str = ""
    json_pointers: tuple[str, ...] = ()
    jq_path_expressions: tuple[str, ...] = ()
    managed_fields_managers: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Application:
    name: str
    namespace: str = ""
    project: str = DEFAULT_PROJECT
    source: ApplicationSource | None = None
    sources: tuple[ApplicationSource, ...] = ()
    destination: Destination = field(default_factory=Destination)
    sync_policy: SyncPolicy = field(default_factory=SyncPolicy)
    ignore_differences: tuple[IgnoreDifference, ...] = ()
    revision_history_limit: int = DEFAULT_REVISION_HISTORY_LIMIT
    source_file: str = ""

    @property
    def has_multiple_sources(self) -> bool:
        """Argo's ``HasMultipleSources``: ``spec.sources`` set wins over ``spec.source``."""
        return bool(self.sources)

    def declared_sources(self) -> tuple[ApplicationSource, ...]:
        """The app's sources by Argo CD's rule, unchecked: ``spec.sources`` when set (then
        ``spec.source`` is ignored), else ``spec.source``, else none (``pick_sources``;
        ``app_sources`` checks what it returns)."""
        return pick_sources(self.source, self.sources)

    def app_sources(self) -> tuple[ApplicationSource, ...]:
        """The sources to resolve, in order (``declared_sources``); ``UnsupportedSourceError``
        names the first one we cannot render."""
        where = f"{self.source_file or 'Application'} ({self.name})"
        found = self.declared_sources()
        if not found:
            raise AppSpecError(f"{where}: spec.source is required")
        for i, src in enumerate(found):
            reason = src.unsupported_reason()
            if reason:
                label = f"spec.sources[{i}]" if self.sources else "spec.source"
                raise UnsupportedSourceError(f"{where}: {label}: {reason}")
        refs = [s.ref for s in found if s.ref]
        dupes = sorted({r for r in refs if refs.count(r) > 1})
        if dupes:
            raise AppSpecError(f"{where}: spec.sources: ref {dupes[0]!r} is used twice")
        if all(s.ref_only for s in found):
            raise AppSpecError(
                f"{where}: spec.sources: every source is a ref-only source; at least one "
                "needs a path or a chart to render"
            )
        return found

    def primary_source(self) -> ApplicationSource:
        """The first source that renders (the one whose revision is the app's revision in
        single-source terms); see ``app_sources``."""
        return next(s for s in self.app_sources() if not s.ref_only)


# --------------------------------------------------------------------------- parsing


class _Reader:
    """Typed access to a YAML mapping with errors naming file and field path."""

    def __init__(self, file: str) -> None:
        self.file = file or "<application>"

    def fail(self, path: str, message: str) -> AppSpecError:
        return AppSpecError(f"{self.file}: {path}: {message}")

    def mapping(self, value: object, path: str, *, optional: bool = True) -> Mapping[str, Any]:
        if value is None and optional:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {_type_name(value)}")
        return value

    def string(self, m: Mapping[str, Any], key: str, path: str, default: str = "") -> str:
        value = m.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(f"{path}.{key}", f"expected a string, got {_type_name(value)}")
        # YAML turns `targetRevision: 1.0` into a float; Argo's JSON would reject it, but the
        # intent is unambiguous, so keep the text.
        return str(value)

    def boolean(self, m: Mapping[str, Any], key: str, path: str, default: bool = False) -> bool:
        value = m.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(f"{path}.{key}", f"expected true or false, got {value!r}")
        return value

    def integer(self, m: Mapping[str, Any], key: str, path: str, default: int) -> int:
        value = m.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{path}.{key}", f"expected an integer, got {value!r}")
        return value

    def strings(self, m: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = m.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(f"{path}.{key}", f"expected a list of strings, got {_type_name(value)}")
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.fail(f"{path}.{key}[{i}]", f"expected a string, got {_type_name(item)}")
            out.append(item)
        return tuple(out)

    def string_map(self, m: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        value = self.mapping(m.get(key), f"{path}.{key}")
        return {str(k): str(v) for k, v in value.items()}


def _type_name(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _parse_source(r: _Reader, raw: object, path: str) -> ApplicationSource:
    m = r.mapping(raw, path, optional=False)
    repo_url = r.string(m, "repoURL", path)
    if not repo_url:
        raise r.fail(f"{path}.repoURL", "is required")
    directory = None
    if m.get("directory") is not None:
        d = r.mapping(m.get("directory"), f"{path}.directory")
        dpath = f"{path}.directory"
        # directory.jsonnet is accepted and ignored: we do not evaluate jsonnet (render refuses
        # .jsonnet files instead of skipping them).
        directory = DirectorySource(
            recurse=r.boolean(d, "recurse", dpath),
            include=r.string(d, "include", dpath),
            exclude=r.string(d, "exclude", dpath),
        )
    kustomize = None
    if m.get("kustomize") is not None:
        k = r.mapping(m.get("kustomize"), f"{path}.kustomize")
        kpath = f"{path}.kustomize"
        known = {
            "namePrefix",
            "nameSuffix",
            "namespace",
            "images",
            "commonLabels",
            "commonAnnotations",
            "version",
        }
        other = tuple(sorted(key for key, v in k.items() if key not in known and v))
        kustomize = KustomizeSource(
            name_prefix=r.string(k, "namePrefix", kpath),
            name_suffix=r.string(k, "nameSuffix", kpath),
            namespace=r.string(k, "namespace", kpath),
            images=r.strings(k, "images", kpath),
            common_labels=r.string_map(k, "commonLabels", kpath),
            common_annotations=r.string_map(k, "commonAnnotations", kpath),
            version=r.string(k, "version", kpath),
            other_fields=other,
        )
    helm = None
    if m.get("helm") is not None:
        helm = _parse_helm(r, m.get("helm"), f"{path}.helm")
    ref = r.string(m, "ref", path)
    if ref and not _REF_NAME.fullmatch(ref):
        raise r.fail(f"{path}.ref", f"{ref!r}: use letters, digits, '-' and '_' only")
    if m.get("plugin") is not None:
        r.mapping(m.get("plugin"), f"{path}.plugin")
    return ApplicationSource(
        repo_url=repo_url,
        path=r.string(m, "path", path),
        target_revision=r.string(m, "targetRevision", path) or "HEAD",
        chart=r.string(m, "chart", path),
        ref=ref,
        directory=directory,
        kustomize=kustomize,
        helm=helm,
        plugin=m.get("plugin") is not None,
    )


_REF_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _parse_helm(r: _Reader, raw: object, path: str) -> HelmSource:
    h = r.mapping(raw, path)
    values_yaml = ""
    if h.get("valuesObject") is not None:
        obj = r.mapping(h.get("valuesObject"), f"{path}.valuesObject")
        values_yaml = yaml.safe_dump(dict(obj), sort_keys=False, allow_unicode=True)
    elif h.get("values") is not None:
        raw_values = h.get("values")
        if isinstance(raw_values, Mapping):
            # Argo accepts a YAML object in ``values`` too (it is a RawExtension-like string)
            values_yaml = yaml.safe_dump(dict(raw_values), sort_keys=False, allow_unicode=True)
        else:
            values_yaml = r.string(h, "values", path)
    params: list[HelmParameter] = []
    raw_params = h.get("parameters")
    if raw_params is not None and not isinstance(raw_params, list):
        raise r.fail(f"{path}.parameters", f"expected a list, got {_type_name(raw_params)}")
    for i, item in enumerate(raw_params or []):
        ppath = f"{path}.parameters[{i}]"
        p = r.mapping(item, ppath, optional=False)
        name = r.string(p, "name", ppath)
        if not name:
            raise r.fail(f"{ppath}.name", "is required")
        params.append(
            HelmParameter(
                name=name,
                value=r.string(p, "value", ppath),
                force_string=r.boolean(p, "forceString", ppath),
            )
        )
    file_params: list[HelmFileParameter] = []
    raw_files = h.get("fileParameters")
    if raw_files is not None and not isinstance(raw_files, list):
        raise r.fail(f"{path}.fileParameters", f"expected a list, got {_type_name(raw_files)}")
    for i, item in enumerate(raw_files or []):
        fpath = f"{path}.fileParameters[{i}]"
        f = r.mapping(item, fpath, optional=False)
        name = r.string(f, "name", fpath)
        file = r.string(f, "path", fpath)
        if not name or not file:
            raise r.fail(fpath, "name and path are required")
        file_params.append(HelmFileParameter(name=name, path=file))
    return HelmSource(
        value_files=r.strings(h, "valueFiles", path),
        values_yaml=values_yaml,
        parameters=tuple(params),
        file_parameters=tuple(file_params),
        release_name=r.string(h, "releaseName", path),
        namespace=r.string(h, "namespace", path),
        skip_crds=r.boolean(h, "skipCrds", path),
        skip_schema_validation=r.boolean(h, "skipSchemaValidation", path),
        skip_tests=r.boolean(h, "skipTests", path),
        ignore_missing_value_files=r.boolean(h, "ignoreMissingValueFiles", path),
        pass_credentials=r.boolean(h, "passCredentials", path),
        kube_version=r.string(h, "kubeVersion", path),
        api_versions=r.strings(h, "apiVersions", path),
        version=r.string(h, "version", path),
    )


def _parse_sync_policy(r: _Reader, raw: object, path: str) -> SyncPolicy:
    m = r.mapping(raw, path)
    automated = None
    if "automated" in m:
        a = r.mapping(m.get("automated"), f"{path}.automated")
        apath = f"{path}.automated"
        automated = Automated(
            prune=r.boolean(a, "prune", apath),
            self_heal=r.boolean(a, "selfHeal", apath),
            allow_empty=r.boolean(a, "allowEmpty", apath),
            enabled=r.boolean(a, "enabled", apath, default=True),
        )
    retry = None
    if m.get("retry") is not None:
        rm = r.mapping(m.get("retry"), f"{path}.retry")
        rpath = f"{path}.retry"
        b = r.mapping(rm.get("backoff"), f"{rpath}.backoff")
        bpath = f"{rpath}.backoff"
        duration = DEFAULT_RETRY_DURATION_S
        max_duration = DEFAULT_RETRY_MAX_DURATION_S
        if b.get("duration") not in (None, ""):
            duration = parse_duration(b["duration"], where=f"{r.file}: {bpath}.duration")
        if b.get("maxDuration") not in (None, ""):
            max_duration = parse_duration(b["maxDuration"], where=f"{r.file}: {bpath}.maxDuration")
        factor = r.integer(b, "factor", bpath, DEFAULT_RETRY_FACTOR)
        if duration < 0 or max_duration < 0 or factor < 1:
            raise r.fail(bpath, "duration and maxDuration must be >= 0 and factor >= 1")
        retry = RetryPolicy(
            limit=r.integer(rm, "limit", rpath, 0),
            backoff=Backoff(duration_s=duration, factor=factor, max_duration_s=max_duration),
        )
    return SyncPolicy(
        automated=automated,
        sync_options=SyncOptions.parse(r.strings(m, "syncOptions", path)),
        retry=retry,
    )


def _parse_ignore_differences(r: _Reader, raw: object, path: str) -> tuple[IgnoreDifference, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise r.fail(path, f"expected a list, got {_type_name(raw)}")
    out: list[IgnoreDifference] = []
    for i, item in enumerate(raw):
        ipath = f"{path}[{i}]"
        m = r.mapping(item, ipath, optional=False)
        kind = r.string(m, "kind", ipath)
        if not kind:
            raise r.fail(f"{ipath}.kind", "is required (use '*' for every kind)")
        out.append(
            IgnoreDifference(
                group=r.string(m, "group", ipath),
                kind=kind,
                name=r.string(m, "name", ipath),
                namespace=r.string(m, "namespace", ipath),
                json_pointers=r.strings(m, "jsonPointers", ipath),
                jq_path_expressions=r.strings(m, "jqPathExpressions", ipath),
                managed_fields_managers=r.strings(m, "managedFieldsManagers", ipath),
            )
        )
    return tuple(out)


def declared_source_specs(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``Application.declared_sources`` for a raw ``spec`` (a stored manifest that is not
    parsed): ``spec.sources`` when set, else ``spec.source``; entries that are not mappings
    are left out (a ``spec.sources`` that is set but not a list gives none)."""
    raw = spec.get("sources")
    if raw and not isinstance(raw, list):
        return []
    return [s for s in pick_sources(spec.get("source"), raw or ()) if isinstance(s, Mapping)]


def parse_application(doc: object, *, source_file: str = "") -> Application:
    """One ``Application`` from a parsed YAML document."""
    r = _Reader(source_file)
    m = r.mapping(doc, "(document)", optional=False)
    api_version = m.get("apiVersion")
    kind = m.get("kind")
    if api_version != API_VERSION or kind != "Application":
        raise r.fail(
            "apiVersion/kind",
            f"expected {API_VERSION} Application, got {api_version!r} {kind!r}",
        )
    meta = r.mapping(m.get("metadata"), "metadata")
    name = r.string(meta, "name", "metadata")
    if not name:
        raise r.fail("metadata.name", "is required")
    spec = r.mapping(m.get("spec"), "spec", optional=False)
    source = None
    if spec.get("source") is not None:
        source = _parse_source(r, spec["source"], "spec.source")
    sources: list[ApplicationSource] = []
    if spec.get("sources") is not None:
        raw_sources = spec["sources"]
        if not isinstance(raw_sources, list):
            raise r.fail("spec.sources", f"expected a list, got {_type_name(raw_sources)}")
        sources = [_parse_source(r, s, f"spec.sources[{i}]") for i, s in enumerate(raw_sources)]
    if source is None and not sources:
        raise r.fail("spec.source", "is required (or spec.sources)")
    d = r.mapping(spec.get("destination"), "spec.destination")
    destination = Destination(
        server=r.string(d, "server", "spec.destination"),
        name=r.string(d, "name", "spec.destination"),
        namespace=r.string(d, "namespace", "spec.destination"),
    )
    if destination.server and destination.name:
        raise r.fail(
            "spec.destination", "set either server or name, not both (as Argo CD requires)"
        )
    limit = r.integer(spec, "revisionHistoryLimit", "spec", DEFAULT_REVISION_HISTORY_LIMIT)
    return Application(
        name=name,
        namespace=r.string(meta, "namespace", "metadata"),
        project=r.string(spec, "project", "spec") or DEFAULT_PROJECT,
        source=source,
        sources=tuple(sources),
        destination=destination,
        sync_policy=_parse_sync_policy(r, spec.get("syncPolicy"), "spec.syncPolicy"),
        ignore_differences=_parse_ignore_differences(
            r, spec.get("ignoreDifferences"), "spec.ignoreDifferences"
        ),
        revision_history_limit=limit,
        source_file=source_file,
    )


def parse_application_yaml(text: str, *, source_file: str = "") -> Application:
    """The single ``Application`` in a YAML text (a file holding several is an error)."""
    try:
        docs = [d for d in yamlio.load_all(text) if d is not None]
    except yamlio.YamlError as exc:
        raise AppSpecError(f"{source_file or '<application>'}: invalid YAML: {exc}") from exc
    if len(docs) != 1:
        raise AppSpecError(
            f"{source_file or '<application>'}: expected exactly one Application document, "
            f"found {len(docs)}"
        )
    return parse_application(docs[0], source_file=source_file)
