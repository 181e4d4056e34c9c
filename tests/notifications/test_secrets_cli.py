"""`hub notify secret` and `hub notify check`: secrets sealed at rest (never in clear in the
database or the output), re-wrapped by `hub key rotate`; a bad settings file exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusters.crypto import DecryptError, Keyring, MasterKey
from hub.errors import HubError
from hub.home import load_keyring, open_store
from hub.notifications.secrets import NotificationSecrets
from tests.clusters.cli_support import Hub

VALUE = "smtp-password-0123456789"


def test_a_secret_is_sealed_listed_by_name_and_survives_a_key_rotation(tmp_path: Path) -> None:
    hub = Hub(tmp_path / "home")
    hub.ok("init")
    out = hub.ok("notify", "secret", "set", "smtp-pass", input=VALUE + "\n")
    assert VALUE not in out.output
    assert VALUE.encode() not in (hub.home / "hub.db").read_bytes()
    assert hub.ok("notify", "secret", "list").output.split() == ["smtp-pass"]
    old_key = (hub.home / "master.key").read_text().strip()
    hub.ok("key", "rotate")
    with open_store(hub.home) as store:
        assert (
            NotificationSecrets(store, lambda: load_keyring(hub.home)).lookup("smtp-pass") == VALUE
        )
        old = Keyring(primary=MasterKey.from_base64(old_key, "old"))
        with pytest.raises((HubError, DecryptError)) as info:
            NotificationSecrets(store, lambda: old).lookup("smtp-pass")
        assert VALUE not in str(info.value)
    hub.ok("notify", "secret", "rm", "smtp-pass")
    assert hub("notify", "secret", "rm", "smtp-pass").exit_code == 2
    assert hub("notify", "secret", "set", "empty", input="\n").exit_code == 2
    assert hub("notify", "secret", "set", "bad name", input="x\n").exit_code == 2


def test_check_reports_the_settings_or_a_clear_error(tmp_path: Path) -> None:
    hub = Hub(tmp_path / "home")
    hub.ok("init")
    assert "notifications are off" in hub.ok("notify", "check").output
    settings = hub.home / "notifications.yaml"
    settings.write_text("service.webhook.hook: |\n  url: http://127.0.0.1:1\n")
    out = hub.ok("notify", "check").output
    assert "on-sync-failed" in out and "services: hook" in out
    settings.write_text("trigger.x: |\n  - when: time.Now()\n    send: [app-sync-failed]\n")
    bad = hub("notify", "check")
    assert bad.exit_code == 2
    assert "trigger.x[0].when: function calls are not supported" in bad.output
    assert "Traceback" not in bad.output


def test_outbox_lists_rows_with_their_error_and_retry_requeues_the_failed(tmp_path: Path) -> None:
    import json

    hub = Hub(tmp_path / "home")
    hub.ok("init")
    assert "no notifications" in hub.ok("notify", "outbox").output
    with open_store(hub.home) as store, store.write() as db:
        for key, state, error in (("k1", "sent", None), ("k2", "failed", "HTTP 503: busy")):
            db.execute(
                "INSERT INTO notification_outbox (event_key, app, trigger, service, recipient, "
                "templates, app_view, created_at, next_attempt_at, state, attempts, last_error) "
                "VALUES (?, 'shop', 'on-sync-failed', 'hook', '', '[]', '{}', 't', 'z', ?, 12, ?)",
                (key, state, error),
            )
    table = hub.ok("notify", "outbox").output
    assert "HTTP 503: busy" in table and "failed" in table and "sent" in table
    failed = json.loads(hub.ok("notify", "outbox", "--state", "failed", "-o", "json").output)
    assert [(r["state"], r["lastError"]) for r in failed] == [("failed", "HTTP 503: busy")]
    assert "1 notification(s) queued again" in hub.ok("notify", "retry").output
    rows = json.loads(hub.ok("notify", "outbox", "-o", "json").output)
    assert [(r["state"], r["attempts"]) for r in rows] == [("pending", 0), ("sent", 12)]
