"""The two backends of the state store behind one small connection type.

``hub.store.Store`` runs on SQLite (one file in the home: the embedded default) or on
PostgreSQL (``postgresql://...``, for hub replicas sharing one database). Everything
above the store sees ``Connection``: ``execute(sql, params)`` returning a cursor with
``fetchone``/``fetchall``/``rowcount`` and rows indexable by position, and one SQL text
for both backends:

- ``?`` placeholders (turned into psycopg's ``%s`` here);
- ``INSERT ... ON CONFLICT (...) DO UPDATE/NOTHING`` upserts (SQLite >= 3.24 has them)
  rather than ``INSERT OR REPLACE/IGNORE``; ``RETURNING`` rather than ``lastrowid``;
- no SQLite-only functions, no boolean arithmetic (``COUNT(col)`` counts non-NULLs);
- integrity violations raise ``IntegrityError`` whatever the backend.

Migrations are written once in SQLite's DDL, UPPER-CASE type names and lower-case
column names; ``postgres_ddl`` maps the types for PostgreSQL (a small, tested
translator): BLOB to BYTEA, INTEGER to BIGINT, an INTEGER PRIMARY KEY (SQLite's rowid)
to an identity column, REAL to DOUBLE PRECISION, TEXT to TEXT COLLATE "C" (so ORDER BY
sorts by code point as SQLite's BINARY collation does, whatever the database's locale),
and the STRICT table option dropped.

A database URL may hold a password: ``redact_url`` is the only form that may reach a
message, a log line or the CLI.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from hub.errors import HubError
from hub.logs import redact

BackendName = Literal["sqlite", "postgresql"]
T = TypeVar("T")

POSTGRES_SCHEMES = ("postgresql://", "postgres://")

# The key of the transaction-scoped advisory lock every PostgreSQL write transaction
# takes first, so writers are serialised as SQLite's BEGIN IMMEDIATE serialises them.
# Any 64-bit constant works; this one spells "hubwrite" in ASCII.
WRITE_LOCK_KEY = 0x6875627772697465

CONNECT_TIMEOUT_S = 10
# A transaction that waits this long for its client's next statement is ended by the
# server (``idle_in_transaction_session_timeout``): a hub stopped inside a write (SIGSTOP,
# a hung host, a partitioned network) would otherwise hold the store's write lock, and
# every other replica's and CLI's write, until TCP noticed. No statement of the hub's
# leaves a transaction idle for more than moments.
IDLE_IN_TRANSACTION_S = 60


class StoreError(HubError):
    """The state database failed or refused an operation (the store's error base)."""


class IntegrityError(StoreError):
    """A constraint (primary key, UNIQUE, NOT NULL, foreign key) refused a write."""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What code above the store holds: one connection of either backend."""

    @property
    def backend(self) -> BackendName: ...

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def close(self) -> None: ...


def is_postgres_url(location: str) -> bool:
    return location.startswith(POSTGRES_SCHEMES)


def redact_url(url: str) -> str:
    """``url`` without its password (user-info or ``password=`` query parameter)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable database URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs])
        query = query.replace("%2A%2A%2A", "***")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_password(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.password:
        return parts.password
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() == "password" and value:
            return value
    return None


def validate_url(url: str) -> None:
    """Refuse what is not a PostgreSQL URL, naming it (redacted) and the expected form."""
    if not is_postgres_url(url):
        raise StoreError(
            f"database URL {redact_url(url)!r} is not a PostgreSQL URL: use "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise StoreError(f"database URL {redact_url(url)!r}: {exc}") from None
    if not parts.path.strip("/"):
        raise StoreError(
            f"database URL {redact_url(url)!r} names no database: add /DATABASE at its end"
        )


# ---------------------------------------------------------------- SQL translation


@functools.lru_cache(maxsize=2048)
def to_pyformat(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` (and literal ``%`` to ``%%``), leaving
    quoted strings and identifiers alone."""
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote is not None:
            if ch == quote:
                quote = None
            out.append("%%" if ch == "%" else ch)
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


_COMMENT = re.compile(r"--[^\n]*")
_ROWID_KEY = re.compile(r"\bINTEGER PRIMARY KEY( AUTOINCREMENT)?\b")
_STRICT = re.compile(r"\)\s*STRICT\s*$")
_TYPES = (
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bTEXT\b"), 'TEXT COLLATE "C"'),
)


def postgres_ddl(sql: str) -> str:
    """A migration statement written for SQLite, for PostgreSQL (see the module doc).

    Only upper-case type words are types: our migrations write names in lower case."""
    head = sql.lstrip().upper()
    if not (head.startswith("CREATE TABLE") or head.startswith("ALTER TABLE")):
        return sql
    out = _COMMENT.sub("", sql)
    out = _STRICT.sub(")", out.rstrip())
    out = _ROWID_KEY.sub("BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", out)
    for pattern, replacement in _TYPES:
        out = pattern.sub(replacement, out)
    return out


# ---------------------------------------------------------------- SQLite


class WouldWait(Exception):
    """``Store.call_inline``: the call's first write would wait for another writer (or
    the store is not one an event loop may call inline); hand it to a thread."""


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


#: The pauses between tries of a statement that found the database busy, as SQLite's own
#: busy handler makes them (then the last one, until the wait's deadline).
_BUSY_PAUSES_S = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.025, 0.025, 0.05, 0.05, 0.1)


class SQLiteConnection:
    """A ``sqlite3.Connection`` (from ``hub.store.connect``) as a ``Connection``.

    The connection an event loop's thread uses for ``Store.call_inline`` waits for a busy
    database here instead of in SQLite (``wait_in_python``): its SQLite busy timeout is
    0 for good, so the first write of an inline call can find another process's writer
    and refuse at once (``begin_immediate_or_refuse``), where before two PRAGMAs turned
    the timeout off and on around every such write (a quarter of the statements of a
    sync). Every other statement on it waits as long as SQLite would have."""

    backend: BackendName = "sqlite"

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw
        self.busy_wait_s: float | None = None  # None: SQLite's busy timeout waits

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def wait_in_python(self, wait_s: float) -> None:
        """From now on wait up to ``wait_s`` for a busy database here, not in SQLite."""
        if self.busy_wait_s is None:
            self.raw.execute("PRAGMA busy_timeout = 0")
            self.busy_wait_s = wait_s

    def begin_immediate_or_refuse(self) -> None:
        """``BEGIN IMMEDIATE`` without waiting: ``WouldWait`` when another connection holds
        the write lock. Only on a connection that waits in Python (``wait_in_python``)."""
        assert self.busy_wait_s is not None, "SQLite's busy timeout would wait"
        try:
            self.raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                raise WouldWait from None
            raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        try:
            return self.raw.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(f"state database: {exc}") from None
        except sqlite3.OperationalError as exc:
            if self.busy_wait_s is None or not _busy(exc):
                raise
            return self._execute_when_free(sql, params, exc)

    def _execute_when_free(
        self, sql: str, params: Sequence[Any], busy: sqlite3.OperationalError
    ) -> Cursor:
        """``sql`` tried again until the database is free or the wait is over (a busy
        statement took no lock and changed nothing, so trying it again is safe)."""
        assert self.busy_wait_s is not None
        deadline = time.monotonic() + self.busy_wait_s
        pauses = iter(_BUSY_PAUSES_S)
        while True:
            pause = next(pauses, _BUSY_PAUSES_S[-1])
            if time.monotonic() + pause > deadline:
                raise busy
            time.sleep(pause)
            try:
                return self.raw.execute(sql, params)
            except sqlite3.IntegrityError as exc:
                raise IntegrityError(f"state database: {exc}") from None
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
                busy = exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self.raw.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(f"state database: {exc}") from None

    def close(self) -> None:
        self.raw.close()


# ---------------------------------------------------------------- PostgreSQL


class PostgresConnection:
    """A psycopg 3 connection in autocommit mode as a ``Connection``: the store issues
    BEGIN/COMMIT itself, as it does on SQLite."""

    backend: BackendName = "postgresql"

    def __init__(self, raw: Any, url: str) -> None:
        self.raw = raw
        self._where = redact_url(url)

    @property
    def in_transaction(self) -> bool:
        import psycopg.pq

        return bool(self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE)

    @property
    def broken(self) -> bool:
        return bool(self.raw.closed or self.raw.broken)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        cursor: Cursor = self._run(lambda: self.raw.execute(to_pyformat(sql), tuple(params)))
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        def run() -> None:
            with self.raw.cursor() as cur:
                cur.executemany(to_pyformat(sql), [tuple(r) for r in rows])

        self._run(run)

    def _run(self, call: Callable[[], T]) -> T:
        """``call`` with psycopg's errors as the store's (the URL redacted)."""
        import psycopg

        try:
            return call()
        except psycopg.errors.IntegrityError as exc:
            raise IntegrityError(f"state database: {_first_line(exc)}") from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise StoreError(
                f"state database {self._where}: {_first_line(exc)}; the hub's role needs to "
                "create and change tables there: make it the database's owner (or grant it "
                "CREATE and USAGE on the schema)"
            ) from None
        except psycopg.OperationalError as exc:
            raise StoreError(
                f"state database {self._where}: {_first_line(exc)}; check that PostgreSQL "
                "is up and reachable"
            ) from None
        except psycopg.Error as exc:
            raise StoreError(f"state database {self._where}: {_first_line(exc)}") from None

    def close(self) -> None:
        self.raw.close()

    def __del__(self) -> None:
        # Like a sqlite3 connection, one dropped unclosed (a thread's, a store never
        # closed) is closed quietly rather than with psycopg's ResourceWarning.
        raw = getattr(self, "raw", None)
        try:
            if raw is not None and not raw.closed:
                raw.close()
        except Exception:  # at interpreter exit psycopg may be half torn down
            pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect_postgres(url: str) -> PostgresConnection:
    """Open one connection to ``url``; a clear ``StoreError`` (URL redacted) if it fails."""
    validate_url(url)
    password = url_password(url)
    redact(password)
    try:
        import psycopg
        from psycopg.adapt import Dumper
        from psycopg.pq import Format
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise StoreError(
            f"PostgreSQL support needs psycopg 3 ({exc}); reinstall gitops-hub"
        ) from None
    try:
        raw = psycopg.connect(
            url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="gitops-hub"
        )
    except psycopg.Error as exc:
        reason = _first_line(exc)
        if password:
            reason = reason.replace(password, "***")
        raise StoreError(
            f"cannot connect to the state database {redact_url(url)}: {reason}. Check that "
            "PostgreSQL is running and reachable there and that the user, password and "
            "database in the URL are right (set by HUB_DATABASE_URL or `hub init --database`)"
        ) from None

    class _BoolAsInteger(Dumper):
        # SQLite stores True as 1; integer columns on PostgreSQL take the same values.
        format = Format.TEXT
        oid = psycopg.adapters.types["int8"].oid

        def dump(self, obj: Any) -> bytes:
            return b"1" if obj else b"0"

    raw.adapters.register_dumper(bool, _BoolAsInteger)
    # A session setting, not a connect option: the URL's own ``options`` stay as given.
    raw.execute(f"SET idle_in_transaction_session_timeout = {int(IDLE_IN_TRANSACTION_S * 1000)}")
    return PostgresConnection(raw, url)


def upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """``INSERT`` of ``columns`` that updates the other columns of the row with the same
    ``key``: the portable form of SQLite's ``INSERT OR REPLACE`` when every column is
    given. ``table`` and the column names are ours, never input."""
    return _upsert(table, tuple(columns), tuple(key))


@functools.lru_cache(maxsize=64)
def _upsert(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    # built once per statement: a sync writes its operation row several times
    update = [c for c in columns if c not in key]
    action = (
        "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in update)
        if update
        else "DO NOTHING"
    )
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT ({', '.join(key)}) {action}"
    )
