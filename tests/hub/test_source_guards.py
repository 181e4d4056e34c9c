"""The guards between a source's revision and deletion: a file that stops being an
ApplicationSet, and a revision that would delete most of a source's Applications."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.apps import AppStore
from hub.appsets import SOURCE_ERROR, SOURCE_GUARD, source_guard_trips
from hub.sources import (
    Source,
    SourceError,
    SourceLoad,
    SourceStore,
    _parse_file,
    check_set_files,
    load_source,
)
from hub.store import Store
from tests.hub.test_appsets_controller import appset_doc, loaded, names, plain_doc, run
from tests.hub.test_sources import MemoryGit


@pytest.fixture
def store(db_location: Path | str) -> Iterator[Store]:
    s = Store.open(db_location, create=True)
    for name in ("a", "b"):
        SourceStore(s).add(Source(name=name, repo="/nowhere"))
    yield s
    s.close()


def at(load: SourceLoad, sha: str, *, contents: Mapping[str, str] | None = None) -> SourceLoad:
    """``load`` at commit ``sha`` with its files listed (plus ``contents``: files that
    declare nothing the hub reads)."""
    files = {a.file for a in load.appsets} | {a.file for a in load.applications}
    extra = dict(contents or {})
    return replace(load, sha=sha * 40, paths=tuple(sorted(files | set(extra))), contents=extra)


def condition(store: Store, appset: str) -> tuple[str, str, str]:
    record = AppStore(store).get_appset(appset)
    assert record is not None
    c = next(c for c in record.conditions if c.type == "ErrorOccurred")
    return c.status, c.reason, c.message


# ---------------------------------------------------------------- a file that stops being a set


@pytest.mark.parametrize(
    "holds", ["nothing (an empty file)", "a document without kind", "kind 'ApplicationSett'"]
)
def test_a_set_file_that_declares_no_set_is_an_error_not_a_removal(
    store: Store, holds: str
) -> None:
    run(store, at(loaded("a", appset_doc()), "1"))
    assert set(names(store)) == {"web-east", "web-west"}
    report = run(store, at(loaded("a"), "2", contents={"web.yaml": holds}))
    assert not report.ok and report.actions("delete") == []
    assert names(store) == {"web-east": None, "web-west": None}
    source = SourceStore(store).get("a")
    assert source.last_sha == "1" * 40  # the last good revision stays in force
    assert source.last_error and "web.yaml@222222222222" in source.last_error
    assert holds in source.last_error and "git rm" in source.last_error
    status, reason, message = condition(store, "web")
    assert (status, reason) == ("True", SOURCE_ERROR) and "web.yaml" in message
    # Fixing the file clears it; removing the file is what deletes the set.
    run(store, at(loaded("a", appset_doc()), "3"))
    assert condition(store, "web")[:2] == ("False", "ApplicationSetUpToDate")


def test_check_set_files_leaves_removed_files_and_renamed_sets_alone() -> None:
    previous = {"web.yaml": ["web"], "gone.yaml": ["old"]}
    renamed = at(loaded("a", appset_doc("web2")), "2")
    renamed = replace(
        renamed,
        appsets=tuple(replace(a, file="web.yaml") for a in renamed.appsets),
        paths=("web.yaml",),
    )
    assert check_set_files(renamed, previous).ok
    assert not check_set_files(at(loaded("a"), "2", contents={"web.yaml": "x"}), previous).ok


def test_other_sets_of_a_source_with_a_bad_file_say_the_source_is_not_applied(
    store: Store,
) -> None:
    run(store, at(loaded("a", appset_doc("web"), appset_doc("api")), "1"))
    broken = at(loaded("a", appset_doc("api")), "2", contents={"web.yaml": "a list"})
    run(store, broken)
    assert "web.yaml" in condition(store, "web")[2]
    _, reason, message = condition(store, "api")
    assert reason == SOURCE_ERROR and "source a is not applied" in message


# ---------------------------------------------------------------- the source deletion guard


@pytest.mark.parametrize(
    ("deleting", "owned", "held"),
    [
        (0, 0, False),
        (0, 5, False),
        (4, 5, False),
        (5, 5, True),
        (1, 1, True),
        (10, 10, True),
        (6, 11, True),
        (5, 11, False),
        (50, 100, False),
        (51, 100, True),
    ],
)
def test_the_source_guard_threshold(deleting: int, owned: int, held: bool) -> None:
    assert source_guard_trips(deleting, owned) is held


def test_a_revision_that_drops_every_set_is_held_until_confirmed(store: Store) -> None:
    first = at(loaded("a", appset_doc("web"), apps=(plain_doc("tools"),)), "1")
    run(store, first)
    assert set(names(store)) == {"web-east", "web-west", "tools"}
    empty = at(loaded("a"), "2")  # a force-push of an orphan commit: nothing declared
    report = run(store, empty)
    assert not report.ok and report.actions("delete") == []
    assert set(names(store)) == {"web-east", "web-west", "tools"}
    source = SourceStore(store).get("a")
    assert source.held_sha == "2" * 40 and source.last_sha == "1" * 40
    assert source.state == "held"
    assert "would delete 3 of the 3 Applications" in (source.last_error or "")
    assert "hub source confirm a" in (source.last_error or "")
    _, reason, message = condition(store, "web")
    assert reason == SOURCE_GUARD and "hub source confirm a" in message

    # Confirming names the held revision only: another revision is guarded again.
    assert SourceStore(store).confirm("a") == "2" * 40
    other = at(loaded("a"), "3")
    run(store, other)
    assert set(names(store)) == {"web-east", "web-west", "tools"}
    assert SourceStore(store).get("a").held_sha == "3" * 40

    SourceStore(store).confirm("a")
    report = run(store, other)
    assert report.ok
    assert sorted(a.app for a in report.actions("delete")) == ["tools", "web-east", "web-west"]
    source = SourceStore(store).get("a")
    assert source.held_sha is None and source.last_sha == "3" * 40


def test_removing_one_set_of_several_is_not_held(store: Store) -> None:
    run(store, at(loaded("a", appset_doc("web"), appset_doc("api")), "1"))
    report = run(store, at(loaded("a", appset_doc("api")), "2"))
    assert report.ok
    assert sorted(a.app for a in report.actions("delete")) == ["web-east", "web-west"]


def test_confirm_without_a_held_revision_is_an_error(store: Store) -> None:
    with pytest.raises(SourceError, match="no held revision"):
        SourceStore(store).confirm("a")


def test_a_policy_that_deletes_nothing_is_not_held(store: Store) -> None:
    doc: dict[str, Any] = appset_doc("web", applicationsSync="create-only")
    run(store, at(loaded("a", doc), "1"))
    report = run(store, at(loaded("a"), "2"))
    assert report.ok and sorted(a.app for a in report.actions("disown")) == [
        "web-east",
        "web-west",
    ]


# ---------------------------------------------------------------- any parse failure is the file's


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # the hardened loader (generators.yamlio) names the line and what is wrong
        (b"a: !!int zz", "not valid YAML: line 1, column 4: the value tagged !!int"),
        (b"[" * 5000, "not valid YAML: line 1, column 101: nesting is deeper than 100"),
        (b"kind: [unclosed", "not valid YAML"),
    ],
)
def test_a_file_the_loader_chokes_on_is_an_error_of_that_file(data: bytes, expected: str) -> None:
    errors: list[str] = []
    _parse_file("apps/x.yaml", data, "a" * 40, [], [], [], errors)
    assert len(errors) == 1 and errors[0].startswith("apps/x.yaml@aaaaaaaaaaaa")
    assert expected in errors[0]


@settings(max_examples=200, deadline=None)
@given(
    raw=st.binary(max_size=200)
    | st.text(max_size=200).map(str.encode)
    | st.sampled_from(
        [b"", b"foo: bar", b"kind: ApplicationSett", b"---\n---", b"kind: Application", b"[]"]
    )
)
def test_a_set_file_with_any_content_keeps_its_set_or_is_an_error_naming_it(raw: bytes) -> None:
    """Whatever a file that held an ApplicationSet now contains, the load either still
    declares a set from it or fails naming it: never a silent removal."""
    load = load_source(Source(name="s", repo="mem", path="apps"), MemoryGit({"apps/web.yaml": raw}))
    checked = check_set_files(load, {"apps/web.yaml": ["web"]})
    declares = any(a.file == "apps/web.yaml" for a in checked.appsets)
    assert declares or (not checked.ok and "apps/web.yaml" in checked.file_errors), checked.errors
