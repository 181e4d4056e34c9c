"""What the JSON API and ``hub status`` show, read from the store (never written).

``FleetView`` is shared by the HTTP API (inside ``hub serve``) and by the CLI when no hub
runs, so both produce the same documents from the same rows. Every method is a short
read; none decrypts anything: cluster credentials and the sealed manifests of the sync
history stay sealed.

Resources of an Application (``resources``) come from the newest of: the resources the
reconciler recorded in the app's ``operationState`` (``resources`` or
``syncResult.resources``), the operation in flight, the newest history entry. Each is
``{group, kind, namespace, name, wave, sync, health, message, hook}`` where ``sync`` is
the resource's sync status, or the result of the operation that touched it (``Synced``,
``SyncFailed``, ``Pruned``...); ``resourcesFrom`` says which.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from clusters.registry import ClusterRecord
from hub.apps import AppRecord, AppSetRecord, AppStore
from hub.errors import HubError
from hub.rollups import (
    AppState,
    Connection,
    Counts,
    FleetStatus,
    LastSync,
    Problem,
    build_status,
)
from hub.rollups import connection_from_check as _from_check
from hub.store import Store
from hub.sync.history import HistoryEntry, SyncHistory


class NotFound(HubError):
    """A named object does not exist (HTTP 404, CLI exit 1)."""


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def app_state(record: AppRecord) -> AppState:
    return AppState(
        name=record.name,
        appset=record.appset,
        cluster=record.cluster,
        sync=record.sync_status,
        health=record.health_status,
    )


def history_json(entry: HistoryEntry) -> dict[str, Any]:
    """One history entry without its manifests (those stay sealed)."""
    return {
        "id": entry.id,
        "operationId": entry.operation_id,
        "cluster": entry.cluster,
        "revision": entry.revision,
        "source": dict(entry.source),
        "initiatedBy": entry.initiated_by,
        "trigger": entry.trigger.value,
        "startedAt": _iso(entry.started_at),
        "finishedAt": _iso(entry.finished_at),
        "phase": entry.phase.value,
        "message": entry.message,
        "resources": [_resource(r.to_json()) for r in entry.resources],
        "canRollback": entry.has_manifests,
    }


def _resource(raw: Mapping[str, Any]) -> dict[str, Any]:
    health = raw.get("health")
    if isinstance(health, Mapping):  # Argo's {"status": ..., "message": ...}
        message = str(health.get("message") or raw.get("message") or "")
        health = health.get("status")
    else:
        message = str(raw.get("message") or "")
    return {
        "group": str(raw.get("group") or ""),
        "kind": str(raw.get("kind") or ""),
        "namespace": str(raw.get("namespace") or ""),
        "name": str(raw.get("name") or ""),
        "wave": int(raw.get("wave") or raw.get("syncWave") or 0),
        "sync": str(raw.get("sync") or raw.get("status") or ""),
        "health": None if health is None else str(health),
        "message": message,
        "hook": bool(raw.get("hook") or raw.get("hookType")),
        "phase": str(raw.get("phase") or raw.get("syncPhase") or ""),  # PreSync, Sync...
    }


def _recorded_resources(op_state: Mapping[str, Any] | None) -> list[Any] | None:
    if not op_state:
        return None
    direct = op_state.get("resources")
    if isinstance(direct, list):
        return direct
    result = op_state.get("syncResult")
    if isinstance(result, Mapping) and isinstance(result.get("resources"), list):
        return list(result["resources"])
    return None


def appset_project(manifest: Mapping[str, Any]) -> str:
    """The project an ApplicationSet's Applications go to (its template's spec.project)."""
    spec = manifest.get("spec")
    template = spec.get("template") if isinstance(spec, Mapping) else None
    tspec = template.get("spec") if isinstance(template, Mapping) else None
    project = tspec.get("project") if isinstance(tspec, Mapping) else None
    return project if isinstance(project, str) and project else "default"


def _all2(_a: str, _b: str) -> bool:
    return True


def _all1(_a: str) -> bool:
    return True


@dataclass(frozen=True, kw_only=True)
class Scope:
    """What a reader may see (RBAC ``get``): Applications and ApplicationSets by
    (project, name), clusters by name. ``EVERYTHING`` for the unrestricted views."""

    app: Callable[[str, str], bool] = _all2
    appset: Callable[[str, str], bool] = _all2
    cluster: Callable[[str], bool] = _all1


EVERYTHING = Scope()


@dataclass(frozen=True, kw_only=True)
class AppFilter:
    cluster: str | None = None
    appset: str | None = None
    sync: str | None = None
    health: str | None = None

    def keep(self, record: AppRecord) -> bool:
        return (self.sync is None or record.sync_status == self.sync) and (
            self.health is None or record.health_status == self.health
        )


class FleetView:
    """Read-only views over one store. Thread-safe as ``Store`` is (a connection a thread)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.apps = AppStore(store)
        # Listing history needs no key; the loader is only there for the type's sake and
        # refuses, so a read path can never decrypt manifests by accident.
        self.history = SyncHistory(store, _no_keys)

    # -- clusters

    def cluster_records(self) -> list[ClusterRecord]:
        return self.store.list_records()

    def connections(self, live: Mapping[str, Connection] | None) -> dict[str, Connection]:
        """``live`` from a running hub when given, else each cluster's last check."""
        records = self.cluster_records()
        if live is not None:
            return {r.name: live.get(r.name, Connection()) for r in records}
        return {r.name: _from_check(r) for r in records}

    def clusters(
        self, live: Mapping[str, Connection] | None, scope: Scope = EVERYTHING
    ) -> list[dict[str, Any]]:
        conns = self.connections(live)
        status = self.status(live=live, scope=scope)
        rows = {row.name: row for row in status.clusters}
        out = []
        for record in self.cluster_records():
            if record.name not in rows:
                continue
            doc = record.as_dict()  # the clear half only: no credential, no CA bundle
            row = rows[record.name]
            doc["connection"] = conns[record.name].to_json()
            doc["applications"] = row.counts.to_json()
            doc["lastSync"] = None if row.last_sync is None else row.last_sync.to_json()
            out.append(doc)
        return out

    def cluster(
        self, name: str, live: Mapping[str, Connection] | None, scope: Scope = EVERYTHING
    ) -> dict[str, Any]:
        for doc in self.clusters(live, scope):
            if doc["name"] == name:
                return doc
        raise NotFound(f"no cluster named {name!r}; `hub cluster list` shows the registered ones")

    # -- rollups

    def last_syncs(self) -> dict[str, LastSync]:
        """The newest finished sync per cluster (one query over the history table)."""
        with self.store.read() as db:
            rows = db.execute(
                "SELECT h.cluster, h.finished_at, h.revision, h.app, h.phase "
                "FROM sync_history h JOIN (SELECT cluster, MAX(finished_at) AS newest "
                "FROM sync_history GROUP BY cluster) n "
                "ON h.cluster = n.cluster AND h.finished_at = n.newest "
                "ORDER BY h.cluster, h.app"
            ).fetchall()
        out: dict[str, LastSync] = {}
        for cluster, finished, revision, app, phase in rows:
            out.setdefault(
                cluster,
                LastSync(
                    time=datetime.fromisoformat(finished), revision=revision, app=app, phase=phase
                ),
            )
        return out

    def app_states(self, scope: Scope = EVERYTHING) -> list[AppState]:
        """Just the columns a rollup needs: a status poll of 10,000 Applications must not
        parse 10,000 specs (AppStore.list_apps does; this is several times cheaper)."""
        with self.store.read() as db:
            rows = db.execute(
                "SELECT name, appset, cluster, sync_status, health_status, project "
                "FROM applications ORDER BY name"
            ).fetchall()
        return [
            AppState(name=n, appset=s, cluster=c, sync=sync, health=health)
            for n, s, c, sync, health, project in rows
            if scope is EVERYTHING or scope.app(project, n)
        ]

    def status(
        self,
        *,
        live: Mapping[str, Connection] | None,
        appset: str | None = None,
        cluster: str | None = None,
        scope: Scope = EVERYTHING,
    ) -> FleetStatus:
        apps = self.app_states(scope)
        # A cluster is shown to whoever may get it, or sees an Application on it.
        hosting = {a.cluster for a in apps}
        records = [r for r in self.cluster_records() if r.name in hosting or scope.cluster(r.name)]
        sets = [
            s for s in self.apps.list_appsets() if scope.appset(appset_project(s.manifest), s.name)
        ]
        return build_status(
            apps=apps,
            clusters=records,
            connections=self.connections(live),
            last_syncs=self.last_syncs(),
            appsets=[s.name for s in sets],
            appset=appset,
            cluster=cluster,
            problems=self.problems(sets, appset=appset),
        )

    def problems(self, sets: Sequence[AppSetRecord], *, appset: str | None = None) -> list[Problem]:
        """Sources whose newest revision is not applied and ``sets`` in error (with
        ``appset``: that set and its source only)."""
        wanted = {s.source for s in sets if s.name == appset} if appset is not None else None
        with self.store.read() as db:
            rows = db.execute(
                "SELECT name, last_error FROM sources WHERE last_error IS NOT NULL ORDER BY name"
            ).fetchall()
        out = [
            Problem(kind="source", name=name, message=error)
            for name, error in rows
            if wanted is None or name in wanted
        ]
        out += [
            Problem(kind="appset", name=s.name, message=s.last_error)
            for s in sets
            if s.last_error and (appset is None or s.name == appset)
        ]
        return out

    # -- ApplicationSets

    def appsets(self, scope: Scope = EVERYTHING) -> list[dict[str, Any]]:
        owned: dict[str, list[AppRecord]] = {}
        for a in self.apps.list_apps():
            if a.appset is not None and scope.app(a.project, a.name):
                owned.setdefault(a.appset, []).append(a)
        return [
            self._appset_doc(s.as_dict(), owned.get(s.name, []))
            for s in self.apps.list_appsets()
            if scope.appset(appset_project(s.manifest), s.name)
        ]

    def appset_record(self, name: str) -> AppSetRecord:
        record = self.apps.get_appset(name)
        if record is None:
            raise NotFound(
                f"no ApplicationSet named {name!r}; `hub appset list` shows the loaded ones"
            )
        return record

    def appset(self, name: str, scope: Scope = EVERYTHING) -> dict[str, Any]:
        record = self.appset_record(name)
        apps = [a for a in self.apps.list_apps(appset=name) if scope.app(a.project, a.name)]
        doc = self._appset_doc(record.as_dict(), apps)
        doc["rollout"] = self.apps.rollout_status(name)  # RollingSync sets (hub.rollout)
        return doc

    @staticmethod
    def _appset_doc(doc: dict[str, Any], apps: Sequence[AppRecord]) -> dict[str, Any]:
        doc["applications"] = [
            {
                "name": a.name,
                "cluster": a.cluster,
                "sync": a.sync_status,
                "health": a.health_status,
            }
            for a in apps
        ]
        doc["counts"] = Counts.of(app_state(a) for a in apps).to_json()
        return doc

    # -- Applications

    def app_list(self, flt: AppFilter, scope: Scope = EVERYTHING) -> list[dict[str, Any]]:
        return [
            a.as_dict()
            for a in self.apps.list_apps(cluster=flt.cluster, appset=flt.appset)
            if flt.keep(a) and scope.app(a.project, a.name)
        ]

    def record(self, name: str) -> AppRecord:
        record = self.apps.get(name)
        if record is None:
            raise NotFound(f"no Application named {name!r}; `hub app list` shows them")
        return record

    def resources(self, record: AppRecord) -> tuple[str, list[dict[str, Any]]]:
        recorded = _recorded_resources(record.operation_state)
        if recorded is not None:
            return "operationState", [_resource(r) for r in recorded if isinstance(r, Mapping)]
        op = self.history.in_flight(record.name)
        if op is not None and op.resources:
            return "operation", [_resource(r.to_json()) for r in op.resources]
        entries = self.history.entries(record.name)
        if entries:
            return "history", [_resource(r.to_json()) for r in entries[-1].resources]
        return "none", []

    def app(self, name: str) -> dict[str, Any]:
        record = self.record(name)
        doc = record.as_dict()
        origin, resources = self.resources(record)
        doc["resources"] = resources
        doc["resourcesFrom"] = origin
        op = self.history.in_flight(name)
        doc["operation"] = (
            None
            if op is None
            else {
                "operationId": op.operation_id,
                "phase": op.phase.value,
                "message": op.message,
                "startedAt": _iso(op.started_at),
                "revision": op.revision,
            }
        )
        return doc

    def app_history(self, name: str) -> list[dict[str, Any]]:
        self.record(name)
        return [history_json(e) for e in self.history.entries(name)]


def _no_keys() -> Any:
    raise HubError("reading views never decrypts sync history manifests")


def open_view(home: Path) -> FleetView:
    """A view over ``home``'s store (the caller closes ``view.store``)."""
    from hub.home import open_store

    return FleetView(open_store(home))
