"""The hub: one root task group running the ApplicationSet controller and a ClusterWorker
per registered cluster (``hub serve``).

Tasks of the root group (structured: nothing outlives ``Hub.run``):

- **Git**: every ``git_poll_s`` (+/- jitter) or at once on a push webhook / refresh request,
  one cycle: load every source at the SHA its revision names now, ingest it and expand the
  ApplicationSets (``hub.appsets``), then resolve each (repo, revision) the Applications
  use once (``RevisionBook``: one fetch per repo per cycle). A repository that cannot be
  read keeps its last good SHA and is retried with backoff before the next poll.
- **Registry and store**: every ``registry_poll_s`` two cheap queries. A change in the
  cluster table (added, removed, relabelled, new credential) starts or stops workers and
  re-expands the ApplicationSets; a change in an Application row (generation, count,
  deletion) wakes that cluster's worker. So the CLI changes the store and the running hub
  follows within seconds, without restart.
- **Resync**: every ``resync_s`` (+/- jitter) every worker re-compares all its
  Applications with its live cache (no API calls).
- **Workers**: one per cluster, started with ``tg.start()`` in its own cancel scope,
  cancelled (in-flight syncs told to stop and still recorded) when the cluster leaves.

Bounded concurrency: a global limiter on syncs and on API calls, per-cluster ones inside
each worker, one on Git work and one on store access. SIGTERM (``shutdown``): no new sync
starts, in-flight ones get ``shutdown_grace_s`` to finish, then are cancelled through the
engine's ``CancelToken`` (recorded "terminated"), then everything stops. After a crash,
``Hub.run`` records operations left in flight as Error ("interrupted") before anything
else: by Argo CD's rule a failed revision is not attempted again automatically, so no hook
of that operation runs twice; a new commit or a manual sync moves on.

``Hub`` implements ``hub.handle.HubHandle`` for the HTTP API.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.to_thread

from clusters.cache import backoff_delay
from clusters.connect import connect
from clusters.errors import ClusterError
from clusters.kube import KubeClient
from clusters.registry import ClusterRecord, Registry
from hub.apps import AppStore
from hub.appsets import AppSetController, ControllerOptions
from hub.errors import HubError
from hub.handle import ClusterConnection
from hub.home import load_keyring, open_registry, open_store
from hub.metrics import Metrics
from hub.repos import RepoCache
from hub.sources import HubGit, MaterializedGit, SourceStore, load_source
from hub.store import Store
from hub.sync.diff import JqRunner
from hub.sync.history import OperationPhase, SyncHistory, Trigger
from hub.sync.model import SyncError, parse_application
from hub.worker import (
    ClusterWorker,
    ManualSync,
    SerializedSources,
    WorkerServices,
    delete_app_resources,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class HubOptions:
    git_poll_s: float = 180.0
    resync_s: float = 180.0
    jitter: float = 0.2  # +/- share of each interval
    registry_poll_s: float = 1.0
    new_git_file_globbing: bool = False
    cluster_syncs: int = 2
    cluster_calls: int = 4
    global_syncs: int = 32
    global_calls: int = 64
    git_threads: int = 4
    store_threads: int = 8
    shutdown_grace_s: float = 30.0
    sync_timeout_s: float = 600.0


def jittered(seconds: float, jitter: float, rand: Callable[[], float] = random.random) -> float:
    """``seconds`` spread by +/- ``jitter`` (a share), so a fleet does not poll in step."""
    return max(0.0, seconds * (1.0 + jitter * (2.0 * rand() - 1.0)))


def normalize_repo(url: str) -> str:
    """A repository URL in the form pushes and manifests are matched by."""
    text = url.strip().rstrip("/")
    if text.endswith(".git"):
        text = text[:-4]
    if text.startswith("git@") and ":" in text:
        host, _, path = text[4:].partition(":")
        text = f"https://{host}/{path}"
    for prefix in ("ssh://git@", "git://", "http://", "https://"):
        if text.startswith(prefix):
            text = "https://" + text[len(prefix) :]
            break
    return text.lower()


def cluster_fingerprint(records: Sequence[ClusterRecord]) -> dict[str, tuple[Any, ...]]:
    """What of a cluster record matters to a running hub (compared between polls)."""
    return {
        r.name: (
            r.server,
            tuple(sorted(r.labels.items())),
            tuple(sorted(r.annotations.items())),
            r.credential_rev,
            r.project,
        )
        for r in records
    }


class RevisionBook:
    """(repo, revision) -> SHA for the current poll cycle; the last good SHA on errors."""

    def __init__(self, repos: SerializedSources, limiter: anyio.CapacityLimiter) -> None:
        self._repos = repos
        self._limiter = limiter
        self._current: dict[tuple[str, str], str] = {}
        self._good: dict[tuple[str, str], str] = {}
        self.errors: dict[str, str] = {}  # repo -> last error
        self.failures: dict[str, int] = {}

    def new_cycle(self) -> None:
        self._current = {}

    async def sha(self, repo_url: str, revision: str) -> str:
        key = (repo_url, revision or "HEAD")
        found = self._current.get(key)
        if found is not None:
            return found
        try:
            sha = await anyio.to_thread.run_sync(
                self._repos.resolve, repo_url, key[1], limiter=self._limiter
            )
        except HubError as exc:
            self.errors[repo_url] = str(exc)
            self.failures[repo_url] = self.failures.get(repo_url, 0) + 1
            good = self._good.get(key)
            if good is None:
                raise
            log.warning("%s: %s; keeping the last good revision %s", repo_url, exc, good[:12])
            self._current[key] = good
            return good
        self.errors.pop(repo_url, None)
        self.failures.pop(repo_url, None)
        self._current[key] = self._good[key] = sha
        return sha

    def snapshot(self) -> dict[tuple[str, str], str]:
        return dict(self._current)


class Hub:
    """The running hub (see the module docstring). Implements ``HubHandle``."""

    def __init__(self, home: Path, options: HubOptions | None = None) -> None:
        self.home = home
        self.options = options or HubOptions()
        self.workers: dict[str, ClusterWorker] = {}
        self.metrics: Metrics | None = None  # set by `hub serve` when the API is served
        self._ready = False
        self._draining = False
        self._tg: anyio.abc.TaskGroup | None = None
        self._git_now = anyio.Event()
        self._clusters: dict[str, tuple[Any, ...]] = {}
        self._app_marks: dict[str | None, tuple[Any, ...]] = {}
        self._source_repos: set[str] = set()
        self._app_repos: set[str] = set()
        o = self.options
        self._git_limiter = anyio.CapacityLimiter(o.git_threads)
        self._store_limiter = anyio.CapacityLimiter(o.store_threads)
        self._appset_lock = anyio.Lock()
        self.global_syncs = anyio.CapacityLimiter(o.global_syncs)
        self.global_calls = anyio.CapacityLimiter(o.global_calls)
        # Opened in run(): they hold connections, files and a child process.
        self.registry: Registry
        self.store: Store
        self.apps: AppStore
        self.history: SyncHistory
        self.repo_cache: RepoCache
        self.repos: SerializedSources
        self.book: RevisionBook
        self.git: HubGit
        self.appsets: AppSetController
        self.jq: JqRunner
        self.services: WorkerServices

    # ------------------------------------------------------------ HubHandle

    def ready(self) -> bool:
        return self._ready

    def cluster_connections(self) -> dict[str, ClusterConnection]:
        return {name: w.connection for name, w in sorted(self.workers.items())}

    async def request_sync(
        self, app: str, *, prune: bool = False, revision: str | None = None, who: str = "api"
    ) -> None:
        worker = await self._worker_of(app)
        worker.request_sync(app, ManualSync(prune=prune, revision=revision, who=who))

    async def request_refresh(self, app: str | None = None) -> None:
        if app is None:
            self._git_now.set()
            return
        worker = await self._worker_of(app)
        worker.refresh(app)

    async def request_rollback(self, app: str, history_id: int, *, who: str = "api") -> None:
        worker = await self._worker_of(app)
        record = await self._db(partial(self.apps.get, app))
        assert record is not None
        parsed = parse_application(record.manifest(), source_file=record.file or app)
        if parsed.sync_policy.auto_sync:
            raise HubError(
                f"application {app}: rollback is refused while automated sync is on (it would "
                "sync back to Git at once); turn syncPolicy.automated off first"
            )
        entry = await self._db(partial(self.history.get, app, history_id))
        manifests = await self._db(partial(self.history.manifests, app, history_id))
        worker.request_sync(
            app,
            ManualSync(
                prune=False,
                revision=entry.revision,
                who=who,
                manifests=tuple(manifests),
                source=entry.source,
                trigger=Trigger.ROLLBACK,
            ),
        )

    async def notify_git_push(self, repo_urls: list[str]) -> int:
        pushed = {normalize_repo(u) for u in repo_urls}
        known = {normalize_repo(r) for r in self._source_repos | self._app_repos}
        matched = len(pushed & known)
        if matched:
            log.info("push webhook for %s: fetching now", ", ".join(sorted(pushed & known)))
            self._git_now.set()
        return matched

    async def _worker_of(self, app: str) -> ClusterWorker:
        record = await self._db(partial(self.apps.get, app))
        if record is None:
            raise HubError(f"application {app!r} does not exist (see `hub app list`)")
        worker = self.workers.get(record.cluster or "")
        if worker is None:
            raise HubError(
                f"application {app}: its destination cluster {record.cluster or '(unresolved)'} "
                "is not registered"
            )
        return worker

    # ------------------------------------------------------------ lifecycle

    async def _db(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn, limiter=self._store_limiter)

    def _open(self) -> None:
        self.registry = open_registry(self.home)
        self.store = open_store(self.home)
        self.apps = AppStore(self.store)
        self.history = SyncHistory(self.store, lambda: load_keyring(self.home))
        self.repo_cache = RepoCache(self.home)
        self.repos = SerializedSources(self.repo_cache, self.metrics)
        self.book = RevisionBook(self.repos, self._git_limiter)
        self.git = HubGit(remote=MaterializedGit(self.repos))
        self.appsets = AppSetController(
            self.store,
            self.git,
            ControllerOptions(new_git_file_globbing=self.options.new_git_file_globbing),
        )
        self.jq = JqRunner()
        self.services = WorkerServices(
            registry=self.registry,
            apps=self.apps,
            history=self.history,
            repos=self.repos,
            revisions=self.book,
            global_syncs=self.global_syncs,
            global_calls=self.global_calls,
            store_calls=self._store_limiter,
            sync_threads=anyio.CapacityLimiter(self.options.global_syncs),
            cluster_syncs=self.options.cluster_syncs,
            cluster_calls=self.options.cluster_calls,
            jq=self.jq,
            draining=lambda: self._draining,
            sync_timeout_s=self.options.sync_timeout_s,
            metrics=self.metrics,
        )

    def _close(self) -> None:
        self.jq.close()
        self.git.close()
        self.repo_cache.close()
        self.store.close()
        self.registry.close()

    def record_interrupted(self) -> list[str]:
        """Operations a crash left in flight are recorded as Error (once, at start)."""
        names = []
        now = datetime.now(UTC)
        for op in self.history.interrupted():
            entry = self.history.record_interrupted(op)
            self.apps.set_status(
                op.app,
                operation_state={
                    "operationId": op.operation_id,
                    "phase": OperationPhase.ERROR.value,
                    "message": entry.message,
                    "trigger": op.trigger.value,
                    "startedAt": op.started_at.isoformat(),
                    "finishedAt": now.isoformat(),
                    "syncResult": {"revision": op.revision},
                },
            )
            names.append(op.app)
            log.warning("app %s: operation %s %s", op.app, op.operation_id, entry.message)
        return names

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled or ``shutdown``; reports ready after the first Git cycle and
        once every worker has started."""
        await anyio.to_thread.run_sync(self._open)
        try:
            await self._db(self.record_interrupted)
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self.git_cycle()
                await self._follow_registry()
                self._ready = True
                task_status.started()
                tg.start_soon(self._git_loop, name="git poll")
                tg.start_soon(self._store_loop, name="registry and store poll")
                tg.start_soon(self._resync_loop, name="resync")
        finally:
            self._ready = False
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._close)

    async def run_once(self, timeout_s: float = 300.0) -> tuple[bool, list[str]]:
        """``hub serve --once``: load, generate, sync every Application once, wait for
        health. Returns (everything Synced and Healthy, problems)."""
        await anyio.to_thread.run_sync(self._open)
        problems: list[str] = []
        try:
            await self._db(self.record_interrupted)
            problems += await self.git_cycle()
            records = await self._db(self.registry.list)
            self._clusters = cluster_fingerprint(records)
            results: dict[str, dict[str, Any]] = {}

            async def one(name: str) -> None:
                worker = ClusterWorker(name, self.services)
                self.workers[name] = worker
                results[name] = dict(await worker.sync_all_once(timeout_s))

            async with anyio.create_task_group() as tg:
                for r in records:
                    tg.start_soon(one, r.name)
            for cluster, per_app in sorted(results.items()):
                for app, result in sorted(per_app.items()):
                    if isinstance(result, str):
                        problems.append(f"{app} ({cluster}): {result}")
                    elif not result.synced_and_healthy:
                        problems.append(
                            f"{app} ({cluster}): {result.phase.value}, "
                            f"{result.sync_status.value if result.sync_status else 'Unknown'}, "
                            f"{result.health.value if result.health else 'Unknown'}: "
                            f"{result.message}"
                        )
            orphans = await self._db(self.apps.list_apps)
            for rec in orphans:
                if rec.cluster is None or rec.cluster not in results:
                    problems.append(f"{rec.name}: destination cluster is not registered")
        finally:
            await anyio.to_thread.run_sync(self._close)
        return not problems, problems

    async def shutdown(self) -> None:
        """SIGTERM: start nothing new, let syncs in flight finish within the grace period,
        then cancel them through the engine (recorded), then stop everything."""
        self._draining = True
        log.info(
            "shutting down: waiting up to %gs for syncs in flight", self.options.shutdown_grace_s
        )
        with anyio.move_on_after(self.options.shutdown_grace_s):
            while any(w.syncs_in_flight for w in self.workers.values()):
                await anyio.sleep(0.2)
        for worker in self.workers.values():
            worker.cancel_operations()
        for worker in self.workers.values():
            worker.stop()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    # ------------------------------------------------------------ Git

    async def git_cycle(self) -> list[str]:
        """One poll cycle; returns the errors (sources that could not be loaded, repos that
        could not be fetched)."""
        self.book.new_cycle()
        self.repos.new_cycle()
        await anyio.to_thread.run_sync(self.git.refresh)
        before = self.book.snapshot()
        async with self._appset_lock:
            records = await self._db(SourceStore(self.store).list)
            self._source_repos = {r.source.repo for r in records}
            loads = []
            for r in records:
                loads.append(
                    await anyio.to_thread.run_sync(
                        load_source, r.source, self.git, limiter=self._git_limiter
                    )
                )
            clusters = await self._db(self.registry.list)

            def generate() -> None:
                self.appsets.ingest(loads, clusters, configured={r.source.name for r in records})
                self.appsets.reconcile_appsets(clusters)

            await anyio.to_thread.run_sync(generate, limiter=self._git_limiter)
        errors = [e for load in loads for e in load.errors]
        apps = await self._db(self.apps.list_apps)
        wanted: set[tuple[str, str]] = set()
        for rec in apps:
            source = rec.spec.get("source") or next(iter(rec.spec.get("sources") or []), None)
            if isinstance(source, dict) and source.get("repoURL"):
                wanted.add((str(source["repoURL"]), str(source.get("targetRevision") or "HEAD")))
        self._app_repos = {repo for repo, _ in wanted}
        for repo, revision in sorted(wanted):
            try:
                await self.book.sha(repo, revision)
            except HubError as exc:
                errors.append(str(exc))
        if self.book.snapshot() != before:
            for worker in self.workers.values():
                worker.wake(refresh_all=True)
        return errors

    async def _git_loop(self) -> None:
        while True:
            wait = jittered(self.options.git_poll_s, self.options.jitter)
            if self.book.failures:
                wait = min(wait, backoff_delay(max(self.book.failures.values()), base_s=5.0))
            with anyio.move_on_after(wait):
                await self._git_now.wait()
            self._git_now = anyio.Event()
            try:
                errors = await self.git_cycle()
            except (HubError, SyncError) as exc:
                errors = [str(exc)]
            for error in errors:
                log.error("git: %s", error)

    # ------------------------------------------------------------ registry and store

    async def _follow_registry(self) -> None:
        records = await self._db(self.registry.list)
        fingerprint = cluster_fingerprint(records)
        if fingerprint == self._clusters and self.workers:
            return
        changed = fingerprint != self._clusters
        # A new server or credential: the worker's client is stale, so it starts afresh.
        moved = {
            name
            for name, mark in fingerprint.items()
            if name in self._clusters
            and (mark[0], mark[3]) != (self._clusters[name][0], self._clusters[name][3])
        }
        self._clusters = fingerprint
        assert self._tg is not None
        for name in sorted(moved & set(self.workers)):
            self.workers.pop(name).stop()
            log.info("cluster %s: server or credential changed; restarting its worker", name)
        for name in sorted(set(self.workers) - set(fingerprint)):
            worker = self.workers.pop(name)
            worker.stop()
            if self.metrics is not None:
                self.metrics.forget_cluster(name)
            log.info("cluster %s left the registry: its worker stopped", name)
        if changed:
            async with self._appset_lock:
                await anyio.to_thread.run_sync(
                    self.appsets.reconcile_appsets, records, limiter=self._git_limiter
                )
        for name in sorted(set(fingerprint) - set(self.workers)):
            worker = ClusterWorker(name, self.services)
            self.workers[name] = worker
            await self._tg.start(worker.run, name=f"worker {name}")
            log.info("cluster %s: worker started", name)

    async def _store_loop(self) -> None:
        while True:
            await anyio.sleep(self.options.registry_poll_s)
            await self._follow_registry()
            marks = await self._db(self.apps.change_marks)
            for cluster, mark in marks.items():
                if self._app_marks.get(cluster) != mark and cluster in self.workers:
                    self.workers[cluster].wake(reload=True)
            for cluster in set(self._app_marks) - set(marks):
                if cluster in self.workers:
                    self.workers[cluster].wake(reload=True)
            self._app_marks = marks

    async def _resync_loop(self) -> None:
        while True:
            await anyio.sleep(jittered(self.options.resync_s, self.options.jitter))
            for worker in self.workers.values():
                worker.wake(refresh_all=True)


def delete_cluster_resources(home: Path, cluster: str) -> list[str]:
    """``hub cluster rm NAME --cascade``, before the cluster is removed: mark every
    Application of the cluster for deletion (so a running hub stops syncing them and
    deletes too; deletes are idempotent), then delete what each tracks through the normal
    deletion path and wait for it. Returns the problems; empty when everything is gone.

    The records stay (marked deleting) for the removal of the cluster to prune: were they
    removed here, a running hub's ApplicationSet controller could generate them again for
    the still-registered cluster and sync the workloads back before the cluster goes."""
    registry = open_registry(home)
    store = open_store(home)
    try:
        apps = AppStore(store)
        records = apps.list_apps(cluster=cluster)
        with apps.transaction() as txn:
            for rec in records:
                txn.mark_deleting(rec.name, f"cluster {cluster} removed with --cascade")
        kube = KubeClient(connect(registry, cluster))
        problems = []
        for rec in records:
            try:
                problem = delete_app_resources(kube, rec)
            except (ClusterError, SyncError) as exc:
                problem = f"{rec.name}: {exc}"
            if problem is not None:
                problems.append(problem)
        return problems
    finally:
        store.close()
        registry.close()
