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
  engine, awaited on the worker's event loop (no thread per sync) under a per-cluster and
  a global in-flight limit (``cluster_syncs``, ``global_syncs``);
- deletes the resources of Applications marked for cascade deletion, then the record;
- when the cluster does not answer (or refuses us), marks its Applications Unknown with
  the reason and backs off; nothing it does waits on another cluster. It recovers on its
  own when the cache's watches succeed again.

Every request to the cluster — the cache's lists and watches, the syncs' writes, dry runs
and reads, the deletions — awaits ``AsyncKube`` on the worker's event loop (one connection
pool per cluster, no thread per watch, call or sync). The blocking work left (credentials,
Git, rendering, comparisons, SQLite) runs through ``anyio.to_thread.run_sync`` under the
hub's limiters, so the hub's thread count does not grow with the fleet. Each request has a
deadline (the client's per-call timeout, ``fail_after`` around connection set-up).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, Protocol, TypeVar

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream

from clusters.cache import LiveCache, backoff_delay, key_of
from clusters.connect import connect
from clusters.errors import ClusterError
from clusters.kube import (
    ApiResource,
    AsyncKube,
    Conflict,
    KubeClient,
    KubeError,
    NotFound,
    PropagationPolicy,
    Unauthorized,
)
from clusters.registry import ClusterRecord, Registry
from hub.apps import AppRecord, AppStore, Condition, StatusUpdate
from hub.appsets import project_scope
from hub.charts import shared_chart_repos
from hub.errors import HubError
from hub.handle import ClusterConnection, ConnectionState
from hub.leases import Fences
from hub.metrics import Metrics
from hub.repos import ResolvedRevisions
from hub.rollout import AppStatus, Asking, rollout_of
from hub.sync.delete_hooks import run_delete_hooks
from hub.sync.diff import AppComparison, JqRunner, SyncStatus, compare_app
from hub.sync.engine import (
    COMMON_KINDS,
    CancelToken,
    EventKind,
    Limits,
    OperationResult,
    ProgressEvent,
    Rendered,
    SyncRequest,
    sync_application,
)
from hub.sync.health import HealthRules, app_health
from hub.sync.history import OperationPhase, SyncHistory, Trigger
from hub.sync.model import Application, Automated, SyncError, parse_application
from hub.sync.plan import DeleteHook, plan_delete_hooks, plan_deletion
from hub.sync.projects import ProjectScope
from hub.sync.resources import (
    DELETE_HOOK_TYPES,
    HOOK_FINALIZER,
    HookDeletePolicy,
    HookType,
    ResourceKey,
    effective_sync_options,
    is_delete_hook,
    is_hook,
    owning_app,
)
from hub.sync.retry import SelfHealBackoff
from hub.sync.sources import (
    cluster_info,
    needs_cluster_info,
    render_app,
    resolve_sources,
    revision_text,
    source_record,
)
from hub.sync.validate import KindScopes, validate_manifests
from hub.sync.windows import (
    SYNC_WINDOW_BLOCKED,
    ProjectWindows,
    WindowTarget,
    WindowVerdict,
    project_windows,
    sync_verdict,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT_S = 30.0
PROBE_S = 10.0  # how often a connected worker checks that its cluster still answers
PROBE_KEY = ("", "")  # the probe's entry among the failing kinds
DELETE_WAIT_S = 60.0
FLUSH_AT = 200  # pending refresh results that are written without waiting for the tick's end
COMPARISON_ERROR = "ComparisonError"
SYNC_ERROR = "SyncError"
DELETION_ERROR = "DeletionError"
UNSUPPORTED_OPTION = "UnsupportedOptionWarning"
#: Cluster annotation set by ``hub cluster rm --cascade`` before it deletes anything: the
#: hub's worker for a cluster carrying it stops every sync (see ``ClusterWorker.fence``).
FENCE_ANNOTATION = "gitops-hub/removing"


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
      retry policy covers retries); a new commit or a manual sync moves on;
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


def project_windows_of(apps: AppStore, project: str) -> ProjectWindows:
    """The sync windows of a stored AppProject (none when the project is not stored: the
    implicit 'default' project has no windows)."""
    for record in apps.list_projects():
        if record.name == project:
            return project_windows(
                record.manifest, project=record.name, file=f"{record.source}:{record.file}"
            )
    return ProjectWindows(project=project)


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


def _scopes(resources: Mapping[tuple[str, str], ApiResource]) -> KindScopes:
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


@dataclass(frozen=True, kw_only=True)
class DeletionOutcome:
    """What deleting one Application's resources achieved."""

    app: str
    deleted: tuple[str, ...] = ()  # resources this call deleted (or found deleting)
    kept: tuple[str, ...] = ()  # left on purpose (``Delete=false``), with why
    remaining: tuple[str, ...] = ()  # still on the cluster against the app's wish, with why
    hooks: tuple[str, ...] = ()  # PreDelete/PostDelete hooks this call ran, with their result

    @property
    def done(self) -> bool:
        """Nothing the deletion must remove is left (kept resources do not count)."""
        return not self.remaining

    def problem(self) -> str | None:
        """Why the deletion is not finished, or None."""
        if self.done:
            return None
        return f"{self.app}: " + "; ".join(self.remaining)


DELETE_CONFIRM_UNSUPPORTED = (
    "Delete=confirm asks for a confirmation gitops-hub cannot give (there is no confirm "
    "command): remove Delete=confirm from the object's argocd.argoproj.io/sync-options "
    "annotation (or set Delete=false to keep it) and the deletion goes on"
)


async def async_release_hook_finalizers(
    kube: AsyncKube, live: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Take our ``gitops-hub/hook-finalizer`` off every object of ``live`` that carries it
    (a hook whose operation was cut short keeps it and would block its own deletion and its
    namespace's forever). Each patch carries the object's resourceVersion, so it removes
    only our finalizer from the list as read; a Conflict reads again. Returns the keys of
    the objects it freed."""
    freed: list[str] = []
    for obj in live:
        if HOOK_FINALIZER not in ((obj.get("metadata") or {}).get("finalizers") or []):
            continue
        res = await kube.resource_of(obj)
        key = ResourceKey.of(obj)
        current: Mapping[str, Any] | None = obj
        for _ in range(5):
            if current is None:
                current = await kube.get_or_none(res, key.name, key.namespace)
                if current is None:
                    break
            meta = current.get("metadata") or {}
            finalizers = list(meta.get("finalizers") or [])
            if HOOK_FINALIZER not in finalizers:
                break
            patch = {
                "metadata": {
                    "finalizers": [f for f in finalizers if f != HOOK_FINALIZER],
                    "resourceVersion": meta.get("resourceVersion"),
                }
            }
            try:
                await kube.merge_patch(res, key.name, key.namespace, patch)
            except Conflict:
                current = None  # changed meanwhile: read again
                continue
            except NotFound:
                break
            freed.append(str(key))
            break
    return freed


def synced_kinds(rec: AppRecord) -> set[tuple[str, str]]:
    """The kinds the app's last recorded sync touched (custom resources included), so a
    deletion lists them although no cache or render of this process knows them."""
    result = (rec.operation_state or {}).get("syncResult") or {}
    resources = result.get("resources") if isinstance(result, Mapping) else None
    return {
        (str(r.get("group") or ""), str(r["kind"]))
        for r in resources or []
        if isinstance(r, Mapping) and r.get("kind")
    }


async def async_list_tracked(
    kube: AsyncKube, apps: Iterable[str], kinds: Iterable[tuple[str, str]] = ()
) -> dict[str, list[dict[str, Any]]]:
    """The live objects each of ``apps`` tracks, of the usual kinds plus ``kinds``. A rare
    path (deletion, recovery), so it lists instead of trusting a cache to hold every
    kind."""
    wanted = set(apps)
    found: dict[str, list[dict[str, Any]]] = {a: [] for a in wanted}
    served = await kube.resources()
    for gk in sorted(set(COMMON_KINDS) | set(kinds)):
        res = served.get(gk)
        if res is None or "list" not in res.verbs:
            continue
        items, _ = await kube.list(res)
        for obj in items:
            owner = owning_app(obj)
            if owner in wanted:
                found[owner].append(obj)
    return found


def last_synced_manifests(history: SyncHistory, app: str) -> tuple[list[dict[str, Any]], str]:
    """The manifests (and revision) of the app's last successful sync, from its history, or
    nothing when no entry has them: what a deletion knows of the app's PreDelete/PostDelete
    hooks when no render of this process does (after a restart, ``hub cluster rm``)."""
    for entry in reversed(history.entries(app)):
        if entry.phase is OperationPhase.SUCCEEDED and entry.has_manifests:
            return history.manifests(app, entry.id), entry.revision
    return [], ""


async def _wait_gone(
    kube: AsyncKube, waiting: list[tuple[ApiResource, str, str, str]], deadline: float
) -> list[tuple[ApiResource, str, str, str]]:
    """Poll until every (resource, name, namespace, label) is gone or the deadline passed;
    the ones still there."""
    while waiting and time.monotonic() < deadline:
        waiting = [w for w in waiting if await kube.get_or_none(*w[:3]) is not None]
        if waiting:
            await anyio.sleep(0.5)
    return waiting


async def async_delete_app_resources(
    kube: AsyncKube,
    rec: AppRecord,
    kinds: Iterable[tuple[str, str]] = (),
    *,
    wait_s: float = DELETE_WAIT_S,
    manifests: Sequence[Mapping[str, Any]] = (),
    revision: str = "",
    rules: HealthRules | None = None,
) -> DeletionOutcome:
    """Delete what an Application tracks on its cluster, as Argo CD's cascade deletion does:

    1. our hook finalizers are freed (a hook cut short by a crash keeps one, which would hold
       its namespace Terminating forever);
    2. the PreDelete hooks of ``manifests`` (the app's last render) are created and must all
       succeed before anything is deleted; a failed one is deleted (the next attempt runs it
       again) and the deletion stops there, reported as remaining;
    3. the resources, last wave first, each wave gone before the next (``plan_deletion``).
       ``Delete=false`` resources are kept (as in Argo CD, the app's deletion still
       completes); ``Delete=confirm`` ones stay, as remaining, with what to do (gitops-hub
       has no confirmation). Then the hooks earlier syncs left;
    4. the PostDelete hooks are created and must all succeed (a failed one is deleted and
       the deletion stays unfinished, as in Argo CD 3); those whose delete policy says
       HookSucceeded are then deleted, the others stay (Argo's default policy,
       BeforeHookCreation, never matches a deletion's result);
    5. the PreDelete hooks go last (Argo's cascade deletes them with the resources; kept
       until here so that a retry of an unfinished deletion does not run them again).

    Each step waits for the one before; the whole call waits at most ``wait_s``."""
    app = parse_application(rec.manifest(), source_file=rec.file or rec.name)
    hook_kinds = {ResourceKey.of(m).group_kind for m in manifests if is_hook(m)}
    tracked = await async_list_tracked(kube, [rec.name], {*kinds, *synced_kinds(rec), *hook_kinds})
    live = tracked[rec.name]
    freed = await async_release_hook_finalizers(kube, live)
    if freed:
        log.info("app %s: freed the hook finalizer of %s", rec.name, ", ".join(freed))
    deadline = time.monotonic() + wait_s
    ran: list[str] = []
    pre, post = (
        plan_delete_hooks(
            app=rec.name, manifests=manifests, live=live, hook_type=t, revision=revision
        )
        for t in (HookType.PRE_DELETE, HookType.POST_DELETE)
    )

    async def run(hooks: Sequence[DeleteHook]) -> list[str]:
        if not hooks:
            return []
        outcome = await run_delete_hooks(kube, hooks, rules=rules, deadline=deadline)
        ran.extend(f"{h} succeeded" for h in outcome.succeeded)
        ran.extend(outcome.failed)
        return [*outcome.failed, *outcome.running]

    problems = await run(pre)
    if problems:
        return DeletionOutcome(app=rec.name, hooks=tuple(ran), remaining=tuple(problems))

    plan = plan_deletion(app=rec.name, live=live, options=app.sync_policy.sync_options)
    kept: list[str] = []
    remaining: list[str] = []
    deleted: list[str] = []
    for wave in plan.waves:
        waiting: list[tuple[ApiResource, str, str, str]] = []
        for task in wave.tasks:
            if task.skip:
                if "Delete=false" in task.skip:
                    kept.append(f"{task.key} (Delete=false)")
                else:
                    remaining.append(f"{task.key}: {DELETE_CONFIRM_UNSUPPORTED}")
                continue
            res = await kube.resource_of(task.live or {})
            propagation = _propagation(task.options.prune_propagation)
            await kube.delete(res, task.key.name, task.key.namespace, propagation=propagation)
            deleted.append(str(task.key))
            waiting.append((res, task.key.name, task.key.namespace, str(task.key)))
        waiting = await _wait_gone(kube, waiting, deadline)
        if waiting:
            remaining += [f"{w[3]}: still being deleted after {wait_s:g}s" for w in waiting]
            break  # the next waves wait for this one, as a sync's waves do
    if not remaining:
        # Hooks left by earlier operations (a Job kept by its delete policy) are the app's
        # too; plan_deletion leaves them out, so they go here. Delete hooks have their turn
        # below (a PostDelete hook kept by its policy stays, as in Argo CD).
        hooks: list[tuple[ApiResource, str, str, str]] = []
        for obj in live:
            key = ResourceKey.of(obj)
            if is_hook(obj) and not any(is_delete_hook(obj, t) for t in DELETE_HOOK_TYPES):
                res = await kube.resource_of(obj)
                await kube.delete(res, key.name, key.namespace, propagation="Foreground")
                deleted.append(str(key))
                hooks.append((res, key.name, key.namespace, str(key)))
        hooks = await _wait_gone(kube, hooks, deadline)
        remaining += [f"{h[3]}: still being deleted after {wait_s:g}s" for h in hooks]
    if not remaining:
        remaining += await run(post)
    if not remaining:
        cleanup = {
            h.key: h.desired
            for h in (*post, *pre)
            if h.hook_type is HookType.PRE_DELETE or HookDeletePolicy.HOOK_SUCCEEDED in h.policies
        }
        for obj in live:  # PreDelete hooks of an older render too
            if is_delete_hook(obj, HookType.PRE_DELETE):
                cleanup.setdefault(ResourceKey.of(obj), obj)
        gone: list[tuple[ApiResource, str, str, str]] = []
        for key, obj in sorted(cleanup.items()):
            res = await kube.resource_of(obj)
            with contextlib.suppress(NotFound):
                await kube.delete(res, key.name, key.namespace, propagation="Background")
            deleted.append(str(key))
            gone.append((res, key.name, key.namespace, str(key)))
        gone = await _wait_gone(kube, gone, deadline)
        remaining += [f"{g[3]}: still being deleted after {wait_s:g}s" for g in gone]
    return DeletionOutcome(
        app=rec.name,
        deleted=tuple(deleted),
        kept=tuple(kept),
        remaining=tuple(remaining),
        hooks=tuple(ran),
    )


def _blocking(kube: KubeClient, call: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> T:
    """``call(AsyncKube, ...)`` on a loop of its own, for the CLI paths that hold a
    ``KubeClient`` (``hub cluster rm --cascade``, crash recovery of hook finalizers)."""

    async def main() -> T:
        client = AsyncKube(kube.connection, timeout_s=kube.timeout_s)
        try:
            return await call(client, *args, **kw)
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    return anyio.run(main)


def release_hook_finalizers(kube: KubeClient, live: Iterable[Mapping[str, Any]]) -> list[str]:
    """``async_release_hook_finalizers`` for a blocking caller."""
    return _blocking(kube, async_release_hook_finalizers, list(live))


def list_tracked(
    kube: KubeClient, apps: Iterable[str], kinds: Iterable[tuple[str, str]] = ()
) -> dict[str, list[dict[str, Any]]]:
    """``async_list_tracked`` for a blocking caller."""
    return _blocking(kube, async_list_tracked, list(apps), list(kinds))


def delete_app_resources(
    kube: KubeClient, rec: AppRecord, kinds: Iterable[tuple[str, str]] = (), **kw: Any
) -> DeletionOutcome:
    """``async_delete_app_resources`` for a blocking caller."""
    return _blocking(kube, async_delete_app_resources, rec, list(kinds), **kw)


# ---------------------------------------------------------------- services


class Revisions(Protocol):
    """The hub's resolved Git revisions (one fetch per repo per poll cycle)."""

    async def sha(self, repo_url: str, revision: str) -> str: ...


@dataclass(kw_only=True)
class WorkerServices:
    """What every worker shares with the hub."""

    registry: Registry
    apps: AppStore
    history: SyncHistory
    repos: ResolvedRevisions
    revisions: Revisions
    global_syncs: anyio.CapacityLimiter
    global_calls: anyio.CapacityLimiter
    store_calls: anyio.CapacityLimiter
    cluster_syncs: int = 2
    cluster_calls: int = 4
    jq: JqRunner | None = None
    health_rules: HealthRules = field(default_factory=HealthRules.default)
    draining: Callable[[], bool] = lambda: False
    sync_timeout_s: float | None = 600.0
    metrics: Metrics | None = None
    # Called in the store thread inside each status write's transaction (notifications).
    on_status: Callable[[str], None] | None = None
    # Replicas (hub.leases): spoke writes only while this replica holds the cluster's lease.
    fences: Fences | None = None
    # The registered clusters as the hub last read them (None: not read yet, ask the
    # registry). Project scopes resolve destinations by name against them.
    fleet: Callable[[], Sequence[ClusterRecord] | None] = lambda: None


@dataclass(frozen=True, kw_only=True)
class Desired:
    """An Application rendered and validated once per (revision, generation): compared with
    the cache on every refresh and handed to the engine for every sync of that revision."""

    generation: int
    sha: str
    app: Application
    manifests: tuple[dict[str, Any], ...]
    rendered: Rendered | None = None  # what the engine needs (origins, sources' revisions)

    def for_sync(self, request: ManualSync) -> Rendered | None:
        """The render a sync of ``request`` may reuse: none for a rollback (it brings its
        manifests) or for a sync to another revision (the engine renders that one)."""
        if request.manifests is not None or request.revision not in (None, self.sha):
            return None
        return self.rendered


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    status: SyncStatus
    health: str
    prune_only: bool
    out_of_sync: tuple[str, ...]
    awaiting_confirmation: tuple[str, ...] = ()  # prune candidates marked Prune=confirm

    def conditions(self) -> list[Condition]:
        """The app's conditions after a successful compare."""
        if not self.awaiting_confirmation:
            return []
        return [prune_confirm_condition(self.awaiting_confirmation)]


async def write_latest_of_each_burst(
    receive: MemoryObjectReceiveStream[str], write: Callable[[str], Awaitable[None]]
) -> None:
    """Write each message the stream brings, skipping those a later one already replaced
    while a write was under way, until the sender closes it (the last one is written)."""
    async with receive:
        async for message in receive:
            # The sender may close between two messages of a burst: that ends the burst
            # (the stream's end was a crash of the whole worker here once).
            with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream):
                while True:
                    message = receive.receive_nowait()
            await write(message)


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
        self.kube: AsyncKube | None = None
        self.cache: LiveCache | None = None
        self.apps: dict[str, AppRecord] = {}
        self.cluster_syncs = anyio.CapacityLimiter(services.cluster_syncs)
        self.cluster_calls = anyio.CapacityLimiter(services.cluster_calls)
        # the engine's blocking work: renders under the global calls, the store's limiter
        self._limits = Limits(render=services.global_calls, store=services.store_calls)
        self._dirty: set[str] = set()
        self._reload = True
        self._wake = anyio.Event()
        self._desired: dict[str, Desired] = {}
        self._last: dict[str, LastOperation] = {}
        self._heals: dict[str, int] = {}
        self._written: dict[str, tuple[Any, ...]] = {}
        self._pending: dict[str, StatusUpdate] = {}  # refresh results of this tick
        self._store_order = anyio.Lock()  # status writes reach the store in call order
        self._syncing: dict[str, CancelToken] = {}
        self._deleting: set[str] = set()
        self.fenced: str | None = None  # why, once the cluster is being removed
        self._manual: dict[str, ManualSync] = {}
        self._window_rechecks: dict[str, datetime] = {}
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
            with anyio.CancelScope(shield=True):
                await self._close_client()

    async def _call(self, fn: Callable[[], T], *, abandon: bool = False) -> T:
        """A blocking cluster call under the cluster's limiter, then the global one (in that
        order: calls queued behind a slow cluster must not hold global capacity)."""
        async with self.cluster_calls:
            return await anyio.to_thread.run_sync(
                fn, limiter=self.svc.global_calls, abandon_on_cancel=abandon
            )

    async def _db(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn, limiter=self.svc.store_calls)

    def _project_scope(self, app: Application) -> ProjectScope:
        """What a sync of ``app`` here must stay inside (its AppProject, read fresh)."""
        fleet = self.svc.fleet()
        if fleet is None:
            fleet = self.svc.registry.list()
        return project_scope(self.svc.apps, fleet, app, self.name)

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

    def _write_guard(self) -> Callable[[], None] | None:
        """Replicas (``hub.leases``): every POST/PUT/PATCH/DELETE to the spoke first checks
        that this replica still holds the cluster's lease (reads are never refused)."""
        fences = self.svc.fences
        if fences is None:
            return None
        name = self.name
        return lambda: fences.check_local(name)

    async def _connect(self) -> bool:
        kube: AsyncKube | None = None
        failure: tuple[ConnectionState, str] | None = None
        try:
            with anyio.fail_after(CONNECT_TIMEOUT_S):
                # credentials (decryption, an exec plugin) in a thread; then discovery on
                # the loop, which also proves the cluster answers
                connection = await self._call(
                    partial(connect, self.svc.registry, self.name), abandon=True
                )
                kube = AsyncKube(connection, write_guard=self._write_guard())
                await kube.resources(refresh=True)
        except TimeoutError:
            failure = ("Unreachable", f"no answer within {CONNECT_TIMEOUT_S:g}s")
        except Unauthorized as exc:
            failure = ("Unauthorized", str(exc))
        except (ClusterError, HubError) as exc:
            failure = ("Unreachable", str(exc))
        if failure is not None or kube is None:
            if kube is not None:
                with anyio.CancelScope(shield=True):
                    await kube.aclose()
            self._connect_failures += 1
            self._set_connection(*(failure or ("Unreachable", "no connection")))
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
        if self._tg is not None:
            self._tg.start_soon(self._probe, kube, name=f"probe {self.name}")
        return True

    async def _probe(self, kube: AsyncKube) -> None:
        """Ask the cluster for its version every ``PROBE_S`` (jittered): the watches stay
        open for minutes (``clusters.cache.window_seconds``), so an open stream that goes
        quiet is no proof the cluster still answers. One small GET per cluster, where the
        short watch windows of before re-opened every watch every 10 s."""
        while True:
            await anyio.sleep(PROBE_S * (0.8 + 0.4 * random.random()))
            try:
                await kube.ping()
            except KubeError as exc:
                self._answered(PROBE_KEY, exc)
            else:
                if PROBE_KEY in self._kind_errors:
                    self._answered(PROBE_KEY, None)

    def _changed(self, apps: set[str]) -> None:
        """The cache saw a change (on this loop)."""
        if apps:
            self._dirty.update(a for a in apps if a in self.apps)
        else:
            self._dirty.update(self.apps)  # a kind finished its first list
        self._wake.set()

    def _state(self, res: ApiResource, error: KubeError | None) -> None:
        """A kind's list or watch answered (None) or failed (on this loop)."""
        self._answered((res.group, res.kind), error)

    def _answered(self, gk: tuple[str, str], error: KubeError | None) -> None:
        """A kind's list or watch, or the probe (``PROBE_KEY``), answered or failed."""
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

    async def _watch_kind(self, group_kind: tuple[str, str]) -> bool:
        """Start caching a kind; True when it is cached and listed."""
        assert self.cache is not None and self.kube is not None and self._tg is not None
        if group_kind in self._kind_scopes:
            return self.cache.is_synced(group_kind)
        res = (await self.kube.resources()).get(group_kind)
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
                batch=True,
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
        batch: bool = False,
    ) -> None:
        """Record status; skipped when nothing changed since the last write.

        ``batch``: a refresh's result, written with the others of this tick in one
        transaction (``_flush``, at the end of the tick). Other writes (operation state,
        which the API shows while a sync runs) go at once, after what is pending for the
        app, so the store sees every app's writes in order."""
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
        update = StatusUpdate(
            name=name,
            sync_status=sync_status,
            health_status=health_status,
            desired_sha=desired_sha,
            synced_sha=synced_sha,
            conditions=None if conditions is None else tuple(conditions),
            operation_state=operation,
        )
        pending = self._pending.pop(name, None)
        if pending is not None:
            update = pending.then(update)
        if batch and operation is None:
            self._pending[name] = update
            if len(self._pending) >= FLUSH_AT:
                await self._flush()
            return
        async with self._store_order:
            await self._db(partial(self._write_and_notify, [update]))

    async def _flush(self) -> None:
        """Write the pending refresh results in one transaction."""
        if not self._pending:
            return
        updates, self._pending = list(self._pending.values()), {}
        async with self._store_order:
            await self._db(partial(self._write_and_notify, updates))

    def _write_and_notify(self, updates: list[StatusUpdate]) -> None:
        """The status writes and the notifications they fire, in one transaction."""
        on_status = self.svc.on_status
        if on_status is None:
            self.svc.apps.set_statuses(updates)
            return
        with self.svc.apps.store.atomic():
            self.svc.apps.set_statuses(updates)
            for update in updates:
                on_status(update.name)

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
            sha = await self._revision(app)
            desired = await self._render(rec, app, sha)
        except (SyncError, HubError, ClusterError) as exc:
            await self._write(
                name,
                sync_status="Unknown",
                conditions=[Condition(type=COMPARISON_ERROR, message=str(exc))],
                batch=True,
            )
            return
        pending = [
            gk
            for gk in sorted({key_of(m)[:2] for m in desired.manifests})
            if not await self._watch_kind(gk)
        ]
        if pending:
            return  # woken again when the kinds' first lists are in
        manual = self._manual.pop(name, None)
        if manual is not None:
            self._start_sync(rec, desired, manual)
            return
        started = time.monotonic()
        # in a thread under the global limiter: jq expressions are a blocking round trip
        evaluation = await anyio.to_thread.run_sync(
            partial(self._evaluate, desired), limiter=self.svc.global_calls
        )
        if self.svc.metrics is not None:
            self.svc.metrics.observe_reconcile(self.name, time.monotonic() - started)
        decision: AutoSyncDecision | None = None
        if not self.svc.draining():
            automated = app.sync_policy.automated
            window: WindowVerdict | None = None
            rollout: AppStatus | None = None
            if automated and automated.enabled and evaluation.status is SyncStatus.OUT_OF_SYNC:
                window = await self._db(partial(window_verdict_of, self.svc.apps, rec))
                rollout = await self._db(
                    partial(rollout_verdict_of, self.svc.apps, rec, sha, evaluation.status.value)
                )
            decision = decide_auto_sync(
                automated=automated,
                status=evaluation.status,
                revision=sha,
                last=self._last.get(name),
                prune_only=evaluation.prune_only,
                self_heal_attempts=self._heals.get(name, 0),
                now_monotonic=time.monotonic(),
                window=window,
                rollout=rollout,
            )
        conditions = evaluation.conditions() + hold_conditions(decision, rec.appset)
        await self._write(
            name,
            sync_status=evaluation.status.value,
            health_status=evaluation.health,
            desired_sha=sha,
            conditions=conditions,
            batch=True,
        )
        if evaluation.status is SyncStatus.SYNCED:
            self._heals.pop(name, None)
        if decision is None:
            return
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
        elif decision.rollout is not None:
            pass  # the hub's rollout tick wakes the cluster when the set's rollout moves
        elif decision.window is not None:
            if decision.window.until is not None:
                self._recheck_at(name, decision.window.until)
        elif decision.action == "wait" and self._tg is not None:
            self._tg.start_soon(self._later, name, decision.delay_s)

    def _recheck_at(self, name: str, when: datetime) -> None:
        """Refresh ``name`` just after ``when`` (a sync window may lift then). One timer per
        app and time: every resync of a held app would otherwise add a sleeping task."""
        pending = self._window_rechecks.get(name)
        if self._tg is None or (pending is not None and _now() < pending <= when):
            return
        self._window_rechecks[name] = when
        # A second late: the window's end is exclusive and the sleep's clock is not the wall's.
        delay = max(0.0, (when - _now()).total_seconds()) + 1.0
        self._tg.start_soon(self._later, name, delay)

    async def _later(self, name: str, delay: float) -> None:
        await anyio.sleep(delay)
        self._dirty.add(name)
        self._wake.set()

    async def _revision(self, app: Application) -> str:
        """The app's revision now: each Git source's SHA (one fetch per repo per cycle,
        ``revisions``), each chart source's version its range selects; joined for several
        sources (``hub.sync.sources.revision_text``)."""
        found: list[str] = []
        for source in app.app_sources():
            if source.is_chart_repo:
                charts = shared_chart_repos()
                found.append(
                    await anyio.to_thread.run_sync(
                        charts.resolve_chart, source.repo_url, source.chart, source.target_revision
                    )
                )
            else:
                found.append(await self.svc.revisions.sha(source.repo_url, source.target_revision))
        return found[0] if not app.has_multiple_sources else ",".join(found)

    async def _render(self, rec: AppRecord, app: Application, sha: str) -> Desired:
        cached = self._desired.get(rec.name)
        if cached is not None and cached.generation == rec.generation and cached.sha == sha:
            return cached
        kube = self.kube
        assert kube is not None
        resources = await kube.resources()
        version = await kube.server_version()

        def render() -> Rendered:
            # Git, helm/kustomize and YAML parsing: blocking, in a thread
            resolved = resolve_sources(
                app, git=self.svc.repos, charts=shared_chart_repos(), revision=sha
            )
            cluster = cluster_info(resources, version) if needs_cluster_info(resolved) else None
            rendered = render_app(app, resolved, cluster=cluster)
            valid = validate_manifests(
                rendered.manifests,
                destination_namespace=app.destination.namespace,
                scopes=_scopes(resources),
            )
            return Rendered(
                revision=revision_text(resolved, multiple=app.has_multiple_sources),
                manifests=tuple(valid.manifests),
                sources=source_record(app, resolved),
            )

        rendered = await self._call(render)
        desired = Desired(
            generation=rec.generation,
            sha=sha,
            app=app,
            manifests=tuple(m.obj for m in rendered.manifests),
            rendered=rendered,
        )
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
        options = desired.app.sync_policy.sync_options
        confirm = [
            str(r.key)
            for r in counted
            if r.requires_pruning
            and effective_sync_options(by_key.get(r.key), options).has("Prune", "confirm")
        ]
        return Evaluation(
            status=comparison.status,
            health=health.value,
            prune_only=bool(counted) and all(r.requires_pruning for r in counted),
            out_of_sync=tuple(str(r.key) for r in counted),
            awaiting_confirmation=tuple(confirm),
        )

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
            timeout_s=self.svc.sync_timeout_s,
            manifests=request.manifests,
            rendered=desired.for_sync(request),
            source=request.source,
            project=await self._db(partial(self._project_scope, desired.app)),
        )

        async def finish(result: OperationResult) -> None:
            await self._write(
                name,
                operation=operation_state(result, request.trigger, request.who),
                synced_sha=result.revision if result.phase is OperationPhase.SUCCEEDED else None,
                conditions=[]
                if result.phase is OperationPhase.SUCCEEDED
                else [Condition(type=SYNC_ERROR, message=result.message)],
            )

        try:
            await self._operate(
                name, desired.app, engine_request, request, token, finish, live_state=self.cache
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
        finish: Callable[[OperationResult], Awaitable[None]],
        *,
        live_state: LiveCache | None,
    ) -> OperationResult | None:
        """The one operation runner, for ``hub serve``'s syncs and ``hub serve --once``:
        the in-flight limits (per cluster, hub-wide), the running state and its progress,
        the engine on this loop, the record, then ``finish`` (the caller's status write).
        Shielded from the worker's cancellation once started: the token stops the engine
        and the result is still recorded. None when it did not start (draining, cancelled)
        or the engine failed unexpectedly."""
        kube = self.kube
        assert kube is not None
        async with self.cluster_syncs, self.svc.global_syncs:
            if self.svc.draining() or token.cancelled:
                return None
            running = {
                "phase": OperationPhase.RUNNING.value,
                "trigger": request.trigger.value,
                "startedAt": _now().isoformat(),
                "syncResult": {"revision": engine_request.revision},
                "message": "running",
            }
            await self._write(name, operation=running)
            # Each wave (and retry) is recorded as it starts, so the API shows where a
            # long sync is (resource events are not): the engine's events go to a writer
            # task, which keeps only the latest when the store lags behind.
            send, receive = anyio.create_memory_object_stream[str](max_buffer_size=1000)

            def progress(event: ProgressEvent) -> None:
                if event.kind in (EventKind.WAVE, EventKind.RETRY):
                    with contextlib.suppress(anyio.WouldBlock):
                        send.send_nowait(event.message)

            async def record_progress() -> None:
                async def write(message: str) -> None:
                    await self._db(
                        partial(
                            self.svc.apps.set_status,
                            name,
                            operation_state={**running, "message": message},
                        )
                    )

                await write_latest_of_each_burst(receive, write)

            with anyio.CancelScope(shield=True):
                async with anyio.create_task_group() as writers:
                    writers.start_soon(record_progress)
                    async with send:
                        result = await self._run_engine(
                            name,
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
                                limits=self._limits,
                            ),
                        )
                if result is None:  # counts as an attempt: no retry loop on a bug
                    self._last[name] = LastOperation(
                        revision=engine_request.revision or "",
                        phase=OperationPhase.ERROR.value,
                        finished_monotonic=time.monotonic(),
                    )
                    return None
                self._record(name, request, result)
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
                await finish(result)
        return result

    async def _run_engine(
        self, name: str, operation: Awaitable[OperationResult]
    ) -> OperationResult | None:
        """The engine on this loop (no thread); an exception it should not raise (a bug) is
        logged with its traceback and reported on the app instead of stopping the worker."""
        try:
            return await operation
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
            # An operation in flight could apply again what the deletion removes: it is told
            # to stop, and the deletion starts once it has ended (and been recorded).
            token = self._syncing.get(rec.name)
            if token is not None:
                token.cancel()
            while rec.name in self._syncing:
                await anyio.sleep(0.1)
            while True:
                try:
                    async with self.cluster_syncs, self.svc.global_syncs:
                        outcome = await self._delete_resources(rec)
                    remaining = outcome.problem()
                except (KubeError, HubError) as exc:
                    remaining = f"{rec.name}: {exc}"
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

    async def _delete_resources(self, rec: AppRecord) -> DeletionOutcome:
        assert self.kube is not None
        kinds = self.cache.kinds() if self.cache else set()
        cached = self._desired.get(rec.name)
        if cached is not None:
            manifests: Sequence[Mapping[str, Any]] = cached.manifests
            revision = cached.sha
        else:  # nothing rendered since the hub started: the last sync's manifests
            manifests, revision = await self._db(
                partial(last_synced_manifests, self.svc.history, rec.name)
            )
        kinds |= {key_of(m)[:2] for m in manifests}
        outcome = await async_delete_app_resources(
            self.kube,
            rec,
            kinds,
            manifests=manifests,
            revision=revision,
            rules=self.svc.health_rules,
        )
        for line in outcome.hooks:
            log.info("app %s on %s: %s", rec.name, self.name, line)
        return outcome

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

    async def _close_client(self) -> None:
        """Release the cluster's connection pool (the cache's transport is the client)."""
        kube, self.kube, self.cache = self.kube, None, None
        if kube is not None:
            await kube.aclose()

    async def _sync_all_once(self, timeout_s: float) -> dict[str, OperationResult | str]:
        out: dict[str, OperationResult | str] = {}

        async def one(rec: AppRecord) -> None:
            try:
                app = parse_application(rec.manifest(), source_file=rec.file or rec.name)
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

            async def finish(result: OperationResult) -> None:
                await self._write(
                    rec.name,
                    sync_status=(result.sync_status or SyncStatus.UNKNOWN).value,
                    health_status=result.health.value if result.health else "Unknown",
                    desired_sha=sha,
                    synced_sha=result.revision
                    if result.phase is OperationPhase.SUCCEEDED
                    else None,
                    conditions=once_conditions(result),
                    operation=operation_state(result, Trigger.USER, who),
                )

            # the same runner as hub serve's syncs; the engine renders, waits for health,
            # and lists what it reads (no watch cache in a one-shot run)
            result = await self._operate(
                rec.name,
                app,
                request,
                ManualSync(prune=bool(request.prune), revision=sha, who=who),
                CancelToken(),
                finish,
                live_state=None,
            )
            out[rec.name] = result if result is not None else "the sync did not run"

        async def delete(rec: AppRecord) -> None:
            # The pending cascade deletion (an app no longer generated, a set removed): one
            # full attempt; what is left is reported and stays for the next run.
            try:
                async with self.cluster_syncs, self.svc.global_syncs:
                    outcome = await self._delete_resources(rec)
                problem = outcome.problem()
            except (KubeError, HubError) as exc:
                problem = f"{rec.name}: {exc}"
            if problem is None:
                await self._db(partial(self.svc.apps.finish_deletion, rec.name))
                log.info("app %s on %s: resources deleted, app removed", rec.name, self.name)
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


__all__ = [
    "FENCE_ANNOTATION",
    "ROLLOUT_WAITING",
    "AutoSyncDecision",
    "ClusterWorker",
    "DeletionOutcome",
    "LastOperation",
    "ManualSync",
    "WorkerServices",
    "decide_auto_sync",
    "delete_app_resources",
    "hold_conditions",
    "last_operation_of",
    "last_synced_manifests",
    "list_tracked",
    "operation_state",
    "project_windows_of",
    "release_hook_finalizers",
    "rollout_verdict_of",
    "synced_kinds",
    "window_target",
    "window_verdict_of",
]
