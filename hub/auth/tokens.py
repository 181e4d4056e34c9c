"""Local users and API tokens.

A token reads ``hub_<id>_<secret>``: ``id`` is 12 hex digits kept in clear (the lookup key,
shown by ``hub token list``), ``secret`` 32 random bytes (URL-safe base64). The store
keeps only the SHA-256 of the secret, compared in constant time; a 256-bit random secret
needs no slow hash. A token belongs to a user (its subject is the user name) or to a
project role (subject ``proj:<project>:<role>``), may expire, and is revoked, never
deleted, so the audit trail keeps meaning something.

The bootstrap token of ``hub.api.token`` (``$HUB_HOME/api-token``) stays, as subject
``role:admin``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hub.errors import HubError, HubUsageError
from hub.logs import redact
from hub.store import Store

TOKEN_PREFIX = "hub_"
ADMIN_SUBJECT = "role:admin"
ADMIN_TOKEN_ID = "admin-token"
LAST_USED_EVERY = timedelta(seconds=60)  # do not write the store on every request

_USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,62}$")
_PROJECT_ROLE = re.compile(r"^([a-z0-9][a-z0-9.-]{0,252}):([A-Za-z0-9][A-Za-z0-9._-]{0,62})$")
_TOKEN = re.compile(r"^hub_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class TokenError(HubError):
    """A token that is unknown, revoked or expired (the API answers 401)."""


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who a request acts as: a policy subject and the token that proved it."""

    subject: str  # "" for anonymous
    token_id: str | None = None

    @property
    def anonymous(self) -> bool:
        return not self.subject


ANONYMOUS = Principal(subject="")


@dataclass(frozen=True, kw_only=True)
class TokenInfo:
    """What ``hub token list`` shows: never the secret, never its hash."""

    id: str
    subject: str
    kind: str  # user | project-role
    description: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_json(self, now: datetime) -> dict[str, object]:
        def iso(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat(timespec="seconds")

        return {
            "id": self.id,
            "subject": self.subject,
            "kind": self.kind,
            "description": self.description,
            "createdAt": iso(self.created_at),
            "expiresAt": iso(self.expires_at),
            "lastUsedAt": iso(self.last_used_at),
            "revokedAt": iso(self.revoked_at),
            "state": self.state(now),
        }


def parse_duration(text: str, option: str = "--expires-in") -> timedelta:
    """``90s``, ``30m``, ``24h``, ``7d``, ``2w`` or sums like ``1d12h``."""
    value = text.strip()
    if not value or _DURATION.sub("", value) != "":
        raise HubUsageError(f"{option} {text!r}: expected a duration such as 30m, 24h, 7d or 1d12h")
    seconds = sum(int(n) * _UNITS[u] for n, u in _DURATION.findall(value))
    if seconds <= 0:
        raise HubUsageError(f"{option} {text!r}: the duration must be positive")
    return timedelta(seconds=seconds)


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds")


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


# ---------------------------------------------------------------- users


def check_user_name(name: str) -> None:
    if not _USER_NAME.match(name) or name.startswith(("role:", "proj:")):
        raise HubUsageError(
            f"user name {name!r}: use lowercase letters, digits and . _ @ - "
            "(at most 63, starting with a letter or digit)"
        )


def add_user(store: Store, name: str, *, now: datetime | None = None) -> None:
    check_user_name(name)
    with store.write() as db:
        if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
            raise HubUsageError(f"user {name!r} already exists; `hub user list` shows them")
        db.execute(
            "INSERT INTO users (name, created_at) VALUES (?, ?)",
            (name, _iso(now or datetime.now(UTC))),
        )


def list_users(store: Store) -> list[tuple[str, datetime, int]]:
    """(name, created, number of active tokens) per user."""
    now = _iso(datetime.now(UTC))
    with store.read() as db:
        rows = db.execute(
            "SELECT u.name, u.created_at, COUNT(t.id) FROM users u LEFT JOIN api_tokens t "
            "ON t.subject = u.name AND t.kind = 'user' AND t.revoked_at IS NULL "
            "AND (t.expires_at IS NULL OR t.expires_at > ?) GROUP BY u.name ORDER BY u.name",
            (now,),
        ).fetchall()
    return [(str(n), datetime.fromisoformat(c), int(k)) for n, c, k in rows]


def remove_user(store: Store, name: str, *, now: datetime | None = None) -> int:
    """Removes ``name`` and revokes its tokens; returns how many were revoked."""
    stamp = _iso(now or datetime.now(UTC))
    with store.write() as db:
        if db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
            raise HubUsageError(f"no user named {name!r}; `hub user list` shows them")
        cur = db.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE subject = ? AND kind = 'user' "
            "AND revoked_at IS NULL",
            (stamp, name),
        )
        return int(cur.rowcount)


# ---------------------------------------------------------------- tokens


def project_role_subject(text: str) -> str:
    """``PROJECT:ROLE`` (``--project-role``) to the subject ``proj:PROJECT:ROLE``."""
    match = _PROJECT_ROLE.match(text.removeprefix("proj:"))
    if not match:
        raise HubUsageError(f"--project-role {text!r}: expected PROJECT:ROLE, e.g. team-a:deployer")
    return f"proj:{match.group(1)}:{match.group(2)}"


def create_token(
    store: Store,
    *,
    subject: str,
    kind: str,
    description: str = "",
    expires_in: timedelta | None = None,
    now: datetime | None = None,
) -> tuple[str, TokenInfo]:
    """A new token for ``subject``: (the token text, shown once; its record)."""
    if kind not in ("user", "project-role"):
        raise ValueError(kind)
    at = now or datetime.now(UTC)
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    token = f"{TOKEN_PREFIX}{token_id}_{secret}"
    redact(token)
    redact(secret)
    expires = None if expires_in is None else at + expires_in
    with store.write() as db:
        if (
            kind == "user"
            and not db.execute("SELECT 1 FROM users WHERE name = ?", (subject,)).fetchone()
        ):
            raise HubUsageError(f"no user named {subject!r}; add it with `hub user add {subject}`")
        db.execute(
            "INSERT INTO api_tokens (id, subject, kind, description, secret_sha256, created_at, "
            "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                token_id,
                subject,
                kind,
                description,
                secret_digest(secret),
                _iso(at),
                None if expires is None else _iso(expires),
            ),
        )
    info = TokenInfo(
        id=token_id,
        subject=subject,
        kind=kind,
        description=description,
        created_at=at,
        expires_at=expires,
        last_used_at=None,
        revoked_at=None,
    )
    return token, info


_COLUMNS = "id, subject, kind, description, created_at, expires_at, last_used_at, revoked_at"


def _info(row: tuple[str, ...]) -> TokenInfo:
    tid, subject, kind, description, created, expires, used, revoked = row
    return TokenInfo(
        id=tid,
        subject=subject,
        kind=kind,
        description=description,
        created_at=datetime.fromisoformat(created),
        expires_at=_time(expires),
        last_used_at=_time(used),
        revoked_at=_time(revoked),
    )


def list_tokens(store: Store) -> list[TokenInfo]:
    with store.read() as db:
        rows = db.execute(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY created_at, id").fetchall()
    return [_info(r) for r in rows]


def revoke_token(store: Store, token_id: str, *, now: datetime | None = None) -> TokenInfo:
    with store.write() as db:
        row = db.execute(f"SELECT {_COLUMNS} FROM api_tokens WHERE id = ?", (token_id,)).fetchone()
        if row is None:
            raise HubUsageError(f"no token with id {token_id!r}; `hub token list` shows them")
        info = _info(row)
        if info.revoked_at is None:
            db.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ?",
                (_iso(now or datetime.now(UTC)), token_id),
            )
    return info


def authenticate(store: Store, token: str, *, now: datetime | None = None) -> Principal:
    """The principal of a ``hub_...`` token; ``TokenError`` (no detail that helps guessing)
    when it is malformed, unknown, revoked or expired."""
    match = _TOKEN.match(token)
    if not match:
        raise TokenError("the token is not valid")
    token_id, secret = match.groups()
    at = now or datetime.now(UTC)
    with store.read() as db:
        row = db.execute(
            "SELECT subject, secret_sha256, expires_at, revoked_at, last_used_at "
            "FROM api_tokens WHERE id = ?",
            (token_id,),
        ).fetchone()
    # Hash even when the id is unknown, so timing says nothing about which ids exist.
    digest = secret_digest(secret)
    expected = row[1] if row is not None else "0" * 64
    if not hmac.compare_digest(digest, expected) or row is None:
        raise TokenError("the token is not valid")
    subject, _, expires, revoked, used = row
    if revoked is not None:
        raise TokenError(f"token {token_id} was revoked")
    if expires is not None and datetime.fromisoformat(expires) <= at:
        raise TokenError(f"token {token_id} expired at {expires}")
    last = _time(used)
    if last is None or at - last >= LAST_USED_EVERY:
        with store.write() as db:
            db.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (_iso(at), token_id))
    return Principal(subject=str(subject), token_id=token_id)


def is_hub_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)
