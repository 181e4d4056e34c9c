"""The controller against a real store (no cluster): ingest and reconcile steps."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from clusters.registry import ClusterRecord
from generators.spec import parse_appset
from hub.apps import AppStore
from hub.appsets import AppSetController, ReconcileReport
from hub.sources import (
    AppManifest,
    AppSetManifest,
    HubGit,
    Source,
    SourceLoad,
    SourceStore,
)
from hub.store import Store
from hub.sync.model import parse_application

CLUSTERS = [
    ClusterRecord(name="east", server="https://east:6443", labels={"env": "prod"}),
    ClusterRecord(name="west", server="https://west:6443", labels={"env": "prod"}),
]


def appset_doc(name: str = "web", **sync_policy: Any) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {
            "generators": [{"clusters": {"selector": {"matchLabels": {"env": "prod"}}}}],
            "template": {
                "metadata": {"name": f"{name}-{{{{name}}}}"},
                "spec": {
                    "project": "default",
                    "source": {"repoURL": "https://git.example/r.git", "path": name},
                    "destination": {"server": "{{server}}", "namespace": name},
                },
            },
            "syncPolicy": sync_policy,
        },
    }


def plain_doc(name: str, server: str = "https://east:6443") -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name},
        "spec": {
            "source": {"repoURL": "https://git.example/r.git", "path": name},
            "destination": {"server": server, "namespace": name},
        },
    }


def loaded(
    source: str,
    *appsets: Mapping[str, Any],
    apps: tuple[Mapping[str, Any], ...] = (),
    errors: tuple[str, ...] = (),
) -> SourceLoad:
    return SourceLoad(
        source=Source(name=source, repo="/nowhere"),
        sha="f" * 40,
        appsets=tuple(
            AppSetManifest(
                appset=parse_appset(d, source=f"{d['metadata']['name']}.yaml"),
                manifest=d,
                file=f"{d['metadata']['name']}.yaml",
            )
            for d in appsets
        ),
        applications=tuple(
            AppManifest(app=parse_application(d), manifest=d, file=f"{d['metadata']['name']}.yaml")
            for d in apps
        ),
        errors=errors,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "hub.db", create=True)
    for name in ("a", "b"):
        SourceStore(s).add(Source(name=name, repo="/nowhere"))
    yield s
    s.close()


def run(store: Store, *loads: SourceLoad, clusters: list[ClusterRecord] = CLUSTERS,
        configured: tuple[str, ...] = ("a", "b")) -> ReconcileReport:  # fmt: skip
    with HubGit() as git:
        controller = AppSetController(store, git)
        outcomes, plans = controller.ingest(loads, clusters, configured=set(configured))
        plans += controller.reconcile_appsets(clusters)
    return ReconcileReport(sources=tuple(outcomes), plans=tuple(plans))


def names(store: Store) -> dict[str, str | None]:
    return {a.name: a.deletion for a in AppStore(store).list_apps()}


def test_a_failed_load_keeps_the_last_good_set_and_still_follows_the_fleet(store: Store) -> None:
    run(store, loaded("a", appset_doc()))
    assert names(store) == {"web-east": None, "web-west": None}
    failed = SourceLoad(source=Source(name="a", repo="/nowhere"), sha=None, errors=("boom",))
    third = ClusterRecord(name="north", server="https://north:6443", labels={"env": "prod"})
    report = run(store, failed, clusters=[*CLUSTERS, third])
    assert not report.ok and report.sources[0].errors == ("boom",)
    assert names(store) == {"web-east": None, "web-north": None, "web-west": None}
    record = SourceStore(store).get("a")
    assert record.last_error == "boom" and record.last_sha == "f" * 40


def test_a_set_moved_between_sources_is_handed_over_not_deleted(store: Store) -> None:
    run(store, loaded("a", appset_doc()), loaded("b"))
    report = run(store, loaded("a"), loaded("b", appset_doc()))
    assert report.ok, report.as_dict()
    assert report.actions("delete") == []
    assert AppStore(store).get_appset("web").source == "b"  # type: ignore[union-attr]
    assert names(store) == {"web-east": None, "web-west": None}


def test_a_set_declared_by_two_sources_is_refused_in_the_second(store: Store) -> None:
    run(store, loaded("a", appset_doc()), loaded("b"))
    report = run(store, loaded("a", appset_doc()), loaded("b", appset_doc()))
    assert not report.ok
    assert any("already comes from source a" in (p.error or "") for p in report.plans)
    assert AppStore(store).get_appset("web").source == "a"  # type: ignore[union-attr]


def test_a_removed_source_deletes_its_sets_as_if_their_files_were_deleted(store: Store) -> None:
    run(store, loaded("a", appset_doc(), apps=(plain_doc("tools"),)))
    report = run(store, configured=("b",))
    assert {a.app for a in report.actions("delete")} == {"web-east", "web-west", "tools"}
    assert names(store) == {"web-east": "deleting", "web-west": "deleting"}
    assert AppStore(store).list_appsets() == []


def test_plain_apps_to_unknown_clusters_are_skipped_and_reported(store: Store) -> None:
    report = run(store, loaded("a", apps=(plain_doc("tools", "https://nowhere"),)))
    assert not report.ok
    assert [a.app for a in report.actions("skip")] == ["tools"]
    assert names(store) == {}


def test_a_plain_app_and_a_generated_app_cannot_share_a_name(store: Store) -> None:
    run(store, loaded("a", apps=(plain_doc("web-east"),)))
    report = run(store, loaded("a", appset_doc(), apps=(plain_doc("web-east"),)))
    # One generated Application is invalid: the whole set waits, nothing of it is written.
    assert not report.ok and report.actions("create") == []
    assert "belongs to source/a" in next(p.error for p in report.plans if p.name == "web")
    assert AppStore(store).get("web-east").appset is None  # type: ignore[union-attr]
    assert AppStore(store).get("web-west") is None


def test_create_only_sets_leave_their_apps_disowned_when_deleted(store: Store) -> None:
    run(store, loaded("a", appset_doc(applicationsSync="create-only")))
    report = run(store, loaded("a"))
    assert sorted(a.app for a in report.actions("disown")) == ["web-east", "web-west"]
    assert names(store) == {"web-east": None, "web-west": None}
    # A new set of the same name adopts them again.
    run(store, loaded("a", appset_doc()))
    assert {a.appset for a in AppStore(store).list_apps()} == {"web"}


def test_set_status_and_generation_count_are_recorded(store: Store) -> None:
    run(store, loaded("a", appset_doc()))
    record = AppStore(store).get_appset("web")
    assert record is not None and record.generated == 2 and record.last_error is None
    assert {c.type: c.status for c in record.conditions}["ResourcesUpToDate"] == "True"
    assert record.status["create"] == 2 and record.reconciled_at is not None


def test_a_plan_made_from_an_older_read_never_overwrites_another_owners_app(
    store: Store,
) -> None:
    from hub.apps import DesiredApp
    from hub.appsets import Action, apply_actions

    run(store, loaded("a", apps=(plain_doc("web-east"),)))
    stale = Action(
        kind="create",
        app="web-east",
        reason="planned before the plain app existed",
        desired=DesiredApp.from_manifest(
            plain_doc("web-east", "https://west:6443"), appset="web", source="a", cluster="west"
        ),
    )
    with AppStore(store).transaction() as txn:
        apply_actions(txn, [stale])
    kept = AppStore(store).get("web-east")
    assert kept is not None and kept.appset is None and kept.cluster == "east"


def test_two_new_sets_generating_one_name_in_one_pass_leave_it_to_the_first(store: Store) -> None:
    # Both sets are new in the same reconcile: the second must see the names the first
    # just created (ownership read after the first set's writes), or it would plan a
    # create of an Application another set owns.
    first = appset_doc("aa")
    second = appset_doc("bb")
    second["spec"]["template"]["metadata"]["name"] = "aa-{{name}}"
    report = run(store, loaded("a", first, second))
    assert {a.appset for a in AppStore(store).list_apps()} == {"aa"}
    bb = next(p for p in report.plans if p.name == "bb")
    assert bb.count("create") == 0 and "belongs to appset/aa" in (bb.error or "")
