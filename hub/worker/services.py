"""What the parts of a worker share: the hub's services (``WorkerServices``), an
Application's render (``Desired``), a sync asked for (``ManualSync``) and the condition
types the worker writes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Protocol

import anyio

from clusters.cache import key_of
from clusters.registry import Registry
from hub.apps import AppStore
from hub.leases import Fences
from hub.metrics import Metrics
from hub.repos import ResolvedRevisions
from hub.sync.diff import JqRunner, Verdicts
from hub.sync.engine import Rendered
from hub.sync.health import HealthRules
from hub.sync.history import SyncHistory, Trigger
from hub.sync.model import Application
from hub.sync.operation import InlineStore
from hub.sync.priority import WritesFirst
from hub.sync.projects import ClusterRef
from hub.sync.resources import NAMESPACE_KIND
from hub.worker.slots import FairSlots

COMPARISON_ERROR = "ComparisonError"
SYNC_ERROR = "SyncError"
DELETION_ERROR = "DeletionError"
UNSUPPORTED_OPTION = "UnsupportedOptionWarning"


class Revisions(Protocol):
    """The hub's resolved Git revisions (one fetch per repo per poll cycle)."""

    async def sha(self, repo_url: str, revision: str) -> str: ...


@dataclass(kw_only=True)
class WorkerServices:
    """What every worker shares with the hub."""

    registry: Registry
    apps: AppStore
    history: SyncHistory
    repos: ResolvedRevisions
    revisions: Revisions
    global_syncs: FairSlots
    global_calls: anyio.CapacityLimiter
    store_calls: anyio.CapacityLimiter
    cluster_syncs: int = 2
    cluster_calls: int = 4
    jq: JqRunner | None = None
    health_rules: HealthRules = field(default_factory=HealthRules.default)
    draining: Callable[[], bool] = lambda: False
    sync_timeout_s: float | None = 600.0
    metrics: Metrics | None = None
    # Called in the store thread inside each status write's transaction (notifications).
    on_status: Callable[[str], None] | None = None
    # Replicas (hub.leases): spoke writes only while this replica holds the cluster's lease.
    fences: Fences | None = None
    # The registered clusters as the hub last read them (None: not read yet, ask the
    # registry). Project scopes resolve destinations by name against them.
    fleet: Callable[[], Sequence[ClusterRef] | None] = lambda: None
    # SQLite: the store that runs a worker's store calls on its loop when no writer holds
    # the lock (``Store.call_inline``); None hands every call to a thread (PostgreSQL).
    inline_store: InlineStore | None = None
    # Syncs on their way to a write before refreshes and history records (``hub serve``).
    writes_first: WritesFirst | None = None


@dataclass(frozen=True, kw_only=True)
class Desired:
    """An Application rendered and validated once per (revision, generation): compared with
    the cache on every refresh and handed to the engine for every sync of that revision."""

    generation: int
    sha: str
    app: Application
    manifests: tuple[dict[str, Any], ...]
    rendered: Rendered | None = None  # what the engine needs (origins, sources' revisions)
    # The refreshes' last compare against these manifests, for the next one (and the
    # engine's compare of a sync, through ``for_sync``) to reuse
    verdicts: Verdicts = field(default_factory=Verdicts)

    @cached_property
    def kinds_read(self) -> tuple[tuple[str, str], ...]:
        """The kinds the comparison and a sync read from the watch cache, sorted: the
        manifests' kinds and, when the app names a namespace, Namespaces (a sync checks
        that its namespaces exist). Waiting for the Namespace list with the others spares
        every first sync a GET per namespace; Argo CD's cluster cache watches Namespaces
        from the start. Worked out once per render, not on every refresh."""
        keys = [key_of(m) for m in self.manifests]
        kinds = {key[:2] for key in keys}
        if self.app.destination.namespace or any(key[2] for key in keys):
            kinds.add(NAMESPACE_KIND)
        return tuple(sorted(kinds))

    def for_sync(self, request: ManualSync) -> Rendered | None:
        """The render a sync of ``request`` may reuse: none for a rollback (it brings its
        manifests) or for a sync to another revision (the engine renders that one)."""
        if self.rendered is None or request.manifests is not None:
            return None
        if request.revision not in (None, self.sha):
            return None
        return replace(self.rendered, verdicts=self.verdicts)


@dataclass(frozen=True, kw_only=True)
class ManualSync:
    prune: bool
    revision: str | None
    who: str
    manifests: tuple[Mapping[str, Any], ...] | None = None
    source: Mapping[str, Any] | None = None
    trigger: Trigger = Trigger.USER


def _now() -> datetime:
    return datetime.now(UTC)
