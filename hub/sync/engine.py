"""The sync engine's entry points: one sync operation, or one diff, of one Application.

``sync_application`` runs one sync operation: resolve the revision to a SHA, render at that
SHA (or take the caller's render), validate every manifest, read live state, compare, plan
(``hub.sync.plan``), then run the plan phase by phase and wave by wave:

1. prunes and ``BeforeHookCreation`` deletes of the wave, waiting until they are gone;
2. applies: server-side apply with field manager ``gitops-hub`` (conflicts forced unless
   told otherwise), ``Replace=true`` with PUT, hooks created under their deterministic
   name (an earlier attempt's hook of the same operation is reused, never duplicated);
3. the health gate on a watch cache until every applied object with a health check is
   Healthy, judged only once ``status.observedGeneration`` reached the
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

Retries: a ``Transient`` API error (429/5xx/timeout/connection) is retried per request with
the app's ``syncPolicy.retry`` backoff (``retry.retry_delay_s``), or with
``DEFAULT_API_RETRY`` when the app has none; a failed attempt of the whole operation is
retried per ``syncPolicy.retry`` (limit, backoff) unless it failed on bad input (render,
validation, empty-render guard), which a retry cannot fix. Every retry is reported as a
progress event.

Concurrency model: **async, on the caller's event loop** (no thread per sync). Spoke
requests await ``clusters.kube.AsyncKube``; Git, the renderers (helm, kustomize) and
store reads/writes run in threads under the caller's limiters (``Limits``); pure
validation, diff and planning run inline. The health gate, hook and prune waits await a
watch cache (``LiveState``: the worker's; or, for a one-shot, a ``LiveCache`` the
operation runs itself). Stop an operation with its ``CancelToken`` (from the loop or any
thread): whatever it awaits is interrupted, it ends Failed "terminated", and only our
hook finalizers are removed afterwards. Progress events are delivered by calling
``on_event`` on the loop (it must not block). One ``JqRunner`` should be shared across
calls (it owns a child process).

The modules, by step: ``operation`` (types, the running state and its plumbing),
``attempt`` (one attempt and the retries), ``live`` (reads of live state, comparison),
``wave``, ``apply`` (the writes of one task), ``gate`` (health gate, prune wait),
``hooks`` (SyncFail hooks, cleanup), ``outcome`` (result, status, history entry).

``sync_application_blocking`` / ``diff_application_blocking`` run one operation on a loop
of their own (``anyio.run``), for the CLI one-shots and callers in a thread.

Results: ``OperationResult`` (phase Succeeded / Failed / Error, message, per-resource
results, revision, start/finish times, the app's sync status and health afterwards) and,
when a ``SyncHistory`` is given, one history entry per operation (manifests sealed).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio

from clusters.kube import AsyncKube, KubeClient
from hub.sync.attempt import execute, render, scopes_of, validate
from hub.sync.diff import JqRunner
from hub.sync.health import HealthRules
from hub.sync.helm import ClusterInfo, RenderContext
from hub.sync.history import SyncHistory
from hub.sync.live import cluster_facts, compare, read_live
from hub.sync.model import Application, SyncError
from hub.sync.operation import (
    COMMON_KINDS,
    DEFAULT_API_RETRY,
    DRY_RUN_PARALLEL,
    CancelToken,
    DiffResult,
    EventKind,
    EventSink,
    Limits,
    LiveState,
    OperationResult,
    ProgressEvent,
    Rendered,
    Run,
    SourceProvider,
    Stop,
    SyncRequest,
)
from hub.sync.render import render_source
from hub.sync.sources import ChartProvider

T = TypeVar("T")


async def sync_application(
    kube: AsyncKube,
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
    limits: Limits | None = None,
) -> OperationResult:
    """Run one sync operation of ``app`` against ``kube`` (see the module docstring).

    ``live_state``: read live objects from it (``LiveState``) instead of LISTing.
    ``charts``: chart repositories (default: ``hub.charts.shared_chart_repos()``).
    ``limits``: the thread limiters of renders and store calls."""
    run = Run(
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
        limits=limits or Limits(),
    )
    async with anyio.create_task_group() as tg:
        run.tasks = tg  # the operation's own watches (see hub.sync.gate), ended with it
        try:
            result = await execute(run)
        finally:
            run.end_watches()  # not the group's scope: see operation._until_cancelled
    run.tasks = None  # anyio's task group and cancel scopes refer to each other
    return result


async def diff_application(
    kube: AsyncKube,
    app: Application,
    *,
    sources: SourceProvider | None = None,
    revision: str | None = None,
    local_dir: Path | None = None,
    jq_runner: JqRunner | None = None,
    history: SyncHistory | None = None,
    live_state: LiveState | None = None,
    charts: ChartProvider | None = None,
    limits: Limits | None = None,
) -> DiffResult:
    """Compare ``app`` at ``revision`` (or the files in ``local_dir``) with the cluster.

    Raises ``SyncError`` (render, validation, Git) or a ``KubeError``; never writes.
    """
    run = Run(
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
        limits=limits or Limits(),
    )
    try:
        if local_dir is not None:
            src = replace(app.primary_source(), path="")
            context = RenderContext(
                app_name=app.name,
                destination_namespace=app.destination.namespace,
                cluster=await cluster_facts(run) if src.declared_type == "Helm" else ClusterInfo(),
            )
            rendered = await run.offload(
                partial(render_source, local_dir, src, context=context),
                limiter=run.limits.render,
            )
            sha = f"local:{local_dir}"
            manifests = list(rendered.manifests)
        else:
            sha, manifests = await render(run)
        valid = await validate(run, manifests)
        live = await read_live(run, valid.manifests)
        comparison = await compare(run, valid.manifests, live)
    except Stop as stop:
        raise StopError(str(stop), stop.code) from None
    return DiffResult(revision=sha, comparison=comparison, warnings=valid.warnings)


class StopError(SyncError):
    """A diff that could not be made (render, validation, Git); ``exit_code`` for a CLI."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


# ---------------------------------------------------------------- blocking wrappers


def _blocking(kube: AsyncKube | KubeClient, call: Any, /, *args: Any, **kwargs: Any) -> Any:
    """Run ``call(async_kube, *args, **kwargs)`` on a loop of its own; a ``KubeClient`` is
    turned into an ``AsyncKube`` over the same connection (closed at the end)."""

    async def main() -> Any:
        own = not isinstance(kube, AsyncKube)
        client = AsyncKube(kube.connection, timeout_s=kube.timeout_s) if own else kube
        assert isinstance(client, AsyncKube)
        try:
            return await call(client, *args, **kwargs)
        finally:
            if own:
                with anyio.CancelScope(shield=True):
                    await client.aclose()

    return anyio.run(main)


def sync_application_blocking(
    kube: AsyncKube | KubeClient, app: Application, request: SyncRequest | None = None, **kw: Any
) -> OperationResult:
    """``sync_application`` for a caller without a loop (the CLI one-shot, a thread)."""
    result: OperationResult = _blocking(kube, sync_application, app, request, **kw)
    return result


def diff_application_blocking(
    kube: AsyncKube | KubeClient, app: Application, **kw: Any
) -> DiffResult:
    """``diff_application`` for a caller without a loop (``hub app diff -f``, the API)."""
    result: DiffResult = _blocking(kube, diff_application, app, **kw)
    return result


__all__ = [
    "COMMON_KINDS",
    "DEFAULT_API_RETRY",
    "DRY_RUN_PARALLEL",
    "CancelToken",
    "DiffResult",
    "EventKind",
    "EventSink",
    "Limits",
    "LiveState",
    "OperationResult",
    "ProgressEvent",
    "Rendered",
    "SourceProvider",
    "StopError",
    "SyncRequest",
    "diff_application",
    "diff_application_blocking",
    "scopes_of",
    "sync_application",
    "sync_application_blocking",
]
