"""``GET /sim/stats``: how hard a simulator process works (what benchmarks read to tell a
slow hub from a saturated simulator)."""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import Callable
from typing import Any

import pytest
import urllib3

from clusters.sim import SimServer
from clusters.sim.stats import MAX_SAMPLES, Series
from tests.sim.test_controller_scheduler import deployment

pytestmark = [pytest.mark.e2e, pytest.mark.sim_only("the simulator's admin API")]


def _get(server: SimServer, path: str, token: str) -> urllib3.BaseHTTPResponse:
    pool = urllib3.PoolManager(
        ssl_context=ssl.create_default_context(cadata=server.ca_pem.decode())
    )
    try:
        return pool.request(
            "GET", server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
    finally:
        pool.clear()


def _stats(server: SimServer, query: str = "") -> dict[str, Any]:
    resp = _get(server, f"/sim/stats{query}", server.admin_token)
    assert resp.status == 200, resp.data
    return dict(json.loads(resp.data))


def test_stats_count_requests_by_verb_and_watches_and_reset_on_request(
    sim_factory: Callable[..., SimServer],
) -> None:
    server = sim_factory(clusters=["one", "two"])
    _stats(server, "?reset=true")
    for _ in range(5):
        ok = _get(server, "/clusters/one/api/v1/namespaces", server.token("one"))
        assert ok.status == 200
    time.sleep(0.35)  # the loop-lag monitor wakes every 0.1 s
    stats = _stats(server)
    assert stats["requests_by_verb"]["GET"]["count"] >= 5
    assert stats["requests"]["count"] >= 5
    assert 0 < stats["requests"]["p50_ms"] <= stats["requests"]["p99_ms"]
    assert stats["requests"]["p99_ms"] <= stats["requests"]["max_ms"]
    assert stats["loop_lag"]["count"] >= 2
    assert stats["clusters"] == 2
    assert stats["objects"] > 0
    assert stats["watches"] >= 2  # each cluster's controllers watch it
    assert stats["cpu_s"] >= 0 and stats["window_s"] > 0.3
    # ?reset=true answers the window and starts a new one.
    _stats(server, "?reset=true")
    after = _stats(server)
    assert after["requests"]["count"] <= 1  # only the stats request before this one
    assert after["window_s"] < stats["window_s"]


def test_stats_show_how_long_the_controllers_keys_waited(
    sim_factory: Callable[..., SimServer],
) -> None:
    server = sim_factory(clusters=["one"])
    _stats(server, "?reset=true")
    pool = urllib3.PoolManager(
        ssl_context=ssl.create_default_context(cadata=server.ca_pem.decode())
    )
    path = "/clusters/one/apis/apps/v1/namespaces/default/deployments"
    headers = {"Authorization": f"Bearer {server.token('one')}"}
    try:
        created = pool.request(
            "POST",
            server.url + path,
            body=json.dumps(deployment("web")),
            headers=headers,
            timeout=10,
        )
        assert created.status == 201, created.data
        deadline = time.monotonic() + 30
        while True:
            got = pool.request("GET", server.url + path + "/web", headers=headers, timeout=10)
            if json.loads(got.data).get("status", {}).get("availableReplicas") == 2:
                break
            assert time.monotonic() < deadline, got.data
            time.sleep(0.05)
    finally:
        pool.clear()
    controllers = _stats(server, "?reset=true")["controllers"]
    # the Deployment, its ReplicaSet and two pods, each reconciled at least once
    assert controllers["count"] >= 4
    assert 0 <= controllers["p50_ms"] <= controllers["p99_ms"] <= controllers["max_ms"]
    assert controllers["slices"] >= 1
    time.sleep(0.3)  # whatever was still queued settles
    _stats(server, "?reset=true")
    assert _stats(server)["controllers"]["count"] == 0  # a settled cluster reconciles nothing


def test_stats_need_the_admin_token(sim_factory: Callable[..., SimServer]) -> None:
    server = sim_factory(clusters=["one"], controllers=False)
    assert _get(server, "/sim/stats", "wrong").status == 401
    assert _get(server, "/sim/stats", server.token("one")).status == 401


def test_a_series_keeps_bounded_samples_and_exact_count_and_max() -> None:
    series = Series()
    for i in range(MAX_SAMPLES + 500):
        series.add(i / 1000)
    assert series.count == MAX_SAMPLES + 500
    assert len(series.samples) == MAX_SAMPLES
    summary = series.summary_ms()
    assert summary["max_ms"] == pytest.approx(1000 * (MAX_SAMPLES + 499) / 1000)
    assert summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]


def test_the_freezer_freezes_survivors_after_a_full_collection_only() -> None:
    import asyncio
    import gc

    from clusters.sim.stats import FullCollectionFreezer

    async def scenario() -> tuple[int, int]:
        freezer = FullCollectionFreezer()
        task = asyncio.get_running_loop().create_task(freezer.run(interval=0.01))
        gc.collect(1)  # not a full collection: nothing to freeze
        await asyncio.sleep(0.05)
        before = freezer.freezes
        gc.collect()
        await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return before, freezer.freezes

    try:
        before, after = asyncio.run(scenario())
        assert before == 0 and after == 1
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # the test process keeps its usual collector


def test_a_late_turn_says_what_the_process_did_meanwhile() -> None:
    import asyncio
    import gc

    from clusters.sim.stats import ProcessStats

    async def scenario() -> list[dict[str, float | int]]:
        controllers = [0.0]
        stats = ProcessStats(controller_seconds=lambda: controllers[0])
        stats.start()
        try:
            await asyncio.sleep(0.15)

            def stall() -> None:
                time.sleep(0.25)  # the loop blocked without using a core
                gc.collect()
                controllers[0] += 0.05  # and the controllers ran 50 ms of it

            asyncio.get_running_loop().call_soon(stall)
            await asyncio.sleep(0.3)
            return list(stats.take(reset=False)["late_turns"])
        finally:
            await stats.stop()

    late = asyncio.run(scenario())
    turn = max(late, key=lambda t: t["lag_ms"])
    assert turn["lag_ms"] > 100 and turn["interval_ms"] >= turn["lag_ms"]
    assert turn["cpu_ms"] < turn["interval_ms"]  # asleep, not busy
    assert turn["gc_ms"] > 0 and turn["requests"] == 0
    assert turn["controllers_ms"] == pytest.approx(50)
