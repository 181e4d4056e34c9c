"""The merge generator: base sets overridden by merge keys."""

from __future__ import annotations

from typing import Any

import pytest

from generators.expand import Context
from tests.generators.conftest import cluster, error_of, run


def lst(*elements: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"list": {"elements": list(elements)}, **extra}


def merge(keys: list[str], *children: dict[str, Any]) -> dict[str, Any]:
    return {"merge": {"mergeKeys": keys, "generators": list(children)}}


def test_later_children_override_base_sets_with_the_same_key() -> None:
    gen = merge(
        ["name"],
        lst({"name": "a", "v": "base"}, {"name": "b", "v": "base"}, {"name": "c", "v": "base"}),
        lst({"name": "b", "v": "second", "extra": "2"}, {"name": "z", "v": "dropped"}),
        lst({"name": "b", "v": "third"}, {"name": "c", "v": "third"}),
    )
    assert run([gen]) == [
        {"name": "a", "v": "base"},
        {"name": "b", "v": "third", "extra": "2"},
        {"name": "c", "v": "third"},
    ]


def test_several_merge_keys_must_all_match_and_missing_keys_count_as_null() -> None:
    gen = merge(
        ["a", "b"],
        lst({"a": "1", "b": "1"}, {"a": "1", "b": "2"}, {"a": "2"}),
        lst({"a": "1", "b": "2", "hit": "yes"}, {"a": "2", "hit": "null-b"}),
    )
    assert [p.get("hit") for p in run([gen])] == [None, "yes", "null-b"]


def test_clusters_with_per_cluster_overrides() -> None:
    fleet = (cluster("dev", env="dev"), cluster("prod", env="prod"))
    gen = merge(
        ["server"],
        {"clusters": {"values": {"kafka": "false"}}},
        {"clusters": {"selector": {"matchLabels": {"env": "prod"}}, "values": {"kafka": "true"}}},
    )
    params = run([gen], context=Context(clusters=fleet))
    assert [(p["name"], p["values.kafka"]) for p in params] == [("dev", "false"), ("prod", "true")]


def test_go_mode_deep_merges_overrides() -> None:
    gen = merge(
        ["name"],
        lst({"name": "a", "values": {"x": "1", "y": "1"}}),
        lst({"name": "a", "values": {"y": "2"}}),
    )
    assert run([gen], go=True) == [{"name": "a", "values": {"x": "1", "y": "2"}}]


def test_go_mode_merge_keys_are_top_level_keys_only() -> None:
    gen = merge(
        ["values.x"],
        lst({"n": "base", "values": {"x": "1"}}),
        lst({"n": "override", "values": {"x": "1"}}),
    )
    # Both sides index as {"values.x": null}: they match, as in Argo CD.
    assert run([gen], go=True) == [{"n": "override", "values": {"x": "1"}}]


@pytest.mark.parametrize("duplicate_in", [0, 1])
def test_duplicate_merge_keys_within_a_child_are_an_error(duplicate_in: int) -> None:
    children = [lst({"k": "1"}), lst({"k": "2"})]
    children[duplicate_in] = lst({"k": "1", "n": "a"}, {"k": "1", "n": "b"})
    message = error_of([merge(["k"], *children)])
    assert "not unique by the given mergeKeys" in message
    assert f"merge.generators[{duplicate_in}]" in message


@pytest.mark.parametrize(
    ("gen", "reason"),
    [
        (merge(["k"], lst({"k": "1"})), "at least 2 child generators"),
        (merge([], lst({"k": "1"}), lst({"k": "1"})), "at least one merge key"),
    ],
)
def test_invalid_merges_are_errors(gen: dict[str, Any], reason: str) -> None:
    assert reason in error_of([gen])


def test_merge_inside_matrix() -> None:
    inner = merge(["k"], lst({"k": "1", "v": "a"}), lst({"k": "1", "v": "b"}))
    params = run([{"matrix": {"generators": [inner, lst({"env": "x"})]}}])
    assert params == [{"k": "1", "v": "b", "env": "x"}]
