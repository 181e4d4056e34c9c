"""Go's %v formatting, flattening and merging of param sets."""

from __future__ import annotations

from typing import Any

import pytest

from generators.params import (
    TemplateMode,
    deep_merge,
    flatten,
    flatten_to_strings,
    go_format,
    json_numbers,
    sanitize_name,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1000000, "1e+06"),
        (123456, "123456"),
        (1234567, "1.234567e+06"),
        (12345678.9, "1.23456789e+07"),
        (1.5, "1.5"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2, "-2"),
        (0, "0"),
        (True, "true"),
        (False, "false"),
        (None, "<nil>"),
        ("text", "text"),
        ({"b": 1, "a": "x"}, "map[a:x b:1]"),
        ([1, "a"], "[1 a]"),
    ],
)
def test_values_are_stringified_as_go_fmt_v_does(value: Any, text: str) -> None:
    assert go_format(value) == text


def test_flatten_uses_dots_indexes_lists_and_drops_empty_containers() -> None:
    nested = {"a": {"b": 1, "c": [True, {"d": None}]}, "e": {}, "f": [], "g": "x"}
    assert flatten(nested) == {"a.b": 1, "a.c.0": True, "a.c.1.d": None, "g": "x"}
    assert flatten_to_strings(nested) == {"a.b": "1", "a.c.0": "true", "a.c.1.d": "<nil>", "g": "x"}


def test_json_numbers_become_floats_like_go_encoding_json() -> None:
    assert json_numbers({"a": [1, True, "1"], "b": 2.5}) == {"a": [1.0, True, "1"], "b": 2.5}
    assert isinstance(json_numbers(3), float)


def test_deep_merge_merges_maps_and_replaces_everything_else() -> None:
    base = {"a": {"x": 1, "y": 2}, "l": [1, 2], "s": "b"}
    over = {"a": {"y": 3}, "l": [9], "s": ""}
    assert deep_merge(base, over) == {"a": {"x": 1, "y": 3}, "l": [9], "s": ""}
    assert base["a"] == {"x": 1, "y": 2}


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("My_Cluster", "my-cluster"),
        ("--a.b--", "a.b"),
        ("ÄÖ", ""),
        ("x" * 300, "x" * 253),
    ],
)
def test_names_are_normalized_like_argo_cd_sanitize_name(name: str, normalized: str) -> None:
    assert sanitize_name(name) == normalized


@pytest.mark.parametrize(
    ("options", "missing"),
    [
        ((), "default"),
        (("missingkey=error",), "error"),
        (("missingkey=zero",), "zero"),
        (("missingkey=invalid",), "default"),
    ],
)
def test_go_template_options_set_the_missing_key_policy(
    options: tuple[str, ...], missing: str
) -> None:
    assert TemplateMode.from_options(True, options).missing_key == missing


def test_unknown_go_template_options_are_rejected_instead_of_panicking() -> None:
    with pytest.raises(ValueError, match="missingkey"):
        TemplateMode.from_options(True, ["missingkey=errror"])
