"""``ClusterWorker``, one per cluster: its control from the hub (wake, refresh, a sync
asked for, stop, fence), its task group and its loop (load the Applications, connect,
refresh what is dirty, write the tick's results, sleep until woken). What the loop does
is in its parts: ``hub.worker.connection``, ``.refresher``, ``.operations``,
``.deleter``."""

from __future__ import annotations

import logging

import anyio
import anyio.abc
import anyio.lowlevel

from clusters.cache import backoff_delay
from hub.apps import Condition
from hub.worker.connection import Connection
from hub.worker.deleter import Deleter
from hub.worker.operations import Operations
from hub.worker.refresher import Refresher
from hub.worker.services import COMPARISON_ERROR, ManualSync

log = logging.getLogger("hub.worker")  # one logger for the package (see ClusterWorker)

#: Cluster annotation set by ``hub cluster rm --cascade`` before it deletes anything: the
#: hub's worker for a cluster carrying it stops every sync (see ``ClusterWorker.fence``).
FENCE_ANNOTATION = "gitops-hub/removing"

# An idle worker's loop runs again after this long even when nothing woke it: a safety
# net only (every timed recheck — retry backoff, sync window, self-heal — sets its own
# timer, and every event wakes the loop). At 5 s, 1,000 idle workers ticked 200 times a
# second, each tick a cancelled timeout.
IDLE_TICK_S = 60.0


class ClusterWorker(Connection, Refresher, Operations, Deleter):
    """Reconciles the Applications of one cluster (see the docstring of ``hub.worker``)."""

    # Its public home, and the logger every part writes to: the hub quiets lost-lease
    # tracebacks on logging.getLogger(ClusterWorker.__module__) (hub.controller).
    __module__ = "hub.worker"

    # -- control from the hub (same event loop)

    def wake(self, *, reload: bool = False, refresh_all: bool = False) -> None:
        if reload:
            self._reload = True
        if refresh_all:
            self._dirty.update(self.apps)
        self._wake.set()

    def refresh(self, app: str) -> None:
        """Re-compare one Application now."""
        self._dirty.add(app)
        self._wake.set()

    def request_sync(self, app: str, request: ManualSync) -> None:
        self._manual[app] = request
        self._dirty.add(app)
        self._wake.set()

    def cancel_operations(self) -> None:
        """Ask every sync in flight to stop (the engine ends it Failed "terminated")."""
        for token in self._syncing.values():
            token.cancel()

    @property
    def syncs_in_flight(self) -> int:
        return len(self._syncing)

    def stop(self) -> None:
        """Cancel the worker: in-flight syncs are told to stop and are still recorded."""
        self.cancel_operations()
        self._stop_watches()
        if self._scope is not None:
            self._scope.cancel()

    # -- running

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._scope = tg.cancel_scope
                # Ready at once: a dead cluster must not hold up the hub or other workers.
                task_status.started()
                tg.start_soon(self._loop)
        finally:
            self._stop_watches()
            with anyio.CancelScope(shield=True):
                await self._close_client()

    async def _loop(self) -> None:
        while True:
            if self._reload:
                await self._load_apps()
            if self.kube is None and not await self._connect():
                await self._mark_unknown(self.connection.message)
                await self._flush()
                await self._sleep(backoff_delay(self._connect_failures))
                continue
            if self._kind_errors:
                await self._mark_unknown(next(iter(self._kind_errors.values())))
            else:
                for name in sorted(self._take_dirty()):
                    # A refresh rarely waits (cache, inline store), so without this turn
                    # a push that dirties every app of 1,000 had every worker refresh
                    # all its apps before the first sync they started sent a request.
                    await anyio.lowlevel.checkpoint()
                    if self.svc.writes_first is not None:
                        # syncs on their way to a write first (hub.sync.priority)
                        await self.svc.writes_first.wait_turn()
                    try:
                        await self._refresh(name)
                    except Exception as exc:  # a bug: logged with its traceback, others go on
                        log.exception("app %s on %s: refresh failed", name, self.name)
                        await self._write(
                            name,
                            sync_status="Unknown",
                            conditions=[Condition(type=COMPARISON_ERROR, message=repr(exc))],
                            batch=True,
                        )
            await self._flush()  # this tick's refresh results: one transaction
            await self._sleep(None)

    def _take_dirty(self) -> set[str]:
        dirty, self._dirty = self._dirty, set()
        return dirty

    async def _sleep(self, seconds: float | None) -> None:
        """Wait for work (or ``seconds``)."""
        if not self._wake.is_set():
            with anyio.move_on_after(seconds if seconds is not None else IDLE_TICK_S):
                await self._wake.wait()
        self._wake = anyio.Event()
        if seconds is None:
            # Batch the events of one burst (a rollout sends many) into one refresh.
            await anyio.sleep(0.05)

    # -- fence (``hub cluster rm --cascade``)

    def fence(self, reason: str) -> None:
        """Stop syncing this cluster for good: operations in flight are cancelled through
        their CancelToken (and still recorded), no sync starts again (automated, self-heal
        or asked for); deletions of Applications marked deleting go on. Set by the hub when
        the cluster carries ``FENCE_ANNOTATION`` (the cluster is being removed)."""
        if self.fenced is None:
            log.warning("cluster %s: fenced (%s): no more syncs", self.name, reason)
        self.fenced = reason
        self.cancel_operations()
        self._manual.clear()
