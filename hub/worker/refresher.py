"""The worker's refresh of one Application: its revision, its render (once per revision
and generation), the comparison with the watch cache, Argo CD's automated-sync decision,
and the status writes (a tick's refresh results batched into one transaction, other
writes at once and in order)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import anyio
import anyio.to_thread

from clusters.cache import key_of
from clusters.errors import ClusterError
from hub.apps import AppRecord, AppStore, Condition, StatusUpdate
from hub.charts import shared_chart_repos
from hub.errors import HubError
from hub.inline import WouldBlock, forbid_blocking
from hub.rollout import AppStatus
from hub.sync.diff import AppComparison, SyncStatus, compare_app, compares_alike
from hub.sync.engine import Rendered, scopes_of
from hub.sync.health import HealthRules, app_health, resource_health
from hub.sync.history import Trigger
from hub.sync.model import Application, SyncError
from hub.sync.resources import ResourceKey, effective_sync_options
from hub.sync.sources import (
    cluster_info,
    needs_cluster_info,
    render_app,
    resolve_sources,
    revision_text,
    source_record,
)
from hub.sync.validate import validate_manifests
from hub.sync.windows import WindowVerdict
from hub.worker.decisions import (
    AutoSyncDecision,
    decide_auto_sync,
    hold_conditions,
    prune_confirm_condition,
    rollout_verdict_of,
    unheard_writes_wait_s,
    window_verdict_of,
)
from hub.worker.services import COMPARISON_ERROR, Desired, ManualSync, _now
from hub.worker.state import WorkerState

log = logging.getLogger("hub.worker")  # one logger for the package (see ClusterWorker)

FLUSH_AT = 200  # pending refresh results that are written without waiting for the tick's end


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


def _health_status(obj: Mapping[str, Any], rules: HealthRules) -> str | None:
    health = resource_health(obj, rules)
    return None if health is None else health.status.value


def _holds_of(
    apps: AppStore, rec: AppRecord, revision: str, sync: str
) -> tuple[WindowVerdict | None, AppStatus | None]:
    """What may hold an automated sync of ``rec``: its sync windows and its set's
    progressive rollout (store reads, in one thread hand-off)."""
    return window_verdict_of(apps, rec), rollout_verdict_of(apps, rec, revision, sync)


class Refresher(WorkerState):
    """Refreshes the Applications the loop finds dirty and writes their status."""

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
        update = self._taken_update(
            StatusUpdate(
                name=name,
                sync_status=sync_status,
                health_status=health_status,
                desired_sha=desired_sha,
                synced_sha=synced_sha,
                conditions=None if conditions is None else tuple(conditions),
                operation_state=operation,
            )
        )
        if update is None:
            return
        if batch and operation is None:
            self._pending[name] = update
            if len(self._pending) >= FLUSH_AT:
                await self._flush()
            return
        async with self._store_order:
            await self._db(partial(self._write_and_notify, [update]))

    def _taken_update(self, update: StatusUpdate) -> StatusUpdate | None:
        """``update`` as it is to be written: after what is pending for its app (taken out
        of ``_pending``), or None when it changes nothing since the app's last write (an
        operation state is always written)."""
        name, conditions = update.name, update.conditions
        # An operation write's fingerprint only has to differ from every refresh's (which
        # it does by its last field): the next refresh's write then always goes out.
        operation = update.operation_state is not None
        fingerprint = (
            update.sync_status,
            update.health_status,
            update.desired_sha,
            update.synced_sha,
            None if conditions is None else tuple((c.type, c.message) for c in conditions),
            operation,
        )
        if not operation and self._written.get(name) == fingerprint:
            return None
        self._written[name] = fingerprint
        pending = self._pending.pop(name, None)
        return update if pending is None else pending.then(update)

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

    def _unheard(self, name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        """Whether ``name``'s refresh can skip this change of one of its live objects: the
        compare sees the object as before (``same_to_compare``: only its status, its
        resourceVersion or other managers' field sets moved) and its health is the same,
        so the app's sync status and health cannot change. A rolling Deployment writes
        its status five to ten times, mostly Progressing to Progressing. Argo CD's
        controller skips such updates the same way (``skipResourceUpdate``). Not for an
        app not rendered yet, nor one whose ignore rules read other managers' fields
        (``managedFieldsManagers``), which a status write changes."""
        desired = self._desired.get(name)
        if desired is None or not compares_alike(old, new, desired.app.ignore_differences):
            return False
        rules = self.svc.health_rules
        return _health_status(old, rules) == _health_status(new, rules)

    async def _refresh(self, name: str) -> None:
        rec = self.apps.get(name)
        if rec is None:
            self._written_objects.pop(name, None)  # it held live objects of a gone app
            return
        if rec.deleting:
            if name not in self._deleting and self._tg is not None:
                self._deleting.add(name)
                self._tg.start_soon(self._delete, rec)
            return
        if name in self._syncing:
            return  # re-evaluated when the operation ends
        try:
            app = rec.application()
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
        pending = [gk for gk in desired.kinds_read if not await self._watch_kind(gk)]
        if pending:
            return  # woken again when the kinds' first lists are in
        manual = self._manual.pop(name, None)
        if manual is not None:
            self._start_sync(rec, desired, manual)
            return
        started = time.monotonic()
        if any(rule.jq_path_expressions for rule in app.ignore_differences):
            # in a thread under the global limiter: jq expressions are a blocking round trip
            evaluation = await anyio.to_thread.run_sync(
                partial(self._evaluate, desired), limiter=self.svc.global_calls
            )
        else:
            # Pure CPU on the cache: a thread would not run it sooner (one interpreter
            # lock) and its hand-off cost as much as a small app's compare.
            evaluation = self._evaluate(desired)
        if self.svc.metrics is not None:
            self.svc.metrics.observe_reconcile(self.name, time.monotonic() - started)
        decision: AutoSyncDecision | None = None
        if not self.svc.draining():
            automated = app.sync_policy.automated
            window: WindowVerdict | None = None
            rollout: AppStatus | None = None
            if automated and automated.enabled and evaluation.status is SyncStatus.OUT_OF_SYNC:
                window, rollout = await self._db(
                    partial(_holds_of, self.svc.apps, rec, sha, evaluation.status.value)
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
        written = self._written_objects.get(name)
        if written is not None and (
            evaluation.status is SyncStatus.SYNCED or time.monotonic() >= written.until
        ):
            del self._written_objects[name]  # done with: it holds live objects the cache let go
        if decision is None:
            return
        if decision.action == "sync":
            self._start_sync(
                rec,
                desired,
                ManualSync(prune=False, revision=sha, who="automated", trigger=Trigger.AUTOMATED),
            )
        elif decision.action == "self-heal":
            cache = self.cache
            wait = unheard_writes_wait_s(
                self._written_objects.get(name),
                evaluation.out_of_sync,
                lambda key: cache.get_tracked(key) if cache is not None else None,
                time.monotonic(),
            )
            if wait > 0:
                # an event of those objects wakes the app sooner; this is the longest wait
                if self._tg is not None:
                    self._tg.start_soon(self._later, name, wait)
                return
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
                scopes=scopes_of(resources),
            )
            return Rendered(
                revision=revision_text(resolved, multiple=app.has_multiple_sources),
                manifests=tuple(valid.manifests),
                sources=source_record(app, resolved),
                # the engine takes this validation as its own while discovery is this one
                validated_against=(resources, app.destination.namespace),
                warnings=valid.warnings,
            )

        try:
            with forbid_blocking():
                rendered = render()  # the usual case: tree exported, files parsed before
            self.renders["inline"] += 1
        except WouldBlock:
            rendered = await self._call(render)
            self.renders["thread"] += 1
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
            verdicts=desired.verdicts,
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
