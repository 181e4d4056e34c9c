"""The state store: WAL mode, busy timeout, migrations in order, one schema_version table.

Most tests run on both backends (``db_location``: SQLite file or a fresh PostgreSQL
database of the test server, tests/pg.py)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub import store
from hub.db import Connection, SQLiteConnection, connect_postgres
from hub.errors import HubError
from hub.store import MIGRATIONS, Store, connect, migrate, schema_version, table_names


@pytest.fixture
def raw(db_location: Path | str) -> Iterator[Connection]:
    """A bare connection (no Store) to the test's database, of either backend."""
    db: Connection = (
        SQLiteConnection(connect(db_location))
        if isinstance(db_location, Path)
        else connect_postgres(db_location)
    )
    yield db
    db.close()


def test_a_new_store_is_migrated_to_the_latest_version_in_wal_mode(tmp_path: Path) -> None:
    with Store.open(tmp_path / "hub.db", create=True) as s:
        assert s.schema_version == len(MIGRATIONS)
        db = connect(s.path)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == store.BUSY_TIMEOUT_MS
        rows = db.execute("SELECT version, name FROM schema_version ORDER BY version").fetchall()
        db.close()
    assert rows == [(i + 1, m.__name__.lstrip("_")) for i, m in enumerate(MIGRATIONS)]


def test_both_backends_migrate_to_the_same_version_and_tables(db_location: Path | str) -> None:
    with Store.open(db_location, create=True) as s:
        assert s.schema_version == len(MIGRATIONS)
        with s.read() as db:
            rows = db.execute("SELECT version, name FROM schema_version ORDER BY version")
            assert rows.fetchall() == [
                (i + 1, m.__name__.lstrip("_")) for i, m in enumerate(MIGRATIONS)
            ]
            tables = table_names(db)
    assert "clusters" in tables and "sync_history" in tables and "schema_version" in tables


def test_opening_a_missing_database_without_create_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(HubError, match="run `hub init`"):
        Store.open(tmp_path / "hub.db")
    assert not (tmp_path / "hub.db").exists()


def test_migration_names_carry_their_version_number() -> None:
    for version, step in enumerate(MIGRATIONS, start=1):
        assert step.__name__.startswith(f"_m{version:04d}_")


def test_migrations_run_in_order_once_and_later_ones_apply_on_reopen(raw: Connection) -> None:
    calls: list[str] = []

    def m1(db: Connection) -> None:
        calls.append("m1")
        db.execute("CREATE TABLE a (x INTEGER)")

    def m2(db: Connection) -> None:
        calls.append("m2")
        db.execute("ALTER TABLE a ADD COLUMN y TEXT")

    db = raw
    assert migrate(db, (m1,)) == 1
    assert migrate(db, (m1,)) == 1
    assert migrate(db, (m1, m2)) == 2
    assert calls == ["m1", "m2"]
    assert schema_version(db) == 2
    db.execute("INSERT INTO a (x, y) VALUES (1, 'z')")


def test_a_failing_migration_leaves_the_schema_untouched(raw: Connection) -> None:
    def good(db: Connection) -> None:
        db.execute("CREATE TABLE a (x INTEGER)")

    def bad(db: Connection) -> None:
        db.execute("CREATE TABLE b (x INTEGER)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        migrate(raw, (good, bad))
    assert schema_version(raw) == 0
    tables = set(table_names(raw))
    assert "a" not in tables and "b" not in tables


def test_a_database_newer_than_the_code_is_refused(raw: Connection) -> None:
    def m1(db: Connection) -> None:
        db.execute("CREATE TABLE a (x INTEGER)")

    def m2(db: Connection) -> None:
        db.execute("CREATE TABLE b (x INTEGER)")

    migrate(raw, (m1, m2))
    with pytest.raises(HubError, match="newer than this hub understands"):
        migrate(raw, (m1,))


def test_concurrent_openers_of_a_fresh_database_migrate_it_once(
    db_location: Path | str, tmp_path: Path
) -> None:
    # SQLite: several fresh files, since the race on turning a new file to WAL (see
    # test_switching_to_wal_is_retried_while_the_file_is_locked) lost about one in a hundred
    rounds = 20 if isinstance(db_location, Path) else 1
    for i in range(rounds):
        path = db_location if i == 0 else tmp_path / f"hub-{i}.db"
        errors: list[BaseException] = []

        def open_it(path: Path | str = path, errors: list[BaseException] = errors) -> None:
            try:
                Store.open(path, create=True).close()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with Store.open(path) as s, s.read() as db:
            count = db.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0]
            assert count == len(MIGRATIONS)


class _LockedAtFirst:
    """A connection whose journal-mode switch finds the file locked ``times`` times."""

    def __init__(self, times: int, message: str = "database is locked") -> None:
        self.times = times
        self.message = message
        self.calls = 0

    def execute(self, sql: str) -> _LockedAtFirst:
        assert sql == "PRAGMA journal_mode = WAL"
        self.calls += 1
        if self.calls <= self.times:
            raise sqlite3.OperationalError(self.message)
        return self

    def fetchone(self) -> tuple[str]:
        return ("wal",)


def test_switching_to_wal_is_retried_while_the_file_is_locked() -> None:
    db = _LockedAtFirst(3)
    assert store._switch_to_wal(db) == "wal"  # type: ignore[arg-type]
    assert db.calls == 4


def test_switching_to_wal_gives_up_after_the_busy_timeout_and_on_other_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store, "BUSY_TIMEOUT_MS", 50)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        store._switch_to_wal(_LockedAtFirst(10_000))  # type: ignore[arg-type]
    other = _LockedAtFirst(1, "disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        store._switch_to_wal(other)  # type: ignore[arg-type]
    assert other.calls == 1


def test_a_write_transaction_rolls_back_on_error(db_location: Path | str) -> None:
    with Store.open(db_location, create=True) as s:
        s.set_meta("k", "v1")
        with pytest.raises(RuntimeError), s.write() as db:
            db.execute("UPDATE meta SET value = 'v2' WHERE key = 'k'")
            raise RuntimeError("abort")
        assert s.get_meta("k") == "v1"


def test_cluster_listing_sees_commits_of_this_and_other_connections(
    db_location: Path | str,
) -> None:
    from clusters.crypto import Keyring, MasterKey
    from clusters.kubeconfig import BearerToken, TLSSettings
    from clusters.registry import NewCluster, Registry

    key = MasterKey.generate("k")
    path = db_location

    def cluster(name: str) -> NewCluster:
        return NewCluster(
            name=name,
            server=f"https://{name}:1",
            tls=TLSSettings(),
            credential=BearerToken(token="t-1234567"),
        )

    with Store.open(path, create=True) as one, Store.open(path) as two:
        reg_one = Registry(one, lambda: Keyring(primary=key))
        reg_two = Registry(two, lambda: Keyring(primary=key))
        assert reg_one.list() == []
        reg_one.add(cluster("a"), check=False)
        assert [r.name for r in reg_one.list()] == ["a"]
        assert [r.name for r in reg_two.list()] == ["a"]
        reg_two.set_labels("a", {"k": "v"})
        assert reg_one.list()[0].labels == {"k": "v"}
        reg_two.remove("a")
        assert reg_one.list() == []
        reg_one.add(cluster("b"), check=False)
        first = reg_two.list()
        with pytest.raises(TypeError):
            first[0].labels["x"] = "y"  # type: ignore[index]
        first.clear()  # a caller's own list; the cache is unaffected
        assert [r.name for r in reg_two.list()] == ["b"]
