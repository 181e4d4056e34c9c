"""The merge generator: the first child's param sets, overridden by later children.

Each child's sets are indexed by the JSON of their ``mergeKeys`` values (a missing key
is ``null``); two sets of one child with the same index are an error. The output is the
first (base) child's sets only, in the base child's order; each later child, in order,
overrides fields of the base set with the same index (fast mode: a shallow override of
string maps; go mode: a deep merge). Sets absent from the base are dropped. In go mode
merge keys are top-level keys: ``values.x`` does not look inside a nested ``values``.
"""

from __future__ import annotations

import json

from generators.base import GenerateContext, Registry, child_params
from generators.errors import GeneratorError
from generators.params import Params, deep_merge, go_format
from generators.spec import AppTemplate, GeneratorSpec


class MergeGenerator:
    key = "merge"

    def __init__(self, children: Registry) -> None:
        self._children = children

    def template(self, entry: GeneratorSpec) -> AppTemplate:
        assert entry.merge is not None
        return entry.merge.template

    def generate(self, entry: GeneratorSpec, ctx: GenerateContext) -> list[Params]:
        spec = entry.merge
        assert spec is not None
        if len(spec.generators) < 2:
            raise GeneratorError(
                f"{spec.path}.generators: a merge needs at least 2 child generators, "
                f"found {len(spec.generators)}"
            )
        if not spec.merge_keys:
            raise GeneratorError(f"{spec.path}.mergeKeys: at least one merge key is required")
        keys = sorted(set(spec.merge_keys))
        children = [child_params(child, self._children, ctx) for child in spec.generators]
        base_index = _index(children[0], keys, spec.generators[0].path)
        merged = dict(base_index)
        for child, sets in zip(spec.generators[1:], children[1:], strict=True):
            index = _index(sets, keys, child.path)
            for key, base in merged.items():
                override = index.get(key)
                if override is None:
                    continue
                if ctx.mode.go:
                    merged[key] = deep_merge(base, override)
                else:
                    combined = {k: go_format(v) for k, v in base.items()}
                    combined.update({k: go_format(v) for k, v in override.items()})
                    merged[key] = combined
        return list(merged.values())


def _index(sets: list[Params], keys: list[str], where: str) -> dict[str, Params]:
    index: dict[str, Params] = {}
    for params in sets:
        key = json.dumps({k: params.get(k) for k in keys}, sort_keys=True, default=str)
        if key in index:
            raise GeneratorError(
                f"{where}: the parameters from a generator were not unique by the given "
                f"mergeKeys, Merge requires all param sets to be unique. Duplicate key was {key}"
            )
        index[key] = params
    return index
