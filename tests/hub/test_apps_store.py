"""Application records in the store: migration 0003, desired vs observed halves, queries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.apps import RESOURCES_FINALIZER, AppStore, Condition, DesiredApp, ProjectRecord
from hub.db import IntegrityError
from hub.errors import HubError
from hub.store import MIGRATIONS, Store, connect, migrate, schema_version, table_names


def desired(
    name: str, cluster: str | None = "east", appset: str | None = "web", **kw: Any
) -> DesiredApp:
    manifest = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": name,
            "labels": {"team": kw.pop("team", "a")},
            "finalizers": kw.pop("finalizers", [RESOURCES_FINALIZER]),
        },
        "spec": {
            "project": "default",
            "source": {
                "repoURL": "https://git.example/r.git",
                "path": "p",
                "targetRevision": kw.pop("rev", "main"),
            },
            "destination": {"server": f"https://{cluster}", "namespace": kw.pop("ns", "web")},
        },
    }
    return DesiredApp.from_manifest(manifest, appset=appset, source="src", cluster=cluster, **kw)


@pytest.fixture
def store(db_location: Path | str) -> Iterator[Store]:
    s = Store.open(db_location, create=True)
    yield s
    s.close()


def put(store: Store, *apps: DesiredApp) -> None:
    with AppStore(store).transaction() as txn:
        for app in apps:
            txn.put_desired(app)


def test_a_new_database_gets_the_desired_state_tables(store: Store) -> None:
    assert store.schema_version == len(MIGRATIONS) >= 3
    with store.read() as db:
        tables = set(table_names(db))
    assert {"sources", "applicationsets", "app_projects", "applications"} <= tables


def test_a_database_at_version_2_migrates_keeping_clusters_and_history(tmp_path: Path) -> None:
    db = connect(tmp_path / "hub.db")
    assert migrate(db, MIGRATIONS[:2]) == 2
    db.execute(
        "INSERT INTO clusters (name, server, credential_kind, credential_rev, key_id, "
        "wrapped_key, nonce, ciphertext) VALUES ('east', 'https://east', 'token', 'r', 'k', "
        "x'00', x'00', x'00')"
    )
    db.execute(
        "INSERT INTO sync_history (app, id, operation_id, cluster, revision, source, "
        "initiated_by, trigger, started_at, finished_at, phase, message) VALUES "
        "('web-east', 1, 'op', 'east', 'abc', '{}', 'me', 'user', 't0', 't1', 'Succeeded', '')"
    )
    db.close()
    with Store.open(tmp_path / "hub.db") as s:
        assert s.schema_version == len(MIGRATIONS)
        assert [r.name for r in s.list_records()] == ["east"]
        with s.read() as conn:
            assert conn.execute("SELECT COUNT(*) FROM sync_history").fetchone()[0] == 1
        put(s, desired("web-east"))
        assert AppStore(s).get("web-east") is not None
    raw = connect(tmp_path / "hub.db")
    assert schema_version(raw) == len(MIGRATIONS)
    names = [r[0] for r in raw.execute("SELECT name FROM schema_version ORDER BY version")]
    raw.close()
    assert names[2] == "m0003_desired_state"


def test_put_desired_creates_then_replaces_only_the_desired_half(store: Store) -> None:
    apps = AppStore(store)
    put(store, desired("web-east"))
    first = apps.get("web-east")
    assert first is not None and first.generation == 1
    assert (first.sync_status, first.health_status) == ("Unknown", "Unknown")
    assert first.desired_revision == "main" and first.namespace == "web"
    assert first.finalizers == (RESOURCES_FINALIZER,)
    assert first.manifest()["spec"]["destination"]["server"] == "https://east"
    assert apps.set_status(
        "web-east",
        sync_status="Synced",
        health_status="Healthy",
        synced_sha="a" * 40,
        conditions=[Condition(type="SyncError", message="x")],
    )
    put(store, desired("web-east"))  # same desired state: no new generation
    same = apps.get("web-east")
    assert same is not None and same.generation == 1 and same.sync_status == "Synced"
    put(store, desired("web-east", ns="web2"))
    changed = apps.get("web-east")
    assert changed is not None and changed.generation == 2
    assert changed.namespace == "web2"
    assert (changed.sync_status, changed.health_status, changed.synced_sha) == (
        "Synced",
        "Healthy",
        "a" * 40,
    )
    assert [c.type for c in changed.conditions] == ["SyncError"]


def test_set_status_rejects_unknown_statuses_and_reports_missing_apps(store: Store) -> None:
    apps = AppStore(store)
    put(store, desired("web-east"))
    with pytest.raises(HubError, match="unknown sync status 'Fine'"):
        apps.set_status("web-east", sync_status="Fine")
    with pytest.raises(HubError, match="unknown health status"):
        apps.set_status("web-east", health_status="Sad")
    assert apps.set_status("nope", sync_status="Synced") is False


def test_queries_by_cluster_appset_source_and_deletion_state(store: Store) -> None:
    put(
        store,
        desired("web-east"),
        desired("web-west", cluster="west"),
        desired("api-east", appset="api"),
        desired("tools", appset=None),
    )
    apps = AppStore(store)
    assert [a.name for a in apps.list_apps(cluster="east")] == ["api-east", "tools", "web-east"]
    assert [a.name for a in apps.list_apps(appset="web")] == ["web-east", "web-west"]
    assert [a.name for a in apps.list_apps(plain=True)] == ["tools"]
    assert [a.name for a in apps.list_apps(source="src", cluster="west")] == ["web-west"]
    with apps.transaction() as txn:
        txn.mark_deleting("web-west", "relabelled out")
    assert [a.name for a in apps.list_apps(deleting=True)] == ["web-west"]
    gone = apps.get("web-west")
    assert gone is not None and gone.deleting and gone.generation == 2
    assert gone.deletion_reason == "relabelled out" and gone.deletion_requested_at is not None
    assert len(apps.list_apps(deleting=False)) == 3
    # count_apps counts what list_apps lists, for every filter
    for filters in (
        {},
        {"cluster": "east"},
        {"appset": "web"},
        {"plain": True},
        {"source": "src", "cluster": "west"},
        {"deleting": True},
        {"deleting": False, "source": "src"},
        {"cluster": "nowhere"},
    ):
        assert apps.count_apps(**filters) == len(apps.list_apps(**filters)), filters
    assert apps.owners() == {
        "api-east": "appset/api",
        "tools": "source/src",
        "web-east": "appset/web",
        "web-west": "appset/web",
    }
    assert apps.finish_deletion("web-west") and apps.get("web-west") is None
    assert not apps.finish_deletion("web-west")


def test_disowned_apps_have_no_owner(store: Store) -> None:
    put(store, desired("web-east"))
    apps = AppStore(store)
    with apps.transaction() as txn:
        txn.disown("web-east")
    record = apps.get("web-east")
    assert record is not None and (record.appset, record.source) == (None, None)
    assert apps.owners() == {}


def test_rollups_are_single_group_by_queries(store: Store) -> None:
    put(
        store,
        desired("web-east"),
        desired("web-west", cluster="west"),
        desired("api-east", appset="api"),
    )
    apps = AppStore(store)
    apps.set_status("web-east", sync_status="Synced", health_status="Healthy")
    apps.set_status("api-east", sync_status="OutOfSync", health_status="Degraded")
    by_cluster = {r.key: r for r in apps.rollup("cluster")}
    assert by_cluster["east"].total == 2
    assert by_cluster["east"].sync == {"Synced": 1, "OutOfSync": 1}
    assert by_cluster["west"].health == {"Unknown": 1}
    by_appset = {r.key: r.total for r in apps.rollup("appset")}
    assert by_appset == {"api": 1, "web": 2}
    (fleet,) = apps.rollup("fleet")
    assert (fleet.key, fleet.total, fleet.deleting) == (None, 3, 0)
    assert fleet.health == {"Healthy": 1, "Degraded": 1, "Unknown": 1}


def test_an_empty_fleet_rolls_up_to_zero(store: Store) -> None:
    (fleet,) = AppStore(store).rollup("fleet")
    assert fleet.total == 0 and fleet.sync == {}
    assert AppStore(store).rollup("cluster") == []


def test_prune_cluster_removes_only_that_clusters_apps(store: Store) -> None:
    put(store, desired("web-east"), desired("web-west", cluster="west"), desired("api-east"))
    apps = AppStore(store)
    with apps.transaction() as txn:
        txn.mark_deleting("api-east", "cascade pending")
    pruned = apps.prune_cluster("east")
    assert [a.name for a in pruned] == ["api-east", "web-east"]
    assert [a.name for a in apps.list_apps()] == ["web-west"]
    assert apps.prune_cluster("east") == []


def test_appsets_and_projects_round_trip(store: Store) -> None:
    apps = AppStore(store)
    with apps.transaction() as txn:
        txn.put_appset(name="web", source="src", file="a.yaml", manifest={"spec": {}}, sha="1" * 40)
        txn.set_appset_status(
            "web",
            conditions=[Condition(type="ErrorOccurred", status="False", reason="ok")],
            status={"applications": 2},
            generated=2,
            last_error=None,
        )
        txn.replace_projects(
            "src", [ProjectRecord(name="team", source="src", file="p.yaml", manifest={}, sha="1")]
        )
    with apps.transaction() as txn:
        # A failed generation passes generated=None: the last clean count is kept.
        txn.set_appset_status("web", conditions=[], status={}, generated=None, last_error="boom")
    record = apps.get_appset("web")
    assert record is not None
    assert (record.generated, record.last_error, record.sha) == (2, "boom", "1" * 40)
    assert [s.name for s in apps.list_appsets(source="src")] == ["web"]
    assert apps.list_appsets(source="other") == []
    assert [p.name for p in apps.list_projects()] == ["team"]
    assert apps.get_project("team") == apps.list_projects()[0]
    assert apps.get_project("other") is None
    with apps.transaction() as txn:
        txn.replace_projects("src", [])
        txn.delete_appset("web")
    assert apps.list_projects() == [] and apps.get_appset("web") is None
    assert apps.get_project("team") is None


def test_a_failed_transaction_writes_nothing(store: Store) -> None:
    apps = AppStore(store)
    with pytest.raises(IntegrityError), apps.transaction() as txn:
        txn.put_desired(desired("web-east"))
        txn.put_appset(name="web", source="s", file="f", manifest={}, sha=None)  # type: ignore[arg-type]
    assert apps.get("web-east") is None
