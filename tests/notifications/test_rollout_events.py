"""An ApplicationSet subscribed to the on-rollout-* triggers gets one outbox row per move of
its rollout, whatever how often the same move is recorded (a recomputation, a restart)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub.apps import AppSetRecord
from hub.notifications.config import parse_config
from hub.notifications.events import record_rollout_events
from hub.rollout import rollout_events
from hub.store import Store

NOW = datetime.now(UTC)
CONFIG = parse_config("service.webhook.hook: |\n  url: http://127.0.0.1:1\n")
PREFIX = "notifications.argoproj.io/subscribe."
SET = AppSetRecord(
    name="guestbook",
    source="root",
    file="sets/guestbook.yaml",
    manifest={
        "metadata": {
            "name": "guestbook",
            "annotations": {
                f"{PREFIX}on-rollout-step-started.hook": "",
                f"{PREFIX}on-rollout-halted.hook": "",
                f"{PREFIX}on-sync-failed.hook": "",  # an app trigger: never fires for a set
            },
        }
    },
    sha="s",
    conditions=(),
    status={},
    generated=None,
    last_error=None,
    created_at=NOW,
    updated_at=NOW,
    reconciled_at=None,
)


@pytest.fixture
def store(db_location: Path | str) -> Iterator[Store]:
    s = Store.open(db_location, create=True)
    yield s
    s.close()


def _record(store: Store, old: dict[str, Any] | None, new: dict[str, Any], rev: str) -> int:
    events = [e.as_dict() for e in rollout_events(old, new, revision=rev)]
    with store.write() as db:
        queued, problems = record_rollout_events(db, CONFIG, SET, new, events)
    assert problems == []
    return queued


def _status(step: str | None, halted: str | None = None) -> dict[str, Any]:
    return {"currentStep": step, "steps": 2, "haltedBy": halted, "message": f"at {step}"}


def test_each_step_and_halt_is_queued_once_per_revision(store: Store) -> None:
    assert _record(store, None, _status("1"), "r1") == 1
    assert _record(store, None, _status("1"), "r1") == 0  # the same move again: no copy
    assert _record(store, _status("1"), _status("2"), "r1") == 1
    assert _record(store, _status("2"), _status(None), "r1") == 0  # not subscribed
    assert _record(store, _status(None), _status("1"), "r2") == 1  # a new revision
    assert _record(store, _status("1"), _status("1", "dev-guestbook"), "r2") == 1
    with store.read() as db:
        rows = db.execute(
            "SELECT app, trigger, templates, app_view FROM notification_outbox ORDER BY id"
        ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [
        ("guestbook", "on-rollout-step-started"),
        ("guestbook", "on-rollout-step-started"),
        ("guestbook", "on-rollout-step-started"),
        ("guestbook", "on-rollout-halted"),
    ]
    assert json.loads(rows[3][2]) == ["appset-rollout-halted"]
    event = json.loads(rows[3][3])["status"]["rolloutEvent"]
    assert (event["step"], event["haltedBy"], event["revision"]) == ("1", "dev-guestbook", "r2")
