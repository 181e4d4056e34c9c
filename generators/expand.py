"""The entry point: ``generate(appset, context) -> Result``.

1. Every ``spec.generators`` entry is run in order (its generators in Argo CD's field
   order); a generator error stops everything, as in Argo CD, and is reported as an
   ``ApplicationGenerationFromParamsError`` condition with no params and no apps.
2. Every param set is rendered with its generator's merged template. A render error
   is a ``RenderTemplateParamsError`` condition naming the set; the other sets are
   still rendered so one run reports every broken element.
3. The rendered apps are validated: a missing or invalid name, a template placeholder
   left in the name, project, destination or source, or a name already used by an
   earlier app, is an ``ApplicationValidationError`` condition naming the param set; the
   app is left out of ``applications``. (The hub refuses the whole set when any such
   condition is present: ``hub.appsets.plan_appset``.)

Order is deterministic: entries in spec order, param sets in generator order.
``Result.failed`` says whether nothing may be applied (steps 1-2), which is what the
hub must check before creating, updating or deleting anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from generators.base import GenerateContext, Registry, transform
from generators.clusters import ClusterInfo, ClustersGenerator
from generators.errors import GeneratorError
from generators.git import GitGenerator, RepoReader
from generators.list import ListGenerator
from generators.matrix import MatrixGenerator
from generators.merge import MergeGenerator
from generators.params import Params
from generators.render import AppRenderer, validate_fields, validate_name
from generators.spec import ApplicationSet, GeneratorSpec

GENERATION_ERROR = "ApplicationGenerationFromParamsError"
RENDER_ERROR = "RenderTemplateParamsError"
VALIDATION_ERROR = "ApplicationValidationError"


@dataclass(frozen=True, kw_only=True)
class Context:
    """The outside world a generation may see. Everything is optional."""

    clusters: tuple[ClusterInfo, ...] = ()
    #: Add Argo CD's implicit ``in-cluster`` (``https://kubernetes.default.svc``).
    include_local_cluster: bool = False
    repo_reader: RepoReader | None = None
    #: doublestar globbing for git ``files`` (Argo CD's --enable-new-git-file-globbing).
    new_git_file_globbing: bool = False


@dataclass(frozen=True, kw_only=True)
class ParamSet:
    """One param set, in the shape the template sees, and where it came from."""

    params: Params
    #: e.g. ``spec.generators[0].matrix#3`` (the 4th set of that generator).
    source: str


@dataclass(frozen=True, kw_only=True)
class Condition:
    """An ApplicationSet status condition (``ErrorOccurred``) in Argo CD's terms."""

    reason: str
    message: str
    type: str = "ErrorOccurred"


@dataclass(frozen=True, kw_only=True)
class GeneratedApp:
    manifest: dict[str, Any]
    param_set: ParamSet

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"].get("name", ""))


@dataclass(frozen=True, kw_only=True)
class Result:
    applications: tuple[GeneratedApp, ...] = ()
    #: Every param set generated, in order (one per Application, valid or not).
    params: tuple[ParamSet, ...] = ()
    conditions: tuple[Condition, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> bool:
        """Generation or rendering failed: nothing may be created, updated or deleted."""
        return any(c.reason in (GENERATION_ERROR, RENDER_ERROR) for c in self.conditions)

    @property
    def generation_failed(self) -> bool:
        """The generators themselves failed, so even ``params`` is empty."""
        return any(c.reason == GENERATION_ERROR for c in self.conditions)

    @property
    def manifests(self) -> list[dict[str, Any]]:
        return [app.manifest for app in self.applications]


def build_registry(context: Context) -> Registry:
    """The top-level registry, with the two-level matrix/merge nesting cap built in."""
    terminal = Registry().with_generators(
        ListGenerator(),
        ClustersGenerator(context.clusters, include_local=context.include_local_cluster),
        GitGenerator(context.repo_reader, new_git_file_globbing=context.new_git_file_globbing),
    )
    nested = terminal.with_generators(MatrixGenerator(terminal), MergeGenerator(terminal))
    return terminal.with_generators(MatrixGenerator(nested), MergeGenerator(nested))


def generate(appset: ApplicationSet, context: Context | None = None) -> Result:
    """Expand and render one ApplicationSet. Never raises ``GeneratorError``: see conditions."""
    context = context or Context()
    spec = appset.spec
    ctx = GenerateContext(mode=spec.mode, source=appset.source)
    registry = build_registry(context)
    where = f"{appset.source}: ApplicationSet {appset.name}"

    batches = []
    try:
        for entry in spec.generators:
            batches.extend(transform(entry, registry, spec.template, ctx))
    except GeneratorError as exc:
        return Result(conditions=(Condition(reason=GENERATION_ERROR, message=f"{where}: {exc}"),))

    params: list[ParamSet] = []
    apps: list[GeneratedApp] = []
    conditions: list[Condition] = []
    for batch in batches:
        renderer = AppRenderer(
            batch.template,
            mode=spec.mode,
            appset_name=appset.name,
            appset_namespace=appset.namespace,
            template_patch=spec.template_patch,
            preserve_resources_on_deletion=spec.sync_policy.preserve_resources_on_deletion,
        )
        for index, values in enumerate(batch.params):
            param_set = ParamSet(params=values, source=f"{batch.path}#{index}")
            params.append(param_set)
            try:
                manifest = renderer.render(values)
            except GeneratorError as exc:
                conditions.append(
                    Condition(
                        reason=RENDER_ERROR,
                        message=f"{where}: param set {param_set.source}: {exc}",
                    )
                )
                continue
            apps.append(GeneratedApp(manifest=manifest, param_set=param_set))

    valid = list(_validate(apps, conditions, where))
    return Result(applications=tuple(valid), params=tuple(params), conditions=tuple(conditions))


def _validate(
    apps: Iterable[GeneratedApp], conditions: list[Condition], where: str
) -> Iterable[GeneratedApp]:
    seen: dict[str, GeneratedApp] = {}
    for app in apps:
        name = app.manifest["metadata"].get("name")
        problem = validate_name(name) or validate_fields(app.manifest)
        if problem:
            conditions.append(
                Condition(
                    reason=VALIDATION_ERROR,
                    message=f"{where}: param set {app.param_set.source}: {problem}",
                )
            )
            continue
        first = seen.get(name)
        if first is not None:
            conditions.append(
                Condition(
                    reason=VALIDATION_ERROR,
                    message=(
                        f"{where}: duplicate application name {name!r}: param set "
                        f"{app.param_set.source} repeats param set {first.param_set.source}; "
                        "the later one is skipped"
                    ),
                )
            )
            continue
        seen[name] = app
        yield app


#: Argo CD polls Git generators every 3 minutes unless ``requeueAfterSeconds`` says otherwise.
DEFAULT_GIT_REQUEUE_SECONDS = 180


def requeue_after(appset: ApplicationSet) -> int | None:
    """Seconds until the set should be expanded again, or None (only on events).

    Argo CD's rule: the minimum over all generators, where git uses
    ``requeueAfterSeconds`` (default 3 minutes) and list/clusters never requeue (cluster
    changes are events); matrix and merge take the minimum of their children.
    """

    def walk(entries: Iterable[GeneratorSpec]) -> Iterable[int]:
        for entry in entries:
            if entry.git is not None:
                seconds = entry.git.requeue_after_seconds
                yield DEFAULT_GIT_REQUEUE_SECONDS if seconds is None else seconds
            if entry.matrix is not None:
                yield from walk(entry.matrix.generators)
            if entry.merge is not None:
                yield from walk(entry.merge.generators)

    return min(walk(appset.spec.generators), default=None)
