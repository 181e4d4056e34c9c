"""The hub: one root task group running the ApplicationSet controller and a ClusterWorker
per registered cluster (``hub serve``).

Tasks of the root group (structured: nothing outlives ``Hub.run``):

- **Git**: every ``git_poll_s`` (+/- jitter) or at once on a push webhook / refresh request,
  one cycle: load every source at the SHA its revision names now, ingest it and expand the
  ApplicationSets (``hub.appsets``), then resolve each (repo, revision) the Applications
  use once (``hub.repos.ResolvedRevisions``: one fetch per repo per cycle). A repository
  that cannot be read keeps its last good SHA and is retried with backoff before the next
  poll. The ingest-and-expand step runs only when something it reads moved (sources,
  registry, desired state in the store, the SHAs the git generators read), on a refresh,
  and at least every ``appset_resync_s`` (``appset_pass_reason``).
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

import gc
import hashlib
import json
import logging
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import anyio
import anyio.abc
import anyio.to_thread

from clusters.cache import backoff_delay
from clusters.connect import connect
from clusters.errors import ClusterError
from clusters.kube import KubeClient
from clusters.registry import ClusterNotFound, ClusterRecord, Registry
from generators.errors import GeneratorError
from generators.git import RepoTree
from hub.api.client import find_running_hub
from hub.apps import BEFORE_START_MESSAGE, AppRecord, AppStore, never_started
from hub.appsets import AppSetController, ControllerOptions, cluster_ref
from hub.charts import shared_chart_repos
from hub.errors import HubError
from hub.handle import ClusterConnection
from hub.home import load_keyring, open_store
from hub.leases import (
    ClusterFence,
    FencedAppStore,
    FencedHistoryStorage,
    Fences,
    LeaderFencedStore,
    LeaseLost,
    LeaseOptions,
    LeaseStore,
    cluster_lease,
    hold_lease,
    is_shared,
    lease_holder,
    quiet_lease_lost,
)
from hub.memory import malloc_trim
from hub.metrics import Metrics
from hub.notifications.dispatcher import Notifier
from hub.notifications.secrets import NotificationSecrets
from hub.repos import RepoCache, ResolvedRevisions
from hub.rollout import advance_rollouts
from hub.services import Services, open_services
from hub.shards import Shards
from hub.sources import HubGit, SourceGit, SourceLoad, SourceRecord, SourceStore, load_source
from hub.store import Store
from hub.sync.diff import JqRunner
from hub.sync.health import HealthRules
from hub.sync.health_rules import load_health_rules
from hub.sync.history import HistoryEntry, OperationPhase, SyncHistory, Trigger
from hub.sync.model import SyncError, declared_source_specs
from hub.sync.priority import WritesFirst
from hub.sync.projects import ClusterRef
from hub.sync.resources import HookType, ResourceKey, effective_sync_options, is_delete_hook
from hub.sync.windows import manual_refusal
from hub.worker import (
    CONNECT_TIMEOUT_S,
    DELETION_ERROR,
    FENCE_ANNOTATION,
    ClusterWorker,
    FairSlots,
    ManualSync,
    WorkerServices,
    delete_app_resources,
    last_synced_manifests,
    list_tracked,
    release_hook_finalizers,
    synced_kinds,
    window_verdict_of,
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
    cluster_syncs: int = 10  # syncs in flight per cluster (on the loop, not threads)
    cluster_calls: int = 4
    global_syncs: int = 512
    # Syncs on their way to their first write go before status refreshes and history
    # records (hub.sync.priority); off only to measure what it changes.
    writes_first: bool = True
    global_calls: int = 16  # threads for renders and comparisons (spoke I/O is async)
    git_threads: int = 4
    store_threads: int = 8
    # Every other worker thread (anyio's default limiter, 40 unless told): with the limits
    # above and the API's 8 the hub stays under 64 threads whatever the fleet size.
    other_threads: int = 12
    shutdown_grace_s: float = 30.0
    sync_timeout_s: float = 600.0
    # A Git cycle skips the ApplicationSet pass when nothing it reads changed; it runs
    # anyway at least this often (a safety net, like Argo CD's periodic requeue).
    appset_resync_s: float = 60.0
    # Freed heap memory is handed back to the system this often (``hub.memory``); 0: never.
    trim_memory_s: float = 10.0


@dataclass(frozen=True, kw_only=True)
class ReplicaConfig:
    """This hub is one of several replicas on a shared database (docs/replicas.md)."""

    replica_id: str
    leases: LeaseOptions = field(default_factory=LeaseOptions)


#: Why a Git cycle of a replica that lost the leader lease meanwhile wrote nothing.
NOT_LEADER = "the leader lease is lost: this Git cycle is dropped"

#: The store key where the leader publishes the revisions of its last Git cycle, so the
#: other replicas fetch when (and only when) the leader saw a repository move.
REVISIONS_META = "replicas.revisions"


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


#: How often ``hub cluster rm --cascade`` checks that the hub it waits for still answers.
HUB_PROBE_S = 5.0


def fences_of(records: Sequence[ClusterRecord]) -> dict[str, str]:
    """Clusters being removed (``FENCE_ANNOTATION``): name -> why."""
    return {
        r.name: f"cluster {r.name} is being removed ({r.annotations[FENCE_ANNOTATION]})"
        for r in records
        if FENCE_ANNOTATION in r.annotations
    }


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


#: A (repo, revision) a generator or a source read.
ReadKey = tuple[str, str]

# A commit SHA names the same tree forever: not recorded (hub.sources reads it unresolved).
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


def appset_cluster_marks(records: Sequence[ClusterRecord]) -> tuple[tuple[Any, ...], ...]:
    """What of the registry the ApplicationSet controller may read (the clusters generator,
    destination and AppProject checks): every field but the health check, which moves on
    every probe, in the registry's order (the first cluster of a server wins)."""
    return tuple(
        (
            r.name,
            r.server,
            tuple(sorted(r.labels.items())),
            tuple(sorted(r.annotations.items())),
            tuple(r.namespaces),
            r.cluster_resources,
            r.project,
            r.server_version,
            r.credential_kind,
            r.credential_rev,
        )
        for r in records
    )


def sources_digest(records: Sequence[SourceRecord], loads: Sequence[SourceLoad]) -> str:
    """A digest of the sources as ``ingest`` sees them: their rows and what each load found
    (manifests, errors), without the commits they were read at (``source_revisions``) and
    the load time, which every pass writes. A commit that leaves every source's files as
    they were (an image bump beside them in the same repository) does not move it."""
    rows = [
        [
            r.source.name,
            r.source.repo,
            r.source.path,
            r.source.revision,
            r.last_error,
            r.held_sha,
            r.confirmed_sha,
            dict(r.file_errors),
        ]
        for r in records
    ]
    found = [
        {
            "source": [load.source.name, load.source.repo, load.source.path, load.source.revision],
            "read": load.sha is not None,
            "errors": list(load.errors),
            "files": load.files,
            "paths": list(load.paths),
            "contents": dict(load.contents),
            "file_errors": dict(load.file_errors),
            "appsets": [[a.file, a.manifest] for a in load.appsets],
            "applications": [[a.file, a.manifest] for a in load.applications],
            "projects": [[p.file, p.manifest] for p in load.projects],
        }
        for load in loads
    ]
    text = json.dumps([rows, found], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def source_revisions(
    records: Sequence[SourceRecord], loads: Sequence[SourceLoad]
) -> tuple[tuple[str, str | None, str | None], ...]:
    """Each source's recorded commit (``last_sha``) and the commit this cycle loaded."""
    loaded = {load.source.name: load.sha for load in loads}
    return tuple(sorted((r.source.name, r.last_sha, loaded.get(r.source.name)) for r in records))


def sources_clean(records: Sequence[SourceRecord], loads: Sequence[SourceLoad]) -> bool:
    """Every source loaded without an error, none held by the deletion guard or failing:
    then a commit that only moved the SHAs may be recorded without a pass (a held or
    failing source is the pass's to decide)."""
    return all(load.ok and not load.file_errors for load in loads) and all(
        r.held_sha is None and r.last_error is None and not r.file_errors for r in records
    )


@dataclass(frozen=True, kw_only=True)
class AppSetInputs:
    """What a Git cycle reads before the ApplicationSet pass, compared between cycles."""

    sources: str  # sources_digest
    clusters: tuple[tuple[Any, ...], ...]  # appset_cluster_marks
    store: tuple[Any, ...]  # AppStore.desired_mark
    revisions: tuple[tuple[str, str | None, str | None], ...] = ()  # source_revisions
    clean: bool = True  # sources_clean


@dataclass(frozen=True, kw_only=True)
class AppSetPass:
    """The last full ApplicationSet pass: its inputs (read before it ran), the SHA (or
    error) each (repo, revision) its generators read named, and the (repo, revision) and
    chart sets of the Applications it left, reused by the cycles that skip."""

    inputs: AppSetInputs
    reads: Mapping[ReadKey, frozenset[str]]
    unsure: bool  # a Git read failed during the pass
    at: float  # monotonic time the pass started
    wanted: frozenset[tuple[str, str]] = frozenset()
    charts: frozenset[tuple[str, str, str]] = frozenset()


# How long syncs in flight may postpone the periodic ApplicationSet pass, in resync periods.
PERIODIC_PASS_DEFER = 5


def appset_pass_reason(
    last: AppSetPass | None,
    inputs: AppSetInputs,
    *,
    now: float,
    resync_s: float,
    asked: bool,
    syncing: bool = False,
) -> str | None:
    """Why this Git cycle must run the full ApplicationSet pass, or None when nothing it
    reads outside Git changed since the last one (the Git reads are checked after this,
    with ``moved_reads``: only when this says None, as they cost a resolve each). A clean
    source that moved to a commit with the same files needs no pass: the cycle records
    the commit (``Hub._record_source_commits``).

    The periodic pass is a safety net under the input marks, not a reaction to anything:
    while ``syncing`` (a rollout in flight) it waits, up to ``PERIODIC_PASS_DEFER`` resync
    periods, because at 10,000 Applications it is seconds of CPU taken from the syncs.
    A pass any input asks for is never postponed."""
    if asked:
        return "refresh requested"
    if last is None:
        return "first pass"
    age = now - last.at
    if age >= resync_s * (PERIODIC_PASS_DEFER if syncing else 1):
        return "periodic pass"
    if last.unsure:
        return "a Git read failed in the last pass"
    if inputs.sources != last.inputs.sources:
        return "a source changed"
    if inputs.revisions != last.inputs.revisions and not inputs.clean:
        return "a source that is held or failing moved"
    if inputs.clusters != last.inputs.clusters:
        return "the clusters changed"
    if inputs.store != last.inputs.store:
        return "the stored Applications, ApplicationSets or AppProjects changed"
    return None


def moved_reads(
    reads: Mapping[ReadKey, frozenset[str]], now: Mapping[ReadKey, str]
) -> list[ReadKey]:
    """The (repo, revision) keys of the last pass that name another SHA (or error) now, or
    that named two different ones during the pass (the branch moved while it was read)."""
    return sorted(key for key, seen in reads.items() if seen != {now.get(key)})


class ReadRecorder:
    """The ``SourceGit`` the ApplicationSet controller reads through: it passes every read
    on and remembers the SHA each (repo, revision) named when it was read, so a Git cycle
    can tell whether the repositories the git generators read (sources or not) moved."""

    def __init__(self, inner: SourceGit) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._seen: dict[ReadKey, set[str]] = {}
        self._failed = False

    def _remember(self, key: ReadKey, answer: str) -> None:
        with self._lock:
            self._seen.setdefault(key, set()).add(answer)

    def _note(self, repo_url: str, revision: str) -> None:
        if _FULL_SHA.match(revision):
            return  # a commit never changes
        try:
            sha = self._inner.resolve(repo_url, revision)
        except (GeneratorError, HubError) as exc:
            sha = f"error: {exc}"
        self._remember((repo_url, revision), sha)

    def _failing(self) -> None:
        with self._lock:
            self._failed = True

    def resolve(self, repo_url: str, revision: str) -> str:
        try:
            sha = self._inner.resolve(repo_url, revision)
        except (GeneratorError, HubError) as exc:
            self._remember((repo_url, revision), f"error: {exc}")
            raise
        if not _FULL_SHA.match(revision):
            self._remember((repo_url, revision), sha)
        return sha

    def list_tree(self, repo_url: str, revision: str) -> RepoTree:
        self._note(repo_url, revision)
        try:
            return self._inner.list_tree(repo_url, revision)
        except Exception:
            self._failing()
            raise

    def read_file(self, repo_url: str, revision: str, path: str) -> bytes:
        self._note(repo_url, revision)
        try:
            return self._inner.read_file(repo_url, revision, path)
        except Exception:
            self._failing()
            raise

    def take(self) -> tuple[dict[ReadKey, frozenset[str]], bool]:
        """What was read since the last ``take`` and whether a read failed; starts afresh."""
        with self._lock:
            seen, failed = self._seen, self._failed
            self._seen, self._failed = {}, False
        return {key: frozenset(v) for key, v in seen.items()}, failed


WORKER_RESTART_MAX_S = 60.0

#: The garbage collector's thresholds while a hub runs (``gc.set_threshold``). With
#: Python's default (700, 10, 10) the objects of the hundreds of syncs in flight outlive
#: the young collections that catch them, are promoted, and trigger a full collection of
#: the whole heap every 2 s of a rollout: at 300 clusters x 10 apps that was 40% of an
#: image commit's hub CPU (bench/fleet.py "hub garbage collector"). A young generation of
#: 60,000 lets most of them die first: at 1,000 x 10 it took the collector's time per
#: image commit from 3.8 to 2.0 s (20,000 before) and moved the full collection, a 1.7 s
#: stop of the loop, out of the rollout. Reference cycles are still collected, but those
#: that reach the old generation now wait longer for a (rarer) full collection, so the
#: per-sync paths keep none (tests/sync/test_e2e_async_engine.py checks a sync's).
GC_THRESHOLDS = (60_000, 10, 10)


class Hub:
    """The running hub (see the module docstring). Implements ``HubHandle``."""

    def __init__(
        self, home: Path, options: HubOptions | None = None, replica: ReplicaConfig | None = None
    ) -> None:
        self.home = home
        self.options = options or HubOptions()
        self.replica = replica
        self.shards: Shards | None = None  # replica mode: set in _open
        self.api_url = ""  # set by `hub serve` once bound (published with the heartbeat)
        self._worker_done: dict[str, anyio.Event] = {}
        self._leader_now = anyio.Event()
        self._revisions_seen: str | None = None
        # Read here, before any task group: a bad file is one clear error, nothing started.
        self.health_rules = load_health_rules(home)
        self.workers: dict[str, ClusterWorker] = {}
        self.metrics: Metrics | None = None  # set by `hub serve` when the API is served
        self._ready = False
        self._draining = False
        self._tg: anyio.abc.TaskGroup | None = None
        self._git_now = anyio.Event()
        self._git_forced = False  # the cycle _git_now wakes runs the full pass
        self._clusters: dict[str, tuple[Any, ...]] = {}
        # Workers that crashed: when each may start again, and its last pause.
        self._restart_at: dict[str, float] = {}
        self._worker_backoff: dict[str, float] = {}
        # The registry as last read: every sync's project scope needs the fleet's names and
        # servers, and one query per sync was O(clusters) each (1,000 clusters: the top cost).
        self._fleet: tuple[ClusterRef, ...] | None = None
        # _follow_registry's last list, with its refs and fingerprint.
        self._registry_seen: tuple[
            tuple[ClusterRecord, ...], tuple[ClusterRef, ...], dict[str, tuple[Any, ...]]
        ] = ((), (), {})
        self._app_marks: dict[str | None, tuple[Any, ...]] = {}
        self._source_repos: set[str] = set()
        self._app_repos: set[str] = set()
        # The last full ApplicationSet pass (None: the next cycle runs one), what each
        # cycle did (also counted in the metrics when served), and the clock of the
        # periodic pass (a test may move it).
        self._appset_pass: AppSetPass | None = None
        self.appset_passes: dict[str, int] = {"full": 0, "skipped": 0}
        self._clock: Callable[[], float] = time.monotonic
        o = self.options
        self._git_limiter = anyio.CapacityLimiter(o.git_threads)
        self._store_limiter = anyio.CapacityLimiter(o.store_threads)
        self._appset_lock = anyio.Lock()
        self.global_syncs = FairSlots(o.global_syncs)
        self.global_calls = anyio.CapacityLimiter(o.global_calls)
        # Opened in run(): they hold connections, files and a child process.
        self.registry: Registry
        self.store: Store
        self.apps: AppStore
        self.history: SyncHistory
        self.repo_cache: RepoCache
        self.revisions: ResolvedRevisions
        self.git: HubGit
        self._reads: ReadRecorder  # what the ApplicationSet controller reads from Git
        self.appsets: AppSetController
        self.leader_apps: AppStore  # the leader's writes (replicas: fenced by its lease)
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
        worker = await self._worker_of(app, syncing=True)
        record = await self._db(partial(self.apps.get, app))
        assert record is not None
        # The project's sync windows may refuse manual syncs too (manualSync: false).
        verdict = await self._db(partial(window_verdict_of, self.apps, record))
        refusal = manual_refusal(verdict, app)
        if refusal is not None:
            raise HubError(refusal)
        if worker is None:  # another replica owns the cluster: it picks this up
            await self._forward(record, "sync", {"prune": prune, "revision": revision, "who": who})
            return
        worker.request_sync(app, ManualSync(prune=prune, revision=revision, who=who))

    async def request_refresh(self, app: str | None = None) -> None:
        if app is None:
            await self._git_cycle_now(force=True)
            return
        worker = await self._worker_of(app)
        if worker is None:
            record = await self._db(partial(self.apps.get, app))
            assert record is not None
            await self._forward(record, "refresh", {})
            return
        worker.refresh(app)

    async def request_rollback(self, app: str, history_id: int, *, who: str = "api") -> None:
        worker = await self._worker_of(app, syncing=True)
        record = await self._db(partial(self.apps.get, app))
        assert record is not None
        parsed = record.application()
        if parsed.sync_policy.auto_sync:
            raise HubError(
                f"application {app}: rollback is refused while automated sync is on (it would "
                "sync back to Git at once); turn syncPolicy.automated off first"
            )
        # A rollback is a manual sync: the same sync windows apply (as in Argo CD).
        verdict = await self._db(partial(window_verdict_of, self.apps, record))
        refusal = manual_refusal(verdict, app, action="rollback")
        if refusal is not None:
            raise HubError(refusal)
        entry = await self._db(partial(self.history.get, app, history_id))
        if worker is None:
            await self._forward(record, "rollback", {"id": history_id, "who": who})
            return
        worker.request_sync(app, await self._rollback_of(app, entry, who))

    async def _rollback_of(self, app: str, entry: HistoryEntry, who: str) -> ManualSync:
        """The manual sync that re-applies history ``entry`` of ``app``."""
        manifests = await self._db(partial(self.history.manifests, app, entry.id))
        return ManualSync(
            prune=False,
            revision=entry.revision,
            who=who,
            manifests=tuple(manifests),
            source=entry.source,
            trigger=Trigger.ROLLBACK,
        )

    async def notify_git_push(self, repo_urls: list[str]) -> int:
        pushed = {normalize_repo(u) for u in repo_urls}
        repos = self._source_repos | self._app_repos
        if self._appset_pass is not None:  # and those only git generators read
            repos |= {repo for repo, _ in self._appset_pass.reads}
        if self.shards is not None and not self.is_leader():
            repos = await self._db(self._repos_in_store)  # a follower polls no Git itself
        known = {normalize_repo(r) for r in repos}
        matched = len(pushed & known)
        if matched:
            log.info("push webhook for %s: fetching now", ", ".join(sorted(pushed & known)))
            # Not a refresh: the cycle fetches at once and runs the ApplicationSet pass
            # when what it reads moved (a source's files, a git generator's repository), so
            # a push of an image bump costs no pass over every Application.
            await self._git_cycle_now(force=False)
        return matched

    async def _git_cycle_now(self, *, force: bool) -> None:
        """Run a Git cycle now, ``force``: with the full ApplicationSet pass (a refresh, not
        a push). A follower forwards it to the leader, which runs the Git cycles."""
        if self.shards is not None and not self.shards.is_leader():
            body = {} if force else {"push": True}
            await self._db(partial(self.leases.put_request, "", "", "git", body))
            return
        self._wake_git(force=force)

    def _wake_git(self, *, force: bool) -> None:
        """Run a Git cycle now; ``force``: with the full ApplicationSet pass (a refresh)."""
        self._git_forced = self._git_forced or force
        self._git_now.set()

    def _repos_in_store(self) -> set[str]:
        """The repositories of the sources and of the Applications' sources."""
        repos = {r.source.repo for r in SourceStore(self.store).list()}
        for rec in self.apps.list_apps():
            for source in declared_source_specs(rec.spec):
                if source.get("repoURL") and not source.get("chart"):
                    repos.add(str(source["repoURL"]))
        return repos

    async def _forward(self, record: AppRecord, action: str, body: dict[str, Any]) -> None:
        """Replica mode: the cluster's owner claims the request from the store."""
        assert record.cluster is not None
        await self._db(partial(self.leases.put_request, record.cluster, record.name, action, body))
        log.info("app %s: %s forwarded to the owner of %s", record.name, action, record.cluster)

    async def _worker_of(self, app: str, *, syncing: bool = False) -> ClusterWorker | None:
        """The worker of ``app``'s cluster; with ``syncing``, refused when no sync may start
        (the app is being deleted, or its cluster is being removed). None in replica mode
        when another replica owns the cluster (the caller forwards the request)."""
        record = await self._db(partial(self.apps.get, app))
        if record is None:
            raise HubError(f"application {app!r} does not exist (see `hub app list`)")
        worker = self.workers.get(record.cluster or "")
        if self.shards is not None and record.cluster not in self.shards.owned:
            worker = None  # not ours, or being handed over: the owner takes it
        if worker is None and self.shards is not None and record.cluster:
            found = await self._db(partial(self.registry.find, record.cluster))
            if found is not None:
                if syncing and record.deleting:
                    raise HubError(f"application {app} is being deleted; it is not synced any more")
                fenced = fences_of([found])
                if syncing and fenced:
                    raise HubError(f"application {app}: not synced: {fenced[record.cluster]}")
                return None
        if worker is None:
            raise HubError(
                f"application {app}: its destination cluster {record.cluster or '(unresolved)'} "
                "is not registered"
            )
        if syncing and record.deleting:
            raise HubError(f"application {app} is being deleted; it is not synced any more")
        if syncing and worker.fenced is not None:
            raise HubError(f"application {app}: not synced: {worker.fenced}")
        return worker

    # ------------------------------------------------------------ lifecycle

    async def _db(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn, limiter=self._store_limiter)

    def _open(self) -> None:
        with ExitStack() as stack:  # closed here if the wiring below fails
            parts = stack.enter_context(
                open_services(
                    self.home,
                    resolve_ttl_s=None,  # the hub resolves once per poll cycle (new_cycle)
                    git_limiter=self._git_limiter,
                    on_fetch=None if self.metrics is None else self.metrics.observe_git_fetch,
                )
            )
            self._wire(parts)
            self._closing = stack.pop_all()  # kept open until _close

    def _wire(self, parts: Services) -> None:
        self.registry = parts.registry
        self.store = parts.store
        self.apps = parts.apps
        self.history = parts.history
        worker_apps, fences = self.apps, None
        leader_store = self.store  # what the ApplicationSet controller and rollouts write
        if self.replica is not None:
            # Every state change of a cluster is written with its lease's fencing token.
            fences = Fences(self.store)
            worker_apps = FencedAppStore(self.store, fences)
            self.history = SyncHistory(FencedHistoryStorage(self.store, fences), parts.keyring)
            self.leases = LeaseStore(self.store, self.replica.replica_id, self.replica.leases)
            self.shards = Shards(
                self, self.leases, fences, self._store_limiter, lambda: self.api_url
            )
            # The leader's writes are fenced by the leader lease's token, as the workers'
            # are by their cluster's.
            leader_store = LeaderFencedStore(self.store, self._leader_fence).as_store()
            # A sync ended by a lost lease is expected here: one warning line, no traceback.
            quiet_lease_lost(logging.getLogger(ClusterWorker.__module__))
        self.leader_apps = AppStore(leader_store)
        self.repo_cache = parts.repos
        self.revisions = parts.revisions
        self.git = parts.git
        self._reads = ReadRecorder(self.git)
        self.appsets = AppSetController(
            leader_store,
            self._reads,
            ControllerOptions(new_git_file_globbing=self.options.new_git_file_globbing),
        )
        self.jq = parts.jq
        secrets = NotificationSecrets(self.store, parts.keyring)
        self.notifier = Notifier(
            self.home, self.store, self.apps, secrets.lookup, self._store_limiter
        )
        self.services = WorkerServices(
            registry=self.registry,
            apps=worker_apps,
            fences=fences,
            history=self.history,
            repos=self.revisions,
            revisions=self.revisions,
            global_syncs=self.global_syncs,
            global_calls=self.global_calls,
            store_calls=self._store_limiter,
            cluster_syncs=self.options.cluster_syncs,
            cluster_calls=self.options.cluster_calls,
            jq=self.jq,
            health_rules=self.health_rules,
            draining=lambda: self._draining,
            sync_timeout_s=self.options.sync_timeout_s,
            metrics=self.metrics,
            on_status=self.notifier.on_status,
            fleet=lambda: self._fleet,
            inline_store=self.store if self.store.backend == "sqlite" else None,
            writes_first=WritesFirst() if self.options.writes_first else None,
        )

    def _close(self) -> None:
        self._closing.close()  # what _open opened, in reverse order

    def record_interrupted(
        self, cluster: str | None = None
    ) -> dict[str, dict[str, set[tuple[str, str]]]]:
        """Operations a crash left in flight are recorded as Error (once, at start; in
        replica mode per cluster, when this replica takes its lease: ``cluster``), and a
        Running state left with nothing in flight is rewritten as never started (Error).
        Returns, per cluster, the apps whose operation was cut short and the kinds it
        touched (their hooks may still carry our finalizer: ``free_interrupted_hooks``)."""
        cut: dict[str, dict[str, set[tuple[str, str]]]] = {}
        now = datetime.now(UTC)
        in_flight = self.history.interrupted()
        for op in in_flight:
            if cluster is not None and op.cluster != cluster:
                continue
            entry = self.history.record_interrupted(op)
            self.services.apps.set_status(
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
            kinds = cut.setdefault(op.cluster, {}).setdefault(op.app, set())
            kinds.update((r.group, r.kind) for r in op.resources)
            log.warning("app %s: operation %s %s", op.app, op.operation_id, entry.message)
        # A hub stopped between the worker's running state and the engine's record left a
        # Running (or Terminating) state and nothing in flight: no worker of this scope runs
        # yet, so it is rewritten as finished, marked as never started (no attempt: an
        # automated sync tries its revision again; no rollout failure). No history entry:
        # nothing ran. In replica mode, the write is fenced by this cluster's new token (as
        # above). An app with an operation still in flight on another cluster (it moved) is
        # left to that cluster's take-over.
        elsewhere = {op.app for op in in_flight if cluster is not None and op.cluster != cluster}
        for name, state in self.services.apps.unfinished_operations(cluster).items():
            if name in elsewhere:
                continue
            self.services.apps.set_status(name, operation_state=never_started(state, now))
            log.warning("app %s: operation %s", name, BEFORE_START_MESSAGE)
        return cut

    async def free_interrupted_hooks(self, cut: dict[str, dict[str, set[tuple[str, str]]]]) -> None:
        """Take our hook finalizer off the hooks of operations a crash cut short (nothing
        else would: the executor that added it is gone, and a hook keeping it blocks its
        own deletion and its namespace's). Before any worker starts, so no new operation's
        hook can be mistaken for an old one; each cluster within ``CONNECT_TIMEOUT_S``, all
        at once; an unreachable cluster is logged and left to the deletion path, which
        frees them too."""

        def free(cluster: str, apps: dict[str, set[tuple[str, str]]]) -> list[str]:
            if self.registry.find(cluster) is None:
                return []
            kube = KubeClient(connect(self.registry, cluster))
            kinds = set().union(*apps.values())
            tracked = list_tracked(kube, apps, kinds)
            return [k for objs in tracked.values() for k in release_hook_finalizers(kube, objs)]

        async def one(cluster: str, apps: dict[str, set[tuple[str, str]]]) -> None:
            try:
                with anyio.fail_after(CONNECT_TIMEOUT_S):
                    freed = await anyio.to_thread.run_sync(
                        partial(free, cluster, apps),
                        limiter=self.global_calls,
                        abandon_on_cancel=True,
                    )
            except (TimeoutError, ClusterError, HubError) as exc:
                log.warning(
                    "cluster %s: could not free the hook finalizers of interrupted "
                    "operations of %s: %s",
                    cluster,
                    ", ".join(sorted(apps)),
                    exc or "no answer",
                )
                return
            if freed:
                log.info("cluster %s: freed the hook finalizer of %s", cluster, ", ".join(freed))

        async with anyio.create_task_group() as tg:
            for cluster, apps in sorted(cut.items()):
                tg.start_soon(one, cluster, apps)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled or ``shutdown``; reports ready after the first Git cycle and
        once every worker has started."""
        anyio.to_thread.current_default_thread_limiter().total_tokens = self.options.other_threads
        await anyio.to_thread.run_sync(self._open)
        thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            if self.shards is None:
                await self.free_interrupted_hooks(await self._db(self.record_interrupted))
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self.shards is not None:
                    # Replicas: join, take this replica's share of the clusters (each
                    # take-over records what the previous owner left in flight), and
                    # run Git and the ApplicationSet controller only while the leader.
                    await tg.start(self.shards.run, name="replica heartbeat")
                    records = await self._db(self.registry.list)
                    self._fleet = tuple(cluster_ref(r) for r in records)
                    self._clusters = cluster_fingerprint(records)
                    tg.start_soon(self._leader_loop, name="leader work")
                else:
                    await self.git_cycle()
                    await self._follow_registry()
                    tg.start_soon(self._git_loop, name="git poll")
                    tg.start_soon(self.notifier.run, name="notifications")
                self._ready = True
                task_status.started()
                tg.start_soon(self._store_loop, name="registry and store poll")
                tg.start_soon(self._resync_loop, name="resync")
                tg.start_soon(self._trim_loop, name="memory trim")
        finally:
            self._ready = False
            gc.set_threshold(*thresholds)
            with anyio.CancelScope(shield=True):
                if self.shards is not None:
                    try:
                        await self.shards.leave()
                    except Exception as exc:  # the lease then expires on its own
                        log.warning("replica: could not release the leases: %r", exc)
                await anyio.to_thread.run_sync(self._close)

    # ------------------------------------------------------------ replicas (hub.shards)

    async def take_over(self, cluster: str) -> None:
        """This replica just acquired ``cluster``'s lease: what the previous owner left in
        flight is recorded as interrupted (with the new token) and its hooks are freed,
        before the worker starts (as after a restart of a single hub)."""
        cut = await self._db(partial(self.record_interrupted, cluster))
        await self.free_interrupted_hooks(cut)

    async def start_owned_worker(self, cluster: str) -> None:
        if cluster in self.workers or self._tg is None:
            return
        records = await self._db(self.registry.list)
        if cluster not in {r.name for r in records}:
            return
        await self._start_worker(cluster, fences_of(records).get(cluster))

    async def stop_worker(self, cluster: str, *, drain: bool, wait: bool = True) -> None:
        """Stop ``cluster``'s worker (and with ``wait``, wait for it to end). ``drain``:
        start no new sync and give those in flight the shutdown grace to end first (a
        hand-off). A lost lease does not wait: its writes are refused already."""
        worker = self.workers.get(cluster)
        if worker is None:
            return
        if drain:
            # The worker's own switch for "no sync starts again"; in-flight ones go on.
            worker.fenced = worker.fenced or "cluster handed over to another replica"
            with anyio.move_on_after(self.options.shutdown_grace_s):
                while worker.syncs_in_flight:
                    await anyio.sleep(0.1)
        self.workers.pop(cluster, None)
        worker.stop()
        done = self._worker_done.get(cluster)
        if wait and done is not None:
            with anyio.move_on_after(self.options.shutdown_grace_s):
                await done.wait()
        if self.metrics is not None:
            self.metrics.forget_cluster(cluster)
        log.info("cluster %s: worker stopped", cluster)

    def leadership_changed(self, leader: bool) -> None:
        self._leader_now.set()
        if leader:
            self._wake_git(force=True)  # a new leader runs a Git cycle (and pass) at once

    def is_leader(self) -> bool:
        return self.shards is None or self.shards.is_leader()

    def _leader_fence(self) -> ClusterFence | None:
        return None if self.shards is None else self.shards.leader

    async def _leader_loop(self) -> None:
        """Replica mode: Git polling, the ApplicationSet controller and notifications run
        while this replica holds the leader lease, and are cancelled when it loses it."""
        while True:
            while not self.is_leader():
                await self._leader_now.wait()
                self._leader_now = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._git_loop, name="git poll")
                tg.start_soon(self.notifier.run, name="notifications")
                while self.is_leader():
                    with anyio.move_on_after(1.0):
                        await self._leader_now.wait()
                    self._leader_now = anyio.Event()
                tg.cancel_scope.cancel()

    async def _start_worker(self, name: str, fenced: str | None) -> None:
        assert self._tg is not None
        services = self.services
        if self.shards is not None:
            # Replicas: this worker's writes carry the token its lease had when it started.
            pinned = self.shards.fences.pinned(name)
            try:
                # What an earlier worker of this replica claimed under the same token and
                # did not start (a restart for a new credential) is claimable again.
                await self._db(partial(self.leases.unclaim, name, pinned.fence.token))
            except Exception as exc:  # the database out of reach: claimed at the next token
                log.warning("cluster %s: forwarded requests not reclaimed: %r", name, exc)
            services = replace(
                services,
                fences=pinned,
                apps=FencedAppStore(self.store, pinned),
                history=SyncHistory(
                    FencedHistoryStorage(self.store, pinned), lambda: load_keyring(self.home)
                ),
            )
        worker = ClusterWorker(name, services)
        if fenced is not None:
            worker.fence(fenced)  # before it runs: not one sync
        self.workers[name] = worker
        self._worker_done[name] = anyio.Event()
        await self._tg.start(self._run_worker, worker, name=f"worker {name}")
        log.info("cluster %s: worker started", name)

    async def _run_worker(
        self,
        worker: ClusterWorker,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """``worker.run``; a write refused by fencing (``LeaseLost``) stops this worker
        only (replica mode; the heartbeat then drops or re-acquires the lease)."""
        done = self._worker_done[worker.name]
        started = time.monotonic()
        try:
            await worker.run(task_status=task_status)
        except* LeaseLost as group:
            # Nested task groups nest the groups: the leaves are the LeaseLost errors.
            first: BaseException = group
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            lost = cast(LeaseLost, first)
            log.warning("%s", lost.one_line())
            if self.shards is not None:
                fence = self.shards.fences.get(worker.name)
                if fence is not None:
                    fence.lose(str(lost))
            if self.workers.get(worker.name) is worker:
                self.workers.pop(worker.name)
                worker.stop()
        except* Exception as group:
            # A bug in one cluster's worker must not stop the hub and the other clusters:
            # it is logged whole, and the worker starts afresh after a pause (the
            # registry poll restarts it) that doubles while it keeps failing.
            last = self._worker_backoff.get(worker.name, 0.5)
            if time.monotonic() - started > 10 * WORKER_RESTART_MAX_S:
                last = 0.5  # it had been running well: a new failure, not the same one
            delay = min(WORKER_RESTART_MAX_S, 2 * last)
            self._worker_backoff[worker.name] = delay
            self._restart_at[worker.name] = time.monotonic() + delay
            log.error(
                "cluster %s: its worker stopped on an unexpected error; restarting it in %.0f s",
                worker.name,
                delay,
                exc_info=group,
            )
            if self.metrics is not None:
                self.metrics.count_worker_crash(worker.name)
            if self.workers.get(worker.name) is worker:
                self.workers.pop(worker.name)
                worker.stop()
        finally:
            done.set()

    async def run_once(self, timeout_s: float = 300.0) -> tuple[bool, list[str]]:
        """``hub serve --once``: load, generate, sync every Application once, wait for
        health. Returns (everything Synced and Healthy, problems)."""
        await anyio.to_thread.run_sync(self._open)
        problems: list[str] = []
        try:
            await self.free_interrupted_hooks(await self._db(self.record_interrupted))
            problems += await self.git_cycle()
            records = await self._db(self.registry.list)
            self._fleet = tuple(cluster_ref(r) for r in records)
            self._clusters = cluster_fingerprint(records)
            results: dict[str, dict[str, Any]] = {}

            fences = fences_of(records)

            async def one(name: str) -> None:
                worker = ClusterWorker(name, self.services)
                if name in fences:
                    worker.fence(fences[name])
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

    async def git_cycle(self, *, force: bool = False) -> list[str]:
        """One poll cycle; returns the errors (sources that could not be loaded, repos that
        could not be fetched). ``force``: run the ApplicationSet pass even if nothing it
        reads changed (a refresh, a push webhook, a new leader)."""
        # The last cycle's answers: only a revision that moved since then wakes the workers
        # (taken after new_cycle() it was always empty, so every poll refreshed every app).
        before = self.revisions.snapshot()
        self.revisions.new_cycle()
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
            # Read before the pass: a change made while it runs (or by it: a pass that
            # wrote something runs again next cycle, until nothing moves) is seen next time.
            inputs = AppSetInputs(
                sources=sources_digest(records, loads),
                clusters=appset_cluster_marks(clusters),
                store=await self._db(self.apps.desired_mark),
                revisions=source_revisions(records, loads),
                clean=sources_clean(records, loads),
            )
            started = self._clock()
            last = self._appset_pass
            reason = await self._appset_pass_reason(last, inputs, started, force)
            if reason is None:
                assert last is not None
                if inputs.revisions != last.inputs.revisions:
                    if not self.is_leader():  # replicas: a stalled former leader writes nothing
                        return [NOT_LEADER]
                    last = replace(
                        last, inputs=await self._record_source_commits(records, loads, inputs)
                    )
                    self._appset_pass = last
                self._count_appset_pass("skipped")
                log.debug(
                    "git: ApplicationSet pass skipped: nothing it reads changed since the "
                    "last one (%.0f s ago)",
                    started - last.at,
                )
                # Nothing the Applications' specs come from changed: their (repo, revision)
                # and chart sets are those the last pass left.
                wanted, charts = last.wanted, last.charts
            else:
                log.debug("git: full ApplicationSet pass (%s)", reason)
                self._appset_pass = None  # a pass that fails is run again next cycle
                self._reads.take()  # forget reads made between cycles (registry events)

                def generate() -> None:
                    if not self.is_leader():  # replicas: a stalled former leader writes nothing
                        raise LeaseLost(NOT_LEADER)
                    self.appsets.ingest(
                        loads, clusters, configured={r.source.name for r in records}
                    )
                    self.appsets.reconcile_appsets(clusters)

                try:
                    await anyio.to_thread.run_sync(generate, limiter=self._git_limiter)
                except LeaseLost as exc:
                    return [str(exc)]
                # The source loads read through self.git, not the recorder: their SHAs are
                # in ``inputs.sources``.
                reads, unsure = self._reads.take()
                wanted, charts = await self._db(self._wanted_revisions)
                self._appset_pass = AppSetPass(
                    inputs=inputs,
                    reads=reads,
                    unsure=unsure,
                    at=started,
                    wanted=wanted,
                    charts=charts,
                )
                self._count_appset_pass("full")
        errors = [e for load in loads for e in load.errors]
        self._app_repos = {repo for repo, _ in wanted}
        for repo, revision in sorted(wanted):
            try:
                await self.revisions.sha(repo, revision)
            except HubError as exc:
                errors.append(str(exc))
        chart_repos = shared_chart_repos()
        charts_before = chart_repos.resolved_snapshot()
        for repo, chart, revision in sorted(charts):
            try:
                await anyio.to_thread.run_sync(
                    chart_repos.resolve_chart, repo, chart, revision, limiter=self._git_limiter
                )
            except HubError as exc:
                errors.append(str(exc))
        if self.revisions.snapshot() != before or chart_repos.resolved_snapshot() != charts_before:
            for worker in self.workers.values():
                worker.wake(refresh_all=True)
        if self.shards is not None:
            # The other replicas fetch when (and only when) this changes.
            published = json.dumps(
                sorted(f"{r}@{v}={sha}" for (r, v), sha in self.revisions.snapshot().items())
            )
            if published != self._revisions_seen:
                self._revisions_seen = published
                await self._db(partial(self.store.set_meta, REVISIONS_META, published))
        return errors

    async def _record_source_commits(
        self, records: Sequence[SourceRecord], loads: Sequence[SourceLoad], inputs: AppSetInputs
    ) -> AppSetInputs:
        """Clean sources that moved to commits with the same files: each new commit is
        recorded as loaded (``last_sha``, what ``hub source list`` shows) without the pass,
        which would find nothing to do. The ApplicationSets and AppProjects keep the commit
        they were last ingested at. Returns the inputs as the next cycle will read them."""
        recorded = {r.source.name: r.last_sha for r in records}
        sources = SourceStore(self.store)
        for load in loads:
            if load.sha is not None and load.sha != recorded.get(load.source.name):
                await self._db(partial(sources.record_load, load))
                log.info(
                    "source %s: moved to %s with the same files: recorded, no ApplicationSet "
                    "pass needed",
                    load.source.name,
                    load.sha[:12],
                )
        return replace(
            inputs, revisions=tuple((name, sha, sha) for name, _, sha in inputs.revisions)
        )

    async def _appset_pass_reason(
        self, last: AppSetPass | None, inputs: AppSetInputs, now: float, force: bool
    ) -> str | None:
        """Why this cycle runs the full ApplicationSet pass, or None to skip it."""
        reason = appset_pass_reason(
            last,
            inputs,
            now=now,
            resync_s=self.options.appset_resync_s,
            asked=force,
            syncing=self.global_syncs.borrowed > 0,
        )
        if reason is not None or last is None:
            return reason
        # Every (repo, revision) the generators read, resolved again: this poll is how a
        # new commit in a repository that is no source is found.
        now_reads = await anyio.to_thread.run_sync(
            self._resolve_reads, sorted(last.reads), limiter=self._git_limiter
        )
        moved = moved_reads(last.reads, now_reads)
        if moved:
            return "moved in Git: " + ", ".join(f"{repo}@{rev}" for repo, rev in moved)
        return None

    def _resolve_reads(self, keys: Sequence[ReadKey]) -> dict[ReadKey, str]:
        out: dict[ReadKey, str] = {}
        for repo, revision in keys:
            try:
                out[(repo, revision)] = self.git.resolve(repo, revision)
            except (GeneratorError, HubError) as exc:
                out[(repo, revision)] = f"error: {exc}"
        return out

    def _wanted_revisions(
        self,
    ) -> tuple[frozenset[tuple[str, str]], frozenset[tuple[str, str, str]]]:
        """The (repo, revision) pairs and (repo, chart, revision) charts the stored
        Applications use (every spec decoded: only after a full ApplicationSet pass)."""
        wanted: set[tuple[str, str]] = set()
        charts: set[tuple[str, str, str]] = set()
        for spec in self.apps.list_specs():
            for source in declared_source_specs(spec):
                if not source.get("repoURL"):
                    continue
                target = str(source.get("targetRevision") or "HEAD")
                if source.get("chart"):
                    charts.add((str(source["repoURL"]), str(source["chart"]), target))
                else:
                    wanted.add((str(source["repoURL"]), target))
        return frozenset(wanted), frozenset(charts)

    def _count_appset_pass(self, result: str) -> None:
        self.appset_passes[result] += 1
        if self.metrics is not None:
            self.metrics.count_appset_reconcile(result)

    async def _follow_revisions(self) -> None:
        """Replica mode, not the leader: when the leader published moved revisions, this
        replica's workers resolve (fetch) again and re-compare."""
        published = await self._db(partial(self.store.get_meta, REVISIONS_META))
        if published is None or published == self._revisions_seen:
            return
        first = self._revisions_seen is None
        self._revisions_seen = published
        if first and not self.workers:
            return
        self.revisions.new_cycle()
        for worker in self.workers.values():
            worker.wake(refresh_all=True)

    async def _git_loop(self) -> None:
        while True:
            wait = jittered(self.options.git_poll_s, self.options.jitter)
            if self.revisions.failures:
                wait = min(wait, backoff_delay(max(self.revisions.failures.values()), base_s=5.0))
            with anyio.move_on_after(wait):
                await self._git_now.wait()
            # A refresh or a new leader asked for a full pass; a push webhook only woke it.
            asked, self._git_forced = self._git_forced, False
            self._git_now = anyio.Event()
            try:
                errors = await self.git_cycle(force=asked)
            except (HubError, SyncError) as exc:
                errors = [str(exc)]
            for error in errors:
                log.error("git: %s", error)

    # ------------------------------------------------------------ registry and store

    async def _follow_registry(self) -> None:
        records = await self._db(self.registry.list)
        seen = self._registry_seen
        if len(seen[0]) != len(records) or any(
            a is not b for a, b in zip(seen[0], records, strict=True)
        ):
            # The store hands out the same record objects while their rows stay unchanged:
            # a registry that did not move costs this poll no per-cluster work.
            seen = self._registry_seen = (
                tuple(records),
                tuple(cluster_ref(r) for r in records),
                cluster_fingerprint(records),
            )
        self._fleet = seen[1]
        fingerprint = seen[2]
        if fingerprint == self._clusters and self.workers and not self._restart_at:
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
        if changed and self.is_leader():
            async with self._appset_lock:
                try:
                    await anyio.to_thread.run_sync(
                        self.appsets.reconcile_appsets, records, limiter=self._git_limiter
                    )
                except LeaseLost as exc:  # replicas: no longer the leader; the next one does
                    log.warning("ApplicationSets not reconciled: %s", exc)
        fences = fences_of(records)
        # Replicas: only the clusters this replica holds the lease of (hub.shards).
        targets = set(fingerprint) if self.shards is None else set(fingerprint) & self.shards.owned
        now = time.monotonic()
        for name in sorted(targets - set(self.workers)):
            if self._restart_at.get(name, now) > now:
                continue  # a worker that crashed: not before its pause is over
            self._restart_at.pop(name, None)
            await self._start_worker(name, fences.get(name))
        for name in set(self._restart_at) - targets:
            self._restart_at.pop(name)
        for name, why in sorted(fences.items()):
            if name in self.workers:
                self.workers[name].fence(why)

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
            if self.shards is not None:
                await self._take_requests()
                if not self.is_leader():
                    await self._follow_revisions()
                    continue
            # Progressive sync: a set's step moves when its apps' status does (no row mark).
            try:
                moved = await self._db(
                    partial(advance_rollouts, self.leader_apps, self.notifier.on_rollout)
                )
            except LeaseLost as exc:  # replicas: no longer the leader; the next one does
                log.warning("rollouts not advanced: %s", exc)
                continue
            for cluster in moved:
                if cluster in self.workers:
                    self.workers[cluster].wake(refresh_all=True)

    async def _take_requests(self) -> None:
        """Replica mode: claim the sync/rollback/refresh requests other replicas stored for
        the clusters this one owns (and Git refreshes, when the leader)."""
        assert self.shards is not None
        waiting = await self._db(self.leases.pending_clusters)
        for cluster in sorted(waiting):
            if cluster == "":
                if self.is_leader():
                    claimed = await self._db(
                        partial(self.leases.claim_requests, "", self.shards.leader)
                    )
                    # A refresh forwarded by a follower forces the pass; a push does not.
                    self._wake_git(force=any(not body.get("push") for _, _, body in claimed))
                continue
            worker = self.workers.get(cluster)
            fence = self.shards.fences.get(cluster)
            if worker is None or fence is None or cluster not in self.shards.owned:
                continue
            try:
                claimed = await self._db(partial(self.leases.claim_requests, cluster, fence))
            except LeaseLost as exc:
                log.warning("cluster %s: requests not taken: %s", cluster, exc)
                continue
            for app, action, body in claimed:
                try:
                    await self._dispatch(worker, app, action, body)
                except HubError as exc:
                    log.warning("app %s: forwarded %s dropped: %s", app, action, exc)

    async def _dispatch(
        self, worker: ClusterWorker, app: str, action: str, body: dict[str, Any]
    ) -> None:
        who = str(body.get("who") or "api")
        if action == "refresh":
            worker.refresh(app)
        elif action == "sync":
            revision = body.get("revision")
            worker.request_sync(
                app,
                ManualSync(
                    prune=bool(body.get("prune")),
                    revision=str(revision) if revision else None,
                    who=who,
                ),
            )
        elif action == "rollback":
            entry = await self._db(partial(self.history.get, app, int(body["id"])))
            worker.request_sync(app, await self._rollback_of(app, entry, who))
        log.info("app %s: %s requested on another replica, started here", app, action)

    async def _trim_loop(self) -> None:
        """Hand freed heap memory back to the system every ``trim_memory_s`` (``hub.memory``:
        after a fleet-wide rollout RSS otherwise stays at the burst's peak)."""
        trim = malloc_trim()
        if trim is None or self.options.trim_memory_s <= 0:
            return
        while True:
            await anyio.sleep(self.options.trim_memory_s)
            await anyio.to_thread.run_sync(trim)

    async def _resync_loop(self) -> None:
        while True:
            await anyio.sleep(jittered(self.options.resync_s, self.options.jitter))
            for worker in self.workers.values():
                worker.wake(refresh_all=True)


@dataclass(frozen=True, kw_only=True)
class CascadeOutcome:
    """What ``hub cluster rm --cascade`` achieved on the cluster, checked by listing it."""

    by: str  # who deleted: "the running hub" or "this command"
    apps: tuple[str, ...]  # the Applications of the cluster
    kept: tuple[str, ...] = ()  # resources left on purpose (Delete=false)
    remaining: tuple[str, ...] = ()  # what is still there although it should not be

    @property
    def done(self) -> bool:
        return not self.remaining


def fence_cluster(home: Path, cluster: str, why: str) -> None:
    """Mark the cluster as being removed (``FENCE_ANNOTATION``). A running hub sees it
    within ``registry_poll_s`` and its worker for the cluster stops syncing for good
    (``ClusterWorker.fence``); a hub started later fences the worker before it runs."""
    with open_store(home) as store, store.cluster_transaction() as txn:
        stored = txn.get_cluster(cluster)
        if stored is None:
            raise ClusterNotFound(cluster)
        if FENCE_ANNOTATION in stored.record.annotations:
            return
        annotations = {**stored.record.annotations, FENCE_ANNOTATION: why}
        txn.put_cluster(replace(stored, record=replace(stored.record, annotations=annotations)))


def _leftovers(kube: KubeClient, records: Sequence[AppRecord]) -> tuple[list[str], list[str]]:
    """(kept, remaining): what the cluster still holds of ``records``, listed afresh."""
    options = {r.name: r.application().sync_policy for r in records}
    kept: list[str] = []
    remaining: list[str] = []
    kinds = {gk for r in records for gk in synced_kinds(r)}
    for app, objs in sorted(list_tracked(kube, list(options), kinds).items()):
        for obj in objs:
            key = f"{app}: {ResourceKey.of(obj)}"
            if effective_sync_options(obj, options[app].sync_options).has("Delete", "false"):
                kept.append(f"{key} (Delete=false)")
            elif is_delete_hook(obj, HookType.POST_DELETE):
                kept.append(f"{key} (PostDelete hook kept by its delete policy)")
            elif (obj.get("metadata") or {}).get("deletionTimestamp"):
                remaining.append(f"{key}: still being deleted")
            else:
                remaining.append(f"{key}: still on the cluster")
    return kept, remaining


def delete_cluster_resources(
    home: Path,
    cluster: str,
    *,
    timeout_s: float = 300.0,
    poll_s: float = 0.5,
    hold: ExitStack | None = None,
) -> CascadeOutcome:
    """``hub cluster rm NAME --cascade``, before the cluster is removed.

    1. Fence the cluster (``fence_cluster``) and mark every Application of it for
       deletion, so that nothing syncs it again: a running hub cancels its operations in
       flight and starts none, and its ApplicationSet controller keeps the records.
    2. When a hub runs (``find_running_hub``), its worker deletes (after its own syncs
       have stopped: deleting beside a sync in flight is what re-applied objects before),
       and this waits up to ``timeout_s`` for every record to go. Else this deletes each
       Application's resources itself, pass after pass until a pass finds nothing.
    3. Either way the cluster is then listed afresh: the outcome says what is left.

    On a store shared by replicas (``_replicas_delete``), "a hub runs" means a replica
    holds the cluster's lease; when none does, this command takes that lease and keeps it
    until ``hold`` closes (the caller closes it after removing the cluster), so that no
    replica starts a worker on the cluster meanwhile.

    The records stay (marked deleting) for the removal of the cluster to prune."""
    why = f"hub cluster rm --cascade at {datetime.now(UTC).isoformat(timespec='seconds')}"
    fence_cluster(home, cluster, why)
    local = ExitStack()
    if hold is None:
        hold = local
    # Closed after the lease this may take is released (an ExitStack unwinds in reverse).
    parts = hold.enter_context(open_services(home))
    registry, store, apps = parts.registry, parts.store, parts.apps
    try:
        records = apps.list_apps(cluster=cluster)
        with apps.transaction() as txn:
            for rec in records:
                txn.mark_deleting(rec.name, f"cluster {cluster} removed with --cascade")
        names = tuple(r.name for r in records)
        errors: list[str] = []
        by = "this command"
        try:
            kube = KubeClient(connect(registry, cluster))
            waited = None
            shared = is_shared(store)
            if shared:
                by, waited = _replicas_delete(store, apps, cluster, timeout_s, poll_s, hold)
            elif find_running_hub(home) is not None:
                by = "the running hub"
                waited = _wait_for_hub(
                    apps,
                    cluster,
                    timeout_s,
                    poll_s,
                    alive=lambda: find_running_hub(home) is not None,
                    who="the running hub",
                    gone="the hub stopped answering",
                )
            if waited is None:  # no hub, or it went away while we waited
                left = {r.name for r in apps.list_apps(cluster=cluster, deleting=True)}
                if not shared:  # replicas: _replicas_delete said who
                    by = (
                        "this command"
                        if by == "this command"
                        else "the running hub, then this command"
                    )
                errors = _delete_passes(
                    kube,
                    [r for r in records if r.name in left],
                    history=parts.history,
                    rules=load_health_rules(home),
                )
            else:
                errors = waited
            kept, remaining = _leftovers(kube, records)
        except (ClusterError, SyncError) as exc:
            kept, remaining = [], [f"cannot check what is left on {cluster}: {exc}"]
        if remaining and errors:
            remaining += errors
        return CascadeOutcome(by=by, apps=names, kept=tuple(kept), remaining=tuple(remaining))
    finally:
        local.close()  # a caller's ``hold`` is closed by the caller, after removing the cluster


def _replicas_delete(
    store: Store, apps: AppStore, cluster: str, timeout_s: float, poll_s: float, hold: ExitStack
) -> tuple[str, list[str] | None]:
    """Replicas: who deletes, and what ``_wait_for_hub`` gave (None: this command deletes).

    The replica holding the cluster's lease deletes, as a running hub would (its worker
    saw the fence), and this waits; if it dies the next owner goes on, so this waits while
    the lease is held or any replica is live. When no replica holds the lease, this command
    takes it (``hold_lease``, kept in ``hold``) and deletes itself: no replica acquires the
    cluster, so no worker deletes beside it."""
    lease, waited_on = cluster_lease(cluster), ""
    holder = f"hub-cli-{socket.gethostname()}-{os.getpid()}"
    for _ in range(3):  # a replica may take the lease between the look and the grab
        owner, _live = lease_holder(store, lease)
        if owner is not None:
            waited_on = waited_on or f"replica {owner}"

            def alive() -> bool:
                held, live = lease_holder(store, lease)
                return held is not None or live

            waited = _wait_for_hub(
                apps,
                cluster,
                timeout_s,
                poll_s,
                alive=alive,
                who=f"replica {owner}",
                gone=f"no replica holds the lease of {cluster} or is live any more",
            )
            if waited is not None:
                return f"replica {owner}, the owner of its lease", waited
        if hold.enter_context(hold_lease(store, lease, holder)) is not None:
            log.info("cluster %s: this command holds its lease while it deletes", cluster)
            mine = "this command, holding the cluster's lease"
            return (f"{waited_on}, then {mine}" if waited_on else mine), None
    raise HubError(
        f"cluster {cluster}: its lease keeps moving between replicas; nothing deleted by this "
        "command, run it again"
    )


def _wait_for_hub(
    apps: AppStore,
    cluster: str,
    timeout_s: float,
    poll_s: float,
    *,
    alive: Callable[[], bool],
    who: str,
    gone: str,
) -> list[str] | None:
    """Wait until ``who`` (the running hub, or the replica owning the cluster) has
    deleted every Application of ``cluster`` marked for deletion; the deletion errors it
    reported for those left when time ran out, or None when ``alive`` says it stopped
    meanwhile (the caller then deletes itself)."""
    deadline = time.monotonic() + timeout_s
    next_probe = time.monotonic() + HUB_PROBE_S
    while True:
        left = apps.list_apps(cluster=cluster, deleting=True)
        if not left:
            return []
        now = time.monotonic()
        if now >= deadline:
            return [
                next(
                    (c.message for c in rec.conditions if c.type == DELETION_ERROR),
                    f"{rec.name}: not deleted by {who} within {timeout_s:g}s",
                )
                for rec in left
            ]
        if now >= next_probe:
            if not alive():
                log.warning("%s; deleting the rest here", gone)
                return None
            next_probe = now + HUB_PROBE_S
        time.sleep(poll_s)


def _delete_passes(
    kube: KubeClient,
    records: Sequence[AppRecord],
    *,
    history: SyncHistory,
    rules: HealthRules,
    passes: int = 3,
) -> list[str]:
    """Delete each Application's resources; again while a pass still found something to
    delete (a hub that had not seen the fence yet may have applied again meanwhile). The
    PreDelete/PostDelete hooks come from each app's last successful sync (its history):
    without a hub there is no render to take them from."""
    problems: list[str] = []
    for number in range(passes):
        problems, deleted = [], 0
        for rec in records:
            try:
                # Only the first pass runs delete hooks: a later one only catches what a
                # hub applied again, after the hooks ran.
                manifests, revision = (
                    last_synced_manifests(history, rec.name) if number == 0 else ([], "")
                )
                outcome = delete_app_resources(
                    kube, rec, manifests=manifests, revision=revision, rules=rules
                )
                for line in outcome.hooks:
                    log.info("app %s: %s", rec.name, line)
            except (ClusterError, HubError) as exc:
                problems.append(f"{rec.name}: {exc}")
                continue
            deleted += len(outcome.deleted)
            problem = outcome.problem()
            if problem is not None:
                problems.append(problem)
        if not deleted or problems:
            break
    return problems
