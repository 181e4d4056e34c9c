"""The worker's pure decisions: Argo CD's automated-sync rules (``decide_auto_sync``), why
a sync is held (sync windows, a progressive sync) and the condition saying so, and the shapes
recorded for a finished operation. No I/O, except the store reads of ``project_windows_of``,
``window_verdict_of`` and ``rollout_verdict_of`` (their callers run them in a thread)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hub.apps import UNFINISHED_PHASES, AppRecord, AppStore, Condition, started_nothing
from hub.rollout import AppStatus, Asking, rollout_of
from hub.sync.diff import SyncStatus
from hub.sync.engine import OperationResult
from hub.sync.history import OperationPhase, Trigger
from hub.sync.model import Automated
from hub.sync.resources import ResourceKey
from hub.sync.retry import SelfHealBackoff
from hub.sync.windows import (
    SYNC_WINDOW_BLOCKED,
    ProjectWindows,
    WindowTarget,
    WindowVerdict,
    project_windows,
    sync_verdict,
)
from hub.worker.services import SYNC_ERROR, UNSUPPORTED_OPTION, _now


@dataclass(frozen=True, kw_only=True)
class LastOperation:
    """What the worker remembers of an Application's last sync operation."""

    revision: str
    phase: str  # OperationPhase value
    finished_monotonic: float  # time.monotonic() when it finished (0: before this process)
    self_heal: bool = False
    started_monotonic: float = 0.0  # time.monotonic() when it started (0: unknown)
    # It failed while the cluster did not answer (``lost_to_outage``): the failure says
    # nothing of the revision, so the automated sync tries it again.
    cluster_lost: bool = False


#: How long a self-heal waits, after a sync, for the live cache to hear of that sync's own
#: writes (their watch events can still be in flight when the sync ends).
WRITES_HEARD_WAIT_S = 5.0


@dataclass(frozen=True, kw_only=True)
class WrittenObjects:
    """What the last sync of an Application applied, as the worker's live cache held each
    object when the sync ended (``str(ResourceKey)`` -> the cache's key and that object,
    compared by identity), and until when (monotonic) a self-heal waits for the cache to
    hear of those writes."""

    until: float
    seen: Mapping[str, tuple[tuple[str, str, str, str], object]]


def unheard_writes_wait_s(
    written: WrittenObjects | None,
    out_of_sync: Sequence[str],
    cached: Callable[[tuple[str, str, str, str]], object],
    now_monotonic: float,
) -> float:
    """Seconds a self-heal should wait, 0 when it may start.

    A sync ends when its last wave is applied, often before the watch events of those
    applies reach the live cache: a refresh right then compares Git with the objects as
    they were before the sync and finds them OutOfSync, and a self-heal would apply the
    same manifests a second time (10-15% of a 1,000-app commit did, each a second history
    entry saying "self-heal" with no drift). So while an OutOfSync resource the sync
    applied is still the very object the cache held when the sync ended (``cached`` of
    its cache key is the one ``seen``), nothing has been heard since: wait, up to
    ``written.until``.
    Any event for it (the sync's own, or a real drift after it) replaces the object and
    lets the heal decide on what the cluster holds now."""
    if written is None or now_monotonic >= written.until:
        return 0.0
    for key in out_of_sync:
        seen = written.seen.get(key)
        if seen is not None and cached(seen[0]) is seen[1]:
            return written.until - now_monotonic
    return 0.0


def lost_to_outage(last: LastOperation, quiet_since: float, answered_at: float) -> bool:
    """Did this operation fail while its cluster was not answering: from the cluster's
    last answer before an outage (``quiet_since``) until it answered again
    (``answered_at``)? A sync started before a hang is detected runs into it (its
    requests time out), and one sent during it may time out after the cluster is back;
    either ran during the outage. One that failed before the cluster's last answer failed
    on its own."""
    return (
        last.phase != OperationPhase.SUCCEEDED.value
        and last.finished_monotonic >= quiet_since
        and last.started_monotonic <= answered_at
    )


@dataclass(frozen=True, kw_only=True)
class AutoSyncDecision:
    action: Literal["none", "sync", "self-heal", "wait"]
    reason: str
    delay_s: float = 0.0
    window: WindowVerdict | None = None  # set when a sync window holds the sync
    rollout: AppStatus | None = None  # set when the set's progressive sync holds the sync


def _rollout_hold(rollout: AppStatus | None) -> AutoSyncDecision | None:
    if rollout is None or rollout.go:
        return None
    return AutoSyncDecision(
        action="wait", reason=f"rollout step {rollout.step}: {rollout.message}", rollout=rollout
    )


def _window_hold(window: WindowVerdict | None) -> AutoSyncDecision | None:
    if window is None or window.automated:
        return None
    return AutoSyncDecision(
        action="wait", reason=window.reason, delay_s=window.wait_s, window=window
    )


ROLLOUT_WAITING = "RolloutWaiting"


def hold_conditions(decision: AutoSyncDecision | None, appset: str | None) -> list[Condition]:
    """The condition saying why an automated sync waits for a sync window
    (``SyncWindowBlocked``) or for the progressive sync of ``appset`` (``RolloutWaiting``,
    naming the set and the app's step); none once it may sync (the next status write
    drops it)."""
    if decision is None:
        return []
    if decision.rollout is not None:
        message = f"automated sync held by the rollout of {appset}: {decision.reason}"
        return [Condition(type=ROLLOUT_WAITING, message=message)]
    if decision.window is not None:
        message = f"automated sync held: {decision.reason}"
        return [Condition(type=SYNC_WINDOW_BLOCKED, message=message)]
    return []


def decide_auto_sync(
    *,
    automated: Automated | None,
    status: SyncStatus,
    revision: str,
    last: LastOperation | None,
    prune_only: bool,
    self_heal_attempts: int,
    now_monotonic: float,
    operation_running: bool = False,
    backoff: SelfHealBackoff | None = None,
    window: WindowVerdict | None = None,
    rollout: AppStatus | None = None,
) -> AutoSyncDecision:
    """Argo CD's automated sync rules (``autoSync`` in appcontroller.go), as a pure function.

    - only with automated sync enabled, only when OutOfSync and no operation is running;
    - a diff that only needs pruning is left alone unless ``prune`` is on;
    - a revision not attempted yet is synced;
    - a revision already attempted and failed is not attempted again (the operation's own
      retry policy covers retries); a new commit or a manual sync moves on; except an
      attempt that failed while the cluster did not answer (``cluster_lost``): once the
      cluster answers again it is tried again, as if never attempted;
    - drift after a successful sync of the same revision is healed only with ``selfHeal``,
      the k-th heal waiting the self-heal backoff from the previous sync;
    - a sync or heal that would start waits while the project's sync windows (``window``,
      the verdict for this app now) hold automated syncs, until they may lift;
    - so does the progressive sync of the app's ApplicationSet (``rollout``, this app's
      status in it) until it releases the app's step.
    """
    if automated is None or not automated.enabled:
        return AutoSyncDecision(action="none", reason="automated sync is off")
    if operation_running:
        return AutoSyncDecision(action="none", reason="an operation is running")
    if status is not SyncStatus.OUT_OF_SYNC:
        return AutoSyncDecision(action="none", reason=f"status is {status.value}")
    if prune_only and not automated.prune:
        return AutoSyncDecision(
            action="none", reason="only pruning needed and automated prune is off"
        )
    if last is None or last.revision != revision:
        return (
            _rollout_hold(rollout)
            or _window_hold(window)
            or AutoSyncDecision(action="sync", reason=f"new revision {revision[:12]}")
        )
    if last.phase != OperationPhase.SUCCEEDED.value and last.cluster_lost:
        return (
            _rollout_hold(rollout)
            or _window_hold(window)
            or AutoSyncDecision(
                action="sync",
                reason=f"revision {revision[:12]} again: the cluster stopped answering "
                "during its last attempt",
            )
        )
    if last.phase != OperationPhase.SUCCEEDED.value:
        return AutoSyncDecision(
            action="none",
            reason=f"sync of revision {revision[:12]} already attempted ({last.phase})",
        )
    if not automated.self_heal:
        return AutoSyncDecision(action="none", reason="drift seen; selfHeal is off")
    rules = backoff or SelfHealBackoff()
    since = now_monotonic - last.finished_monotonic if last.finished_monotonic else 1e9
    wait = rules.remaining_s(self_heal_attempts, since)
    if wait > 0:
        return AutoSyncDecision(action="wait", reason="self-heal backoff", delay_s=wait)
    return (
        _rollout_hold(rollout)
        or _window_hold(window)
        or AutoSyncDecision(action="self-heal", reason="drift from Git")
    )


def last_operation_of(state: Mapping[str, Any] | None) -> LastOperation | None:
    """The last operation recorded in an Application's ``operation_state`` (after a restart
    its time is unknown: counted as long ago).

    Two states are no attempt of their revision, which is tried again:

    - one marked ``interrupted: before-start`` (``hub.apps.BEFORE_START``): its hub stopped
      after the worker wrote the running state and before the engine recorded the operation
      or applied anything; the next hub (or the replica taking the cluster over) rewrote it
      as Error so the operator sees it finished (``Hub.record_interrupted``);
    - one still Running (or Terminating): a worker loads it only after its hub has recorded
      every operation the engine had begun as Error and rewritten the rest as above, so what
      is left is the worker's own sync in flight, kept from starting twice by ``_syncing``.

    Counting either as an attempt left the revision OutOfSync for good, nothing recorded."""
    if not state or started_nothing(state):
        return None
    revision = str((state.get("syncResult") or {}).get("revision") or "")
    phase = str(state.get("phase") or "")
    if not revision or not phase or phase in UNFINISHED_PHASES:
        return None
    return LastOperation(
        revision=revision,
        phase=phase,
        finished_monotonic=0.0,
        self_heal=state.get("trigger") == Trigger.SELF_HEAL.value,
    )


def project_windows_of(apps: AppStore, project: str) -> ProjectWindows:
    """The sync windows of a stored AppProject (none when the project is not stored: the
    implicit 'default' project has no windows)."""
    record = apps.get_project(project)
    if record is None:
        return ProjectWindows(project=project)
    return project_windows(
        record.manifest, project=record.name, file=f"{record.source}:{record.file}"
    )


def window_target(rec: AppRecord) -> WindowTarget:
    """What sync windows match for an Application: its name and destination, the cluster
    known by its spec.destination.name and by the name it is registered under."""
    return WindowTarget(
        app=rec.name,
        namespace=rec.namespace,
        server=rec.dest_server,
        cluster_names=tuple(n for n in (rec.dest_name, rec.cluster) if n),
    )


def window_verdict_of(apps: AppStore, rec: AppRecord) -> WindowVerdict:
    """What the sync windows of ``rec``'s project say now (reads the store)."""
    return sync_verdict(project_windows_of(apps, rec.project), window_target(rec), _now())


def rollout_verdict_of(
    apps: AppStore, rec: AppRecord, revision: str, sync: str
) -> AppStatus | None:
    """What the progressive sync of ``rec``'s set says of it now, about to sync ``revision``
    (None when the set has no RollingSync strategy)."""
    if rec.appset is None:
        return None
    rollout = rollout_of(
        apps, rec.appset, asking=Asking(name=rec.name, revision=revision, sync=sync)
    )
    return None if rollout is None else rollout.of(rec.name)


def operation_state(result: OperationResult, trigger: Trigger, who: str) -> dict[str, Any]:
    """Argo CD's ``status.operationState`` shape for a finished operation."""
    return {
        "operationId": result.operation_id,
        "phase": result.phase.value,
        "message": result.message,
        "trigger": trigger.value,
        "initiatedBy": {"username": who, "automated": trigger is not Trigger.USER},
        "startedAt": result.started_at.isoformat(),
        "finishedAt": result.finished_at.isoformat(),
        "syncResult": {
            "revision": result.revision,
            "resources": [r.to_json() for r in result.resources],
        },
        "retryCount": result.attempts - 1,
        "historyId": result.history_id,
    }


def once_conditions(result: OperationResult) -> list[Condition]:
    """The app's conditions after a ``--once`` sync (no compare follows it)."""
    if result.phase is not OperationPhase.SUCCEEDED:
        return [Condition(type=SYNC_ERROR, message=result.message)]
    confirm = [
        str(ResourceKey(group=r.group, kind=r.kind, namespace=r.namespace, name=r.name))
        for r in result.resources
        if r.status == "PruneSkipped" and "Prune=confirm" in r.message
    ]
    return [prune_confirm_condition(confirm)] if confirm else []


def prune_confirm_condition(keys: Sequence[str]) -> Condition:
    """``Prune=confirm`` is refused in words: nothing can confirm, so say what to do."""
    return Condition(
        type=UNSUPPORTED_OPTION,
        message=(
            f"{', '.join(keys)}: Prune=confirm asks for a confirmation gitops-hub cannot give "
            "(there is no confirm command), so they are never pruned; remove Prune=confirm "
            "from their argocd.argoproj.io/sync-options to let them be pruned, or write "
            "Prune=false to keep them"
        ),
    )
