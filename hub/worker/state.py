"""The state every part of a ``ClusterWorker`` shares, and the helpers they all use: the
blocking calls under the limiters, the Applications loaded from the store. Each part is a
mixin of ``WorkerState`` (``hub.worker.connection``, ``.refresher``, ``.operations``,
``.deleter``); ``ClusterWorker`` composes them. What a part calls of another is declared
here for the type checker only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
import anyio.to_thread

from clusters.cache import LiveCache
from clusters.kube import AsyncKube
from hub.apps import AppRecord, Condition, StatusUpdate
from hub.appsets import cluster_ref, project_scope
from hub.handle import ClusterConnection
from hub.sync.engine import CancelToken, Limits
from hub.sync.model import Application
from hub.sync.operation import store_call
from hub.sync.projects import ProjectScope
from hub.worker.decisions import (
    LastOperation,
    WrittenObjects,
    last_operation_of,
    lost_to_outage,
)
from hub.worker.services import Desired, ManualSync, WorkerServices

if TYPE_CHECKING:
    pass

T = TypeVar("T")


class WorkerState:
    """The fields of one cluster's worker (see ``ClusterWorker``)."""

    def __init__(self, name: str, services: WorkerServices) -> None:
        self.name = name
        self.svc = services
        self.connection = ClusterConnection(state="Unknown", message="starting", since="")
        self.kube: AsyncKube | None = None
        self.cache: LiveCache | None = None
        self.apps: dict[str, AppRecord] = {}
        self.cluster_syncs = anyio.CapacityLimiter(services.cluster_syncs)
        self.cluster_calls = anyio.CapacityLimiter(services.cluster_calls)
        # the engine's blocking work: renders under the global calls, the store's limiter
        self._limits = Limits(
            render=services.global_calls,
            store=services.store_calls,
            inline=services.inline_store,
            writes_first=services.writes_first,
        )
        self._dirty: set[str] = set()
        self._reload = True
        self._wake = anyio.Event()
        self._desired: dict[str, Desired] = {}
        # renders done on the loop (``hub.inline``) and those a blocking step sent to a thread
        self.renders: Counter[str] = Counter()
        self._last: dict[str, LastOperation] = {}
        self._heals: dict[str, int] = {}
        # What each app's last successful sync applied, as the cache held it then: a
        # self-heal waits for the cache to hear of those writes (``unheard_writes_wait_s``).
        self._written_objects: dict[str, WrittenObjects] = {}
        self._written: dict[str, tuple[Any, ...]] = {}
        self._pending: dict[str, StatusUpdate] = {}  # refresh results of this tick
        # Status writes reach the store in call order. Taken at once when free: the
        # checkpoint a plain Lock makes on every acquire was a loop turn per write.
        self._store_order = anyio.Lock(fast_acquire=True)
        self._syncing: dict[str, CancelToken] = {}
        self._deleting: set[str] = set()
        self.fenced: str | None = None  # why, once the cluster is being removed
        self._manual: dict[str, ManualSync] = {}
        self._window_rechecks: dict[str, datetime] = {}
        self._kind_scopes: dict[tuple[str, str], anyio.CancelScope] = {}
        self._kind_errors: dict[tuple[str, str], str] = {}
        self._unserved: set[tuple[str, str]] = set()
        self._unknown_marked = False
        self._heard_at = 0.0  # monotonic time the cluster last answered a list or watch
        # The current outage's start (the cluster's last answer before it), and the last
        # outage that ended: (last answer before it, first answer after it).
        self._quiet_since = 0.0
        self._outage: tuple[float, float] | None = None
        self._scope: anyio.CancelScope | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._connect_failures = 0
        self._started = False

    async def _call(self, fn: Callable[[], T], *, abandon: bool = False) -> T:
        """A blocking cluster call under the cluster's limiter, then the global one (in that
        order: calls queued behind a slow cluster must not hold global capacity)."""
        async with self.cluster_calls:
            return await anyio.to_thread.run_sync(
                fn, limiter=self.svc.global_calls, abandon_on_cancel=abandon
            )

    def _last_answer(self) -> float:
        """When the cluster last answered (monotonic): a probe or list, anything its
        watch cache heard (an event, a bookmark, a watch opening), or any request a sync
        made (a cluster busy with a rollout needs no probe: 5,000 of them in one at
        1,000 clusters, when only watch events counted)."""
        cache = self.cache
        if cache is None:
            return self._heard_at
        transport = cache.transport
        answered = transport.answered_at if transport is not None else 0.0
        return max(self._heard_at, cache.heard_at, answered)

    def _outage_marked(self, last: LastOperation) -> LastOperation:
        """``last``, marked ``cluster_lost`` when it failed during the last outage that
        ended (``_outage``): the automated sync then tries its revision again."""
        if self._outage is None or last.cluster_lost or not lost_to_outage(last, *self._outage):
            return last
        return replace(last, cluster_lost=True)

    async def _db(self, fn: Callable[[], T]) -> T:
        """A store call: on this loop when the store takes it inline (a thread hand-off
        cost about as much CPU as a small transaction), else in a store thread."""
        return await store_call(self.svc.inline_store, fn, self.svc.store_calls)

    def _project_scope(self, app: Application) -> ProjectScope:
        """What a sync of ``app`` here must stay inside (its AppProject, read fresh)."""
        fleet = self.svc.fleet()
        if fleet is None:
            fleet = [cluster_ref(c) for c in self.svc.registry.list()]
        return project_scope(self.svc.apps, fleet, app, self.name)

    async def _load_apps(self) -> None:
        self._reload = False
        records = await self._db(partial(self.svc.apps.list_apps, cluster=self.name))
        fresh = {r.name: r for r in records}
        for name in set(self.apps) - set(fresh):
            self._forget(name)
        for name, rec in fresh.items():
            old = self.apps.get(name)
            if old is None or old.generation != rec.generation or rec.deleting:
                self._dirty.add(name)
            if name not in self._last:
                last = last_operation_of(rec.operation_state)
                if last is not None:
                    self._last[name] = last
        self.apps = fresh

    def _forget(self, name: str) -> None:
        for table in (
            self._desired,
            self._last,
            self._heals,
            self._written,
            self._manual,
            self._pending,
        ):
            table.pop(name, None)
        token = self._syncing.get(name)
        if token is not None:
            token.cancel()

    # -- what one part calls of another, declared for the type checker only: at run time
    # the method comes from the part that defines it (the mixins of ClusterWorker)
    if TYPE_CHECKING:

        async def _connect(self) -> bool: ...  # connection

        async def _close_client(self) -> None: ...  # connection

        async def _watch_kind(self, group_kind: tuple[str, str]) -> bool: ...  # connection

        async def _write(  # refresher
            self,
            name: str,
            *,
            sync_status: str | None = None,
            health_status: str | None = None,
            desired_sha: str | None = None,
            synced_sha: str | None = None,
            conditions: Sequence[Condition] | None = None,
            operation: Mapping[str, Any] | None = None,
            batch: bool = False,
        ) -> None: ...

        def _taken_update(self, update: StatusUpdate) -> StatusUpdate | None: ...  # refresher

        def _write_and_notify(self, updates: list[StatusUpdate]) -> None: ...  # refresher

        async def _revision(self, app: Application) -> str: ...  # refresher

        def _unheard(  # refresher
            self, name: str, old: Mapping[str, Any], new: Mapping[str, Any]
        ) -> bool: ...

        def _start_sync(  # operations
            self, rec: AppRecord, desired: Desired, request: ManualSync
        ) -> None: ...

        async def _delete(self, rec: AppRecord) -> None: ...  # deleter

        async def _delete_attempt(self, rec: AppRecord) -> str | None: ...  # deleter
