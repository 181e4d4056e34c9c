"""The matrix generator: the product of exactly two child generators.

The first child runs once; the second runs once per param set of the first, with its
whole spec (paths, selectors, values, elements...) rendered against that set — so a git
generator can read ``{{ .name }}/config.json`` for each cluster. Output order is
``for a in child1: for b in child2(a)``; an empty child gives an empty matrix.

Combining a and b: in fasttemplate mode both are string maps; a key present in both
with different values is an error (Argo CD's ``found duplicate key``), equal values are
fine. In goTemplate mode they are deep-merged with the first child winning on
conflicts (mergo ``WithOverride`` of a onto b), nested maps merged key-wise.
Child ``template`` overrides are ignored; child ``selector``s apply.
"""

from __future__ import annotations

from generators.base import GenerateContext, Registry, child_params
from generators.errors import GeneratorError
from generators.params import Params, deep_merge, go_format
from generators.spec import AppTemplate, GeneratorSpec


class MatrixGenerator:
    key = "matrix"

    def __init__(self, children: Registry) -> None:
        self._children = children

    def template(self, entry: GeneratorSpec) -> AppTemplate:
        assert entry.matrix is not None
        return entry.matrix.template

    def generate(self, entry: GeneratorSpec, ctx: GenerateContext) -> list[Params]:
        spec = entry.matrix
        assert spec is not None
        if len(spec.generators) != 2:
            raise GeneratorError(
                f"{spec.path}.generators: a matrix needs exactly 2 child generators, "
                f"found {len(spec.generators)}"
            )
        first, second = spec.generators
        out: list[Params] = []
        for a in child_params(first, self._children, ctx):
            for b in child_params(second, self._children, ctx, a):
                out.append(combine(a, b, ctx, spec.path))
        return out


def combine(a: Params, b: Params, ctx: GenerateContext, where: str = "matrix") -> Params:
    """One matrix param set from a first-child set ``a`` and a second-child set ``b``."""
    if ctx.mode.go:
        merged = deep_merge(b, a)
        # Same content; child 1's keys first reads better in `--params` output.
        return {**{k: merged[k] for k in a}, **merged}
    # Argo CD stringifies both sides with %v before comparing (CombineStringMaps).
    out = {k: v if v.__class__ is str else go_format(v) for k, v in a.items()}
    for key, value in b.items():
        text = value if value.__class__ is str else go_format(value)
        current = out.get(key)
        if current is not None and current != text:
            raise GeneratorError(
                f"{where}: found duplicate key {key} with different value, a: {current} ,b: {text}"
            )
        out[key] = text
    return out
