"""What a sync reads of the cluster: live objects (from the caller's watch cache, LISTs for
the kinds it lacks), existing namespaces, the comparison with Git and Argo CD's orphaned
resources warning. Reads only; every request goes through the run's ``AsyncKube``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import anyio

from clusters.kube import KubeError, Unauthorized
from hub.sync.diff import AppComparison, compare_app
from hub.sync.helm import ClusterInfo
from hub.sync.history import OperationPhase
from hub.sync.model import SyncError
from hub.sync.operation import COMMON_KINDS, EventKind, ProgressEvent, Run, Stop, name_of
from hub.sync.projects import LiveObject, orphaned_resources, orphaned_warning
from hub.sync.resources import NAMESPACE_KIND, ResourceKey, owning_app
from hub.sync.sources import cluster_info
from hub.sync.validate import SourcedManifest


async def cluster_facts(run: Run) -> ClusterInfo:
    """Helm's view of the cluster (discovery and version, both cached per cluster)."""
    if run.cluster_facts is None:
        resources = await run.call(run.kube.resources)
        version = await run.call(run.kube.server_version)
        run.cluster_facts = cluster_info(resources, version)
    return run.cluster_facts


async def history_kinds(run: Run) -> set[tuple[str, str]]:
    if run.history is None:
        return set()
    if run.history_kinds is None:
        run.history_kinds = await run.store(run.history.resource_kinds, run.app.name)
    return run.history_kinds


async def read_live(run: Run, desired: Sequence[SourcedManifest]) -> list[dict[str, Any]]:
    """Live objects this app tracks, in the kinds involved, plus those at Git's keys."""
    keys = {m.key for m in desired}
    declared = {k.group_kind for k in keys} | await history_kinds(run)
    kinds = declared | set(COMMON_KINDS)
    run.listed_namespaces = None
    if run.live_state is None:
        return await _list_live(run, kinds, declared, keys)
    cache = run.live_state
    cached = {gk for gk in kinds if cache.is_current(gk)}
    # Kinds the cache does not hold (yet, or not now): listed as without a cache. A
    # common kind nobody renders is not watched; the app's own kinds (Git, history)
    # are what prune must see, so only those are listed.
    out = await _list_live(run, declared - cached, declared, keys)
    seen = {ResourceKey.of(o) for o in out}
    for obj in cache.tracked(run.app.name):
        key = ResourceKey.of(obj)
        if key in seen or not cache.is_current(key.group_kind):
            continue
        if key not in keys:
            # A prune candidate: confirm with the API server, never from the cache.
            fresh = await get_live(run, key)
            if fresh is None or owning_app(fresh) != run.app.name:
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
            found = await get_live(run, key)  # live but untracked: one GET, not a LIST
        if found is not None:
            seen.add(key)
            out.append(found)
    return out


async def get_live(run: Run, key: ResourceKey) -> dict[str, Any] | None:
    res = await run.call(lambda: run.kube.resource_for(key.group, key.kind))
    return await run.call(lambda: run.kube.get_or_none(res, key.name, key.namespace))


async def _list_live(
    run: Run,
    kinds: set[tuple[str, str]],
    declared: set[tuple[str, str]],
    keys: set[ResourceKey],
) -> list[dict[str, Any]]:
    if not kinds:
        return []
    namespaces = sorted(
        {k.namespace for k in keys if k.namespace} | {run.app.destination.namespace} - {""}
    )
    served = await run.call(run.kube.resources)
    out: list[dict[str, Any]] = []
    for gk in sorted(kinds):
        res = served.get(gk)
        if res is None or "list" not in res.verbs:
            continue  # not served (yet): nothing of it can be live
        try:
            items, _ = await run.call(partial(run.kube.list, res))
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
                    found, _ = await run.call(partial(run.kube.list, res, namespace=ns))
                except Unauthorized:
                    if gk in declared:
                        raise
                    found = []
                items.extend(found)
        if gk == NAMESPACE_KIND:
            run.listed_namespaces = {name_of(n) for n in items}
        for obj in items:
            if owning_app(obj) == run.app.name or ResourceKey.of(obj) in keys:
                out.append(obj)
    return out


async def compare(
    run: Run, desired: Sequence[SourcedManifest], live: Sequence[Mapping[str, Any]]
) -> AppComparison:
    """The comparison (pure, inline); in a thread only when jq expressions are involved
    (they are evaluated by a child process, a blocking round trip)."""

    objs = [m.obj for m in desired]
    given = run.request.rendered
    # Verdicts hold only for the manifests they were made against: an equal list (a
    # discovery change since the worker's render may settle a namespace differently).
    verdicts = None
    if (
        given is not None
        and given.verdicts is not None
        and objs == [m.obj for m in given.manifests]
    ):
        verdicts = given.verdicts

    def go() -> AppComparison:
        return compare_app(
            objs,
            live,
            app=run.app.name,
            ignore_differences=run.app.ignore_differences,
            jq_runner=run.jq_runner,
            verdicts=verdicts,
        )

    try:
        if any(d.jq_path_expressions for d in run.app.ignore_differences):
            return await anyio.to_thread.run_sync(go, limiter=run.limits.render)
        return go()
    except SyncError as exc:
        raise Stop(str(exc), phase=OperationPhase.ERROR, retryable=False) from None


async def namespaces(run: Run, desired: Sequence[SourcedManifest]) -> set[str]:
    """Namespaces that exist; with a live cache only those this sync asks about (a GET
    each unless the cache holds Namespaces), not a LIST."""
    res = await run.call(lambda: run.kube.resource_for(*NAMESPACE_KIND))
    if run.live_state is not None:
        wanted = {m.key.namespace for m in desired} | {run.app.destination.namespace}
        cache = run.live_state
        current = cache.is_current(NAMESPACE_KIND)
        found: set[str] = set()
        for ns in sorted(wanted - {""}):
            if current:
                if cache.exists((*NAMESPACE_KIND, "", ns)):
                    found.add(ns)
            elif await run.call(partial(run.kube.get_or_none, res, ns)):
                found.add(ns)
        return found
    if run.listed_namespaces is not None:
        return run.listed_namespaces
    items, _ = await run.call(lambda: run.kube.list(res))
    return {name_of(n) for n in items}


async def orphans(run: Run) -> str:
    """Argo CD's orphaned-resources warning, for a project that asks for it: objects of
    the app's kinds (and the common ones) in its namespaces that no Application tracks.
    Only ever a warning: a failure to list is reported, the sync stays successful."""
    scope = run.request.project
    settings = scope.project.orphaned_resources if scope is not None else None
    if scope is None or settings is None or not settings.warn or run.rendered is None:
        return ""
    keys = [ResourceKey.of(o) for o in run.rendered]
    dest = run.app.destination.namespace
    spaces = sorted({k.namespace for k in keys if k.namespace} | {dest} - {""})
    kinds = {k.group_kind for k in keys} | set(COMMON_KINDS)
    objects: list[LiveObject] = []
    try:
        served = await run.call(run.kube.resources)
        for gk in sorted(kinds):
            res = served.get(gk)
            if res is None or not res.namespaced or "list" not in res.verbs:
                continue
            for ns in spaces:
                items, _ = await run.call(partial(run.kube.list, res, namespace=ns))
                objects.extend(
                    LiveObject(
                        group=gk[0],
                        kind=gk[1],
                        namespace=ns,
                        name=name_of(o),
                        managed=owning_app(o) is not None
                        or bool((o.get("metadata") or {}).get("ownerReferences")),
                    )
                    for o in items
                )
    except (KubeError, Stop) as exc:
        run.emit(
            ProgressEvent(kind=EventKind.WARNING, message=f"orphaned resources not checked: {exc}")
        )
        return ""
    found = orphaned_resources(scope.project, objects)
    if not found:
        return ""
    warning = orphaned_warning(found)
    run.emit(ProgressEvent(kind=EventKind.WARNING, message=warning))
    return f"; {warning}"
