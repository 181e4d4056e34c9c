"""Argo CD's automated-sync rules (``hub.worker.decide_auto_sync``), table-driven, no cluster."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub.apps import never_started
from hub.rollout import AppStatus
from hub.sync.diff import SyncStatus
from hub.sync.model import Automated
from hub.worker import (
    ROLLOUT_WAITING,
    AutoSyncDecision,
    LastOperation,
    decide_auto_sync,
    hold_conditions,
    last_operation_of,
)
from tests.hub.test_worker_left_running import running_state

REV = "a" * 40
NEW = "b" * 40
ON = Automated(prune=True, self_heal=True)


def ok(rev: str = REV, at: float = 100.0) -> LastOperation:
    return LastOperation(revision=rev, phase="Succeeded", finished_monotonic=at)


@pytest.mark.parametrize(
    ("automated", "status", "revision", "last", "prune_only", "heals", "now", "running", "want"),
    [
        (None, SyncStatus.OUT_OF_SYNC, NEW, ok(), False, 0, 200.0, False, "none"),
        (Automated(enabled=False), SyncStatus.OUT_OF_SYNC, NEW, None, False, 0, 0.0, False, "none"),
        (ON, SyncStatus.SYNCED, NEW, ok(), False, 0, 200.0, False, "none"),
        (ON, SyncStatus.UNKNOWN, NEW, ok(), False, 0, 200.0, False, "none"),
        (ON, SyncStatus.OUT_OF_SYNC, NEW, ok(), False, 0, 200.0, True, "none"),
        (ON, SyncStatus.OUT_OF_SYNC, NEW, None, False, 0, 0.0, False, "sync"),
        (ON, SyncStatus.OUT_OF_SYNC, NEW, ok(), False, 0, 200.0, False, "sync"),
        # one attempt per revision: a failed one is not attempted again
        (
            ON,
            SyncStatus.OUT_OF_SYNC,
            REV,
            LastOperation(revision=REV, phase="Failed", finished_monotonic=1.0),
            False,
            0,
            200.0,
            False,
            "none",
        ),
        # drift after success: self-heal, at once the first time
        (ON, SyncStatus.OUT_OF_SYNC, REV, ok(), False, 0, 100.5, False, "self-heal"),
        # the second heal waits 2 s after the previous sync, the third 6 s
        (ON, SyncStatus.OUT_OF_SYNC, REV, ok(at=100.0), False, 1, 101.0, False, "wait"),
        (ON, SyncStatus.OUT_OF_SYNC, REV, ok(at=100.0), False, 1, 102.5, False, "self-heal"),
        (ON, SyncStatus.OUT_OF_SYNC, REV, ok(at=100.0), False, 2, 105.0, False, "wait"),
        # drift without selfHeal is only reported
        (Automated(prune=True), SyncStatus.OUT_OF_SYNC, REV, ok(), False, 0, 200.0, False, "none"),
        # only pruning needed: left alone without prune, done with it
        (Automated(), SyncStatus.OUT_OF_SYNC, NEW, ok(), True, 0, 200.0, False, "none"),
        (ON, SyncStatus.OUT_OF_SYNC, NEW, ok(), True, 0, 200.0, False, "sync"),
    ],
)
def test_auto_sync_follows_argo_rules(
    automated: Automated | None,
    status: SyncStatus,
    revision: str,
    last: LastOperation | None,
    prune_only: bool,
    heals: int,
    now: float,
    running: bool,
    want: str,
) -> None:
    decision = decide_auto_sync(
        automated=automated,
        status=status,
        revision=revision,
        last=last,
        prune_only=prune_only,
        self_heal_attempts=heals,
        now_monotonic=now,
        operation_running=running,
    )
    assert decision.action == want, decision.reason
    if want == "wait":
        assert decision.delay_s > 0


def test_a_self_heal_wait_is_what_remains_of_the_backoff() -> None:
    decision = decide_auto_sync(
        automated=ON,
        status=SyncStatus.OUT_OF_SYNC,
        revision=REV,
        last=ok(at=100.0),
        prune_only=False,
        self_heal_attempts=2,
        now_monotonic=101.0,
    )
    assert decision.action == "wait"
    assert decision.delay_s == pytest.approx(5.0)  # 2 s x 3 after the 2nd heal, 1 s spent


@pytest.mark.parametrize(
    ("state", "want"),
    [
        (None, None),
        ({}, None),
        ({"phase": "Succeeded"}, None),
        ({"phase": "Error", "syncResult": {"revision": REV}}, ("Error", REV)),
        # left Running by a process killed before its engine recorded it: no attempt
        ({"phase": "Running", "syncResult": {"revision": REV}}, None),
        ({"phase": "Terminating", "syncResult": {"revision": REV}}, None),
        (
            {"phase": "Succeeded", "syncResult": {"revision": REV}, "trigger": "self-heal"},
            ("Succeeded", REV),
        ),
    ],
)
def test_the_last_operation_survives_a_restart_through_operation_state(
    state: dict[str, object] | None, want: tuple[str, str] | None
) -> None:
    last = last_operation_of(state)
    if want is None:
        assert last is None
    else:
        assert last is not None
        assert (last.phase, last.revision) == want
        # unknown time: counted as long ago, so a self-heal is not held back after a restart
        assert last.finished_monotonic == 0.0


def action_after(state: dict[str, object]) -> str:
    """The automated sync's decision for an app OutOfSync at ``REV`` whose stored
    operation, read after a restart, is ``state``."""
    return decide_auto_sync(
        automated=ON,
        status=SyncStatus.OUT_OF_SYNC,
        revision=REV,
        last=last_operation_of(state),
        prune_only=False,
        self_heal_attempts=0,
        now_monotonic=5.0,
    ).action


def test_a_revision_interrupted_by_a_crash_is_not_attempted_again_automatically() -> None:
    # After a restart the interrupted operation is recorded as Error with its revision; the
    # one-attempt rule then keeps its hooks from running a second time.
    assert action_after({"phase": "Error", "syncResult": {"revision": REV}}) == "none"


def test_a_revision_left_running_before_the_engine_recorded_it_is_attempted() -> None:
    # A hub or replica killed between the worker's running state and the engine's record
    # of the operation: nothing was applied, nothing is recorded as interrupted, and the
    # next owner must not take the revision for attempted (it stayed OutOfSync for good).
    assert action_after({"phase": "Running", "syncResult": {"revision": REV}}) == "sync"


def test_a_running_state_rewritten_as_never_started_is_attempted_but_a_real_error_is_not() -> None:
    # The next hub rewrites that Running state as a finished Error the operator can read
    # (``Hub.record_interrupted``); its marker, not its wording, keeps it from counting as
    # an attempt. The same Error without the marker (the engine had begun) still counts.
    running = running_state(REV)
    rewritten = never_started(running, datetime(2026, 12, 3, 10, 5, tzinfo=UTC))
    assert rewritten["phase"] == "Error" and rewritten["interrupted"] == "before-start"
    assert rewritten["startedAt"] == running["startedAt"]
    assert rewritten["syncResult"] == {"revision": REV}
    assert rewritten["finishedAt"] == "2026-12-03T10:05:00+00:00"
    assert last_operation_of(rewritten) is None
    assert action_after(rewritten) == "sync"
    assert action_after({**rewritten, "interrupted": None}) == "none"


def _held(go: bool) -> AutoSyncDecision:
    status = AppStatus(
        app="prod-guestbook",
        status="Pending" if go else "Waiting",
        step=3,
        message="released: may sync" if go else "waits for step 2 to be synced and healthy",
        go=go,
    )
    return decide_auto_sync(
        automated=ON,
        status=SyncStatus.OUT_OF_SYNC,
        revision=NEW,
        last=ok(),
        prune_only=False,
        self_heal_attempts=0,
        now_monotonic=200.0,
        rollout=status,
    )


def test_an_app_held_by_its_rollout_says_so_and_stops_saying_it_when_released() -> None:
    held = _held(go=False)
    assert held.action == "wait"
    conditions = hold_conditions(held, "guestbook")
    assert [(c.type, c.message) for c in conditions] == [
        (
            ROLLOUT_WAITING,
            "automated sync held by the rollout of guestbook: rollout step 3: "
            "waits for step 2 to be synced and healthy",
        )
    ]
    released = _held(go=True)
    assert released.action == "sync"
    assert hold_conditions(released, "guestbook") == []
