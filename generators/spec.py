"""ApplicationSet YAML -> frozen, keyword-only dataclasses.

Parsing happens once, at the boundary. Every error names the source (file, and the
document index for multi-document files), the field path
(``spec.generators[1].matrix.generators[0].git.directories[2].path``) and the reason.

Unknown fields are handled the way Argo CD handles them: the controller decodes into Go
structs, so fields it does not know are dropped silently. We do the same, except in two
places where silence hides real mistakes: a generator entry without any generator we
know, and the Argo CD generators gitops-hub does not implement (scmProvider,
pullRequest, clusterDecisionResource, plugin) are errors rather than empty results.
The whole ``spec`` mapping is kept in ``ApplicationSetSpec.raw`` for later stages
(sync policy, progressive sync) that need fields this module does not interpret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from generators import yamlio
from generators.errors import GeneratorError
from generators.params import TemplateMode

API_VERSION = "argoproj.io/v1alpha1"
KIND = "ApplicationSet"

#: Generator keys Argo CD knows and gitops-hub implements, in Argo CD's struct order
#: (which is the order results appear when one entry sets several).
GENERATOR_KEYS = ("list", "clusters", "git", "matrix", "merge")
#: Argo CD generators that need services gitops-hub does not have.
UNSUPPORTED_GENERATOR_KEYS = ("scmProvider", "clusterDecisionResource", "pullRequest", "plugin")

#: Matrix and merge may contain a matrix or merge, which may contain only plain generators.
MAX_NESTING = 2

_APPLICATIONS_SYNC = ("create-only", "create-update", "create-delete", "sync")
_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class SpecError(GeneratorError):
    """The ApplicationSet document is not valid; names source, field path and reason."""

    exit_code = 2


# --------------------------------------------------------------------------- YAML


class _Loader(yamlio.KubeLoader):
    """YAML as Kubernetes reads it (timestamps stay strings), with JSON's string keys."""


def _construct_mapping(loader: yamlio.HardenedLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    # JSON objects have string keys; YAML `1: a` or `true: x` become "1"/"true" as in Go.
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = _key_to_str(key)
        out[key] = loader.construct_object(value_node, deep=True)
    return out


def _key_to_str(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str | bytes) -> Any:
    """One YAML document (JSON is YAML) with Kubernetes-style scalars; raises YamlError."""
    return yamlio.load(text, loader=_Loader)


def load_first_yaml_document(text: str | bytes) -> Any:
    """The first document of a YAML stream, or None; like go-yaml, the rest is not parsed."""
    return yamlio.load_first(text, loader=_Loader)


def load_yaml_documents(text: str | bytes) -> list[Any]:
    """All documents of a multi-document YAML stream, empty ones included as None."""
    return yamlio.load_all(text, loader=_Loader)


# --------------------------------------------------------------------------- model


@dataclass(frozen=True, kw_only=True)
class SelectorRequirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class LabelSelector:
    match_labels: Mapping[str, str] = field(default_factory=dict)
    match_expressions: tuple[SelectorRequirement, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions


@dataclass(frozen=True, kw_only=True)
class AppTemplate:
    """``spec.template`` or a generator's ``template``: raw Application metadata and spec.

    ``metadata`` holds only the fields Argo CD's template has (name, namespace, labels,
    annotations, finalizers); ``spec`` is an Application spec, kept as a manifest dict.
    """

    metadata: Mapping[str, Any] = field(default_factory=dict)
    spec: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ListGeneratorSpec:
    path: str
    elements: tuple[Mapping[str, Any], ...] = ()
    elements_yaml: str = ""
    template: AppTemplate = field(default_factory=AppTemplate)


@dataclass(frozen=True, kw_only=True)
class ClustersGeneratorSpec:
    path: str
    selector: LabelSelector = field(default_factory=LabelSelector)
    values: Mapping[str, str] = field(default_factory=dict)
    flat_list: bool = False
    template: AppTemplate = field(default_factory=AppTemplate)


@dataclass(frozen=True, kw_only=True)
class GitPathItem:
    path: str
    exclude: bool = False


@dataclass(frozen=True, kw_only=True)
class GitGeneratorSpec:
    path: str
    repo_url: str
    revision: str = "HEAD"
    directories: tuple[GitPathItem, ...] = ()
    files: tuple[GitPathItem, ...] = ()
    values: Mapping[str, str] = field(default_factory=dict)
    path_param_prefix: str = ""
    requeue_after_seconds: int | None = None
    template: AppTemplate = field(default_factory=AppTemplate)


@dataclass(frozen=True, kw_only=True)
class MatrixGeneratorSpec:
    path: str
    generators: tuple[GeneratorSpec, ...]
    template: AppTemplate = field(default_factory=AppTemplate)


@dataclass(frozen=True, kw_only=True)
class MergeGeneratorSpec:
    path: str
    generators: tuple[GeneratorSpec, ...]
    merge_keys: tuple[str, ...] = ()
    template: AppTemplate = field(default_factory=AppTemplate)


@dataclass(frozen=True, kw_only=True)
class GeneratorSpec:
    """One entry of ``spec.generators`` (or of a matrix/merge ``generators`` list)."""

    path: str
    depth: int
    raw: Mapping[str, Any]
    list: ListGeneratorSpec | None = None
    clusters: ClustersGeneratorSpec | None = None
    git: GitGeneratorSpec | None = None
    matrix: MatrixGeneratorSpec | None = None
    merge: MergeGeneratorSpec | None = None
    selector: LabelSelector | None = None

    def kinds(self) -> tuple[str, ...]:
        """The generator keys this entry sets, in Argo CD's order."""
        return tuple(k for k in GENERATOR_KEYS if getattr(self, k) is not None)


@dataclass(frozen=True, kw_only=True)
class SyncPolicy:
    preserve_resources_on_deletion: bool = False
    applications_sync: str | None = None


#: ``spec.strategy.type`` values: Argo CD's two; any other is refused by the hub.
STRATEGY_TYPES = ("AllAtOnce", "RollingSync")
_PERCENT = re.compile(r"[0-9]+%")


@dataclass(frozen=True, kw_only=True)
class RollingSyncStep:
    """One ``spec.strategy.rollingSync.steps[]`` entry: which Applications (by their labels)
    and how many of them may update at once (``maxUpdate``: an int, or ``"P%"``)."""

    path: str
    selector: LabelSelector
    max_update: int | str = "100%"


@dataclass(frozen=True, kw_only=True)
class Strategy:
    """``spec.strategy``; ``type`` is kept as written (the hub refuses unknown ones)."""

    type: str
    steps: tuple[RollingSyncStep, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ApplicationSetSpec:
    generators: tuple[GeneratorSpec, ...]
    template: AppTemplate
    go_template: bool = False
    go_template_options: tuple[str, ...] = ()
    mode: TemplateMode = field(default_factory=TemplateMode)
    template_patch: str | None = None
    sync_policy: SyncPolicy = field(default_factory=SyncPolicy)
    strategy: Strategy | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ApplicationSet:
    name: str
    namespace: str
    spec: ApplicationSetSpec
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    #: Where the document came from: the file name, with ``#N`` for the N-th document.
    source: str = "<input>"


# --------------------------------------------------------------------------- parsing


class _Parser:
    """Typed field access that knows where it is, so every error can say so."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, reason: str) -> SpecError:
        return SpecError(f"{self.source}: {path}: {reason}")

    @staticmethod
    def type_name(value: Any) -> str:
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, int | float):
            return "number"
        if isinstance(value, str):
            return "string"
        if isinstance(value, Mapping):
            return "mapping"
        if isinstance(value, list):
            return "list"
        return type(value).__name__

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be a mapping, got {self.type_name(value)}")
        return value

    def opt_mapping(self, obj: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = obj.get(key)
        return {} if value is None else self.mapping(value, f"{path}.{key}")

    def seq(self, obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(f"{path}.{key}", f"must be a list, got {self.type_name(value)}")
        return value

    def string(self, obj: Mapping[str, Any], key: str, path: str, default: str = "") -> str:
        value = obj.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(
                f"{path}.{key}",
                f"must be a string, got {self.type_name(value)} {value!r} (quote it in YAML)",
            )
        return value

    def boolean(self, obj: Mapping[str, Any], key: str, path: str) -> bool:
        value = obj.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.fail(f"{path}.{key}", f"must be true or false, got {value!r}")
        return value

    def string_map(self, obj: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        raw = self.opt_mapping(obj, key, path)
        out: dict[str, str] = {}
        for k, v in raw.items():
            if not isinstance(v, str):
                raise self.fail(
                    f"{path}.{key}.{k}",
                    f"must be a string, got {self.type_name(v)} {v!r} (quote it in YAML)",
                )
            out[k] = v
        return out

    def string_list(self, obj: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        out = []
        for i, v in enumerate(self.seq(obj, key, path)):
            if not isinstance(v, str):
                raise self.fail(f"{path}.{key}[{i}]", f"must be a string, got {self.type_name(v)}")
            out.append(v)
        return tuple(out)

    # ---- pieces

    def selector(self, value: Any, path: str) -> LabelSelector:
        obj = {} if value is None else self.mapping(value, path)
        labels = self.string_map(obj, "matchLabels", path)
        expressions = []
        for i, raw in enumerate(self.seq(obj, "matchExpressions", path)):
            epath = f"{path}.matchExpressions[{i}]"
            item = self.mapping(raw, epath)
            key = self.string(item, "key", epath)
            if not key:
                raise self.fail(f"{epath}.key", "is required")
            operator = self.string(item, "operator", epath)
            if operator not in _OPERATORS:
                raise self.fail(
                    f"{epath}.operator",
                    f"{operator!r} is not a label selector operator; use one of "
                    + ", ".join(_OPERATORS),
                )
            values = self.string_list(item, "values", epath)
            if operator in ("In", "NotIn") and not values:
                raise self.fail(f"{epath}.values", f"must be non-empty for operator {operator}")
            if operator in ("Exists", "DoesNotExist") and values:
                raise self.fail(f"{epath}.values", f"must be empty for operator {operator}")
            expressions.append(SelectorRequirement(key=key, operator=operator, values=values))
        return LabelSelector(match_labels=labels, match_expressions=tuple(expressions))

    def template(self, value: Any, path: str) -> AppTemplate:
        obj = {} if value is None else self.mapping(value, path)
        meta_raw = self.opt_mapping(obj, "metadata", path)
        mpath = f"{path}.metadata"
        metadata: dict[str, Any] = {}
        for key in ("name", "namespace"):
            if key in meta_raw and meta_raw[key] is not None:
                metadata[key] = self.string(meta_raw, key, mpath)
        for key in ("labels", "annotations"):
            if meta_raw.get(key) is not None:
                metadata[key] = self.string_map(meta_raw, key, mpath)
        if meta_raw.get("finalizers") is not None:
            metadata["finalizers"] = list(self.string_list(meta_raw, "finalizers", mpath))
        spec = dict(self.opt_mapping(obj, "spec", path))
        return AppTemplate(metadata=metadata, spec=spec)

    def path_items(self, obj: Mapping[str, Any], key: str, path: str) -> tuple[GitPathItem, ...]:
        items = []
        for i, raw in enumerate(self.seq(obj, key, path)):
            ipath = f"{path}.{key}[{i}]"
            item = self.mapping(raw, ipath)
            item_path = self.string(item, "path", ipath)
            if not item_path:
                raise self.fail(f"{ipath}.path", "is required")
            items.append(GitPathItem(path=item_path, exclude=self.boolean(item, "exclude", ipath)))
        return tuple(items)

    # ---- generators

    def list_gen(self, value: Any, path: str) -> ListGeneratorSpec:
        obj = self.mapping(value, path)
        elements = []
        for i, raw in enumerate(self.seq(obj, "elements", path)):
            elements.append(self.mapping(raw, f"{path}.elements[{i}]"))
        return ListGeneratorSpec(
            path=path,
            elements=tuple(elements),
            elements_yaml=self.string(obj, "elementsYaml", path),
            template=self.template(obj.get("template"), f"{path}.template"),
        )

    def clusters_gen(self, value: Any, path: str) -> ClustersGeneratorSpec:
        obj = {} if value is None else self.mapping(value, path)
        return ClustersGeneratorSpec(
            path=path,
            selector=self.selector(obj.get("selector"), f"{path}.selector"),
            values=self.string_map(obj, "values", path),
            flat_list=self.boolean(obj, "flatList", path),
            template=self.template(obj.get("template"), f"{path}.template"),
        )

    def git_gen(self, value: Any, path: str) -> GitGeneratorSpec:
        obj = self.mapping(value, path)
        repo_url = self.string(obj, "repoURL", path)
        if not repo_url:
            raise self.fail(f"{path}.repoURL", "is required")
        directories = self.path_items(obj, "directories", path)
        files = self.path_items(obj, "files", path)
        if not directories and not files:
            raise self.fail(
                path, "needs `directories` or `files` (a git generator with neither is empty)"
            )
        requeue = obj.get("requeueAfterSeconds")
        if requeue is not None and (
            not isinstance(requeue, int) or isinstance(requeue, bool) or requeue < 0
        ):
            raise self.fail(
                f"{path}.requeueAfterSeconds", f"must be a non-negative integer, got {requeue!r}"
            )
        return GitGeneratorSpec(
            path=path,
            repo_url=repo_url,
            revision=self.string(obj, "revision", path) or "HEAD",
            directories=directories,
            files=files,
            values=self.string_map(obj, "values", path),
            path_param_prefix=self.string(obj, "pathParamPrefix", path),
            requeue_after_seconds=requeue,
            template=self.template(obj.get("template"), f"{path}.template"),
        )

    def children(self, obj: Mapping[str, Any], path: str, depth: int) -> tuple[GeneratorSpec, ...]:
        return tuple(
            self.generator(raw, f"{path}.generators[{i}]", depth + 1)
            for i, raw in enumerate(self.seq(obj, "generators", path))
        )

    def generator(self, value: Any, path: str, depth: int) -> GeneratorSpec:
        obj = self.mapping(value, path)
        for key in UNSUPPORTED_GENERATOR_KEYS:
            if obj.get(key) is not None:
                raise self.fail(
                    f"{path}.{key}",
                    f"the {key} generator is not supported by gitops-hub "
                    "(supported: list, clusters, git, matrix, merge)",
                )
        present = [
            k for k in GENERATOR_KEYS if k in obj and (obj[k] is not None or k == "clusters")
        ]
        if not present:
            unknown = sorted(k for k in obj if k != "selector")
            hint = f"unknown key(s) {', '.join(unknown)}; " if unknown else ""
            raise self.fail(
                path, f"no generator: {hint}expected one of {', '.join(GENERATOR_KEYS)}"
            )
        nested = [k for k in present if k in ("matrix", "merge")]
        if nested and depth >= MAX_NESTING:
            raise self.fail(
                f"{path}.{nested[0]}",
                f"matrix/merge generators nest at most {MAX_NESTING} levels deep "
                "(a matrix or merge may contain one matrix or merge of plain generators)",
            )
        if depth > 0 and len(present) > 1:
            raise self.fail(
                path,
                f"a matrix/merge child must set exactly one generator, found {', '.join(present)}",
            )
        kwargs: dict[str, Any] = {}
        if "list" in present:
            kwargs["list"] = self.list_gen(obj["list"], f"{path}.list")
        if "clusters" in present:
            kwargs["clusters"] = self.clusters_gen(obj["clusters"], f"{path}.clusters")
        if "git" in present:
            kwargs["git"] = self.git_gen(obj["git"], f"{path}.git")
        if "matrix" in present:
            mpath = f"{path}.matrix"
            mobj = self.mapping(obj["matrix"], mpath)
            kwargs["matrix"] = MatrixGeneratorSpec(
                path=mpath,
                generators=self.children(mobj, mpath, depth),
                template=self.template(mobj.get("template"), f"{mpath}.template"),
            )
        if "merge" in present:
            mpath = f"{path}.merge"
            mobj = self.mapping(obj["merge"], mpath)
            kwargs["merge"] = MergeGeneratorSpec(
                path=mpath,
                generators=self.children(mobj, mpath, depth),
                merge_keys=self.string_list(mobj, "mergeKeys", mpath),
                template=self.template(mobj.get("template"), f"{mpath}.template"),
            )
        selector = None
        if obj.get("selector") is not None:
            selector = self.selector(obj["selector"], f"{path}.selector")
        return GeneratorSpec(path=path, depth=depth, raw=obj, selector=selector, **kwargs)

    def sync_policy(self, value: Any, path: str) -> SyncPolicy:
        obj = {} if value is None else self.mapping(value, path)
        sync = obj.get("applicationsSync")
        if sync is not None and sync not in _APPLICATIONS_SYNC:
            raise self.fail(
                f"{path}.applicationsSync",
                f"{sync!r} is not one of {', '.join(_APPLICATIONS_SYNC)}",
            )
        return SyncPolicy(
            preserve_resources_on_deletion=self.boolean(obj, "preserveResourcesOnDeletion", path),
            applications_sync=sync,
        )

    def strategy(self, value: Any, path: str) -> Strategy | None:
        if value is None:
            return None
        obj = self.mapping(value, path)
        kind = self.string(obj, "type", path)
        if not kind:
            raise self.fail(f"{path}.type", "is required (RollingSync or AllAtOnce)")
        if kind != "RollingSync":
            return Strategy(type=kind)
        rolling = self.opt_mapping(obj, "rollingSync", path)
        rpath = f"{path}.rollingSync"
        steps = []
        for i, raw in enumerate(self.seq(rolling, "steps", rpath)):
            spath = f"{rpath}.steps[{i}]"
            step = self.mapping(raw, spath)
            selector = self.selector(
                {"matchExpressions": self.seq(step, "matchExpressions", spath)}, spath
            )
            steps.append(
                RollingSyncStep(
                    path=spath,
                    selector=selector,
                    max_update=self.max_update(step.get("maxUpdate"), f"{spath}.maxUpdate"),
                )
            )
        if not steps:
            raise self.fail(f"{rpath}.steps", "RollingSync needs at least one step")
        return Strategy(type=kind, steps=tuple(steps))

    def max_update(self, value: Any, path: str) -> int | str:
        if value is None:
            return "100%"
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and _PERCENT.fullmatch(value):
            return value
        raise self.fail(
            path,
            f'must be a whole number >= 0 or a percentage such as "25%", got {value!r}',
        )

    def appset(self, doc: Mapping[str, Any]) -> ApplicationSet:
        api_version = doc.get("apiVersion")
        if api_version != API_VERSION:
            raise self.fail("apiVersion", f"must be {API_VERSION}, got {api_version!r}")
        meta = self.opt_mapping(doc, "metadata", "")
        name = self.string(meta, "name", "metadata")
        if not name:
            raise self.fail("metadata.name", "is required")
        spec_obj = self.mapping(doc.get("spec"), "spec")
        generators = tuple(
            self.generator(raw, f"spec.generators[{i}]", 0)
            for i, raw in enumerate(self.seq(spec_obj, "generators", "spec"))
        )
        if not generators:
            raise self.fail("spec.generators", "is required and must list at least one generator")
        if spec_obj.get("template") is None:
            raise self.fail("spec.template", "is required")
        go = self.boolean(spec_obj, "goTemplate", "spec")
        options = self.string_list(spec_obj, "goTemplateOptions", "spec")
        try:
            mode = TemplateMode.from_options(go, options)
        except ValueError as exc:
            raise self.fail("spec.goTemplateOptions", str(exc)) from None
        patch = spec_obj.get("templatePatch")
        if patch is not None and not isinstance(patch, str):
            raise self.fail(
                "spec.templatePatch",
                f"must be a string (a YAML block scalar: `templatePatch: |`), got {self.type_name(patch)}",
            )
        spec = ApplicationSetSpec(
            generators=generators,
            template=self.template(spec_obj["template"], "spec.template"),
            go_template=go,
            go_template_options=options,
            mode=mode,
            template_patch=patch,
            sync_policy=self.sync_policy(spec_obj.get("syncPolicy"), "spec.syncPolicy"),
            strategy=self.strategy(spec_obj.get("strategy"), "spec.strategy"),
            raw=spec_obj,
        )
        return ApplicationSet(
            name=name,
            namespace=self.string(meta, "namespace", "metadata"),
            labels=self.string_map(meta, "labels", "metadata"),
            annotations=self.string_map(meta, "annotations", "metadata"),
            spec=spec,
            source=self.source,
        )


def parse_generator(raw: Any, *, path: str, depth: int, source: str) -> GeneratorSpec:
    """Parse one generator entry; used again after a matrix interpolates its second child."""
    return _Parser(source).generator(raw, path, depth)


def parse_appset(doc: Any, *, source: str = "<input>") -> ApplicationSet:
    """One ApplicationSet from an already-decoded document."""
    parser = _Parser(source)
    return parser.appset(parser.mapping(doc, "(document)"))


def parse_appsets(text: str | bytes, *, source: str = "<input>") -> list[ApplicationSet]:
    """Every ApplicationSet in a (multi-document) YAML or JSON text.

    Documents of other kinds are skipped, so a file may also hold the AppProject the
    sets use. A text without any ApplicationSet is an error: callers would otherwise
    print nothing and succeed.
    """
    try:
        docs = load_yaml_documents(text)
    except yamlio.YamlError as exc:
        raise SpecError(f"{source}: not valid YAML: {exc}") from None
    out = []
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        doc_source = source if len(docs) == 1 else f"{source}#{index}"
        if not isinstance(doc, Mapping):
            raise SpecError(
                f"{doc_source}: a document must be a mapping, got {_Parser.type_name(doc)}"
            )
        if doc.get("kind") != KIND:
            continue
        out.append(parse_appset(doc, source=doc_source))
    if not out:
        raise SpecError(f"{source}: no {KIND} (apiVersion {API_VERSION}) found")
    return out
