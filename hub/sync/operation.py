"""One sync operation's inputs, results and running state (the engine's shared vocabulary).

The public types callers build and read: ``SyncRequest``, ``Rendered``, ``OperationResult``,
``DiffResult``, ``ProgressEvent``, ``CancelToken`` and the ``LiveState`` / ``SourceProvider``
protocols. ``Run`` is one operation in flight: its request, clients and results so far, and
the plumbing every step uses — ``check`` (cancelled? past the deadline?), ``sleep``,
per-request retry of transient API errors, ``offload`` (a blocking call in a thread under
the caller's limiter), ``result`` (one resource's outcome, reported as an event). The steps
themselves live in ``attempt``, ``wave``, ``apply``, ``gate``, ``hooks``, ``live`` and
``outcome``; ``hub.sync.engine`` is the entry point.

Everything runs on the caller's event loop; spoke requests await ``clusters.kube.AsyncKube``.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from clusters.kube import ApiResource, AsyncKube, Transient
from hub.db import WouldWait
from hub.sync.diff import AppComparison, JqRunner, SyncStatus, Verdicts
from hub.sync.health import HealthRules, HealthStatus
from hub.sync.helm import ClusterInfo
from hub.sync.history import Operation, OperationPhase, ResourceResult, SyncHistory, Trigger
from hub.sync.model import Application, Backoff, RetryPolicy
from hub.sync.plan import SyncTask
from hub.sync.priority import WritesFirst
from hub.sync.projects import ProjectScope
from hub.sync.resources import ResourceKey
from hub.sync.retry import retry_delay_s, should_retry
from hub.sync.sources import ChartProvider
from hub.sync.validate import SourcedManifest

DEFAULT_API_RETRY = RetryPolicy(
    limit=3, backoff=Backoff(duration_s=0.5, factor=2, max_duration_s=5.0)
)
"""Per-call retry of transient API errors when the Application sets no ``retry``."""

DEFAULT_SYNC_FAIL_TIMEOUT_S = 120.0
DEFAULT_HEALTH_WAIT_S = 300.0  # final app-health wait when the sync has no timeout
DEFAULT_PRUNE_WAIT_S = 300.0  # wait for pruned objects to be gone when the sync has no timeout
STATUS_READ_S = 30.0  # time for the final live read once an operation ran out of its own
GATE_POLL_S = 0.5  # the gate re-checks the deadline this often when the cache is quiet
# A pruned object the cache still shows after this long is looked up once more (a GET per
# object per interval): a stalled or snapshot cache must not hold a sync to its timeout.
GONE_CONFIRM_S = 2.0
#: Server-side dry-run requests one sync has in flight at once (the worker runs at most
#: ``cluster_syncs`` syncs per cluster, so a cluster sees at most their product).
DRY_RUN_PARALLEL = 4

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
    involved, as the one-shot CLI does, and watches the kinds its gates wait on through a
    ``LiveCache`` of its own.

    The engine uses it only for kinds where ``is_current`` is true (listed and watched, no
    relist or watch error pending); every other kind involved is listed as without a cache.
    An object Git declares that is live but not tracked (adoption) is read with one GET;
    an object to prune is read again with one GET before the plan, so a stale cache can
    never prune what is no longer ours.

    The health gate waits on it (``changed``) when every kind it gates is current there:
    the objects a sync writes and the hooks it creates carry its tracking id, so the cache
    holds their bodies; no LIST of its own."""

    version: int

    def is_current(self, group_kind: tuple[str, str]) -> bool: ...

    def tracked(self, app: str) -> list[dict[str, Any]]: ...

    def get_tracked(self, key: LiveKey) -> dict[str, Any] | None: ...

    def exists(self, key: LiveKey) -> bool: ...

    async def changed(self, since: int, timeout_s: float) -> int:
        """Await until the state's version differs from ``since`` (or ``timeout_s``); the
        version then."""
        ...


class SourceProvider(Protocol):
    """Where sources come from (``hub.repos.RepoCache``)."""

    def resolve(self, repo_url: str, revision: str) -> str: ...

    def materialize(self, repo_url: str, sha: str) -> Path: ...


class CancelToken:
    """Stops an operation: ``cancel()`` from the operation's loop or any thread.

    The engine runs each attempt in an anyio ``CancelScope`` bound to the token, so a
    cancel interrupts whatever the operation awaits (a request, a gate, a back-off) at
    once; the attempt then ends Failed "terminated" and only our hook finalizers are
    removed afterwards."""

    def __init__(self) -> None:
        self._flag = threading.Event()
        self._lock = threading.Lock()
        self._scopes: list[tuple[anyio.CancelScope, anyio.lowlevel.EventLoopToken, int]] = []

    def cancel(self) -> None:
        with self._lock:
            self._flag.set()
            scopes = list(self._scopes)
        me = threading.get_ident()
        for scope, loop, thread in scopes:
            if thread == me:
                scope.cancel()
            else:
                with contextlib.suppress(RuntimeError):  # that loop has ended already
                    anyio.from_thread.run_sync(scope.cancel, token=loop)

    @property
    def cancelled(self) -> bool:
        return self._flag.is_set()

    def bind(self, scope: anyio.CancelScope) -> Callable[[], None]:
        """Cancel ``scope`` (entered on the running loop) with the token; returns the
        unbind. A token cancelled already cancels the scope at once."""
        entry = (scope, anyio.lowlevel.current_token(), threading.get_ident())
        with self._lock:
            self._scopes.append(entry)
            cancelled = self._flag.is_set()
        if cancelled:
            scope.cancel()

        def unbind() -> None:
            with self._lock:
                if entry in self._scopes:
                    self._scopes.remove(entry)

        return unbind


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
    # WAVE: the wave waits for its resources' health (or its hooks) before the operation
    # goes on; a wave that does not (a single-step sync) ends once its requests are
    # answered, and its message says nothing "running" does not.
    waits: bool = False


EventSink = Callable[[ProgressEvent], None]
"""Called on the operation's loop for every event; it must not block."""


@dataclass(frozen=True, kw_only=True)
class Rendered:
    """An app rendered (and validated) by the caller at ``revision``: ``revision_text`` of
    its sources (several joined with ``,``; a chart source's version) and ``sources`` as
    ``source_record`` made it, so history records the same as for a render of its own."""

    revision: str
    manifests: tuple[SourcedManifest, ...]
    sources: Mapping[str, Any]
    # The caller's last compare against these manifests (the worker's refreshes): the
    # engine's compare reuses its verdicts when its own validation gives equal manifests,
    # as the worker's next refresh would.
    verdicts: Verdicts | None = field(default=None, compare=False)
    # What the caller validated ``manifests`` against: the cluster's discovery as
    # ``AsyncKube.resources()`` returned it (the same object until discovery is refreshed)
    # and the destination namespace. The engine validates them again only when either
    # changed since (a CRD a sync installed, a discovery refresh), and reports ``warnings``,
    # that validation's, otherwise.
    validated_against: tuple[object, str] | None = field(default=None, compare=False)
    warnings: tuple[str, ...] = ()


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
    # Compare once more at the end for the result's sync status and health. The hub's
    # workers do not use them: their refresh right after the sync reports the same.
    status_after: bool = True
    # Rollback: re-apply these manifests (from history) at ``revision`` instead of rendering.
    manifests: Sequence[Mapping[str, Any]] | None = None
    # The caller's render of the app (the hub worker's desired state): used instead of
    # rendering again when ``revision`` is unset or is the one it was rendered at.
    rendered: Rendered | None = None
    source: Mapping[str, Any] | None = None
    # The AppProject the sync must stay inside (None: not checked, as for a bare CLI sync).
    project: ProjectScope | None = None
    # The caller's own writes, committed in the store transaction that records the
    # operation's start (the in-flight operation) and its end (the history entry; given
    # the final result, its history id set). The hub's worker writes the app's operation
    # state there: one transaction at each end of a sync instead of two, and no crash can
    # leave the app's status and its history disagreeing. They run where the engine's
    # store calls run (the event loop or a store thread), and only when a history is kept
    # and the operation is not a dry run; a start that fails before the first write (a
    # render error) never calls ``on_started``.
    on_started: Callable[[], None] | None = field(default=None, compare=False)
    on_recorded: Callable[[OperationResult], None] | None = field(default=None, compare=False)


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


class InlineStore(Protocol):
    """A store that may run a call on the event loop's thread (``hub.store.Store``)."""

    def call_inline(self, fn: Callable[[], T]) -> T:
        """``fn`` here and now, or ``WouldWait`` (nothing written) when it would wait."""
        ...


#: Pauses before a store call that would wait for a writer tries inline again, then goes
#: to a thread: most writes hold the lock for a millisecond or two.
INLINE_RETRY_S = (0.002, 0.005, 0.01)


async def store_call(
    inline: InlineStore | None, fn: Callable[[], T], limiter: anyio.CapacityLimiter | None
) -> T:
    """A store call on this loop when the store takes it inline (a thread hand-off cost
    about as much CPU as a small transaction), else in a thread under ``limiter``. A call
    that would wait for a writer tries again after short pauses before it goes to a
    thread: handed straight to threads, such calls made more thread writers, which made
    more inline calls wait (at 60 clusters, refresh results queued for store threads)."""
    if inline is not None:
        for pause in (*INLINE_RETRY_S, None):
            try:
                return inline.call_inline(fn)
            except WouldWait:
                if pause is None:
                    break
                await anyio.sleep(pause)
    return await anyio.to_thread.run_sync(fn, limiter=limiter)


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Where the engine's blocking work runs: renders (Git, helm, kustomize) and store
    reads/writes go to threads under these limiters (None: anyio's default limiter);
    store calls run on the loop instead when ``inline`` takes them (SQLite, lock free).
    ``backoff``: the block a retry's backoff wait runs in (the worker lends its hub-wide
    sync slot out there, so a failing cluster holds none while it waits). ``cluster_done``:
    called once the operation needs its cluster no more, before its history record (the
    worker gives its sync slots, the hub-wide one and its cluster's, back there).
    ``writes_first``:
    the hub-wide gate that puts syncs on their way to a write before other work
    (``hub.sync.priority``); None outside ``hub serve``."""

    render: anyio.CapacityLimiter | None = None
    store: anyio.CapacityLimiter | None = None
    inline: InlineStore | None = None
    backoff: Callable[[], contextlib.AbstractAsyncContextManager[object]] | None = None
    cluster_done: Callable[[], None] | None = None
    writes_first: WritesFirst | None = None


class Stop(Exception):
    """Ends an attempt: ``message`` says why; ``retryable`` whether another attempt may help."""

    def __init__(self, message: str, *, phase: OperationPhase, retryable: bool, code: int = 1):
        super().__init__(message)
        self.phase = phase
        self.retryable = retryable
        self.code = code


TERMINATED = "operation terminated"


def rejection(task: SyncTask, error: Exception) -> str:
    """How a manifest the API server refused is named in an operation's message."""
    origin = f"{task.origin}: " if task.origin else ""
    return f"{origin}{task.key.kind} {task.key.name}: {error}"


def rejected(problems: Sequence[str], *, by: str, applied_unchanged: int = 0) -> Stop:
    """The end of an attempt whose manifests the API server refused before anything was
    changed (``by``: how the verdicts were asked; ``applied_unchanged``: how many objects
    already live as declared were applied before, changing nothing)."""
    outcome = "nothing was applied"
    if applied_unchanged:
        outcome = (
            f"nothing was changed (the {applied_unchanged} object(s) applied before it were "
            "already as Git declares them)"
        )
    return Stop(
        f"{len(problems)} manifest(s) rejected by the API server ({by}); {outcome}: "
        + "; ".join(problems),
        phase=OperationPhase.FAILED,
        retryable=False,
    )


@dataclass(kw_only=True)
class GateItem:
    """One object a gate waits on: healthy (after our write's generation), or gone."""

    task: SyncTask
    res: ApiResource
    generation: int | None = None
    gone: bool = False  # wait for the object to disappear (prune / hook delete)
    done: bool = False
    last_health: str | None = None
    finalizer_removed: bool = False


@dataclass(kw_only=True)
class Run:
    """One sync operation in flight (see the module docstring)."""

    kube: AsyncKube
    app: Application
    request: SyncRequest
    sources: SourceProvider | None
    history: SyncHistory | None
    rules: HealthRules
    jq_runner: JqRunner | None
    emit: EventSink
    cancel: CancelToken
    limits: Limits = field(default_factory=Limits)
    operation_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    deadline: float | None = None
    revision: str = ""
    results: dict[tuple[str, ResourceKey, str], ResourceResult] = field(default_factory=dict)
    hooks_created: dict[ResourceKey, SyncTask] = field(default_factory=dict)
    # Hooks of ``hooks_created`` whose finalizer the gate already freed (cleanup skips them).
    hooks_freed: set[ResourceKey] = field(default_factory=set)
    # This attempt's prunes; the operation ends only once they are gone (``await_pruned``).
    pruned: list[GateItem] = field(default_factory=list)
    # The last attempt's live read and comparison; the final app status reuses them while
    # nothing has been written (a dry run, already in sync, a failure before any write).
    compared: tuple[list[dict[str, Any]], AppComparison] | None = None
    wrote: bool = False
    # Called once this attempt's first writes are out (``Limits.writes_first``).
    writes_out: Callable[[], None] = lambda: None
    # The plan's first change when the dry run left it to its own request: nothing is
    # changed before it, so the server's answer to it is the same verdict (see
    # ``hub.sync.attempt.dry_run``); a rejection of it fails the attempt as a dry run would.
    unverified_write: SyncTask | None = None
    # Applies of objects already live as declared sent so far (``SyncTask.unchanged``).
    applied_unchanged: int = 0
    plan_text: str = ""  # the current attempt's plan, once made
    rendered: list[dict[str, Any]] | None = None
    retryable: bool = False
    live_state: LiveState | None = None
    # The engine's own watch cache (one-shots, or kinds the caller's cache lacks): made by
    # the gate on first need, its watches run in ``tasks`` until the operation ends.
    own_cache: Any = None
    own_cache_error: str = ""  # a watch of the own cache failed for good (not transient)
    # anyio TaskGroup of the operation: the own cache's watches, started by ``watch`` only
    # (the engine ends them by ``end_watches``, not by cancelling the group).
    tasks: Any = None
    # One cancel scope per ``watch``, cancelled by ``end_watches`` when the operation ends.
    watches: list[anyio.CancelScope] = field(default_factory=list)
    # Names from the Namespace LIST of the last ``read_live`` without a cache, so
    # ``namespaces`` does not LIST them again in the same attempt.
    listed_namespaces: set[str] | None = None
    charts: ChartProvider | None = None
    # every source's repo, target and resolved revision (history keeps it)
    sources_record: dict[str, Any] | None = None
    cluster_facts: ClusterInfo | None = None
    # The kinds the app's history names, read once per operation: the history changes
    # only when the operation itself is recorded, at its very end.
    history_kinds: set[tuple[str, str]] | None = None

    def __post_init__(self) -> None:
        if self.request.timeout_s is not None:
            self.deadline = time.monotonic() + self.request.timeout_s
        # Every request made through the run is retried alone per the app's backoff. The
        # view holds the run weakly: a bound method would make run -> view -> run a
        # reference cycle, and everything a run holds (live reads, comparisons, results)
        # would wait for a full garbage collection instead of going when the sync ends.
        run = weakref.ref(self)

        async def retry(what: str, send: Callable[[], Awaitable[Any]]) -> Any:
            alive = run()
            return await (send() if alive is None else alive._retry_request(what, send))

        self.kube = self.kube.with_retry(retry)

    @property
    def api_policy(self) -> RetryPolicy:
        return self.app.sync_policy.retry or DEFAULT_API_RETRY

    @property
    def cluster(self) -> str:
        return self.kube.name

    # -- plumbing

    def watch(self, fn: Callable[[], Awaitable[None]], *, name: str) -> None:
        """Run ``fn()`` in the operation's task group until ``end_watches``."""
        assert self.tasks is not None, "the engine's entry point opens the operation's tasks"
        scope = anyio.CancelScope()
        self.watches.append(scope)
        self.tasks.start_soon(_until_cancelled, scope, fn, name=name)

    def end_watches(self) -> None:
        """End every ``watch``: each returns from its own cancelled scope, so the task
        group's exit waits for them (a turn of the loop)."""
        for scope in self.watches:
            scope.cancel()

    def check(self) -> None:
        if self.cancel.cancelled:
            raise Stop(TERMINATED, phase=OperationPhase.FAILED, retryable=False)
        if self.deadline is not None and time.monotonic() > self.deadline:
            limit = self.request.timeout_s
            raise Stop(
                f"sync timed out after {limit:g}s" if limit else "timed out waiting",
                phase=OperationPhase.FAILED,
                retryable=False,
            )

    def left(self, seconds: float) -> float:
        """``seconds`` cut to what is left before the deadline."""
        if self.deadline is not None:
            return min(seconds, max(0.0, self.deadline - time.monotonic()))
        return seconds

    async def sleep(self, seconds: float) -> None:
        """Sleep (cut to the deadline; a cancel of the operation wakes it), then check."""
        with anyio.CancelScope() as scope:
            unbind = self.cancel.bind(scope)
            try:
                await anyio.sleep(self.left(seconds))
            finally:
                unbind()
        self.check()

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()`` (cluster calls) after checking for cancellation and the deadline;
        each of its requests is retried on transient errors by ``_retry_request``."""
        self.check()
        return await fn()

    async def _retry_request(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """One HTTP request with transient API errors retried per the app's retry backoff."""
        attempt = 0
        while True:
            self.check()
            try:
                return await fn()
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
                await self.sleep(delay)

    async def offload(
        self, fn: Callable[..., T], *args: Any, limiter: anyio.CapacityLimiter | None = None
    ) -> T:
        """A blocking call (Git, a renderer, the store) in a thread under ``limiter``."""
        return await anyio.to_thread.run_sync(partial(fn, *args), limiter=limiter)

    async def store(self, fn: Callable[..., T], *args: Any) -> T:
        """A store read or write (history), see ``store_call``."""
        return await store_call(self.limits.inline, partial(fn, *args), self.limits.store)

    def operation(self, phase: OperationPhase, message: str) -> Operation:
        """The history record of the operation so far."""
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

    def result(
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


async def _until_cancelled(scope: anyio.CancelScope, fn: Callable[[], Awaitable[None]]) -> None:
    # Ended by its own scope, the task returns instead of raising CancelledError: anyio's
    # task group keeps the CancelledError of a child task it cancelled in a reference
    # cycle with its ``task_done`` callback's frame (``exc`` -> traceback -> frame ->
    # ``exc``), and that frame holds the task, its coroutine's frames and all they refer
    # to (a watch's cache, its response and socket) until a full garbage collection.
    with scope:
        await fn()


def name_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name"))


__all__ = [
    "COMMON_KINDS",
    "DEFAULT_API_RETRY",
    "DRY_RUN_PARALLEL",
    "CancelToken",
    "DiffResult",
    "EventKind",
    "EventSink",
    "GateItem",
    "Limits",
    "LiveState",
    "OperationResult",
    "ProgressEvent",
    "Rendered",
    "Run",
    "SourceProvider",
    "Stop",
    "SyncRequest",
    "Trigger",
    "rejected",
    "rejection",
]
