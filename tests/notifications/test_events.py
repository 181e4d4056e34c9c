"""Settings parsing, subscriptions and the trigger state machine that fills the outbox."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.apps import AppRecord, never_started
from hub.notifications.config import NotificationConfigError, parse_config
from hub.notifications.events import Subscription, app_view, record_events, subscriptions
from hub.store import Store

SETTINGS = """
service.webhook.hook: |
  url: http://127.0.0.1:1
service.email: |
  host: 127.0.0.1
  port: 25
  from: hub@example.com
defaultTriggers: |
  - on-sync-failed
  - on-health-degraded
"""
CONFIG = parse_config(SETTINGS)
PREFIX = "notifications.argoproj.io/subscribe."


def test_subscriptions_name_trigger_service_and_recipients() -> None:
    subs = subscriptions(
        {
            f"{PREFIX}on-sync-failed.email": "a@x.org; b@x.org",
            f"{PREFIX}on-deployed.hook": "",
            f"{PREFIX}email": "c@x.org",  # the default triggers
            "other/annotation": "ignored",
        },
        CONFIG,
    )
    assert subs == [
        Subscription("on-sync-failed", "email", "c@x.org"),
        Subscription("on-health-degraded", "email", "c@x.org"),
        Subscription("on-deployed", "hook", ""),
        Subscription("on-sync-failed", "email", "a@x.org"),
        Subscription("on-sync-failed", "email", "b@x.org"),
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("trigger.bad: |\n  - when: time.Now() > 1\n    send: [app-sync-failed]\n",
         "notifications.yaml: trigger.bad[0].when: function calls are not supported"),
        ("trigger.x: |\n  - when: a == 'b'\n    send: [nope]\n", "sends template 'nope'"),
        ("template.t: |\n  message: '{{ .app.x'\n", "template.t.message: bad template"),
        ("service.email: |\n  host: h\n  port: nine\n  from: a\n", "service.email.port"),
        ("servise.slack: {url: x}\n", "servise.slack: unknown key"),
        ("service.webhook.w: {url: x, headers: 5}\n", "service.webhook.w.headers: expected a list"),
        ("defaultTriggers: [on-nothing]\n", "defaultTriggers: no trigger 'on-nothing'"),
        ("- a list\n", "expected a mapping"),
        ("trigger.x: |\n  - when: a\n    send: [app-sync-failed]\n    then: b\n", "unknown key(s) then"),
    ],
)  # fmt: skip
def test_bad_settings_are_a_clear_error_naming_the_key(text: str, says: str) -> None:
    with pytest.raises(NotificationConfigError) as info:
        parse_config(text, "notifications.yaml")
    assert says in str(info.value)


def _app(annotations: Mapping[str, str], **status: Any) -> AppRecord:
    return AppRecord(**{**_fields(datetime.now(UTC)), "annotations": annotations, **status})


def _fields(now: datetime) -> dict[str, Any]:
    return dict(
        name="shop", appset=None, source=None, file="", cluster="solo", dest_server="",
        dest_name="solo", namespace="guestbook", project="default", spec={}, labels={},
        annotations={}, finalizers=(), generation=1, desired_revision="main",
        desired_sha="a" * 40, synced_sha=None, sync_status="Synced", health_status="Healthy",
        conditions=(), operation_state=None, created_at=now, updated_at=now,
        reconciled_at=None, deletion=None, deletion_reason=None, deletion_requested_at=None,
    )  # fmt: skip


@pytest.fixture
def store(db_location: Path | str) -> Iterator[Store]:
    s = Store.open(db_location, create=True)
    yield s
    s.close()


def _evaluate(store: Store, rec: AppRecord) -> int:
    with store.write() as db:
        queued, problems = record_events(db, CONFIG, rec)
    assert problems == []
    return queued


def _op(phase: str, revision: str = "r1", started: str = "t1") -> dict[str, Any]:
    return {"phase": phase, "startedAt": started, "syncResult": {"revision": revision}}


def test_a_condition_fires_once_until_it_turns_false_again(store: Store) -> None:
    rec = _app({f"{PREFIX}on-sync-failed.hook": ""}, operation_state=_op("Failed"))
    assert _evaluate(store, rec) == 1
    assert _evaluate(store, rec) == 0  # re-evaluated (another status write): nothing new
    assert _evaluate(store, replace(rec, operation_state=_op("Running", started="t2"))) == 0
    assert _evaluate(store, replace(rec, operation_state=_op("Failed", started="t2"))) == 1
    with store.read() as db:
        rows = db.execute("SELECT trigger, service, app_view FROM notification_outbox").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("on-sync-failed", "hook")] * 2
    assert json.loads(rows[0][2])["status"]["operationState"]["phase"] == "Failed"


def test_once_per_fires_once_per_value_even_across_a_false_spell(store: Store) -> None:
    sub = {f"{PREFIX}on-deployed.email": "ops@x.org"}
    rec = _app(sub, operation_state=_op("Succeeded", "r1"))
    assert _evaluate(store, rec) == 1
    assert _evaluate(store, replace(rec, health_status="Degraded")) == 0
    assert _evaluate(store, rec) == 0  # healthy again, same revision: already told
    assert _evaluate(store, replace(rec, operation_state=_op("Succeeded", "r2"))) == 1


def test_an_operation_that_never_started_is_no_operation_to_triggers(store: Store) -> None:
    # Rewritten at a hub's start from a Running state it found with nothing recorded
    # (``Hub.record_interrupted``): Error, but nothing ran, so no failed sync is told;
    # health still is.
    sub = {f"{PREFIX}on-sync-failed.hook": "", f"{PREFIX}on-health-degraded.hook": ""}
    left = never_started(_op("Running", "r2", started="t2"), datetime.now(UTC))
    rec = _app(sub, operation_state=left, health_status="Degraded")
    assert _evaluate(store, rec) == 1
    assert "operationState" not in app_view(rec)["status"]  # for templates too
    # The retry of that revision fails for real: that is told.
    assert _evaluate(store, replace(rec, operation_state=_op("Failed", "r2", "t3"))) == 1
    with store.read() as db:
        rows = db.execute("SELECT trigger FROM notification_outbox ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["on-health-degraded", "on-sync-failed"]


def test_unknown_triggers_and_services_are_reported_not_raised(store: Store) -> None:
    rec = _app({f"{PREFIX}on-nothing.hook": "", f"{PREFIX}on-sync-failed.pager": ""})
    with store.write() as db:
        queued, problems = record_events(db, CONFIG, rec)
    assert queued == 0
    assert "trigger 'on-nothing'" in problems[0]
    assert "service 'pager'" in problems[1]


_KEYS = st.sampled_from(
    ["trigger.t", "template.app-sync-failed", "template.x", "service.webhook.w", "service.slack",
     "service.email", "defaultTriggers", "context", "other"]
)  # fmt: skip
_FIELDS = st.sampled_from(
    ["when", "send", "oncePer", "message", "webhook", "w", "method", "path", "body", "email",
     "subject", "slack", "attachments", "url", "headers", "name", "value", "host", "port",
     "from", "username", "password"]
)  # fmt: skip
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from(["a == 'b'", "{{ .app", "x", ""]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_FIELDS, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(_KEYS, st.dictionaries(_FIELDS, _VALUES, max_size=5) | _VALUES, max_size=2),
    st.booleans(),
)
def test_any_settings_parse_or_give_a_settings_error(doc: dict[str, Any], as_text: bool) -> None:
    if as_text:  # the ConfigMap way: each value is YAML text
        doc = {k: yaml.safe_dump(v) for k, v in doc.items()}
    try:
        parse_config(yaml.safe_dump(doc), "notifications.yaml")
    except NotificationConfigError as exc:
        assert str(exc).startswith("notifications.yaml")


def test_the_notifier_logs_a_bad_subscription_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from hub.notifications.dispatcher import Notifier

    class Apps:
        def get(self, name: str) -> AppRecord:
            return _app({f"{PREFIX}on-nothing.hook": ""})

    (tmp_path / "notifications.yaml").write_text(SETTINGS)
    store = Store.open(tmp_path / "hub.db", create=True)
    try:
        notifier = Notifier(tmp_path, store, Apps(), {}.get)  # type: ignore[arg-type]
        with caplog.at_level("WARNING", logger="hub.notifications.dispatcher"):
            notifier.on_status("shop")
            notifier.on_status("shop")
    finally:
        store.close()
    assert [r.getMessage() for r in caplog.records].count(
        "notifications: application shop: subscribes to trigger 'on-nothing', which "
        "notifications.yaml does not define"
    ) == 1


def test_a_failing_evaluation_costs_the_notifications_never_the_status_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from hub.notifications.dispatcher import Notifier

    class Apps:
        def get(self, name: str) -> AppRecord:
            raise RuntimeError("boom")

    (tmp_path / "notifications.yaml").write_text(SETTINGS)
    store = Store.open(tmp_path / "hub.db", create=True)
    try:
        notifier = Notifier(tmp_path, store, Apps(), {}.get)  # type: ignore[arg-type]
        with store.atomic(), store.write() as db:
            db.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
            notifier.on_status("shop")  # logs, does not raise
        assert store.get_meta("k") == "v"
    finally:
        store.close()
    assert "evaluating its triggers failed" in caplog.text
