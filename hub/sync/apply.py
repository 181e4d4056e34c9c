"""The writes of one task: server-side apply (or PUT for ``Replace=true``, create for a hook),
delete with a propagation policy, and taking our hook finalizer off an object.

A hook is created under its deterministic name; an earlier attempt's hook of the same
operation (a Conflict) is reused, never run twice."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from clusters.kube import ApiResource, Conflict, NotFound, PropagationPolicy
from hub.sync.operation import GateItem, Run
from hub.sync.plan import SyncTask
from hub.sync.resources import FIELD_MANAGER, HOOK_FINALIZER, ResourceKey


async def apply_task(run: Run, task: SyncTask) -> GateItem:
    assert task.desired is not None
    run.wrote = True
    obj = task.desired
    kube = run.kube
    res = await run.call(lambda: kube.resource_of(obj))
    if task.hook:
        try:
            out = await run.call(lambda: kube.create(obj))
        except Conflict:
            # Created by an earlier attempt of this same operation (deterministic name):
            # reuse it rather than run the hook twice.
            out = await run.call(lambda: kube.get(res, task.key.name, task.key.namespace))
        run.hooks_created[task.key] = task
    elif task.options.replace:
        out = await run.call(lambda: kube.replace(obj))
    else:
        out = await run.call(
            lambda: kube.apply(obj, field_manager=FIELD_MANAGER, force=run.request.force_conflicts)
        )
    gen = (out.get("metadata") or {}).get("generation")
    return GateItem(task=task, res=res, generation=gen if isinstance(gen, int) else None)


async def delete_task(run: Run, task: SyncTask, propagation: PropagationPolicy) -> GateItem:
    run.wrote = True
    live = task.live or {}
    kube = run.kube
    res = await run.call(lambda: kube.resource_of(live or {"apiVersion": "v1"}))
    if task.live_hook_finalizer:
        await remove_finalizer(run, res, task.key)
    await run.call(
        lambda: kube.delete(res, task.key.name, task.key.namespace, propagation=propagation)
    )
    return GateItem(task=task, res=res, gone=True)


async def remove_finalizer(
    run: Run, res: ApiResource, key: ResourceKey, obj: Mapping[str, Any] | None = None
) -> bool:
    """Take our hook finalizer off ``key``; ``obj``, when given, is a recent read of it
    (a stale one only costs a Conflict and a GET). True once the finalizer is gone."""
    kube = run.kube
    for _ in range(5):
        if obj is None:
            obj = await run.call(lambda: kube.get_or_none(res, key.name, key.namespace))
            if obj is None:
                return True
        meta = obj.get("metadata") or {}
        finalizers = list(meta.get("finalizers") or [])
        if HOOK_FINALIZER not in finalizers:
            return True
        patch = {
            "metadata": {
                "finalizers": [f for f in finalizers if f != HOOK_FINALIZER],
                "resourceVersion": meta.get("resourceVersion"),
            }
        }
        try:
            await run.call(partial(kube.merge_patch, res, key.name, key.namespace, patch))
            return True
        except Conflict:
            obj = None  # changed meanwhile: read again
        except NotFound:
            return True
    return False
