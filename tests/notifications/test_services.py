"""Each service against a real loopback receiver: the Slack-compatible payload, the
webhook's error path (no secret in the message), SMTP, and the dispatcher's retries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from hub.apps import AppStore
from hub.notifications.config import NotificationConfig, parse_config
from hub.notifications.dispatcher import BACKOFF_CAP_S, MAX_ATTEMPTS, Notifier, backoff_s
from hub.notifications.services import DeliveryError, Message, send
from hub.store import Store
from tests.notifications.receivers import HttpReceiver, SmtpReceiver

TOKEN = "tok-1234567890"
VIEW: dict[str, Any] = {
    "metadata": {"name": "shop"},
    "status": {"operationState": {"phase": "Failed", "message": "hook failed"}},
}


def _settings(http: str, smtp_port: int = 1) -> NotificationConfig:
    return parse_config(
        f"""
service.slack: |
  url: {http}/slack/$slack-path
service.webhook.hook: |
  url: {http}/hook?token=$hook-token
service.email: |
  host: 127.0.0.1
  port: {smtp_port}
  from: hub@example.com
template.app-sync-failed: |
  message: "{{{{.app.metadata.name}}}} failed: {{{{.app.status.operationState.message}}}}"
  email:
    subject: "sync of {{{{.app.metadata.name}}}} failed"
  slack:
    attachments: |
      [{{"title": "{{{{.app.metadata.name}}}}", "color": "#E96D76"}}]
"""
    )


def _message(service: str, recipient: str = "") -> Message:
    return Message(
        event_key="shop|k|1", app="shop", trigger="on-sync-failed", service=service,
        recipient=recipient, templates=("app-sync-failed",), app_view=VIEW,
    )  # fmt: skip


SECRETS = {"slack-path": "T000/B000", "hook-token": TOKEN}


async def _send(config: NotificationConfig, msg: Message) -> None:
    async with aiohttp.ClientSession() as session:
        await send(config, msg, session, SECRETS.get, anyio.CapacityLimiter(1))


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


def test_slack_gets_an_incoming_webhook_payload(http: HttpReceiver) -> None:
    anyio.run(_send, _settings(http.url), _message("slack", "#deploys"))
    [got] = http.requests
    assert got.path == "/slack/T000/B000"
    assert json.loads(got.body) == {
        "text": "shop failed: hook failed",
        "channel": "#deploys",
        "attachments": [{"title": "shop", "color": "#E96D76"}],
    }


def test_a_refused_webhook_is_a_delivery_error_without_the_secret(http: HttpReceiver) -> None:
    http.status = 503
    with pytest.raises(DeliveryError) as info:
        anyio.run(_send, _settings(http.url), _message("hook"))
    assert "HTTP 503" in str(info.value)
    assert TOKEN not in str(info.value)
    http.stop()
    with pytest.raises(DeliveryError) as info:
        anyio.run(_send, _settings(http.url), _message("hook"))
    assert TOKEN not in str(info.value)


def test_a_missing_secret_says_how_to_set_it(http: HttpReceiver) -> None:
    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            await send(
                _settings(http.url), _message("hook"), session, {}.get, anyio.CapacityLimiter(1)
            )

    with pytest.raises(DeliveryError, match="hub notify secret set hook-token"):
        anyio.run(run)
    assert http.requests == []


def test_email_goes_through_smtp() -> None:
    smtp = SmtpReceiver().start()
    try:
        anyio.run(_send, _settings("http://127.0.0.1:1", smtp.port), _message("email", "ops@x.org"))
    finally:
        smtp.stop()
    [mail] = smtp.messages
    assert (mail["To"], mail["Subject"]) == ("ops@x.org", "sync of shop failed")
    assert mail["X-Hub-Notification-Id"] == "shop|k|1"
    assert "shop failed: hook failed" in str(mail.get_payload())


def test_backoff_doubles_up_to_a_cap() -> None:
    delays = [backoff_s(n) for n in range(1, 20)]
    assert delays[:3] == [1.0, 2.0, 4.0]
    assert delays == sorted(delays)
    assert max(delays) == BACKOFF_CAP_S


def test_the_dispatcher_retries_a_refused_message_and_marks_it_sent(
    tmp_path: Path, http: HttpReceiver
) -> None:
    home = tmp_path
    (home / "notifications.yaml").write_text(f"service.webhook.hook: |\n  url: {http.url}\n")
    store = Store.open(home / "hub.db", create=True)
    with store.write() as db:
        db.execute(
            "INSERT INTO notification_outbox (event_key, app, trigger, service, recipient, "
            "templates, app_view, created_at, next_attempt_at) VALUES "
            "('k1', 'shop', 'on-sync-failed', 'hook', '', '[\"app-sync-failed\"]', ?, 't', '')",
            (json.dumps(VIEW),),
        )
    http.status = 500
    notifier = Notifier(home, store, AppStore(store), {}.get)

    def state() -> tuple[str, int]:
        with store.read() as db:
            row = db.execute("SELECT state, attempts FROM notification_outbox").fetchone()
        return str(row[0]), int(row[1])

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(notifier.run)
            while state()[1] < 1:
                await anyio.sleep(0.05)
            http.status = 200  # the retry, after the backoff, succeeds
            with anyio.fail_after(30):
                while state()[0] != "sent":
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()

    try:
        anyio.run(run)
        assert state() == ("sent", 2)
    finally:
        store.close()
    assert len(http.requests) == 2
    assert json.loads(http.requests[1].body)["trigger"] == "on-sync-failed"


def test_a_bad_settings_file_keeps_the_previous_settings(
    tmp_path: Path, db_location: Path | str
) -> None:
    (tmp_path / "notifications.yaml").write_text("service.webhook.hook: |\n  url: http://a\n")
    store = Store.open(db_location, create=True)
    try:
        notifier = Notifier(tmp_path, store, AppStore(store), {}.get)
        assert notifier.config is not None and notifier.config.webhooks["hook"].url == "http://a"
        (tmp_path / "notifications.yaml").write_text("trigger.x: not a list of conditions\n")
        notifier.reload()
        assert notifier.config.webhooks["hook"].url == "http://a"
        (tmp_path / "notifications.yaml").write_text("service.webhook.hook: {url: http://b}\n")
        notifier.reload()
        assert notifier.config.webhooks["hook"].url == "http://b"
    finally:
        store.close()


def test_the_last_failed_attempt_marks_the_row_failed(
    tmp_path: Path, db_location: Path | str
) -> None:
    store = Store.open(db_location, create=True)
    try:
        with store.write() as db:
            db.execute(
                "INSERT INTO notification_outbox (event_key, app, trigger, service, recipient, "
                "templates, app_view, created_at, next_attempt_at) VALUES "
                "('k1', 'shop', 't', 'hook', '', '[]', '{}', 't', '')"
            )
        notifier = Notifier(tmp_path, store, AppStore(store), {}.get)
        assert notifier._mark_failed(1, MAX_ATTEMPTS - 1, "refused") is False
        assert notifier._mark_failed(1, MAX_ATTEMPTS, "refused") is True
        with store.read() as db:
            row = db.execute(
                "SELECT state, attempts, last_error FROM notification_outbox"
            ).fetchone()
        assert tuple(row) == ("failed", MAX_ATTEMPTS, "refused")
    finally:
        store.close()


def test_a_message_that_cannot_be_sent_does_not_stop_the_others(
    tmp_path: Path, http: HttpReceiver, db_location: Path | str
) -> None:
    (tmp_path / "notifications.yaml").write_text(
        f"service.webhook.hook: {{url: {http.url}}}\n"
        "service.email: {host: 127.0.0.1, port: 1, from: hub@example.com}\n"
    )
    store = Store.open(db_location, create=True)
    with store.write() as db:
        for key, service, recipient in (
            ("k1", "email", "ops@x.org\nBcc: all@x.org"),
            ("k2", "hook", ""),
        ):
            db.execute(
                "INSERT INTO notification_outbox (event_key, app, trigger, service, recipient, "
                "templates, app_view, created_at, next_attempt_at) VALUES "
                "(?, 'shop', 'on-sync-failed', ?, ?, '[\"app-sync-failed\"]', ?, 't', '')",
                (key, service, recipient, json.dumps(VIEW)),
            )
    notifier = Notifier(tmp_path, store, AppStore(store), {}.get)

    def rows() -> list[tuple[str, str, str | None]]:
        with store.read() as db:
            found = db.execute(
                "SELECT event_key, state, last_error FROM notification_outbox ORDER BY id"
            ).fetchall()
        return [(str(r[0]), str(r[1]), r[2]) for r in found]

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(notifier.run)
            with anyio.fail_after(30):
                while rows()[1][1] != "sent":
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()

    try:
        anyio.run(run)
        email, hook = rows()
        assert email[1] == "pending" and "is not an address" in (email[2] or "")
        assert hook[1] == "sent"
    finally:
        store.close()
    assert len(http.requests) == 1


def test_housekeeping_forgets_old_sent_rows_and_the_state_of_gone_apps(
    tmp_path: Path, db_location: Path | str
) -> None:
    from datetime import UTC, datetime, timedelta

    store = Store.open(db_location, create=True)
    try:
        now = datetime.now(UTC)
        with store.write() as db:
            for key, state, sent in (
                ("old", "sent", (now - timedelta(days=8)).isoformat()),
                ("new", "sent", now.isoformat()),
                ("waiting", "pending", None),
            ):
                db.execute(
                    "INSERT INTO notification_outbox (event_key, app, trigger, service, "
                    "recipient, templates, app_view, created_at, next_attempt_at, state, "
                    "sent_at) VALUES (?, 'gone', 't', 'hook', '', '[]', '{}', 't', '', ?, ?)",
                    (key, state, sent),
                )
            db.execute(
                "INSERT INTO notification_state (app, key, fired, once_value, seq) "
                "VALUES ('gone', 'k', 1, NULL, 1)"
            )
        assert Notifier(tmp_path, store, AppStore(store), {}.get).housekeeping(now) == 1
        with store.read() as db:
            keys = [r[0] for r in db.execute("SELECT event_key FROM notification_outbox")]
            states = db.execute("SELECT COUNT(*) FROM notification_state").fetchone()[0]
        assert sorted(keys) == ["new", "waiting"]
        assert states == 0
    finally:
        store.close()


def test_a_slow_receiver_does_not_hold_up_the_others(
    tmp_path: Path, http: HttpReceiver, db_location: Path | str
) -> None:
    import threading

    http.held = threading.Event()
    (tmp_path / "notifications.yaml").write_text(
        f"service.webhook.slow: {{url: {http.url}/slow}}\n"
        f"service.webhook.fast: {{url: {http.url}/fast}}\n"
    )
    store = Store.open(db_location, create=True)
    with store.write() as db:
        for key, service in (("k1", "slow"), ("k2", "fast")):
            db.execute(
                "INSERT INTO notification_outbox (event_key, app, trigger, service, recipient, "
                "templates, app_view, created_at, next_attempt_at) VALUES "
                "(?, 'shop', 'on-sync-failed', ?, '', '[\"app-sync-failed\"]', ?, 't', '')",
                (key, service, json.dumps(VIEW)),
            )
    notifier = Notifier(tmp_path, store, AppStore(store), {}.get)

    def states() -> list[str]:
        with store.read() as db:
            return [
                str(r[0]) for r in db.execute("SELECT state FROM notification_outbox ORDER BY id")
            ]

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(notifier.run)
            with anyio.fail_after(30):
                while states() != ["pending", "sent"]:  # the fast one, while the slow waits
                    await anyio.sleep(0.05)
                assert http.held is not None
                http.held.set()
                while states() != ["sent", "sent"]:
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()

    try:
        anyio.run(run)
    finally:
        store.close()
    assert sorted(r.path for r in http.requests) == ["/fast", "/slow"]
