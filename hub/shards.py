"""One replica's side of sharing the fleet: the heartbeat loop over ``hub.leases``.

Every ``heartbeat_s`` (``Shards.beat``), in this order:

1. one transaction records the heartbeat, creates missing lease rows, renews this
   replica's unexpired leases and reads who is live and who holds what;
2. a held lease that was not renewed with this replica's token is lost: its worker is
   stopped at once (its writes are refused already, see ``ClusterFence``);
3. ``hub.leases.plan`` decides: clusters this replica should own (rendezvous hashing over
   the live replicas) whose lease is free or expired are acquired one by one (a new
   token each), their operations left in flight by the previous owner are recorded as
   interrupted, and their worker starts; clusters that now belong to another live
   replica are handed off gracefully (no new sync starts, syncs in flight get the
   shutdown grace to end, the worker stops, then the lease is released, so the next
   owner does not wait for expiry);
4. the leader lease is renewed, or taken when free or expired.

When the database cannot be reached the loop keeps trying; a lease whose local deadline
passes (``lease_s - margin_s`` after its last successful renewal started) stops its worker
before any other replica can take it over.

The renewal waits behind nothing else the replica does: it has a thread slot of its own
(not the store calls' limiter, where it queued behind every pending store call) and on
PostgreSQL does not take the store's write lock (``LeaseStore.beat``). What does need that
lock, acquisitions and releases (the leader lease too), runs in tasks of its own, so a
write lock held long elsewhere delays them, never the next renewal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Protocol, TypeVar

import anyio
import anyio.abc
import anyio.to_thread

from hub.leases import (
    LEADER,
    Beat,
    ClusterFence,
    Fences,
    LeaseOptions,
    LeaseStore,
    cluster_lease,
    plan,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


class ShardHost(Protocol):
    """What the heartbeat loop asks of the hub (``hub.controller.Hub``)."""

    async def take_over(self, cluster: str) -> None: ...

    async def start_owned_worker(self, cluster: str) -> None: ...

    async def stop_worker(self, cluster: str, *, drain: bool, wait: bool = True) -> None: ...

    def leadership_changed(self, leader: bool) -> None: ...


class Shards:
    def __init__(
        self,
        host: ShardHost,
        leases: LeaseStore,
        fences: Fences,
        limiter: anyio.CapacityLimiter,
        url: Callable[[], str] = lambda: "",
    ) -> None:
        self.host = host
        self.leases = leases
        self.fences = fences
        self.options: LeaseOptions = leases.options
        self.replica = leases.replica
        self._limiter = limiter  # the hub's store calls: acquisitions and releases
        # The heartbeat's own slot: beats are sequential, and one queued behind the store
        # calls of a busy replica let its leases lapse while the replica was healthy.
        self._beat_limiter = anyio.CapacityLimiter(1)
        self._url = url
        self.leader: ClusterFence | None = None
        self.owned: set[str] = set()  # taken over, worker started (or starting)
        self.releasing: set[str] = set()
        self.acquiring: set[str] = set()
        self.acquiring_leader = False
        self.last: Beat | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    async def _db(self, fn: Callable[[], T], limiter: anyio.CapacityLimiter | None = None) -> T:
        return await anyio.to_thread.run_sync(fn, limiter=limiter or self._limiter)

    async def _try(
        self, what: str, fn: Callable[[], T], limiter: anyio.CapacityLimiter | None = None
    ) -> T | None:
        """A lease statement whose failure (the database out of reach) is logged and
        retried at the next heartbeat rather than stopping the replica."""
        try:
            return await self._db(fn, limiter)
        except Exception as exc:  # either backend's driver errors
            log.warning("replica %s: %s failed: %r", self.replica, what, exc)
            return None

    def is_leader(self) -> bool:
        return self.leader is not None and self.leader.valid()

    def _deadline(self, started: float) -> float:
        return started + self.options.lease_s - self.options.margin_s

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Join (heartbeat only, so that replicas starting together see each other before
        anyone takes clusters), then beat until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await self._try(
                "join", partial(self.leases.beat, url=self._url(), renew=False), self._beat_limiter
            )
            await anyio.sleep(self.options.heartbeat_s)
            await self.beat()
            task_status.started()
            while True:
                await anyio.sleep(self.options.heartbeat_s)
                await self.beat()

    async def beat(self) -> None:
        started = time.monotonic()
        # Only leases held before the renewal ran are judged by it: one acquired by a task
        # meanwhile (no longer ordered with the renewal by the write lock) may have
        # committed after it; its own deadline stands until the next beat.
        before = self.fences.held()
        leader_before = self.leader
        beat = await self._try(
            "heartbeat", partial(self.leases.beat, url=self._url()), self._beat_limiter
        )
        if beat is None:  # the database is out of reach
            await self._expire_local()
            return
        self.last = beat
        deadline = self._deadline(started)
        for cluster, fence in sorted(before.items()):
            if self.fences.get(cluster) is not fence:
                continue  # dropped or handed over meanwhile
            if beat.renewed.get(fence.name) == fence.token:
                fence.extend(deadline)
            else:
                fence.lose("not renewed: expired or taken over")
                log.warning("replica %s: lost the lease of cluster %s", self.replica, cluster)
                await self._drop(cluster, release=False)
        if self.leader is not None and self.leader is leader_before:
            if beat.renewed.get(LEADER) == self.leader.token:
                self.leader.extend(deadline)
            else:
                self._lose_leader("not renewed")
        decision = plan(
            me=self.replica,
            live=[r.id for r in beat.live],
            clusters=beat.clusters,
            leases=beat.leases,
            held=[c for c in self.fences.held() if c not in self.releasing]
            + sorted(self.acquiring),
            now=beat.now,
        )
        for cluster in decision.drop:
            await self._drop(cluster, release=True)
        for cluster in decision.hand_off:
            if cluster not in self.releasing | self.acquiring and self._tg is not None:
                self.releasing.add(cluster)
                self._tg.start_soon(self._hand_off, cluster)
        for cluster in decision.acquire:
            # Each in its own task: a take-over that waits on its spoke (hook finalizers)
            # must not hold up the renewal of the other leases.
            if cluster not in self.releasing | self.acquiring and self._tg is not None:
                self.acquiring.add(cluster)
                self._tg.start_soon(self._acquire, cluster)
        if self.leader is None and not self.acquiring_leader and self._tg is not None:
            row = beat.leases.get(LEADER)
            if row is None or row.free_at(beat.now) or row.owner == self.replica:
                self.acquiring_leader = True
                self._tg.start_soon(self._acquire_leader)

    async def _acquire_leader(self) -> None:
        """In a task of its own: an acquisition waits for the store's write lock."""
        try:
            t0 = time.monotonic()
            token = await self._try("leader lease", partial(self.leases.acquire, LEADER))
            if token is not None:
                self.leader = ClusterFence(LEADER, token, self._deadline(t0))
                log.info("replica %s: leader (token %d)", self.replica, token)
                self.host.leadership_changed(True)
        finally:
            self.acquiring_leader = False

    def _lose_leader(self, why: str) -> None:
        if self.leader is not None:
            self.leader.lose(why)
            self.leader = None
            log.warning("replica %s: no longer the leader (%s)", self.replica, why)
            self.host.leadership_changed(False)

    async def _expire_local(self) -> None:
        """The database is out of reach: stop what can no longer be proven ours."""
        now = time.monotonic()
        for cluster, fence in sorted(self.fences.held().items()):
            if now >= fence.deadline:
                fence.lose("not renewed in time (database unreachable)")
                await self._drop(cluster, release=False)
        if self.leader is not None and now >= self.leader.deadline:
            self._lose_leader("not renewed in time")

    async def _acquire(self, cluster: str) -> None:
        try:
            await self._take(cluster)
        finally:
            self.acquiring.discard(cluster)

    async def _take(self, cluster: str) -> None:
        started = time.monotonic()
        token = await self._try(
            f"lease of {cluster}", partial(self.leases.acquire, cluster_lease(cluster))
        )
        if token is None:
            return
        fence = ClusterFence(cluster_lease(cluster), token, self._deadline(started))
        self.fences.put(cluster, fence)
        log.info("replica %s: acquired cluster %s (token %d)", self.replica, cluster, token)
        try:
            await self.host.take_over(cluster)
        except Exception as exc:  # LeaseLost, or the database out of reach: next beat again
            log.warning("cluster %s: take-over failed (retried): %r", cluster, exc)
            await self._drop(cluster, release=True)
            return
        self.owned.add(cluster)
        await self.host.start_owned_worker(cluster)

    async def _drop(self, cluster: str, *, release: bool) -> None:
        """Stop the worker now (no drain) and forget the lease (released when asked, in a
        task of its own when the heartbeat asks: a release waits for the write lock)."""
        self.owned.discard(cluster)
        await self.host.stop_worker(cluster, drain=False, wait=False)
        fence = self.fences.pop(cluster)
        if release and fence is not None and not fence.lost:
            if self._tg is not None:
                self._tg.start_soon(self._release, fence)
            else:
                await self._release(fence)

    async def _release(self, fence: ClusterFence) -> None:
        await self._try("release", partial(self.leases.release, fence.name, fence.token))

    async def _hand_off(self, cluster: str) -> None:
        """Graceful: no new sync, let those in flight end, stop the worker, release."""
        try:
            log.info("replica %s: handing cluster %s over", self.replica, cluster)
            self.owned.discard(cluster)
            await self.host.stop_worker(cluster, drain=True)
            fence = self.fences.pop(cluster)
            if fence is not None and not fence.lost:
                await self._try("release", partial(self.leases.release, fence.name, fence.token))
        finally:
            self.releasing.discard(cluster)

    async def leave(self) -> None:
        """Shutdown (after the workers stopped): release everything, drop this replica."""
        for cluster in list(self.fences.held()):
            self.fences.pop(cluster)
        self.owned.clear()
        self.leader = None
        await self._db(self.leases.leave)
