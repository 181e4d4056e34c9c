"""Secrets the notification services reference as ``$name`` (``hub notify secret set``),
sealed with the hub's master key as cluster credentials are; never stored in clear."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from clusters import crypto
from clusters.crypto import Envelope, Keyring
from hub.errors import HubError, HubUsageError
from hub.store import Store, rewrap_sealed_rows

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def _aad(name: str) -> str:
    return f"notification-secrets/{name}"


class NotificationSecrets:
    def __init__(self, store: Store, keys: Callable[[], Keyring]) -> None:
        self._store = store
        self._keys = keys

    def set(self, name: str, value: str) -> None:
        if not NAME.match(name):
            raise HubUsageError(
                f"secret name {name!r}: use letters, digits, '.', '_' or '-' (as in $name)"
            )
        if not value:
            raise HubUsageError(f"secret {name}: the value read from stdin is empty")
        env = crypto.seal(self._keys().primary, _aad(name), value.encode())
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._store.write() as db:
            db.execute(
                "INSERT INTO notification_secrets (name, key_id, wrapped_key, nonce, ciphertext,"
                " created_at) VALUES (?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET"
                " key_id = excluded.key_id, wrapped_key = excluded.wrapped_key,"
                " nonce = excluded.nonce, ciphertext = excluded.ciphertext,"
                " created_at = excluded.created_at",
                (name, env.key_id, env.wrapped_key, env.nonce, env.ciphertext, now),
            )

    def names(self) -> list[str]:
        with self._store.read() as db:
            rows = db.execute("SELECT name FROM notification_secrets ORDER BY name").fetchall()
        return [str(r[0]) for r in rows]

    def remove(self, name: str) -> bool:
        with self._store.write() as db:
            cur = db.execute("DELETE FROM notification_secrets WHERE name = ?", (name,))
        return cur.rowcount > 0

    def rewrap_all(self, keyring: Keyring, target: crypto.MasterKey) -> int:
        """Re-wrap every secret's data key with ``target`` (master key rotation)."""
        return rewrap_sealed_rows(
            self._store, "notification_secrets", "name", _aad, keyring, target
        )

    def lookup(self, name: str) -> str | None:
        with self._store.read() as db:
            row = db.execute(
                "SELECT key_id, wrapped_key, nonce, ciphertext FROM notification_secrets"
                " WHERE name = ?",
                (name,),
            ).fetchone()
        if row is None:
            return None
        env = Envelope(key_id=row[0], wrapped_key=row[1], nonce=row[2], ciphertext=row[3])
        try:
            return crypto.open_envelope(self._keys(), _aad(name), env).decode()
        except crypto.DecryptError:
            raise HubError(
                f"notification secret {name}: cannot be opened with the master key at hand; "
                f"check HUB_MASTER_KEY or set it again with `hub notify secret set {name}`"
            ) from None
