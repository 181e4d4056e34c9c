"""The list generator: literal ``elements`` and ``elementsYaml``.

- fasttemplate mode: every element value must be a string, except ``values``, a map of
  strings that becomes ``values.<k>`` (Argo CD errors on anything else).
- goTemplate mode: each element is passed as it is, nested and typed (numbers as
  float64, as Argo CD's JSON decoding makes them).
- ``elementsYaml`` (usually templated by a matrix sibling, e.g.
  ``{{ .key.components | toJson }}``) is parsed as a YAML list of maps and appended
  **after** ``elements``, never flattened, in both modes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from generators.base import GenerateContext
from generators.errors import GeneratorError
from generators.params import Params, copy_params, json_numbers
from generators.spec import AppTemplate, GeneratorSpec, load_yaml
from generators.yamlio import YamlError


class ListGenerator:
    key = "list"

    def template(self, entry: GeneratorSpec) -> AppTemplate:
        assert entry.list is not None
        return entry.list.template

    def generate(self, entry: GeneratorSpec, ctx: GenerateContext) -> list[Params]:
        spec = entry.list
        assert spec is not None
        out: list[Params] = []
        for i, element in enumerate(spec.elements):
            where = f"{spec.path}.elements[{i}]"
            if ctx.mode.go:
                out.append(json_numbers(copy_params(element)))
            else:
                out.append(_flat_element(element, where))
        if spec.elements_yaml:
            out.extend(_elements_yaml(spec.elements_yaml, f"{spec.path}.elementsYaml"))
        return out


def _flat_element(element: Mapping[str, Any], where: str) -> Params:
    params: Params = {}
    for key, value in element.items():
        if key == "values":
            if not isinstance(value, Mapping):
                raise GeneratorError(
                    f"{where}.values: must be a map of strings in fasttemplate mode, got "
                    f"{value!r}; use goTemplate: true for other shapes"
                )
            for k, v in value.items():
                if not isinstance(v, str):
                    raise GeneratorError(
                        f"{where}.values.{k}: must be a string in fasttemplate mode, got {v!r}; "
                        "quote it, or use goTemplate: true for typed values"
                    )
                params[f"values.{k}"] = v
        elif isinstance(value, str):
            params[key] = value
        else:
            raise GeneratorError(
                f"{where}.{key}: must be a string in fasttemplate mode, got {value!r}; "
                "quote it, or use goTemplate: true for typed or nested values"
            )
    return params


def _elements_yaml(text: str, where: str) -> list[Params]:
    try:
        loaded = load_yaml(text)
    except YamlError as exc:
        raise GeneratorError(f"{where}: not valid YAML: {exc}") from None
    if loaded is None:
        return []
    if not isinstance(loaded, list) or not all(
        item is None or isinstance(item, Mapping) for item in loaded
    ):
        raise GeneratorError(f"{where}: must be a YAML list of maps, got {text[:80]!r}")
    # Go decodes a `null` item as an empty map.
    return [json_numbers(copy_params(item or {})) for item in loaded]
