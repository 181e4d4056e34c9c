"""The clusters generator: selectors, params in both modes, values, the local cluster."""

from __future__ import annotations

from typing import Any

import pytest

from generators.clusters import ClusterInfo
from generators.expand import Context
from tests.generators.conftest import cluster, run

SECRET = "argocd.argoproj.io/secret-type"
FLEET = (
    ClusterInfo(
        name="Prod_EU",
        server="https://prod-eu:6443",
        project="team-a",
        labels={"env": "prod", "region": "eu"},
        annotations={"owner": "ops"},
    ),
    cluster("dev", env="dev", region="eu"),
    cluster("staging", env="staging"),
)


def names(params: list[dict[str, Any]]) -> list[str]:
    return [p["name"] for p in params]


def test_fast_mode_params_are_flat_and_include_every_label() -> None:
    [params] = run(
        [{"clusters": {"selector": {"matchLabels": {"env": "prod"}}}}],
        context=Context(clusters=FLEET),
    )
    assert params == {
        "name": "Prod_EU",
        "nameNormalized": "prod-eu",
        "server": "https://prod-eu:6443",
        "project": "team-a",
        "metadata.annotations.owner": "ops",
        "metadata.labels.env": "prod",
        "metadata.labels.region": "eu",
        f"metadata.labels.{SECRET}": "cluster",
    }


def test_go_mode_params_nest_metadata() -> None:
    [params] = run(
        [{"clusters": {"selector": {"matchLabels": {"env": "prod"}}}}],
        go=True,
        context=Context(clusters=FLEET),
    )
    assert params["metadata"] == {
        "annotations": {"owner": "ops"},
        "labels": {"env": "prod", "region": "eu", SECRET: "cluster"},
    }
    [dev] = run(
        [{"clusters": {"selector": {"matchLabels": {"env": "dev"}}}}],
        go=True,
        context=Context(clusters=FLEET),
    )
    assert "annotations" not in dev["metadata"]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({}, ["Prod_EU", "dev", "staging"]),
        ({"matchLabels": {"region": "eu"}}, ["Prod_EU", "dev"]),
        ({"matchLabels": {SECRET: "cluster"}}, ["Prod_EU", "dev", "staging"]),
        (
            {"matchExpressions": [{"key": "env", "operator": "In", "values": ["dev", "staging"]}]},
            ["dev", "staging"],
        ),
        (
            {"matchExpressions": [{"key": "region", "operator": "NotIn", "values": ["eu"]}]},
            ["staging"],
        ),
        ({"matchExpressions": [{"key": "region", "operator": "DoesNotExist"}]}, ["staging"]),
        (
            {
                "matchExpressions": [{"key": "region", "operator": "Exists"}],
                "matchLabels": {"env": "dev"},
            },
            ["dev"],
        ),
        ({"matchLabels": {"env": "nope"}}, []),
    ],
)
def test_selectors_pick_clusters_sorted_by_name(
    selector: dict[str, Any], expected: list[str]
) -> None:
    params = run([{"clusters": {"selector": selector}}], context=Context(clusters=FLEET))
    assert names(params) == expected


@pytest.mark.parametrize(
    ("selector", "local"),
    [
        ({}, True),
        ({"matchLabels": {SECRET: "cluster"}}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, False),
    ],
)
def test_the_local_cluster_comes_first_and_only_for_an_empty_selector(
    selector: dict[str, Any], local: bool
) -> None:
    params = run(
        [{"clusters": {"selector": selector}}],
        context=Context(clusters=FLEET, include_local_cluster=True),
    )
    assert ("in-cluster" in names(params)) is local
    if local:
        assert params[0] == {
            "name": "in-cluster",
            "nameNormalized": "in-cluster",
            "server": "https://kubernetes.default.svc",
            "project": "",
        }


def test_the_local_cluster_is_absent_unless_asked_for() -> None:
    assert "in-cluster" not in names(run([{"clusters": {}}], context=Context(clusters=FLEET)))


def test_a_registered_cluster_with_the_local_server_replaces_the_implicit_one() -> None:
    local = ClusterInfo(
        name="home", server="https://kubernetes.default.svc", labels={"env": "home"}
    )
    params = run([{"clusters": {}}], context=Context(clusters=(local,), include_local_cluster=True))
    assert names(params) == ["home"]
    assert params[0]["metadata.labels.env"] == "home"


def test_values_are_rendered_against_each_cluster_and_cannot_see_each_other() -> None:
    gen = {
        "clusters": {
            "selector": {"matchLabels": {"env": "prod"}},
            "values": {"rev": "{{metadata.labels.env}}-{{name}}", "again": "{{values.rev}}"},
        }
    }
    [params] = run([gen], context=Context(clusters=FLEET))
    assert params["values.rev"] == "prod-Prod_EU"
    assert params["values.again"] == "{{values.rev}}"


def test_values_in_go_mode_are_a_nested_map() -> None:
    gen = {
        "clusters": {
            "selector": {"matchLabels": {"env": "dev"}},
            "values": {"rev": "{{ .name }}-main"},
        }
    }
    [params] = run([gen], go=True, context=Context(clusters=FLEET))
    assert params["values"] == {"rev": "dev-main"}


def test_flat_list_gives_one_param_set_with_every_cluster() -> None:
    [params] = run(
        [{"clusters": {"flatList": True, "selector": {"matchLabels": {"region": "eu"}}}}],
        context=Context(clusters=FLEET),
    )
    assert [c["name"] for c in params["clusters"]] == ["Prod_EU", "dev"]


def test_no_clusters_gives_no_param_sets() -> None:
    assert run([{"clusters": {}}]) == []


@pytest.mark.parametrize("go", [False, True])
def test_post_selectors_match_flattened_params_including_urls(go: bool) -> None:
    entry = {
        "clusters": {},
        "selector": {
            "matchLabels": {"server": "https://prod-eu:6443"},
            "matchExpressions": [
                {"key": "metadata.labels.region", "operator": "In", "values": ["eu"]}
            ],
        },
    }
    assert names(run([entry], go=go, context=Context(clusters=FLEET))) == ["Prod_EU"]


def test_post_selector_not_in_passes_sets_without_the_key() -> None:
    entry = {
        "clusters": {},
        "selector": {
            "matchExpressions": [
                {"key": "metadata.labels.region", "operator": "NotIn", "values": ["eu"]}
            ]
        },
    }
    params = run([entry], context=Context(clusters=FLEET, include_local_cluster=True))
    assert names(params) == ["in-cluster", "staging"]
