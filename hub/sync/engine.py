"""The sync executor: the I/O half of the sync engine (one Application, one cluster).

``sync_application`` runs one sync operation: resolve the revision to a SHA, render at that
SHA, validate every manifest, read live state, compare, plan (``hub.sync.plan``), then run
the plan phase by phase and wave by wave:

1. prunes and ``BeforeHookCreation`` deletes of the wave, waiting until they are gone;
2. applies: server-side apply with field manager ``gitops-hub`` (conflicts forced unless
   told otherwise), ``Replace=true`` with PUT, hooks created under their deterministic
   name (an earlier attempt's hook of the same operation is reused, never duplicated);
3. the health gate: a watch per resource type until every applied object with a health
   check is Healthy, judged only once ``status.observedGeneration`` reached the
   ``metadata.generation`` our write returned (``health.gate_health``); no fixed delay.
   Degraded fails the wave; a hook completes by its health, after which our
   ``gitops-hub/hook-finalizer`` is removed.

The first failure (apply error, Degraded resource, failed hook, per-sync timeout,
cancellation) stops every later wave and phase; SyncFail hooks then run. Hook delete
policies follow the *operation's* result as Argo CD does. Before the first write every
apply is dry-run on the server (as Argo's first pass), so an object the API server would
reject fails the sync with nothing written. Prune never touches an object this app's
tracking id does not claim, never runs on an empty render without ``allowEmpty``
(``plan.EmptyRenderGuardError``) and never after a Git or render error (those end the
operation before planning).

Retries: a ``Transient`` API error (429/5xx/timeout/connection) is retried per call with the
app's ``syncPolicy.retry`` backoff (``retry.retry_delay_s``), or with ``DEFAULT_API_RETRY``
when the app has none; a failed attempt of the whole operation is retried per
``syncPolicy.retry`` (limit, backoff) unless it failed on bad input (render, validation,
empty-render guard), which a retry cannot fix. Every retry is reported as a progress event.

Threading model (for the hub's reconcilers): **synchronous and blocking, cancellable.**
Call ``sync_application`` / ``diff_application`` from a worker thread
(``anyio.to_thread.run_sync`` under a per-cluster ``CapacityLimiter``). Pass a
``CancelToken`` and call ``token.cancel()`` from the event loop to stop it: it is checked
between waves and tasks, and while waiting (gate, retry back-off); the operation then ends
Failed "terminated" with no further writes except removing our hook finalizers. Progress
events are delivered by calling ``on_event`` **in the calling worker thread**; from async
code forward them with ``anyio.from_thread.run_sync``. The health gate's watches run in
short-lived daemon threads that only feed a queue; they end within ``WATCH_WINDOW_S`` after
the gate finishes. One ``JqRunner`` should be shared across calls (it owns a child process).

Results: ``OperationResult`` (phase Succeeded / Failed / Error, message, per-resource
results, revision, start/finish times, the app's sync status and health afterwards) and,
when a ``SyncHistory`` is given, one history entry per operation (manifests sealed).
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from clusters.kube import (
    ApiResource,
    Conflict,
    Gone,
    KubeClient,
    KubeError,
    NotFound,
    PropagationPolicy,
    Transient,
    Unauthorized,
    WatchEvent,
)
from hub.errors import HubError
from hub.sync.diff import AppComparison, JqRunner, SyncStatus, compare_app
from hub.sync.health import (
    HealthRules,
    HealthStatus,
    Outcome,
    app_health,
    gate_health,
    task_outcome,
)
from hub.sync.helm import ClusterInfo, RenderContext
from hub.sync.history import (
    Operation,
    OperationPhase,
    ResourceResult,
    SyncHistory,
    Trigger,
)
from hub.sync.model import (
    Application,
    ApplicationSource,
    AppSpecError,
    Backoff,
    EmptyRenderGuardError,
    ManifestError,
    RetryPolicy,
    SharedResourceError,
    SyncError,
    UnsupportedSourceError,
)
from hub.sync.plan import Action, PlanWave, SyncPlan, SyncTask, plan_sync
from hub.sync.projects import (
    LiveObject,
    ProjectScope,
    orphaned_resources,
    orphaned_warning,
    prune_violation,
    sync_violations,
)
from hub.sync.render import render_source
from hub.sync.resources import (
    FIELD_MANAGER,
    HOOK_FINALIZER,
    HookDeletePolicy,
    Phase,
    ResourceKey,
    ignores_health,
    is_hook,
    owning_app,
)
from hub.sync.retry import retry_delay_s, should_retry
from hub.sync.sources import (
    ChartProvider,
    cluster_info,
    needs_cluster_info,
    render_app,
    resolve_sources,
    revision_text,
    source_record,
)
from hub.sync.validate import KindScopes, SourcedManifest, validate_manifests

DEFAULT_API_RETRY = RetryPolicy(
    limit=3, backoff=Backoff(duration_s=0.5, factor=2, max_duration_s=5.0)
)
"""Per-call retry of transient API errors when the Application sets no ``retry``."""

DEFAULT_SYNC_FAIL_TIMEOUT_S = 120.0
DEFAULT_HEALTH_WAIT_S = 300.0  # final app-health wait when the sync has no timeout
DEFAULT_PRUNE_WAIT_S = 300.0  # wait for pruned objects to be gone when the sync has no timeout
STATUS_READ_S = 30.0  # time for the final live read once an operation ran out of its own
GATE_POLL_S = 0.5  # the cache-fed gate re-checks cancellation and the deadline this often
# A pruned object the cache still shows after this long is looked up once more (a GET per
# object per interval): a stalled or snapshot cache must not hold a sync to its timeout.
GONE_CONFIRM_S = 2.0
#: Server-side dry-run requests one sync has in flight at once (the worker runs at most
#: ``cluster_syncs`` syncs per cluster, so a cluster sees at most their product).
DRY_RUN_PARALLEL = 4
WATCH_WINDOW_S = 5.0  # each watch request's server-side timeout; watchers re-check stop then

# Kinds whose tracked objects are looked for even when the render no longer declares them
# and no history names them (so prune finds what a first sync through this hub left).
COMMON_KINDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("", "ConfigMap"),
        ("", "Secret"),
        ("", "Service"),
        ("", "ServiceAccount"),
        ("", "PersistentVolumeClaim"),
        ("", "Namespace"),
        ("apps", "Deployment"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("networking.k8s.io", "Ingress"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("policy", "PodDisruptionBudget"),
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "RoleBinding"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    }
)

T = TypeVar("T")

LiveKey = tuple[str, str, str, str]  # group, kind, namespace, name


class LiveState(Protocol):
    """Where a sync reads live state from instead of LISTing (the hub's watch cache,
    ``clusters.cache.LiveCache``, satisfies it). Without one the engine lists every kind
    involved, as the one-shot CLI does.

    The engine uses it only for kinds where ``is_current`` is true (listed and watched, no
    relist or watch error pending); every other kind involved is listed as without a cache.
    An object Git declares that is live but not tracked (adoption) is read with one GET;
    an object to prune is read again with one GET before the plan, so a stale cache can
    never prune what is no longer ours.

    The health gate waits on it too (``wait_for_change``) when every kind it gates is
    current there: the objects a sync writes and the hooks it creates carry its tracking id,
    so the cache holds their bodies; no watch thread and no LIST of its own."""

    def is_current(self, group_kind: tuple[str, str]) -> bool: ...

    def tracked(self, app: str) -> list[dict[str, Any]]: ...

    def get_tracked(self, key: LiveKey) -> dict[str, Any] | None: ...

    def exists(self, key: LiveKey) -> bool: ...

    def wait_for_change(self, since: int, timeout_s: float) -> int:
        """Block until the state's version differs from ``since`` (or ``timeout_s``); the
        version then. ``since=-1`` returns the current version at once."""
        ...


class SourceProvider(Protocol):
    """Where sources come from (``hub.repos.RepoCache``)."""

    def resolve(self, repo_url: str, revision: str) -> str: ...

    def materialize(self, repo_url: str, sha: str) -> Path: ...


class CancelToken:
    """Set from any thread to stop an operation at the next check."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when cancelled meanwhile."""
        return self._event.wait(max(0.0, seconds))


class EventKind(StrEnum):
    OPERATION = "operation"
    PHASE = "phase"
    WAVE = "wave"
    RESOURCE = "resource"
    RETRY = "retry"
    WARNING = "warning"


@dataclass(frozen=True, kw_only=True)
class ProgressEvent:
    kind: EventKind
    message: str = ""
    phase: str | None = None
    wave: int | None = None
    resource: ResourceKey | None = None
    action: str | None = None
    result: str | None = None
    health: str | None = None
    delay_s: float | None = None
    attempt: int | None = None


EventSink = Callable[[ProgressEvent], None]


@dataclass(frozen=True, kw_only=True)
class Rendered:
    """An app rendered (and validated) by the caller at ``revision``: ``revision_text`` of
    its sources (several joined with ``,``; a chart source's version) and ``sources`` as
    ``source_record`` made it, so history records the same as for a render of its own."""

    revision: str
    manifests: tuple[SourcedManifest, ...]
    sources: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class SyncRequest:
    """One sync operation's inputs beyond the Application itself."""

    revision: str | None = None  # overrides spec.source.targetRevision
    prune: bool | None = None  # None: syncPolicy.automated.prune
    dry_run: bool = False
    timeout_s: float | None = None  # the per-sync timeout (None: none, as Argo CD)
    force_conflicts: bool = True
    trigger: Trigger = Trigger.USER
    initiated_by: str = "hub"
    self_heal: bool = False  # sync only OutOfSync resources, no hooks
    wait_healthy: bool = True  # after success, wait (within the timeout) for app health
    # Rollback: re-apply these manifests (from history) at ``revision`` instead of rendering.
    manifests: Sequence[Mapping[str, Any]] | None = None
    # The caller's render of the app (the hub worker's desired state): used instead of
    # rendering again when ``revision`` is unset or is the one it was rendered at.
    rendered: Rendered | None = None
    source: Mapping[str, Any] | None = None
    # The AppProject the sync must stay inside (None: not checked, as for a bare CLI sync).
    project: ProjectScope | None = None


@dataclass(frozen=True, kw_only=True)
class OperationResult:
    operation_id: str
    app: str
    cluster: str
    phase: OperationPhase
    message: str
    revision: str
    started_at: datetime
    finished_at: datetime
    resources: tuple[ResourceResult, ...] = ()
    sync_status: SyncStatus | None = None
    health: HealthStatus | None = None
    history_id: int | None = None
    plan_text: str = ""
    attempts: int = 1
    exit_code: int = 1  # what a CLI should exit with when the operation did not succeed

    @property
    def synced_and_healthy(self) -> bool:
        return (
            self.phase is OperationPhase.SUCCEEDED
            and self.sync_status is SyncStatus.SYNCED
            and self.health is HealthStatus.HEALTHY
        )


@dataclass(frozen=True, kw_only=True)
class DiffResult:
    revision: str
    comparison: AppComparison
    warnings: tuple[str, ...] = ()


class _Stop(Exception):
    """Ends an attempt: ``message`` says why; ``retryable`` whether another attempt may help."""

    def __init__(self, message: str, *, phase: OperationPhase, retryable: bool, code: int = 1):
        super().__init__(message)
        self.phase = phase
        self.retryable = retryable
        self.code = code


# ---------------------------------------------------------------- public entry points


def sync_application(
    kube: KubeClient,
    app: Application,
    request: SyncRequest | None = None,
    *,
    sources: SourceProvider | None = None,
    history: SyncHistory | None = None,
    health_rules: HealthRules | None = None,
    jq_runner: JqRunner | None = None,
    on_event: EventSink | None = None,
    cancel: CancelToken | None = None,
    live_state: LiveState | None = None,
    charts: ChartProvider | None = None,
) -> OperationResult:
    """Run one sync operation of ``app`` against ``kube`` (see the module docstring).

    ``live_state``: read live objects from it (``LiveState``) instead of LISTing.
    ``charts``: chart repositories (default: ``hub.charts.shared_chart_repos()``)."""
    run = _Run(
        charts=charts,
        live_state=live_state,
        kube=kube,
        app=app,
        request=request or SyncRequest(),
        sources=sources,
        history=history,
        rules=health_rules or HealthRules.default(),
        jq_runner=jq_runner,
        emit=on_event or (lambda _e: None),
        cancel=cancel or CancelToken(),
    )
    return run.execute()


def diff_application(
    kube: KubeClient,
    app: Application,
    *,
    sources: SourceProvider | None = None,
    revision: str | None = None,
    local_dir: Path | None = None,
    jq_runner: JqRunner | None = None,
    history: SyncHistory | None = None,
    live_state: LiveState | None = None,
    charts: ChartProvider | None = None,
) -> DiffResult:
    """Compare ``app`` at ``revision`` (or the files in ``local_dir``) with the cluster.

    Raises ``SyncError`` (render, validation, Git) or a ``KubeError``; never writes.
    """
    run = _Run(
        charts=charts,
        live_state=live_state,
        kube=kube,
        app=app,
        request=SyncRequest(revision=revision, dry_run=True),
        sources=sources,
        history=history,
        rules=HealthRules.default(),
        jq_runner=jq_runner,
        emit=lambda _e: None,
        cancel=CancelToken(),
    )
    try:
        if local_dir is not None:
            src = replace(app.primary_source(), path="")
            rendered = render_source(local_dir, src, context=run.render_context(src))
            sha = f"local:{local_dir}"
            manifests = list(rendered.manifests)
        else:
            sha, manifests = run.render()
        valid = run.validate(manifests)
        live = run.read_live(valid.manifests)
        comparison = run.compare(valid.manifests, live)
    except _Stop as stop:
        raise _StopError(str(stop), stop.code) from None
    return DiffResult(revision=sha, comparison=comparison, warnings=valid.warnings)


class _StopError(SyncError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


# ---------------------------------------------------------------- the operation


@dataclass(kw_only=True)
class _GateItem:
    task: SyncTask
    res: ApiResource
    generation: int | None = None
    gone: bool = False  # wait for the object to disappear (prune / hook delete)
    done: bool = False
    last_health: str | None = None
    finalizer_removed: bool = False


@dataclass(kw_only=True)
class _Run:
    kube: KubeClient
    app: Application
    request: SyncRequest
    sources: SourceProvider | None
    history: SyncHistory | None
    rules: HealthRules
    jq_runner: JqRunner | None
    emit: EventSink
    cancel: CancelToken
    operation_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    deadline: float | None = None
    revision: str = ""
    results: dict[tuple[str, ResourceKey, str], ResourceResult] = field(default_factory=dict)
    hooks_created: dict[ResourceKey, SyncTask] = field(default_factory=dict)
    # Hooks of ``hooks_created`` whose finalizer the gate already freed (cleanup skips them).
    hooks_freed: set[ResourceKey] = field(default_factory=set)
    # This attempt's prunes; the operation ends only once they are gone (``await_pruned``).
    pruned: list[_GateItem] = field(default_factory=list)
    # The last attempt's live read and comparison; the final app status reuses them while
    # nothing has been written (a dry run, already in sync, a failure before any write).
    compared: tuple[list[dict[str, Any]], AppComparison] | None = None
    wrote: bool = False
    rendered: list[dict[str, Any]] | None = None
    retryable: bool = False
    raw_kube: KubeClient = field(init=False)
    live_state: LiveState | None = None
    # Names from the Namespace LIST of the last ``read_live`` without a cache, so
    # ``_namespaces`` does not LIST them again in the same attempt.
    listed_namespaces: set[str] | None = None
    charts: ChartProvider | None = None
    # every source's repo, target and resolved revision (history keeps it)
    sources_record: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.request.timeout_s is not None:
            self.deadline = time.monotonic() + self.request.timeout_s
        # Watchers get the plain client (they retry on their own, off this thread); every
        # request made here is retried alone per the app's backoff.
        self.raw_kube = self.kube
        self.kube = self.kube.with_retry(self._retry_request)

    @property
    def api_policy(self) -> RetryPolicy:
        return self.app.sync_policy.retry or DEFAULT_API_RETRY

    # -- plumbing

    def _check(self) -> None:
        if self.cancel.cancelled:
            raise _Stop("operation terminated", phase=OperationPhase.FAILED, retryable=False)
        if self.deadline is not None and time.monotonic() > self.deadline:
            limit = self.request.timeout_s
            raise _Stop(
                f"sync timed out after {limit:g}s" if limit else "timed out waiting",
                phase=OperationPhase.FAILED,
                retryable=False,
            )

    def _sleep(self, seconds: float) -> None:
        if self.deadline is not None:
            seconds = min(seconds, max(0.0, self.deadline - time.monotonic()))
        self.cancel.wait(seconds)
        self._check()

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()`` (cluster calls) after checking for cancellation and the deadline; each
        of its requests is retried on transient errors by ``_retry_request``."""
        self._check()
        return fn()

    def _retry_request(self, what: str, fn: Callable[[], T]) -> T:
        """One HTTP request with transient API errors retried per the app's retry backoff."""
        attempt = 0
        while True:
            self._check()
            try:
                return fn()
            except Transient as exc:
                if not should_retry(self.api_policy, attempt):
                    raise
                delay = retry_delay_s(self.api_policy, attempt)
                attempt += 1
                self.emit(
                    ProgressEvent(
                        kind=EventKind.RETRY,
                        message=f"{what}: {exc}; retry {attempt} in {delay:g}s",
                        delay_s=delay,
                        attempt=attempt,
                    )
                )
                self._sleep(delay)

    def _result(
        self,
        task: SyncTask,
        status: str,
        message: str = "",
        health: str | None = None,
    ) -> None:
        result = ResourceResult(
            group=task.key.group,
            kind=task.key.kind,
            namespace=task.key.namespace,
            name=task.key.name,
            phase=task.phase.value,
            wave=task.wave,
            action=task.action.value,
            status=status,
            message=message,
            health=health,
            hook=task.hook,
        )
        self.results[(task.phase.value, task.key, task.action.value)] = result
        self.emit(
            ProgressEvent(
                kind=EventKind.RESOURCE,
                phase=task.phase.value,
                wave=task.wave,
                resource=task.key,
                action=task.action.value,
                result=status,
                health=health,
                message=message,
            )
        )

    # -- steps before any write

    def render(self) -> tuple[str, list[SourcedManifest]]:
        if self.request.manifests is not None:
            sha = self.request.revision or ""
            return sha, [
                SourcedManifest(obj=dict(m), origin=f"history {sha[:10]}")
                for m in self.request.manifests
            ]
        given = self.request.rendered
        if given is not None and self.request.revision in (None, given.revision):
            # Rendered once per (revision, spec) by the caller; a sync to another revision
            # (a manual sync to an older commit) renders that one below.
            self.sources_record = dict(given.sources)
            return given.revision, list(given.manifests)
        try:
            self.app.app_sources()
        except (UnsupportedSourceError, AppSpecError) as exc:
            raise _Stop(str(exc), phase=OperationPhase.ERROR, retryable=False, code=2) from None
        if self.sources is None:
            raise _Stop(
                "no source provider configured", phase=OperationPhase.ERROR, retryable=False
            )
        try:
            resolved = resolve_sources(
                self.app,
                git=self.sources,
                charts=self._charts(),
                revision=self.request.revision,
            )
            cluster = None
            if needs_cluster_info(resolved):
                cluster = self.call("discovery", lambda: cluster_info(self.kube))
            rendered = render_app(self.app, resolved, cluster=cluster)
        except HubError as exc:
            # Git, chart or render error: the operation ends here, before planning, so
            # nothing is ever pruned because a source could not be read.
            code = exc.exit_code if isinstance(exc, AppSpecError) else 1
            raise _Stop(str(exc), phase=OperationPhase.ERROR, retryable=False, code=code) from None
        self.sources_record = source_record(self.app, resolved)
        revision = revision_text(resolved, multiple=self.app.has_multiple_sources)
        return revision, list(rendered.manifests)

    def _charts(self) -> ChartProvider:
        if self.charts is None:
            from hub.charts import shared_chart_repos

            self.charts = shared_chart_repos()
        return self.charts

    def render_context(self, source: ApplicationSource) -> RenderContext:
        """Helm's context for a ``--local`` render (no resolved revision)."""
        return RenderContext(
            app_name=self.app.name,
            destination_namespace=self.app.destination.namespace,
            cluster=cluster_info(self.kube) if source.declared_type == "Helm" else ClusterInfo(),
        )

    def scopes(self) -> KindScopes:
        resources = self.call("discovery", self.kube.resources)
        cluster = [gk for gk, r in resources.items() if not r.namespaced]
        namespaced = [gk for gk, r in resources.items() if r.namespaced]
        return KindScopes.from_discovery(cluster_scoped=cluster, namespaced=namespaced)

    def validate(self, manifests: Sequence[SourcedManifest]) -> Any:
        try:
            return validate_manifests(
                manifests,
                destination_namespace=self.app.destination.namespace,
                scopes=self.scopes(),
            )
        except ManifestError as exc:
            raise _Stop(str(exc), phase=OperationPhase.ERROR, retryable=False) from None

    def check_project(self, valid: Sequence[SourcedManifest]) -> None:
        """Refuse the whole sync, before any dry run or write, when the AppProject does not
        permit the app's source, its destination or any rendered object."""
        scope = self.request.project
        if scope is None:
            return
        # Every source's repository, as Argo CD checks them (none for a rollback's manifests).
        declared = self.app.declared_sources() if self.request.manifests is None else ()
        repos = [src.repo_url for src in declared]
        keys = [(m.key.group, m.key.kind, m.key.namespace, m.key.name) for m in valid]
        problems = sync_violations(scope, repos, keys)
        if problems:
            raise _Stop(
                f"{len(problems)} problem(s) with project {scope.project.name!r}; nothing was "
                "applied: " + "; ".join(problems),
                phase=OperationPhase.FAILED,
                retryable=False,
            )

    def _history_kinds(self) -> set[tuple[str, str]]:
        if self.history is None:
            return set()
        return {(r.group, r.kind) for e in self.history.entries(self.app.name) for r in e.resources}

    def read_live(self, desired: Sequence[SourcedManifest]) -> list[dict[str, Any]]:
        """Live objects this app tracks, in the kinds involved, plus those at Git's keys."""
        keys = {m.key for m in desired}
        declared = {k.group_kind for k in keys} | self._history_kinds()
        kinds = declared | set(COMMON_KINDS)
        self.listed_namespaces = None
        if self.live_state is None:
            return self._list_live(kinds, declared, keys)
        cache = self.live_state
        cached = {gk for gk in kinds if cache.is_current(gk)}
        # Kinds the cache does not hold (yet, or not now): listed as without a cache. A
        # common kind nobody renders is not watched; the app's own kinds (Git, history)
        # are what prune must see, so only those are listed.
        out = self._list_live(declared - cached, declared, keys)
        seen = {ResourceKey.of(o) for o in out}
        for obj in cache.tracked(self.app.name):
            key = ResourceKey.of(obj)
            if key in seen or not cache.is_current(key.group_kind):
                continue
            if key not in keys:
                # A prune candidate: confirm with the API server, never from the cache.
                fresh = self._get_live(key)
                if fresh is None or owning_app(fresh) != self.app.name:
                    continue
                obj = fresh
            seen.add(key)
            out.append(obj)
        for key in sorted(keys - seen):
            if key.group_kind not in cached or not key.name:
                continue
            ckey = (key.group, key.kind, key.namespace, key.name)
            found = cache.get_tracked(ckey)  # tracked by another app: compared, adopted
            if found is None and cache.exists(ckey):
                found = self._get_live(key)  # live but untracked: one GET, not a LIST
            if found is not None:
                seen.add(key)
                out.append(found)
        return out

    def _get_live(self, key: ResourceKey) -> dict[str, Any] | None:
        res = self.call("discovery", lambda: self.kube.resource_for(key.group, key.kind))
        return self.call(f"get {key}", lambda: self.kube.get_or_none(res, key.name, key.namespace))

    def _list_live(
        self,
        kinds: set[tuple[str, str]],
        declared: set[tuple[str, str]],
        keys: set[ResourceKey],
    ) -> list[dict[str, Any]]:
        if not kinds:
            return []
        namespaces = sorted(
            {k.namespace for k in keys if k.namespace} | {self.app.destination.namespace} - {""}
        )
        served = self.call("discovery", self.kube.resources)
        out: list[dict[str, Any]] = []
        for gk in sorted(kinds):
            res = served.get(gk)
            if res is None or "list" not in res.verbs:
                continue  # not served (yet): nothing of it can be live
            try:
                items, _ = self.call(f"list {res.plural}", partial(self.kube.list, res))
            except Unauthorized:
                # A credential limited to some namespaces: read those, and skip a kind the
                # app never declared rather than fail on it.
                if not res.namespaced or not namespaces:
                    if gk in declared:
                        raise
                    continue
                items = []
                for ns in namespaces:
                    try:
                        found, _ = self.call(
                            f"list {res.plural}", partial(self.kube.list, res, namespace=ns)
                        )
                    except Unauthorized:
                        if gk in declared:
                            raise
                        found = []
                    items.extend(found)
            if gk == ("", "Namespace"):
                self.listed_namespaces = {_name_of(n) for n in items}
            for obj in items:
                if owning_app(obj) == self.app.name or ResourceKey.of(obj) in keys:
                    out.append(obj)
        return out

    def compare(
        self, desired: Sequence[SourcedManifest], live: Sequence[Mapping[str, Any]]
    ) -> AppComparison:
        try:
            return compare_app(
                [m.obj for m in desired],
                live,
                app=self.app.name,
                ignore_differences=self.app.ignore_differences,
                jq_runner=self.jq_runner,
            )
        except SyncError as exc:
            raise _Stop(str(exc), phase=OperationPhase.ERROR, retryable=False) from None

    def _namespaces(self, desired: Sequence[SourcedManifest]) -> set[str]:
        """Namespaces that exist; with a live cache only those this sync asks about (a GET
        each unless the cache holds Namespaces), not a LIST."""
        res = self.call("discovery", lambda: self.kube.resource_for("", "Namespace"))
        if self.live_state is not None:
            wanted = {m.key.namespace for m in desired} | {self.app.destination.namespace}
            cache = self.live_state
            current = cache.is_current(("", "Namespace"))
            found: set[str] = set()
            for ns in sorted(wanted - {""}):
                if current:
                    if cache.exists(("", "Namespace", "", ns)):
                        found.add(ns)
                elif self.call(f"get namespace {ns}", partial(self.kube.get_or_none, res, ns)):
                    found.add(ns)
            return found
        if self.listed_namespaces is not None:
            return self.listed_namespaces
        items, _ = self.call("list namespaces", lambda: self.kube.list(res))
        return {_name_of(n) for n in items}

    def plan(
        self,
        valid: Sequence[SourcedManifest],
        live: Sequence[Mapping[str, Any]],
        comparison: AppComparison,
        namespaces: set[str],
    ) -> SyncPlan:
        automated = self.app.sync_policy.automated
        prune = self.request.prune
        if prune is None:
            prune = bool(automated and automated.prune)
        only = None
        if self.request.self_heal:
            only = frozenset(r.key for r in comparison.out_of_sync if r.counts_for_app)
        dest = self.app.destination.namespace
        try:
            return plan_sync(
                app=self.app.name,
                desired=valid,
                live=live,
                revision=self.revision,
                started_at=int(self.started_at.timestamp()),
                options=self.app.sync_policy.sync_options,
                prune=prune,
                allow_empty=bool(automated and automated.allow_empty),
                only=only,
                skip_hooks=self.request.self_heal,
                synced=comparison.synced_keys,
                destination_namespace=dest,
                namespace_exists=(dest in namespaces) if dest else None,
                prune_forbidden=self._prune_forbidden,
            )
        except (EmptyRenderGuardError, SharedResourceError) as exc:
            raise _Stop(str(exc), phase=OperationPhase.FAILED, retryable=False) from None

    def _orphans(self) -> str:
        """Argo CD's orphaned-resources warning, for a project that asks for it: objects of
        the app's kinds (and the common ones) in its namespaces that no Application tracks.
        Only ever a warning: a failure to list is reported, the sync stays successful."""
        scope = self.request.project
        settings = scope.project.orphaned_resources if scope is not None else None
        if scope is None or settings is None or not settings.warn or self.rendered is None:
            return ""
        keys = [ResourceKey.of(o) for o in self.rendered]
        dest = self.app.destination.namespace
        namespaces = sorted({k.namespace for k in keys if k.namespace} | {dest} - {""})
        kinds = {k.group_kind for k in keys} | set(COMMON_KINDS)
        objects: list[LiveObject] = []
        try:
            served = self.call("discovery", self.kube.resources)
            for gk in sorted(kinds):
                res = served.get(gk)
                if res is None or not res.namespaced or "list" not in res.verbs:
                    continue
                for ns in namespaces:
                    items, _ = self.call(
                        f"list {res.plural}", partial(self.kube.list, res, namespace=ns)
                    )
                    objects.extend(
                        LiveObject(
                            group=gk[0],
                            kind=gk[1],
                            namespace=ns,
                            name=_name_of(o),
                            managed=owning_app(o) is not None
                            or bool((o.get("metadata") or {}).get("ownerReferences")),
                        )
                        for o in items
                    )
        except (KubeError, _Stop) as exc:
            self.emit(
                ProgressEvent(
                    kind=EventKind.WARNING, message=f"orphaned resources not checked: {exc}"
                )
            )
            return ""
        orphans = orphaned_resources(scope.project, objects)
        if not orphans:
            return ""
        warning = orphaned_warning(orphans)
        self.emit(ProgressEvent(kind=EventKind.WARNING, message=warning))
        return f"; {warning}"

    def _prune_forbidden(self, key: ResourceKey) -> str | None:
        scope = self.request.project
        if scope is None:
            return None
        return prune_violation(scope, key.group, key.kind, key.namespace)

    def dry_run(self, plan: SyncPlan, namespaces: set[str]) -> None:
        """Server-side dry run of every apply before the first write (Argo's first pass)."""
        created_ns = {
            t.key.name for t in plan.tasks if t.key.kind == "Namespace" and t.key.group == ""
        }
        crd_kinds: set[tuple[str, str]] = set()
        for t in plan.tasks:
            spec = (t.desired or {}).get("spec") or {}
            if t.key.kind == "CustomResourceDefinition" and isinstance(spec, Mapping):
                crd_kinds.add((str(spec.get("group")), str((spec.get("names") or {}).get("kind"))))
        checked: list[SyncTask] = []
        for t in [*plan.tasks, *plan.sync_fail]:
            if t.action is not Action.APPLY or t.desired is None or t.skip:
                continue
            if t.hook and t.live is not None:
                continue  # re-created after BeforeHookCreation deletes the old one
            if t.key.group_kind in crd_kinds or t.options.skip_dry_run_on_missing_resource:
                continue
            ns = t.key.namespace
            if ns and ns not in namespaces and ns in created_ns | {self.app.destination.namespace}:
                continue  # its namespace is created by this sync
            checked.append(t)

        def check(t: SyncTask) -> str | None:
            assert t.desired is not None
            try:
                self.call(
                    f"dry-run {t.key}",
                    partial(
                        self.kube.apply, t.desired, force=self.request.force_conflicts, dry_run=True
                    ),
                )
            except KubeError as exc:
                if isinstance(exc, Transient):
                    raise
                origin = f"{t.origin}: " if t.origin else ""
                return f"{origin}{t.key.kind} {t.key.name}: {exc}"
            return None

        # The dry runs are independent reads of the API server's verdict: they run side by
        # side (bounded), and every one has answered before the first write, as in Argo CD.
        # Results keep plan order, so the message names the rejected objects in that order.
        if len(checked) > 1:
            workers = min(DRY_RUN_PARALLEL, len(checked))
            with ThreadPoolExecutor(workers, thread_name_prefix="dry-run") as pool:
                answers = list(pool.map(check, checked))
        else:
            answers = [check(t) for t in checked]
        problems = [a for a in answers if a is not None]
        if problems:
            raise _Stop(
                f"{len(problems)} manifest(s) rejected by the API server (dry run); nothing was "
                "applied: " + "; ".join(problems),
                phase=OperationPhase.FAILED,
                retryable=False,
            )

    # -- writes

    def _apply(self, task: SyncTask) -> _GateItem:
        assert task.desired is not None
        self.wrote = True
        obj = task.desired
        res = self.call("discovery", lambda: self.kube.resource_of(obj))
        if task.hook:
            try:
                out = self.call(f"create {task.key}", lambda: self.kube.create(obj))
            except Conflict:
                # Created by an earlier attempt of this same operation (deterministic name):
                # reuse it rather than run the hook twice.
                out = self.call(
                    f"get {task.key}",
                    lambda: self.kube.get(res, task.key.name, task.key.namespace),
                )
            self.hooks_created[task.key] = task
        elif task.options.replace:
            out = self.call(f"replace {task.key}", lambda: self.kube.replace(obj))
        else:
            out = self.call(
                f"apply {task.key}",
                lambda: self.kube.apply(
                    obj, field_manager=FIELD_MANAGER, force=self.request.force_conflicts
                ),
            )
        gen = (out.get("metadata") or {}).get("generation")
        return _GateItem(task=task, res=res, generation=gen if isinstance(gen, int) else None)

    def _delete(self, task: SyncTask, propagation: PropagationPolicy) -> _GateItem:
        self.wrote = True
        live = task.live or {}
        res = self.call("discovery", lambda: self.kube.resource_of(live or {"apiVersion": "v1"}))
        if task.live_hook_finalizer:
            self._remove_finalizer(res, task.key)
        self.call(
            f"delete {task.key}",
            lambda: self.kube.delete(
                res, task.key.name, task.key.namespace, propagation=propagation
            ),
        )
        return _GateItem(task=task, res=res, gone=True)

    def _remove_finalizer(
        self, res: ApiResource, key: ResourceKey, obj: Mapping[str, Any] | None = None
    ) -> bool:
        """Take our hook finalizer off ``key``; ``obj``, when given, is a recent read of it
        (a stale one only costs a Conflict and a GET). True once the finalizer is gone."""
        for _ in range(5):
            if obj is None:
                obj = self.call(
                    f"get {key}", lambda: self.kube.get_or_none(res, key.name, key.namespace)
                )
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
                self.call(
                    f"remove finalizer {key}",
                    partial(self.kube.merge_patch, res, key.name, key.namespace, patch),
                )
                return True
            except Conflict:
                obj = None  # changed meanwhile: read again
            except NotFound:
                return True
        return False

    # -- the gate

    def gate(self, items: list[_GateItem], *, fail_on_degraded: bool = True) -> str | None:
        """Wait until every item is done; the failure message, or None."""
        pending = [i for i in items if not i.done]
        if not pending:
            return None
        cache = self.live_state
        if cache is not None and all(
            cache.is_current((i.task.key.group, i.task.key.kind)) for i in pending
        ):
            return self._gate_on_cache(cache, pending, fail_on_degraded)
        groups: dict[tuple[str, str, str], list[_GateItem]] = {}
        for item in pending:
            res = item.res
            groups.setdefault((res.api_version, res.plural, item.task.key.namespace), []).append(
                item
            )
        events: queue.Queue[tuple[str, int, Any]] = queue.Queue()
        stop = threading.Event()
        watchers = []
        for index, ((_, _, ns), members) in enumerate(groups.items()):
            w = _Watcher(self.raw_kube, members[0].res, ns, index, events, stop, self.api_policy)
            w.start()
            watchers.append(w)
        state: dict[ResourceKey, dict[str, Any] | None] = {}
        listed: set[int] = set()
        try:
            while True:
                if len(listed) == len(watchers):
                    failure = self._evaluate(pending, state, fail_on_degraded)
                    if failure is not None or all(i.done for i in pending):
                        return failure
                self._check()
                try:
                    what, index, payload = events.get(timeout=0.2)
                except queue.Empty:
                    continue
                if what == "list":
                    listed.add(index)
                    members = list(groups.values())[index]
                    present = {ResourceKey.of(o): o for o in payload}
                    for item in members:
                        state[item.task.key] = present.get(item.task.key)
                elif what == "event":
                    ev: WatchEvent = payload
                    key = ResourceKey.of(ev.object)
                    state[key] = None if ev.type == "DELETED" else ev.object
                elif what == "retry":
                    delay, attempt, exc = payload
                    self.emit(
                        ProgressEvent(
                            kind=EventKind.RETRY,
                            message=f"watch: {exc}; retry {attempt} in {delay:g}s",
                            delay_s=delay,
                            attempt=attempt,
                        )
                    )
                elif what == "error":
                    return f"watching {payload}"
        finally:
            stop.set()

    def _gate_on_cache(
        self, cache: LiveState, pending: list[_GateItem], fail_on_degraded: bool
    ) -> str | None:
        """The gate reading the worker's watch cache: evaluate, then sleep until the cache
        changes (any event of the cluster), until done, failed, cancelled or past the
        deadline. Freshness is the cache's: a body older than our write shows an
        observedGeneration below the generation the write returned (``gate_health``)."""
        confirm_at = time.monotonic() + GONE_CONFIRM_S
        while True:
            version = cache.wait_for_change(-1, 0.0)  # read before the state: no lost wake-up
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
                    obj = self.call(
                        f"get {key}",
                        partial(self.kube.get_or_none, item.res, key.name, key.namespace),
                    )
                state[key] = obj
            failure = self._evaluate(pending, state, fail_on_degraded)
            if failure is not None or all(i.done for i in pending):
                return failure
            self._check()
            cache.wait_for_change(version, GATE_POLL_S)

    def _evaluate(
        self,
        pending: list[_GateItem],
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
            health = gate_health(obj, self.rules, written_generation=item.generation)
            outcome = task_outcome(health, hook=task.hook)
            status = None if health is None else health.status.value
            if status != item.last_health:
                item.last_health = status
                if outcome is Outcome.RUNNING:
                    self._result(
                        task,
                        "Running",
                        health.message if health else "",
                        status,
                    )
            if outcome is Outcome.RUNNING:
                continue
            item.done = True
            if task.hook and not item.finalizer_removed:
                item.finalizer_removed = True
                if self._remove_finalizer(item.res, task.key, obj):
                    self.hooks_freed.add(task.key)
            msg = health.message if health else ""
            if outcome is Outcome.FAILED:
                self._result(task, "Failed" if task.hook else "Synced", msg, status)
                if fail_on_degraded:
                    what = "hook" if task.hook else "resource"
                    return f"{what} {task.key} is {status}: {msg or 'no message'}"
            else:
                self._result(task, "Succeeded" if task.hook else "Synced", msg, status)
        return None

    # -- one wave

    def run_wave(self, wave: PlanWave, *, wait_health: bool) -> str | None:
        self.emit(
            ProgressEvent(
                kind=EventKind.WAVE,
                phase=wave.phase.value,
                wave=wave.wave,
                message=wave.title,
            )
        )
        removals: list[_GateItem] = []
        for task in wave.tasks:
            self._check()
            if task.skip:
                self._result(
                    task, "PruneSkipped" if task.action is Action.PRUNE else "Skipped", task.skip
                )
                continue
            if task.action is Action.PRUNE:
                policy = task.options.prune_propagation.capitalize()
                item = self._delete(task, policy)  # type: ignore[arg-type]
                self._result(task, "Pruned", f"deleted ({policy} propagation)")
                removals.append(item)
                self.pruned.append(item)
            elif task.action is Action.DELETE:
                item = self._delete(task, "Background")
                self._result(task, "Deleting", "BeforeHookCreation: deleting the previous hook")
                removals.append(item)
        # A hook may only be re-created once its previous object is gone.
        blocking = [i for i in removals if i.task.action is Action.DELETE or wait_health]
        failure = self.gate(blocking)
        if failure:
            return failure
        for item in removals:
            if item.task.action is Action.DELETE:
                self._result(item.task, "Deleted", "previous hook deleted")
        applied: list[_GateItem] = []
        for task in wave.tasks:
            if task.action is not Action.APPLY or task.skip:
                continue
            self._check()
            try:
                item = self._apply(task)
            except KubeError as exc:
                self._result(task, "SyncFailed", str(exc))
                return f"{task.key}: {exc}"
            verb = "created" if task.hook else ("replaced" if task.options.replace else "applied")
            self._result(task, "Running" if task.hook else "Synced", verb)
            if task.hook or (
                wait_health
                and not ignores_health(task.desired)
                and self.rules.has_check(task.key.group, task.key.kind)
            ):
                applied.append(item)
        return self.gate(applied)

    def await_pruned(self) -> None:
        """Keep the operation running until every pruned object is gone, as gitops-engine
        does ("pending deletion"): a real cluster finishes a foreground or background
        deletion later (its garbage collector, finalizers), and the sync status is judged
        on what remains. Bounded by the sync timeout, else ``DEFAULT_PRUNE_WAIT_S``."""
        pending = [i for i in self.pruned if not i.done]
        if not pending:
            return
        first = pending[0].task.key
        what = f"{first.kind} {first.namespace + '/' if first.namespace else ''}{first.name}"
        if len(pending) > 1:
            what += f" and {len(pending) - 1} more"
        message = f"waiting for deletion of {what}"
        self.emit(ProgressEvent(kind=EventKind.OPERATION, message=message))
        if self.history is not None:
            self.history.update(self._operation(OperationPhase.RUNNING, message))
        saved = self.deadline
        if saved is None:
            self.deadline = time.monotonic() + DEFAULT_PRUNE_WAIT_S
        try:
            failure = self.gate(pending)
        except _Stop:
            if self.cancel.cancelled:
                raise
            limit = self.request.timeout_s or DEFAULT_PRUNE_WAIT_S
            left = ", ".join(str(i.task.key) for i in pending if not i.done)
            raise _Stop(
                f"timed out after {limit:g}s waiting for pruned objects to be deleted (still "
                f"present: {left}; a finalizer may hold them)",
                phase=OperationPhase.FAILED,
                retryable=False,
            ) from None
        finally:
            self.deadline = saved
        if failure:
            raise _Stop(failure, phase=OperationPhase.FAILED, retryable=True)

    # -- the whole operation

    def execute(self) -> OperationResult:
        policy = self.app.sync_policy.retry
        attempt = 0
        while True:
            result = self._attempt(attempt)
            if result.phase is OperationPhase.SUCCEEDED or self.request.dry_run:
                break
            if not self.retryable or not should_retry(policy, attempt):
                break
            delay = retry_delay_s(policy, attempt)
            attempt += 1
            self.emit(
                ProgressEvent(
                    kind=EventKind.RETRY,
                    message=f"sync failed: {result.message}; attempt {attempt + 1} in {delay:g}s",
                    delay_s=delay,
                    attempt=attempt,
                )
            )
            try:
                self._sleep(delay)
            except _Stop:
                break
            self.results.clear()
        return self._finish(result)

    def _attempt(self, attempt: int) -> OperationResult:
        self.retryable = False
        self.compared = None
        self.pruned = []
        self.emit(
            ProgressEvent(
                kind=EventKind.OPERATION,
                message=f"sync of {self.app.name} to {self.kube.name} started"
                + (f" (attempt {attempt + 1})" if attempt else ""),
            )
        )
        plan_text = ""
        try:
            sha, manifests = self.render()
            self.revision = sha
            if self.history is not None and attempt == 0 and not self.request.dry_run:
                self.history.begin(self._operation(OperationPhase.RUNNING, "running"))
            valid = self.validate(manifests)
            self.rendered = [m.obj for m in valid.manifests]
            for warning in valid.warnings:
                self.emit(ProgressEvent(kind=EventKind.WARNING, message=warning))
            self.check_project(valid.manifests)
            live = self.read_live(valid.manifests)
            comparison = self.compare(valid.manifests, live)
            self.compared = (live, comparison)
            namespaces = self._namespaces(valid.manifests)
            plan = self.plan(valid.manifests, live, comparison, namespaces)
            plan_text = plan.format()
            for warning in plan.warnings:
                self.emit(ProgressEvent(kind=EventKind.WARNING, message=warning))
            self.dry_run(plan, namespaces)
            if self.request.dry_run:
                return self._result_of(
                    OperationPhase.SUCCEEDED, "dry run: nothing applied", plan_text
                )
            if self.request.self_heal and not plan.tasks:
                return self._result_of(OperationPhase.SUCCEEDED, "already in sync", plan_text)
            # gitops-engine: several phases/waves or any hook => each step waits for health.
            wait_health = plan.multi_step
            current_phase = ""
            for wave in plan.waves:
                if wave.phase.value != current_phase:
                    current_phase = wave.phase.value
                    self.emit(
                        ProgressEvent(
                            kind=EventKind.PHASE, phase=current_phase, message=current_phase
                        )
                    )
                failure = self.run_wave(wave, wait_health=wait_health)
                if failure:
                    raise _Stop(failure, phase=OperationPhase.FAILED, retryable=True)
                if self.history is not None:
                    self.history.update(self._operation(OperationPhase.RUNNING, wave.title))
            self.await_pruned()
            message = "successfully synced (all tasks run)" + self._orphans()
            self._hook_cleanup(succeeded=True)
            return self._result_of(OperationPhase.SUCCEEDED, message, plan_text)
        except _Stop as stop:
            self.retryable = stop.retryable
            message = str(stop)
            if plan_text and stop.phase is OperationPhase.FAILED:
                # Argo runs SyncFail hooks for any failure once there is a plan, a failed
                # dry run included.
                message = self._sync_fail(message)
            self._hook_cleanup(succeeded=False)
            return self._result_of(stop.phase, message, plan_text, code=stop.code)
        except KubeError as exc:
            self.retryable = True
            self._hook_cleanup(succeeded=False)
            return self._result_of(OperationPhase.ERROR, str(exc), plan_text)

    def _sync_fail(self, message: str) -> str:
        """Run SyncFail hooks after a failure; their own failure is added to the message."""
        if self.cancel.cancelled:
            return message
        try:
            sync_fail = self._sync_fail_tasks()
        except (KubeError, _Stop):
            return message
        if not sync_fail:
            return message
        self.emit(ProgressEvent(kind=EventKind.PHASE, phase="SyncFail", message="SyncFail"))
        saved = self.deadline
        self.deadline = time.monotonic() + max(
            DEFAULT_SYNC_FAIL_TIMEOUT_S, (saved - time.monotonic()) if saved else 0.0
        )
        try:
            failure = self.run_wave(
                PlanWave(phase=sync_fail[0].phase, wave=0, tasks=tuple(sync_fail)),
                wait_health=True,
            )
        except (_Stop, KubeError) as exc:
            failure = str(exc)
        finally:
            self.deadline = saved
        return message + (f"; SyncFail hook failed: {failure}" if failure else "")

    def _sync_fail_tasks(self) -> tuple[SyncTask, ...]:
        # Re-planned so live hooks left by a previous run are seen (BeforeHookCreation).
        if self.rendered is None:
            return ()
        valid = [SourcedManifest(obj=m) for m in self.rendered]
        live = self.read_live(valid)
        plan = plan_sync(
            app=self.app.name,
            desired=valid,
            live=live,
            revision=self.revision,
            started_at=int(self.started_at.timestamp()),
            options=self.app.sync_policy.sync_options,
        )
        return plan.sync_fail

    def _hook_cleanup(self, *, succeeded: bool) -> None:
        """Free our finalizer on every hook of this operation, then apply the delete
        policies keyed to the operation's result (as Argo CD does)."""
        wanted = HookDeletePolicy.HOOK_SUCCEEDED if succeeded else HookDeletePolicy.HOOK_FAILED
        saved_cancel, self.cancel = self.cancel, CancelToken()  # cleanup runs even when cancelled
        saved_deadline, self.deadline = self.deadline, time.monotonic() + 60.0
        try:
            for key, task in list(self.hooks_created.items()):
                try:
                    res = self.kube.resource_of(task.desired or {})
                    if key not in self.hooks_freed:
                        self._remove_finalizer(res, key)
                    if wanted in task.hook_delete_policies:
                        self.call(
                            f"delete hook {key}",
                            partial(
                                self.kube.delete,
                                res,
                                key.name,
                                key.namespace,
                                propagation="Background",
                            ),
                        )
                        self.emit(
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
                except (KubeError, _Stop) as exc:
                    self.emit(
                        ProgressEvent(kind=EventKind.WARNING, message=f"hook {key} cleanup: {exc}")
                    )
            self.hooks_created.clear()
            self.hooks_freed.clear()
        finally:
            self.cancel, self.deadline = saved_cancel, saved_deadline

    # -- results

    def _operation(self, phase: OperationPhase, message: str) -> Operation:
        source = self.request.source
        if source is None and self.sources_record is not None:
            source = self.sources_record
        if source is None:
            src = next(iter(self.app.declared_sources()), None)
            source = (
                {}
                if src is None
                else {
                    "repoURL": src.repo_url,
                    "path": src.path,
                    "targetRevision": src.target_revision,
                }
            )
        return Operation(
            app=self.app.name,
            operation_id=self.operation_id,
            cluster=self.kube.name,
            revision=self.revision,
            source=source,
            initiated_by=self.request.initiated_by,
            trigger=self.request.trigger,
            started_at=self.started_at,
            phase=phase,
            message=message,
            resources=tuple(self.results.values()),
        )

    def _result_of(
        self, phase: OperationPhase, message: str, plan_text: str, code: int = 1
    ) -> OperationResult:
        return OperationResult(
            operation_id=self.operation_id,
            app=self.app.name,
            cluster=self.kube.name,
            phase=phase,
            message=message,
            revision=self.revision,
            started_at=self.started_at,
            finished_at=datetime.now(UTC),
            resources=tuple(self.results.values()),
            plan_text=plan_text,
            exit_code=code,
        )

    def _finish(self, result: OperationResult) -> OperationResult:
        sync_status: SyncStatus | None = None
        health: HealthStatus | None = None
        if self.rendered is not None:
            wait = (
                result.phase is OperationPhase.SUCCEEDED
                and self.request.wait_healthy
                and not self.request.dry_run
            )
            saved = self.deadline
            if not wait and saved is not None:
                # A sync that ran out of time still reports the state it left behind.
                self.deadline = max(saved, time.monotonic() + STATUS_READ_S)
            try:
                sync_status, health = self._app_status(wait=wait)
            except (KubeError, _Stop) as exc:
                self.emit(ProgressEvent(kind=EventKind.WARNING, message=f"app status: {exc}"))
            finally:
                self.deadline = saved
        history_id = None
        if self.history is not None and not self.request.dry_run:
            entry = self.history.record(
                self._operation(result.phase, result.message),
                finished_at=result.finished_at,
                manifests=self.rendered,
                limit=self.app.revision_history_limit,
            )
            history_id = entry.id
        self.emit(
            ProgressEvent(
                kind=EventKind.OPERATION,
                result=result.phase.value,
                message=result.message,
            )
        )
        return replace(result, sync_status=sync_status, health=health, history_id=history_id)

    def _app_status(self, *, wait: bool) -> tuple[SyncStatus, HealthStatus]:
        assert self.rendered is not None
        valid = [SourcedManifest(obj=m) for m in self.rendered]
        if wait:
            # Settle app health within the sync's timeout (``hub app sync`` waits, as
            # ``argocd app sync`` does); a Degraded resource ends the wait at once.
            items = []
            for m in valid:
                key = m.key
                if not key.name or not self.rules.has_check(key.group, key.kind):
                    continue
                if ignores_health(m.obj) or is_hook(m.obj):
                    continue
                try:
                    res = self.kube.resource_of(m.obj)
                except KubeError:
                    continue
                task = SyncTask(
                    action=Action.APPLY, phase=Phase.SYNC, wave=0, key=key, desired=m.obj
                )
                items.append(_GateItem(task=task, res=res))
            quiet, self.emit = self.emit, (lambda _e: None)
            saved = self.deadline
            if saved is None:
                # the operation is over; never hang on a resource that stays Progressing
                self.deadline = time.monotonic() + DEFAULT_HEALTH_WAIT_S
            try:
                self.gate(items, fail_on_degraded=True)
            except _Stop:
                pass
            finally:
                self.emit, self.deadline = quiet, saved
        if wait or self.wrote or self.compared is None:
            live = self.read_live(valid)
            comparison = self.compare(valid, live)
        else:
            live, comparison = self.compared
        by_key = {ResourceKey.of(o): o for o in live}
        pairs = [(m.obj, by_key.get(m.key)) for m in valid if m.key.name]
        return comparison.status, app_health(pairs, self.rules).status


# ---------------------------------------------------------------- watches


class _Watcher(threading.Thread):
    """List then watch one resource type in one namespace, feeding the gate's queue."""

    def __init__(
        self,
        kube: KubeClient,
        res: ApiResource,
        namespace: str,
        index: int,
        out: queue.Queue[tuple[str, int, Any]],
        stop: threading.Event,
        policy: RetryPolicy,
    ) -> None:
        super().__init__(daemon=True, name=f"gitops-hub-watch-{res.plural}")
        self.kube = kube
        self.res = res
        self.namespace = namespace if res.namespaced else ""
        self.index = index
        self.out = out
        self.stop = stop
        self.policy = policy

    def run(self) -> None:
        rv = ""
        failures = 0
        while not self.stop.is_set():
            try:
                if not rv:
                    items, rv = self.kube.list(self.res, namespace=self.namespace)
                    self.out.put(("list", self.index, items))
                for ev in self.kube.watch(
                    self.res,
                    namespace=self.namespace,
                    resource_version=rv,
                    timeout_s=WATCH_WINDOW_S,
                ):
                    failures = 0
                    rv = str((ev.object.get("metadata") or {}).get("resourceVersion") or rv)
                    if self.stop.is_set():
                        return
                    if ev.type in ("ADDED", "MODIFIED", "DELETED"):
                        self.out.put(("event", self.index, ev))
            except Gone:
                rv = ""  # history expired: list again (as clusters.cache does)
            except Transient as exc:
                delay = retry_delay_s(self.policy, failures)
                failures += 1
                self.out.put(("retry", self.index, (delay, failures, exc)))
                self.stop.wait(delay)
            except KubeError as exc:
                self.out.put(("error", self.index, f"{self.res.plural}: {exc}"))
                return


def _name_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name"))
