"""Credentials for chart repositories (``hub repo add/list/rm``), sealed at rest.

A password is sealed like cluster credentials and history manifests
(``clusters.crypto.seal``: a fresh AES-256-GCM data key wrapped by the hub's master key,
with ``repo-credentials/<url>`` as associated data, so a row's ciphertext cannot be moved
to another URL). Listing needs no key; using a credential does. URLs match by the longest
prefix on a path boundary, as Argo CD's credential templates do, so one entry for
``https://charts.example.com/`` covers every repository below it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from clusters import crypto
from clusters.crypto import Envelope, Keyring
from hub.charts import RepoCredentials
from hub.db import IntegrityError
from hub.errors import HubError, HubUsageError
from hub.store import Store, rewrap_sealed_rows


class RepoCredentialError(HubError):
    """A repository credential that cannot be stored or opened."""


@dataclass(frozen=True, kw_only=True)
class RepoCredentialInfo:
    """What listing shows: never the password."""

    url: str
    username: str
    pass_credentials: bool
    created_at: str

    def as_dict(self) -> dict[str, object]:
        return {
            "url": self.url,
            "username": self.username,
            "passCredentials": self.pass_credentials,
            "createdAt": self.created_at,
        }


def normalize_url(url: str) -> str:
    """Scheme and host lower case, no trailing slash; refuses URLs that carry secrets."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HubUsageError(f"{url!r}: expected an http(s) URL of a chart repository")
    if parts.username or parts.password:
        raise HubUsageError(
            "put the user name in --username and the password on stdin, not in the URL"
        )
    netloc = parts.hostname.lower() + (f":{parts.port}" if parts.port else "")
    return f"{parts.scheme}://{netloc}{parts.path}".rstrip("/")


def _aad(url: str) -> str:
    return f"repo-credentials/{url}"


def _covers(prefix: str, url: str) -> bool:
    return url == prefix or url.startswith(prefix + "/")


class RepoCredentialStore:
    def __init__(self, store: Store, keys: Callable[[], Keyring]) -> None:
        self._store = store
        self._keys = keys

    def add(self, url: str, username: str, password: str, *, pass_credentials: bool) -> str:
        if not username or not password:
            raise HubUsageError("a repository credential needs a user name and a password")
        key = normalize_url(url)
        env = crypto.seal(
            self._keys().primary, _aad(key), json.dumps({"password": password}).encode()
        )
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._store.write() as db:
            try:
                db.execute(
                    "INSERT INTO repo_credentials (url, username, pass_credentials, key_id,"
                    " wrapped_key, nonce, ciphertext, created_at) VALUES (?,?,?,?,?,?,?,?)",
                    (key, username, int(pass_credentials), env.key_id, env.wrapped_key,
                     env.nonce, env.ciphertext, now),
                )  # fmt: skip
            except IntegrityError:
                raise HubUsageError(
                    f"{key}: already has a credential; remove it first with `hub repo rm {key}`"
                ) from None
        return key

    def list(self) -> list[RepoCredentialInfo]:
        with self._store.read() as db:
            rows = db.execute(
                "SELECT url, username, pass_credentials, created_at FROM repo_credentials"
                " ORDER BY url"
            ).fetchall()
        return [
            RepoCredentialInfo(
                url=r[0], username=r[1], pass_credentials=bool(r[2]), created_at=r[3]
            )
            for r in rows
        ]

    def remove(self, url: str) -> bool:
        key = normalize_url(url)
        with self._store.write() as db:
            return db.execute("DELETE FROM repo_credentials WHERE url = ?", (key,)).rowcount > 0

    def lookup(self, url: str) -> RepoCredentials | None:
        """The credential of the longest stored URL prefix of ``url``, opened."""
        try:
            key = normalize_url(url)
        except HubUsageError:
            return None
        with self._store.read() as db:
            rows = db.execute(
                "SELECT url, username, pass_credentials, key_id, wrapped_key, nonce, ciphertext"
                " FROM repo_credentials"
            ).fetchall()
        matching = [r for r in rows if _covers(r[0], key)]
        if not matching:
            return None
        row = max(matching, key=lambda r: len(r[0]))
        env = Envelope(key_id=row[3], wrapped_key=row[4], nonce=row[5], ciphertext=row[6])
        try:
            secret = json.loads(crypto.open_envelope(self._keys(), _aad(row[0]), env))
        except crypto.DecryptError:
            raise RepoCredentialError(
                f"{row[0]}: the stored credential cannot be opened with the master key at "
                "hand; check HUB_MASTER_KEY or add the credential again"
            ) from None
        return RepoCredentials(
            username=row[1], password=str(secret["password"]), pass_credentials=bool(row[2])
        )

    def rewrap_all(self, keyring: Keyring, target: crypto.MasterKey) -> int:
        """Re-wrap every credential's data key with ``target`` (master key rotation)."""
        return rewrap_sealed_rows(self._store, "repo_credentials", "url", _aad, keyring, target)


def home_credentials(home: Path) -> Callable[[str], RepoCredentials | None]:
    """A lookup into ``home``'s credentials, opened per use (so a ``hub repo add`` reaches a
    running hub without a restart); finds nothing for a directory that is no hub home."""
    from hub.home import home_has_store, load_keyring, open_store

    def lookup(url: str) -> RepoCredentials | None:
        if not home_has_store(home):
            return None
        with open_store(home) as store:
            return RepoCredentialStore(store, lambda: load_keyring(home)).lookup(url)

    return lookup


def use_repo_credentials(home: Path) -> None:
    """Point the process's chart repositories at ``home``'s credentials."""
    from hub.charts import shared_chart_repos

    shared_chart_repos().credentials = home_credentials(home)
