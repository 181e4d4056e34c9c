"""One wave of a plan: its prunes and BeforeHookCreation deletes (waited until gone before
a hook is re-created), then its applies one by one in plan order, then the health gate."""

from __future__ import annotations

from clusters.kube import KubeError, Transient
from hub.sync.apply import apply_task, delete_task
from hub.sync.gate import gate
from hub.sync.operation import EventKind, GateItem, ProgressEvent, Run, rejected, rejection
from hub.sync.plan import Action, PlanWave
from hub.sync.resources import ignores_health


async def run_wave(run: Run, wave: PlanWave, *, wait_health: bool) -> str | None:
    """Run ``wave``; the failure message, or None."""
    run.emit(
        ProgressEvent(
            kind=EventKind.WAVE,
            phase=wave.phase.value,
            wave=wave.wave,
            message=wave.title,
            waits=wait_health,
        )
    )
    removals: list[GateItem] = []
    for task in wave.tasks:
        run.check()
        if task.skip:
            run.result(
                task, "PruneSkipped" if task.action is Action.PRUNE else "Skipped", task.skip
            )
            continue
        if task.action is Action.PRUNE:
            policy = task.options.prune_propagation.capitalize()
            item = await delete_task(run, task, policy)  # type: ignore[arg-type]
            run.result(task, "Pruned", f"deleted ({policy} propagation)")
            removals.append(item)
            run.pruned.append(item)
        elif task.action is Action.DELETE:
            item = await delete_task(run, task, "Background")
            run.result(task, "Deleting", "BeforeHookCreation: deleting the previous hook")
            removals.append(item)
    if removals:
        run.writes_out()  # deletes are writes: what waits next is the cluster
    # A hook may only be re-created once its previous object is gone.
    blocking = [i for i in removals if i.task.action is Action.DELETE or wait_health]
    failure = await gate(run, blocking)
    if failure:
        return failure
    for item in removals:
        if item.task.action is Action.DELETE:
            run.result(item.task, "Deleted", "previous hook deleted")
    applied: list[GateItem] = []
    for task in wave.tasks:
        if task.action is not Action.APPLY or task.skip:
            continue
        run.check()
        try:
            item = await apply_task(run, task)
        except KubeError as exc:
            if task is run.unverified_write and not isinstance(exc, Transient):
                # The plan's first change, not dry-run: refused, it changed nothing, and
                # neither did the applies before it (objects already as declared).
                run.wrote = False
                raise rejected(
                    [rejection(task, exc)],
                    by="first write",
                    applied_unchanged=run.applied_unchanged,
                ) from None
            run.result(task, "SyncFailed", str(exc))
            return f"{task.key}: {exc}"
        if task.unchanged:
            run.applied_unchanged += 1
        verb = "created" if task.hook else ("replaced" if task.options.replace else "applied")
        run.result(task, "Running" if task.hook else "Synced", verb)
        if task.hook or (
            wait_health
            and not ignores_health(task.desired)
            and run.rules.has_check(task.key.group, task.key.kind)
        ):
            applied.append(item)
    run.writes_out()  # the wave's writes are out: its health gate waits on the cluster
    return await gate(run, applied)
