"""A stored Application is parsed once per loaded record (``AppRecord.application``), and
one function (``pick_sources``) decides between ``spec.source`` and ``spec.sources``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import hub.apps
from hub.apps import AppRecord, AppStore, DesiredApp
from hub.rollout import source_key
from hub.store import Store
from hub.sync.model import (
    ApplicationSource,
    AppSpecError,
    declared_source_specs,
    parse_application,
    pick_sources,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GIT = {"repoURL": "https://git.example/r.git", "path": "p", "targetRevision": "main"}
CHART = {"repoURL": "https://charts.example", "chart": "c", "targetRevision": "1.0"}


def record(
    spec: dict[str, Any], *, name: str = "web-east", file: str = "apps/web.yaml"
) -> AppRecord:
    return AppRecord(
        name=name, appset=None, source="src", file=file, cluster="east", dest_server="",
        dest_name="east", namespace="web", project="default", spec=spec, labels={"team": "a"},
        annotations={}, finalizers=(), generation=1, desired_revision="main", desired_sha=None,
        synced_sha=None, sync_status="Synced", health_status="Healthy", conditions=(),
        operation_state=None, created_at=T0, updated_at=T0, reconciled_at=None, deletion=None,
        deletion_reason=None, deletion_requested_at=None,
    )  # fmt: skip


def valid_spec(**extra: Any) -> dict[str, Any]:
    return {
        "project": "default",
        "source": dict(GIT),
        "destination": {"name": "east", "namespace": "web"},
        "syncPolicy": {"automated": {"prune": True}},
        **extra,
    }


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the parses ``AppRecord.application`` makes (one entry per call of the parser)."""
    calls: list[str] = []
    real = hub.apps.parse_application

    def spy(doc: object, *, source_file: str = "") -> Any:
        calls.append(source_file)
        return real(doc, source_file=source_file)

    monkeypatch.setattr(hub.apps, "parse_application", spy)
    return calls


def test_a_record_is_parsed_once_however_often_it_is_asked(parses: list[str]) -> None:
    rec = record(valid_spec())
    first = rec.application()
    assert rec.application() is first
    assert rec.application().sync_policy.auto_sync
    assert parses == ["apps/web.yaml"]


def test_the_typed_application_equals_what_parse_application_gives() -> None:
    for rec in (record(valid_spec()), record(valid_spec(sources=[GIT, CHART]), file="")):
        expected = parse_application(rec.manifest(), source_file=rec.file or rec.name)
        assert rec.application() == expected


def test_errors_name_the_file_or_else_the_app() -> None:
    bad = {"destination": {"name": "east"}}  # no source
    with pytest.raises(AppSpecError, match=r"^apps/web\.yaml: spec\.source: is required"):
        record(bad).application()
    with pytest.raises(AppSpecError, match=r"^web-east: spec\.source: is required"):
        record(bad, file="").application()


def test_an_invalid_spec_raises_the_same_error_each_time_without_parsing_again(
    parses: list[str],
) -> None:
    rec = record(valid_spec(syncPolicy={"retry": {"backoff": {"duration": "soon"}}}))
    with pytest.raises(AppSpecError) as first:
        rec.application()
    with pytest.raises(AppSpecError) as second:
        rec.application()
    assert second.value is first.value
    assert str(first.value).startswith("apps/web.yaml: spec.syncPolicy.retry.backoff.duration: ")
    assert parses == ["apps/web.yaml"]
    # The same message a fresh parse gives (what the call sites raised before).
    with pytest.raises(AppSpecError) as fresh:
        parse_application(rec.manifest(), source_file="apps/web.yaml")
    assert str(fresh.value) == str(first.value)


def test_the_memo_is_no_part_of_the_record(parses: list[str]) -> None:
    rec = record(valid_spec())
    twin = record(valid_spec())
    rec.application()
    assert rec == twin
    assert "_parsed" not in repr(rec)
    # A changed record (``dataclasses.replace``) is parsed afresh, from its own spec.
    moved = dataclasses.replace(rec, spec=valid_spec(source=dict(CHART)))
    assert moved.application().declared_sources()[0].chart == "c"
    assert parses == ["apps/web.yaml", "apps/web.yaml"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "hub.db", create=True)
    yield s
    s.close()


def test_each_store_read_gives_a_record_parsed_from_what_is_stored(
    store: Store, parses: list[str]
) -> None:
    def put(spec: dict[str, Any]) -> None:
        manifest = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "web-east"},
            "spec": spec,
        }
        app = DesiredApp.from_manifest(manifest, appset=None, source="src", cluster="east")
        with AppStore(store).transaction() as txn:
            txn.put_desired(app)

    apps = AppStore(store)
    put(valid_spec())
    rec = apps.get("web-east")
    assert rec is not None
    assert rec.application().declared_sources()[0].path == "p"
    assert rec.application().declared_sources()[0].path == "p"
    assert len(parses) == 1
    put(valid_spec(source={**GIT, "path": "q"}))
    again = apps.get("web-east")
    assert again is not None
    assert again.application().declared_sources()[0].path == "q"
    assert len(parses) == 2


# -- the one "source or sources" rule ---------------------------------------------------


def test_pick_sources_follows_argo_cd() -> None:
    a, b = ApplicationSource(repo_url="a"), ApplicationSource(repo_url="b")
    assert pick_sources(a, ()) == (a,)
    assert pick_sources(a, (b,)) == (b,)  # spec.sources set: spec.source is ignored
    assert pick_sources(None, (a, b)) == (a, b)
    assert pick_sources(None, ()) == ()
    assert pick_sources(a, []) == (a,)  # an empty list counts as unset


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"source": GIT}, [GIT]),
        ({"source": GIT, "sources": [CHART]}, [CHART]),
        ({"source": GIT, "sources": []}, [GIT]),
        ({"source": GIT, "sources": None}, [GIT]),
        ({"sources": [GIT, CHART]}, [GIT, CHART]),
        ({"sources": [GIT, "x", CHART]}, [GIT, CHART]),
        ({"sources": {"repoURL": "r"}}, []),
        ({"source": "x"}, []),
        ({}, []),
    ],
)
def test_raw_specs_and_parsed_applications_pick_the_same_way(
    spec: dict[str, Any], expected: list[dict[str, Any]]
) -> None:
    assert declared_source_specs(spec) == expected
    if expected and all(isinstance(s, dict) for s in spec.get("sources") or [spec.get("source")]):
        typed = record({**spec, "destination": {"name": "east"}}).application()
        assert [s.repo_url for s in typed.declared_sources()] == [s["repoURL"] for s in expected]


def test_rollout_groups_by_the_picked_sources() -> None:
    key = json.loads(source_key({"source": GIT, "sources": [CHART]}))
    assert key == [["https://charts.example", "c", "1.0"]]
    assert json.loads(source_key({"source": GIT, "sources": []})) == [
        ["https://git.example/r.git", "", "main"]
    ]
