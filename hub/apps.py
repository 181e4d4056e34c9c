"""Applications, ApplicationSets and AppProjects in the store: typed rows and queries.

The ApplicationSet controller (``hub.appsets``) writes the *desired* half of every row
(spec, labels, annotations, finalizers, destination, deletion state); the per-cluster
reconcilers write the *observed* half (sync and health status, SHAs, conditions,
operation state, ``reconciled_at``) with ``set_status``. Neither half overwrites the other,
and every change of the desired half bumps ``generation`` so a reconciler can tell that an
Application changed since it last looked.

Deletion: an Application removed from Git with the resources finalizer is marked
``deletion = 'deleting'``; the reconciler of its cluster deletes its resources through the
sync engine and then calls ``finish_deletion``. Without the finalizer the row is removed at
once and the workloads are left running.

Rollups (per cluster, per ApplicationSet, fleet totals) are single ``GROUP BY`` queries
over ``applications``; see ``rollup``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from hub.db import Connection, upsert
from hub.errors import HubError
from hub.store import Store
from hub.sync.history import OperationPhase
from hub.sync.model import Application, SyncError, declared_source_specs, parse_application

T = TypeVar("T")

log = logging.getLogger(__name__)

API_VERSION = "argoproj.io/v1alpha1"
#: Argo CD's cascade finalizers (the plain one is foreground; ``/background`` also exists).
RESOURCES_FINALIZER = "resources-finalizer.argocd.argoproj.io"

SYNC_STATUSES = ("Synced", "OutOfSync", "Unknown")
HEALTH_STATUSES = ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")
DELETING = "deleting"

RollupKey = Literal["cluster", "appset", "fleet"]

#: Operation phases an ``operation_state`` is written with while its sync is under way.
UNFINISHED_PHASES = frozenset(p.value for p in OperationPhase if not p.completed)
#: ``operation_state["interrupted"]`` of a sync whose hub stopped after writing its running
#: state and before its engine recorded anything (``Hub.record_interrupted``): it applied
#: nothing, so it is no attempt of its revision (automated sync tries it again) and no
#: failure of a rollout. A field, not the message, so the rule survives rewording.
BEFORE_START = "before-start"
#: What an operator reads in such a state (CLI, API, dashboard).
BEFORE_START_MESSAGE = (
    "interrupted before it started: the hub stopped before the sync recorded anything; "
    "nothing was applied"
)


def never_started(state: Mapping[str, Any], finished_at: datetime) -> dict[str, Any]:
    """A Running ``operation_state`` whose sync never started, rewritten as finished: Error,
    ``BEFORE_START``, its revision, trigger and start time kept."""
    return {
        **state,
        "phase": OperationPhase.ERROR.value,
        "message": BEFORE_START_MESSAGE,
        "interrupted": BEFORE_START,
        "finishedAt": finished_at.isoformat(),
    }


def started_nothing(state: Mapping[str, Any] | None) -> bool:
    """Whether a stored ``operation_state`` is one of a sync that never started
    (``BEFORE_START``)."""
    return state is not None and state.get("interrupted") == BEFORE_START


def now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def has_cascade_finalizer(finalizers: Iterable[str]) -> bool:
    """Argo CD deletes an app's resources first iff it has a resources finalizer."""
    return any(
        f == RESOURCES_FINALIZER or f.startswith(RESOURCES_FINALIZER + "/") for f in finalizers
    )


@dataclass(frozen=True, kw_only=True)
class Condition:
    """A status condition of an Application or ApplicationSet (Argo CD's shape)."""

    type: str
    message: str = ""
    status: str = "True"
    reason: str = ""
    last_transition_time: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "status": self.status, "message": self.message}
        if self.reason:
            out["reason"] = self.reason
        if self.last_transition_time is not None:
            out["lastTransitionTime"] = self.last_transition_time.isoformat().replace("+00:00", "Z")
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Condition:
        t = raw.get("lastTransitionTime")
        return cls(
            type=str(raw.get("type", "")),
            message=str(raw.get("message", "")),
            status=str(raw.get("status", "True")),
            reason=str(raw.get("reason", "")),
            last_transition_time=None
            if not t
            else datetime.fromisoformat(str(t).replace("Z", "+00:00")),
        )


def _conditions_json(conditions: Sequence[Condition]) -> str:
    return json.dumps([c.as_dict() for c in conditions])


def _conditions(text: str) -> tuple[Condition, ...]:
    return tuple(Condition.from_dict(c) for c in json.loads(text))


# ---------------------------------------------------------------- Applications


@dataclass(frozen=True, kw_only=True)
class StatusUpdate:
    """What a reconciler observed of one Application; fields left None keep their value."""

    name: str
    sync_status: str | None = None
    health_status: str | None = None
    desired_sha: str | None = None
    synced_sha: str | None = None
    conditions: tuple[Condition, ...] | None = None
    operation_state: Mapping[str, Any] | None = None

    def then(self, later: StatusUpdate) -> StatusUpdate:
        """This update followed by ``later`` (of the same app): its set fields win."""
        return StatusUpdate(
            name=self.name,
            sync_status=_later(self.sync_status, later.sync_status),
            health_status=_later(self.health_status, later.health_status),
            desired_sha=_later(self.desired_sha, later.desired_sha),
            synced_sha=_later(self.synced_sha, later.synced_sha),
            conditions=_later(self.conditions, later.conditions),
            operation_state=_later(self.operation_state, later.operation_state),
        )

    def assignments(self) -> tuple[list[str], list[Any]]:
        """The ``column = ?`` clauses and values of the fields set."""
        sets: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("sync_status", self.sync_status),
            ("health_status", self.health_status),
            ("desired_sha", self.desired_sha),
            ("synced_sha", self.synced_sha),
            (
                "conditions",
                None if self.conditions is None else _conditions_json(self.conditions),
            ),
            (
                "operation_state",
                None if self.operation_state is None else json.dumps(dict(self.operation_state)),
            ),
        ):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(value)
        return sets, args


def _later(first: T | None, then: T | None) -> T | None:
    return first if then is None else then


@dataclass(frozen=True, kw_only=True)
class DesiredApp:
    """The desired half of an Application row, as Git (through a set or a source) says."""

    name: str
    appset: str | None
    source: str | None
    file: str = ""
    cluster: str | None
    dest_server: str = ""
    dest_name: str = ""
    namespace: str = ""
    project: str = "default"
    spec: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    finalizers: tuple[str, ...] = ()
    desired_revision: str = "HEAD"

    @classmethod
    def from_manifest(
        cls,
        manifest: Mapping[str, Any],
        *,
        appset: str | None,
        source: str | None,
        file: str = "",
        cluster: str | None,
    ) -> DesiredApp:
        """From an Application manifest already validated by the caller."""
        meta = manifest.get("metadata") or {}
        spec = manifest.get("spec") or {}
        dest = spec.get("destination") or {}
        src = next(iter(declared_source_specs(spec)), {})
        return cls(
            name=str(meta["name"]),
            appset=appset,
            source=source,
            file=file,
            cluster=cluster,
            dest_server=str(dest.get("server") or ""),
            dest_name=str(dest.get("name") or ""),
            namespace=str(dest.get("namespace") or ""),
            project=str(spec.get("project") or "default"),
            spec=json.loads(json.dumps(spec)),
            labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
            annotations={str(k): str(v) for k, v in (meta.get("annotations") or {}).items()},
            finalizers=tuple(str(f) for f in meta.get("finalizers") or ()),
            desired_revision=str(src.get("targetRevision") or "HEAD"),
        )

    def same_desired(self, other: DesiredApp | AppRecord) -> bool:
        """Whether writing ``self`` over ``other`` would change what Git asks for."""
        return (
            json.dumps(self.spec, sort_keys=True) == json.dumps(other.spec, sort_keys=True)
            and dict(self.labels) == dict(other.labels)
            and dict(self.annotations) == dict(other.annotations)
            and tuple(self.finalizers) == tuple(other.finalizers)
            and self.appset == other.appset
            and self.cluster == other.cluster
        )


@dataclass(frozen=True, kw_only=True)
class AppRecord:
    """One Application row: the desired half and the observed half."""

    name: str
    appset: str | None
    source: str | None
    file: str
    cluster: str | None
    dest_server: str
    dest_name: str
    namespace: str
    project: str
    spec: Mapping[str, Any]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    finalizers: tuple[str, ...]
    generation: int
    desired_revision: str
    desired_sha: str | None
    synced_sha: str | None
    sync_status: str
    health_status: str
    conditions: tuple[Condition, ...]
    operation_state: Mapping[str, Any] | None
    created_at: datetime
    updated_at: datetime
    reconciled_at: datetime | None
    deletion: str | None
    deletion_reason: str | None
    deletion_requested_at: datetime | None
    # ``application()``'s memo: the parsed Application or the error parsing raised. Not an
    # init field, so ``dataclasses.replace`` (a changed record) starts without it.
    _parsed: Application | SyncError | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def deleting(self) -> bool:
        return self.deletion == DELETING

    def application(self) -> Application:
        """The row as a typed ``Application``, parsed once per record object: every caller
        of the same loaded record shares one parse. Errors name ``file`` (or the app when it
        has none); an invalid spec raises its ``SyncError`` again on every call without
        parsing again."""
        parsed = self._parsed
        if parsed is None:
            try:
                parsed = parse_application(self.manifest(), source_file=self.file or self.name)
            except SyncError as exc:
                parsed = exc
            # The record is frozen for its callers; the memo is its only late-set field.
            object.__setattr__(self, "_parsed", parsed)
        if isinstance(parsed, SyncError):
            # A fresh traceback each time, so repeated raises do not pile frames onto it.
            raise parsed.with_traceback(None)
        return parsed

    def manifest(self) -> dict[str, Any]:
        """The Application as a Kubernetes manifest (for the sync engine and ``-o yaml``)."""
        meta: dict[str, Any] = {"name": self.name, "namespace": "argocd"}
        if self.labels:
            meta["labels"] = dict(self.labels)
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        if self.finalizers:
            meta["finalizers"] = list(self.finalizers)
        return {
            "apiVersion": API_VERSION,
            "kind": "Application",
            "metadata": meta,
            "spec": json.loads(json.dumps(self.spec)),
        }

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (stable keys; CLI ``-o json`` and the HTTP API)."""
        return {
            "name": self.name,
            "appset": self.appset,
            "source": self.source,
            "file": self.file,
            "cluster": self.cluster,
            "destination": {
                "server": self.dest_server,
                "name": self.dest_name,
                "namespace": self.namespace,
            },
            "project": self.project,
            "generation": self.generation,
            "finalizers": list(self.finalizers),
            "desiredRevision": self.desired_revision,
            "desiredSha": self.desired_sha,
            "syncedSha": self.synced_sha,
            "sync": self.sync_status,
            "health": self.health_status,
            "conditions": [c.as_dict() for c in self.conditions],
            "operationState": None if self.operation_state is None else dict(self.operation_state),
            "reconciledAt": _iso(self.reconciled_at),
            "deletion": self.deletion,
            "deletionReason": self.deletion_reason,
        }


_APP_COLUMNS = (
    "name, appset, source, file, cluster, dest_server, dest_name, namespace, project, spec, "
    "labels, annotations, finalizers, generation, desired_revision, desired_sha, synced_sha, "
    "sync_status, health_status, conditions, operation_state, created_at, updated_at, "
    "reconciled_at, deletion, deletion_reason, deletion_requested_at"
)


def _app(row: tuple[Any, ...]) -> AppRecord:
    (name, appset, source, file, cluster, server, dname, ns, project, spec) = row[:10]
    (labels, annotations, finalizers, generation, rev, dsha, ssha, sync, health) = row[10:19]
    (conditions, op, created, updated, reconciled, deletion, reason, requested) = row[19:27]
    return AppRecord(
        name=name,
        appset=appset,
        source=source,
        file=file,
        cluster=cluster,
        dest_server=server,
        dest_name=dname,
        namespace=ns,
        project=project,
        spec=json.loads(spec),
        labels=json.loads(labels),
        annotations=json.loads(annotations),
        finalizers=tuple(json.loads(finalizers)),
        generation=generation,
        desired_revision=rev,
        desired_sha=dsha,
        synced_sha=ssha,
        sync_status=sync,
        health_status=health,
        conditions=_conditions(conditions),
        operation_state=None if op is None else json.loads(op),
        created_at=datetime.fromisoformat(created),
        updated_at=datetime.fromisoformat(updated),
        reconciled_at=_time(reconciled),
        deletion=deletion,
        deletion_reason=reason,
        deletion_requested_at=_time(requested),
    )


# ---------------------------------------------------------------- ApplicationSets, projects


@dataclass(frozen=True, kw_only=True)
class AppSetRecord:
    name: str
    source: str
    file: str
    manifest: Mapping[str, Any]
    sha: str
    conditions: tuple[Condition, ...]
    status: Mapping[str, Any]
    generated: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    reconciled_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "file": self.file,
            "sha": self.sha,
            "generated": self.generated,
            "lastError": self.last_error,
            "conditions": [c.as_dict() for c in self.conditions],
            "status": dict(self.status),
            "reconciledAt": _iso(self.reconciled_at),
        }


_APPSET_COLUMNS = (
    "name, source, file, manifest, sha, conditions, status, generated, last_error, "
    "created_at, updated_at, reconciled_at"
)


def _appset(row: tuple[Any, ...]) -> AppSetRecord:
    (name, source, file, manifest, sha, conditions, status, generated, error) = row[:9]
    created, updated, reconciled = row[9:12]
    return AppSetRecord(
        name=name,
        source=source,
        file=file,
        manifest=json.loads(manifest),
        sha=sha,
        conditions=_conditions(conditions),
        status=json.loads(status),
        generated=generated,
        last_error=error,
        created_at=datetime.fromisoformat(created),
        updated_at=datetime.fromisoformat(updated),
        reconciled_at=_time(reconciled),
    )


@dataclass(frozen=True, kw_only=True)
class ProjectRecord:
    name: str
    source: str
    file: str
    manifest: Mapping[str, Any]
    sha: str


# ---------------------------------------------------------------- rollups


@dataclass(frozen=True, kw_only=True)
class Rollup:
    """Counts of Applications for one group (a cluster, an ApplicationSet or the fleet)."""

    key: str | None
    total: int
    sync: Mapping[str, int]
    health: Mapping[str, int]
    deleting: int


def _app_filter(
    cluster: str | None,
    appset: str | None,
    source: str | None,
    deleting: bool | None,
    plain: bool,
) -> tuple[str, list[Any]]:
    """The WHERE clause (with its leading space, or empty) and arguments of ``list_apps``'
    filters."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("cluster", cluster), ("appset", appset), ("source", source)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if plain:
        where.append("appset IS NULL")
    if deleting is not None:
        where.append("deletion IS NOT NULL" if deleting else "deletion IS NULL")
    return (" WHERE " + " AND ".join(where) if where else ""), args


# ---------------------------------------------------------------- the store


class AppStore:
    """Desired-state tables of the hub's store. Thread-safe as far as ``Store`` is."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- Applications: reads

    def get(self, name: str) -> AppRecord | None:
        with self.store.read() as db:
            row = db.execute(
                f"SELECT {_APP_COLUMNS} FROM applications WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else _app(row)

    def list_apps(
        self,
        *,
        cluster: str | None = None,
        appset: str | None = None,
        source: str | None = None,
        deleting: bool | None = None,
        plain: bool = False,
    ) -> list[AppRecord]:
        """Applications sorted by name, filtered by every argument given.

        ``plain`` selects the Applications no ApplicationSet owns."""
        where, args = _app_filter(cluster, appset, source, deleting, plain)
        with self.store.read() as db:
            rows = db.execute(
                f"SELECT {_APP_COLUMNS} FROM applications{where} ORDER BY name", args
            ).fetchall()
        return [_app(r) for r in rows]

    def count_apps(
        self,
        *,
        cluster: str | None = None,
        appset: str | None = None,
        source: str | None = None,
        deleting: bool | None = None,
        plain: bool = False,
    ) -> int:
        """How many Applications ``list_apps`` with the same arguments would return, without
        reading or decoding them (a source of 10,000 is counted at every Git change)."""
        where, args = _app_filter(cluster, appset, source, deleting, plain)
        with self.store.read() as db:
            (count,) = db.execute(f"SELECT COUNT(*) FROM applications{where}", args).fetchone()
        return int(count)

    def list_specs(self) -> list[Mapping[str, Any]]:
        """Every Application's ``spec`` (no other column decoded: a fleet-wide scan of what
        the Applications use reads ten thousand of them)."""
        with self.store.read() as db:
            rows = db.execute("SELECT spec FROM applications").fetchall()
        return [json.loads(spec) for (spec,) in rows]

    def unfinished_operations(self, cluster: str | None = None) -> dict[str, Mapping[str, Any]]:
        """The ``operation_state`` of every Application (of ``cluster`` when given) whose
        phase is Running or Terminating, by name. Only two columns are read and decoded:
        run once per start or take-over, over the whole fleet or a cluster."""
        sql = "SELECT name, operation_state FROM applications WHERE operation_state IS NOT NULL"
        args: tuple[Any, ...] = ()
        if cluster is not None:
            sql += " AND cluster = ?"
            args = (cluster,)
        with self.store.read() as db:
            rows = db.execute(sql + " ORDER BY name", args).fetchall()
        found: dict[str, Mapping[str, Any]] = {}
        for name, text in rows:
            state = json.loads(text)
            if isinstance(state, dict) and state.get("phase") in UNFINISHED_PHASES:
                found[name] = state
        return found

    def owners(self) -> dict[str, str]:
        """Owner of every owned Application: ``appset/NAME`` or ``source/NAME`` (one query).

        Unowned rows (disowned when their set was deleted) are left out: a set may adopt them."""
        with self.store.read() as db:
            rows = db.execute(
                "SELECT name, appset, source FROM applications "
                "WHERE appset IS NOT NULL OR source IS NOT NULL"
            ).fetchall()
        return {
            name: f"appset/{appset}" if appset is not None else f"source/{source}"
            for name, appset, source in rows
        }

    def change_marks(self) -> dict[str | None, tuple[Any, ...]]:
        """A cheap fingerprint of each cluster's Applications (one ``GROUP BY`` query):
        count, generations, last update and deletions. A mark that moves means that
        cluster's Applications changed."""
        with self.store.read() as db:
            rows = db.execute(
                "SELECT cluster, COUNT(*), SUM(generation), MAX(updated_at), "
                "COUNT(deletion) FROM applications GROUP BY cluster"
            ).fetchall()
        return {row[0]: tuple(row[1:]) for row in rows}

    def desired_mark(self) -> tuple[Any, ...]:
        """A cheap fingerprint of what the ApplicationSet controller reads from these tables:
        the desired half of the Applications (one aggregate row: count, generations, last
        desired write, deletions, owners, spec sizes), the ApplicationSet rows and the
        AppProjects (few rows, read whole). The observed half, which every sync writes,
        and the set's own status and timestamps, which every pass writes, are left out."""
        with self.store.read() as db:
            apps = db.execute(
                "SELECT COUNT(*), SUM(generation), MAX(updated_at), COUNT(deletion), "
                "MAX(deletion_requested_at), COUNT(appset), COUNT(source), "
                "SUM(LENGTH(spec)), SUM(LENGTH(name)), SUM(LENGTH(finalizers)) "
                "FROM applications"
            ).fetchone()
            sets = db.execute(
                "SELECT name, source, file, sha, manifest FROM applicationsets ORDER BY name"
            ).fetchall()
            projects = db.execute(
                "SELECT name, source, file, sha, manifest FROM app_projects ORDER BY name"
            ).fetchall()
        return (tuple(apps), tuple(map(tuple, sets)), tuple(map(tuple, projects)))

    def rollup(self, by: RollupKey) -> list[Rollup]:
        """Counts by sync and health status per cluster, per ApplicationSet or for the fleet.

        One query: ``GROUP BY`` the key, sync status and health status."""
        key = {"cluster": "cluster", "appset": "appset", "fleet": "NULL"}[by]
        group = "" if by == "fleet" else f"{key}, "  # PostgreSQL refuses GROUP BY NULL
        sql = (
            f"SELECT {key}, sync_status, health_status, COUNT(*), "
            "COUNT(deletion) FROM applications "
            f"GROUP BY {group}sync_status, health_status"
        )
        with self.store.read() as db:
            rows = db.execute(sql).fetchall()
        groups: dict[str | None, dict[str, Any]] = {}
        for group, sync, health, count, deleting in rows:
            g = groups.setdefault(group, {"total": 0, "sync": {}, "health": {}, "deleting": 0})
            g["total"] += count
            g["sync"][sync] = g["sync"].get(sync, 0) + count
            g["health"][health] = g["health"].get(health, 0) + count
            g["deleting"] += deleting or 0
        if by == "fleet" and not groups:
            groups[None] = {"total": 0, "sync": {}, "health": {}, "deleting": 0}
        return [
            Rollup(
                key=k, total=g["total"], sync=g["sync"], health=g["health"], deleting=g["deleting"]
            )
            for k, g in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
        ]

    # -- Applications: writes by the reconcilers

    def set_status(
        self,
        name: str,
        *,
        sync_status: str | None = None,
        health_status: str | None = None,
        desired_sha: str | None = None,
        synced_sha: str | None = None,
        conditions: Sequence[Condition] | None = None,
        operation_state: Mapping[str, Any] | None = None,
        reconciled_at: datetime | None = None,
    ) -> bool:
        """Record what a reconciler observed; fields left None keep their value.

        Returns False when the Application no longer exists (deleted meanwhile)."""
        update = StatusUpdate(
            name=name,
            sync_status=sync_status,
            health_status=health_status,
            desired_sha=desired_sha,
            synced_sha=synced_sha,
            conditions=None if conditions is None else tuple(conditions),
            operation_state=operation_state,
        )
        return not self.set_statuses([update], reconciled_at=reconciled_at)

    def set_statuses(
        self, updates: Sequence[StatusUpdate], *, reconciled_at: datetime | None = None
    ) -> list[str]:
        """Record several Applications' status in one transaction (a worker's tick); the
        names of those no longer stored (deleted meanwhile), which are skipped."""
        for u in updates:
            if u.sync_status is not None and u.sync_status not in SYNC_STATUSES:
                raise HubError(f"application {u.name}: unknown sync status {u.sync_status!r}")
            if u.health_status is not None and u.health_status not in HEALTH_STATUSES:
                raise HubError(f"application {u.name}: unknown health status {u.health_status!r}")
        if not updates:
            return []
        when = _iso(reconciled_at or now())
        missing: list[str] = []
        with self.store.write() as db:
            for u in updates:
                sets, args = u.assignments()
                sets.append("reconciled_at = ?")
                args.append(when)
                cur = db.execute(
                    f"UPDATE applications SET {', '.join(sets)} WHERE name = ?", (*args, u.name)
                )
                if cur.rowcount == 0:
                    missing.append(u.name)
        return missing

    def finish_deletion(self, name: str) -> bool:
        """Remove an Application whose resources the reconciler has deleted."""
        with self.store.write() as db:
            return AppTxn(db).delete_app(name)

    def prune_cluster(self, cluster: str) -> list[AppRecord]:
        """Remove every Application of ``cluster`` (it left the fleet), leaving its workloads.

        Argo CD's rule for a destination that no longer exists: the resources finalizer is
        stripped and the Application removed; nothing on the cluster is touched."""
        with self.store.write() as db:
            rows = db.execute(
                f"SELECT {_APP_COLUMNS} FROM applications WHERE cluster = ? ORDER BY name",
                (cluster,),
            ).fetchall()
            db.execute("DELETE FROM applications WHERE cluster = ?", (cluster,))
        pruned = [_app(r) for r in rows]
        if pruned:
            log.info(
                "cluster %s left the fleet: removed its Applications %s (workloads left running)",
                cluster,
                ", ".join(a.name for a in pruned),
            )
        return pruned

    # -- ApplicationSets and projects: reads

    def get_appset(self, name: str) -> AppSetRecord | None:
        with self.store.read() as db:
            row = db.execute(
                f"SELECT {_APPSET_COLUMNS} FROM applicationsets WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else _appset(row)

    def appset_manifest_text(self, name: str) -> tuple[str, str] | None:
        """A stored set's manifest as stored (JSON text) and where it was read
        (``source:file``), in one statement: the rollout check before every automated sync
        of the set's Applications reads only this (``get_appset`` parsed the set's status
        of every Application too)."""
        rows = self.store.query(
            "SELECT manifest, source, file FROM applicationsets WHERE name = ?", (name,)
        )
        if not rows:
            return None
        manifest, source, file = rows[0]
        return str(manifest), f"{source}:{file}"

    def list_appsets(self, *, source: str | None = None) -> list[AppSetRecord]:
        sql = f"SELECT {_APPSET_COLUMNS} FROM applicationsets"
        args: tuple[str, ...] = ()
        if source is not None:
            sql += " WHERE source = ?"
            args = (source,)
        with self.store.read() as db:
            rows = db.execute(sql + " ORDER BY name", args).fetchall()
        return [_appset(r) for r in rows]

    def get_project(self, name: str) -> ProjectRecord | None:
        """One stored AppProject (a sync reads its own project only: listing them all
        parsed every team's project for each sync)."""
        rows = self.store.query(
            "SELECT name, source, file, manifest, sha FROM app_projects WHERE name = ?", (name,)
        )
        if not rows:
            return None
        n, s, f, m, sha = rows[0]
        return ProjectRecord(name=n, source=s, file=f, manifest=json.loads(m), sha=sha)

    def list_projects(self) -> list[ProjectRecord]:
        with self.store.read() as db:
            rows = db.execute(
                "SELECT name, source, file, manifest, sha FROM app_projects ORDER BY name"
            ).fetchall()
        return [
            ProjectRecord(name=n, source=s, file=f, manifest=json.loads(m), sha=sha)
            for n, s, f, m, sha in rows
        ]

    # -- progressive sync (hub.rollout)

    def rollout_control(self, appset: str) -> tuple[bool, int | None]:
        """(paused, promoted step) of a set's rollout; (False, None) when never touched."""
        with self.store.read() as db:
            row = db.execute(
                "SELECT paused, promoted_step FROM rollouts WHERE appset = ?", (appset,)
            ).fetchone()
        return (False, None) if row is None else (bool(row[0]), row[1])

    def set_rollout_control(self, appset: str, *, paused: bool, promoted_step: int | None) -> None:
        with self.store.write() as db:
            db.execute(
                "INSERT INTO rollouts (appset, paused, promoted_step, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (appset) DO UPDATE SET "
                "paused = excluded.paused, promoted_step = excluded.promoted_step, "
                "updated_at = excluded.updated_at",
                (appset, int(paused), promoted_step, _iso(now())),
            )

    def rollout_status(self, appset: str) -> dict[str, Any] | None:
        """The rollout status last computed by the hub (``hub.rollout.Rollout.as_dict``)."""
        with self.store.read() as db:
            row = db.execute("SELECT status FROM rollouts WHERE appset = ?", (appset,)).fetchone()
        return None if row is None or row[0] == "{}" else dict(json.loads(row[0]))

    def set_rollout_status(self, appset: str, status: Mapping[str, Any]) -> None:
        with self.store.write() as db:
            db.execute(
                "INSERT INTO rollouts (appset, status, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (appset) DO UPDATE SET status = excluded.status, "
                "updated_at = excluded.updated_at",
                (appset, json.dumps(dict(status), sort_keys=True), _iso(now())),
            )

    def transaction(self) -> _TxnContext:
        """A write transaction over the desired-state tables (see ``AppTxn``)."""
        return _TxnContext(self.store)


class _TxnContext:
    def __init__(self, store: Store) -> None:
        self._cm = store.write()

    def __enter__(self) -> AppTxn:
        return AppTxn(self._cm.__enter__())

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)


class AppTxn:
    """Writes of the ApplicationSet controller, inside one store transaction."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    def get_app(self, name: str) -> AppRecord | None:
        row = self._db.execute(
            f"SELECT {_APP_COLUMNS} FROM applications WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else _app(row)

    def put_desired(self, app: DesiredApp) -> AppRecord:
        """Create the row, or replace its desired half (the observed half is kept).

        ``generation`` is bumped only when something Git asks for changed."""
        current = self.get_app(app.name)
        stamp = _iso(now())
        values = (
            app.appset,
            app.source,
            app.file,
            app.cluster,
            app.dest_server,
            app.dest_name,
            app.namespace,
            app.project,
            json.dumps(app.spec, sort_keys=True),
            json.dumps(dict(app.labels), sort_keys=True),
            json.dumps(dict(app.annotations), sort_keys=True),
            json.dumps(list(app.finalizers)),
            app.desired_revision,
        )
        if current is None:
            self._db.execute(
                "INSERT INTO applications (appset, source, file, cluster, dest_server, "
                "dest_name, namespace, project, spec, labels, annotations, finalizers, "
                "desired_revision, name, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, app.name, stamp, stamp),
            )
        else:
            bump = 0 if app.same_desired(current) else 1
            self._db.execute(
                "UPDATE applications SET appset = ?, source = ?, file = ?, cluster = ?, "
                "dest_server = ?, dest_name = ?, namespace = ?, project = ?, spec = ?, "
                "labels = ?, annotations = ?, finalizers = ?, desired_revision = ?, "
                "generation = generation + ?, updated_at = ? WHERE name = ?",
                (*values, bump, stamp, app.name),
            )
        record = self.get_app(app.name)
        assert record is not None
        return record

    def disown(self, name: str) -> None:
        """Keep the Application but cut it from its ApplicationSet (Argo CD strips the
        ownerReference when a set whose policy forbids deletion is deleted). The row then has
        neither set nor source: nothing deletes it, and a set generating its name adopts it."""
        self._db.execute(
            "UPDATE applications SET appset = NULL, source = NULL, updated_at = ? WHERE name = ?",
            (_iso(now()), name),
        )

    def mark_deleting(self, name: str, reason: str) -> None:
        self._db.execute(
            "UPDATE applications SET deletion = ?, deletion_reason = ?, "
            "deletion_requested_at = COALESCE(deletion_requested_at, ?), "
            "generation = generation + CASE WHEN deletion IS NULL THEN 1 ELSE 0 END WHERE name = ?",
            (DELETING, reason, _iso(now()), name),
        )

    def delete_app(self, name: str) -> bool:
        return self._db.execute("DELETE FROM applications WHERE name = ?", (name,)).rowcount > 0

    def put_appset(
        self, *, name: str, source: str, file: str, manifest: Mapping[str, Any], sha: str
    ) -> None:
        stamp = _iso(now())
        self._db.execute(
            "INSERT INTO applicationsets (name, source, file, manifest, sha, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "source = excluded.source, file = excluded.file, manifest = excluded.manifest, "
            "sha = excluded.sha, updated_at = excluded.updated_at",
            (name, source, file, json.dumps(manifest, sort_keys=True), sha, stamp, stamp),
        )

    def set_appset_status(
        self,
        name: str,
        *,
        conditions: Sequence[Condition],
        status: Mapping[str, Any],
        generated: int | None,
        last_error: str | None,
    ) -> None:
        """Record a reconcile of the set; ``generated`` None keeps the previous count."""
        self._db.execute(
            "UPDATE applicationsets SET conditions = ?, status = ?, "
            "generated = COALESCE(?, generated), last_error = ?, reconciled_at = ? "
            "WHERE name = ?",
            (
                _conditions_json(conditions),
                json.dumps(dict(status), sort_keys=True),
                generated,
                last_error,
                _iso(now()),
                name,
            ),
        )

    def delete_appset(self, name: str) -> None:
        self._db.execute("DELETE FROM applicationsets WHERE name = ?", (name,))

    def replace_projects(self, source: str, projects: Iterable[ProjectRecord]) -> None:
        self._db.execute("DELETE FROM app_projects WHERE source = ?", (source,))
        for p in projects:
            self._db.execute(
                upsert("app_projects", ("name", "source", "file", "manifest", "sha"), ("name",)),
                (p.name, p.source, p.file, json.dumps(p.manifest, sort_keys=True), p.sha),
            )
