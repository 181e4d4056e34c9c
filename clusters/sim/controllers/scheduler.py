"""One loop's share for the simulated controllers: every cluster's reconciles run in turn,
a bounded slice of them per turn of the event loop.

In a real cluster kube-controller-manager is a process of its own: however far behind its
work queues fall, the API server answers on its own cores. The simulator runs both on one
event loop, for every cluster it serves. When each cluster drained its queue in a task of
its own, yielding between keys, a rollout across 1,000 clusters put 1,000 reconciles in
the loop's ready queue at once, and every request and watch event waited behind all of
them (at 1,000 x 10, loop lag p99 of 300-800 ms while the hub's rollout ran).

Here one task runs the reconciles of every cluster: one key of each cluster with work, in
turn (round robin, so a busy cluster does not starve a quiet one), for at most
``SLICE_S`` seconds, and then gives the loop back. Requests and watch events are served
between slices, so they wait at most one slice behind the controllers; the controllers
still have every moment the server does not need. What the controllers lag behind is
measured (``delays``: from a key's enqueue to its reconcile) and served in
``GET /sim/stats``.

A reconcile must not suspend (the simulator's store answers synchronously, which the
runtime relies on too: see ``runtime``); one that did would hold up every cluster's
controllers, never the server.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Protocol

from clusters.sim.stats import Series

# Seconds of reconciles per turn of the loop: short against the 100 ms a request may wait
# in a benchmark that counts the simulator as keeping up, long against one reconcile
# (tens to hundreds of microseconds), so a turn of the loop is not paid per key.
SLICE_S = 0.01


class Worker(Protocol):
    """One cluster's controllers as the scheduler sees them."""

    def has_work(self) -> bool: ...

    async def step(self) -> None:
        """Reconcile the next key; an exception is the cluster's own failure."""

    def fail(self, exc: BaseException) -> None:
        """Stop this cluster's controllers with ``exc`` (the others go on)."""


class Scheduler:
    """Runs the reconciles of every cluster of one event loop (see the module docstring)."""

    def __init__(self, *, slice_s: float = SLICE_S) -> None:
        self.slice_s = slice_s
        self._ready: deque[Worker] = deque()
        self._queued: set[int] = set()  # id() of the workers in _ready
        self._wake = asyncio.Event()
        # Seconds from a key's enqueue to its reconcile, since the last take_delays.
        self.delays = Series()
        # Turns of the loop that ran at least one reconcile, and those that ended at the
        # slice's end with work left (the controllers were behind).
        self.slices = 0
        self.full_slices = 0
        # Seconds spent in slices since the start (never reset): /sim/stats' late turns
        self.busy_s = 0.0

    def ready(self, worker: Worker) -> None:
        """``worker`` has keys to reconcile: give it a turn (once, however often called)."""
        ident = id(worker)
        if ident not in self._queued:
            self._queued.add(ident)
            self._ready.append(worker)
            self._wake.set()

    def forget(self, worker: Worker) -> None:
        """``worker`` has stopped: no more turns."""
        ident = id(worker)
        if ident in self._queued:
            self._queued.discard(ident)
            self._ready.remove(worker)

    def take_delays(self, *, reset: bool) -> dict[str, float | int]:
        """The controllers' queue delays and slices of the window; ``reset`` starts another."""
        out = {
            **self.delays.summary_ms(),
            "slices": self.slices,
            "full_slices": self.full_slices,
        }
        if reset:
            self.delays = Series()
            self.slices = self.full_slices = 0
        return out

    async def run(self) -> None:
        """Run turns until cancelled."""
        ready = self._ready
        while True:
            if not ready:
                self._wake.clear()
                await self._wake.wait()
                continue
            self.slices += 1
            start = time.perf_counter()
            end = start + self.slice_s
            while ready:
                worker = ready.popleft()
                self._queued.discard(id(worker))
                try:
                    await worker.step()
                except Exception as exc:
                    worker.fail(exc)
                else:
                    if worker.has_work():
                        self.ready(worker)
                if time.perf_counter() >= end:
                    if ready:
                        self.full_slices += 1
                    break
            self.busy_s += time.perf_counter() - start
            # Back to the loop: what arrived meanwhile (requests, watch events, timers)
            # runs before the next slice.
            await asyncio.sleep(0)
