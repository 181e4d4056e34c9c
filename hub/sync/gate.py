"""The health gate: wait, on a watch cache, until every object of a wave is done.

An applied object is done once Healthy (judged only when ``status.observedGeneration``
reached the ``metadata.generation`` our write returned: ``health.gate_health``); Degraded
fails the wave; a hook completes by its health, after which our hook finalizer is taken
off. A deleted object (prune, a hook's BeforeHookCreation) is done once gone.

The gate reads the caller's ``LiveState`` (the worker's cache) when it holds every kind
gated; otherwise (a CLI one-shot, or a kind the worker does not watch yet) the operation's
own ``clusters.cache.LiveCache`` lists and watches those kinds for as long as the
operation runs. One live-view implementation, no watch threads. The gate sleeps until the
cache changes (``changed``), the deadline, or — while deletions are pending — the next
``GONE_CONFIRM_S`` look-up; a cancel of the operation interrupts it at once.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping
from functools import partial
from typing import Any

from clusters.cache import LiveCache
from clusters.kube import ApiResource, KubeError, Transient
from hub.sync.apply import remove_finalizer
from hub.sync.health import Outcome, gate_health, task_outcome
from hub.sync.history import OperationPhase
from hub.sync.operation import (
    DEFAULT_PRUNE_WAIT_S,
    GATE_POLL_S,
    GONE_CONFIRM_S,
    EventKind,
    GateItem,
    LiveState,
    ProgressEvent,
    Run,
    Stop,
)
from hub.sync.resources import ResourceKey, owning_app
from hub.sync.retry import retry_delay_s

IDLE_S = 30.0  # longest sleep of a gate with nothing to confirm (the deadline cuts it)


async def gate(run: Run, items: list[GateItem], *, fail_on_degraded: bool = True) -> str | None:
    """Wait until every item is done; the failure message, or None."""
    pending = [i for i in items if not i.done]
    if not pending:
        return None
    cache: LiveState | None = run.live_state
    if cache is None or not all(cache.is_current(_gk(i.res)) for i in pending):
        cache = await _own_cache(run, [i.res for i in pending])
    confirm_at = time.monotonic() + GONE_CONFIRM_S
    while True:
        version = cache.version  # read before the state: a change after it wakes us
        confirm = time.monotonic() >= confirm_at
        if confirm:
            confirm_at = time.monotonic() + GONE_CONFIRM_S
        state: dict[ResourceKey, dict[str, Any] | None] = {}
        for item in pending:
            key = item.task.key
            live_key = (key.group, key.kind, key.namespace, key.name)
            obj = cache.get_tracked(live_key)
            if obj is None and item.gone and cache.exists(live_key):
                obj = {}  # still there, though no longer carrying our tracking id
            if obj is not None and item.gone and not item.done and confirm:
                res = item.res
                obj = await run.call(partial(run.kube.get_or_none, res, key.name, key.namespace))
            state[key] = obj
        failure = await evaluate(run, pending, state, fail_on_degraded)
        if failure is not None or all(i.done for i in pending):
            return failure
        run.check()
        if run.own_cache is not None and run.own_cache_error:
            return run.own_cache_error
        wait = IDLE_S
        if any(i.gone and not i.done for i in pending):
            wait = max(0.0, confirm_at - time.monotonic())
        await cache.changed(version, run.left(wait))


def _gk(res: ApiResource) -> tuple[str, str]:
    return (res.group, res.kind)


async def _own_cache(run: Run, resources: list[ApiResource]) -> LiveCache:
    """The operation's own cache, watching ``resources`` (each kind once), once listed."""
    cache: LiveCache | None = run.own_cache
    if cache is None:
        # The run holds its cache, so the cache's callback holds the run weakly: a strong
        # one would make run -> cache -> callback -> run a reference cycle, and the run
        # (its live reads, comparisons, results) would wait for a full garbage collection.
        owner = weakref.ref(run)

        def state(res: ApiResource, error: KubeError | None) -> None:
            alive = owner()
            if error is None or alive is None:
                return
            if isinstance(error, Transient):
                alive.emit(
                    ProgressEvent(kind=EventKind.RETRY, message=f"watch {res.plural}: {error}")
                )
            else:
                alive.own_cache_error = f"watching {res.plural}: {error}"

        # the plain client: the cache retries on its own, with the app's back-off (a
        # gate must not sit out the worker's longer one)
        policy = run.api_policy
        cache = LiveCache(
            run.kube.with_retry(None),
            owner_of=owning_app,
            on_change=lambda _apps: None,
            on_state=state,
            backoff=lambda failures: retry_delay_s(policy, min(max(0, failures - 1), 30)),
        )
        run.own_cache = cache
    for res in resources:
        if cache.add_kind(res):
            run.watch(partial(cache.run_kind, res), name=f"gate watch {res.plural}")
    while not all(cache.is_current(_gk(r)) for r in resources):
        if run.own_cache_error:
            raise Stop(run.own_cache_error, phase=OperationPhase.FAILED, retryable=True)
        version = cache.version
        run.check()
        await cache.changed(version, run.left(GATE_POLL_S))
    return cache


async def evaluate(
    run: Run,
    pending: list[GateItem],
    state: Mapping[ResourceKey, dict[str, Any] | None],
    fail_on_degraded: bool,
) -> str | None:
    for item in pending:
        if item.done:
            continue
        task = item.task
        obj = state.get(task.key)
        if item.gone:
            item.done = obj is None
            continue
        health = gate_health(obj, run.rules, written_generation=item.generation)
        outcome = task_outcome(health, hook=task.hook)
        status = None if health is None else health.status.value
        if status != item.last_health:
            item.last_health = status
            if outcome is Outcome.RUNNING:
                run.result(task, "Running", health.message if health else "", status)
        if outcome is Outcome.RUNNING:
            continue
        item.done = True
        if task.hook and not item.finalizer_removed:
            item.finalizer_removed = True
            if await remove_finalizer(run, item.res, task.key, obj):
                run.hooks_freed.add(task.key)
        msg = health.message if health else ""
        if outcome is Outcome.FAILED:
            run.result(task, "Failed" if task.hook else "Synced", msg, status)
            if fail_on_degraded:
                what = "hook" if task.hook else "resource"
                return f"{what} {task.key} is {status}: {msg or 'no message'}"
        else:
            run.result(task, "Succeeded" if task.hook else "Synced", msg, status)
    return None


async def await_pruned(run: Run) -> None:
    """Keep the operation running until every pruned object is gone, as gitops-engine
    does ("pending deletion"): a real cluster finishes a foreground or background
    deletion later (its garbage collector, finalizers), and the sync status is judged
    on what remains. Bounded by the sync timeout, else ``DEFAULT_PRUNE_WAIT_S``."""
    pending = [i for i in run.pruned if not i.done]
    if not pending:
        return
    first = pending[0].task.key
    what = f"{first.kind} {first.namespace + '/' if first.namespace else ''}{first.name}"
    if len(pending) > 1:
        what += f" and {len(pending) - 1} more"
    message = f"waiting for deletion of {what}"
    run.emit(ProgressEvent(kind=EventKind.OPERATION, message=message))
    if run.history is not None:
        await run.store(run.history.update, run.operation(OperationPhase.RUNNING, message))
    saved = run.deadline
    if saved is None:
        run.deadline = time.monotonic() + DEFAULT_PRUNE_WAIT_S
    try:
        failure = await gate(run, pending)
    except Stop:
        if run.cancel.cancelled:
            raise
        limit = run.request.timeout_s or DEFAULT_PRUNE_WAIT_S
        left = ", ".join(str(i.task.key) for i in pending if not i.done)
        raise Stop(
            f"timed out after {limit:g}s waiting for pruned objects to be deleted (still "
            f"present: {left}; a finalizer may hold them)",
            phase=OperationPhase.FAILED,
            retryable=False,
        ) from None
    finally:
        run.deadline = saved
    if failure:
        raise Stop(failure, phase=OperationPhase.FAILED, retryable=True)
