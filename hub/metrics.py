"""Prometheus metrics of the hub, in one registry owned by a ``Metrics`` object.

API (what the reconcilers, the Git cache and the HTTP API call; all thread-safe)::

    m = Metrics(app_counts=store_app_counts(store), connections=connection_states(handle))
    m.observe_sync(cluster, app, result, seconds)       # result: Succeeded|Failed|Error
    m.observe_reconcile(cluster, seconds)               # one compare/refresh pass of an app
    m.observe_git_fetch(repo_url, seconds, ok=True)     # ok=False also counts an error
    m.count_cluster_request(cluster, verb, code)        # a spoke Kubernetes API request
    m.set_cluster_connection(cluster, state)            # when no ``connections`` source
    m.forget_cluster(cluster)                           # cluster left: drop its series
    m.count_http_request(route, method, status)         # the hub's own HTTP API (hub.api)
    m.count_webhook(provider, result)                   # POST /api/webhook/git outcomes
    m.render() -> bytes; m.content_type                 # the /metrics body

Families (names are stable; documented in docs/status.md):

- ``hub_applications{cluster,sync_status,health_status}`` gauge: Applications per cluster
  by sync and health status, read from the store at scrape time (so it can never drift
  from the store the CLI and the API read). Applications without a resolved cluster are
  counted under ``cluster=""``.
- ``hub_sync_operations_total{cluster,result}`` counter; ``hub_sync_duration_seconds
  {cluster}`` and ``hub_reconcile_duration_seconds{cluster}`` histograms. No ``app`` label:
  1,000 clusters x 10 apps x 12 buckets would be 120,000 series; per-app detail lives in
  the sync history.
- ``hub_git_fetch_duration_seconds{repo}`` histogram and ``hub_git_fetch_errors_total
  {repo}`` counter; credentials in a URL's user-info are removed from the label.
- ``hub_cluster_connection_state{cluster,state}`` gauge: 1 for the current state, 0 for
  the others (the usual enum encoding, so ``== 1`` selects).
- ``hub_cluster_api_requests_total{cluster,verb,code}`` counter: requests to spokes.
- ``hub_sync_slots{state}`` gauge: the hub-wide sync slots (``limit``, ``held``,
  ``waiting``), read from the running hub at scrape time.
- ``hub_http_requests_total{route,method,status}`` and ``hub_webhook_events_total
  {provider,result}`` counters: the hub's own API.
- Replicas on a shared database (docs/replicas.md), read from the lease table at scrape
  time, so every replica reports the same fleet-wide view:
  ``hub_replica_clusters{replica}`` (cluster leases held), ``hub_replica_leader{replica}``
  (1 for the leader), ``hub_cluster_lease_age_seconds{cluster,replica}`` (since the last
  renewal; near the heartbeat when healthy) and ``hub_replicas`` (live replicas).

No module-level state: each ``Metrics`` has its own ``CollectorRegistry``, so tests and
several hubs in one process never share series.
"""

from __future__ import annotations

import contextlib
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from hub.handle import HubHandle
    from hub.store import Store

CONNECTION_STATES = ("Connected", "Unreachable", "Unauthorized", "Unknown")
SYNC_RESULTS = ("Succeeded", "Failed", "Error")

RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SYNC_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
GIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass(frozen=True, kw_only=True, slots=True)
class AppCount:
    """How many Applications of one cluster have one (sync, health) pair."""

    cluster: str
    sync_status: str
    health_status: str
    count: int


AppCountSource = Callable[[], Iterable[AppCount]]


@dataclass(frozen=True, kw_only=True, slots=True)
class ShardView:
    """The replicas and leases at one instant (database clock)."""

    replicas: tuple[str, ...]  # live replica ids
    leader: str | None
    clusters: Mapping[str, tuple[str, float]]  # cluster -> (owner, seconds since renewal)


ShardSource = Callable[[], ShardView]
#: The hub-wide sync slots: {"limit": n, "held": n, "waiting": n} (``FairSlots.use``).
SlotSource = Callable[[], Mapping[str, int]]
ConnectionSource = Callable[[], Mapping[str, str]]


class _Labelled(Protocol):
    def remove(self, *labelvalues: str) -> None: ...


def repo_label(url: str) -> str:
    """A repository URL fit for a label: user-info (tokens) and query strings removed."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable>"
    if not parts.scheme or not parts.netloc:
        # scp-like "git@host:org/repo.git" or a local path: only the user can be a secret,
        # and for ssh it is a login name, not a credential; keep the path as is.
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def store_app_counts(store: Store) -> AppCountSource:
    """A source that counts Applications in ``store`` with one ``GROUP BY`` per scrape."""

    def counts() -> list[AppCount]:
        with store.read() as db:
            rows = db.execute(
                "SELECT COALESCE(cluster, ''), sync_status, health_status, COUNT(*) "
                "FROM applications GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
            ).fetchall()
        return [
            AppCount(cluster=c, sync_status=s, health_status=h, count=int(n)) for c, s, h, n in rows
        ]

    return counts


def store_shards(store: Store) -> ShardSource:
    """A source reading the replicas and leases (``hub.leases``) at scrape time."""

    def view() -> ShardView:
        from hub.leases import shard_view

        return shard_view(store)

    return view


def connection_states(handle: HubHandle) -> ConnectionSource:
    """A source reading connection states from a running hub at scrape time."""
    return lambda: {name: c.state for name, c in handle.cluster_connections().items()}


class _ScrapeTimeCollector(Collector):
    """Families computed when Prometheus scrapes, from the sources the hub provides."""

    def __init__(self, owner: Metrics) -> None:
        self._owner = owner

    def collect(self) -> Iterator[Metric]:
        apps = GaugeMetricFamily(
            "hub_applications",
            "Applications per cluster by sync and health status (from the store).",
            labels=["cluster", "sync_status", "health_status"],
        )
        source = self._owner.app_counts
        if source is not None:
            for c in source():
                apps.add_metric([c.cluster, c.sync_status, c.health_status], c.count)
        yield apps
        states = GaugeMetricFamily(
            "hub_cluster_connection_state",
            "Connection state of each cluster's worker: 1 for the current state, else 0.",
            labels=["cluster", "state"],
        )
        for cluster, current in sorted(self._owner.connection_snapshot().items()):
            for state in CONNECTION_STATES:
                states.add_metric([cluster, state], 1.0 if state == current else 0.0)
        yield states
        if self._owner.sync_slots is not None:
            slots = GaugeMetricFamily(
                "hub_sync_slots",
                "The hub-wide sync slots (global_syncs): the limit, the slots syncs and "
                "deletions hold, and how many wait for one.",
                labels=["state"],
            )
            for state, value in sorted(self._owner.sync_slots().items()):
                slots.add_metric([state], value)
            yield slots
        shards = self._owner.shards
        if shards is None:
            return
        view = shards()
        live = GaugeMetricFamily("hub_replicas", "Live hub replicas on the shared database.")
        live.add_metric([], len(view.replicas))
        yield live
        held = GaugeMetricFamily(
            "hub_replica_clusters", "Cluster leases each replica holds.", labels=["replica"]
        )
        per: dict[str, int] = dict.fromkeys(view.replicas, 0)
        for owner, _age in view.clusters.values():
            per[owner] = per.get(owner, 0) + 1
        for replica, count in sorted(per.items()):
            held.add_metric([replica], count)
        yield held
        leader = GaugeMetricFamily(
            "hub_replica_leader", "1 for the replica holding the leader lease.", labels=["replica"]
        )
        for replica in sorted(set(view.replicas) | ({view.leader} if view.leader else set())):
            leader.add_metric([replica], 1.0 if replica == view.leader else 0.0)
        yield leader
        ages = GaugeMetricFamily(
            "hub_cluster_lease_age_seconds",
            "Seconds since each cluster lease was last renewed by its owner.",
            labels=["cluster", "replica"],
        )
        for cluster, (owner, age) in sorted(view.clusters.items()):
            ages.add_metric([cluster, owner], age)
        yield ages

    def describe(self) -> Iterator[Metric]:
        # Registration must not call the sources (they may need a store not yet open).
        return iter(())


class Metrics:
    """The hub's metric families and the small functions that update them."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self,
        *,
        app_counts: AppCountSource | None = None,
        connections: ConnectionSource | None = None,
        shards: ShardSource | None = None,
        sync_slots: SlotSource | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.app_counts = app_counts
        self.connections = connections
        self.shards = shards
        self.sync_slots = sync_slots
        self._lock = threading.Lock()
        self._pushed_states: dict[str, str] = {}
        # (metric, label values) of each cluster, so forget_cluster can drop every series.
        self._series: dict[str, set[tuple[_Labelled, tuple[str, ...]]]] = {}
        r = self.registry
        self._sync_total = Counter(
            "hub_sync_operations",
            "Finished sync operations by result.",
            ["cluster", "result"],
            registry=r,
        )
        self._sync_seconds = Histogram(
            "hub_sync_duration_seconds",
            "Duration of sync operations (all phases and waves).",
            ["cluster"],
            buckets=SYNC_BUCKETS,
            registry=r,
        )
        self._reconcile_seconds = Histogram(
            "hub_reconcile_duration_seconds",
            "Duration of one reconcile (render, compare, status) of an Application.",
            ["cluster"],
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self._git_seconds = Histogram(
            "hub_git_fetch_duration_seconds",
            "Duration of Git fetches per repository.",
            ["repo"],
            buckets=GIT_BUCKETS,
            registry=r,
        )
        self._git_errors = Counter(
            "hub_git_fetch_errors", "Failed Git fetches per repository.", ["repo"], registry=r
        )
        self._cluster_requests = Counter(
            "hub_cluster_api_requests",
            "Requests the hub made to each cluster's Kubernetes API.",
            ["cluster", "verb", "code"],
            registry=r,
        )
        self._worker_crashes = Counter(
            "hub_worker_crashes",
            "Times a cluster's worker stopped on an unexpected error (and was restarted).",
            ["cluster"],
            registry=r,
        )
        self._http_requests = Counter(
            "hub_http_requests",
            "Requests to the hub's HTTP API by route pattern.",
            ["route", "method", "status"],
            registry=r,
        )
        self._webhooks = Counter(
            "hub_webhook_events",
            "Git push webhooks received, by provider and result.",
            ["provider", "result"],
            registry=r,
        )
        self._appset_passes = Counter(
            "hub_appset_reconciles",
            "Git cycles by what the ApplicationSet controller did: a full generate-and-compare "
            "pass, or skipped because nothing it reads had changed.",
            ["result"],
            registry=r,
        )
        r.register(_ScrapeTimeCollector(self))

    # -- reconcilers

    def observe_sync(self, cluster: str, app: str, result: str, seconds: float) -> None:
        """A sync operation of ``app`` on ``cluster`` finished with ``result``."""
        del app  # accepted for the call sites' clarity; not a label (see module docstring)
        self._sync_total.labels(cluster, result).inc()
        self._sync_seconds.labels(cluster).observe(max(0.0, seconds))
        self._remember(cluster, (self._sync_total, (cluster, result)))
        self._remember(cluster, (self._sync_seconds, (cluster,)))

    def observe_reconcile(self, cluster: str, seconds: float) -> None:
        self._reconcile_seconds.labels(cluster).observe(max(0.0, seconds))
        self._remember(cluster, (self._reconcile_seconds, (cluster,)))

    def count_cluster_request(self, cluster: str, verb: str, code: int | str) -> None:
        """One request to a spoke; ``code`` is the HTTP status, or e.g. ``"error"``."""
        labels = (cluster, verb.upper(), str(code))
        self._cluster_requests.labels(*labels).inc()
        self._remember(cluster, (self._cluster_requests, labels))

    def count_worker_crash(self, cluster: str) -> None:
        self._worker_crashes.labels(cluster).inc()
        self._remember(cluster, (self._worker_crashes, (cluster,)))

    def set_cluster_connection(self, cluster: str, state: str) -> None:
        """Record a worker's connection state (used when no ``connections`` source is set)."""
        with self._lock:
            self._pushed_states[cluster] = state

    def forget_cluster(self, cluster: str) -> None:
        """Drop every series of a cluster that left the fleet."""
        with self._lock:
            series = self._series.pop(cluster, set())
            self._pushed_states.pop(cluster, None)
        for metric, labels in series:
            with contextlib.suppress(KeyError):  # already gone: nothing to drop
                metric.remove(*labels)

    def connection_snapshot(self) -> dict[str, str]:
        if self.connections is not None:
            return dict(self.connections())
        with self._lock:
            return dict(self._pushed_states)

    # -- Git

    def count_appset_reconcile(self, result: str) -> None:
        """One Git cycle's ApplicationSet pass: ``full`` or ``skipped``."""
        self._appset_passes.labels(result).inc()

    def observe_git_fetch(self, repo: str, seconds: float, *, ok: bool = True) -> None:
        label = repo_label(repo)
        self._git_seconds.labels(label).observe(max(0.0, seconds))
        if not ok:
            self._git_errors.labels(label).inc()

    # -- the HTTP API

    def count_http_request(self, route: str, method: str, status: int) -> None:
        self._http_requests.labels(route, method.upper(), str(status)).inc()

    def count_webhook(self, provider: str, result: str) -> None:
        self._webhooks.labels(provider, result).inc()

    # -- exposition

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)

    def _remember(self, cluster: str, series: tuple[_Labelled, tuple[str, ...]]) -> None:
        with self._lock:
            self._series.setdefault(cluster, set()).add(series)
