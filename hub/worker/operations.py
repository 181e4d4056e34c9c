"""The worker's operation runner: one sync of an Application through the engine on the
worker's loop, under the per-cluster and hub-wide in-flight limits, its running state and
progress, its record; the same runner serves ``hub serve`` and ``hub serve --once``
(``sync_all_once``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial

import anyio
import anyio.abc

from clusters.cache import LiveCache
from clusters.errors import ClusterError
from hub.apps import AppRecord, Condition, StatusUpdate
from hub.errors import HubError
from hub.sync.diff import SyncStatus
from hub.sync.engine import (
    CancelToken,
    EventKind,
    OperationResult,
    ProgressEvent,
    SyncRequest,
    sync_application,
)
from hub.sync.history import OperationPhase, Trigger
from hub.sync.model import Application, SyncError
from hub.sync.resources import ResourceKey
from hub.worker.decisions import (
    WRITES_HEARD_WAIT_S,
    LastOperation,
    WrittenObjects,
    once_conditions,
    operation_state,
    rollout_verdict_of,
)
from hub.worker.services import (
    COMPARISON_ERROR,
    DELETION_ERROR,
    SYNC_ERROR,
    Desired,
    ManualSync,
    _now,
)
from hub.worker.slots import limiter_slot
from hub.worker.state import WorkerState

log = logging.getLogger("hub.worker")  # one logger for the package (see ClusterWorker)


# A sync's progress message is written once it stood this long: most syncs end sooner,
# and their end writes the operation's state anyway (one store transaction fewer each).
PROGRESS_SETTLE_S = 1.0


class _EndWrites:
    """An operation's status writes at its two ends, made inside the engine's store
    transactions (``SyncRequest.on_started``, ``on_recorded``): so they run where those
    run (the worker's loop or a store thread), one after the other, never together.

    ``begin`` is the running state after the app's refresh result still pending
    (``pending``): when the start is never written (a render error ends the sync before
    it), the end carries that result instead."""

    def __init__(
        self,
        write: Callable[[list[StatusUpdate]], None],
        begin: StatusUpdate,
        pending: StatusUpdate | None,
        final: Callable[[OperationResult], StatusUpdate],
    ) -> None:
        self._write = write
        self.begin = begin
        self._pending = pending
        self._final = final
        self.begun = False
        self.ended: OperationResult | None = None

    def started(self) -> None:
        self._write([self.begin])
        self.begun = True

    def recorded(self, result: OperationResult) -> None:
        self._write([self.unwritten(self._final(result))])
        self.ended = result

    def unwritten(self, update: StatusUpdate) -> StatusUpdate:
        """``update`` after the pending refresh result, unless the start wrote it."""
        if self.begun or self._pending is None:
            return update
        return self._pending.then(update)


class SettledProgress:
    """A running operation's progress writer: the latest wave or retry message is written
    once no newer one came for ``settle_s``; writes never overlap and keep their order;
    ``close()`` (the operation's end) drops a message still settling or waiting, since the
    operation's final state is written next. A timer per message, not a task and a stream
    per operation: most syncs end before their first message settles, yet each started a
    writer that waited for it. Asyncio's timer: the hub runs on asyncio (or uvloop) only."""

    def __init__(
        self,
        writers: anyio.abc.TaskGroup,
        write: Callable[[str], Awaitable[None]],
        *,
        settle_s: float = PROGRESS_SETTLE_S,
    ) -> None:
        self._writers = writers
        self._write = write
        self._settle_s = settle_s
        self._timer: asyncio.TimerHandle | None = None
        self._due: str | None = None  # settled, for the writer
        self._writing = False
        self._closed = False

    def offer(self, message: str) -> None:
        """A newer message: it replaces one still settling, and settles anew."""
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self._settle_s, self._settled, message)

    def close(self) -> None:
        self._closed = True
        self._due = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _settled(self, message: str) -> None:
        self._timer = None
        if self._closed:
            return
        self._due = message
        if not self._writing:
            self._writing = True
            self._writers.start_soon(self._drain)

    async def _drain(self) -> None:
        try:
            while self._due is not None and not self._closed:
                message, self._due = self._due, None
                await self._write(message)
        finally:
            self._writing = False


class Operations(WorkerState):
    """Starts and runs the Applications' sync operations."""

    # -- sync operations

    def _start_sync(self, rec: AppRecord, desired: Desired, request: ManualSync) -> None:
        if rec.name in self._syncing or self._tg is None:
            return
        current = self.apps.get(rec.name)
        if self.fenced is not None or current is None or current.deleting:
            log.debug(
                "app %s on %s: %s sync not started: %s",
                rec.name,
                self.name,
                request.trigger.value,
                self.fenced or "the app is being deleted",
            )
            return
        token = CancelToken()
        self._syncing[rec.name] = token
        self._tg.start_soon(self._sync, rec, desired, request, token)

    async def _sync(
        self, rec: AppRecord, desired: Desired, request: ManualSync, token: CancelToken
    ) -> None:
        name = rec.name
        kube = self.kube
        assert kube is not None
        automated = desired.app.sync_policy.automated
        engine_request = SyncRequest(
            revision=request.revision or desired.sha,
            prune=request.prune or bool(automated and automated.prune),
            trigger=request.trigger,
            initiated_by=request.who,
            self_heal=request.trigger is Trigger.SELF_HEAL,
            wait_healthy=False,  # the live cache reports health; do not hold a sync slot
            status_after=False,  # the refresh after the sync writes sync status and health
            timeout_s=self.svc.sync_timeout_s,
            manifests=request.manifests,
            rendered=desired.for_sync(request),
            source=request.source,
            project=await self._db(partial(self._project_scope, desired.app)),
        )

        def final(result: OperationResult) -> StatusUpdate:
            succeeded = result.phase is OperationPhase.SUCCEEDED
            return StatusUpdate(
                name=name,
                operation_state=operation_state(result, request.trigger, request.who),
                synced_sha=result.revision if succeeded else None,
                conditions=()
                if succeeded
                else (Condition(type=SYNC_ERROR, message=result.message),),
            )

        try:
            await self._operate(
                name, desired.app, engine_request, request, token, final, live_state=self.cache
            )
        finally:
            self._syncing.pop(name, None)
            self._dirty.add(name)
            self._wake.set()

    async def _operate(
        self,
        name: str,
        app: Application,
        engine_request: SyncRequest,
        request: ManualSync,
        token: CancelToken,
        final: Callable[[OperationResult], StatusUpdate],
        *,
        live_state: LiveCache | None,
    ) -> OperationResult | None:
        """The one operation runner, for ``hub serve``'s syncs and ``hub serve --once``:
        the in-flight limits (per cluster, hub-wide), the running state and its progress,
        the engine on this loop, the record, and the app's status after it (``final``, the
        caller's). Shielded from the worker's cancellation once started: the token stops
        the engine and the result is still recorded. None when it did not start
        (draining, cancelled) or the engine failed unexpectedly.

        The running state is written in the engine's transaction that records the
        operation in flight, and the final status in the one that records its history
        entry (``SyncRequest.on_started``, ``on_recorded``): a sync took four write
        transactions at its two ends, two now, and the app's status never disagrees with
        its history."""
        kube = self.kube
        assert kube is not None
        async with (
            limiter_slot(self.cluster_syncs) as cluster_slot_done,
            self.svc.global_syncs.slot(self.name) as hold,
        ):
            if self.svc.draining() or token.cancelled:
                return None

            def cluster_done() -> None:
                # the record that ends the sync needs neither slot (hub.worker.slots)
                hold.release()
                cluster_slot_done()

            started = time.monotonic()
            running = {
                "phase": OperationPhase.RUNNING.value,
                "trigger": request.trigger.value,
                "startedAt": _now().isoformat(),
                "syncResult": {"revision": engine_request.revision},
                "message": "running",
            }
            # Ordered status writes still under way (a tick's flush) land first; none of
            # this app's starts until the sync ends (its refreshes wait for it).
            async with self._store_order:
                pending = self._pending.get(name)
                begin = self._taken_update(StatusUpdate(name=name, operation_state=running))
            assert begin is not None  # an operation state is always written
            written = _EndWrites(self._write_and_notify, begin, pending, final)
            engine_request = replace(
                engine_request, on_started=written.started, on_recorded=written.recorded
            )

            # A long sync's waves (and retries) are recorded, so the API shows where it is
            # (resource events are not): a wave's message is written once it stood a
            # second, and only the latest.
            async def write_progress(message: str) -> None:
                await self._db(
                    partial(
                        self.svc.apps.set_status,
                        name,
                        operation_state={**running, "message": message},
                    )
                )

            with anyio.CancelScope(shield=True):
                async with anyio.create_task_group() as writers:
                    settled = SettledProgress(writers, write_progress)

                    def progress(event: ProgressEvent) -> None:
                        # A wave that waits for nothing (a single-step sync's) is not
                        # "where it is": the history records no such step either.
                        if event.kind is EventKind.RETRY or (
                            event.kind is EventKind.WAVE and event.waits
                        ):
                            settled.offer(event.message)

                    try:
                        result = await self._run_engine(
                            written,
                            sync_application(
                                kube,
                                app,
                                engine_request,
                                sources=self.svc.repos,
                                history=self.svc.history,
                                health_rules=self.svc.health_rules,
                                jq_runner=self.svc.jq,
                                on_event=progress,
                                cancel=token,
                                # live state from the watch cache: no LIST per sync for
                                # the kinds it holds (the engine lists the others)
                                live_state=live_state,
                                # a retry's backoff holds no hub-wide slot, nor
                                # does the record once the cluster work is done
                                limits=replace(
                                    self._limits, backoff=hold.lent, cluster_done=cluster_done
                                ),
                            ),
                        )
                    finally:
                        settled.close()
                if result is None:  # counts as an attempt: no retry loop on a bug
                    self._last[name] = LastOperation(
                        revision=engine_request.revision or "",
                        phase=OperationPhase.ERROR.value,
                        finished_monotonic=time.monotonic(),
                        started_monotonic=started,
                    )
                    return None
                if written.ended is None:  # no history entry was recorded (a dry run)
                    update = written.unwritten(final(result))
                    async with self._store_order:
                        await self._db(partial(self._write_and_notify, [update]))
                self._record(name, request, result, started)
                self._remember_writes(name, result)
                # Watch every kind this sync touched (a namespace it created, a kind it
                # pruned), so the next sync reads it from the cache, not a LIST.
                if self.cache is not None and self._tg is not None:
                    for gk in sorted({(r.group, r.kind) for r in result.resources}):
                        with contextlib.suppress(ClusterError):
                            await self._watch_kind(gk)
                if self._unserved:
                    with contextlib.suppress(ClusterError):
                        await kube.resources(refresh=True)
                        self._unserved.clear()
        return result

    async def _run_engine(
        self, written: _EndWrites, operation: Awaitable[OperationResult]
    ) -> OperationResult | None:
        """The engine on this loop (no thread); an exception it should not raise (a bug) is
        logged with its traceback and reported on the app instead of stopping the worker."""
        try:
            return await operation
        except Exception as exc:
            name = written.begin.name
            log.exception("app %s on %s: the sync failed unexpectedly", name, self.name)
            update = written.unwritten(
                StatusUpdate(name=name, conditions=(Condition(type=SYNC_ERROR, message=repr(exc)),))
            )
            async with self._store_order:
                await self._db(partial(self._write_and_notify, [update]))
            return None

    def _record(
        self, name: str, request: ManualSync, result: OperationResult, started: float
    ) -> None:
        if self.svc.metrics is not None:
            seconds = (result.finished_at - result.started_at).total_seconds()
            self.svc.metrics.observe_sync(self.name, name, result.phase.value, seconds)
        # A request sent during an outage may time out after the cluster is back: that
        # failure too is the outage's (the ones that ended during it: Connection).
        self._last[name] = self._outage_marked(
            LastOperation(
                revision=result.revision,
                phase=result.phase.value,
                finished_monotonic=time.monotonic(),
                self_heal=request.trigger is Trigger.SELF_HEAL,
                started_monotonic=started,
            )
        )
        level = logging.INFO if result.phase is OperationPhase.SUCCEEDED else logging.WARNING
        log.log(
            level,
            "app %s on %s: %s sync of %s %s: %s",
            name,
            self.name,
            request.trigger.value,
            result.revision[:12],
            result.phase.value,
            result.message,
        )

    def _remember_writes(self, name: str, result: OperationResult) -> None:
        """Keep, for the self-heal decision, the objects this sync applied as the cache
        holds them now (``hub.worker.decisions.unheard_writes_wait_s``)."""
        self._written_objects.pop(name, None)
        cache = self.cache
        if cache is None or result.phase is not OperationPhase.SUCCEEDED:
            return
        applied = [r for r in result.resources if r.action == "apply" and not r.hook]
        seen = {
            str(ResourceKey(group=r.group, kind=r.kind, namespace=r.namespace, name=r.name)): (
                key,
                cache.get_tracked(key),
            )
            for r in applied
            for key in [(r.group, r.kind, r.namespace, r.name)]
        }
        if seen:
            self._written_objects[name] = WrittenObjects(
                until=time.monotonic() + WRITES_HEARD_WAIT_S, seen=seen
            )

    # -- once mode

    async def sync_all_once(self, timeout_s: float) -> dict[str, OperationResult | str]:
        """``hub serve --once``: sync every Application of the cluster once and wait for
        health, and run the pending cascade deletions; per app its sync result or what went
        wrong (an app whose deletion finished is not listed)."""
        await self._load_apps()
        if not await self._connect():
            return {name: self.connection.message for name in self.apps}
        try:
            return await self._sync_all_once(timeout_s)
        finally:
            with anyio.CancelScope(shield=True):
                await self._close_client()

    async def _sync_all_once(self, timeout_s: float) -> dict[str, OperationResult | str]:
        out: dict[str, OperationResult | str] = {}

        async def one(rec: AppRecord) -> None:
            try:
                app = rec.application()
                sha = await self._revision(app)
            except (SyncError, HubError) as exc:
                out[rec.name] = str(exc)
                await self._write(
                    rec.name,
                    sync_status="Unknown",
                    conditions=[Condition(type=COMPARISON_ERROR, message=str(exc))],
                )
                return
            # A RollingSync set's later steps wait here too: each --once run advances it.
            held = await self._db(
                partial(rollout_verdict_of, self.svc.apps, rec, sha, SyncStatus.OUT_OF_SYNC.value)
            )
            if held is not None and not held.go:
                out[rec.name] = f"held by the rollout of {rec.appset}: {held.message}"
                return
            automated = app.sync_policy.automated
            request = SyncRequest(
                revision=sha,
                prune=bool(automated and automated.prune),
                trigger=Trigger.USER,
                initiated_by="hub serve --once",
                timeout_s=timeout_s,
                project=await self._db(partial(self._project_scope, app)),
            )
            who = "hub serve --once"

            def final(result: OperationResult) -> StatusUpdate:
                return StatusUpdate(
                    name=rec.name,
                    sync_status=(result.sync_status or SyncStatus.UNKNOWN).value,
                    health_status=result.health.value if result.health else "Unknown",
                    desired_sha=sha,
                    synced_sha=result.revision
                    if result.phase is OperationPhase.SUCCEEDED
                    else None,
                    conditions=tuple(once_conditions(result)),
                    operation_state=operation_state(result, Trigger.USER, who),
                )

            # the same runner as hub serve's syncs; the engine renders, waits for health,
            # and lists what it reads (no watch cache in a one-shot run)
            result = await self._operate(
                rec.name,
                app,
                request,
                ManualSync(prune=bool(request.prune), revision=sha, who=who),
                CancelToken(),
                final,
                live_state=None,
            )
            out[rec.name] = result if result is not None else "the sync did not run"

        async def delete(rec: AppRecord) -> None:
            # The pending cascade deletion (an app no longer generated, a set removed): one
            # full attempt; what is left is reported and stays for the next run.
            problem = await self._delete_attempt(rec)
            if problem is None:
                return
            out[rec.name] = f"deletion not finished: {problem}"
            await self._write(
                rec.name, conditions=[Condition(type=DELETION_ERROR, message=problem)]
            )

        async with anyio.create_task_group() as tg:
            for rec in self.apps.values():
                if rec.deleting:
                    tg.start_soon(delete, rec)
                elif self.fenced is None:
                    tg.start_soon(one, rec)
                else:
                    out[rec.name] = f"not synced: {self.fenced}"
        return out
