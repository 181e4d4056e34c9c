"""Replicas sharing the fleet through leases in the database, with fencing tokens.

Several ``hub serve`` processes on one shared database (PostgreSQL) split the clusters
between them. Nothing here is consensus of our own: every decision that two replicas
could race on is one conditional ``UPDATE`` on a lease row in one transaction of the
database (a row lock on PostgreSQL, the write lock on SQLite), and expiry is read on the
database's clock only.

- ``replicas``: one row per live replica (id, host, pid, API URL, heartbeat). A replica
  whose heartbeat is older than ``replica_ttl_s`` is not counted as live.
- ``leases``: ``cluster/<name>`` for each cluster and ``leader``. ``owner`` (a replica id or
  NULL), ``token`` (incremented on every acquisition: the fencing token), ``expires_at``.
- Who should own a cluster is ``owner_of``: rendezvous hashing of the cluster name over
  the live replicas (pure; deterministic, and a join or leave moves only the clusters that
  hash to the replica that came or went).
- Fencing: a replica writes a cluster's state only while it holds the lease with the token
  it got. ``ClusterFence.check_db`` is run inside the write transaction, which holds the
  store's write lock, as every acquisition and release does: a take-over waits for the
  write to commit, or the write sees the new token and is refused with ``LeaseLost``.
  Spoke writes are checked against the local deadline: the monotonic time the renewal
  started plus the lease minus a margin, which ends before the database can see the
  lease expire, so a replica that stalls (SIGSTOP, a long GC, a lost network) refuses to
  write when it resumes.
- The heartbeat (``LeaseStore.beat``) is the one lease transaction outside that lock
  (``Store.write_rows``): its renewal changes neither owner nor token, so no fence check
  depends on it, and it must not queue behind the writes of every replica: one writer
  stalled inside its transaction made every replica's leases lapse at once.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from clusters.connect import Connection
from hub.apps import AppStore, StatusUpdate
from hub.errors import HubError, HubUsageError
from hub.metrics import ShardView
from hub.store import Store
from hub.sync.history import HistoryRow, OperationRow, Trigger

log = logging.getLogger(__name__)

LEADER = "leader"
CLUSTER_PREFIX = "cluster/"
ENV_LEASE_S = "HUB_LEASE_SECONDS"
ENV_REPLICA_ID = "HUB_REPLICA_ID"
# Methods that change a spoke: refused without a valid lease.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def cluster_lease(cluster: str) -> str:
    return CLUSTER_PREFIX + cluster


class LeaseLost(HubError):
    """A write was refused: this replica no longer holds the cluster's lease (another one
    took it over, or this one could not renew it in time). ``lease`` and ``token`` name
    the lease and the token the refused write carried, when known."""

    def __init__(self, message: str, *, lease: str = "", token: int | None = None) -> None:
        super().__init__(message)
        self.lease = lease
        self.token = token

    def one_line(self) -> str:
        """The log line of a worker stopped by it (a lost lease is not a bug: no traceback)."""
        what = (
            f"cluster {self.lease[len(CLUSTER_PREFIX) :]}"
            if self.lease.startswith(CLUSTER_PREFIX)
            else (self.lease or "a cluster")
        )
        token = "" if self.token is None else f" (token {self.token})"
        return f"lost the lease of {what}{token}: stopping its worker"


def lease_lost_in(exc: BaseException | None) -> LeaseLost | None:
    """The ``LeaseLost`` behind ``exc`` (itself, or its cause or context), if any."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, LeaseLost):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


class LeaseLostLogFilter(logging.Filter):
    """Installed on the worker's logger in replica mode: a sync that ends because the
    lease was lost (``LeaseLost`` raised by a fenced write inside the engine) is logged by
    the worker as an unexpected failure with a traceback; it is expected when a replica
    loses a cluster, so the record becomes one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        lost = lease_lost_in(record.exc_info[1] if record.exc_info else None)
        if lost is not None:
            record.msg, record.args = "%s", (lost.one_line(),)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def quiet_lease_lost(logger: logging.Logger) -> None:
    """Install ``LeaseLostLogFilter`` on ``logger`` once."""
    if not any(isinstance(f, LeaseLostLogFilter) for f in logger.filters):
        logger.addFilter(LeaseLostLogFilter())


@dataclass(frozen=True, kw_only=True)
class LeaseOptions:
    """Lease timing. ``heartbeat_s`` is how often a replica renews; it stops writing
    ``margin_s`` before its lease could expire; others take over after ``lease_s``."""

    lease_s: float = 15.0
    heartbeat_s: float = 5.0
    margin_s: float = 3.0
    replica_ttl_s: float = 15.0

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_s < self.lease_s - self.margin_s or self.margin_s <= 0:
            raise HubUsageError(
                f"lease timing: need 0 < heartbeat ({self.heartbeat_s:g}s) < lease "
                f"({self.lease_s:g}s) - margin ({self.margin_s:g}s), margin > 0"
            )

    @classmethod
    def for_lease(cls, lease_s: float) -> LeaseOptions:
        """Heartbeat a third of the lease, margin a fifth."""
        if lease_s < 1.0:
            raise HubUsageError(f"--lease {lease_s:g}: at least 1 second")
        return cls(
            lease_s=lease_s,
            heartbeat_s=lease_s / 3,
            margin_s=lease_s / 5,
            replica_ttl_s=lease_s,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LeaseOptions:
        raw = (os.environ if env is None else env).get(ENV_LEASE_S, "").strip()
        if not raw:
            return cls()
        try:
            return cls.for_lease(float(raw))
        except ValueError:
            raise HubUsageError(f"${ENV_LEASE_S}={raw!r}: expected seconds") from None


def new_replica_id(env: Mapping[str, str] | None = None) -> str:
    given = (os.environ if env is None else env).get(ENV_REPLICA_ID, "").strip()
    if given:
        return given
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


# ---------------------------------------------------------------- assignment (pure)


def _weight(replica: str, cluster: str) -> int:
    digest = hashlib.sha256(f"{replica}\x00{cluster}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def owner_of(cluster: str, replicas: Iterable[str]) -> str | None:
    """The replica that should own ``cluster``: highest rendezvous weight (ties by id)."""
    best: tuple[int, str] | None = None
    for replica in replicas:
        key = (_weight(replica, cluster), replica)
        if best is None or key > best:
            best = key
    return None if best is None else best[1]


def assignment(clusters: Iterable[str], replicas: Iterable[str]) -> dict[str, str]:
    """cluster -> the replica that should own it (empty when no replica is live)."""
    live = sorted(set(replicas))
    if not live:
        return {}
    return {c: cast(str, owner_of(c, live)) for c in clusters}


@dataclass(frozen=True, kw_only=True)
class LeaseRow:
    name: str
    owner: str | None
    token: int
    expires_at: float
    renewed_at: float | None = None
    acquired_at: float | None = None

    def free_at(self, now: float) -> bool:
        """Whether anyone may acquire it now (released, or expired on the db clock)."""
        return self.owner is None or self.expires_at < now


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What a replica does after a heartbeat: leases to try to acquire, and leases it holds
    that belong to another live replica now (stop the worker, then release)."""

    acquire: tuple[str, ...] = ()
    hand_off: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()  # held clusters no longer registered


def plan(
    *,
    me: str,
    live: Iterable[str],
    clusters: Iterable[str],
    leases: Mapping[str, LeaseRow],
    held: Iterable[str],
    now: float,
) -> Plan:
    """The pure decision of one heartbeat (``clusters`` and ``held`` are cluster names)."""
    wanted = assignment(clusters, set(live) | {me})
    mine = set(held)
    acquire, hand_off = [], []
    for cluster, owner in sorted(wanted.items()):
        row = leases.get(cluster_lease(cluster))
        if owner == me and cluster not in mine:
            if row is None or row.free_at(now) or row.owner == me:
                acquire.append(cluster)
        elif owner != me and cluster in mine:
            hand_off.append(cluster)
    drop = sorted(mine - set(wanted))
    return Plan(acquire=tuple(acquire), hand_off=tuple(hand_off), drop=tuple(drop))


# ---------------------------------------------------------------- the database side


def _dialect(store: Store) -> str:
    return store.backend


def is_shared(store: Store) -> bool:
    """Whether several replicas may share this database (PostgreSQL): replica mode."""
    return _dialect(store) == "postgresql"


def lease_holders(store: Store) -> list[str]:
    """Replicas holding an unexpired lease now: a single-hub pass (`hub serve --once`) on a
    shared database is refused while any does."""
    with store.read() as db:
        rows = db.execute(
            f"SELECT DISTINCT owner FROM leases WHERE owner IS NOT NULL "
            f"AND expires_at >= {now_sql(store)}"
        ).fetchall()
    return sorted(str(r[0]) for r in rows)


def now_sql(store: Store) -> str:
    """The database's clock in seconds since the epoch, as an SQL expression."""
    if _dialect(store) == "postgresql":
        return "CAST(EXTRACT(EPOCH FROM now()) AS DOUBLE PRECISION)"
    return "((julianday('now') - 2440587.5) * 86400.0)"


@dataclass(frozen=True, kw_only=True)
class ReplicaRow:
    id: str
    host: str
    pid: int
    url: str
    started_at: float
    heartbeat_at: float


@dataclass(frozen=True, kw_only=True)
class Beat:
    """What one heartbeat read, in one snapshot of the database."""

    now: float
    live: tuple[ReplicaRow, ...]
    clusters: tuple[str, ...]
    leases: dict[str, LeaseRow]
    renewed: dict[str, int]  # lease name -> token, of this replica's leases it renewed


class LeaseStore:
    """The SQL of replicas and leases (portable: ``?`` placeholders, ``ON CONFLICT``,
    ``RETURNING``); every method is one short transaction. Thread-safe like ``Store``."""

    def __init__(self, store: Store, replica: str, options: LeaseOptions) -> None:
        self.store = store
        self.replica = replica
        self.options = options
        self.now = now_sql(store)

    def beat(self, *, url: str = "", renew: bool = True) -> Beat:
        """Heartbeat: record this replica, create missing lease rows, renew this replica's
        unexpired leases, and read who is live and who holds what.

        Outside the store's write lock (``Store.write_rows``): on PostgreSQL it waits only
        for the rows it changes (its own replica row, its own leases, missing lease rows),
        never behind the fleet's other writes. The renewal is a conditional ``UPDATE``, so
        one racing an acquisition of the same row is re-checked by the database on the row
        the acquisition committed."""
        o, now = self.options, self.now
        with self.store.write_rows() as db:
            db.execute(
                f"INSERT INTO replicas (id, host, pid, url, started_at, heartbeat_at) "
                f"VALUES (?, ?, ?, ?, {now}, {now}) ON CONFLICT (id) DO UPDATE SET "
                f"heartbeat_at = excluded.heartbeat_at, url = excluded.url",
                (self.replica, socket.gethostname(), os.getpid(), url),
            )
            prefix = f"'{CLUSTER_PREFIX}'"  # our constant, not input
            db.execute(
                # In name order: two heartbeats inserting the same new rows wait for each
                # other in one order, never in a cycle.
                f"INSERT INTO leases (name) SELECT {prefix} || name FROM clusters WHERE "
                f"{prefix} || name NOT IN (SELECT name FROM leases) ORDER BY name "
                "ON CONFLICT (name) DO NOTHING"
            )
            db.execute(
                "INSERT INTO leases (name) VALUES (?) ON CONFLICT (name) DO NOTHING", (LEADER,)
            )
            renewed: dict[str, int] = {}
            if renew:
                rows = db.execute(
                    f"UPDATE leases SET renewed_at = {now}, expires_at = {now} + ? "
                    f"WHERE owner = ? AND expires_at >= {now} RETURNING name, token",
                    (o.lease_s, self.replica),
                ).fetchall()
                renewed = {str(n): int(t) for n, t in rows}
            clock = float(db.execute(f"SELECT {now}").fetchone()[0])
            live = db.execute(
                "SELECT id, host, pid, url, started_at, heartbeat_at FROM replicas "
                "WHERE heartbeat_at >= ? ORDER BY id",
                (clock - o.replica_ttl_s,),
            ).fetchall()
            clusters = [
                str(r[0]) for r in db.execute("SELECT name FROM clusters ORDER BY name").fetchall()
            ]
            leases = {
                str(r[0]): LeaseRow(
                    name=str(r[0]),
                    owner=r[1],
                    token=int(r[2]),
                    expires_at=float(r[3]),
                    renewed_at=None if r[4] is None else float(r[4]),
                    acquired_at=None if r[5] is None else float(r[5]),
                )
                for r in db.execute(
                    "SELECT name, owner, token, expires_at, renewed_at, acquired_at FROM leases"
                ).fetchall()
            }
        return Beat(
            now=clock,
            live=tuple(
                ReplicaRow(
                    id=r[0],
                    host=r[1],
                    pid=int(r[2]),
                    url=r[3],
                    started_at=float(r[4]),
                    heartbeat_at=float(r[5]),
                )
                for r in live
            ),
            clusters=tuple(clusters),
            leases=leases,
            renewed=renewed,
        )

    def join(self, url: str = "") -> None:
        """Record this replica at start-up, refusing when a live replica (another process,
        heartbeat within ``replica_ttl_s``) already runs under this id: two replicas with
        one id would renew each other's leases. Check and insert are one transaction."""
        now, me = self.now, (socket.gethostname(), os.getpid())
        with self.store.write() as db:
            clock = float(db.execute(f"SELECT {now}").fetchone()[0])
            row = db.execute(
                "SELECT host, pid, heartbeat_at FROM replicas WHERE id = ?", (self.replica,)
            ).fetchone()
            if row is not None and (str(row[0]), int(row[1])) != me:
                age = clock - float(row[2])
                if age <= self.options.replica_ttl_s:
                    raise HubUsageError(
                        f"replica id {self.replica!r} is already used by a live replica "
                        f"(host {row[0]}, pid {row[1]}, heartbeat {max(age, 0.0):.1f}s ago): "
                        "give this one another --replica-id (or $HUB_REPLICA_ID), or stop "
                        "that replica first; if it is gone, its heartbeat expires within "
                        f"{max(self.options.replica_ttl_s - age, 0.0):.0f}s"
                    )
            db.execute(
                f"INSERT INTO replicas (id, host, pid, url, started_at, heartbeat_at) "
                f"VALUES (?, ?, ?, ?, {now}, {now}) ON CONFLICT (id) DO UPDATE SET "
                "host = excluded.host, pid = excluded.pid, url = excluded.url, "
                "started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at",
                (self.replica, me[0], me[1], url),
            )

    def acquire(self, name: str) -> int | None:
        """Take the lease when it is free or expired (or already this replica's): the new
        token, or None when another replica holds it."""
        now = self.now
        with self.store.write() as db:
            row = db.execute(
                f"UPDATE leases SET owner = ?, token = token + 1, acquired_at = {now}, "
                f"renewed_at = {now}, expires_at = {now} + ? "
                f"WHERE name = ? AND (owner IS NULL OR owner = ? OR expires_at < {now}) "
                "RETURNING token",
                (self.replica, self.options.lease_s, name, self.replica),
            ).fetchone()
        return None if row is None else int(row[0])

    def renew(self, name: str, token: int) -> bool:
        """Extend one lease held with ``token`` (``hold_lease``; replicas renew in ``beat``)."""
        now = self.now
        with self.store.write() as db:
            cur = db.execute(
                f"UPDATE leases SET renewed_at = {now}, expires_at = {now} + ? "
                "WHERE name = ? AND owner = ? AND token = ?",
                (self.options.lease_s, name, self.replica, token),
            )
            return cur.rowcount > 0

    def release(self, name: str, token: int) -> bool:
        """Give a lease back at once (hand-off, shutdown); only with the token held."""
        with self.store.write() as db:
            cur = db.execute(
                "UPDATE leases SET owner = NULL, expires_at = 0 "
                "WHERE name = ? AND owner = ? AND token = ?",
                (name, self.replica, token),
            )
            return cur.rowcount > 0

    def leave(self) -> None:
        """Shutdown: release everything this replica holds and drop its row."""
        with self.store.write() as db:
            db.execute(
                "UPDATE leases SET owner = NULL, expires_at = 0 WHERE owner = ?", (self.replica,)
            )
            db.execute("DELETE FROM replicas WHERE id = ?", (self.replica,))

    # -- requests a non-owner forwards to the owner (or to the leader: cluster '')

    def put_request(self, cluster: str, app: str, action: str, body: Mapping[str, Any]) -> str:
        request_id = uuid.uuid4().hex
        with self.store.write() as db:
            db.execute(
                "INSERT INTO replica_requests (id, cluster, app, action, body, created_at) "
                f"VALUES (?, ?, ?, ?, ?, {self.now})",
                (request_id, cluster, app, action, json.dumps(dict(body), sort_keys=True)),
            )
        return request_id

    def pending_clusters(self) -> set[str]:
        """Clusters ('' for the leader) with requests waiting: one cheap query per poll."""
        with self.store.read() as db:
            return {
                str(r[0])
                for r in db.execute("SELECT DISTINCT cluster FROM replica_requests").fetchall()
            }

    def claim_requests(
        self, cluster: str, fence: ClusterFence | None
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """The requests of ``cluster`` to start now, oldest first: (app, action, body). With
        a fence, only while this replica still holds that lease (same transaction).

        Git requests (cluster '', the leader's) and refreshes are deleted as they are
        taken: running one twice or losing one to a crash only costs a fetch or a compare
        (the resync does it anyway). A sync or rollback is only *claimed*: marked with the
        fence's token, and deleted when its operation is recorded as started
        (``_FencedHistoryTxn.put_operation``). A claim made under a token that is no longer
        the lease's (its claimer died or lost the cluster before starting it) is claimed
        again here, so the request survives its owner."""
        with self.store.write() as db:
            if fence is not None:
                fence.check_db(db, self.store)
            taken = db.execute(
                "DELETE FROM replica_requests WHERE cluster = ? AND (cluster = '' OR "
                "action NOT IN ('sync', 'rollback')) RETURNING app, action, body, created_at",
                (cluster,),
            ).fetchall()
            if cluster and fence is not None:
                # The app went away meanwhile: nothing will ever start it.
                db.execute(
                    "DELETE FROM replica_requests WHERE cluster = ? "
                    "AND app NOT IN (SELECT name FROM applications)",
                    (cluster,),
                )
                taken += db.execute(
                    f"UPDATE replica_requests SET claimed_by = ?, claim_token = ?, "
                    f"claimed_at = {self.now} WHERE cluster = ? "
                    "AND (claim_token IS NULL OR claim_token <> ?) "
                    "RETURNING app, action, body, created_at",
                    (self.replica, fence.token, cluster, fence.token),
                ).fetchall()
        taken.sort(key=lambda r: float(r[3]))
        return [(str(a), str(act), json.loads(b)) for a, act, b, _ in taken]

    def unclaim(self, cluster: str, token: int) -> int:
        """A new worker of ``cluster`` starts under the same token (its server or
        credential changed): what the old one had claimed but not started is claimable
        again. Returns how many."""
        with self.store.write() as db:
            cur = db.execute(
                "UPDATE replica_requests SET claimed_by = NULL, claim_token = NULL, "
                "claimed_at = NULL WHERE cluster = ? AND claim_token = ?",
                (cluster, token),
            )
            return int(cur.rowcount)


def lease_holder(store: Store, name: str) -> tuple[str | None, bool]:
    """(who holds lease ``name`` unexpired or None, whether any replica is live now)."""
    ttl = LeaseOptions.from_env().replica_ttl_s
    now, replicas, leases = read_shards(store)
    row = next((r for r in leases if r.name == name), None)
    holder = row.owner if row is not None and not row.free_at(now) else None
    return holder, any(r.heartbeat_at >= now - ttl for r in replicas)


@contextmanager
def hold_lease(store: Store, name: str, holder: str) -> Iterator[int | None]:
    """Hold lease ``name`` for a command (``hub cluster rm --cascade``) while no replica
    does: no replica acquires it meanwhile, so none starts a worker on the cluster. A
    thread renews it every heartbeat; it is released on exit. Yields the token, or None
    when a replica holds it (nothing is held then)."""
    options = LeaseOptions.from_env()
    leases = LeaseStore(store, holder, options)
    with store.write() as db:
        db.execute("INSERT INTO leases (name) VALUES (?) ON CONFLICT (name) DO NOTHING", (name,))
    token = leases.acquire(name)
    if token is None:
        yield None
        return
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(options.heartbeat_s):
            try:
                if not leases.renew(name, token):
                    log.warning("%s: lease lost while %s held it", name, holder)
                    return
            except Exception as exc:  # the database out of reach: retried next heartbeat
                log.warning("%s: lease not renewed: %r", name, exc)

    thread = threading.Thread(target=renew, name=f"lease {name}", daemon=True)
    thread.start()
    try:
        yield token
    finally:
        stop.set()
        thread.join()
        leases.release(name, token)


def read_shards(store: Store) -> tuple[float, list[ReplicaRow], list[LeaseRow]]:
    """For ``hub shard list`` / ``hub status`` / metrics: (db now, replicas, leases)."""
    with store.read() as db:
        now = float(db.execute(f"SELECT {now_sql(store)}").fetchone()[0])
        replicas = [
            ReplicaRow(
                id=r[0], host=r[1], pid=int(r[2]), url=r[3], started_at=r[4], heartbeat_at=r[5]
            )
            for r in db.execute(
                "SELECT id, host, pid, url, started_at, heartbeat_at FROM replicas ORDER BY id"
            ).fetchall()
        ]
        leases = [
            LeaseRow(
                name=r[0],
                owner=r[1],
                token=int(r[2]),
                expires_at=float(r[3]),
                renewed_at=r[4],
                acquired_at=r[5],
            )
            for r in db.execute(
                "SELECT name, owner, token, expires_at, renewed_at, acquired_at FROM leases "
                "ORDER BY name"
            ).fetchall()
        ]
    return now, replicas, leases


def shard_view(store: Store) -> ShardView:
    """``hub.metrics.ShardView`` of the database now: live replicas, the leader, and the
    owner and lease age of each registered cluster whose lease is held and unexpired."""
    options_ttl = LeaseOptions.from_env().replica_ttl_s
    now, replicas, leases = read_shards(store)
    with store.read() as db:
        registered = {str(r[0]) for r in db.execute("SELECT name FROM clusters").fetchall()}
    live = tuple(r.id for r in replicas if r.heartbeat_at >= now - options_ttl)
    leader = next(
        (r.owner for r in leases if r.name == LEADER and r.owner and r.expires_at >= now), None
    )
    clusters = {
        r.name[len(CLUSTER_PREFIX) :]: (r.owner, max(0.0, now - float(r.renewed_at or now)))
        for r in leases
        if r.name.startswith(CLUSTER_PREFIX)
        and r.owner
        and r.expires_at >= now
        and r.name[len(CLUSTER_PREFIX) :] in registered
    }
    return ShardView(replicas=live, leader=leader, clusters=clusters)


# ---------------------------------------------------------------- fencing


class ClusterFence:
    """The lease this replica holds on one cluster (or the leader lease): its token, and
    the local monotonic deadline after which it refuses every write."""

    def __init__(self, name: str, token: int, deadline: float) -> None:
        self.name = name  # the lease name
        self.token = token
        self._deadline = deadline
        self._lost = threading.Event()
        self.reason = ""

    def extend(self, deadline: float) -> None:
        self._deadline = max(self._deadline, deadline)

    @property
    def deadline(self) -> float:
        return self._deadline

    def lose(self, reason: str) -> None:
        if not self._lost.is_set():
            self.reason = reason
            self._lost.set()

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def valid(self) -> bool:
        return not self._lost.is_set() and time.monotonic() < self._deadline

    def check_local(self) -> None:
        """Refuse when the lease is lost or may have expired (no database round trip)."""
        if self._lost.is_set():
            raise LeaseLost(
                f"{self.name}: lease lost ({self.reason}); write refused",
                lease=self.name,
                token=self.token,
            )
        if time.monotonic() >= self._deadline:
            self.lose("not renewed in time")
            raise LeaseLost(
                f"{self.name}: lease not renewed in time; write refused",
                lease=self.name,
                token=self.token,
            )

    def check_db(self, db: Any, store: Store) -> None:
        """Inside a write transaction: refuse unless the lease row still names this
        replica's token (else mark the fence lost, which stops the worker)."""
        self.check_local()
        # No row lock: the token only changes in an acquisition, a write transaction like
        # this one (the store's write lock orders them); a renewal beside it changes neither.
        row = db.execute("SELECT token FROM leases WHERE name = ?", (self.name,)).fetchone()
        if row is None or int(row[0]) != self.token:
            held = "none" if row is None else str(row[0])
            self.lose(f"token {self.token} superseded by {held}")
            raise LeaseLost(
                f"{self.name}: fencing token {self.token} no longer current (now {held}); "
                "another replica owns it: write refused",
                lease=self.name,
                token=self.token,
            )


class Fences:
    """The cluster leases this replica holds, by cluster name. Thread-safe: the store
    wrappers below run in store threads, the spoke guard in engine threads."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._held: dict[str, ClusterFence] = {}

    def put(self, cluster: str, fence: ClusterFence) -> None:
        with self._lock:
            self._held[cluster] = fence

    def pop(self, cluster: str) -> ClusterFence | None:
        with self._lock:
            return self._held.pop(cluster, None)

    def get(self, cluster: str) -> ClusterFence | None:
        with self._lock:
            return self._held.get(cluster)

    def held(self) -> dict[str, ClusterFence]:
        with self._lock:
            return dict(self._held)

    def _fence(self, cluster: str | None) -> ClusterFence:
        fence = None if cluster is None else self.get(cluster)
        if fence is None:
            raise LeaseLost(
                f"cluster {cluster}: this replica holds no lease on it; write refused",
                lease=cluster_lease(cluster or ""),
            )
        return fence

    def check(self, db: Any, cluster: str | None) -> None:
        self._fence(cluster).check_db(db, self.store)

    def check_local(self, cluster: str) -> None:
        self._fence(cluster).check_local()

    def guard_connection(self, cluster: str, connection: Connection) -> Connection:
        """The connection a worker writes to its spoke through: every POST/PUT/PATCH/DELETE
        first checks the lease held now (reads are never refused)."""
        return _guarded(connection, self._fence(cluster))

    def pinned(self, cluster: str) -> PinnedFence:
        """The lease held now on ``cluster``, for one worker's whole life: a worker started
        under token N writes with token N only, even after this replica re-acquired the
        cluster (token N+1) for a new worker."""
        return PinnedFence(self.store, cluster, self._fence(cluster))


class PinnedFence(Fences):
    """``Fences`` for one worker: one cluster, one token (see ``Fences.pinned``)."""

    def __init__(self, store: Store, cluster: str, fence: ClusterFence) -> None:
        super().__init__(store)
        self.cluster = cluster
        self.fence = fence
        self.put(cluster, fence)


def _guarded(connection: Connection, fence: ClusterFence) -> Connection:
    guarded = copy.copy(connection)
    guarded.api_client = cast(Any, _GuardedApi(connection.api_client, fence))
    return guarded


class _GuardedApi:
    """The kubernetes ``ApiClient`` of a connection with a lease check before writes."""

    def __init__(self, inner: Any, fence: ClusterFence) -> None:
        self._inner = inner
        self._fence = fence

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def call_api(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if str(method).upper() in WRITE_METHODS:
            self._fence.check_local()
        return self._inner.call_api(method, *args, **kwargs)


class FencedAppStore(AppStore):
    """``AppStore`` whose reconciler writes (status, operation state, end of a cascade
    deletion) check the cluster's lease in the same transaction."""

    def __init__(self, store: Store, fences: Fences) -> None:
        super().__init__(store)
        self.fences = fences

    def _check(self, db: Any, names: Sequence[str]) -> None:
        marks = ",".join("?" for _ in names)
        clusters = {
            r[0]
            for r in db.execute(
                f"SELECT DISTINCT cluster FROM applications WHERE name IN ({marks})", tuple(names)
            ).fetchall()
        }
        for cluster in sorted(clusters, key=str):
            self.fences.check(db, cluster)

    def set_statuses(
        self, updates: Sequence[StatusUpdate], *, reconciled_at: datetime | None = None
    ) -> list[str]:
        if not updates:
            return []
        with self.store.atomic(), self.store.write() as db:
            self._check(db, [u.name for u in updates])
            return super().set_statuses(updates, reconciled_at=reconciled_at)

    def finish_deletion(self, name: str) -> bool:
        with self.store.atomic(), self.store.write() as db:
            self._check(db, [name])
            return super().finish_deletion(name)


class LeaderFencedStore:
    """The store as the leader's ApplicationSet controller (and progressive sync) writes
    it: every write transaction first checks, inside that transaction, that the leader
    lease still carries this replica's token (``ClusterFence.check_db``), so a stalled
    former leader's write is refused with ``LeaseLost`` and nothing of it is written.
    Reads and everything else go to the store itself."""

    def __init__(self, store: Store, leader: Callable[[], ClusterFence | None]) -> None:
        self._store = store
        self._leader = leader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @contextmanager
    def write(self) -> Iterator[Any]:
        with self._store.write() as db:
            fence = self._leader()
            if fence is None:
                raise LeaseLost(
                    "this replica does not hold the leader lease: write refused", lease=LEADER
                )
            fence.check_db(db, self._store)
            yield db

    def as_store(self) -> Store:
        """Typed as the ``Store`` its users expect (it has every method of one)."""
        return cast(Store, self)


class FencedHistoryStorage:
    """``hub.sync.history.HistoryStorage`` over ``Store`` whose writes of an operation or
    a history entry check the lease of the row's cluster in the same transaction."""

    def __init__(self, store: Store, fences: Fences) -> None:
        self.store = store
        self.fences = fences

    @contextmanager
    def history_transaction(self) -> Iterator[Any]:
        with (
            self.store.atomic(),
            self.store.write() as db,
            self.store.history_transaction() as txn,
        ):
            yield _FencedHistoryTxn(txn, db, self.fences)

    def history_reader(self) -> Any:
        return self.store.history_reader()


_ASKED = frozenset({Trigger.USER.value, Trigger.ROLLBACK.value})


@dataclass
class _FencedHistoryTxn:
    inner: Any
    db: Any
    fences: Fences
    checked: set[str] = field(default_factory=set)

    def _check(self, cluster: str) -> None:
        if cluster not in self.checked:
            self.fences.check(self.db, cluster)
            self.checked.add(cluster)

    def put_operation(self, row: OperationRow) -> None:
        self._check(row.cluster)
        before = self.inner.get_operation(row.app)
        self.inner.put_operation(row)
        started = before is None or before.operation_id != row.operation_id
        if started and row.trigger in _ASKED:
            # A sync or rollback forwarded by another replica and claimed under this
            # worker's token is done with once its operation is recorded as started: in the
            # same transaction, so a crash leaves either the request or the operation.
            self.db.execute(
                "DELETE FROM replica_requests WHERE cluster = ? AND app = ? "
                "AND claim_token = ? AND action IN ('sync', 'rollback')",
                (row.cluster, row.app, self._token(row.cluster)),
            )

    def _token(self, cluster: str) -> int:
        fence = self.fences.get(cluster)
        assert fence is not None  # checked by _check
        return fence.token

    def insert_history(self, row: HistoryRow) -> None:
        self._check(row.cluster)
        self.inner.insert_history(row)

    def delete_operation(self, app: str, operation_id: str) -> None:
        op = self.inner.get_operation(app)
        if op is not None:
            self._check(op.cluster)
        self.inner.delete_operation(app, operation_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


__all__ = [
    "LEADER",
    "Beat",
    "ClusterFence",
    "FencedAppStore",
    "FencedHistoryStorage",
    "Fences",
    "LeaderFencedStore",
    "LeaseLost",
    "LeaseLostLogFilter",
    "LeaseOptions",
    "LeaseRow",
    "LeaseStore",
    "PinnedFence",
    "Plan",
    "ReplicaRow",
    "assignment",
    "cluster_lease",
    "hold_lease",
    "is_shared",
    "lease_holder",
    "lease_lost_in",
    "new_replica_id",
    "owner_of",
    "plan",
    "quiet_lease_lost",
    "read_shards",
    "shard_view",
]


def shard_report(store: Store, replica_ttl_s: float | None = None) -> dict[str, Any]:
    """The replicas, their clusters and lease ages (``hub shard list``, ``hub status``)."""
    ttl = LeaseOptions.from_env().replica_ttl_s if replica_ttl_s is None else replica_ttl_s
    now, replicas, leases = read_shards(store)
    with store.read() as db:
        registered = sorted(str(r[0]) for r in db.execute("SELECT name FROM clusters").fetchall())
    held = {
        r.name[len(CLUSTER_PREFIX) :]: r
        for r in leases
        if r.name.startswith(CLUSTER_PREFIX) and r.owner and r.expires_at >= now
    }
    leader_row = next((r for r in leases if r.name == LEADER), None)
    leader = (
        leader_row.owner
        if leader_row is not None and leader_row.owner and leader_row.expires_at >= now
        else None
    )
    clusters = []
    for name in registered:
        row = held.get(name)
        clusters.append(
            {
                "cluster": name,
                "owner": None if row is None else row.owner,
                "token": None if row is None else row.token,
                "leaseAgeSeconds": None
                if row is None
                else round(now - float(row.renewed_at or now), 1),
                "expiresInSeconds": None if row is None else round(row.expires_at - now, 1),
            }
        )
    return {
        "leader": leader,
        "replicas": [
            {
                "id": r.id,
                "host": r.host,
                "pid": r.pid,
                "url": r.url,
                "live": r.heartbeat_at >= now - ttl,
                "heartbeatAgeSeconds": round(now - r.heartbeat_at, 1),
                "leader": r.id == leader,
                "clusters": sorted(c for c, row in held.items() if row.owner == r.id),
            }
            for r in replicas
        ],
        "clusters": clusters,
    }
