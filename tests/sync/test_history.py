"""Sync history: ids per app, limit, sealed manifests, operations in flight."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from clusters.crypto import Keyring, MasterKey
from hub.store import Store
from hub.sync.history import (
    HistoryError,
    Operation,
    OperationPhase,
    ResourceResult,
    SyncHistory,
    Trigger,
)
from tests.pg import stored_bytes

SECRET_VALUE = "c3VwZXItc2VjcmV0LXZhbHVl"


@pytest.fixture
def store(db_location: Path | str) -> Iterator[Store]:
    s = Store.open(db_location, create=True)
    yield s
    s.close()


def keyring(key: MasterKey) -> Keyring:
    return Keyring(primary=key)


def op(app: str, n: int, phase: OperationPhase = OperationPhase.SUCCEEDED) -> Operation:
    return Operation(
        app=app,
        operation_id=f"op-{n}",
        cluster="prod",
        revision=f"{n:040x}",
        source={"repoURL": "https://example.com/r.git", "path": "app"},
        initiated_by="alice",
        trigger=Trigger.USER,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        phase=phase,
        message=f"sync {n}",
        resources=(
            ResourceResult(
                group="apps",
                kind="Deployment",
                namespace="ns",
                name="web",
                phase="Sync",
                wave=1,
                action="apply",
                status="Synced",
                health="Healthy",
            ),
        ),
    )


def test_entries_count_up_per_app_and_only_the_newest_limit_are_kept(store: Store) -> None:
    history = SyncHistory(store, lambda: keyring(MasterKey.generate("t")))
    for n in range(5):
        recorded = history.record(op("a", n), finished_at=datetime.now(UTC), manifests=[], limit=3)
        assert recorded == history.get("a", n)  # what record returns is what was stored
    history.record(op("b", 9), finished_at=datetime.now(UTC), manifests=None)
    assert [e.id for e in history.entries("a")] == [2, 3, 4]
    assert [e.id for e in history.entries("b")] == [0]
    entry = history.get("a", 4)
    assert entry.revision == f"{4:040x}" and entry.message == "sync 4"
    assert entry.resources[0].health == "Healthy" and entry.has_manifests
    with pytest.raises(HistoryError, match=r"no history entry 0 \(known ids: 2, 3, 4\)"):
        history.get("a", 0)
    with pytest.raises(HistoryError, match="has no manifests"):
        history.manifests("b", 0)


def test_manifests_are_sealed_and_need_the_master_key(
    store: Store, db_location: Path | str, request: pytest.FixtureRequest
) -> None:
    key = MasterKey.generate("t")
    secret: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    secret["data"] = {"password": SECRET_VALUE}
    history = SyncHistory(store, lambda: keyring(key))
    history.record(op("a", 1), finished_at=datetime.now(UTC), manifests=[secret])
    assert history.manifests("a", 0) == [secret]
    server = None if isinstance(db_location, Path) else request.getfixturevalue("postgres_server")
    assert SECRET_VALUE.encode() not in stored_bytes(db_location, server)
    other = SyncHistory(store, lambda: keyring(MasterKey.generate("other")))
    with pytest.raises(HistoryError, match="wrong master key"):
        other.manifests("a", 0)


def test_an_operation_in_flight_is_visible_until_recorded(store: Store) -> None:
    history = SyncHistory(store, lambda: keyring(MasterKey.generate("t")))
    running = op("a", 1, OperationPhase.RUNNING)
    history.begin(running)
    assert [o.operation_id for o in history.interrupted()] == ["op-1"]
    assert history.in_flight("a") is not None
    with pytest.raises(ValueError, match="still Running"):
        history.record(running, finished_at=datetime.now(UTC), manifests=None)
    done = Operation(**{**running.__dict__, "phase": OperationPhase.FAILED})
    history.record(done, finished_at=datetime.now(UTC), manifests=None)
    assert history.interrupted() == [] and history.in_flight("a") is None
    assert history.entries("a")[0].phase is OperationPhase.FAILED


def test_an_interrupted_operation_is_recorded_as_error(store: Store) -> None:
    history = SyncHistory(store, lambda: keyring(MasterKey.generate("t")))
    history.begin(op("a", 1, OperationPhase.RUNNING))
    (stale,) = history.interrupted()
    entry = history.record_interrupted(stale)
    assert entry.phase is OperationPhase.ERROR and entry.message.startswith("interrupted")
    assert not entry.has_manifests and history.interrupted() == []


def test_a_key_rotation_rewraps_the_sealed_manifests(store: Store) -> None:
    old, new = MasterKey.generate("old"), MasterKey.generate("new")
    history = SyncHistory(store, lambda: keyring(old))
    history.record(op("a", 1), finished_at=datetime.now(UTC), manifests=[{"kind": "X"}])
    history.record(op("a", 2), finished_at=datetime.now(UTC), manifests=None)
    both = Keyring(primary=new, others=(old,))
    assert history.rewrap_all(both, new) == 1
    assert SyncHistory(store, lambda: keyring(new)).manifests("a", 0) == [{"kind": "X"}]
    with pytest.raises(HistoryError, match="wrong master key"):
        SyncHistory(store, lambda: keyring(old)).manifests("a", 0)


def test_resource_kinds_are_every_kind_the_history_names_without_opening_manifests(
    store: Store,
) -> None:
    def no_keys() -> Keyring:
        raise AssertionError("resource kinds must not need the keyring")

    writer = SyncHistory(store, lambda: keyring(MasterKey.generate("t")))
    first = op("a", 1)
    cm = ResourceResult(
        group="", kind="ConfigMap", namespace="ns", name="settings", phase="Sync", wave=0,
        action="prune", status="Pruned",
    )  # fmt: skip
    writer.record(first, finished_at=datetime.now(UTC), manifests=[{"kind": "Deployment"}])
    second = Operation(**{**first.__dict__, "operation_id": "op-2", "resources": (cm,)})
    writer.record(second, finished_at=datetime.now(UTC), manifests=None)
    reader = SyncHistory(store, no_keys)
    assert reader.resource_kinds("a") == {("apps", "Deployment"), ("", "ConfigMap")}
    assert reader.resource_kinds("b") == set()
    assert reader.resource_kinds("a") == {
        (r.group, r.kind) for e in reader.entries("a") for r in e.resources
    }


def test_the_caller_s_writes_at_an_operation_s_two_ends_share_its_transactions(
    store: Store, db_location: Path | str
) -> None:
    """``begin(also=)`` and ``record(also=)``: the caller's writes (the worker's app
    status) commit with the in-flight operation and with the history entry, not apart."""
    history = SyncHistory(store, lambda: keyring(MasterKey.generate("t")))
    other = Store.open(db_location)  # another connection: sees only what is committed
    seen: list[tuple[str, object, object]] = []
    try:
        observer = SyncHistory(other, lambda: pytest.fail("no keys needed"))

        def at_start() -> None:
            store.set_meta("status", "running")  # a write of its own joins the transaction
            seen.append(("start", history.in_flight("a"), observer.in_flight("a")))

        history.begin(op("a", 1, OperationPhase.RUNNING), also=at_start)
        assert store.get_meta("status") == "running" and observer.in_flight("a") is not None

        def at_end(entry: Any) -> None:
            store.set_meta("status", f"entry {entry.id}")
            seen.append(("end", observer.entries("a"), observer.in_flight("a")))

        entry = history.record(
            op("a", 1), finished_at=datetime.now(UTC), manifests=None, also=at_end
        )
        assert other.get_meta("status") == f"entry {entry.id}"
    finally:
        other.close()
    assert [s[0] for s in seen] == ["start", "end"]
    (_, in_flight_here, in_flight_there), (_, entries_there, still_there) = seen
    assert in_flight_here is not None and in_flight_there is None  # not committed yet
    assert entries_there == [] and still_there is not None  # the entry not committed yet


def test_a_failing_caller_write_leaves_neither_the_operation_nor_the_entry(store: Store) -> None:
    history = SyncHistory(store, lambda: keyring(MasterKey.generate("t")))

    def refused(*_: object) -> None:
        store.set_meta("status", "half")
        raise RuntimeError("lease lost")

    with pytest.raises(RuntimeError):
        history.begin(op("a", 1, OperationPhase.RUNNING), also=refused)
    assert history.in_flight("a") is None and store.get_meta("status") is None

    history.begin(op("a", 1, OperationPhase.RUNNING))
    with pytest.raises(RuntimeError):
        history.record(op("a", 1), finished_at=datetime.now(UTC), manifests=None, also=refused)
    assert history.entries("a") == [] and store.get_meta("status") is None
    assert history.in_flight("a") is not None  # still in flight: recovery records it
