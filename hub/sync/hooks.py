"""The hook lifecycle around an attempt: SyncFail hooks after a failure, then the cleanup of
every hook the operation created (our finalizer freed, delete policies keyed to the
operation's result, as Argo CD does). Cleanup runs even when the operation was cancelled."""

from __future__ import annotations

import time
from functools import partial

import anyio

from clusters.kube import KubeError
from hub.sync.apply import remove_finalizer
from hub.sync.live import read_live
from hub.sync.operation import (
    DEFAULT_SYNC_FAIL_TIMEOUT_S,
    CancelToken,
    EventKind,
    ProgressEvent,
    Run,
    Stop,
)
from hub.sync.plan import PlanWave, SyncTask, plan_sync
from hub.sync.resources import HookDeletePolicy
from hub.sync.validate import SourcedManifest
from hub.sync.wave import run_wave


async def sync_fail(run: Run, message: str) -> str:
    """Run SyncFail hooks after a failure; their own failure is added to the message."""
    if run.cancel.cancelled:
        return message
    try:
        tasks = await _sync_fail_tasks(run)
    except (KubeError, Stop):
        return message
    if not tasks:
        return message
    run.emit(ProgressEvent(kind=EventKind.PHASE, phase="SyncFail", message="SyncFail"))
    saved = run.deadline
    run.deadline = time.monotonic() + max(
        DEFAULT_SYNC_FAIL_TIMEOUT_S, (saved - time.monotonic()) if saved else 0.0
    )
    failure: str | None = None
    with anyio.CancelScope() as scope:
        unbind = run.cancel.bind(scope)
        try:
            failure = await run_wave(
                run, PlanWave(phase=tasks[0].phase, wave=0, tasks=tuple(tasks)), wait_health=True
            )
        except (Stop, KubeError) as exc:
            failure = str(exc)
        finally:
            unbind()
            run.deadline = saved
    return message + (f"; SyncFail hook failed: {failure}" if failure else "")


async def _sync_fail_tasks(run: Run) -> tuple[SyncTask, ...]:
    # Re-planned so live hooks left by a previous run are seen (BeforeHookCreation).
    if run.rendered is None:
        return ()
    valid = [SourcedManifest(obj=m) for m in run.rendered]
    live = await read_live(run, valid)
    plan = plan_sync(
        app=run.app.name,
        desired=valid,
        live=live,
        revision=run.revision,
        started_at=int(run.started_at.timestamp()),
        options=run.app.sync_policy.sync_options,
    )
    return plan.sync_fail


async def hook_cleanup(run: Run, *, succeeded: bool) -> None:
    """Free our finalizer on every hook of this operation, then apply the delete
    policies keyed to the operation's result (as Argo CD does)."""
    wanted = HookDeletePolicy.HOOK_SUCCEEDED if succeeded else HookDeletePolicy.HOOK_FAILED
    saved_cancel, run.cancel = run.cancel, CancelToken()  # cleanup runs even when cancelled
    saved_deadline, run.deadline = run.deadline, time.monotonic() + 60.0
    kube = run.kube
    try:
        for key, task in list(run.hooks_created.items()):
            try:
                res = await run.call(partial(kube.resource_of, task.desired or {}))
                if key not in run.hooks_freed:
                    await remove_finalizer(run, res, key)
                if wanted in task.hook_delete_policies:
                    await run.call(
                        lambda: kube.delete(
                            res,  # noqa: B023
                            key.name,  # noqa: B023
                            key.namespace,  # noqa: B023
                            propagation="Background",
                        )
                    )
                    run.emit(
                        ProgressEvent(
                            kind=EventKind.RESOURCE,
                            phase=task.phase.value,
                            wave=task.wave,
                            resource=key,
                            action="delete",
                            result="Deleted",
                            message=f"hook deleted ({wanted.value})",
                        )
                    )
            except (KubeError, Stop) as exc:
                run.emit(
                    ProgressEvent(kind=EventKind.WARNING, message=f"hook {key} cleanup: {exc}")
                )
        run.hooks_created.clear()
        run.hooks_freed.clear()
    finally:
        run.cancel, run.deadline = saved_cancel, saved_deadline
