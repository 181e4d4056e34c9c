"""One attempt of a sync operation, and the operation's retries of it.

An attempt: render at the revision (or take the caller's render), validate every manifest,
check the AppProject, read live state, compare, plan (``hub.sync.plan``), dry-run every
apply on the server (Argo's first pass: one request per object, ``DRY_RUN_PARALLEL`` at a
time; the plan's first write is its own verdict), then run the plan phase by phase and
wave by wave (``hub.sync.wave``), wait for the pruned objects to be gone, and clean up
hooks (``hub.sync.hooks``). The first failure stops every later wave and phase; SyncFail
hooks then run.

The attempt runs in an anyio ``CancelScope`` bound to the operation's ``CancelToken``: a
cancel interrupts whatever it awaits, and it ends Failed "terminated"; only the hook
cleanup (finalizers) runs after that.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import anyio

from clusters.kube import ApiResource, KubeError, Transient
from hub.errors import HubError
from hub.sync.diff import AppComparison
from hub.sync.gate import await_pruned
from hub.sync.history import OperationPhase
from hub.sync.hooks import hook_cleanup, sync_fail
from hub.sync.live import cluster_facts, compare, namespaces, orphans, read_live
from hub.sync.model import (
    AppSpecError,
    EmptyRenderGuardError,
    ManifestError,
    SharedResourceError,
    UnsupportedSourceError,
)
from hub.sync.operation import (
    DRY_RUN_PARALLEL,
    TERMINATED,
    EventKind,
    OperationResult,
    ProgressEvent,
    Run,
    Stop,
    rejected,
    rejection,
)
from hub.sync.outcome import finish, result_of
from hub.sync.plan import Action, SyncPlan, SyncTask, plan_sync
from hub.sync.projects import prune_violation, sync_violations
from hub.sync.resources import ResourceKey
from hub.sync.retry import retry_delay_s, should_retry
from hub.sync.sources import (
    ChartProvider,
    needs_cluster_info,
    render_app,
    resolve_sources,
    revision_text,
    source_record,
)
from hub.sync.validate import KindScopes, SourcedManifest, ValidatedManifests, validate_manifests
from hub.sync.wave import run_wave


async def execute(run: Run) -> OperationResult:
    """Attempts until one succeeds, fails for good, or ``syncPolicy.retry`` says stop."""
    policy = run.app.sync_policy.retry
    attempt = 0
    while True:
        result = await run_attempt(run, attempt)
        if result.phase is OperationPhase.SUCCEEDED or run.request.dry_run:
            break
        if not run.retryable or not should_retry(policy, attempt):
            break
        delay = retry_delay_s(policy, attempt)
        attempt += 1
        run.emit(
            ProgressEvent(
                kind=EventKind.RETRY,
                message=f"sync failed: {result.message}; attempt {attempt + 1} in {delay:g}s",
                delay_s=delay,
                attempt=attempt,
            )
        )
        try:
            await _backoff(run, delay)
        except Stop as stop:
            # Terminated or out of time while waiting to retry: the operation says so (as
            # Argo CD does), with what the last attempt found.
            result = replace(
                result,
                phase=stop.phase,
                message=f"{stop} while waiting to retry; the last attempt: {result.message}",
                exit_code=stop.code,
            )
            break
        run.results.clear()
    return await finish(run, replace(result, attempts=attempt + 1))


async def _backoff(run: Run, delay: float) -> None:
    """Waits out a retry's backoff, inside ``limits.backoff`` when there is one (the worker
    lends its hub-wide sync slot out). A cancel of the operation also ends the wait for a
    slot again, so a terminated sync does not queue behind the fleet to say so."""
    lend = run.limits.backoff or contextlib.nullcontext
    with anyio.CancelScope() as scope:
        unbind = run.cancel.bind(scope)
        try:
            async with lend():
                await run.sleep(delay)
        finally:
            unbind()
    run.check()


async def run_attempt(run: Run, attempt: int) -> OperationResult:
    run.retryable = False
    run.compared = None
    run.pruned = []
    run.applied_unchanged = 0
    run.plan_text = ""
    run.emit(
        ProgressEvent(
            kind=EventKind.OPERATION,
            message=f"sync of {run.app.name} to {run.cluster} started"
            + (f" (attempt {attempt + 1})" if attempt else ""),
        )
    )
    done: tuple[OperationPhase, str, bool] | None = None
    stop: Stop | None = None
    error: KubeError | None = None
    with anyio.CancelScope() as scope:
        unbind = run.cancel.bind(scope)
        try:
            done = await _steps(run, attempt)
        except Stop as exc:
            stop = exc
        except KubeError as exc:
            error = exc
        finally:
            unbind()
    if done is None and stop is None and error is None:  # the token cancelled the scope
        stop = Stop(TERMINATED, phase=OperationPhase.FAILED, retryable=False)
    if done is not None:
        phase, message, cleanup = done
        if cleanup:
            await hook_cleanup(run, succeeded=True)
        return result_of(run, phase, message)
    if stop is not None:
        run.retryable = stop.retryable
        message = str(stop)
        if run.plan_text and stop.phase is OperationPhase.FAILED:
            # Argo runs SyncFail hooks for any failure once there is a plan, a failed
            # dry run included.
            message = await sync_fail(run, message)
        await hook_cleanup(run, succeeded=False)
        return result_of(run, stop.phase, message, code=stop.code)
    assert error is not None
    run.retryable = True
    await hook_cleanup(run, succeeded=False)
    return result_of(run, OperationPhase.ERROR, str(error))


async def _steps(run: Run, attempt: int) -> tuple[OperationPhase, str, bool]:
    """The attempt up to its outcome: (phase, message, whether hooks need cleaning up),
    on its way to its first write until ``run.writes_out()`` (``hub.sync.priority``)."""
    writes_first = run.limits.writes_first
    if writes_first is None:
        return await _to_outcome(run, attempt)
    with writes_first.on_the_way() as arrived:
        run.writes_out = arrived  # idempotent: a call after the block changes nothing
        return await _to_outcome(run, attempt)


async def _to_outcome(run: Run, attempt: int) -> tuple[OperationPhase, str, bool]:
    sha, manifests = await render(run)
    run.revision = sha
    if run.history is not None and attempt == 0 and not run.request.dry_run:
        history, op = run.history, run.operation(OperationPhase.RUNNING, "running")
        await run.store(lambda: history.begin(op, also=run.request.on_started))
    valid = await validate(run, manifests)
    run.rendered = [m.obj for m in valid.manifests]
    for warning in valid.warnings:
        run.emit(ProgressEvent(kind=EventKind.WARNING, message=warning))
    check_project(run, valid.manifests)
    live = await read_live(run, valid.manifests)
    comparison = await compare(run, valid.manifests, live)
    run.compared = (live, comparison)
    existing = await namespaces(run, valid.manifests)
    plan = make_plan(run, valid.manifests, live, comparison, existing)
    run.plan_text = plan.format()
    for warning in plan.warnings:
        run.emit(ProgressEvent(kind=EventKind.WARNING, message=warning))
    await dry_run(run, plan, existing)
    if run.request.dry_run:
        return OperationPhase.SUCCEEDED, "dry run: nothing applied", False
    if run.request.self_heal and not plan.tasks:
        return OperationPhase.SUCCEEDED, "already in sync", False
    # gitops-engine: several phases/waves or any hook => each step waits for health.
    wait_health = plan.multi_step
    current_phase = ""
    for wave in plan.waves:
        if wave.phase.value != current_phase:
            current_phase = wave.phase.value
            run.emit(
                ProgressEvent(kind=EventKind.PHASE, phase=current_phase, message=current_phase)
            )
        failure = await run_wave(run, wave, wait_health=wait_health)
        if failure:
            raise Stop(failure, phase=OperationPhase.FAILED, retryable=True)
        if run.history is not None and wave is not plan.waves[-1]:
            # After the last wave the finished operation is recorded next: no write between.
            await run.store(run.history.update, run.operation(OperationPhase.RUNNING, wave.title))
    await await_pruned(run)
    return (
        OperationPhase.SUCCEEDED,
        "successfully synced (all tasks run)" + await orphans(run),
        True,
    )


# ---------------------------------------------------------------- before any write


async def render(run: Run) -> tuple[str, list[SourcedManifest]]:
    """The manifests to sync and their revision: a rollback's, the caller's render, or a
    render of our own (Git and the renderers in a thread under the render limiter)."""
    if run.request.manifests is not None:
        sha = run.request.revision or ""
        return sha, [
            SourcedManifest(obj=dict(m), origin=f"history {sha[:10]}")
            for m in run.request.manifests
        ]
    given = run.request.rendered
    if given is not None and run.request.revision in (None, given.revision):
        # Rendered once per (revision, spec) by the caller; a sync to another revision
        # (a manual sync to an older commit) renders that one below.
        run.sources_record = dict(given.sources)
        return given.revision, list(given.manifests)
    app = run.app
    try:
        app.app_sources()
    except (UnsupportedSourceError, AppSpecError) as exc:
        raise Stop(str(exc), phase=OperationPhase.ERROR, retryable=False, code=2) from None
    git = run.sources
    if git is None:
        raise Stop("no source provider configured", phase=OperationPhase.ERROR, retryable=False)
    charts = charts_of(run)
    try:
        resolved = await run.offload(
            lambda: resolve_sources(app, git=git, charts=charts, revision=run.request.revision),
            limiter=run.limits.render,
        )
        cluster = await cluster_facts(run) if needs_cluster_info(resolved) else None
        rendered = await run.offload(
            lambda: render_app(app, resolved, cluster=cluster), limiter=run.limits.render
        )
    except HubError as exc:
        # Git, chart or render error: the operation ends here, before planning, so
        # nothing is ever pruned because a source could not be read.
        code = exc.exit_code if isinstance(exc, AppSpecError) else 1
        raise Stop(str(exc), phase=OperationPhase.ERROR, retryable=False, code=code) from None
    run.sources_record = source_record(app, resolved)
    return revision_text(resolved, multiple=app.has_multiple_sources), list(rendered.manifests)


def charts_of(run: Run) -> ChartProvider:
    if run.charts is None:
        from hub.charts import shared_chart_repos

        run.charts = shared_chart_repos()
    return run.charts


def scopes_of(resources: Mapping[tuple[str, str], ApiResource]) -> KindScopes:
    """Which kinds are cluster-scoped and which namespaced, by the cluster's discovery."""
    cluster = [gk for gk, r in resources.items() if not r.namespaced]
    namespaced = [gk for gk, r in resources.items() if r.namespaced]
    return KindScopes.from_discovery(cluster_scoped=cluster, namespaced=namespaced)


async def validate(run: Run, manifests: Sequence[SourcedManifest]) -> ValidatedManifests:
    resources = await run.call(run.kube.resources)
    namespace = run.app.destination.namespace
    given = run.request.rendered
    if (
        given is not None
        and given.validated_against is not None
        and given.validated_against[0] is resources
        and given.validated_against[1] == namespace
        and len(manifests) == len(given.manifests)
        and all(m is g for m, g in zip(manifests, given.manifests, strict=True))
    ):
        # The caller's render, validated against this very discovery: validating it again
        # would give the same manifests (validation is a function of the manifests, the
        # discovery and the namespace), at a copy of every object per sync.
        return ValidatedManifests(manifests=given.manifests, warnings=given.warnings)
    try:
        return validate_manifests(
            manifests, destination_namespace=namespace, scopes=scopes_of(resources)
        )
    except ManifestError as exc:
        raise Stop(str(exc), phase=OperationPhase.ERROR, retryable=False) from None


def check_project(run: Run, valid: Sequence[SourcedManifest]) -> None:
    """Refuse the whole sync, before any dry run or write, when the AppProject does not
    permit the app's source, its destination or any rendered object."""
    scope = run.request.project
    if scope is None:
        return
    # Every source's repository, as Argo CD checks them (none for a rollback's manifests).
    declared = run.app.declared_sources() if run.request.manifests is None else ()
    repos = [src.repo_url for src in declared]
    keys = [(m.key.group, m.key.kind, m.key.namespace, m.key.name) for m in valid]
    problems = sync_violations(scope, repos, keys)
    if problems:
        raise Stop(
            f"{len(problems)} problem(s) with project {scope.project.name!r}; nothing was "
            "applied: " + "; ".join(problems),
            phase=OperationPhase.FAILED,
            retryable=False,
        )


def make_plan(
    run: Run,
    valid: Sequence[SourcedManifest],
    live: Sequence[Mapping[str, Any]],
    comparison: AppComparison,
    existing: set[str],
) -> SyncPlan:
    automated = run.app.sync_policy.automated
    prune = run.request.prune
    if prune is None:
        prune = bool(automated and automated.prune)
    only = None
    if run.request.self_heal:
        only = frozenset(r.key for r in comparison.out_of_sync if r.counts_for_app)
    dest = run.app.destination.namespace
    scope = run.request.project

    def prune_forbidden(key: ResourceKey) -> str | None:
        if scope is None:
            return None
        return prune_violation(scope, key.group, key.kind, key.namespace)

    try:
        return plan_sync(
            app=run.app.name,
            desired=valid,
            live=live,
            revision=run.revision,
            started_at=int(run.started_at.timestamp()),
            options=run.app.sync_policy.sync_options,
            prune=prune,
            allow_empty=bool(automated and automated.allow_empty),
            only=only,
            skip_hooks=run.request.self_heal,
            synced=comparison.synced_keys,
            alike=comparison.alike_keys,
            destination_namespace=dest,
            namespace_exists=(dest in existing) if dest else None,
            prune_forbidden=prune_forbidden,
        )
    except (EmptyRenderGuardError, SharedResourceError) as exc:
        raise Stop(str(exc), phase=OperationPhase.FAILED, retryable=False) from None


async def dry_run(run: Run, plan: SyncPlan, existing: set[str]) -> None:
    """Server-side dry run of every apply that can change the cluster, before the first
    write (Argo's first pass; Argo's own is a client-side dry run since argo-cd#13874, ours
    asks the API server, which also refuses what only it knows to refuse).

    On a real sync two kinds of apply are not dry-run:

    - an apply of an object already live as Git declares it (``SyncTask.unchanged``):
      accepted it changes nothing, refused it leaves the object as declared, so asking
      first protects nothing. A rollout that changes one object of many asks about none;
    - the plan's first change (``SyncPlan.first_change``), when it is a server-side apply:
      nothing is changed before it, so its own request gets the verdict a dry run would,
      at the same point. A rejection of it (``run.unverified_write``) fails the attempt
      with nothing changed, as a dry run's would. When another object is rejected, the
      first change is dry-run too, so the message still names every rejected object in
      plan order.

    A requested dry run (``--dry-run``) asks about every object."""
    run.unverified_write = None
    created_ns = {t.key.name for t in plan.tasks if t.key.kind == "Namespace" and t.key.group == ""}
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
        if t.unchanged and not run.request.dry_run:
            continue
        if t.key.group_kind in crd_kinds or t.options.skip_dry_run_on_missing_resource:
            continue
        ns = t.key.namespace
        if ns and ns not in existing and ns in created_ns | {run.app.destination.namespace}:
            continue  # its namespace is created by this sync
        checked.append(t)
    # The first change's own request is its verdict only when it is the same request as its
    # dry run: a server-side apply (not a hook's create, not a Replace=true PUT).
    first = plan.first_change
    deferred = None
    if first is not None and not (run.request.dry_run or first.hook or first.options.replace):
        deferred = next((i for i, t in enumerate(checked) if t is first), None)

    # The dry runs are independent reads of the API server's verdict: they run side by
    # side (bounded per sync), and every one has answered before the first write, as in
    # Argo CD. Answers keep plan order, so the message names the rejected objects in it.
    answers: list[str | None] = [None] * len(checked)
    failures: list[BaseException | None] = [None] * len(checked)
    asked = [i for i in range(len(checked)) if i != deferred]
    # Most syncs check a few objects: within the bound they need no limiter, and this
    # task asks the first itself (a task and a limiter per sync were 2% of the hub's CPU
    # in a rollout of two-object apps).
    slots = anyio.CapacityLimiter(DRY_RUN_PARALLEL) if len(asked) > DRY_RUN_PARALLEL else None

    async def ask(index: int) -> None:
        t = checked[index]
        assert t.desired is not None
        obj = t.desired
        try:
            await run.call(
                lambda: run.kube.apply(obj, force=run.request.force_conflicts, dry_run=True)
            )
        except Transient as exc:
            failures[index] = exc  # retried per request already: the attempt fails
        except KubeError as exc:
            answers[index] = rejection(t, exc)
        except Stop as exc:
            failures[index] = exc

    async def check(index: int) -> None:
        if slots is None:
            await ask(index)
            return
        async with slots:
            await ask(index)

    if len(asked) == 1:
        await check(asked[0])
    elif asked:
        async with anyio.create_task_group() as tg:
            for index in asked[1:]:
                tg.start_soon(check, index)
            await check(asked[0])
    for failure in failures:
        if failure is not None:
            raise failure
    if deferred is not None and any(a is not None for a in answers):
        await ask(deferred)
        failure = failures[deferred]
        if failure is not None:
            raise failure
    problems = [a for a in answers if a is not None]
    if problems:
        raise rejected(problems, by="dry run")
    run.unverified_write = None if deferred is None else checked[deferred]


__all__ = ["execute", "render", "run_attempt", "scopes_of", "validate"]
