"""Writes first: while syncs are on their way to their first write, the hub's other work
on the loop waits its turn.

The event loop runs ready tasks in turn, and a commit makes a thousand syncs ready at
once. Each then got a thousandth of the loop: every sync had started within 1.2 s of a
100 x 10 image commit, yet the median one reached its PATCH 1.7 s after its start, the
last ones 3 s after the first, and their rollouts only began then. The work that shares
the loop with them (status refreshes, the history records of finished syncs) can as
well run after the writes are out. The writes leave sooner, the clusters roll out while
the hub records, and the commit ends sooner for the same CPU.

Low-priority work calls ``wait_turn``: it returns at once when no sync is on its way to a
write, else when none is left, when those that are stall (none started or wrote for
``quiet_s``: they wait on slow clusters, not on the loop), or after ``cap_s`` at most.
A sync holds ``on_the_way`` from its start until its first writes are out (``arrived``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio

#: Syncs that neither started nor wrote for this long wait on their clusters, not on the
#: loop: low-priority work goes on.
QUIET_S = 0.05
#: The longest low-priority work waits in one ``wait_turn``.
CAP_S = 0.5


class WritesFirst:
    """The hub-wide count of syncs on their way to their first write, and the gate other
    work waits at (see the module docstring). Used on one event loop."""

    def __init__(self, *, quiet_s: float = QUIET_S, cap_s: float = CAP_S) -> None:
        self.quiet_s = quiet_s
        self.cap_s = cap_s
        self.pending = 0  # syncs on their way to their first write
        self._progress = 0.0  # when one last started or arrived (monotonic)
        self._open: anyio.Event | None = None  # set when the waiting work may go

    @contextmanager
    def on_the_way(self) -> Iterator[Callable[[], None]]:
        """A sync on its way to its first write, until it calls the ``arrived`` function
        this yields (idempotent), or leaves the block."""
        self.pending += 1
        self._progress = time.monotonic()
        done = False

        def arrived() -> None:
            nonlocal done
            if done:
                return
            done = True
            self.pending -= 1
            self._progress = time.monotonic()
            if not self.pending and self._open is not None:
                self._open.set()
                self._open = None

        try:
            yield arrived
        finally:
            arrived()

    async def wait_turn(self) -> None:
        """Wait while syncs make their way to a write (see the module docstring)."""
        now = time.monotonic()
        if not self.pending or now - self._progress >= self.quiet_s:
            return
        gate = self._open
        if gate is not None:  # another waiter keeps the time: wait for it to open
            with anyio.move_on_after(self.cap_s):
                await gate.wait()
            return
        # The first waiter keeps the time for all: it wakes once per quiet_s at most.
        gate = self._open = anyio.Event()
        deadline = now + self.cap_s
        try:
            while not gate.is_set() and self.pending:
                now = time.monotonic()
                wake = min(deadline, self._progress + self.quiet_s)
                if now >= wake:
                    break
                with anyio.move_on_after(wake - now):
                    await gate.wait()
        finally:
            if self._open is gate:
                self._open = None
            gate.set()
