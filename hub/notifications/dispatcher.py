"""The notifier of ``hub serve``: queues firings as statuses are written, and sends the
outbox with retries and backoff.

``on_status`` runs in the store thread inside the status write's transaction, so a
firing is recorded together with the status that caused it (or not at all). ``run``
sends due rows and marks each sent; a failed attempt is retried with exponential backoff
(capped) up to ``MAX_ATTEMPTS``, then marked failed and logged. At start every pending row
is due at once: what a stopped or killed hub left is sent after restart. A message sent
but not yet marked when the hub is killed is sent again (the receiver can drop the copy:
each carries the row's unique ``X-Hub-Notification-Id``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import anyio

from hub.apps import AppSetRecord, AppStore
from hub.errors import HubError
from hub.notifications.config import FILENAME, NotificationConfig, load_config
from hub.notifications.events import record_events, record_rollout_events
from hub.notifications.services import Message, SecretLookup, send
from hub.rollout import RolloutEvent
from hub.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_ATTEMPTS = 12
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0
POLL_S = 0.5
BATCH = 50
SENDING = 8  # messages in flight at once
KEEP_SENT = timedelta(days=7)
HOUSEKEEPING_S = 600.0


def outbox_rows(store: Store, *, state: str | None = None) -> list[dict[str, object]]:
    """The outbox, newest first, for ``hub notify outbox`` (no message bodies)."""
    with store.read() as db:
        rows = db.execute(
            "SELECT id, app, trigger, service, recipient, state, attempts, created_at, "
            "sent_at, last_error FROM notification_outbox WHERE ? IS NULL OR state = ? "
            "ORDER BY id DESC",
            (state, state),
        ).fetchall()
    keys = ("id", "app", "trigger", "service", "recipient", "state", "attempts", "createdAt",
            "sentAt", "lastError")  # fmt: skip
    return [dict(zip(keys, row, strict=True)) for row in rows]


def retry_failed(store: Store) -> int:
    """Make the rows that ran out of attempts pending again (``hub notify retry``)."""
    with store.write() as db:
        return db.execute(
            "UPDATE notification_outbox SET state = 'pending', attempts = 0, "
            "next_attempt_at = '' WHERE state = 'failed'"
        ).rowcount


def backoff_s(attempts: int) -> float:
    """Delay before the next attempt after ``attempts`` failed ones."""
    return float(min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1)))


class Notifier:
    def __init__(
        self,
        home: Path,
        store: Store,
        apps: AppStore,
        secrets: SecretLookup,
        store_calls: anyio.CapacityLimiter | None = None,
    ) -> None:
        self.home = home
        self._limiter = store_calls or anyio.CapacityLimiter(2)
        self._sending = anyio.CapacityLimiter(SENDING)
        self.store = store
        self.apps = apps
        self.secrets = secrets
        self.config: NotificationConfig | None = None
        self._stamp: tuple[float, int] | None = None
        self._logged: set[str] = set()
        self.reload()

    def reload(self) -> None:
        """Re-read notifications.yaml when it changed; a bad file keeps the last good one."""
        path = self.home / FILENAME
        try:
            st = path.stat()
            stamp: tuple[float, int] | None = (st.st_mtime, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.config = load_config(self.home)
        except HubError as exc:
            log.error("notifications: %s (keeping the previous settings)", exc)
            return
        log.info("notifications: %s", "settings loaded" if self.config else "off (no file)")

    def _once(self, message: str) -> None:
        if message not in self._logged:
            self._logged.add(message)
            log.warning("notifications: %s", message)

    def on_status(self, app: str) -> None:
        """Queue what ``app``'s new status fires (store thread, inside the status write).

        Never raises: a failure here costs the notifications, never the status write."""
        config = self.config
        if config is None:
            return
        try:
            queued, problems = self._record(config, app)
        except Exception:
            log.exception("notifications: app %s: evaluating its triggers failed", app)
            return
        for problem in problems:
            self._once(problem)
        if queued:
            log.info("notifications: app %s: %d queued", app, queued)

    def on_rollout(
        self, record: AppSetRecord, rollout: Mapping[str, Any], events: Sequence[RolloutEvent]
    ) -> None:
        """Queue what a move of ``record``'s rollout fires (store thread, inside the
        rollout status write). Never raises, like ``on_status``."""
        config = self.config
        if config is None:
            return
        try:
            with self.store.write() as db:
                db.execute("SAVEPOINT notify")
                try:
                    queued, problems = record_rollout_events(
                        db, config, record, rollout, [e.as_dict() for e in events]
                    )
                except BaseException:
                    db.execute("ROLLBACK TO notify")
                    db.execute("RELEASE notify")
                    raise
                db.execute("RELEASE notify")
        except Exception:
            log.exception("notifications: applicationset %s: rollout triggers failed", record.name)
            return
        for problem in problems:
            self._once(problem)
        if queued:
            log.info("notifications: applicationset %s: %d queued", record.name, queued)

    def _record(self, config: NotificationConfig, app: str) -> tuple[int, list[str]]:
        with self.store.write() as db:
            rec = self.apps.get(app)
            if rec is None:
                return 0, []
            db.execute("SAVEPOINT notify")  # undone alone, whatever the enclosing write does
            try:
                result = record_events(db, config, rec)
            except BaseException:
                db.execute("ROLLBACK TO notify")
                db.execute("RELEASE notify")
                raise
            db.execute("RELEASE notify")
            return result

    def _due(self) -> list[tuple[int, Message, int]]:
        now = datetime.now(UTC).isoformat()
        with self.store.read() as db:
            rows = db.execute(
                "SELECT id, event_key, app, trigger, service, recipient, templates, app_view, "
                "attempts FROM notification_outbox WHERE state = 'pending' AND next_attempt_at "
                "<= ? ORDER BY id LIMIT ?",
                (now, BATCH),
            ).fetchall()
        return [
            (
                row[0],
                Message(
                    event_key=row[1],
                    app=row[2],
                    trigger=row[3],
                    service=row[4],
                    recipient=row[5],
                    templates=tuple(json.loads(row[6])),
                    app_view=json.loads(row[7]),
                ),
                row[8],
            )
            for row in rows
        ]

    def _mark_sent(self, row_id: int) -> None:
        with self.store.write() as db:
            db.execute(
                "UPDATE notification_outbox SET state = 'sent', sent_at = ?, "
                "attempts = attempts + 1, last_error = NULL WHERE id = ?",
                (datetime.now(UTC).isoformat(), row_id),
            )

    def _mark_failed(self, row_id: int, attempts: int, error: str) -> bool:
        """Record a failed attempt; True when it was the last one."""
        final = attempts >= MAX_ATTEMPTS
        later = datetime.now(UTC) + timedelta(seconds=backoff_s(attempts))
        with self.store.write() as db:
            db.execute(
                "UPDATE notification_outbox SET attempts = ?, last_error = ?, "
                "next_attempt_at = ?, state = ? WHERE id = ?",
                (attempts, error, later.isoformat(), "failed" if final else "pending", row_id),
            )
        return final

    def housekeeping(self, now: datetime | None = None) -> int:
        """Forget sent rows older than ``KEEP_SENT`` and the trigger state of Applications
        that are gone (a new app of the same name starts afresh). Returns rows removed."""
        cutoff = ((now or datetime.now(UTC)) - KEEP_SENT).isoformat()
        with self.store.write() as db:
            sent = db.execute(
                "DELETE FROM notification_outbox WHERE state = 'sent' AND sent_at < ?", (cutoff,)
            ).rowcount
            db.execute(
                "DELETE FROM notification_state WHERE app NOT IN (SELECT name FROM applications)"
            )
        return int(sent)

    def _all_due_now(self) -> None:
        with self.store.write() as db:
            db.execute(
                "UPDATE notification_outbox SET next_attempt_at = ? WHERE state = 'pending'",
                (datetime.now(UTC).isoformat(),),
            )

    async def _db(self, fn: Callable[..., T], *args: object) -> T:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def run(self) -> None:
        """Send the outbox until cancelled; no failure of one round stops ``hub serve``."""
        await self._db(self._all_due_now)
        smtp = anyio.CapacityLimiter(2)
        tidied = time.monotonic()
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    if time.monotonic() - tidied > HOUSEKEEPING_S:
                        tidied = time.monotonic()
                        await self._db(self.housekeeping)
                    await self._round(session, smtp)
                except Exception as exc:  # e.g. the database locked past its timeout
                    log.error("notifications: sending round failed: %s", type(exc).__name__)
                await anyio.sleep(POLL_S)

    async def _round(self, session: aiohttp.ClientSession, smtp: anyio.CapacityLimiter) -> None:
        await self._db(self.reload)
        config = self.config
        if config is None:
            return
        due = await self._db(self._due)
        # Concurrently: a slow receiver (up to its timeout) must not hold up the others.
        async with anyio.create_task_group() as tg:
            for row_id, msg, attempts in due:
                tg.start_soon(self._deliver, config, row_id, msg, attempts, session, smtp)

    async def _deliver(
        self,
        config: NotificationConfig,
        row_id: int,
        msg: Message,
        attempts: int,
        session: aiohttp.ClientSession,
        smtp: anyio.CapacityLimiter,
    ) -> None:
        async with self._sending:
            try:
                await send(config, msg, session, self.secrets, smtp)
            except Exception as exc:
                if not isinstance(exc, HubError):
                    # A bug or input we did not foresee: its text might hold a resolved
                    # secret, so only its type is logged and kept.
                    log.error(
                        "notifications: %s for %s failed unexpectedly: %s",
                        msg.trigger, msg.app, type(exc).__name__,
                    )  # fmt: skip
                    exc = HubError(f"unexpected {type(exc).__name__}")
                final = await self._db(self._mark_failed, row_id, attempts + 1, str(exc))
                retry = f", retrying in {backoff_s(attempts + 1):.0f}s"
                log.log(
                    logging.ERROR if final else logging.WARNING,
                    "notifications: %s (attempt %d%s)",
                    exc, attempts + 1, ", giving up" if final else retry,
                )  # fmt: skip
                return
        await self._db(self._mark_sent, row_id)
        log.info("notifications: sent %s for %s via %s", msg.trigger, msg.app, msg.service)
