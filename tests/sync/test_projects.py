"""The pure AppProject rules (hub/sync/projects.py), table-driven, Argo CD's semantics."""

from __future__ import annotations

import contextlib
import fnmatch
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.sync.projects import (
    ClusterRef,
    GroupKind,
    LiveObject,
    Project,
    ProjectError,
    ProjectScope,
    app_violation,
    destination_permitted,
    glob_match,
    glob_match_negatable,
    group_kind_permitted,
    implicit_default,
    normalize_repo_url,
    orphaned_resources,
    orphaned_warning,
    parse_project,
    prune_violation,
    resource_violation,
    scope_for,
    source_permitted,
    sync_violations,
)

IN = ClusterRef(name="in-cluster", server="https://kubernetes.default.svc")
A = ClusterRef(name="team-a", server="https://10.0.0.1:6443", project="team-a")
B = ClusterRef(name="team-b", server="https://10.0.0.2:6443", project="team-b")


def project(**spec: Any) -> Project:
    return parse_project({"metadata": {"name": "p"}, "spec": spec})


def scope(p: Project, cluster: ClusterRef = A, namespace: str = "a") -> ProjectScope:
    return ProjectScope(project=p, cluster=cluster, namespace=namespace, clusters=(IN, A, B))


TEAM_A = project(
    sourceRepos=["https://git.example.com/team-a/*"],
    destinations=[{"server": A.server, "namespace": "a-*"}, {"name": "team-a", "namespace": "a"}],
    namespaceResourceBlacklist=[{"group": "", "kind": "ResourceQuota"}],
)
NS_ONLY = project(sourceRepos=["*"], destinations=[{"server": "*", "namespace": "a"}])


# ---------------------------------------------------------------- globs


@pytest.mark.parametrize(
    ("pattern", "value", "seps", "expected"),
    [
        ("*", "a/b/c", "/", True),
        ("https://h/org/*", "https://h/org/repo", "/", True),
        ("https://h/org/*", "https://h/org/sub/repo", "/", False),
        ("https://h/org/**", "https://h/org/sub/repo", "/", True),
        ("https://h/org/rep?", "https://h/org/repo", "/", True),
        ("https://h/org/{a,b}", "https://h/org/b", "/", True),
        ("https://h/org/{a,b}", "https://h/org/c", "/", False),
        ("team-[ab]", "team-a", "", True),
        ("team-[!ab]", "team-a", "", False),
        ("team-[a-c]", "team-b", "", True),
        ("a-*", "a-x/y", "", True),  # no separators for destinations
        ("a\\*", "a*", "", True),
        ("a\\*", "ab", "", False),
        ("[unclosed", "[unclosed", "", False),  # a pattern that does not compile matches nothing
        ("{open", "{open", "", False),
        ("", "", "", True),
        ("", "x", "", False),
    ],
)
def test_glob_match(pattern: str, value: str, seps: str, expected: bool) -> None:
    assert glob_match(pattern, value, seps) is expected


SIMPLE = st.text(alphabet="ab-./", max_size=8)
PATTERNS = st.text(alphabet="ab-./*?", max_size=8)


@given(PATTERNS, SIMPLE)
def test_glob_without_separators_is_fnmatch(pattern: str, value: str) -> None:
    assert glob_match(pattern, value) is fnmatch.fnmatchcase(value, pattern)


@given(PATTERNS, SIMPLE)
def test_negation_is_the_complement(pattern: str, value: str) -> None:
    assert glob_match_negatable("!" + pattern, value) is not glob_match(pattern, value)


@given(PATTERNS, SIMPLE)
def test_star_never_crosses_a_separator(pattern: str, value: str) -> None:
    if "**" in pattern:
        return
    if glob_match(pattern, value, "/") and pattern != "*":
        assert value.count("/") == pattern.count("/")


@given(st.text(max_size=20), st.text(max_size=20))
def test_glob_never_raises(pattern: str, value: str) -> None:
    glob_match(pattern, value, "/")
    glob_match_negatable(pattern, value)


# ---------------------------------------------------------------- sourceRepos


@pytest.mark.parametrize(
    ("repos", "url", "expected"),
    [
        (["https://git.example.com/team-a/*"], "https://git.example.com/team-a/app", True),
        # the .git suffix and case do not make a different repository (Argo's NormalizeGitURL)
        (["https://git.example.com/team-a/app"], "https://Git.Example.com/Team-A/app.git", True),
        (["https://git.example.com/team-a/app.git"], "https://git.example.com/team-a/app", True),
        (["https://git.example.com/team-a/*"], "https://git.example.com/team-b/app", False),
        (["git@git.example.com:team-a/*"], "ssh://git@git.example.com/team-a/app.git", True),
        ([], "https://git.example.com/team-a/app", False),
        (["*"], "file:///tmp/anything", True),
        (["*", "!https://git.example.com/secret/*"], "https://git.example.com/secret/x", False),
        (["*", "!https://git.example.com/secret/*"], "https://git.example.com/open/x", True),
        # a deny pattern alone permits everything it does not deny (Argo CD's code)
        (["!https://git.example.com/secret/*"], "https://git.example.com/open/x", True),
        (["!https://git.example.com/secret/*.git"], "https://GIT.example.com/secret/x", False),
    ],
)
def test_source_permitted(repos: list[str], url: str, expected: bool) -> None:
    assert source_permitted(project(sourceRepos=repos), url) is expected


def test_normalize_repo_url() -> None:
    assert normalize_repo_url(" HTTPS://H/Org/Repo.git ") == "https://h/org/repo"
    assert normalize_repo_url("git@h:org/repo.git") == "git@h/org/repo"


# ---------------------------------------------------------------- destinations


@pytest.mark.parametrize(
    ("dests", "cluster", "namespace", "expected"),
    [
        ([{"server": A.server, "namespace": "a-*"}], A, "a-web", True),
        ([{"server": A.server, "namespace": "a-*"}], A, "b-web", False),
        ([{"server": A.server, "namespace": "a-*"}], B, "a-web", False),
        # a destination given by name is checked with the server it resolves to
        ([{"server": A.server, "namespace": "*"}], B, "x", False),
        ([{"name": "team-*", "namespace": "*"}], B, "x", True),
        (
            [{"server": "*", "namespace": "*"}, {"server": "*", "namespace": "!kube-system"}],
            A,
            "kube-system",
            False,
        ),
        (
            [{"server": "*", "namespace": "*"}, {"server": "*", "namespace": "!kube-system"}],
            A,
            "default",
            True,
        ),
        ([{"server": f"!{B.server}", "namespace": "*"}], B, "x", False),
        ([{"server": f"!{B.server}", "namespace": "*"}], A, "x", True),
        ([], A, "a", False),
    ],
)
def test_destination_permitted(
    dests: list[dict[str, str]], cluster: ClusterRef, namespace: str, expected: bool
) -> None:
    assert destination_permitted(project(destinations=dests), cluster, namespace) is expected


def test_permit_only_project_scoped_clusters() -> None:
    spec = {
        "metadata": {"name": "team-a"},
        "spec": {
            "destinations": [{"server": "*", "namespace": "*"}],
            "permitOnlyProjectScopedClusters": True,
        },
    }
    p = parse_project(spec)
    assert destination_permitted(p, A, "x", (IN, A, B))
    assert not destination_permitted(p, B, "x", (IN, A, B))
    assert not destination_permitted(p, IN, "x", (IN, A, B))
    msg = app_violation(ProjectScope(project=p, cluster=B, namespace="x", clusters=(A, B)), [])
    assert msg is not None and "permitOnlyProjectScopedClusters" in msg


# ---------------------------------------------------------------- group/kind


@pytest.mark.parametrize(
    ("spec", "gk", "namespaced", "expected"),
    [
        ({}, GroupKind("", "ConfigMap"), True, True),  # no namespace whitelist: all
        ({}, GroupKind("rbac.authorization.k8s.io", "ClusterRole"), False, False),  # none
        ({}, GroupKind("", "Namespace"), False, False),
        ({"clusterResourceWhitelist": []}, GroupKind("", "Namespace"), False, False),
        (
            {"clusterResourceWhitelist": [{"group": "*", "kind": "*"}]},
            GroupKind("", "Namespace"),
            False,
            True,
        ),
        (
            {
                "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
                "clusterResourceBlacklist": [{"group": "", "kind": "Namespace"}],
            },
            GroupKind("", "Namespace"),
            False,
            False,
        ),
        ({"namespaceResourceWhitelist": []}, GroupKind("", "ConfigMap"), True, False),
        (
            {"namespaceResourceWhitelist": [{"group": "apps", "kind": "*"}]},
            GroupKind("apps", "Deployment"),
            True,
            True,
        ),
        (
            {"namespaceResourceWhitelist": [{"group": "apps", "kind": "*"}]},
            GroupKind("", "ConfigMap"),
            True,
            False,
        ),
        (
            {"namespaceResourceBlacklist": [{"group": "", "kind": "Secret"}]},
            GroupKind("", "Secret"),
            True,
            False,
        ),
        (
            {"namespaceResourceBlacklist": [{"group": "", "kind": "Secret"}]},
            GroupKind("", "ConfigMap"),
            True,
            True,
        ),
    ],
)
def test_group_kind_permitted(
    spec: dict[str, Any], gk: GroupKind, namespaced: bool, expected: bool
) -> None:
    assert group_kind_permitted(project(**spec), gk, namespaced=namespaced) is expected


# ---------------------------------------------------------------- the reported bypasses


def test_explicit_namespace_outside_the_destination_is_refused() -> None:
    why = resource_violation(
        scope(TEAM_A, namespace="a-web"), "", "ConfigMap", "kube-system", namespaced=True
    )
    assert why is not None and "kube-system" in why and "destinations" in why


def test_cluster_scoped_object_from_a_namespaced_only_project_is_refused() -> None:
    for group, kind in (("rbac.authorization.k8s.io", "ClusterRole"), ("", "Namespace")):
        why = resource_violation(scope(NS_ONLY), group, kind, "", namespaced=False)
        assert why is not None and "clusterResourceWhitelist" in why


def test_destination_by_name_resolving_to_a_forbidden_server_is_refused() -> None:
    p = project(sourceRepos=["*"], destinations=[{"server": A.server, "namespace": "*"}])
    # the app said ``name: team-b``; the hub resolved it to B's server
    why = app_violation(scope(p, cluster=B, namespace="a"), [])
    assert why is not None and B.server in why


def test_repo_differing_only_by_git_suffix_and_case_is_the_same_repo() -> None:
    assert (
        app_violation(scope(TEAM_A, namespace="a-web"), ["https://GIT.example.com/team-a/App.git"])
        is None
    )
    why = app_violation(scope(TEAM_A, namespace="a-web"), ["https://git.example.com/team-b/x"])
    assert why is not None and "sourceRepos" in why


def test_sync_violations_name_every_object_and_rule() -> None:
    problems = sync_violations(
        scope(TEAM_A, namespace="a-web"),
        ["https://git.example.com/team-a/app"],
        [
            ("", "ConfigMap", "a-web", "ok"),
            ("", "ConfigMap", "kube-system", "sneaky"),
            ("", "ResourceQuota", "a-web", "q"),
            ("", "Namespace", "", "new-ns"),
        ],
    )
    assert len(problems) == 3
    assert problems[0].startswith("ConfigMap kube-system/sneaky:")
    assert "namespaceResourceBlacklist" in problems[1]
    assert problems[2].startswith("Namespace new-ns:") and "clusterResourceWhitelist" in problems[2]


def test_prune_outside_the_project_is_refused() -> None:
    assert prune_violation(scope(TEAM_A), "", "ConfigMap", "kube-system") is not None
    assert prune_violation(scope(TEAM_A), "", "ConfigMap", "a-web") is None
    assert prune_violation(scope(TEAM_A), "", "Namespace", "") is not None


# ---------------------------------------------------------------- default and missing


def test_undefined_default_allows_everything_a_defined_one_is_enforced() -> None:
    s = scope_for("default", {}, B, "kube-system")
    assert s.project == implicit_default()
    assert sync_violations(s, ["file:///x"], [("", "Namespace", "", "n")]) == []
    defined = {"default": project(sourceRepos=["*"], destinations=[])}
    s = scope_for("default", defined, B, "kube-system")
    assert sync_violations(s, ["file:///x"], []) != []


def test_missing_project_permits_nothing() -> None:
    s = scope_for("nope", {}, A, "a")
    why = app_violation(s, [])
    assert why is not None and "does not exist" in why


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"sourceRepos": "https://x"}, "sourceRepos"),
        ({"destinations": [{"namespace": "a"}]}, "destinations[0]"),
        ({"destinations": [{"server": 3}]}, "destinations[0].server"),
        ({"destinations": "x"}, "destinations"),
        ({"clusterResourceWhitelist": [{"group": ""}]}, "clusterResourceWhitelist[0].kind"),
        ({"namespaceResourceBlacklist": [1]}, "namespaceResourceBlacklist"),
        ({"orphanedResources": {"warn": "yes"}}, "orphanedResources.warn"),
        ({"permitOnlyProjectScopedClusters": "true"}, "permitOnlyProjectScopedClusters"),
        ({"sourceNamespaces": [1]}, "sourceNamespaces"),
    ],
)
def test_parse_errors_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ProjectError, match=re.escape(field)):
        project(**spec)


def test_parse_reads_every_field() -> None:
    p = project(
        sourceRepos=["a"],
        destinations=[{"server": "s", "name": "n", "namespace": "ns"}],
        clusterResourceWhitelist=[{"group": "g", "kind": "K"}],
        namespaceResourceWhitelist=[],
        sourceNamespaces=["argocd"],
        orphanedResources={"warn": False, "ignore": [{"kind": "ConfigMap", "name": "x"}]},
        permitOnlyProjectScopedClusters=True,
    )
    assert p.namespace_whitelist == ()
    assert p.cluster_whitelist == (GroupKind("g", "K"),)
    assert p.orphaned_resources is not None and not p.orphaned_resources.warn
    assert p.source_namespaces == ("argocd",)
    assert p.permit_only_project_scoped_clusters


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=10,
)
KEYS = st.sampled_from(
    [
        "sourceRepos",
        "destinations",
        "clusterResourceWhitelist",
        "namespaceResourceBlacklist",
        "orphanedResources",
        "permitOnlyProjectScopedClusters",
    ]
)


@given(st.dictionaries(KEYS, JSONISH, max_size=4))
def test_parse_never_raises_anything_but_project_error(spec: dict[str, Any]) -> None:
    with contextlib.suppress(ProjectError):
        project(**spec)


@pytest.mark.parametrize(
    ("namespaces", "app_namespace", "expected"),
    [
        ([], "", True),
        ([], "argocd", True),
        ([], "team-a", False),
        (["team-*"], "team-a", True),
        (["team-*"], "other", False),
    ],
)
def test_source_namespaces(namespaces: list[str], app_namespace: str, expected: bool) -> None:
    p = project(sourceRepos=["*"], destinations=[{"server": "*", "namespace": "*"}],
                sourceNamespaces=namespaces)  # fmt: skip
    why = app_violation(scope(p), [], app_namespace)
    assert (why is None) is expected
    if why is not None:
        assert "sourceNamespaces" in why


def live(kind: str, name: str, *, group: str = "", managed: bool = False) -> LiveObject:
    return LiveObject(group=group, kind=kind, namespace="a", name=name, managed=managed)


@pytest.mark.parametrize(
    ("orphaned", "expected"),
    [
        (None, []),  # the field absent: no warning
        ({"warn": False}, []),
        ({}, ["ConfigMap a/stray", "Deployment a/old"]),  # warn defaults to true
        ({"ignore": [{"kind": "ConfigMap"}]}, ["Deployment a/old"]),
        ({"ignore": [{"group": "apps", "kind": "*", "name": "o*"}]}, ["ConfigMap a/stray"]),
        (
            {"ignore": [{"kind": "ConfigMap", "name": "other"}]},
            ["ConfigMap a/stray", "Deployment a/old"],
        ),
    ],
)
def test_orphaned_resources(orphaned: dict[str, Any] | None, expected: list[str]) -> None:
    spec: dict[str, Any] = {} if orphaned is None else {"orphanedResources": orphaned}
    objects = [
        live("ConfigMap", "stray"),
        live("ConfigMap", "mine", managed=True),
        live("Deployment", "old", group="apps"),
        # what every namespace holds without a commit: never an orphan (as in Argo CD)
        live("ConfigMap", "kube-root-ca.crt"),
        live("ServiceAccount", "default"),
    ]
    assert orphaned_resources(project(**spec), objects) == expected


def test_orphaned_warning_names_the_count_and_the_first_objects() -> None:
    text = orphaned_warning([f"ConfigMap a/c{i}" for i in range(12)])
    assert text.startswith("OrphanedResourceWarning: application has 12 orphaned")
    assert "ConfigMap a/c9" in text and "c10" not in text and text.endswith(", ...")


@pytest.mark.timeout(20)
def test_project_globs_match_in_linear_time() -> None:
    # Patterns come from AppProjects in Git; a backtracking engine stalls on this one.
    pattern = "*a" * 12 + "*b"
    for _ in range(50):
        assert not glob_match(pattern, "a" * 60)
    assert glob_match(pattern, "a" * 60 + "b")
