"""The ``Generator`` protocol, the registry of generators and the shared transform step.

A generator turns its part of one ``spec.generators`` entry into param sets. Generators
that need the outside world get it at construction (the cluster list, a ``RepoReader``);
``generate`` itself is pure. Matrix and merge compose other generators through a
``Registry`` they are given, and the registries are layered as in Argo CD: the top
level offers matrix/merge whose children may again be matrix/merge, whose children may
only be plain generators. That layering is the nesting cap; there is no global state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from generators.errors import GeneratorError
from generators.params import Params, TemplateMode, flatten_to_strings
from generators.render import interpolate_generator, merge_template
from generators.selector import matches
from generators.spec import AppTemplate, GeneratorSpec, parse_generator


@dataclass(frozen=True, kw_only=True)
class GenerateContext:
    """What every generator may read while generating: the template mode and the source."""

    mode: TemplateMode
    #: The ApplicationSet's source (file, document) for messages.
    source: str = "<input>"


class Generator(Protocol):
    """One generator kind, e.g. ``list``; ``key`` is its field name in the spec."""

    @property
    def key(self) -> str: ...

    def generate(self, entry: GeneratorSpec, ctx: GenerateContext) -> list[Params]:
        """The param sets of ``entry`` (whose ``key`` field is set), in a stable order."""
        ...

    def template(self, entry: GeneratorSpec) -> AppTemplate:
        """The generator's own ``template`` override (empty when it has none)."""
        ...


@dataclass(frozen=True)
class Registry:
    """Spec key -> generator. Immutable: build a new one rather than registering."""

    generators: Mapping[str, Generator] = field(default_factory=dict)

    def get(self, key: str, entry: GeneratorSpec) -> Generator:
        generator = self.generators.get(key)
        if generator is None:
            if key in ("matrix", "merge"):
                raise GeneratorError(
                    f"{entry.path}.{key}: matrix/merge generators nest at most 2 levels deep"
                )
            raise GeneratorError(f"{entry.path}.{key}: the {key} generator is not available here")
        return generator

    def with_generators(self, *generators: Generator) -> Registry:
        return Registry({**self.generators, **{g.key: g for g in generators}})


@dataclass(frozen=True, kw_only=True)
class TransformResult:
    """The output of one generator of one entry: its param sets and merged template."""

    params: list[Params]
    template: AppTemplate
    #: Field path of the generator that produced the sets, e.g. ``spec.generators[0].git``.
    path: str


def flat_labels(params: Params) -> dict[str, str]:
    """The view of a param set that post-selectors match against (dotted, stringified)."""
    return flatten_to_strings(params)


def transform(
    entry: GeneratorSpec,
    registry: Registry,
    base_template: AppTemplate,
    ctx: GenerateContext,
    parent_params: Params | None = None,
) -> list[TransformResult]:
    """Run every generator an entry sets: Argo CD's ``Transform``.

    With ``parent_params`` (a matrix's second child), the entry is first rendered
    against them and parsed again. The entry's ``selector`` then filters the sets.
    """
    if parent_params:
        raw = interpolate_generator(entry.raw, parent_params, ctx.mode, entry.path)
        entry = parse_generator(raw, path=entry.path, depth=entry.depth, source=ctx.source)
    results = []
    for kind in entry.kinds():
        generator = registry.get(kind, entry)
        template = merge_template(generator.template(entry), base_template)
        params = generator.generate(entry, ctx)
        if entry.selector is not None:
            selector = entry.selector
            params = [p for p in params if matches(selector, flat_labels(p))]
        results.append(
            TransformResult(params=params, template=template, path=f"{entry.path}.{kind}")
        )
    return results


def child_params(
    entry: GeneratorSpec,
    registry: Registry,
    ctx: GenerateContext,
    parent_params: Params | None = None,
) -> list[Params]:
    """The param sets of one matrix/merge child (exactly one generator)."""
    results = transform(entry, registry, AppTemplate(), ctx, parent_params)
    if len(results) != 1:
        raise GeneratorError(
            f"{entry.path}: a matrix/merge child must set exactly one generator, "
            f"found {len(results)}"
        )
    return results[0].params
