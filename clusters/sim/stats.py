"""How hard one simulator process is working: CPU, event-loop lag, request latency.

A benchmark must know whether the simulator kept up, or its figures measure the
simulator instead of the hub. Every process keeps one window of figures (since it
started or since the last reset) and serves them at ``GET /sim/stats`` (admin token;
``?reset=true`` starts a new window after answering). Cheap enough to be always on: a
monitor task wakes ten times a second, and each request appends one float.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clusters.eventloop import running_loop
from clusters.sim import compiled

LAG_INTERVAL = 0.1  # seconds between the monitor's wake-ups
LATE_S = 0.1  # a wake-up later than this is kept in ``late_turns``
MAX_LATE = 100
MAX_SAMPLES = 100_000  # per series and window; beyond it a uniform sample is kept


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Series:
    """Samples of one figure (seconds) in a window, kept bounded by reservoir sampling
    so a long window costs constant memory and its percentiles stay unbiased."""

    count: int = 0
    maximum: float = 0.0
    total: float = 0.0
    samples: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value > self.maximum:
            self.maximum = value
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(value)
        else:
            slot = random.randrange(self.count)
            if slot < MAX_SAMPLES:
                self.samples[slot] = value

    def summary_ms(self) -> dict[str, float | int]:
        ordered = sorted(self.samples)
        return {
            "count": self.count,
            "mean_ms": round(1000 * self.total / self.count, 3) if self.count else 0.0,
            "p50_ms": round(1000 * _percentile(ordered, 0.50), 3),
            "p99_ms": round(1000 * _percentile(ordered, 0.99), 3),
            "max_ms": round(1000 * self.maximum, 3),
        }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):  # not Linux: the peak is what getrusage has
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ProcessStats:
    """The current window of one simulator process."""

    def __init__(self, *, controller_seconds: Callable[[], float] | None = None) -> None:
        # Seconds the simulated controllers have run so far (the server's scheduler)
        self._controller_seconds = controller_seconds or (lambda: 0.0)
        self._reset()
        self._task: asyncio.Task[None] | None = None
        self._gc_started = 0.0
        # Running totals since the start (never reset), for what a late turn held
        self._gc_seconds = 0.0
        self._requests_served = 0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        generation = int(info.get("generation", 0))
        series = self.gc.get(generation)
        if series is None:
            series = self.gc[generation] = Series()
        pause = time.perf_counter() - self._gc_started
        self._gc_seconds += pause
        series.add(pause)

    def _reset(self) -> None:
        self.started = time.monotonic()
        self.cpu_at_start = _cpu_seconds()
        self.lag = Series()
        # The monitor's intervals that ended later than LATE_S, newest last (at most
        # MAX_LATE): how long, and what the process did in them (its CPU: less than the
        # interval means the machine gave the process no core; the garbage collector's
        # pauses; requests served).
        self.late: list[dict[str, float | int]] = []
        self.requests: dict[str, Series] = {}
        self.watches_opened = 0
        # HTTP/2 (``hub sim serve --http2``): connections and streams opened in the window
        self.h2_connections_opened = 0
        self.h2_streams_opened = 0
        # The garbage collector's pauses by generation: a full collection walks every
        # stored object, and stops the loop while it does.
        self.gc: dict[int, Series] = {}

    def start(self) -> None:
        """Start the lag monitor on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._monitor(), name="sim-loop-lag"
            )
            gc.callbacks.append(self._on_gc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            with contextlib.suppress(ValueError):
                gc.callbacks.remove(self._on_gc)

    async def _monitor(self) -> None:
        # The loop is late by as long as callbacks ran past the timer: that delay is what
        # every request and watch event queued behind them waited too.
        while True:
            started = time.perf_counter()
            cpu, gc_s, served = _cpu_seconds(), self._gc_seconds, self._requests_served
            controllers = self._controller_seconds()
            await asyncio.sleep(LAG_INTERVAL)
            now = time.perf_counter()
            lag = max(0.0, now - started - LAG_INTERVAL)
            self.lag.add(lag)
            if lag > LATE_S:
                self.late.append(
                    {
                        # wall clock, to line a late turn up with what its clients did
                        "ended_at": round(time.time(), 3),
                        "lag_ms": round(1000 * lag, 1),
                        "interval_ms": round(1000 * (now - started), 1),
                        "cpu_ms": round(1000 * (_cpu_seconds() - cpu), 1),
                        "gc_ms": round(1000 * (self._gc_seconds - gc_s), 1),
                        "controllers_ms": round(
                            1000 * (self._controller_seconds() - controllers), 1
                        ),
                        "requests": self._requests_served - served,
                    }
                )
                del self.late[:-MAX_LATE]

    def request(self, verb: str, seconds: float) -> None:
        self._requests_served += 1
        series = self.requests.get(verb)
        if series is None:
            series = self.requests[verb] = Series()
        series.add(seconds)

    def snapshot(self, **gauges: Any) -> dict[str, Any]:
        wall = time.monotonic() - self.started
        cpu = _cpu_seconds() - self.cpu_at_start
        every = Series()
        for series in self.requests.values():
            every.count += series.count
            every.total += series.total
            every.maximum = max(every.maximum, series.maximum)
            every.samples.extend(series.samples)
        return {
            "pid": os.getpid(),
            "event_loop": running_loop(),
            "compiled": compiled.state().compiled,
            "build": compiled.state().reason,
            "window_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "cpu_share": round(cpu / wall, 3) if wall > 0 else 0.0,
            "rss_mb": round(_rss_mb(), 1),
            "loop_lag": self.lag.summary_ms(),
            "late_turns": list(self.late),
            "requests": every.summary_ms(),
            "requests_by_verb": {k: v.summary_ms() for k, v in sorted(self.requests.items())},
            "watches_opened": self.watches_opened,
            "h2_connections_opened": self.h2_connections_opened,
            "h2_streams_opened": self.h2_streams_opened,
            "gc_pauses": {f"gen{k}": v.summary_ms() for k, v in sorted(self.gc.items())},
            **gauges,
        }

    def take(self, *, reset: bool, **gauges: Any) -> dict[str, Any]:
        out = self.snapshot(**gauges)
        if reset:
            self._reset()
        return out


class FullCollectionFreezer:
    """Keeps the garbage collector's full collections short in a long-running server.

    A full collection walks every tracked object, and a simulator's objects (every stored
    Kubernetes object and its history) are nearly all long-lived: at 300 clusters x 10
    apps a full collection stopped the loop for up to 3.9 s, stalling every request and
    watch of every cluster. Right after a full collection everything left is alive, so
    that is when the survivors move to the permanent generation (``gc.freeze``); later
    full collections walk only what was allocated since. Stored objects are acyclic JSON
    and are still freed by reference counting when replaced; what a freeze can keep is a
    reference cycle that was alive at that moment and dies later (rare, and small, here).
    Process-wide, so only a simulator process of its own (``hub sim serve``) uses it.
    """

    def __init__(self) -> None:
        self._full = False
        self.freezes = 0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info.get("generation") == 2:
            self._full = True  # freeze from the loop, not inside the collector

    async def run(self, interval: float = 1.0) -> None:
        gc.callbacks.append(self._on_gc)
        try:
            while True:
                await asyncio.sleep(interval)
                if self._full:
                    self._full = False
                    gc.freeze()
                    self.freezes += 1
        finally:
            with contextlib.suppress(ValueError):
                gc.callbacks.remove(self._on_gc)
