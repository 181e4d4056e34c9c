"""How an operation ends: its ``OperationResult``, the app's sync status and health after
it (a final health wait within the timeout when asked), and its history entry."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial

from clusters.kube import KubeError
from hub.sync.diff import SyncStatus
from hub.sync.gate import gate
from hub.sync.health import HealthStatus, app_health
from hub.sync.history import HistoryEntry, OperationPhase
from hub.sync.live import compare, read_live
from hub.sync.operation import (
    DEFAULT_HEALTH_WAIT_S,
    STATUS_READ_S,
    EventKind,
    GateItem,
    OperationResult,
    ProgressEvent,
    Run,
    Stop,
)
from hub.sync.plan import Action, SyncTask
from hub.sync.resources import Phase, ResourceKey, ignores_health, is_hook
from hub.sync.validate import SourcedManifest


def result_of(run: Run, phase: OperationPhase, message: str, code: int = 1) -> OperationResult:
    return OperationResult(
        operation_id=run.operation_id,
        app=run.app.name,
        cluster=run.cluster,
        phase=phase,
        message=message,
        revision=run.revision,
        started_at=run.started_at,
        finished_at=datetime.now(UTC),
        resources=tuple(run.results.values()),
        plan_text=run.plan_text,
        exit_code=code,
    )


async def finish(run: Run, result: OperationResult) -> OperationResult:
    """The app's status after the operation, its history entry, the final event."""
    sync_status: SyncStatus | None = None
    health: HealthStatus | None = None
    if run.rendered is not None and run.request.status_after:
        wait = (
            result.phase is OperationPhase.SUCCEEDED
            and run.request.wait_healthy
            and not run.request.dry_run
        )
        saved = run.deadline
        if not wait and saved is not None:
            # A sync that ran out of time still reports the state it left behind.
            run.deadline = max(saved, time.monotonic() + STATUS_READ_S)
        try:
            sync_status, health = await _app_status(run, wait=wait)
        except (KubeError, Stop) as exc:
            run.emit(ProgressEvent(kind=EventKind.WARNING, message=f"app status: {exc}"))
        finally:
            run.deadline = saved
    result = replace(result, sync_status=sync_status, health=health)
    if run.limits.cluster_done is not None:
        # What is left is the record: it needs no cluster, and waiting for its turn below
        # while holding a sync slot would keep a sync on its way to a write from starting
        # (hub.worker.slots).
        run.limits.cluster_done()
    if run.history is not None and not run.request.dry_run:
        if run.limits.writes_first is not None:
            # the record can wait while other syncs make their way to their writes
            await run.limits.writes_first.wait_turn()
        history = run.history
        record = run.operation(result.phase, result.message)
        recorded = run.request.on_recorded
        done = result  # (the closure below must not see the rebinding of ``result``)

        def caller_writes(entry: HistoryEntry) -> None:
            if recorded is not None:
                recorded(replace(done, history_id=entry.id))

        entry = await run.store(
            lambda: history.record(
                record,
                finished_at=done.finished_at,
                manifests=run.rendered,
                limit=run.app.revision_history_limit,
                also=caller_writes,
            )
        )
        result = replace(result, history_id=entry.id)
    run.emit(
        ProgressEvent(kind=EventKind.OPERATION, result=result.phase.value, message=result.message)
    )
    return result


async def _app_status(run: Run, *, wait: bool) -> tuple[SyncStatus, HealthStatus]:
    assert run.rendered is not None
    valid = [SourcedManifest(obj=m) for m in run.rendered]
    if wait:
        # Settle app health within the sync's timeout (``hub app sync`` waits, as
        # ``argocd app sync`` does); a Degraded resource ends the wait at once.
        items = []
        for m in valid:
            key = m.key
            if not key.name or not run.rules.has_check(key.group, key.kind):
                continue
            if ignores_health(m.obj) or is_hook(m.obj):
                continue
            try:
                res = await run.call(partial(run.kube.resource_of, m.obj))
            except KubeError:
                continue
            task = SyncTask(action=Action.APPLY, phase=Phase.SYNC, wave=0, key=key, desired=m.obj)
            items.append(GateItem(task=task, res=res))
        quiet, run.emit = run.emit, (lambda _e: None)
        saved = run.deadline
        if saved is None:
            # the operation is over; never hang on a resource that stays Progressing
            run.deadline = time.monotonic() + DEFAULT_HEALTH_WAIT_S
        try:
            await gate(run, items, fail_on_degraded=True)
        except Stop:
            pass
        finally:
            run.emit, run.deadline = quiet, saved
    if wait or run.wrote or run.compared is None:
        live = await read_live(run, valid)
        comparison = await compare(run, valid, live)
    else:
        live, comparison = run.compared
    by_key = {ResourceKey.of(o): o for o in live}
    pairs = [(m.obj, by_key.get(m.key)) for m in valid if m.key.name]
    return comparison.status, app_health(pairs, run.rules).status
