"""The audit trail: every write, who did it, from where, and how it ended.

One row in the store's ``audit`` table and one log line (logger ``hub.audit``) per
action: a sync through the API, ``hub cluster add`` on the command line, a token
created. ``who`` is a policy subject (a user, ``proj:P:R``, ``role:admin``) or, on the
command line, ``cli:<os user>``; ``token_id`` the token used (its clear id, never its
secret). ``result`` is ``ok``, ``refused`` (no permission) or ``error``.
"""

from __future__ import annotations

import getpass
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from hub.logs import scrub
from hub.store import Store

log = logging.getLogger("hub.audit")

RESULTS = ("ok", "refused", "error")
MAX_DETAIL = 2000


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    token_id: str | None
    via: str  # cli | api
    remote: str
    action: str
    target: str
    result: str
    detail: str

    def to_json(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(timespec="seconds"),
            "actor": self.actor,
            "tokenId": self.token_id,
            "via": self.via,
            "remote": self.remote,
            "action": self.action,
            "target": self.target,
            "result": self.result,
            "detail": self.detail,
        }


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def record(
    store: Store,
    *,
    actor: str,
    via: str,
    action: str,
    target: str = "",
    result: str = "ok",
    detail: str = "",
    remote: str = "",
    token_id: str | None = None,
    at: datetime | None = None,
) -> None:
    """Append one entry (and log it). ``detail`` is scrubbed of every known secret."""
    if result not in RESULTS:
        raise ValueError(result)
    when = (at or datetime.now(UTC)).astimezone(UTC)
    detail = scrub(detail)[:MAX_DETAIL]
    with store.write() as db:
        db.execute(
            "INSERT INTO audit (at, actor, token_id, via, remote, action, target, result, "
            "detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                when.isoformat(timespec="microseconds"),
                actor,
                token_id,
                via,
                remote,
                action,
                target,
                result,
                detail,
            ),
        )
    log.info(
        "audit: %s %s %s by %s%s via %s%s%s",
        action,
        target or "-",
        result,
        actor or "anonymous",
        f" (token {token_id})" if token_id else "",
        via,
        f" from {remote}" if remote else "",
        f": {detail}" if detail else "",
    )


def record_cli(
    store: Store, action: str, target: str, result: str = "ok", detail: str = ""
) -> None:
    """An action of the command line on this machine."""
    record(
        store,
        actor=cli_actor(),
        via="cli",
        remote=socket.gethostname(),
        action=action,
        target=target,
        result=result,
        detail=detail,
    )


def entries(
    store: Store, *, since: datetime | None = None, limit: int = 10_000
) -> list[AuditEntry]:
    """Entries oldest first (the newest ``limit`` of them), from ``since`` when given."""
    sql = "SELECT seq, at, actor, token_id, via, remote, action, target, result, detail FROM audit"
    args: tuple[object, ...] = ()
    if since is not None:
        sql += " WHERE at >= ?"
        args = (since.astimezone(UTC).isoformat(timespec="microseconds"),)
    with store.read() as db:
        rows = db.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
    return [
        AuditEntry(
            seq=seq,
            at=datetime.fromisoformat(at),
            actor=actor,
            token_id=token_id,
            via=via,
            remote=remote,
            action=action,
            target=target,
            result=result,
            detail=detail,
        )
        for seq, at, actor, token_id, via, remote, action, target, result, detail in reversed(rows)
    ]
