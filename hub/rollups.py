"""Status rollups of the fleet: per cluster, per ApplicationSet x cluster, and totals.

Pure: ``build_status`` turns Application states, cluster records, connection states and
the newest sync per cluster into a ``FleetStatus``; nothing here reads a store or a
socket. The CLI (``hub status``), the JSON API (``GET /api/v1/status``) and the
dashboard all show the output of this one function, which is how their numbers agree.

JSON shape (``FleetStatus.to_json``; ``schemaVersion`` 1; keys are only ever added)::

    {
      "schemaVersion": 1,
      "generatedAt": "2026-01-01T00:00:00Z",
      "filters": {"appset": null, "cluster": null},
      "clusters": [
        {"name": "east", "server": "https://...",
         "connection": {"state": "Connected", "message": "", "since": ""},
         "applications": {"total": 3,
                          "sync": {"Synced": 2, "OutOfSync": 1, "Unknown": 0},
                          "health": {"Healthy": 2, "Progressing": 0, "Degraded": 1,
                                     "Suspended": 0, "Missing": 0, "Unknown": 0}},
         "lastSync": {"time": "...", "revision": "<sha>", "app": "web-east",
                      "phase": "Succeeded"} | null}
      ],
      "matrix": {
        "clusters": ["east", "west"],
        "rows": [{"appset": "web" | null,
                  "cells": [{"cluster": "east", "applications": ["web-east"],
                             "sync": "Synced", "health": "Healthy"}]}]
      },
      "totals": {"clusters": 2, "applications": {...counts as above...}, "unassigned": 0},
      "problems": [{"kind": "source" | "appset", "name": "root",
                    "message": "apps/web.yaml@1a2b3c4d5e6f: ..."}]
    }

``problems`` are the sources whose newest revision is not applied (a bad file, a revision
held by the deletion guard) and the ApplicationSets in error: they keep their
Applications, so the counts alone look fine.

A matrix cell shows the worst sync and the worst health of the cell's Applications
(health in Argo CD's order: Healthy < Suspended < Progressing < Missing < Degraded <
Unknown; sync: Synced < OutOfSync < Unknown). Plain Applications (no ApplicationSet) form
the row with ``"appset": null``. Applications whose cluster is not registered (or not
resolved) count in ``totals.unassigned`` and in the totals, not in any cluster row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from clusters.registry import ClusterRecord
from hub.errors import HubUsageError

SCHEMA_VERSION = 1

SYNC_STATUSES = ("Synced", "OutOfSync", "Unknown")
HEALTH_STATUSES = ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")
# Worst last: Argo CD's healthOrder (gitops-engine pkg/health), and sync by how much it
# needs a look.
HEALTH_ORDER = ("Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown")
SYNC_ORDER = ("Synced", "OutOfSync", "Unknown")


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True)
class AppState:
    """What a rollup needs of one Application."""

    name: str
    appset: str | None
    cluster: str | None
    sync: str
    health: str


@dataclass(frozen=True, kw_only=True)
class Connection:
    """A cluster's connection state (from the running hub, or the last check)."""

    state: str = "Unknown"
    message: str = ""
    since: str = ""

    def to_json(self) -> dict[str, str]:
        return {"state": self.state, "message": self.message, "since": self.since}


def connection_from_check(record: ClusterRecord) -> Connection:
    """Without a running hub, the registry's last connectivity check is the best we know."""
    check = record.last_check
    if check is None:
        return Connection(state="Unknown", message="never checked")
    return Connection(
        state="Connected" if check.ok else "Unreachable",
        message=check.message,
        since=_rfc3339(check.time),
    )


@dataclass(frozen=True, kw_only=True)
class LastSync:
    """The newest finished sync of any Application on a cluster."""

    time: datetime
    revision: str
    app: str
    phase: str

    def to_json(self) -> dict[str, str]:
        return {
            "time": _rfc3339(self.time),
            "revision": self.revision,
            "app": self.app,
            "phase": self.phase,
        }


@dataclass(frozen=True, kw_only=True)
class Counts:
    total: int = 0
    sync: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(SYNC_STATUSES, 0))
    health: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(HEALTH_STATUSES, 0))

    @classmethod
    def of(cls, apps: Iterable[AppState]) -> Counts:
        sync = dict.fromkeys(SYNC_STATUSES, 0)
        health = dict.fromkeys(HEALTH_STATUSES, 0)
        total = 0
        for a in apps:
            total += 1
            # A status we do not know (a newer hub wrote it) still counts, under its name.
            sync[a.sync] = sync.get(a.sync, 0) + 1
            health[a.health] = health.get(a.health, 0) + 1
        return cls(total=total, sync=sync, health=health)

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "sync": dict(self.sync), "health": dict(self.health)}


@dataclass(frozen=True, kw_only=True)
class ClusterRow:
    name: str
    server: str
    connection: Connection
    counts: Counts
    last_sync: LastSync | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "server": self.server,
            "connection": self.connection.to_json(),
            "applications": self.counts.to_json(),
            "lastSync": None if self.last_sync is None else self.last_sync.to_json(),
        }


@dataclass(frozen=True, kw_only=True)
class Cell:
    cluster: str
    applications: tuple[str, ...]
    sync: str
    health: str

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "applications": list(self.applications),
            "sync": self.sync,
            "health": self.health,
        }


@dataclass(frozen=True, kw_only=True)
class MatrixRow:
    appset: str | None
    cells: tuple[Cell, ...]

    def cell(self, cluster: str) -> Cell | None:
        return next((c for c in self.cells if c.cluster == cluster), None)

    def to_json(self) -> dict[str, Any]:
        return {"appset": self.appset, "cells": [c.to_json() for c in self.cells]}


@dataclass(frozen=True, kw_only=True)
class Problem:
    """A source or ApplicationSet in error (its Applications are kept as they were)."""

    kind: str  # "source" | "appset"
    name: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "message": self.message}


@dataclass(frozen=True, kw_only=True)
class FleetStatus:
    generated_at: datetime
    appset_filter: str | None
    cluster_filter: str | None
    clusters: tuple[ClusterRow, ...]
    matrix_clusters: tuple[str, ...]
    matrix: tuple[MatrixRow, ...]
    totals: Counts
    unassigned: int
    apps: tuple[AppState, ...] = ()  # the Applications counted (for fail_on's reasons)
    problems: tuple[Problem, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "schemaVersion": SCHEMA_VERSION,
            "generatedAt": _rfc3339(self.generated_at),
            "filters": {"appset": self.appset_filter, "cluster": self.cluster_filter},
            "clusters": [c.to_json() for c in self.clusters],
            "matrix": {
                "clusters": list(self.matrix_clusters),
                "rows": [r.to_json() for r in self.matrix],
            },
            "totals": {
                "clusters": len(self.clusters),
                "applications": self.totals.to_json(),
                "unassigned": self.unassigned,
            },
            "problems": [p.to_json() for p in self.problems],
        }


def worst(values: Iterable[str], order: Sequence[str]) -> str:
    """The worst of ``values`` by ``order``; a value outside ``order`` counts as worst."""
    rank = {v: i for i, v in enumerate(order)}
    best = ""
    best_rank = -1
    for v in values:
        r = rank.get(v, len(order))
        if r > best_rank:
            best, best_rank = v, r
    return best or order[-1]


def build_status(
    *,
    apps: Iterable[AppState],
    clusters: Sequence[ClusterRecord],
    connections: Mapping[str, Connection],
    last_syncs: Mapping[str, LastSync],
    appsets: Iterable[str] = (),
    appset: str | None = None,
    cluster: str | None = None,
    now: datetime | None = None,
    problems: Sequence[Problem] = (),
) -> FleetStatus:
    """The rollups of the fleet, filtered to one ApplicationSet and/or one cluster.

    ``appsets`` names every ApplicationSet (so one with no Applications yet still gets a
    matrix row). Naming a cluster or set that does not exist is a usage error: a script
    with a typo must not read an empty fleet as a healthy one."""
    all_apps = list(apps)
    known_sets = set(appsets) | {a.appset for a in all_apps if a.appset is not None}
    registered = {c.name: c for c in clusters}
    if appset is not None and appset not in known_sets:
        raise HubUsageError(
            f"no ApplicationSet named {appset!r} (known: {', '.join(sorted(known_sets)) or 'none'})"
        )
    if cluster is not None and cluster not in registered:
        raise HubUsageError(
            f"no cluster named {cluster!r} (registered: {', '.join(sorted(registered)) or 'none'})"
        )
    selected = [
        a
        for a in all_apps
        if (appset is None or a.appset == appset) and (cluster is None or a.cluster == cluster)
    ]
    shown = [c for c in clusters if cluster is None or c.name == cluster]
    by_cluster: dict[str, list[AppState]] = {c.name: [] for c in shown}
    unassigned = 0
    for a in selected:
        if a.cluster is not None and a.cluster in by_cluster:
            by_cluster[a.cluster].append(a)
        elif a.cluster is None or a.cluster not in registered:
            unassigned += 1
    rows = tuple(
        ClusterRow(
            name=c.name,
            server=c.server,
            connection=connections.get(c.name, Connection()),
            counts=Counts.of(by_cluster[c.name]),
            last_sync=last_syncs.get(c.name),
        )
        for c in sorted(shown, key=lambda c: c.name)
    )
    columns = tuple(r.name for r in rows)
    row_sets: list[str | None] = [*sorted(s for s in known_sets if appset is None or s == appset)]
    if appset is None and any(a.appset is None for a in selected):
        row_sets.append(None)
    matrix = []
    for s in row_sets:
        cells = []
        for col in columns:
            members = sorted((a for a in by_cluster[col] if a.appset == s), key=lambda a: a.name)
            if members:
                cells.append(
                    Cell(
                        cluster=col,
                        applications=tuple(a.name for a in members),
                        sync=worst((a.sync for a in members), SYNC_ORDER),
                        health=worst((a.health for a in members), HEALTH_ORDER),
                    )
                )
        matrix.append(MatrixRow(appset=s, cells=tuple(cells)))
    return FleetStatus(
        generated_at=now or datetime.now(UTC),
        appset_filter=appset,
        cluster_filter=cluster,
        clusters=rows,
        matrix_clusters=columns,
        matrix=tuple(matrix),
        totals=Counts.of(selected),
        unassigned=unassigned,
        apps=tuple(sorted(selected, key=lambda a: a.name)),
        problems=tuple(problems),
    )


# ---------------------------------------------------------------- --fail-on


class FailOn(StrEnum):
    """Conditions ``hub status --fail-on`` can test (several may be given)."""

    OUTOFSYNC = "outofsync"  # an Application's sync status is OutOfSync
    DEGRADED = "degraded"  # an Application's health is Degraded
    # sync or health is Unknown; a running hub marks the apps of an unreachable cluster so
    UNKNOWN = "unknown"
    # a source whose newest revision is not applied, or an ApplicationSet in error
    ERROR = "error"


FAIL_ON_EXIT_CODE = 3
"""Exit code when a ``--fail-on`` condition holds (1 and 2 stay errors and usage errors)."""


def fail_on(status: FleetStatus, conditions: Iterable[FailOn]) -> list[str]:
    """Why ``status`` fails the given conditions: one line per offending object, or none."""
    wanted = set(conditions)
    reasons: list[str] = []
    if FailOn.ERROR in wanted:
        reasons += [f"{p.kind} {p.name} is in error: {p.message}" for p in status.problems]
    for a in status.apps:
        where = f"{a.name} ({a.cluster or 'no cluster'})"
        if FailOn.OUTOFSYNC in wanted and a.sync == "OutOfSync":
            reasons.append(f"application {where} is OutOfSync")
        if FailOn.DEGRADED in wanted and a.health == "Degraded":
            reasons.append(f"application {where} is Degraded")
        if FailOn.UNKNOWN in wanted and "Unknown" in (a.sync, a.health):
            reasons.append(f"application {where} is {a.sync}/{a.health}")
    return reasons
