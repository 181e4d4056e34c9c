"""Hostile YAML from Git or a user is an error of that file, never a crash of the process."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generators import yamlio
from generators.expand import Context, generate
from generators.gotemplate import TemplateError, render
from generators.spec import SpecError, parse_appsets
from tests.generators.conftest import REPO_URL, appset, error_of

MakeContext = Callable[..., Context]

BAD_TAGS = [
    ("name: !!int zz", "line 1, column 7", "!!int"),
    ("name: !!float clu", "line 1, column 7", "!!float"),
    ('name: !!timestamp "zz"', "line 1, column 7", "!!timestamp"),
    ("name: !!float", "line 1, column 7", "!!float"),
    ("name: !!bool maybe", "line 1, column 7", "!!bool"),
    ("name: !!int 0b", "line 1, column 7", "!!int"),
    ("name: !!set {a, b}", "line 1, column 7", "!!set"),
    ("name: !!omap [a: 1]", "line 1, column 7", "!!omap"),
    ("name: !!python/name:os.system", "line 1, column 7", "constructor"),
]


def _nested_block(levels: int) -> str:
    return "".join(" " * i + "a:\n" for i in range(levels))


def _appset_text(metadata_name: str) -> str:
    return (
        "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\n"
        f"metadata:\n  name: {metadata_name}\n"
        "spec:\n  generators: [{list: {elements: []}}]\n  template: {}\n"
    )


@pytest.mark.parametrize(("text", "where", "what"), BAD_TAGS)
def test_explicit_tags_that_do_not_fit_their_value_are_yaml_errors_with_the_line(
    text: str, where: str, what: str
) -> None:
    with pytest.raises(yamlio.YamlError) as info:
        yamlio.load(text)
    message = str(info.value)
    assert message.startswith(where + ":") and what in message and "\n" not in message
    assert isinstance(info.value, yaml.YAMLError)  # callers that caught PyYAML's still do


@pytest.mark.parametrize(("text", "where", "what"), BAD_TAGS[:4])
def test_an_appset_file_with_a_bad_tag_is_a_spec_error_naming_the_file(
    text: str, where: str, what: str
) -> None:
    source = _appset_text("x").replace("name: x", text)
    with pytest.raises(SpecError) as info:
        parse_appsets(source, source="apps/bad.yaml")
    assert str(info.value).startswith("apps/bad.yaml: not valid YAML: line 4, column 9:")
    assert info.value.exit_code == 2


def test_tags_that_fit_keep_their_kubernetes_meaning() -> None:
    text = (
        "i: !!int '42'\nf: !!float '1.5'\ns: !!str 1\nt: !!timestamp 2001-12-14\n"
        "d: 2024-01-01\nb: !!binary aGVsbG8=\nm: {<<: {k: 1}, j: 2}\n"
    )
    assert yamlio.load(text) == {
        "i": 42,
        "f": 1.5,
        "s": "1",
        "t": "2001-12-14",
        "d": "2024-01-01",
        "b": "hello",
        "m": {"k": 1, "j": 2},
    }


@pytest.mark.parametrize(
    "text", [_nested_block(5000), "[" * 5000, "{a: " * 5000, "- " * 5000 + "x"], ids=str.__len__
)
def test_nesting_5000_levels_is_a_clear_error_not_a_recursion_error(text: str) -> None:
    with pytest.raises(yamlio.YamlError, match=f"deeper than {yamlio.MAX_DEPTH} levels"):
        yamlio.load(text)


def test_nesting_up_to_the_cap_loads() -> None:
    value = yamlio.load("[" * yamlio.MAX_DEPTH + "]" * yamlio.MAX_DEPTH)
    for _ in range(yamlio.MAX_DEPTH - 1):
        value = value[0]
    assert value == []


def test_an_alias_counts_as_deep_as_what_it_names() -> None:
    half = yamlio.MAX_DEPTH - 10
    text = "a: &a " + "[" * half + "]" * half + "\nb: " + "[" * 20 + "*a" + "]" * 20
    with pytest.raises(yamlio.YamlError, match=r"alias \*a nests deeper"):
        yamlio.load(text)


def test_a_billion_laughs_is_refused_before_it_expands() -> None:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    with pytest.raises(yamlio.YamlError, match="expands to more than 1,000,000 nodes"):
        yamlio.load("\n".join(lines))


def test_a_merge_key_bomb_is_refused_before_it_expands() -> None:
    lines = ["a0: &a0 {k: 1}"]
    lines += [f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}], k{i}: 1}}" for i in range(1, 64)]
    with pytest.raises(yamlio.YamlError, match="expands to more than"):
        yamlio.load("\n".join(lines))


def test_an_alias_inside_the_node_it_names_is_refused() -> None:
    with pytest.raises(yamlio.YamlError, match="contains it"):
        yamlio.load("a: &a [1, *a]")


def test_a_few_aliases_are_fine() -> None:
    assert yamlio.load("a: &a {x: 1}\nb: *a\nc: [*a, *a]") == {
        "a": {"x": 1},
        "b": {"x": 1},
        "c": [{"x": 1}, {"x": 1}],
    }


def test_a_deep_json_manifest_is_a_clear_error() -> None:
    with pytest.raises(yamlio.YamlError, match="deeper than"):
        yamlio.load_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(yamlio.YamlError, match="deeper than"):
        yamlio.load_json("[" * 101 + "]" * 101)
    assert yamlio.load_json('{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}


def test_a_template_patch_rendering_a_bad_tag_is_an_error_of_that_appset() -> None:
    result = generate(
        appset(
            [{"list": {"elements": [{"name": "web"}]}}],
            go=True,
            templatePatch="metadata:\n  annotations:\n    x: !!int {{ .name }}\n",
        )
    )
    assert result.failed
    message = result.conditions[0].message
    assert "spec.templatePatch" in message and "line 3, column 8" in message


def test_elements_yaml_with_a_bad_tag_is_an_error_of_that_generator() -> None:
    message = error_of([{"list": {"elementsYaml": "- name: !!float clu\n"}}])
    assert "elementsYaml" in message and "!!float" in message


def test_a_git_file_with_a_bad_tag_is_an_error_naming_the_file(repo_context: MakeContext) -> None:
    context = repo_context({"cfg/a.yaml": 'when: !!timestamp "zz"\n'})
    message = error_of(
        [{"git": {"repoURL": REPO_URL, "revision": "HEAD", "files": [{"path": "cfg/*.yaml"}]}}],
        context=context,
    )
    assert "cfg/a.yaml" in message and "!!timestamp" in message


@pytest.mark.parametrize("text", ["x: !!int zz", "[" * 5000, "a: &a [*a]"])
def test_from_yaml_on_hostile_text_is_a_template_error(text: str) -> None:
    with pytest.raises(TemplateError, match="error converting YAML to JSON"):
        render("{{ fromYaml .t | toJson }}", {"t": text}, missing_key="error")


# --------------------------------------------------------------------------- fuzzing

_LOADERS: list[Callable[[str], Any]] = [
    yamlio.load_all,
    lambda text: parse_appsets(text, source="fuzz.yaml"),
    lambda text: render("{{ fromYaml .t }}", {"t": text}),
]

_YAML_PIECES = st.sampled_from(
    [
        "!!int ",
        "!!float ",
        "!!timestamp ",
        "!!binary ",
        "!!bool ",
        "!!null ",
        "!!set ",
        "!!str ",
        "!!map ",
        "!!seq ",
        "&a ",
        "*a",
        "<<: ",
        "- ",
        ": ",
        "[",
        "]",
        "{",
        "}",
        ",",
        "\n",
        "  ",
        "---\n",
        "'",
        '"',
        "zz",
        "1",
        ".5",
        "2001-12-14",
        "#",
        "|",
        ">",
        "? ",
        "%YAML 1.1\n",
        "\t",
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.one_of(st.text(max_size=200), st.lists(_YAML_PIECES, max_size=60).map("".join)),
    which=st.integers(0, len(_LOADERS) - 1),
)
def test_any_text_is_a_value_or_the_packages_own_error(text: str, which: int) -> None:
    with contextlib.suppress(yamlio.YamlError, SpecError, TemplateError):
        _LOADERS[which](text)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=30,
)


def _wrap(value: Any, levels: int) -> Any:
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


def _depth(value: Any) -> int:
    if isinstance(value, Mapping):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 1


@settings(max_examples=150, deadline=None)
@given(value=_JSON, levels=st.integers(0, 2 * yamlio.MAX_DEPTH), flow=st.booleans())
def test_nested_structures_load_back_or_are_refused_for_depth(
    value: Any, levels: int, flow: bool
) -> None:
    value = _wrap(value, levels)
    text = yaml.safe_dump(value, default_flow_style=flow, width=10_000)
    if _depth(value) <= yamlio.MAX_DEPTH:
        assert yamlio.load(text) == value
    else:
        with pytest.raises(yamlio.YamlError, match="deeper than"):
            yamlio.load(text)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_any_bytes_from_git_are_a_value_or_a_yaml_error(data: bytes) -> None:
    with contextlib.suppress(yamlio.YamlError):
        yamlio.load_first(data)


def test_numbers_longer_than_python_reads_are_yaml_errors() -> None:
    with pytest.raises(yamlio.YamlError, match=r"line 1, column 4: .*!!int"):
        yamlio.load("x: " + "1" * 5000)
    with pytest.raises(yamlio.YamlError, match="too long"):
        yamlio.load_json("[" + "1" * 5000 + "]")
