"""The state home (``$HUB_HOME``, default ``~/.hub``): database, master key, wiring.

Layout::

    HOME/hub.db            the state database (hub.store), WAL mode; absent when the
                           store is on PostgreSQL
    HOME/database.url      only with PostgreSQL: the database URL, mode 0600 (it may hold
                           a password; written by `hub init --database` and
                           `hub migrate-store`). HUB_DATABASE_URL overrides it.
    HOME/master.key        the master key, base64, mode 0600 (absent when the key
                           comes from HUB_MASTER_KEY)
    HOME/master.key.new    only during `hub key rotate`: the next key
    HOME/master.key.old    only during `hub key rotate`: the previous key (backup)

Key rotation with a key file runs in steps, and each crash point leaves every
record readable with a key that is still on disk:

1. write the new key to ``master.key.new`` (fsync'd) -- before the transaction,
   so that a committed record can never be under a key that is on no disk;
2. one database transaction re-wraps every data key (clusters and sync history)
   with the new key and names it the current master key; a failure at any record
   rolls all of it back;
3. rename ``master.key`` to ``master.key.old``;
4. rename ``master.key.new`` to ``master.key``;
5. delete ``master.key.old``.

``master.key`` is replaced (step 4, an atomic rename) only after the commit.
Keys are looked up by key id, and every key file present is loaded, so between
any two steps both keys are at hand. Running ``hub key rotate`` again finishes
an interrupted rotation (with the same new key when step 1 had completed).

With ``HUB_MASTER_KEY`` the hub cannot store a new key where the old one came
from, so rotation takes the new key from ``HUB_NEW_MASTER_KEY`` and never
touches key files; the operator then replaces ``HUB_MASTER_KEY`` with it.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from clusters.crypto import DecryptError, Keyring, MasterKey
from clusters.errors import ClusterError
from clusters.registry import Registry
from hub.db import redact_url, url_password, validate_url
from hub.errors import HubError, HubUsageError
from hub.logs import redact
from hub.store import DB_FILENAME, Store

log = logging.getLogger(__name__)

KEY_FILENAME = "master.key"
NEW_KEY_FILENAME = "master.key.new"
OLD_KEY_FILENAME = "master.key.old"
ENV_MASTER_KEY = "HUB_MASTER_KEY"
ENV_NEW_MASTER_KEY = "HUB_NEW_MASTER_KEY"
ENV_DATABASE_URL = "HUB_DATABASE_URL"
DATABASE_URL_FILENAME = "database.url"


def db_path(home: Path) -> Path:
    return home / DB_FILENAME


def database_url_path(home: Path) -> Path:
    return home / DATABASE_URL_FILENAME


def read_database_url(home: Path) -> str | None:
    """The PostgreSQL URL recorded in ``home``, or None (the home is on SQLite)."""
    path = database_url_path(home)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HubError(f"cannot read {path}: {exc.strerror}") from None
    if not text:
        raise HubError(f"{path} is empty: put the postgresql:// URL of the store in it")
    redact(url_password(text))  # the password only: the rest is shown
    return text


def write_database_url(home: Path, url: str) -> None:
    """Record ``url`` as the home's store (mode 0600 from creation: it may hold a password),
    replacing any earlier one atomically."""
    path = database_url_path(home)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (url + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(home)


def database_location(home: Path, env: Mapping[str, str] | None = None) -> Path | str:
    """Where ``home``'s store is: ``HUB_DATABASE_URL`` if set, else the URL recorded in
    the home, else the SQLite file ``HOME/hub.db``."""
    env = os.environ if env is None else env
    from_env = (env.get(ENV_DATABASE_URL) or "").strip()
    if from_env:
        redact(url_password(from_env))
        validate_url(from_env)
        return from_env
    recorded = read_database_url(home)
    if recorded is not None:
        validate_url(recorded)
        return recorded
    return db_path(home)


def describe_location(location: Path | str) -> str:
    """The backend and where, safe to print: ``sqlite PATH`` or ``postgresql URL`` with
    the password hidden."""
    if isinstance(location, Path):
        return f"sqlite {location}"
    return f"postgresql {redact_url(location)}"


def home_has_store(home: Path) -> bool:
    """Whether ``home`` has a store to open (a PostgreSQL URL, or the SQLite file)."""
    location = database_location(home)
    return not isinstance(location, Path) or location.exists()


def key_path(home: Path) -> Path:
    return home / KEY_FILENAME


# ---------------------------------------------------------------- key files


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_key_file(path: Path, key: MasterKey) -> None:
    """Create ``path`` (it must not exist) with mode 0600 and the key, durably."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may only narrow it, but be explicit
        os.write(fd, (key.to_base64() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)


def read_key_file(path: Path) -> MasterKey:
    """Load a key file, refusing one that others could read or write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise HubError(f"master key file {path} does not exist") from None
    except PermissionError:
        raise HubError(f"master key file {path} is not readable by this user") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise HubError(
                f"master key file {path} is a symbolic link; refusing to follow it "
                f"(use a regular 0600 file, or {ENV_MASTER_KEY})"
            ) from None
        raise HubError(f"master key file {path}: cannot open: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise HubError(
                f"master key file {path} has permissions {mode:04o}, wider than 0600; "
                f"refusing to use it: run `chmod 600 {path}` if nobody else has read it, "
                "else rotate the key"
            )
        if info.st_uid != os.getuid():
            raise HubError(f"master key file {path} is not owned by this user; refusing to use it")
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise HubError(f"master key file {path}: not a base64 master key") from None
    try:
        key = MasterKey.from_base64(text, str(path))
    except ClusterError as exc:
        raise HubError(str(exc)) from None
    redact(text.strip())
    return key


def _env_key(env: Mapping[str, str], name: str) -> MasterKey | None:
    value = env.get(name)
    if value is None or not value.strip():
        return None
    redact(value.strip())
    try:
        return MasterKey.from_base64(value, name)
    except ClusterError as exc:
        raise HubError(str(exc)) from None


def load_keyring(
    home: Path, env: Mapping[str, str] | None = None, *, warn_pending: bool = True
) -> Keyring:
    """The master key(s) of ``home``: ``HUB_MASTER_KEY`` if set, else the key file(s)."""
    env = os.environ if env is None else env
    from_env = _env_key(env, ENV_MASTER_KEY)
    if from_env is not None:
        return Keyring(primary=from_env)
    current, new, old = key_path(home), home / NEW_KEY_FILENAME, home / OLD_KEY_FILENAME
    keys: list[MasterKey] = []
    for path in (current, new, old):
        if path.exists() or path.is_symlink():
            keys.append(read_key_file(path))
    if not keys:
        raise HubError(
            f"no master key: {ENV_MASTER_KEY} is not set and {current} does not exist; "
            f"run `hub init` or set {ENV_MASTER_KEY}"
        )
    if warn_pending and (new.exists() or old.exists()):
        log.warning(
            "an interrupted key rotation left files in %s; run `hub key rotate` to finish it",
            home,
        )
    # master.key is primary when present; after step 3 of a rotation only .new/.old exist.
    return Keyring(primary=keys[0], others=tuple(keys[1:]))


# ---------------------------------------------------------------- init and wiring


@dataclass(frozen=True, kw_only=True)
class InitResult:
    home: Path
    created: bool
    key_source: str  # "file PATH" or "HUB_MASTER_KEY"
    database: str = ""  # describe_location(): backend and where, password hidden
    tightened: tuple[str, ...] = ()  # "PATH MODE -> MODE" for each permission narrowed


def tighten_home(home: Path) -> tuple[str, ...]:
    """Make ``home`` 0700 and the files in it 0600 (the database, keys, token...).

    Refuses (``HubUsageError`` with the command to run) a home this user does not own or
    cannot change. Returns what was narrowed. Symbolic links are left alone.
    """
    fix = f"`chmod 700 {home} && chmod 600 {home}/*` as the owner of {home}"
    changed: list[str] = []
    try:
        info = os.stat(home)
        if info.st_uid != os.getuid():
            raise HubUsageError(
                f"hub home {home} is owned by uid {info.st_uid}, not by this user "
                f"(uid {os.getuid()}); use a home of your own, or run {fix}"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            os.chmod(home, 0o700)
            changed.append(f"{home} {mode:04o} -> 0700")
        with os.scandir(home) as entries:
            for entry in entries:
                if not entry.is_file(follow_symlinks=False):
                    continue
                mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
                if mode & 0o177:
                    os.chmod(entry.path, 0o600, follow_symlinks=False)
                    changed.append(f"{entry.path} {mode:04o} -> 0600")
    except PermissionError as exc:
        raise HubUsageError(
            f"hub home {home}: cannot restrict it to this user ({exc.strerror}); run {fix}"
        ) from None
    return tuple(changed)


def init_home(
    home: Path, env: Mapping[str, str] | None = None, *, database: str | None = None
) -> InitResult:
    """Create the state home, its database and (unless HUB_MASTER_KEY is set) a key file.

    ``database`` (``hub init --database URL``) puts the store on PostgreSQL and records
    the URL in the home; ``HUB_DATABASE_URL`` does the same without recording it. A
    PostgreSQL database another home already initialised is joined only with its master
    key (HUB_MASTER_KEY, or its master.key copied here): never a second key.

    On an existing home this changes nothing (never a second key) but the permissions:
    the home is made 0700 and its files 0600 (``tighten_home``).
    """
    env = os.environ if env is None else env
    if database is not None:
        validate_url(database)
        redact(url_password(database))
        recorded = read_database_url(home) if home.is_dir() else None
        if recorded is not None and recorded != database:
            raise HubUsageError(
                f"hub home {home} already uses the database {redact_url(recorded)}; to move "
                "its state elsewhere run `hub migrate-store --to URL`"
            )
        if db_path(home).exists():
            raise HubUsageError(
                f"hub home {home} already has its state in SQLite ({db_path(home)}); to move "
                f"it to {redact_url(database)} run `hub migrate-store --to URL`"
            )
    location: Path | str = database if database is not None else database_location(home, env)
    described = describe_location(location)
    if isinstance(location, Path) and location.exists():
        source = ENV_MASTER_KEY if env.get(ENV_MASTER_KEY) else f"file {key_path(home)}"
        return InitResult(
            home=home,
            created=False,
            key_source=source,
            database=described,
            tightened=tighten_home(home),
        )
    if home.exists() and not home.is_dir():
        raise HubUsageError(f"hub home {home} exists and is not a directory")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)

    def choose_key(existing: str | None) -> tuple[MasterKey, str]:
        key = _env_key(env, ENV_MASTER_KEY)
        if key is not None:
            source = ENV_MASTER_KEY
        elif key_path(home).exists():
            key = read_key_file(key_path(home))  # a half-done earlier init: keep its key
            source = f"file {key_path(home)}"
        elif existing is not None:
            raise HubUsageError(
                f"the state database {described} is already initialised (master key id "
                f"{existing}) and this home has no master key: set {ENV_MASTER_KEY} to that "
                f"key, or copy its master.key file into {home} (mode 0600)"
            )
        else:
            key = MasterKey.generate(str(key_path(home)))
            write_key_file(key_path(home), key)
            source = f"file {key_path(home)}"
        if existing is not None and existing != key.key_id:
            raise HubUsageError(
                f"the state database {described} was initialised with master key id "
                f"{existing}, but {source} holds key id {key.key_id}: use the same key "
                "as the other homes of this database"
            )
        return key, source

    existing: str | None = None
    if isinstance(location, Path):
        # The key first: a crash before the database exists leaves a key the rerun keeps.
        key, source = choose_key(None)
        with Store.open(location, create=True) as store:
            store.set_meta("master_key_id", key.key_id)
    else:
        with Store.open(location) as store:
            existing = store.get_meta("master_key_id")
            key, source = choose_key(existing)
            if existing is None:
                store.set_meta("master_key_id", key.key_id)
    if database is not None:
        write_database_url(home, database)
    # SQLite creates the database (and later its -wal and -shm, with the same mode) under
    # the umask; only this user may read it.
    tightened = tighten_home(home)
    log.info("initialised hub home %s (master key id %s, %s)", home, key.key_id, described)
    return InitResult(
        home=home,
        created=existing is None,
        key_source=source,
        database=described,
        tightened=tightened,
    )


def open_store(home: Path) -> Store:
    """The state database of an initialised home (migrated to the current schema)."""
    return Store.open(database_location(home))


def open_registry(home: Path) -> Registry:
    """The cluster registry of ``home``, wired to its store and master key.

    The key is loaded on first use only, so listing clusters needs no key.
    """
    store = open_store(home)
    return Registry(store, lambda: load_keyring(home))


# ---------------------------------------------------------------- rotation


@dataclass(frozen=True, kw_only=True)
class RotationResult:
    old_key_ids: tuple[str, ...]
    new_key_id: str
    rewrapped: int
    source: str


def rotate_master_key(home: Path, env: Mapping[str, str] | None = None) -> RotationResult:
    """Re-wrap every stored data key with a new master key (see the module docstring)."""
    env = os.environ if env is None else env
    if _env_key(env, ENV_MASTER_KEY) is not None:
        return _rotate_env(home, env)
    return _rotate_files(home)


def _rotate_env(home: Path, env: Mapping[str, str]) -> RotationResult:
    old = _env_key(env, ENV_MASTER_KEY)
    new = _env_key(env, ENV_NEW_MASTER_KEY)
    assert old is not None
    if new is None:
        raise HubUsageError(
            f"{ENV_MASTER_KEY} is set, so the hub cannot store a new key where the old one "
            f"came from: put a new key (e.g. `head -c 32 /dev/urandom | base64`) in "
            f"{ENV_NEW_MASTER_KEY}, run `hub key rotate` again, then replace {ENV_MASTER_KEY} "
            "with it"
        )
    if new.key_id == old.key_id:
        raise HubUsageError(f"{ENV_NEW_MASTER_KEY} is the same key as {ENV_MASTER_KEY}")
    store = open_store(home)
    registry = Registry(store, lambda: Keyring(primary=old, others=(new,)))
    count = _rewrap(store, registry, registry.keyring, new)
    return RotationResult(
        old_key_ids=(old.key_id,), new_key_id=new.key_id, rewrapped=count, source=ENV_NEW_MASTER_KEY
    )


def _rewrap(store: Store, registry: Registry, keyring: Keyring, target: MasterKey) -> int:
    """Re-wrap every envelope in the store, sync history and clusters, in ONE transaction.

    The same transaction records the new master key id, which marks the rotation done:
    it commits whole or not at all, so a failure or crash at any record leaves every
    record under the old key. The count is of cluster records.
    """
    from hub.notifications.secrets import NotificationSecrets
    from hub.repo_credentials import RepoCredentialStore
    from hub.sync.history import SyncHistory  # the sync engine is heavier than the CLI needs

    with store.atomic():
        SyncHistory(store, lambda: keyring).rewrap_all(keyring, target)
        RepoCredentialStore(store, lambda: keyring).rewrap_all(keyring, target)
        NotificationSecrets(store, lambda: keyring).rewrap_all(keyring, target)
        return registry.rewrap_all(keyring, target)


def _rotate_files(home: Path) -> RotationResult:
    current, new_path, old_path = key_path(home), home / NEW_KEY_FILENAME, home / OLD_KEY_FILENAME
    store = open_store(home)
    try:
        keyring = load_keyring(home, env={}, warn_pending=False)
        registry = Registry(store, lambda: keyring)
        # Before writing anything: every record must open with the keys at hand.
        for record in registry.list():
            if registry.key_id_of(record.name) not in keyring.key_ids:
                raise DecryptError(record.name)
        # Step 1 (or resume with the key an interrupted rotation already wrote).
        if new_path.exists():
            target = read_key_file(new_path)
        else:
            target = MasterKey.generate(str(new_path))
            write_key_file(new_path, target)
            keyring = Keyring(primary=keyring.primary, others=(*keyring.others, target))
        old_ids = tuple(sorted(keyring.key_ids - {target.key_id}))
        # Step 2: one transaction.
        count = _rewrap(store, registry, keyring, target)
        # Steps 3 to 5: swap the files; every record is under `target` now.
        if current.exists() and read_key_file(current).key_id != target.key_id:
            os.replace(current, old_path)
        os.replace(new_path, current)
        _fsync_dir(home)
        if old_path.exists():
            old_path.unlink()
            _fsync_dir(home)
    finally:
        store.close()
    log.info("rotated the master key to key id %s (%d records re-wrapped)", target.key_id, count)
    return RotationResult(
        old_key_ids=old_ids, new_key_id=target.key_id, rewrapped=count, source=f"file {current}"
    )
