"""The hub's state store: one SQLite database in the state home.

Every part of the hub reaches the database through ``Store``. It opens
connections through one factory (WAL journal, busy timeout, foreign keys),
runs the schema migrations in order inside ``BEGIN IMMEDIATE`` so two processes
opening a fresh database cannot both migrate it, and offers short write
transactions that serialise writers across processes.

Adding a migration is one function: write ``_mNNNN_what(db)`` and append it to
``MIGRATIONS``; its position is its version. Keep each migration's SQL as it was
shipped; never edit a released one.

The rest of the hub depends on the small protocols its packages define (for
clusters: ``clusters.registry.ClusterStorage``), not on SQLite, so a server
database could back a later implementation of the same methods.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar, cast

from clusters import crypto
from clusters.crypto import Envelope, Keyring
from clusters.kubeconfig import CredentialKind, TLSSettings
from clusters.registry import ClusterRecord, LastCheck, StoredCluster
from hub.db import (
    WRITE_LOCK_KEY,
    BackendName,
    Connection,
    Cursor,
    PostgresConnection,
    SQLiteConnection,
    WouldWait,
    connect_postgres,
    is_postgres_url,
    postgres_ddl,
    redact_url,
    upsert,
    validate_url,
)
from hub.errors import HubError
from hub.sync.history import HistoryRow, OperationRow

DB_FILENAME = "hub.db"
BUSY_TIMEOUT_MS = 30_000
T = TypeVar("T")

# Writers of one process queue on a lock of their own before SQLite's: SQLite's busy
# handler sleeps 1, 2, 5 ... 100 ms between retries, so threads of a busy hub contending
# for BEGIN IMMEDIATE left the database idle while they slept (measured at 100 x 10: half
# the store threads' time). A thread lock hands over at once; the busy timeout still
# serialises this process with others (the CLI beside `hub serve`).
_SQLITE_WRITE_LOCKS: dict[str, threading.Lock] = {}
_SQLITE_WRITE_LOCKS_GUARD = threading.Lock()


@dataclass
class _Inline:
    """State of one ``Store.call_inline`` on its thread."""

    wrote: bool = False  # a write of this call committed: it may no longer be undone


def _sqlite_write_lock(path: Path) -> threading.Lock:
    """The lock every writer of this process takes before writing to the file at ``path``
    (one per file, whatever the number of ``Store`` objects opened on it)."""
    key = os.path.realpath(path)
    with _SQLITE_WRITE_LOCKS_GUARD:
        return _SQLITE_WRITE_LOCKS.setdefault(key, threading.Lock())


Migration = Callable[[Connection], None]


# ---------------------------------------------------------------- migrations


def _m0001_clusters(db: Connection) -> None:
    db.execute(
        """
        CREATE TABLE clusters (
            name              TEXT PRIMARY KEY,
            server            TEXT NOT NULL,
            labels            TEXT NOT NULL DEFAULT '{}',  -- JSON object
            annotations       TEXT NOT NULL DEFAULT '{}',  -- JSON object
            namespaces        TEXT NOT NULL DEFAULT '[]',  -- JSON array
            cluster_resources INTEGER NOT NULL DEFAULT 0,
            project           TEXT,
            server_version    TEXT,
            check_time        TEXT,
            check_ok          INTEGER,
            check_message     TEXT,
            tls_ca_data       BLOB,
            tls_insecure      INTEGER NOT NULL DEFAULT 0,
            tls_server_name   TEXT,
            credential_kind   TEXT NOT NULL,
            credential_rev    TEXT NOT NULL,
            -- the sealed credential (clusters.crypto envelope); key_id names the master key
            key_id            TEXT NOT NULL,
            wrapped_key       BLOB NOT NULL,
            nonce             BLOB NOT NULL,
            ciphertext        BLOB NOT NULL
        ) STRICT
        """
    )
    db.execute("CREATE INDEX clusters_key_id ON clusters (key_id)")
    # Small named values of the whole hub, e.g. the id of the current master key.
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT")


def _m0002_sync_history(db: Connection) -> None:
    # One row per finished sync of an Application (hub.sync.history). ``id`` counts per app
    # as Argo CD's history ids do. Rendered manifests are kept for rollback and may hold
    # Secret values, so they are sealed with the registry's envelope crypto (the four
    # manifests_* columns); NULL when the sync rendered nothing to keep.
    db.execute(
        """
        CREATE TABLE sync_history (
            app                   TEXT NOT NULL,
            id                    INTEGER NOT NULL,
            operation_id          TEXT NOT NULL,
            cluster               TEXT NOT NULL,
            revision              TEXT NOT NULL,
            source                TEXT NOT NULL,               -- JSON object
            initiated_by          TEXT NOT NULL,
            trigger               TEXT NOT NULL,               -- user|automated|self-heal|rollback
            started_at            TEXT NOT NULL,
            finished_at           TEXT NOT NULL,
            phase                 TEXT NOT NULL,               -- Succeeded|Failed|Error
            message               TEXT NOT NULL,
            resources             TEXT NOT NULL DEFAULT '[]',  -- JSON array
            manifests_key_id      TEXT,
            manifests_wrapped_key BLOB,
            manifests_nonce       BLOB,
            manifests_ciphertext  BLOB,
            PRIMARY KEY (app, id)
        ) STRICT
        """
    )
    # The operation in flight per Application, written when it starts and updated as it
    # goes, so one interrupted by a crash can be recorded (as Error) when the hub restarts.
    db.execute(
        """
        CREATE TABLE sync_operations (
            app          TEXT PRIMARY KEY,
            operation_id TEXT NOT NULL,
            cluster      TEXT NOT NULL,
            revision     TEXT NOT NULL,
            source       TEXT NOT NULL,               -- JSON object
            initiated_by TEXT NOT NULL,
            trigger      TEXT NOT NULL,
            started_at   TEXT NOT NULL,
            updated_at   TEXT NOT NULL,
            phase        TEXT NOT NULL,               -- Running|Terminating
            message      TEXT NOT NULL DEFAULT '',
            resources    TEXT NOT NULL DEFAULT '[]'   -- JSON array
        ) STRICT
        """
    )


def _m0003_desired_state(db: Connection) -> None:
    # Desired state (hub.sources, hub.appsets, hub.apps). JSON columns hold Kubernetes
    # manifests or lists of conditions. No foreign key to clusters: the registry rewrites
    # cluster rows with INSERT OR REPLACE, which would fire ON DELETE actions.
    db.execute(
        """
        CREATE TABLE sources (
            name           TEXT PRIMARY KEY,
            repo           TEXT NOT NULL,               -- URL or absolute local path
            path           TEXT NOT NULL,               -- directory inside the repo ('' = root)
            revision       TEXT NOT NULL,
            created_at     TEXT NOT NULL,
            last_sha       TEXT,                        -- last load without errors (in force)
            last_loaded_at TEXT,
            last_error     TEXT                         -- NULL when the last load was clean
        ) STRICT
        """
    )
    db.execute(
        """
        CREATE TABLE applicationsets (
            name          TEXT PRIMARY KEY,
            source        TEXT NOT NULL,
            file          TEXT NOT NULL,
            manifest      TEXT NOT NULL,                -- JSON: the document as committed
            sha           TEXT NOT NULL,                -- commit the manifest was read at
            conditions    TEXT NOT NULL DEFAULT '[]',   -- JSON array, Argo CD's types
            status        TEXT NOT NULL DEFAULT '{}',   -- JSON: last reconcile summary
            generated     INTEGER,                      -- apps of the last clean generation
            last_error    TEXT,
            created_at    TEXT NOT NULL,
            updated_at    TEXT NOT NULL,
            reconciled_at TEXT
        ) STRICT
        """
    )
    db.execute("CREATE INDEX applicationsets_source ON applicationsets (source)")
    db.execute(
        """
        CREATE TABLE app_projects (
            name     TEXT PRIMARY KEY,
            source   TEXT NOT NULL,
            file     TEXT NOT NULL,
            manifest TEXT NOT NULL,                     -- JSON
            sha      TEXT NOT NULL
        ) STRICT
        """
    )
    db.execute(
        """
        CREATE TABLE applications (
            name             TEXT PRIMARY KEY,
            appset           TEXT,                      -- owning ApplicationSet, NULL if plain
            source           TEXT,                      -- source it came from (via its set)
            file             TEXT NOT NULL DEFAULT '',
            cluster          TEXT,                      -- registry name; NULL if unresolved
            dest_server      TEXT NOT NULL DEFAULT '',
            dest_name        TEXT NOT NULL DEFAULT '',
            namespace        TEXT NOT NULL DEFAULT '',  -- destination namespace
            project          TEXT NOT NULL DEFAULT 'default',
            spec             TEXT NOT NULL,             -- JSON: Application spec
            labels           TEXT NOT NULL DEFAULT '{}',
            annotations      TEXT NOT NULL DEFAULT '{}',
            finalizers       TEXT NOT NULL DEFAULT '[]',
            generation       INTEGER NOT NULL DEFAULT 1, -- bumped on every desired change
            desired_revision TEXT NOT NULL DEFAULT 'HEAD',
            desired_sha      TEXT,
            synced_sha       TEXT,
            sync_status      TEXT NOT NULL DEFAULT 'Unknown',
            health_status    TEXT NOT NULL DEFAULT 'Unknown',
            conditions       TEXT NOT NULL DEFAULT '[]',
            operation_state  TEXT,                      -- JSON or NULL
            created_at       TEXT NOT NULL,
            updated_at       TEXT NOT NULL,
            reconciled_at    TEXT,
            deletion         TEXT,                      -- NULL | 'deleting' (cascade pending)
            deletion_reason  TEXT,
            deletion_requested_at TEXT
        ) STRICT
        """
    )
    db.execute(
        "CREATE INDEX applications_cluster ON applications (cluster, sync_status, health_status)"
    )
    db.execute("CREATE INDEX applications_appset ON applications (appset)")
    db.execute("CREATE INDEX applications_source ON applications (source)")


def _m0004_source_guard(db: Connection) -> None:
    # The source deletion guard (hub.appsets): a revision that would delete too many of a
    # source's Applications is held until `hub source confirm` names it; and the errors of
    # single files of the newest revision, so a set whose file broke can say so.
    db.execute("ALTER TABLE sources ADD COLUMN held_sha TEXT")  # held revision, or NULL
    db.execute("ALTER TABLE sources ADD COLUMN confirmed_sha TEXT")  # the one confirmed
    db.execute("ALTER TABLE sources ADD COLUMN file_errors TEXT NOT NULL DEFAULT '{}'")


def _m0005_repo_credentials(db: Connection) -> None:
    # Chart repository credentials (hub.repo_credentials): the password sealed with the
    # registry's envelope crypto, as cluster credentials are.
    db.execute(
        """
        CREATE TABLE repo_credentials (
            url              TEXT PRIMARY KEY,
            username         TEXT NOT NULL,
            pass_credentials INTEGER NOT NULL DEFAULT 0,
            key_id           TEXT NOT NULL,
            wrapped_key      BLOB NOT NULL,
            nonce            BLOB NOT NULL,
            ciphertext       BLOB NOT NULL,
            created_at       TEXT NOT NULL
        ) STRICT
        """
    )


def _m0006_access(db: Connection) -> None:
    # Users, API tokens and the audit trail (hub.auth). A token's secret is never stored:
    # only the SHA-256 of its random part; ``id`` is the token's clear prefix, for lookup.
    db.execute(
        """
        CREATE TABLE users (
            name       TEXT PRIMARY KEY,
            created_at TEXT NOT NULL
        ) STRICT
        """
    )
    db.execute(
        """
        CREATE TABLE api_tokens (
            id            TEXT PRIMARY KEY,
            subject       TEXT NOT NULL,           -- a user name or proj:<project>:<role>
            kind          TEXT NOT NULL,           -- user | project-role
            description   TEXT NOT NULL DEFAULT '',
            secret_sha256 TEXT NOT NULL,
            created_at    TEXT NOT NULL,
            expires_at    TEXT,                    -- NULL: never
            last_used_at  TEXT,
            revoked_at    TEXT
        ) STRICT
        """
    )
    db.execute("CREATE INDEX api_tokens_subject ON api_tokens (subject)")
    db.execute(
        """
        CREATE TABLE audit (
            seq      INTEGER PRIMARY KEY AUTOINCREMENT,
            at       TEXT NOT NULL,
            actor    TEXT NOT NULL,                -- subject: user, proj:..., role:admin
            token_id TEXT,                         -- the token used, NULL from the CLI
            via      TEXT NOT NULL,                -- cli | api
            remote   TEXT NOT NULL DEFAULT '',     -- remote address (API) or host (CLI)
            action   TEXT NOT NULL,                -- e.g. app.sync, cluster.add
            target   TEXT NOT NULL DEFAULT '',
            result   TEXT NOT NULL,                -- ok | refused | error
            detail   TEXT NOT NULL DEFAULT ''
        ) STRICT
        """
    )
    db.execute("CREATE INDEX audit_at ON audit (at)")


def _m0007_notifications(db: Connection) -> None:
    # Notifications (hub.notifications): the outbox of messages to send, one row per
    # firing (event_key unique: a re-evaluation never queues it twice), and each
    # subscription's trigger state, so a condition fires once until it turns false again
    # (or its oncePer value changes), across restarts. Secrets referenced as $name are
    # sealed like cluster credentials.
    db.execute(
        """
        CREATE TABLE notification_outbox (
            id              INTEGER PRIMARY KEY,
            event_key       TEXT NOT NULL UNIQUE,
            app             TEXT NOT NULL,
            trigger         TEXT NOT NULL,
            service         TEXT NOT NULL,
            recipient       TEXT NOT NULL,
            templates       TEXT NOT NULL,               -- JSON array of template names
            app_view        TEXT NOT NULL,               -- JSON: the app when it fired
            created_at      TEXT NOT NULL,
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            state           TEXT NOT NULL DEFAULT 'pending',  -- pending | sent | failed
            sent_at         TEXT,
            last_error      TEXT
        ) STRICT
        """
    )
    db.execute(
        "CREATE INDEX notification_outbox_due ON notification_outbox (state, next_attempt_at)"
    )
    db.execute(
        """
        CREATE TABLE notification_state (
            app        TEXT NOT NULL,
            key        TEXT NOT NULL,   -- trigger, condition, service, recipient
            fired      INTEGER NOT NULL,
            once_value TEXT,
            seq        INTEGER NOT NULL,
            PRIMARY KEY (app, key)
        ) STRICT
        """
    )
    db.execute(
        """
        CREATE TABLE notification_secrets (
            name        TEXT PRIMARY KEY,
            key_id      TEXT NOT NULL,
            wrapped_key BLOB NOT NULL,
            nonce       BLOB NOT NULL,
            ciphertext  BLOB NOT NULL,
            created_at  TEXT NOT NULL
        ) STRICT
        """
    )


def _m0008_rollouts(db: Connection) -> None:
    # Progressive sync (hub.rollout): the operator's pause and promotion of a RollingSync
    # set survive a restart; the last computed rollout status is kept for the CLI and API.
    db.execute(
        """
        CREATE TABLE rollouts (
            appset        TEXT PRIMARY KEY,
            paused        INTEGER NOT NULL DEFAULT 0,
            promoted_step INTEGER,                     -- 1-based; NULL: none
            status        TEXT NOT NULL DEFAULT '{}',  -- JSON: hub.rollout.Rollout.as_dict()
            updated_at    TEXT NOT NULL
        ) STRICT
        """
    )


def _m0009_replicas(db: Connection) -> None:
    # Several `hub serve` replicas on one database (hub.leases, docs/replicas.md). Times
    # are seconds since the epoch on the database's clock (REAL), so expiry never
    # depends on a replica's wall clock. A lease row is never deleted: its token only
    # grows, so a write fenced with an old token can never match again.
    db.execute(
        """
        CREATE TABLE replicas (
            id           TEXT PRIMARY KEY,
            host         TEXT NOT NULL,
            pid          INTEGER NOT NULL,
            url          TEXT NOT NULL DEFAULT '',
            started_at   REAL NOT NULL,
            heartbeat_at REAL NOT NULL
        ) STRICT
        """
    )
    db.execute(
        """
        CREATE TABLE leases (
            name        TEXT PRIMARY KEY,             -- 'leader' or 'cluster/<name>'
            owner       TEXT,                         -- replica id; NULL when free
            token       INTEGER NOT NULL DEFAULT 0,   -- +1 on every acquisition
            acquired_at REAL,
            renewed_at  REAL,
            expires_at  REAL NOT NULL DEFAULT 0
        ) STRICT
        """
    )
    # Sync/rollback/refresh asked of a replica that does not own the cluster: the owner
    # claims (deletes) the rows of its clusters; cluster '' is for the leader (Git).
    db.execute(
        """
        CREATE TABLE replica_requests (
            id         TEXT PRIMARY KEY,
            cluster    TEXT NOT NULL,
            app        TEXT NOT NULL DEFAULT '',
            action     TEXT NOT NULL,                 -- sync | rollback | refresh | git
            body       TEXT NOT NULL DEFAULT '{}',    -- JSON
            created_at REAL NOT NULL
        ) STRICT
        """
    )
    db.execute("CREATE INDEX replica_requests_cluster ON replica_requests (cluster)")


def _m0010_request_claims(db: Connection) -> None:
    # A forwarded request is no longer deleted when the owner claims it but marked with
    # the lease token it was claimed under; it goes once its operation is recorded as
    # started, and a claim whose token is no longer the cluster's (the claimer died or
    # lost the lease) is claimed again by the new owner (hub.leases, docs/replicas.md).
    db.execute("ALTER TABLE replica_requests ADD COLUMN claimed_by TEXT")
    db.execute("ALTER TABLE replica_requests ADD COLUMN claim_token INTEGER")
    db.execute("ALTER TABLE replica_requests ADD COLUMN claimed_at REAL")


MIGRATIONS: tuple[Migration, ...] = (
    _m0001_clusters,
    _m0002_sync_history,
    _m0003_desired_state,
    _m0004_source_guard,
    _m0005_repo_credentials,
    _m0006_access,
    _m0007_notifications,
    _m0008_rollouts,
    _m0009_replicas,
    _m0010_request_claims,
)
"""Schema migrations in order; ``MIGRATIONS[i]`` brings the schema to version ``i + 1``."""


# ---------------------------------------------------------------- connections


def connect(path: Path) -> sqlite3.Connection:
    """The one SQLite connection factory: WAL, busy timeout, foreign keys, explicit
    transactions. ``Store`` wraps it in ``hub.db.SQLiteConnection``."""
    db = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,  # we issue BEGIN/COMMIT ourselves
        check_same_thread=False,  # one connection per thread, see Store._conn
    )
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    try:
        mode = _switch_to_wal(db)
    except BaseException:
        db.close()
        raise
    if str(mode).lower() != "wal":
        db.close()
        raise HubError(f"state database {path}: cannot switch to WAL mode (got {mode})")
    db.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode
    db.execute("PRAGMA foreign_keys = ON")
    return db


def _switch_to_wal(db: sqlite3.Connection) -> str:
    """``PRAGMA journal_mode = WAL``, retried while another connection holds the file.
    Turning a new file to WAL needs it alone, and SQLite then answers "database is locked"
    at once instead of calling the busy handler: two processes (or threads) opening a fresh
    home together failed about one time in a hundred. Once the file is WAL (it stays so),
    the pragma takes no such lock."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.001
    while True:
        try:
            return str(db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _wrap(db: Connection | sqlite3.Connection) -> Connection:
    return SQLiteConnection(db) if isinstance(db, sqlite3.Connection) else db


def begin_write(db: Connection) -> None:
    """Start a write transaction that excludes every other writer until it ends: SQLite's
    ``BEGIN IMMEDIATE``; on PostgreSQL a transaction-scoped advisory lock taken first (so
    writers queue on it, in every process and replica sharing the database)."""
    if db.backend == "sqlite":
        db.execute("BEGIN IMMEDIATE")
    else:
        db.execute("BEGIN")
        db.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK_KEY,))


def _begin_rows(db: Connection) -> None:
    """PostgreSQL: a write transaction without the advisory write lock (``write_rows``)."""
    db.execute("BEGIN")


def begin_read(db: Connection) -> None:
    """Start a read transaction: one snapshot for all its queries, no write lock."""
    db.execute("BEGIN" if db.backend == "sqlite" else "BEGIN ISOLATION LEVEL REPEATABLE READ")


def rollback(db: Connection) -> None:
    """Roll back, unless the connection itself is gone (then the server already did)."""
    if isinstance(db, PostgresConnection) and db.broken:
        return
    db.execute("ROLLBACK")


def _transaction(
    db: Connection, begin: Callable[[Connection], None] = begin_write
) -> Iterator[Connection]:
    """One transaction on ``db`` (a write one unless ``begin`` says otherwise): committed
    when the body ends, rolled back when it raises (for the store's context managers)."""
    begin(db)
    try:
        yield db
    except BaseException:
        rollback(db)
        raise
    db.execute("COMMIT")


def _begin_write_or_refuse(db: Connection) -> None:
    """``begin_write`` on SQLite without waiting: ``WouldWait`` when another process holds
    the write lock (on a connection of ``call_inline``, which waits in Python)."""
    assert isinstance(db, SQLiteConnection)
    db.begin_immediate_or_refuse()


def table_names(db: Connection | sqlite3.Connection) -> list[str]:
    """The tables of the database (of the current schema on PostgreSQL), sorted."""
    conn = _wrap(db)
    if conn.backend == "sqlite":
        sql = (
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    else:
        sql = (
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() ORDER BY table_name"
        )
    return [str(r[0]) for r in conn.execute(sql).fetchall()]


def schema_version(db: Connection | sqlite3.Connection) -> int:
    conn = _wrap(db)
    if "schema_version" not in table_names(conn):
        return 0
    version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
    return int(version or 0)


class _Migrating:
    """The connection a migration step gets: its DDL, written once, mapped per backend."""

    def __init__(self, db: Connection) -> None:
        self._db = db
        self.backend = db.backend

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._db.execute(postgres_ddl(sql) if self.backend == "postgresql" else sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)

    def close(self) -> None:
        self._db.close()


def migrate(
    db: Connection | sqlite3.Connection, migrations: tuple[Migration, ...] = MIGRATIONS
) -> int:
    """Apply pending migrations in one write transaction; returns the new version."""
    conn = _wrap(db)
    if schema_version(conn) == len(migrations):
        return len(migrations)  # the common case: no write lock needed just to open
    begin_write(conn)
    try:
        apply_migrations(conn, migrations)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return len(migrations)


def apply_migrations(conn: Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
    """The pending migrations, inside the caller's write transaction (``migrate`` opens
    one; ``hub migrate-store`` runs them in the transaction that also copies the rows)."""
    steps = _Migrating(conn)
    steps.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    current = schema_version(conn)
    if current > len(migrations):
        raise HubError(
            f"state database schema version {current} is newer than this hub "
            f"understands ({len(migrations)}); upgrade gitops-hub"
        )
    for version, step in enumerate(migrations[current:], start=current + 1):
        step(steps)
        conn.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
            (version, step.__name__.lstrip("_"), datetime.now().astimezone().isoformat()),
        )


# ---------------------------------------------------------------- the store


class Store:
    """The state database. Implements ``clusters.registry.ClusterStorage``.

    ``location`` is the SQLite file (a ``Path``) or a ``postgresql://`` URL. Each thread
    gets its own connection; those of threads that have ended are closed as new ones open.
    """

    def __init__(self, location: Path | str) -> None:
        if isinstance(location, str) and is_postgres_url(location):
            validate_url(location)
            self.url: str | None = location
            self.path = Path(os.devnull)  # no file; kept so older callers need no branch
            self.backend: BackendName = "postgresql"
            self.display = redact_url(location)
        else:
            self.url = None
            self.path = Path(location)
            self.backend = "sqlite"
            self.display = str(self.path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[tuple[threading.Thread, Connection]] = []
        # PostgreSQL queues writers on its advisory lock, which wakes the next at once.
        self._writers = _sqlite_write_lock(self.path) if self.url is None else None
        # name -> (row, record): the hub lists the registry every second; a row that did
        # not change is not decoded again (1,000 clusters cost ~7 ms of JSON per list).
        self._records: dict[str, tuple[tuple[Any, ...], ClusterRecord]] = {}

    @classmethod
    def open(cls, location: Path | str, *, create: bool = False) -> Store:
        """Open (and migrate) the database at ``location``; ``create`` allows a new
        SQLite file (a PostgreSQL database must exist: the hub creates tables only)."""
        store = cls(location)
        if store.url is None and not create and not store.path.exists():
            raise HubError(
                f"no state database at {store.path}: run `hub init` (or point --home/HUB_HOME "
                "at an initialised home)"
            )
        try:
            migrate(store._conn())
        except sqlite3.DatabaseError as exc:
            store.close()
            raise HubError(f"state database {store.display}: {exc}") from None
        except BaseException:
            store.close()
            raise
        return store

    def _connect(self) -> Connection:
        if self.url is not None:
            return connect_postgres(self.url)
        return SQLiteConnection(connect(self.path))

    def _conn(self) -> Connection:
        db: Connection | None = getattr(self._local, "db", None)
        if db is not None and isinstance(db, PostgresConnection) and db.broken:
            db = None  # the server went away; a new connection, the next statement retries
        if db is None:
            db = self._connect()
            self._local.db = db
            with self._lock:
                # Worker threads come and go (anyio retires idle ones): close what the
                # ended ones left, or a long-running hub would hold ever more connections.
                dead = [c for t, c in self._all if not t.is_alive()]
                self._all = [(t, c) for t, c in self._all if t.is_alive()]
                self._all.append((threading.current_thread(), db))
            for conn in dead:
                conn.close()
        return db

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for _, db in conns:
            db.close()
        self._local = threading.local()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return schema_version(self._conn())

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction that serialises writers (``begin_write``): concurrent
        writers wait (SQLite's busy timeout, PostgreSQL's advisory lock) instead of
        failing on upgrade.

        Inside ``atomic()`` on the same thread it joins that transaction instead."""
        db = self._conn()
        if getattr(self._local, "atomic", False):
            yield db  # the enclosing atomic() commits or rolls back
            return
        if self._writers is None:
            yield from _transaction(db)
            return
        inline: _Inline | None = getattr(self._local, "inline", None)
        if inline is not None and not inline.wrote:
            yield from self._first_inline_write(db, inline)
            return
        with self._writers:
            yield from _transaction(db)
        if inline is not None:
            inline.wrote = True

    @contextmanager
    def write_rows(self) -> Iterator[Connection]:
        """A write transaction that on PostgreSQL does not queue on the store's write lock,
        only on the row locks of what it changes: for the lease heartbeat, which must not
        wait behind the writes of every replica (``hub.leases.LeaseStore.beat``). Only for
        statements that stay correct beside serialised writers. On SQLite it is
        ``write()`` (the database lock is the only one there)."""
        if self._writers is not None:
            with self.write() as db:
                yield db
            return
        db = self._conn()
        if db.in_transaction:
            yield db  # inside a write() of this thread: that transaction
            return
        yield from _transaction(db, _begin_rows)

    def _first_inline_write(self, db: Connection, inline: _Inline) -> Iterator[Connection]:
        """The first write of a ``call_inline``: taken only if no writer holds the lock,
        of this process or another (no busy wait), else ``WouldWait`` before anything was
        written."""
        assert self._writers is not None
        if not self._writers.acquire(blocking=False):
            raise WouldWait
        try:
            yield from _transaction(db, _begin_write_or_refuse)
            inline.wrote = True
        finally:
            self._writers.release()

    def call_inline(self, fn: Callable[[], T]) -> T:
        """``fn`` (store reads and writes) on this thread, for an event loop that would
        otherwise hand it to a thread: each hand-off cost about as much CPU as a small
        transaction. SQLite only (a PostgreSQL round trip would hold the loop): raises
        ``WouldWait``, with nothing written, when its first write would have to wait for
        another writer (then hand it to a thread); a later write of the same call waits
        as any writer does, its first one being committed already."""
        if self._writers is None:
            raise WouldWait
        if getattr(self._local, "inline", None) is not None:
            return fn()  # already inside one
        db = self._conn()
        assert isinstance(db, SQLiteConnection)  # no write lock of ours on PostgreSQL
        db.wait_in_python(BUSY_TIMEOUT_MS / 1000)
        self._local.inline = _Inline()
        try:
            return fn()
        finally:
            self._local.inline = None

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction around several ``write()`` blocks of this thread (e.g. a key
        rotation re-wrapping clusters and sync history): all commit together, or none."""
        if getattr(self._local, "atomic", False):
            yield  # already inside one
            return
        with self.write():
            self._local.atomic = True
            try:
                yield
            finally:
                self._local.atomic = False

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction: several queries see one snapshot (REPEATABLE READ on
        PostgreSQL), without the write lock.

        Inside ``write()`` on the same thread it simply joins that transaction."""
        db = self._conn()
        if db.in_transaction:
            yield db
            return
        yield from _transaction(db, begin_read)

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """The rows of one read statement. A single statement sees one snapshot without a
        transaction around it (SQLite's autocommit, PostgreSQL's), and ``read()``'s BEGIN
        and COMMIT were two of its three statements (a sync read its project three
        times). Inside a transaction of this thread it joins it, as ``read()`` does."""
        return list(self._conn().execute(sql, args).fetchall())

    def get_meta(self, key: str) -> str | None:
        return _get_meta(self._conn(), key)

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as db:
            _set_meta(db, key, value)

    # -- ClusterStorage

    _RECORD_COLUMNS = (
        "name, server, labels, annotations, namespaces, cluster_resources, project, "
        "server_version, check_time, check_ok, check_message, credential_kind, credential_rev"
    )
    _ALL_COLUMNS = (
        _RECORD_COLUMNS + ", tls_ca_data, tls_insecure, tls_server_name, "
        "key_id, wrapped_key, nonce, ciphertext"
    )

    def list_records(self) -> list[ClusterRecord]:
        rows = (
            self._conn()
            .execute(f"SELECT {self._RECORD_COLUMNS} FROM clusters ORDER BY name")
            .fetchall()
        )
        memo, out = self._records, []
        for row in rows:
            row = tuple(row)
            known = memo.get(row[0])
            if known is None or known[0] != row:
                known = memo[row[0]] = (row, _record(row))
            out.append(known[1])
        if len(memo) > len(out):  # clusters removed
            for name in set(memo) - {r.name for r in out}:
                memo.pop(name, None)
        return out

    def get_record(self, name: str) -> ClusterRecord | None:
        row = (
            self._conn()
            .execute(f"SELECT {self._RECORD_COLUMNS} FROM clusters WHERE name = ?", (name,))
            .fetchone()
        )
        return None if row is None else _record(row)

    def get_cluster(self, name: str) -> StoredCluster | None:
        return _ClusterTxn(self._conn()).get_cluster(name)

    @contextmanager
    def cluster_transaction(self) -> Iterator[_ClusterTxn]:
        with self.write() as db:
            yield _ClusterTxn(db)

    # -- HistoryStorage (hub.sync.history)

    @contextmanager
    def history_transaction(self) -> Iterator[_HistoryTxn]:
        # atomic(): the caller's writes in ``SyncHistory.begin``/``record`` join it
        with self.atomic():
            yield _HistoryTxn(self._conn())

    def history_reader(self) -> _HistoryTxn:
        return _HistoryTxn(self._conn())


class _ClusterTxn:
    """``clusters.registry.ClusterTransaction`` over an open SQLite transaction."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    def get_cluster(self, name: str) -> StoredCluster | None:
        row = self._db.execute(
            f"SELECT {Store._ALL_COLUMNS} FROM clusters WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else _stored(row)

    def list_clusters(self) -> list[StoredCluster]:
        rows = self._db.execute(f"SELECT {Store._ALL_COLUMNS} FROM clusters ORDER BY name")
        return [_stored(row) for row in rows.fetchall()]

    def put_cluster(self, cluster: StoredCluster) -> None:
        r, tls, env = cluster.record, cluster.tls, cluster.envelope
        check = r.last_check
        self._db.execute(
            upsert("clusters", Store._ALL_COLUMNS.split(", "), ("name",)),
            (
                r.name,
                r.server,
                json.dumps(dict(r.labels), sort_keys=True),
                json.dumps(dict(r.annotations), sort_keys=True),
                json.dumps(list(r.namespaces)),
                int(r.cluster_resources),
                r.project,
                r.server_version,
                None if check is None else check.time.isoformat(),
                None if check is None else int(check.ok),
                None if check is None else check.message,
                r.credential_kind,
                r.credential_rev,
                tls.ca_data,
                int(tls.insecure),
                tls.server_name,
                env.key_id,
                env.wrapped_key,
                env.nonce,
                env.ciphertext,
            ),
        )

    def delete_cluster(self, name: str) -> bool:
        return self._db.execute("DELETE FROM clusters WHERE name = ?", (name,)).rowcount > 0

    def get_master_key_id(self) -> str | None:
        return _get_meta(self._db, "master_key_id")

    def set_master_key_id(self, key_id: str) -> None:
        _set_meta(self._db, "master_key_id", key_id)


def _get_meta(db: Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _set_meta(db: Connection, key: str, value: str) -> None:
    db.execute(upsert("meta", ("key", "value"), ("key",)), (key, value))


def _record(row: tuple[Any, ...]) -> ClusterRecord:
    (name, server, labels, annotations, namespaces, cres, project, version) = row[:8]
    check_time, check_ok, check_message, kind, rev = row[8:13]
    return ClusterRecord(
        name=name,
        server=server,
        # Read-only views: records are shared between callers (``Store.list_records``).
        labels=MappingProxyType(json.loads(labels)),
        annotations=MappingProxyType(json.loads(annotations)),
        namespaces=tuple(json.loads(namespaces)),
        cluster_resources=bool(cres),
        project=project,
        server_version=version,
        last_check=None
        if check_time is None
        else LastCheck(
            time=datetime.fromisoformat(check_time), ok=bool(check_ok), message=check_message
        ),
        credential_kind=cast(CredentialKind, kind),
        credential_rev=rev,
    )


def _stored(row: tuple[Any, ...]) -> StoredCluster:
    ca, insecure, server_name, key_id, wrapped, nonce, ciphertext = row[13:20]
    return StoredCluster(
        record=_record(row[:13]),
        tls=TLSSettings(ca_data=ca, insecure=bool(insecure), server_name=server_name),
        envelope=Envelope(key_id=key_id, wrapped_key=wrapped, nonce=nonce, ciphertext=ciphertext),
    )


# ---------------------------------------------------------------- sync history


class _HistoryTxn:
    """``hub.sync.history.HistoryTransaction`` over an open connection or transaction."""

    _HISTORY = (
        "app, id, operation_id, cluster, revision, source, initiated_by, trigger, started_at, "
        "finished_at, phase, message, resources, manifests_key_id, manifests_wrapped_key, "
        "manifests_nonce, manifests_ciphertext"
    )
    _OPERATION = (
        "app, operation_id, cluster, revision, source, initiated_by, trigger, started_at, "
        "updated_at, phase, message, resources"
    )

    def __init__(self, db: Connection) -> None:
        self._db = db

    def next_history_id(self, app: str) -> int:
        row = self._db.execute("SELECT MAX(id) FROM sync_history WHERE app = ?", (app,)).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def insert_history(self, row: HistoryRow) -> None:
        env = row.manifests
        self._db.execute(
            f"INSERT INTO sync_history ({self._HISTORY}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.app,
                row.id,
                row.operation_id,
                row.cluster,
                row.revision,
                row.source,
                row.initiated_by,
                row.trigger,
                row.started_at,
                row.finished_at,
                row.phase,
                row.message,
                row.resources,
                None if env is None else env.key_id,
                None if env is None else env.wrapped_key,
                None if env is None else env.nonce,
                None if env is None else env.ciphertext,
            ),
        )

    def trim_history(self, app: str, keep: int) -> int:
        return self._db.execute(
            "DELETE FROM sync_history WHERE app = ? AND id NOT IN "
            "(SELECT id FROM sync_history WHERE app = ? ORDER BY id DESC LIMIT ?)",
            (app, app, keep),
        ).rowcount

    def list_history(self, app: str) -> list[HistoryRow]:
        rows = self._db.execute(
            f"SELECT {self._HISTORY} FROM sync_history WHERE app = ? ORDER BY id", (app,)
        ).fetchall()
        return [_history_row(r) for r in rows]

    def list_history_resources(self, app: str) -> list[str]:
        # Entries in a row often name the same resources: each distinct list is read once.
        rows = self._db.execute(
            "SELECT DISTINCT resources FROM sync_history WHERE app = ?", (app,)
        ).fetchall()
        return [str(r[0]) for r in rows]

    def get_history(self, app: str, entry_id: int) -> HistoryRow | None:
        row = self._db.execute(
            f"SELECT {self._HISTORY} FROM sync_history WHERE app = ? AND id = ?", (app, entry_id)
        ).fetchone()
        return None if row is None else _history_row(row)

    def put_operation(self, row: OperationRow) -> None:
        self._db.execute(
            upsert("sync_operations", self._OPERATION.split(", "), ("app",)),
            (
                row.app,
                row.operation_id,
                row.cluster,
                row.revision,
                row.source,
                row.initiated_by,
                row.trigger,
                row.started_at,
                row.updated_at,
                row.phase,
                row.message,
                row.resources,
            ),
        )

    def get_operation(self, app: str) -> OperationRow | None:
        row = self._db.execute(
            f"SELECT {self._OPERATION} FROM sync_operations WHERE app = ?", (app,)
        ).fetchone()
        return None if row is None else _operation_row(row)

    def delete_operation(self, app: str, operation_id: str) -> None:
        self._db.execute(
            "DELETE FROM sync_operations WHERE app = ? AND operation_id = ?", (app, operation_id)
        )

    def list_operations(self) -> list[OperationRow]:
        rows = self._db.execute(
            f"SELECT {self._OPERATION} FROM sync_operations ORDER BY app"
        ).fetchall()
        return [_operation_row(r) for r in rows]

    def get_master_key_id(self) -> str | None:
        return _get_meta(self._db, "master_key_id")

    def sealed_history(self) -> list[tuple[str, int, Envelope]]:
        rows = self._db.execute(
            "SELECT app, id, manifests_key_id, manifests_wrapped_key, manifests_nonce, "
            "manifests_ciphertext FROM sync_history WHERE manifests_key_id IS NOT NULL "
            "ORDER BY app, id"
        ).fetchall()
        return [
            (app, int(i), Envelope(key_id=k, wrapped_key=w, nonce=n, ciphertext=c))
            for app, i, k, w, n, c in rows
        ]

    def set_history_envelope(self, app: str, entry_id: int, env: Envelope) -> None:
        self._db.execute(
            "UPDATE sync_history SET manifests_key_id = ?, manifests_wrapped_key = ?, "
            "manifests_nonce = ?, manifests_ciphertext = ? WHERE app = ? AND id = ?",
            (env.key_id, env.wrapped_key, env.nonce, env.ciphertext, app, entry_id),
        )


def _history_row(row: tuple[Any, ...]) -> HistoryRow:
    key_id, wrapped, nonce, ciphertext = row[13:17]
    return HistoryRow(
        app=row[0],
        id=int(row[1]),
        operation_id=row[2],
        cluster=row[3],
        revision=row[4],
        source=row[5],
        initiated_by=row[6],
        trigger=row[7],
        started_at=row[8],
        finished_at=row[9],
        phase=row[10],
        message=row[11],
        resources=row[12],
        manifests=None
        if key_id is None
        else Envelope(key_id=key_id, wrapped_key=wrapped, nonce=nonce, ciphertext=ciphertext),
    )


def _operation_row(row: tuple[Any, ...]) -> OperationRow:
    names = _HistoryTxn._OPERATION.replace(" ", "").split(",")
    return OperationRow(**dict(zip(names, row, strict=True)))


def rewrap_sealed_rows(
    store: Store,
    table: str,
    key_column: str,
    aad: Callable[[str], str],
    keyring: Keyring,
    target: crypto.MasterKey,
) -> int:
    """Re-wrap the data key of every sealed row of ``table`` (key_id, wrapped_key, nonce,
    ciphertext columns, keyed by ``key_column``) with ``target``, for a master key
    rotation; the count re-wrapped. ``table`` and ``key_column`` are ours, never input."""
    changed = 0
    with store.write() as db:
        rows = db.execute(
            f"SELECT {key_column}, key_id, wrapped_key, nonce, ciphertext FROM {table}"
        ).fetchall()
        for key, key_id, wrapped, nonce, ciphertext in rows:
            if key_id == target.key_id:
                continue
            env = Envelope(key_id=key_id, wrapped_key=wrapped, nonce=nonce, ciphertext=ciphertext)
            new = crypto.rewrap(keyring, target, aad(key), env)
            db.execute(
                f"UPDATE {table} SET key_id = ?, wrapped_key = ? WHERE {key_column} = ?",
                (new.key_id, new.wrapped_key, key),
            )
            changed += 1
    return changed
