"""Copy a SQLite store's whole state into an empty PostgreSQL database (``hub migrate-store``).

One PostgreSQL transaction: the target is migrated to the source's schema version, every
table's rows are copied as they are (sealed credentials stay sealed under the same master
key: nothing is decrypted), identity counters are moved past the copied ids, and the row
count of every table is compared with the source's before the commit. Any failure rolls
all of it back and leaves the target as empty as it was. The source is read in one
snapshot and never written.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.db import PostgresConnection, SQLiteConnection, StoreError, connect_postgres, redact_url
from hub.store import (
    MIGRATIONS,
    Store,
    apply_migrations,
    begin_write,
    rollback,
    schema_version,
    table_names,
)


@dataclass(frozen=True, kw_only=True)
class CopyReport:
    target: str  # redacted URL
    version: int
    rows: dict[str, int]  # table -> rows copied (and counted on both sides)


def copy_to_postgres(source: Store, url: str) -> CopyReport:
    """Copy ``source`` (a SQLite store) into the empty database at ``url``."""
    if source.backend != "sqlite":
        raise StoreError(f"the store {source.display} is not a SQLite store")
    where = redact_url(url)
    target = connect_postgres(url)
    try:
        existing = table_names(target)
        if existing:
            shown = ", ".join(existing[:5]) + (", ..." if len(existing) > 5 else "")
            raise StoreError(
                f"the target database {where} is not empty (tables: {shown}); "
                "hub migrate-store copies only into an empty database (or schema): create "
                "a new one, or drop these tables if they are a failed earlier attempt"
            )
        begin_write(target)
        try:
            report = _copy(source, target, where)
            target.execute("COMMIT")
        except BaseException:
            rollback(target)
            raise
        return report
    finally:
        target.close()


def _copy(source: Store, target: PostgresConnection, where: str) -> CopyReport:
    apply_migrations(target)
    with source.read() as src:
        assert isinstance(src, SQLiteConnection)
        version = schema_version(src)
        if version != len(MIGRATIONS):  # Store.open migrated it; a newer one was refused
            raise StoreError(f"source store at version {version}, expected {len(MIGRATIONS)}")
        tables = table_names(src)
        missing = sorted(set(tables) - set(table_names(target)))
        if missing:
            raise StoreError(f"{where} lacks the tables {', '.join(missing)} after migrating")
        rows: dict[str, int] = {}
        for table in tables:
            if table == "schema_version":  # written by the target's own migration run
                rows[table] = int(src.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0])
                continue
            columns = [d[0] for d in src.raw.execute(f"SELECT * FROM {table} LIMIT 0").description]
            names = ", ".join(columns)
            copied = 0
            with target.raw.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in src.raw.execute(f"SELECT {names} FROM {table}"):
                    copy.write_row(row)
                    copied += 1
            rows[table] = copied
        _advance_identities(target)
        for table, expected in rows.items():
            counted = int(target.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            if counted != expected:
                raise StoreError(
                    f"copy check failed: table {table} has {counted} rows in {where}, "
                    f"{expected} in the source; nothing was committed"
                )
    return CopyReport(target=where, version=version, rows=rows)


def _advance_identities(target: PostgresConnection) -> None:
    """Copied rows carry their ids; the identity sequences must continue after them."""
    identities = target.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND is_identity = 'YES'"
    ).fetchall()
    for table, column in identities:
        target.execute(
            f"SELECT setval(pg_get_serial_sequence(?, ?), "
            f"(SELECT COALESCE(MAX({column}), 0) + 1 FROM {table}), false)",
            (table, column),
        )
