"""From an Application's status to outbox rows: subscriptions, trigger state, the outbox.

An Application subscribes with annotations, as in Argo CD:
``notifications.argoproj.io/subscribe.<trigger>.<service>: <recipient>[;<recipient>...]``
(or ``subscribe.<service>`` for the ``defaultTriggers``). Each (trigger condition,
service, recipient) keeps a state row: the condition fires once when it becomes true
(or when its ``oncePer`` value changes) and is re-armed when it turns false, as
notifications-engine does. An ApplicationSet with a RollingSync strategy subscribes the
same way, on its own metadata, to the ``on-rollout-*`` triggers: they are evaluated once
per move of its rollout (``record_rollout_events``). A firing writes its state and its outbox row in one
transaction (the status write's, when called from it), keyed uniquely, so a
re-evaluation or a restart never queues a message twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hub.apps import AppRecord, AppSetRecord, started_nothing
from hub.db import Connection
from hub.notifications.config import NotificationConfig

SUBSCRIBE = "notifications.argoproj.io/subscribe."


@dataclass(frozen=True)
class Subscription:
    trigger: str
    service: str
    recipient: str


def subscriptions(annotations: Mapping[str, str], config: NotificationConfig) -> list[Subscription]:
    """The app's subscriptions; ``subscribe.<service>`` means the default triggers."""
    out: list[Subscription] = []
    for key, value in sorted(annotations.items()):
        if not key.startswith(SUBSCRIBE):
            continue
        rest = key[len(SUBSCRIBE) :]
        trigger, dot, service = rest.partition(".")
        triggers = [trigger] if dot else list(config.default_triggers)
        if not dot:
            service = trigger
        recipients = [r.strip() for r in str(value).split(";") if r.strip()] or [""]
        out.extend(Subscription(t, service, r) for t in triggers for r in recipients)
    return out


def app_view(rec: AppRecord) -> dict[str, Any]:
    """The Application as Argo CD shows it to triggers and templates (``.app``). An operation
    that never started (``started_nothing``: the hub stopped between its running state and
    its first record, and rewrote it as Error at the next start) is left out: nothing ran,
    so it is no failed sync to notify (its status shows it), and an automated app retries
    at once."""
    manifest = rec.manifest()
    status: dict[str, Any] = {
        "sync": {"status": rec.sync_status, "revision": rec.synced_sha or rec.desired_sha or ""},
        "health": {"status": rec.health_status},
        "conditions": [c.as_dict() for c in rec.conditions],
    }
    if rec.operation_state is not None and not started_nothing(rec.operation_state):
        status["operationState"] = json.loads(json.dumps(rec.operation_state, default=str))
    manifest["status"] = status
    return manifest


def record_events(
    db: Connection, config: NotificationConfig, rec: AppRecord
) -> tuple[int, list[str]]:
    """Evaluate ``rec``'s subscriptions inside the open transaction ``db``: update trigger
    state and queue what fired. Returns (rows queued, problems to log once)."""
    subs = subscriptions(rec.annotations, config)
    if not subs:
        return 0, []
    view = app_view(rec)
    env = {"app": view}
    problems: list[str] = []
    queued = 0
    services = config.services()
    now = datetime.now(UTC).isoformat()
    for sub in subs:
        trigger = config.triggers.get(sub.trigger)
        if trigger is None:
            problems.append(
                f"application {rec.name}: subscribes to trigger {sub.trigger!r}, which "
                "notifications.yaml does not define"
            )
            continue
        if sub.service not in services:
            problems.append(
                f"application {rec.name}: subscribes to service {sub.service!r}, which "
                "notifications.yaml does not define"
            )
            continue
        for index, cond in enumerate(trigger.conditions):
            key = f"{sub.trigger}[{index}]|{sub.service}|{sub.recipient}"
            row = db.execute(
                "SELECT fired, once_value, seq FROM notification_state WHERE app = ? AND key = ?",
                (rec.name, key),
            ).fetchone()
            fired, once_value, seq = row if row is not None else (0, None, 0)
            if cond.when.evaluate(env) is not True:
                if fired and cond.once_per is None:
                    db.execute(
                        "UPDATE notification_state SET fired = 0 WHERE app = ? AND key = ?",
                        (rec.name, key),
                    )
                continue
            once = None
            if cond.once_per is not None:
                once = json.dumps(cond.once_per.evaluate(env), sort_keys=True, default=str)
                if fired and once == once_value:
                    continue
            elif fired:
                continue
            seq += 1
            db.execute(
                "INSERT INTO notification_state (app, key, fired, once_value, seq) "
                "VALUES (?, ?, 1, ?, ?) ON CONFLICT (app, key) DO UPDATE SET "
                "fired = 1, once_value = excluded.once_value, seq = excluded.seq",
                (rec.name, key, once, seq),
            )
            cur = db.execute(
                "INSERT INTO notification_outbox (event_key, app, trigger, service, "
                "recipient, templates, app_view, created_at, next_attempt_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_key) DO NOTHING",
                (
                    f"{rec.name}|{key}|{seq}",
                    rec.name,
                    sub.trigger,
                    sub.service,
                    sub.recipient,
                    json.dumps(list(cond.send)),
                    json.dumps(view, sort_keys=True, default=str),
                    now,
                    now,
                ),
            )
            queued += cur.rowcount
    return queued, problems


def appset_view(record: AppSetRecord, rollout: Mapping[str, Any], event: Mapping[str, Any]) -> Any:
    """The ApplicationSet as triggers and templates see it (``.app``): its manifest with
    ``status.rollout`` (the stored rollout status) and ``status.rolloutEvent`` (the move)."""
    manifest = json.loads(json.dumps(record.manifest, default=str))
    manifest["status"] = {"rollout": dict(rollout), "rolloutEvent": dict(event)}
    return manifest


def record_rollout_events(
    db: Connection,
    config: NotificationConfig,
    record: AppSetRecord,
    rollout: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
) -> tuple[int, list[str]]:
    """Queue what each move of a set's rollout fires for the set's subscriptions, inside the
    open transaction ``db``. One row per (set, trigger, step, revision, service, recipient):
    the event key is unique, so a recomputation or a restart never queues it twice."""
    metadata = record.manifest.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    subs = subscriptions(annotations if isinstance(annotations, Mapping) else {}, config)
    if not subs:
        return 0, []
    problems: list[str] = []
    services = config.services()
    now = datetime.now(UTC).isoformat()
    queued = 0
    for sub in subs:
        trigger = config.triggers.get(sub.trigger)
        if trigger is None or sub.service not in services:
            what = "trigger" if trigger is None else "service"
            name = sub.trigger if trigger is None else sub.service
            problems.append(
                f"applicationset {record.name}: subscribes to {what} {name!r}, which "
                "notifications.yaml does not define"
            )
            continue
        for event in events:
            view = appset_view(record, rollout, event)
            for index, cond in enumerate(trigger.conditions):
                if cond.when.evaluate({"app": view}) is not True:
                    continue
                key = (
                    f"rollout|{record.name}|{sub.trigger}[{index}]|{event.get('type')}|"
                    f"{event.get('step')}|{event.get('revision')}|{sub.service}|{sub.recipient}"
                )
                cur = db.execute(
                    "INSERT INTO notification_outbox (event_key, app, trigger, "
                    "service, recipient, templates, app_view, created_at, next_attempt_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_key) DO NOTHING",
                    (
                        key,
                        record.name,
                        sub.trigger,
                        sub.service,
                        sub.recipient,
                        json.dumps(list(cond.send)),
                        json.dumps(view, sort_keys=True, default=str),
                        now,
                        now,
                    ),
                )
                queued += cur.rowcount
    return queued, problems
