"""The hub-wide sync slots (``FairSlots``), shared out between clusters.

Every sync and every cascade deletion holds one of ``global_syncs`` slots while it runs.
With first-come first-served slots, the syncs of a few slow clusters (every request a
couple of seconds) end up holding nearly all of them, because a fast cluster's sync gives
its slot back within a second while a slow one keeps it: the healthy fleet then waits
behind the slow clusters. Here a freed slot goes to the waiting cluster that holds the
fewest slots at that moment (max-min fairness); clusters that hold as many take turns.
A slow cluster is granted no further slot while a cluster holding fewer waits;
when nobody else waits, it may use every free slot. Slots are never taken back: what a
cluster got while the hub was idle it keeps until its syncs end.

A freed slot is handed straight to the waiter it is granted to, so a newcomer never takes
it first: while anyone waits, every slot is held.

A holder may lend its slot out while it waits for something that needs none (a sync's
retry backoff: a cluster answering 503 would otherwise hold a slot through minutes of
backoff) and queues for one again, fairly, when the wait is over; and it gives the slot
back early once it needs none for the rest of its block (a sync whose cluster work is
done, before its history record waits its turn: held there, the slots of hundreds of
finished syncs went back together when the record's turn came, and the next hundreds of
syncs started, and wrote, in one burst).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel


@dataclass(eq=False)
class _Waiter:
    key: str
    granted: bool = False
    event: anyio.Event = field(default_factory=anyio.Event)


class SlotHold:
    """One held slot (what ``FairSlots.slot`` yields)."""

    def __init__(self, slots: FairSlots, key: str) -> None:
        self._slots = slots
        self._key = key
        self.holding = False

    @asynccontextmanager
    async def lent(self) -> AsyncIterator[None]:
        """Gives the slot back for the block and waits for one again after it. Cancelled
        while waiting, the hold ends without a slot (the ``slot`` block then frees none).
        Lent after ``release``, it has nothing to give and only waits for one after."""
        if self.holding:
            self._slots._release(self._key)
            self.holding = False
        try:
            yield
        finally:
            await self._slots._acquire(self._key)
            self.holding = True

    def release(self) -> None:
        """Gives the slot back for good (idempotent): the rest of the block needs none."""
        if self.holding:
            self.holding = False
            self._slots._release(self._key)


class FairSlots:
    """``total`` slots; ``slot(key)`` holds one for the block, ``key`` naming the cluster."""

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"the hub-wide sync slots must be at least 1, not {total}")
        self._total = total
        self._borrowed = 0
        self._waiting = 0
        self._held: dict[str, int] = {}
        self._queues: dict[str, deque[_Waiter]] = {}
        # Held count -> the keys with waiters holding that many, oldest first (a dict
        # used as an ordered set). Empty buckets are removed, so min() finds the next.
        self._buckets: dict[int, dict[str, None]] = {}

    @property
    def borrowed(self) -> int:
        """Slots held now (the hub-wide syncs and deletions running)."""
        return self._borrowed

    @property
    def waiting(self) -> int:
        """Syncs and deletions waiting for a slot."""
        return self._waiting

    def use(self) -> dict[str, int]:
        """The ``hub_sync_slots`` gauge: the limit, the slots held and the waiters (plain
        counters, so a scrape from another thread reads them safely)."""
        return {"limit": self._total, "held": self._borrowed, "waiting": self._waiting}

    def held_by(self, key: str) -> int:
        return self._held.get(key, 0)

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[SlotHold]:
        hold = SlotHold(self, key)
        await self._acquire(key)
        hold.holding = True
        try:
            yield hold
        finally:
            if hold.holding:
                self._release(key)

    async def _acquire(self, key: str) -> None:
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._borrowed < self._total:  # then nobody waits (a freed slot is handed on)
            self._borrowed += 1
            self._held[key] = self._held.get(key, 0) + 1
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return
        waiter = _Waiter(key)
        self._enqueue(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:  # granted as the wait was cancelled: pass it on
                self._release(key)
            else:
                self._dequeue(waiter)
            raise

    def _release(self, key: str) -> None:
        self._set_held(key, self._held[key] - 1)
        if not self._buckets:
            self._borrowed -= 1
            return
        # The slot stays borrowed: it goes to the neediest waiter, not back to the pool.
        fewest = min(self._buckets)
        bucket = self._buckets[fewest]
        chosen = next(iter(bucket))
        del bucket[chosen]
        if not bucket:
            del self._buckets[fewest]
        queue = self._queues[chosen]
        waiter = queue.popleft()
        self._waiting -= 1
        if not queue:
            del self._queues[chosen]
        self._set_held(chosen, fewest + 1)
        waiter.granted = True
        waiter.event.set()

    def _enqueue(self, waiter: _Waiter) -> None:
        queue = self._queues.get(waiter.key)
        if queue is None:
            queue = self._queues[waiter.key] = deque()
            self._buckets.setdefault(self.held_by(waiter.key), {})[waiter.key] = None
        queue.append(waiter)
        self._waiting += 1

    def _dequeue(self, waiter: _Waiter) -> None:
        queue = self._queues[waiter.key]
        queue.remove(waiter)
        self._waiting -= 1
        if not queue:
            del self._queues[waiter.key]
            self._unfile(waiter.key, self.held_by(waiter.key))

    def _set_held(self, key: str, held: int) -> None:
        """Record ``key``'s new count; a key with waiters moves to the end of its new
        bucket (it has just been served or has just given a slot back)."""
        old = self.held_by(key)
        if held:
            self._held[key] = held
        else:
            self._held.pop(key, None)
        if key in self._queues:
            self._unfile(key, old)
            self._buckets.setdefault(held, {})[key] = None

    def _unfile(self, key: str, held: int) -> None:
        bucket = self._buckets.get(held)
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del self._buckets[held]


@asynccontextmanager
async def limiter_slot(limiter: anyio.CapacityLimiter) -> AsyncIterator[Callable[[], None]]:
    """Holds one token of ``limiter`` (a cluster's own sync limit) for the block, and yields
    the function that gives it back early (idempotent), as ``SlotHold.release`` does for a
    hub-wide slot: held on behalf of the block, not of the task that happens to end it."""
    borrower = object()
    await limiter.acquire_on_behalf_of(borrower)
    held = True

    def release() -> None:
        nonlocal held
        if held:
            held = False
            limiter.release_on_behalf_of(borrower)

    try:
        yield release
    finally:
        release()
