"""ClusterWorker: keeps every Application of one cluster synced (one worker per cluster).

A worker owns its own task group (started by the hub with ``tg.start()``, cancelled when
the cluster leaves the registry) and:

- connects through ``clusters.connect`` (the one client factory) and keeps a watch-based
  ``clusters.cache.LiveCache`` of the kinds its Applications render to, so comparing an
  Application with the cluster reads memory, not the API (no per-Application GET/LIST in
  steady state);
- refreshes an Application when the cache reports a change to one of its objects, when the
  hub sees a new Git revision or a changed Application row, and on the periodic resync;
- runs automated syncs by Argo CD's rules (``decide_auto_sync``: one attempt per revision,
  self-heal with its backoff, prune-only diffs skipped without prune) through the sync
  engine, in threads, under a per-cluster and a global ``CapacityLimiter``;
- deletes the resources of Applications marked for cascade deletion, then the record;
- when the cluster does not answer (or refuses us), marks its Applications Unknown with
  the reason and backs off; nothing it does waits on another cluster. It recovers on its
  own when the cache's watches succeed again.

The cache's lists and watches are tasks on the worker's event loop (``AsyncKube``: one
connection pool per cluster, no thread per watch). Other blocking calls (Kubernetes
client, Git, rendering, SQLite) run through ``anyio.to_thread.run_sync`` under limiters;
each has a deadline (the client's own per-call timeout, ``fail_after`` around connection
set-up).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import anyio
import anyio.abc
import anyio.to_thread

from clusters.cache import LiveCache, backoff_delay, key_of
from clusters.connect import connect
from clusters.errors import ClusterError
from clusters.kube import ApiResource, KubeClient, KubeError, PropagationPolicy, Unauthorized
from clusters.registry import Registry
from hub.apps import AppRecord, AppStore, Condition
from hub.errors import HubError
from hub.handle import ClusterConnection, ConnectionState
from hub.metrics import Metrics
from hub.repos import RepoCache
from hub.sync.diff import AppComparison, JqRunner, SyncStatus, compare_app
from hub.sync.engine import (
    COMMON_KINDS,
    CancelToken,
    EventKind,
    OperationResult,
    ProgressEvent,
    SyncRequest,
    sync_application,
)
from hub.sync.health import HealthRules, app_health
from hub.sync.history import OperationPhase, SyncHistory, Trigger
from hub.sync.model import Application, Automated, SyncError, parse_application
from hub.sync.plan import plan_deletion
from hub.sync.render import render_source
from hub.sync.resources import ResourceKey, owning_app
from hub.sync.retry import SelfHealBackoff
from hub.sync.validate import KindScopes, validate_manifests

log = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT_S = 30.0
DELETE_WAIT_S = 60.0
COMPARISON_ERROR = "ComparisonError"
SYNC_ERROR = "SyncError"
DELETION_ERROR = "DeletionError"


# ---------------------------------------------------------------- pure decisions


@dataclass(frozen=True, kw_only=True)
class LastOperation:
    """What the worker remembers of an Application's last sync operation."""

    revision: str
    phase: str  # OperationPhase value
    finished_monotonic: float  # time.monotonic() when it finished (0: before this process)
    self_heal: bool = False


@dataclass(frozen=True, kw_only=True)
class AutoSyncDecision:
    action: Literal["none", "sync", "self-heal", "wait"]
    reason: str
    delay_s: float = 0.0


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
) -> AutoSyncDecision:
    """Argo CD's automated sync rules (``autoSync`` in appcontroller.go), as a pure function.

    - only with automated sync enabled, only when OutOfSync and no operation is running;
    - a diff that only needs pruning is left alone unless ``prune`` is on;
    - a revision not attempted yet is synced;
    - a revision already attempted and failed is not attempted again (the operation's own
      retry policy covers retries); a new commit or a manual sync moves on;
    - drift after a successful sync of the same revision is healed only with ``selfHeal``,
      the k-th heal waiting the self-heal backoff from the previous sync.
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
        return AutoSyncDecision(action="sync", reason=f"new revision {revision[:12]}")
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
    return AutoSyncDecision(action="self-heal", reason="drift from Git")


def last_operation_of(state: Mapping[str, Any] | None) -> LastOperation | None:
    """The last operation recorded in an Application's ``operation_state`` (after a restart
    its time is unknown: counted as long ago)."""
    if not state:
        return None
    revision = str((state.get("syncResult") or {}).get("revision") or "")
    phase = str(state.get("phase") or "")
    if not revision or not phase:
        return None
    return LastOperation(
        revision=revision,
        phase=phase,
        finished_monotonic=0.0,
        self_heal=state.get("trigger") == Trigger.SELF_HEAL.value,
    )


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


def _scopes(kube: KubeClient) -> KindScopes:
    resources = kube.resources()
    return KindScopes.from_discovery(
        cluster_scoped=[gk for gk, r in resources.items() if not r.namespaced],
        namespaced=[gk for gk, r in resources.items() if r.namespaced],
    )


def _propagation(policy: str) -> PropagationPolicy:
    word = policy.capitalize()
    if word == "Background":
        return "Background"
    if word == "Orphan":
        return "Orphan"
    return "Foreground"


def delete_app_resources(
    kube: KubeClient,
    rec: AppRecord,
    kinds: Iterable[tuple[str, str]] = (),
    *,
    wait_s: float = DELETE_WAIT_S,
) -> str | None:
    """Delete what an Application tracks on its cluster, last wave first, each wave gone
    before the next (``plan_deletion``: ``Delete=false`` kept, ``Delete=confirm`` waits);
    None when everything is gone, else why not. Blocking. A rare path, so it lists the
    usual kinds (plus ``kinds``) instead of trusting a cache to hold every kind."""
    app = parse_application(rec.manifest(), source_file=rec.file or rec.name)
    served = kube.resources()
    live: list[dict[str, Any]] = []
    for gk in sorted(set(COMMON_KINDS) | set(kinds)):
        res = served.get(gk)
        if res is None or "list" not in res.verbs:
            continue
        items, _ = kube.list(res)
        live += [o for o in items if owning_app(o) == rec.name]
    plan = plan_deletion(app=rec.name, live=live, options=app.sync_policy.sync_options)
    skipped: list[str] = []
    deadline = time.monotonic() + wait_s
    for wave in plan.waves:
        waiting: list[tuple[ApiResource, str, str]] = []
        for task in wave.tasks:
            if task.skip:
                skipped.append(f"{task.key}: {task.skip}")
                continue
            res = kube.resource_of(task.live or {})
            propagation = _propagation(task.options.prune_propagation)
            kube.delete(res, task.key.name, task.key.namespace, propagation=propagation)
            waiting.append((res, task.key.name, task.key.namespace))
        while waiting and time.monotonic() < deadline:
            waiting = [w for w in waiting if kube.get_or_none(*w) is not None]
            if waiting:
                time.sleep(0.5)
        if waiting:
            return f"{len(waiting)} resource(s) of {rec.name} still being deleted"
    if skipped:
        return f"{rec.name}: kept: " + "; ".join(skipped)
    return None


# ---------------------------------------------------------------- services


class SerializedSources:
    """``RepoCache`` with revisions resolved once per poll cycle.

    ``RepoCache.resolve`` fetches on every call, so a (repo, revision) resolved in this
    cycle is answered from memory: sources, git generators and Applications reading one
    repository cause one fetch per cycle. The lock makes concurrent resolves of one key
    fetch once. ``materialize`` goes straight to ``RepoCache``, which serialises Git access
    itself, so reading an exported tree never waits behind a fetch."""

    def __init__(self, repos: RepoCache, metrics: Metrics | None = None) -> None:
        self._repos = repos
        self._lock = threading.Lock()
        self._resolved: dict[tuple[str, str], str] = {}
        self.metrics = metrics

    def new_cycle(self) -> None:
        with self._lock:
            self._resolved.clear()

    def resolve(self, repo_url: str, revision: str) -> str:
        with self._lock:
            key = (repo_url, revision)
            found = self._resolved.get(key)
            if found is not None:
                return found
            started = time.monotonic()
            try:
                sha = self._repos.resolve(repo_url, revision)
            except HubError:
                if self.metrics is not None:
                    self.metrics.observe_git_fetch(repo_url, time.monotonic() - started, ok=False)
                raise
            if self.metrics is not None:
                self.metrics.observe_git_fetch(repo_url, time.monotonic() - started)
            self._resolved[key] = sha
            return sha

    def materialize(self, repo_url: str, sha: str) -> Path:
        return self._repos.materialize(repo_url, sha)


class Revisions(Protocol):
    """The hub's resolved Git revisions (one fetch per repo per poll cycle)."""

    async def sha(self, repo_url: str, revision: str) -> str: ...


@dataclass(kw_only=True)
class WorkerServices:
    """What every worker shares with the hub."""

    registry: Registry
    apps: AppStore
    history: SyncHistory
    repos: SerializedSources
    revisions: Revisions
    global_syncs: anyio.CapacityLimiter
    global_calls: anyio.CapacityLimiter
    store_calls: anyio.CapacityLimiter
    sync_threads: anyio.CapacityLimiter  # threads of running syncs (as many as global syncs)
    cluster_syncs: int = 2
    cluster_calls: int = 4
    jq: JqRunner | None = None
    health_rules: HealthRules = field(default_factory=HealthRules.default)
    draining: Callable[[], bool] = lambda: False
    sync_timeout_s: float | None = 600.0
    metrics: Metrics | None = None


@dataclass(frozen=True, kw_only=True)
class Desired:
    generation: int
    sha: str
    app: Application
    manifests: tuple[dict[str, Any], ...]


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    status: SyncStatus
    health: str
    prune_only: bool
    out_of_sync: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ManualSync:
    prune: bool
    revision: str | None
    who: str
    manifests: tuple[Mapping[str, Any], ...] | None = None
    source: Mapping[str, Any] | None = None
    trigger: Trigger = Trigger.USER


def _now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- the worker


class ClusterWorker:
    """Reconciles the Applications of one cluster (see the module docstring)."""

    def __init__(self, name: str, services: WorkerServices) -> None:
        self.name = name
        self.svc = services
        self.connection = ClusterConnection(state="Unknown", message="starting", since="")
        self.kube: KubeClient | None = None
        self.cache: LiveCache | None = None
        self.apps: dict[str, AppRecord] = {}
        self.cluster_syncs = anyio.CapacityLimiter(services.cluster_syncs)
        self.cluster_calls = anyio.CapacityLimiter(services.cluster_calls)
        self._dirty: set[str] = set()
        self._reload = True
        self._wake = anyio.Event()
        self._desired: dict[str, Desired] = {}
        self._last: dict[str, LastOperation] = {}
        self._heals: dict[str, int] = {}
        self._written: dict[str, tuple[Any, ...]] = {}
        self._syncing: dict[str, CancelToken] = {}
        self._deleting: set[str] = set()
        self._manual: dict[str, ManualSync] = {}
        self._kind_scopes: dict[tuple[str, str], anyio.CancelScope] = {}
        self._kind_errors: dict[tuple[str, str], str] = {}
        self._unserved: set[tuple[str, str]] = set()
        self._unknown_marked = False
        self._scope: anyio.CancelScope | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._connect_failures = 0
        self._started = False

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
            if self.cache is not None:
                with anyio.CancelScope(shield=True):
                    await self.cache.aclose()

    async def _call(self, fn: Callable[[], T], *, abandon: bool = False) -> T:
        """A blocking cluster call under the cluster's limiter, then the global one (in that
        order: calls queued behind a slow cluster must not hold global capacity)."""
        async with self.cluster_calls:
            return await anyio.to_thread.run_sync(
                fn, limiter=self.svc.global_calls, abandon_on_cancel=abandon
            )

    async def _db(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn, limiter=self.svc.store_calls)

    async def _loop(self) -> None:
        while True:
            if self._reload:
                await self._load_apps()
            if self.kube is None and not await self._connect():
                await self._mark_unknown(self.connection.message)
                await self._sleep(backoff_delay(self._connect_failures))
                continue
            if self._kind_errors:
                await self._mark_unknown(next(iter(self._kind_errors.values())))
            else:
                for name in sorted(self._take_dirty()):
                    try:
                        await self._refresh(name)
                    except Exception as exc:  # a bug: logged with its traceback, others go on
                        log.exception("app %s on %s: refresh failed", name, self.name)
                        await self._write(
                            name,
                            sync_status="Unknown",
                            conditions=[Condition(type=COMPARISON_ERROR, message=repr(exc))],
                        )
            await self._sleep(None)

    def _take_dirty(self) -> set[str]:
        dirty, self._dirty = self._dirty, set()
        return dirty

    async def _sleep(self, seconds: float | None) -> None:
        """Wait for work (or ``seconds``)."""
        if not self._wake.is_set():
            with anyio.move_on_after(seconds if seconds is not None else 5.0):
                await self._wake.wait()
        self._wake = anyio.Event()
        if seconds is None:
            # Batch the events of one burst (a rollout sends many) into one refresh.
            await anyio.sleep(0.05)

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
        for table in (self._desired, self._last, self._heals, self._written, self._manual):
            table.pop(name, None)
        token = self._syncing.get(name)
        if token is not None:
            token.cancel()

    # -- connection and cache

    def _set_connection(self, state: ConnectionState, message: str = "") -> None:
        if self.connection.state != state or self.connection.message != message:
            self.connection = ClusterConnection(
                state=state, message=message, since=_now().isoformat()
            )
            if self.svc.metrics is not None:
                self.svc.metrics.set_cluster_connection(self.name, state)
            if state == "Connected":
                log.info("cluster %s: connected", self.name)
            else:
                log.warning("cluster %s: %s: %s", self.name, state, message)

    async def _connect(self) -> bool:
        def open_client() -> KubeClient:
            kube = KubeClient(connect(self.svc.registry, self.name))
            kube.resources(refresh=True)  # discovery: also proves the cluster answers
            return kube

        try:
            with anyio.fail_after(CONNECT_TIMEOUT_S):
                kube = await self._call(open_client, abandon=True)
        except TimeoutError:
            self._connect_failures += 1
            self._set_connection("Unreachable", f"no answer within {CONNECT_TIMEOUT_S:g}s")
            return False
        except Unauthorized as exc:
            self._connect_failures += 1
            self._set_connection("Unauthorized", str(exc))
            return False
        except (ClusterError, HubError) as exc:
            self._connect_failures += 1
            self._set_connection("Unreachable", str(exc))
            return False
        self._connect_failures = 0
        self.kube = kube
        self.cache = LiveCache(
            kube,
            owner_of=owning_app,
            on_change=self._changed,
            on_state=self._state,
        )
        self._set_connection("Connected")
        self._unknown_marked = False
        self._dirty.update(self.apps)
        return True

    def _changed(self, apps: set[str]) -> None:
        """The cache saw a change (on this loop)."""
        if apps:
            self._dirty.update(a for a in apps if a in self.apps)
        else:
            self._dirty.update(self.apps)  # a kind finished its first list
        self._wake.set()

    def _state(self, res: ApiResource, error: KubeError | None) -> None:
        """A kind's list or watch answered (None) or failed (on this loop)."""
        gk = (res.group, res.kind)
        if error is None:
            if self._kind_errors.pop(gk, None) is not None and not self._kind_errors:
                self._set_connection("Connected")
                self._unknown_marked = False
                self._dirty.update(self.apps)
        else:
            self._kind_errors[gk] = str(error)
            state: ConnectionState = (
                "Unauthorized" if isinstance(error, Unauthorized) else "Unreachable"
            )
            self._set_connection(state, str(error))
        self._wake.set()

    def _watch_kind(self, group_kind: tuple[str, str]) -> bool:
        """Start caching a kind; True when it is cached and listed."""
        assert self.cache is not None and self.kube is not None and self._tg is not None
        if group_kind in self._kind_scopes:
            return self.cache.is_synced(group_kind)
        res = self.kube.resources().get(group_kind)
        if res is None or not {"list", "watch"} <= res.verbs:
            # Not served (yet): nothing of it can be live. A sync may install its CRD, so
            # discovery is refreshed after the next sync and the kind tried again.
            self._unserved.add(group_kind)
            return True
        scope = anyio.CancelScope()
        self._kind_scopes[group_kind] = scope
        cache = self.cache

        async def loop() -> None:
            with scope:
                await cache.run_kind(res)

        self._tg.start_soon(loop, name=f"watch {self.name} {res.plural}")
        return False

    def _stop_watches(self) -> None:
        for scope in self._kind_scopes.values():
            scope.cancel()

    async def _mark_unknown(self, reason: str) -> None:
        if self._unknown_marked:
            return
        message = f"cluster {self.name}: {reason}"
        for name in list(self.apps):
            await self._write(
                name,
                sync_status="Unknown",
                health_status="Unknown",
                conditions=[Condition(type=COMPARISON_ERROR, message=message)],
            )
        self._unknown_marked = True

    # -- refresh one Application

    async def _write(
        self,
        name: str,
        *,
        sync_status: str | None = None,
        health_status: str | None = None,
        desired_sha: str | None = None,
        synced_sha: str | None = None,
        conditions: Sequence[Condition] | None = None,
        operation: Mapping[str, Any] | None = None,
    ) -> None:
        """Record status; skipped when nothing changed since the last write."""
        fingerprint = (
            sync_status,
            health_status,
            desired_sha,
            synced_sha,
            None if conditions is None else tuple((c.type, c.message) for c in conditions),
            None if operation is None else json.dumps(operation, sort_keys=True, default=str),
        )
        if operation is None and self._written.get(name) == fingerprint:
            return
        self._written[name] = fingerprint
        await self._db(
            partial(
                self.svc.apps.set_status,
                name,
                sync_status=sync_status,
                health_status=health_status,
                desired_sha=desired_sha,
                synced_sha=synced_sha,
                conditions=conditions,
                operation_state=operation,
            )
        )

    async def _refresh(self, name: str) -> None:
        rec = self.apps.get(name)
        if rec is None:
            return
        if rec.deleting:
            if name not in self._deleting and self._tg is not None:
                self._deleting.add(name)
                self._tg.start_soon(self._delete, rec)
            return
        if name in self._syncing:
            return  # re-evaluated when the operation ends
        try:
            app = parse_application(rec.manifest(), source_file=rec.file or name)
            source = app.primary_source()
            sha = await self.svc.revisions.sha(source.repo_url, source.target_revision)
            desired = await self._render(rec, app, sha)
        except (SyncError, HubError, ClusterError) as exc:
            await self._write(
                name,
                sync_status="Unknown",
                conditions=[Condition(type=COMPARISON_ERROR, message=str(exc))],
            )
            return
        pending = [
            gk for gk in {key_of(m)[:2] for m in desired.manifests} if not self._watch_kind(gk)
        ]
        if pending:
            return  # woken again when the kinds' first lists are in
        manual = self._manual.pop(name, None)
        if manual is not None:
            self._start_sync(rec, desired, manual)
            return
        started = time.monotonic()
        evaluation = await anyio.to_thread.run_sync(partial(self._evaluate, desired))
        if self.svc.metrics is not None:
            self.svc.metrics.observe_reconcile(self.name, time.monotonic() - started)
        await self._write(
            name,
            sync_status=evaluation.status.value,
            health_status=evaluation.health,
            desired_sha=sha,
            conditions=[],
        )
        if evaluation.status is SyncStatus.SYNCED:
            self._heals.pop(name, None)
        if self.svc.draining():
            return
        decision = decide_auto_sync(
            automated=app.sync_policy.automated,
            status=evaluation.status,
            revision=sha,
            last=self._last.get(name),
            prune_only=evaluation.prune_only,
            self_heal_attempts=self._heals.get(name, 0),
            now_monotonic=time.monotonic(),
        )
        if decision.action == "sync":
            self._start_sync(
                rec,
                desired,
                ManualSync(prune=False, revision=sha, who="automated", trigger=Trigger.AUTOMATED),
            )
        elif decision.action == "self-heal":
            self._heals[name] = self._heals.get(name, 0) + 1
            self._start_sync(
                rec,
                desired,
                ManualSync(prune=False, revision=sha, who="automated", trigger=Trigger.SELF_HEAL),
            )
        elif decision.action == "wait" and self._tg is not None:
            self._tg.start_soon(self._later, name, decision.delay_s)

    async def _later(self, name: str, delay: float) -> None:
        await anyio.sleep(delay)
        self._dirty.add(name)
        self._wake.set()

    async def _render(self, rec: AppRecord, app: Application, sha: str) -> Desired:
        cached = self._desired.get(rec.name)
        if cached is not None and cached.generation == rec.generation and cached.sha == sha:
            return cached
        kube = self.kube
        assert kube is not None
        source = app.primary_source()

        def render() -> tuple[dict[str, Any], ...]:
            tree = self.svc.repos.materialize(source.repo_url, sha)
            rendered = render_source(tree, source)
            valid = validate_manifests(
                rendered.manifests,
                destination_namespace=app.destination.namespace,
                scopes=_scopes(kube),
            )
            return tuple(m.obj for m in valid.manifests)

        manifests = await self._call(render)
        desired = Desired(generation=rec.generation, sha=sha, app=app, manifests=manifests)
        self._desired[rec.name] = desired
        return desired

    def _evaluate(self, desired: Desired) -> Evaluation:
        """Compare with the live cache (runs in a thread; no API call)."""
        assert self.cache is not None
        name = desired.app.name
        live = self.cache.tracked(name)
        seen = {key_of(o) for o in live}
        for m in desired.manifests:
            key = key_of(m)
            if key not in seen:
                other = self.cache.get_tracked(key)  # tracked by another app: compared, adopted
                if other is not None:
                    live.append(other)
        comparison: AppComparison = compare_app(
            desired.manifests,
            live,
            app=name,
            ignore_differences=desired.app.ignore_differences,
            jq_runner=self.svc.jq,
        )
        by_key = {ResourceKey.of(o): o for o in live}
        pairs = [(m, by_key.get(ResourceKey.of(m))) for m in desired.manifests]
        health = app_health(pairs, self.svc.health_rules).status
        counted = [r for r in comparison.out_of_sync if r.counts_for_app]
        return Evaluation(
            status=comparison.status,
            health=health.value,
            prune_only=bool(counted) and all(r.requires_pruning for r in counted),
            out_of_sync=tuple(str(r.key) for r in counted),
        )

    # -- sync operations

    def _start_sync(self, rec: AppRecord, desired: Desired, request: ManualSync) -> None:
        if rec.name in self._syncing or self._tg is None:
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
            timeout_s=self.svc.sync_timeout_s,
            manifests=request.manifests,
            source=request.source,
        )
        result: OperationResult | None = None
        try:
            async with self.cluster_syncs, self.svc.global_syncs:
                if self.svc.draining() or token.cancelled:
                    return
                running = {
                    "phase": OperationPhase.RUNNING.value,
                    "trigger": request.trigger.value,
                    "startedAt": _now().isoformat(),
                    "syncResult": {"revision": engine_request.revision},
                    "message": "running",
                }
                await self._write(name, operation=running)

                def progress(event: ProgressEvent) -> None:
                    # In the engine's thread: each wave (and retry) is recorded as it starts,
                    # so the API shows where a long sync is; resource events are not.
                    if event.kind in (EventKind.WAVE, EventKind.RETRY):
                        self.svc.apps.set_status(
                            name, operation_state={**running, "message": event.message}
                        )

                # Shielded: on shutdown or cluster removal the token stops the engine at its
                # next check and the result is still recorded below.
                with anyio.CancelScope(shield=True):
                    result = await self._run_engine(
                        name,
                        partial(
                            sync_application,
                            kube,
                            desired.app,
                            engine_request,
                            sources=self.svc.repos,
                            history=self.svc.history,
                            health_rules=self.svc.health_rules,
                            jq_runner=self.svc.jq,
                            on_event=progress,
                            cancel=token,
                            # live state from the watch cache: no LIST per sync for the
                            # kinds it holds (the engine lists the others)
                            live_state=self.cache,
                        ),
                    )
                    if result is None:  # counts as an attempt: no retry loop on a bug
                        self._last[name] = LastOperation(
                            revision=engine_request.revision or desired.sha,
                            phase=OperationPhase.ERROR.value,
                            finished_monotonic=time.monotonic(),
                        )
                        return
                    self._record(name, request, result)
                    # Watch every kind this sync touched (a namespace it created, a kind
                    # it pruned), so the next sync reads it from the cache, not a LIST.
                    if self.cache is not None and self._tg is not None:
                        for gk in sorted({(r.group, r.kind) for r in result.resources}):
                            with contextlib.suppress(ClusterError):
                                self._watch_kind(gk)
                    if self._unserved:
                        with contextlib.suppress(ClusterError):
                            await self._call(partial(kube.resources, refresh=True))
                            self._unserved.clear()
                    await self._write(
                        name,
                        operation=operation_state(result, request.trigger, request.who),
                        synced_sha=result.revision
                        if result.phase is OperationPhase.SUCCEEDED
                        else None,
                        conditions=[]
                        if result.phase is OperationPhase.SUCCEEDED
                        else [Condition(type=SYNC_ERROR, message=result.message)],
                    )
        finally:
            self._syncing.pop(name, None)
            self._dirty.add(name)
            self._wake.set()

    async def _run_engine(
        self, name: str, call: Callable[[], OperationResult]
    ) -> OperationResult | None:
        """The engine in a sync thread; an exception it should not raise (a bug) is logged
        with its traceback and reported on the app instead of stopping the worker."""
        try:
            return await anyio.to_thread.run_sync(call, limiter=self.svc.sync_threads)
        except Exception as exc:
            log.exception("app %s on %s: the sync failed unexpectedly", name, self.name)
            await self._write(name, conditions=[Condition(type=SYNC_ERROR, message=repr(exc))])
            return None

    def _record(self, name: str, request: ManualSync, result: OperationResult) -> None:
        if self.svc.metrics is not None:
            seconds = (result.finished_at - result.started_at).total_seconds()
            self.svc.metrics.observe_sync(self.name, name, result.phase.value, seconds)
        self._last[name] = LastOperation(
            revision=result.revision,
            phase=result.phase.value,
            finished_monotonic=time.monotonic(),
            self_heal=request.trigger is Trigger.SELF_HEAL,
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

    # -- cascade deletion

    async def _delete(self, rec: AppRecord) -> None:
        failures = 0
        try:
            while True:
                try:
                    async with self.cluster_syncs, self.svc.global_syncs:
                        remaining = await self._call(partial(self._delete_resources, rec))
                except (KubeError, SyncError) as exc:
                    remaining = str(exc)
                if remaining is None:
                    await self._db(partial(self.svc.apps.finish_deletion, rec.name))
                    log.info("app %s on %s: resources deleted, app removed", rec.name, self.name)
                    self.apps.pop(rec.name, None)
                    self._forget(rec.name)
                    return
                failures += 1
                await self._write(
                    rec.name, conditions=[Condition(type=DELETION_ERROR, message=remaining)]
                )
                await anyio.sleep(backoff_delay(failures, cap_s=60.0))
        finally:
            self._deleting.discard(rec.name)

    def _delete_resources(self, rec: AppRecord) -> str | None:
        assert self.kube is not None
        kinds = self.cache.kinds() if self.cache else set()
        cached = self._desired.get(rec.name)
        if cached is not None:
            kinds |= {key_of(m)[:2] for m in cached.manifests}
        return delete_app_resources(self.kube, rec, kinds)

    # -- once mode

    async def sync_all_once(self, timeout_s: float) -> dict[str, OperationResult | str]:
        """``hub serve --once``: sync every Application of the cluster once and wait for
        health; per app its result or why it could not run."""
        await self._load_apps()
        if not await self._connect():
            return {name: self.connection.message for name in self.apps}
        out: dict[str, OperationResult | str] = {}

        async def one(rec: AppRecord) -> None:
            try:
                app = parse_application(rec.manifest(), source_file=rec.file or rec.name)
                source = app.primary_source()
                sha = await self.svc.revisions.sha(source.repo_url, source.target_revision)
            except (SyncError, HubError) as exc:
                out[rec.name] = str(exc)
                await self._write(
                    rec.name,
                    sync_status="Unknown",
                    conditions=[Condition(type=COMPARISON_ERROR, message=str(exc))],
                )
                return
            automated = app.sync_policy.automated
            request = SyncRequest(
                revision=sha,
                prune=bool(automated and automated.prune),
                trigger=Trigger.USER,
                initiated_by="hub serve --once",
                timeout_s=timeout_s,
            )
            kube = self.kube
            assert kube is not None
            async with self.cluster_syncs, self.svc.global_syncs:
                result = await anyio.to_thread.run_sync(
                    partial(
                        sync_application,
                        kube,
                        app,
                        request,
                        sources=self.svc.repos,
                        history=self.svc.history,
                        health_rules=self.svc.health_rules,
                        jq_runner=self.svc.jq,
                    ),
                    limiter=self.svc.sync_threads,
                )
            out[rec.name] = result
            await self._write(
                rec.name,
                sync_status=(result.sync_status or SyncStatus.UNKNOWN).value,
                health_status=result.health.value if result.health else "Unknown",
                desired_sha=sha,
                synced_sha=result.revision if result.phase is OperationPhase.SUCCEEDED else None,
                conditions=[]
                if result.phase is OperationPhase.SUCCEEDED
                else [Condition(type=SYNC_ERROR, message=result.message)],
                operation=operation_state(result, Trigger.USER, "hub serve --once"),
            )

        async with anyio.create_task_group() as tg:
            for rec in self.apps.values():
                if not rec.deleting:
                    tg.start_soon(one, rec)
        return out


__all__ = [
    "AutoSyncDecision",
    "ClusterWorker",
    "LastOperation",
    "ManualSync",
    "WorkerServices",
    "decide_auto_sync",
    "delete_app_resources",
    "last_operation_of",
    "operation_state",
]
