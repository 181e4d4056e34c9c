"""The controllers' scheduler: every cluster's reconciles in turn, a bounded slice per turn
of the event loop, so what the server has to do runs between slices. Orders of events are
asserted, never times: a slice of 0 s is one reconcile, a slice of an hour is all of them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from clusters.sim.controllers import HANDLERS
from clusters.sim.controllers.runtime import Runtime
from clusters.sim.controllers.scheduler import Scheduler
from clusters.sim.objectapi import StoreObjectAPI
from clusters.sim.store import ClusterStore

pytestmark = pytest.mark.sim_only("the simulated controllers' scheduler")


class _Worker:
    """A cluster's controllers reduced to a list of keys, logging each step."""

    def __init__(self, name: str, keys: int, log: list[str], *, broken_at: int = -1) -> None:
        self.name = name
        self.left = keys
        self.log = log
        self.broken_at = broken_at
        self.failed: BaseException | None = None

    def has_work(self) -> bool:
        return self.left > 0 and self.failed is None

    async def step(self) -> None:
        self.left -= 1
        self.log.append(self.name)
        if self.left == self.broken_at:
            raise RuntimeError(f"{self.name} broke")

    def fail(self, exc: BaseException) -> None:
        self.failed = exc


async def _run_until(scheduler: Scheduler, done: Callable[[], bool]) -> None:
    task = asyncio.get_running_loop().create_task(scheduler.run())
    try:
        for _ in range(10_000):
            if done():
                return
            await asyncio.sleep(0)
        raise AssertionError("the scheduler did not finish the work")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _with_server_ticks(
    scheduler: Scheduler, workers: list[_Worker], log: list[str]
) -> Callable[[], Awaitable[None]]:
    """A stand-in for the server: a callback that logs "io" on every turn of the loop."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        running = True

        def tick() -> None:
            log.append("io")
            if running:
                loop.call_soon(tick)

        loop.call_soon(tick)
        for w in workers:
            scheduler.ready(w)
        try:
            await _run_until(scheduler, lambda: not any(w.has_work() for w in workers))
        finally:
            running = False

    return scenario


def test_a_slice_of_one_reconcile_lets_the_loop_turn_between_reconciles() -> None:
    log: list[str] = []
    scheduler = Scheduler(slice_s=0.0)
    workers = [_Worker("a", 3, log), _Worker("b", 3, log)]
    asyncio.run(_with_server_ticks(scheduler, workers, log)())
    steps = [i for i, entry in enumerate(log) if entry != "io"]
    assert len(steps) == 6
    for before, after in itertools.pairwise(steps):
        assert "io" in log[before + 1 : after], log  # the server ran between the two
    assert scheduler.slices == 6


def test_a_long_slice_runs_every_ready_reconcile_in_one_turn() -> None:
    log: list[str] = []
    scheduler = Scheduler(slice_s=3600.0)
    workers = [_Worker("a", 3, log), _Worker("b", 3, log)]
    asyncio.run(_with_server_ticks(scheduler, workers, log)())
    steps = [entry for entry in log if entry != "io"]
    first, last = log.index(steps[0]), len(log) - 1 - log[::-1].index(steps[-1])
    assert "io" not in log[first : last + 1]  # no turn of the loop in between
    assert scheduler.slices == 1 and scheduler.full_slices == 0


def test_clusters_take_turns_one_key_each() -> None:
    log: list[str] = []
    scheduler = Scheduler(slice_s=3600.0)
    workers = [_Worker("busy", 4, log), _Worker("quiet", 1, log), _Worker("other", 2, log)]

    async def scenario() -> None:
        for w in workers:
            scheduler.ready(w)
            scheduler.ready(w)  # ready twice is one turn
        await _run_until(scheduler, lambda: not any(w.has_work() for w in workers))

    asyncio.run(scenario())
    assert log == ["busy", "quiet", "other", "busy", "other", "busy", "busy"]


def test_a_failing_cluster_is_stopped_and_the_others_go_on() -> None:
    log: list[str] = []
    scheduler = Scheduler(slice_s=3600.0)
    broken = _Worker("broken", 3, log, broken_at=1)
    fine = _Worker("fine", 3, log)

    async def scenario() -> None:
        scheduler.ready(broken)
        scheduler.ready(fine)
        await _run_until(scheduler, lambda: not fine.has_work())

    asyncio.run(scenario())
    assert isinstance(broken.failed, RuntimeError)
    assert log.count("broken") == 2 and log.count("fine") == 3


def test_a_forgotten_cluster_gets_no_more_turns() -> None:
    log: list[str] = []
    scheduler = Scheduler(slice_s=0.0)
    gone = _Worker("gone", 3, log)
    stays = _Worker("stays", 3, log)

    async def scenario() -> None:
        scheduler.ready(gone)
        scheduler.ready(stays)
        scheduler.forget(gone)
        scheduler.forget(gone)  # twice is harmless
        await _run_until(scheduler, lambda: not stays.has_work())

    asyncio.run(scenario())
    assert log == ["stays"] * 3


NS = "default"


def deployment(name: str) -> dict[str, Any]:
    """A Deployment of two replicas in ``NS`` (the e2e stats test uses it too)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
            },
        },
    }


def test_clusters_sharing_a_scheduler_roll_out_and_their_waits_are_measured() -> None:
    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], bool, float]:
        scheduler = Scheduler()
        apis = [StoreObjectAPI(ClusterStore(f"c{i}")) for i in range(3)]
        loop = asyncio.get_running_loop()
        driver = loop.create_task(scheduler.run())
        runtimes = [
            Runtime(api, ready_delay=0.01, handlers=HANDLERS, scheduler=scheduler) for api in apis
        ]
        tasks = [loop.create_task(rt.run()) for rt in runtimes]
        for api in apis:
            await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
            await api.create(deployment("web"))
        deadline = loop.time() + 30
        while True:
            found = [await api.get("apps/v1", "Deployment", NS, "web") for api in apis]
            if all(((d or {}).get("status") or {}).get("availableReplicas") == 2 for d in found):
                break
            assert loop.time() < deadline, found
            await asyncio.sleep(0.01)
        figures = scheduler.take_delays(reset=True)
        tasks[0].cancel()  # a cluster leaves: the others keep their controllers
        await asyncio.gather(tasks[0], return_exceptions=True)
        left_alone = all(not t.done() for t in tasks[1:]) and not driver.done()
        for task in [*tasks, driver]:
            task.cancel()
        await asyncio.gather(*tasks, driver, return_exceptions=True)
        return [d or {} for d in found], figures, left_alone, scheduler.busy_s

    found, figures, left_alone, busy = asyncio.run(scenario())
    assert all(d["status"]["readyReplicas"] == 2 for d in found)
    assert isinstance(figures["count"], int) and figures["count"] >= 3 * 4
    assert 0 <= figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert isinstance(figures["slices"], int) and figures["slices"] >= 1
    assert left_alone
    assert busy > 0
