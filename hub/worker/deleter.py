"""Cascade deletion of an Application's resources on its cluster, as Argo CD does it
(hook finalizers freed, PreDelete hooks, the resources wave by wave, PostDelete hooks:
``async_delete_app_resources``), the blocking forms the CLI uses, and the worker's part
that deletes the Applications marked for deletion (``Deleter``)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import anyio

from clusters.cache import backoff_delay, key_of
from clusters.kube import (
    ApiResource,
    AsyncKube,
    Conflict,
    KubeClient,
    KubeError,
    NotFound,
    PropagationPolicy,
)
from hub.apps import AppRecord, Condition
from hub.errors import HubError
from hub.sync.delete_hooks import run_delete_hooks
from hub.sync.engine import COMMON_KINDS
from hub.sync.health import HealthRules
from hub.sync.history import OperationPhase, SyncHistory
from hub.sync.plan import DeleteHook, plan_delete_hooks, plan_deletion
from hub.sync.resources import (
    DELETE_HOOK_TYPES,
    HOOK_FINALIZER,
    HookDeletePolicy,
    HookType,
    ResourceKey,
    is_delete_hook,
    is_hook,
    owning_app,
)
from hub.worker.services import DELETION_ERROR
from hub.worker.state import WorkerState

log = logging.getLogger("hub.worker")  # one logger for the package (see ClusterWorker)

T = TypeVar("T")

DELETE_WAIT_S = 60.0


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
    app = rec.application()
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


class Deleter(WorkerState):
    """The worker's cascade deletions: one task per Application marked deleting, retried
    with backoff until its resources are gone, then the record is removed."""

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
                remaining = await self._delete_attempt(rec)
                if remaining is None:
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

    async def _delete_attempt(self, rec: AppRecord) -> str | None:
        """One full attempt at an Application's cascade deletion under the sync limits:
        None once its resources are gone and its record removed, else what is left."""
        try:
            async with self.cluster_syncs, self.svc.global_syncs.slot(self.name):
                outcome = await self._delete_resources(rec)
            remaining = outcome.problem()
        except (KubeError, HubError) as exc:
            remaining = f"{rec.name}: {exc}"
        if remaining is None:
            await self._db(partial(self.svc.apps.finish_deletion, rec.name))
            log.info("app %s on %s: resources deleted, app removed", rec.name, self.name)
        return remaining

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
