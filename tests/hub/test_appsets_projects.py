"""AppProject checks at generation and at ingest of plain Applications (pure decisions)."""

from __future__ import annotations

from typing import Any

from clusters.registry import ClusterRecord
from generators.expand import Context, generate
from generators.spec import parse_appset
from hub.appsets import (
    VALIDATION_ERROR,
    Fleet,
    cluster_info,
    plan_appset,
    plan_plain_apps,
    project_policies,
)
from hub.sources import AppManifest
from hub.sync.model import parse_application

A = ClusterRecord(name="a", server="https://a.example:6443", project="team-a")
B = ClusterRecord(name="b", server="https://b.example:6443", project="team-b")
TEAM_A = {
    "metadata": {"name": "team-a"},
    "spec": {
        "sourceRepos": ["https://git.example/team-a/*"],
        "destinations": [{"server": "*", "namespace": "a-*"}],
    },
}


def fleet(**projects: dict[str, Any]) -> Fleet:
    manifests = {"team-a": TEAM_A, **projects}
    return Fleet(
        clusters=(A, B),
        projects=frozenset({"default", *manifests}),
        policies=project_policies(manifests),
    )


def appset(namespace: str, repo: str = "https://git.example/team-a/app.git") -> Any:
    return parse_appset(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "ApplicationSet",
            "metadata": {"name": "web", "namespace": "argocd"},
            "spec": {
                "generators": [{"clusters": {}}],
                "template": {
                    "metadata": {"name": "web-{{name}}"},
                    "spec": {
                        "project": "team-a",
                        "source": {"repoURL": repo, "path": "web"},
                        "destination": {"server": "{{server}}", "namespace": namespace},
                    },
                },
            },
        },
        source="web.yaml",
    )


def plan_for(namespace: str, repo: str = "https://git.example/team-a/app.git") -> Any:
    s = appset(namespace, repo)
    result = generate(s, Context(clusters=(cluster_info(A), cluster_info(B))))
    return plan_appset(s, result, (), fleet(), source="src")


def test_a_set_inside_its_project_creates_its_apps() -> None:
    p = plan_for("a-web")
    assert p.error is None
    assert sorted(a.kind for a in p.actions) == ["create", "create"]


def test_a_set_targeting_another_teams_namespace_is_refused_whole() -> None:
    p = plan_for("b-web")
    assert p.error is not None
    assert "namespace b-web" in p.error and "project 'team-a'" in p.error
    assert all(a.kind != "create" for a in p.actions)
    assert any(c.reason == VALIDATION_ERROR for c in p.conditions)


def test_a_set_from_an_unlisted_repo_is_refused() -> None:
    p = plan_for("a-web", repo="https://git.example/team-b/app")
    assert p.error is not None and "sourceRepos" in p.error
    assert not [a for a in p.actions if a.kind == "create"]


def test_a_plain_application_outside_its_project_is_skipped_at_ingest() -> None:
    def manifest(name: str, ns: str) -> dict[str, Any]:
        return {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name},
            "spec": {
                "project": "team-a",
                "source": {"repoURL": "https://git.example/team-a/x", "path": "."},
                "destination": {"name": "b", "namespace": ns},
            },
        }

    declared = [
        AppManifest(app=parse_application(m, source_file="f.yaml"), manifest=m, file="f.yaml")
        for m in (manifest("ok", "a-ok"), manifest("bad", "kube-system"))
    ]
    p = plan_plain_apps("src", declared, (), fleet(), {})
    assert {a.app: a.kind for a in p.actions} == {"ok": "create", "bad": "skip"}
    assert p.error is not None and "kube-system" in p.error


def test_permit_only_project_scoped_clusters_at_generation() -> None:
    scoped = {**TEAM_A, "spec": {**TEAM_A["spec"], "permitOnlyProjectScopedClusters": True}}
    s = appset("a-web")
    result = generate(s, Context(clusters=(cluster_info(A), cluster_info(B))))
    p = plan_appset(s, result, (), fleet(**{"team-a": scoped}), source="src")
    assert p.error is not None and "cluster b is not scoped" in p.error


def test_an_undefined_default_project_allows_everything_a_defined_one_is_enforced() -> None:
    s = parse_appset(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "ApplicationSet",
            "metadata": {"name": "any", "namespace": "argocd"},
            "spec": {
                "generators": [{"clusters": {}}],
                "template": {
                    "metadata": {"name": "any-{{name}}"},
                    "spec": {
                        "project": "default",
                        "source": {"repoURL": "https://anywhere.example/x", "path": "."},
                        "destination": {"server": "{{server}}", "namespace": "kube-system"},
                    },
                },
            },
        },
        source="any.yaml",
    )
    result = generate(s, Context(clusters=(cluster_info(A), cluster_info(B))))
    assert plan_appset(s, result, (), fleet(), source="src").error is None
    default = {"metadata": {"name": "default"}, "spec": {"sourceRepos": ["*"]}}
    refused = plan_appset(s, result, (), fleet(default=default), source="src")
    assert refused.error is not None and "project 'default'" in refused.error


def test_a_destination_name_is_checked_with_the_server_it_resolves_to() -> None:
    only_a = {
        "metadata": {"name": "team-a"},
        "spec": {
            "sourceRepos": ["*"],
            "destinations": [{"server": A.server, "namespace": "*"}],
        },
    }
    m = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "by-name"},
        "spec": {
            "project": "team-a",
            "source": {"repoURL": "https://git.example/team-a/x", "path": "."},
            "destination": {"name": "b", "namespace": "a-web"},
        },
    }
    declared = [AppManifest(app=parse_application(m, source_file="f.yaml"), manifest=m, file="f")]
    p = plan_plain_apps("src", declared, (), fleet(**{"team-a": only_a}), {})
    assert [a.kind for a in p.actions] == ["skip"]
    assert p.error is not None and B.server in p.error and "destinations" in p.error
