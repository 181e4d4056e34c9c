"""A real, throwaway PostgreSQL server for the tests (Debian's ``postgresql`` package).

``PostgresServer.start()`` runs ``initdb`` in a temporary directory and ``pg_ctl start -w``
on a free loopback port; ``create_database()`` hands each test a fresh database;
``stop()`` stops the server and removes the directory. PostgreSQL refuses to run as root,
so as root (CI here) the server runs as the ``postgres`` system user (``runuser``) with
the directory owned by it.

Authentication: ``trust`` on 127.0.0.1 for every role but ``PASSWORD_ROLE``, which must
give its password (scram-sha-256), so tests can check what a wrong password does.
The server listens on 127.0.0.1 only, and durability is off (fsync, synchronous commit):
it is a test fixture, thrown away at the end.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import urllib.parse
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from hub.ports import free_port

PASSWORD_ROLE = "hub_pw"
PASSWORD = "pw-" + uuid.uuid4().hex
SUPERUSER = "postgres"
SHARED_DATABASE = "hubtests"


class PostgresNotFound(Exception):
    """Debian's PostgreSQL binaries are not installed (``make system-deps`` installs them)."""


def find_bindir(path: str | None = None, debian_root: str = "/usr/lib/postgresql") -> Path:
    """The directory holding initdb/pg_ctl: on PATH, else the newest under
    /usr/lib/postgresql/*/bin (Debian does not put them on PATH)."""
    found = shutil.which("initdb", path=path)
    if found and (Path(found).resolve().parent / "pg_ctl").exists():
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob(f"{debian_root}/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if not candidates:
        raise PostgresNotFound(
            "PostgreSQL is not installed (no initdb on PATH nor in /usr/lib/postgresql/*/bin): "
            "run `make system-deps` (apt-get install postgresql)"
        )
    return Path(candidates[-1]).parent


def unavailable(reason: PostgresNotFound, env: Mapping[str, str]) -> NoReturn:
    """No PostgreSQL here: the test fails under CI (the suite must not pass without its
    PostgreSQL tests there) and is skipped elsewhere, with the reason either way."""
    import pytest

    if env.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"PostgreSQL tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


class PostgresServer:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="hub-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._as_user: list[str] = []
        self._shared = False
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresNotFound(
                    "running as root and there is no `postgres` system user to run PostgreSQL "
                    "as (PostgreSQL refuses root): install Debian's postgresql package"
                ) from None
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.root, 0o700)

    def _run(self, *args: str) -> None:
        proc = subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr[-2000:]}{log}"
            )

    def start(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--no-locale",
            "--encoding=UTF8",
            "--no-sync",
        )
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        options = " ".join(
            f"-c {o}"
            for o in (
                "listen_addresses=127.0.0.1",
                f"port={self.port}",
                f"unix_socket_directories={self.root}",
                "max_connections=300",
                "shared_buffers=32MB",
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
            )
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
        )
        self.admin_sql(
            f"CREATE ROLE {PASSWORD_ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'",
        )

    def stop(self) -> None:
        try:
            if self.data.exists():
                self._run(
                    str(self.bindir / "pg_ctl"),
                    "stop",
                    "-w",
                    "-m",
                    "immediate",
                    "-D",
                    str(self.data),
                )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(
        self, database: str = "postgres", *, user: str = SUPERUSER, password: str | None = None
    ) -> str:
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def admin_sql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.encode())  # our own fixed text, no parameters

    def fresh_url(self) -> str:
        """The URL of a fresh, empty schema of the shared test database: what each test
        gets. A schema costs a few milliseconds where CREATE DATABASE costs a quarter of a
        second on this machine; the URL's search_path makes it the only one the hub sees."""
        if not self._shared:
            self.admin_sql(f"CREATE DATABASE {SHARED_DATABASE}")
            self._shared = True
        name = "t_" + uuid.uuid4().hex[:16]
        import psycopg

        with psycopg.connect(self.url(SHARED_DATABASE), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}".encode())
        return self.url(SHARED_DATABASE) + f"?options=-csearch_path%3D{name}"

    def dump(self, url: str) -> bytes:
        """``pg_dump`` of the database (only the test's schema) at ``url``: every byte of it."""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        schema = [o.split("=", 1)[1] for o in query.get("options", []) if "search_path=" in o]
        plain = url.split("?", 1)[0]
        args = [str(self.bindir / "pg_dump"), "--no-owner", *(f"--schema={s}" for s in schema)]
        proc = subprocess.run([*args, plain], capture_output=True, timeout=120, check=True)
        return proc.stdout

    def create_database(self, owner: str = SUPERUSER) -> str:
        """A fresh empty database; its name."""
        name = "t_" + uuid.uuid4().hex[:16]
        self.admin_sql(f"CREATE DATABASE {name} OWNER {owner}")
        return name


def stored_bytes(location: Path | str, server: PostgresServer | None) -> bytes:
    """Every byte a store holds: the SQLite file and its WAL, or a ``pg_dump``."""
    if isinstance(location, Path):
        wal = location.with_name(location.name + "-wal")
        return location.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert server is not None
    return server.dump(location)
