"""ClusterWorker: keeps every Application of one cluster synced (one worker per cluster).

A worker owns its own task group (started by the hub with ``tg.start()``, cancelled when
the cluster leaves the registry) and:

- connects through ``clusters.connect`` (the one client factory) and keeps a watch-based
  ``clusters.cache.LiveCache`` of the kinds its Applications render to, so comparing an
  Application with the cluster reads memory, not the API (no per-Application GET/LIST in
  steady state);
- refreshes an Application when the cache reports a change to one of its objects, when the
  hub sees a new Git revision or a changed Application row, and on the periodic resync;
- runs automated syncs by Argo CD's rules (``decide_auto_sync``: one attempt per revision,
  self-heal with its backoff, prune-only diffs skipped without prune) through the sync
  engine, awaited on the worker's event loop (no thread per sync) under a per-cluster and
  a global in-flight limit (``cluster_syncs``, ``global_syncs``), the global slots shared
  out between clusters so slow clusters cannot hold them all (``FairSlots``);
- deletes the resources of Applications marked for cascade deletion, then the record;
- when the cluster does not answer (or refuses us), marks its Applications Unknown with
  the reason and backs off; nothing it does waits on another cluster. It recovers on its
  own when the cache's watches succeed again.

Every request to the cluster — the cache's lists and watches, the syncs' writes, dry runs
and reads, the deletions — awaits ``AsyncKube`` on the worker's event loop (one connection
pool per cluster, no thread per watch, call or sync). The blocking work left (credentials,
Git, rendering, comparisons, SQLite) runs through ``anyio.to_thread.run_sync`` under the
hub's limiters, so the hub's thread count does not grow with the fleet. Each request has a
deadline (the client's per-call timeout, ``fail_after`` around connection set-up).

Where each part lives:

- ``hub.worker.worker``: ``ClusterWorker`` itself, its control from the hub and its loop;
- ``hub.worker.state``: the state the parts share and the helpers they all use;
- ``hub.worker.connection``: connect, probe, the watch cache and the connection state;
- ``hub.worker.refresher``: revision, render, comparison, the automated-sync decision and
  the status writes of a refresh;
- ``hub.worker.operations``: the operation runner (``hub serve`` and ``--once``);
- ``hub.worker.deleter``: cascade deletion of an Application's resources;
- ``hub.worker.decisions``: the pure decisions (automated sync, holds, recorded shapes);
- ``hub.worker.services``: what the parts share with the hub, and the shared types;
- ``hub.worker.slots``: the hub-wide sync slots, shared out between clusters.

This package re-exports the names its callers use, so ``from hub.worker import X`` reads
as it did when the worker was one module.
"""

from hub.worker.connection import CONNECT_TIMEOUT_S, PROBE_S, PROBE_TIMEOUT_S
from hub.worker.decisions import (
    ROLLOUT_WAITING,
    AutoSyncDecision,
    LastOperation,
    decide_auto_sync,
    hold_conditions,
    last_operation_of,
    once_conditions,
    operation_state,
    project_windows_of,
    prune_confirm_condition,
    rollout_verdict_of,
    window_target,
    window_verdict_of,
)
from hub.worker.deleter import (
    DELETE_WAIT_S,
    DeletionOutcome,
    async_delete_app_resources,
    async_list_tracked,
    async_release_hook_finalizers,
    delete_app_resources,
    last_synced_manifests,
    list_tracked,
    release_hook_finalizers,
    synced_kinds,
)
from hub.worker.operations import PROGRESS_SETTLE_S, SettledProgress
from hub.worker.services import (
    COMPARISON_ERROR,
    DELETION_ERROR,
    SYNC_ERROR,
    UNSUPPORTED_OPTION,
    Desired,
    ManualSync,
    Revisions,
    WorkerServices,
)
from hub.worker.slots import FairSlots
from hub.worker.worker import FENCE_ANNOTATION, ClusterWorker

__all__ = [
    "COMPARISON_ERROR",
    "CONNECT_TIMEOUT_S",
    "DELETE_WAIT_S",
    "DELETION_ERROR",
    "FENCE_ANNOTATION",
    "PROBE_S",
    "PROBE_TIMEOUT_S",
    "PROGRESS_SETTLE_S",
    "ROLLOUT_WAITING",
    "SYNC_ERROR",
    "UNSUPPORTED_OPTION",
    "AutoSyncDecision",
    "ClusterWorker",
    "DeletionOutcome",
    "Desired",
    "FairSlots",
    "LastOperation",
    "ManualSync",
    "Revisions",
    "SettledProgress",
    "WorkerServices",
    "async_delete_app_resources",
    "async_list_tracked",
    "async_release_hook_finalizers",
    "decide_auto_sync",
    "delete_app_resources",
    "hold_conditions",
    "last_operation_of",
    "last_synced_manifests",
    "list_tracked",
    "once_conditions",
    "operation_state",
    "project_windows_of",
    "prune_confirm_condition",
    "release_hook_finalizers",
    "rollout_verdict_of",
    "synced_kinds",
    "window_target",
    "window_verdict_of",
]
