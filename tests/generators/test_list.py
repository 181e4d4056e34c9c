"""The list generator: elements and elementsYaml, flat and nested."""

from __future__ import annotations

from typing import Any

import pytest

from tests.generators.conftest import error_of, run


@pytest.mark.parametrize(
    ("go", "elements", "expected"),
    [
        (False, [{"cluster": "a", "url": "u"}], [{"cluster": "a", "url": "u"}]),
        (False, [{"cluster": "a", "values": {"x": "1"}}], [{"cluster": "a", "values.x": "1"}]),
        (False, [{}], [{}]),
        (
            True,
            [{"cluster": "a", "replicas": 3, "nested": {"k": [1]}}],
            [{"cluster": "a", "replicas": 3.0, "nested": {"k": [1.0]}}],
        ),
        (True, [{"values": {"x": 1}}], [{"values": {"x": 1.0}}]),
        (False, [{"a": "1"}, {"a": "2"}, {"a": "3"}], [{"a": "1"}, {"a": "2"}, {"a": "3"}]),
    ],
)
def test_elements_become_param_sets_in_order(
    go: bool, elements: list[Any], expected: list[Any]
) -> None:
    assert run([{"list": {"elements": elements}}], go=go) == expected


@pytest.mark.parametrize(
    ("element", "field"),
    [
        ({"replicas": 3}, "elements[0].replicas"),
        ({"enabled": True}, "elements[0].enabled"),
        ({"nested": {"a": "b"}}, "elements[0].nested"),
        ({"values": "x"}, "elements[0].values"),
        ({"values": {"x": 1}}, "elements[0].values.x"),
    ],
)
def test_fast_mode_rejects_non_string_values_naming_the_field(
    element: dict[str, Any], field: str
) -> None:
    message = error_of([{"list": {"elements": [element]}}])
    assert f"spec.generators[0].list.{field}" in message
    assert "goTemplate" in message


@pytest.mark.parametrize("go", [False, True])
def test_elements_yaml_is_appended_after_elements_and_never_flattened(go: bool) -> None:
    gen = {
        "list": {
            "elements": [{"name": "first"}],
            "elementsYaml": "- name: second\n  replicas: 2\n  tags: {a: b}\n",
        }
    }
    assert run([gen], go=go) == [
        {"name": "first"},
        {"name": "second", "replicas": 2.0, "tags": {"a": "b"}},
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [("a: [", "not valid YAML"), ("key: value", "list of maps"), ("- 1\n- 2", "list of maps")],
)
def test_bad_elements_yaml_is_an_error(text: str, reason: str) -> None:
    message = error_of([{"list": {"elementsYaml": text}}])
    assert "spec.generators[0].list.elementsYaml" in message and reason in message


def test_empty_elements_yaml_adds_nothing() -> None:
    assert run([{"list": {"elements": [{"a": "b"}], "elementsYaml": "# none\n"}}]) == [{"a": "b"}]
