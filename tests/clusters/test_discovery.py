"""Discovery's reading of ``/api`` and ``/apis`` (``clusters.kube.discovery_versions``):
aggregated answers carry every group version's kinds, legacy ones only name the versions
to read; both give the same kinds in the same order, and no answer makes it raise."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from clusters.kube import ApiResource, discovery_versions

LEGACY_CORE = {"kind": "APIVersions", "versions": ["v1"]}
LEGACY_GROUPS = {
    "kind": "APIGroupList",
    "apiVersion": "v1",
    "groups": [
        {
            "name": "apps",
            "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
        },
        {
            "name": "example.com",
            "versions": [{"version": "v2"}, {"version": "v1"}],
        },
    ],
}


def resource(name: str, kind: str, scope: str = "Namespaced", **more: Any) -> dict[str, Any]:
    return {
        "resource": name,
        "responseKind": {"group": "", "version": "", "kind": kind},
        "scope": scope,
        "singularResource": kind.lower(),
        "verbs": ["get", "list", "watch"],
        **more,
    }


def aggregated(items: list[dict[str, Any]], version: str = "v2") -> dict[str, Any]:
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }


AGG_CORE = aggregated(
    [
        {
            "metadata": {},
            "versions": [
                {
                    "version": "v1",
                    "resources": [
                        resource("configmaps", "ConfigMap"),
                        resource("namespaces", "Namespace", "Cluster"),
                    ],
                    "freshness": "Current",
                }
            ],
        }
    ]
)
AGG_GROUPS = aggregated(
    [
        {
            "metadata": {"name": "apps"},
            "versions": [
                {
                    "version": "v1",
                    "resources": [
                        resource(
                            "deployments",
                            "Deployment",
                            subresources=[
                                {
                                    "subresource": "scale",
                                    "responseKind": {
                                        "group": "autoscaling",
                                        "version": "v1",
                                        "kind": "Scale",
                                    },
                                    "verbs": ["get", "patch"],
                                }
                            ],
                        )
                    ],
                }
            ],
        },
        {
            # an aggregated API server that has not answered lately: its preferred
            # version is stale, the next one listed is read
            "metadata": {"name": "metrics.example.com"},
            "versions": [
                {
                    "version": "v2",
                    "resources": [resource("pods", "PodMetrics")],
                    "freshness": "Stale",
                },
                {"version": "v1", "resources": [resource("pods", "PodMetrics")]},
            ],
        },
        {
            "metadata": {"name": "gone.example.com"},
            "versions": [{"version": "v1", "resources": [], "freshness": "Stale"}],
        },
    ]
)


def test_aggregated_answers_carry_every_kind_and_need_no_other_request() -> None:
    versions, known = discovery_versions(AGG_CORE, AGG_GROUPS)
    assert versions == [("", "v1"), ("apps", "v1"), ("metrics.example.com", "v1")]
    assert set(known) == set(versions)
    assert known[("", "v1")] == [
        ApiResource(
            group="",
            version="v1",
            kind="ConfigMap",
            plural="configmaps",
            namespaced=True,
            verbs=frozenset({"get", "list", "watch"}),
        ),
        ApiResource(
            group="",
            version="v1",
            kind="Namespace",
            plural="namespaces",
            namespaced=False,
            verbs=frozenset({"get", "list", "watch"}),
        ),
    ]
    # subresources are not kinds of their own
    assert [r.kind for r in known[("apps", "v1")]] == ["Deployment"]
    assert known[("metrics.example.com", "v1")][0].group == "metrics.example.com"


def test_v2beta1_is_read_as_v2() -> None:
    beta = discovery_versions(
        {**AGG_CORE, "apiVersion": "apidiscovery.k8s.io/v2beta1"},
        {**AGG_GROUPS, "apiVersion": "apidiscovery.k8s.io/v2beta1"},
    )
    assert beta == discovery_versions(AGG_CORE, AGG_GROUPS)


def test_legacy_answers_name_the_preferred_versions_to_read() -> None:
    versions, known = discovery_versions(LEGACY_CORE, LEGACY_GROUPS)
    assert versions == [("", "v1"), ("apps", "v1"), ("example.com", "v2")]
    assert known == {}


def test_one_answer_of_each_protocol_is_read_each_its_own_way() -> None:
    versions, known = discovery_versions(LEGACY_CORE, AGG_GROUPS)
    assert versions[0] == ("", "v1") and ("", "v1") not in known
    assert ("apps", "v1") in known


def test_an_unknown_discovery_version_is_read_as_legacy_and_finds_nothing() -> None:
    versions, known = discovery_versions(
        {**AGG_CORE, "apiVersion": "apidiscovery.k8s.io/v9"}, LEGACY_GROUPS
    )
    assert versions == [("apps", "v1"), ("example.com", "v2")]
    assert known == {}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=30,
)
KEYS = st.sampled_from(
    ["kind", "apiVersion", "items", "metadata", "name", "versions", "version", "resources",
     "resource", "responseKind", "scope", "verbs", "freshness", "groups", "preferredVersion"]
)  # fmt: skip
SHAPED = st.recursive(
    st.none()
    | st.text(max_size=6)
    | st.sampled_from(["APIGroupDiscoveryList", "apidiscovery.k8s.io/v2", "Stale", "Namespaced"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(core=JSON | SHAPED, groups=JSON | SHAPED)
@example(core={"versions": 3}, groups={"groups": [{"name": "a", "versions": ["v1"]}]})
@example(core=[], groups={"groups": [{"name": "a", "preferredVersion": "v1", "versions": {}}]})
@example(
    core=aggregated([{"metadata": "x", "versions": [{"version": "v1", "resources": 5}]}]),
    groups=aggregated(
        [{"metadata": {"name": "a"}, "versions": [{"version": "v1", "resources": [
            {"resource": "xs", "responseKind": "X", "verbs": [{"get": 1}]},
            {"resource": "ys", "responseKind": {"kind": "Y"}, "verbs": 7},
        ]}]}]
    ),
)  # fmt: skip
def test_no_answer_makes_discovery_raise(core: Any, groups: Any) -> None:
    versions, known = discovery_versions(core, groups)
    assert set(known) <= set(versions)
    assert all(isinstance(g, str) and isinstance(v, str) for g, v in versions)
    for resources in known.values():
        assert all(isinstance(r, ApiResource) and r.plural for r in resources)
