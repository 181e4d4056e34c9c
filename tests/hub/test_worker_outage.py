"""A sync that failed while its cluster did not answer does not use up its revision's one
automated attempt (``hub.worker.decisions.lost_to_outage``, ``LastOperation.cluster_lost``):
once the cluster answers again the automated sync tries that revision again. End to end:
tests/e2e/test_hung_cluster.py."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hub.rollout import AppStatus
from hub.sync.diff import SyncStatus
from hub.sync.model import Automated
from hub.worker import AutoSyncDecision, LastOperation, decide_auto_sync
from hub.worker.decisions import lost_to_outage

REV = "a" * 40
ON = Automated(prune=True, self_heal=True)
QUIET, BACK = 100.0, 160.0  # the cluster's last answer before the outage; its first after


def op(phase: str, started: float, finished: float) -> LastOperation:
    return LastOperation(
        revision=REV, phase=phase, started_monotonic=started, finished_monotonic=finished
    )


@pytest.mark.parametrize(
    ("last", "lost"),
    [
        # started before the hang was known, its requests timed out during it
        (op("Failed", 95.0, 130.0), True),
        (op("Error", 101.0, 131.0), True),
        # its last request, sent during the hang, timed out after the cluster was back
        (op("Failed", 120.0, 170.0), True),
        # failed before the cluster's last answer: its own failure
        (op("Failed", 80.0, 90.0), False),
        # started once the cluster answered again
        (op("Failed", 165.0, 170.0), False),
        # a sync that succeeded is no business of the outage's
        (op("Succeeded", 95.0, 130.0), False),
        # recorded before this process (after a restart): times unknown
        (op("Failed", 0.0, 0.0), False),
    ],
)
def test_a_failure_is_the_outages_when_the_sync_ran_while_the_cluster_was_silent(
    last: LastOperation, lost: bool
) -> None:
    assert lost_to_outage(last, QUIET, BACK) is lost


def decide(last: LastOperation) -> AutoSyncDecision:
    return decide_auto_sync(
        automated=ON,
        status=SyncStatus.OUT_OF_SYNC,
        revision=REV,
        last=last,
        prune_only=False,
        self_heal_attempts=0,
        now_monotonic=200.0,
    )


def test_a_revision_whose_attempt_the_outage_failed_is_synced_again() -> None:
    failed = op("Failed", 95.0, 130.0)
    assert decide(failed).action == "none"  # the one-attempt rule, as in Argo CD
    again = decide(replace(failed, cluster_lost=True))
    assert again.action == "sync"
    assert "stopped answering" in again.reason


def test_the_retry_after_an_outage_still_waits_for_what_holds_any_sync() -> None:
    waiting = AppStatus(
        app="prod-guestbook", status="Waiting", step=2, message="waits for step 1", go=False
    )
    decision = decide_auto_sync(
        automated=ON,
        status=SyncStatus.OUT_OF_SYNC,
        revision=REV,
        last=replace(op("Failed", 95.0, 130.0), cluster_lost=True),
        prune_only=False,
        self_heal_attempts=0,
        now_monotonic=200.0,
        rollout=waiting,
    )
    assert decision.action == "wait"
