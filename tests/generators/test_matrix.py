"""The matrix generator: product order, interpolation of the second child, key conflicts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from generators.expand import Context
from tests.generators.conftest import REPO_URL, cluster, error_of, run

MakeContext = Callable[..., Context]


def lst(*elements: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"list": {"elements": list(elements)}, **extra}


def matrix(*children: dict[str, Any]) -> dict[str, Any]:
    return {"matrix": {"generators": list(children)}}


FLEET = (cluster("dev", env="dev"), cluster("prod", env="prod"))
TREE = {
    "apps/one/k.yaml": "",
    "apps/two/k.yaml": "",
    "config/dev/config.json": '{"replicas": "1"}',
    "config/prod/config.json": '{"replicas": "3"}',
}


@pytest.mark.parametrize("go", [False, True])
def test_the_product_is_first_child_major(go: bool) -> None:
    params = run([matrix(lst({"a": "1"}, {"a": "2"}), lst({"b": "x"}, {"b": "y"}))], go=go)
    assert [(p["a"], p["b"]) for p in params] == [("1", "x"), ("1", "y"), ("2", "x"), ("2", "y")]


def test_git_directories_times_clusters(repo_context: MakeContext) -> None:
    ctx = repo_context(TREE, clusters=FLEET)
    gen = matrix(
        {"git": {"repoURL": REPO_URL, "revision": "HEAD", "directories": [{"path": "apps/*"}]}},
        {"clusters": {"selector": {"matchLabels": {"env": "prod"}}}},
    )
    params = run([gen], context=ctx)
    assert [(p["path.basename"], p["name"]) for p in params] == [("one", "prod"), ("two", "prod")]


@pytest.mark.parametrize(
    ("go", "path"),
    [(False, "config/{{name}}/config.json"), (True, "config/{{ .name }}/config.json")],
)
def test_the_second_child_is_rendered_with_each_first_child_set(
    repo_context: MakeContext, go: bool, path: str
) -> None:
    ctx = repo_context(TREE, clusters=FLEET)
    gen = matrix(
        {"clusters": {}},
        {"git": {"repoURL": REPO_URL, "revision": "HEAD", "files": [{"path": path}]}},
    )
    params = run([gen], go=go, context=ctx)
    assert [(p["name"], p["replicas"]) for p in params] == [("dev", "1"), ("prod", "3")]


def test_second_child_selectors_and_values_are_rendered_too() -> None:
    gen = matrix(
        lst({"want": "b", "tag": "t1"}),
        lst({"k": "a"}, {"k": "b"}, selector={"matchLabels": {"k": "{{want}}"}}),
    )
    assert run([gen]) == [{"want": "b", "tag": "t1", "k": "b"}]


def test_fast_mode_conflicting_keys_are_an_error_but_equal_ones_are_fine() -> None:
    assert run([matrix(lst({"a": "1", "s": "x"}), lst({"s": "x"}))]) == [{"a": "1", "s": "x"}]
    message = error_of([matrix(lst({"s": "x"}), lst({"s": "y"}))])
    assert "found duplicate key s with different value, a: x ,b: y" in message


def test_go_mode_deep_merges_with_the_first_child_winning() -> None:
    gen = matrix(
        lst({"s": "first", "values": {"a": "1", "shared": "c1"}}),
        lst({"s": "second", "values": {"b": "2", "shared": "c2"}, "only2": 2}),
    )
    assert run([gen], go=True) == [
        {"s": "first", "values": {"a": "1", "b": "2", "shared": "c1"}, "only2": 2.0}
    ]


def test_go_mode_second_child_values_keep_their_own_placeholders(repo_context: MakeContext) -> None:
    ctx = repo_context(TREE, clusters=FLEET[:1])
    gen = matrix(
        {"clusters": {}},
        {
            "git": {
                "repoURL": REPO_URL,
                "revision": "HEAD",
                "directories": [{"path": "apps/one"}],
                "values": {"own": "{{ .path.basename }}", "parent": "{{ .name }}"},
            }
        },
    )
    [params] = run([gen], go=True, context=ctx)
    assert params["values"] == {"own": "one", "parent": "dev"}


def test_element_yaml_is_templated_from_the_first_child_in_go_mode() -> None:
    gen = matrix(
        lst({"app": "shop", "components": [{"c": "api"}, {"c": "web"}]}),
        {"list": {"elementsYaml": "{{ .components | toJson }}"}},
    )
    params = run([gen], go=True)
    assert [(p["app"], p["c"]) for p in params] == [("shop", "api"), ("shop", "web")]


@pytest.mark.parametrize("empty_first", [True, False])
def test_an_empty_child_gives_an_empty_matrix(empty_first: bool) -> None:
    children = [lst(), lst({"a": "1"})]
    if not empty_first:
        children.reverse()
    assert run([matrix(*children)]) == []


@pytest.mark.parametrize("count", [1, 3])
def test_a_matrix_needs_exactly_two_children(count: int) -> None:
    message = error_of([matrix(*[lst({f"k{i}": "v"}) for i in range(count)])])
    assert "exactly 2 child generators" in message


def test_child_selectors_filter_before_combining() -> None:
    gen = matrix(
        lst({"env": "dev"}, {"env": "prod"}, selector={"matchLabels": {"env": "prod"}}),
        lst({"app": "a"}),
    )
    assert run([gen]) == [{"env": "prod", "app": "a"}]


def test_matrix_may_nest_one_matrix_or_merge() -> None:
    inner = matrix(lst({"a": "1"}, {"a": "2"}), lst({"b": "x"}))
    params = run([matrix(inner, lst({"c": "z"}))])
    assert params == [{"a": "1", "b": "x", "c": "z"}, {"a": "2", "b": "x", "c": "z"}]


def test_child_templates_are_ignored_and_the_matrix_template_applies() -> None:
    from generators.expand import generate
    from tests.generators.conftest import appset

    child = {"list": {"elements": [{"n": "x"}], "template": {"metadata": {"name": "child-{{n}}"}}}}
    gen = {
        "matrix": {
            "generators": [child, lst({"m": "y"})],
            "template": {"metadata": {"name": "matrix-{{n}}-{{m}}"}},
        }
    }
    result = generate(appset([gen]))
    assert [a.name for a in result.applications] == ["matrix-x-y"]
