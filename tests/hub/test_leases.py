"""Leases, assignment and fencing (hub.leases): the pure decisions, and the SQL on both
backends (SQLite and a real PostgreSQL server, ``db_location``)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from hub.apps import AppStore
from hub.appsets import AppSetController
from hub.errors import HubUsageError
from hub.leases import (
    LEADER,
    ClusterFence,
    FencedAppStore,
    FencedHistoryStorage,
    Fences,
    LeaderFencedStore,
    LeaseLost,
    LeaseLostLogFilter,
    LeaseOptions,
    LeaseRow,
    LeaseStore,
    assignment,
    cluster_lease,
    now_sql,
    owner_of,
    plan,
    quiet_lease_lost,
    shard_view,
)
from hub.shards import Shards
from hub.store import Store
from hub.sync.history import Operation, OperationPhase, SyncHistory, Trigger
from hub.worker import ClusterWorker
from tests.hub.test_apps_store import desired

CLUSTERS = [f"c{i:02d}" for i in range(60)]
OPTIONS = LeaseOptions.for_lease(15.0)


# ---------------------------------------------------------------- assignment (pure)


def test_rendezvous_is_deterministic_and_order_free() -> None:
    a = assignment(CLUSTERS, ["r1", "r2", "r3"])
    assert a == assignment(reversed(CLUSTERS), ["r3", "r1", "r2", "r1"])
    assert set(a.values()) == {"r1", "r2", "r3"}
    assert owner_of("x", []) is None and assignment(CLUSTERS, []) == {}


def test_a_join_moves_only_clusters_to_the_new_replica() -> None:
    before = assignment(CLUSTERS, ["r1", "r2", "r3"])
    after = assignment(CLUSTERS, ["r1", "r2", "r3", "r4"])
    moved = {c for c in CLUSTERS if before[c] != after[c]}
    assert moved and all(after[c] == "r4" for c in moved)
    # roughly a quarter, not a reshuffle
    assert len(moved) < len(CLUSTERS) / 2


def test_a_leave_moves_only_the_clusters_of_the_replica_that_left() -> None:
    before = assignment(CLUSTERS, ["r1", "r2", "r3"])
    after = assignment(CLUSTERS, ["r1", "r3"])
    for c in CLUSTERS:
        if before[c] != "r2":
            assert after[c] == before[c]
        else:
            assert after[c] in {"r1", "r3"}


def _row(cluster: str, owner: str | None, expires: float, token: int = 1) -> LeaseRow:
    return LeaseRow(name=cluster_lease(cluster), owner=owner, token=token, expires_at=expires)


def test_plan_acquires_only_free_or_expired_leases_it_should_own() -> None:
    clusters = [f"k{i}" for i in range(20)]
    mine = [c for c, o in assignment(clusters, ["me", "other"]).items() if o == "me"]
    assert len(mine) >= 3
    free, expired, held = mine[0], mine[1], mine[2]
    leases = {
        cluster_lease(free): _row(free, None, 0.0),
        cluster_lease(expired): _row(expired, "dead", 99.0),
        cluster_lease(held): _row(held, "other", 200.0),  # not expired: wait for it
    }
    decision = plan(
        me="me", live=["me", "other"], clusters=clusters, leases=leases, held=[], now=100.0
    )
    assert free in decision.acquire and expired in decision.acquire
    assert held not in decision.acquire
    assert set(decision.acquire) <= set(mine)


def test_plan_hands_off_what_belongs_to_a_live_replica_and_drops_removed_clusters() -> None:
    clusters = ["a", "b", "c", "d", "e", "f"]
    wanted = assignment(clusters, ["me", "new"])
    theirs = [c for c, o in wanted.items() if o == "new"]
    decision = plan(
        me="me",
        live=["me", "new"],
        clusters=clusters,
        leases={},
        held=[*clusters, "gone"],
        now=0.0,
    )
    assert sorted(decision.hand_off) == sorted(theirs)
    assert decision.drop == ("gone",)
    assert decision.acquire == ()


def test_lease_timing_is_checked() -> None:
    with pytest.raises(Exception, match="heartbeat"):
        LeaseOptions(lease_s=3.0, heartbeat_s=3.0, margin_s=1.0)
    assert LeaseOptions.from_env({"HUB_LEASE_SECONDS": "3"}).heartbeat_s == 1.0
    with pytest.raises(Exception, match="HUB_LEASE_SECONDS"):
        LeaseOptions.from_env({"HUB_LEASE_SECONDS": "soon"})


# ---------------------------------------------------------------- the SQL (both backends)


@pytest.fixture
def store(db_location: Path | str) -> Iterator[Store]:
    with Store.open(db_location, create=True) as s:
        with s.write() as db:
            for name in ("east", "west"):
                db.execute(
                    "INSERT INTO clusters (name, server, credential_kind, credential_rev, "
                    "key_id, wrapped_key, nonce, ciphertext) VALUES (?, ?, 'token', 'r', "
                    "'k', ?, ?, ?)",
                    (name, f"https://{name}", b"\0", b"\0", b"\0"),
                )
        yield s


def _expire(store: Store, name: str) -> None:
    """What the passing of time does to a lease (no sleeping in tests)."""
    with store.write() as db:
        db.execute("UPDATE leases SET expires_at = 0 WHERE name = ?", (name,))


def test_only_one_replica_acquires_a_lease_and_each_acquisition_bumps_the_token(
    store: Store,
) -> None:
    a, b = LeaseStore(store, "a", OPTIONS), LeaseStore(store, "b", OPTIONS)
    a.beat()
    b.beat()
    east = cluster_lease("east")
    assert a.acquire(east) == 1
    assert b.acquire(east) is None  # held and not expired
    assert b.beat().leases[east].owner == "a"
    _expire(store, east)
    assert b.acquire(east) == 2
    assert a.acquire(east) is None
    assert b.release(east, 2)
    assert not a.release(east, 1)  # an old token releases nothing
    assert a.acquire(east) == 3


def test_concurrent_acquisitions_have_exactly_one_winner(store: Store) -> None:
    replicas = [LeaseStore(store, f"r{i}", OPTIONS) for i in range(6)]
    for r in replicas:
        r.beat()
    won: list[str] = []
    barrier = threading.Barrier(len(replicas))

    def race(r: LeaseStore) -> None:
        barrier.wait()
        if r.acquire(cluster_lease("west")) is not None:
            won.append(r.replica)

    threads = [threading.Thread(target=race, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1


def test_a_beat_renews_only_unexpired_leases_of_this_replica(store: Store) -> None:
    a, b = LeaseStore(store, "a", OPTIONS), LeaseStore(store, "b", OPTIONS)
    a.beat()
    token = a.acquire(cluster_lease("east"))
    assert a.acquire(LEADER) == 1
    beat = a.beat()
    assert beat.renewed == {cluster_lease("east"): token, LEADER: 1}
    assert {r.id for r in beat.live} == {"a"}
    _expire(store, cluster_lease("east"))
    assert cluster_lease("east") not in a.beat().renewed  # expired: lost, not renewed
    b.beat()
    view = shard_view(store)
    assert view.leader == "a" and set(view.replicas) == {"a", "b"}
    a.leave()
    assert shard_view(store).leader is None
    assert "a" not in shard_view(store).replicas


def test_requests_are_claimed_once_by_the_owner(store: Store) -> None:
    with AppStore(store).transaction() as txn:
        txn.put_desired(desired("web", cluster="east"))
    a, b = LeaseStore(store, "a", OPTIONS), LeaseStore(store, "b", OPTIONS)
    b.put_request("east", "web", "sync", {"prune": True})
    b.put_request("west", "db", "refresh", {})
    assert b.pending_clusters() == {"east", "west"}
    a.beat()
    token = a.acquire(cluster_lease("east"))
    assert token is not None
    fence = ClusterFence(cluster_lease("east"), token, time.monotonic() + 60)
    assert a.claim_requests("east", fence) == [("web", "sync", {"prune": True})]
    assert a.claim_requests("east", fence) == []  # claimed: not handed out twice
    # Claimed, not deleted: it goes when its operation starts (below).
    assert b.pending_clusters() == {"east", "west"}


def _sync(app: str, cluster: str, op_id: str, trigger: Trigger = Trigger.USER) -> Operation:
    return Operation(
        app=app,
        operation_id=op_id,
        cluster=cluster,
        revision="abc",
        initiated_by="test",
        trigger=trigger,
        started_at=datetime.now(UTC),
    )


def test_a_claimed_request_survives_an_owner_that_dies_before_starting_it(store: Store) -> None:
    with AppStore(store).transaction() as txn:
        txn.put_desired(desired("web", cluster="east"))
        txn.put_desired(desired("gone", cluster="east"))
    b = LeaseStore(store, "b", OPTIONS)
    b.put_request("east", "web", "sync", {"prune": True, "who": "alice"})
    b.put_request("east", "web", "refresh", {})
    b.put_request("east", "gone", "sync", {})
    with AppStore(store).transaction() as txn:
        txn.delete_app("gone")
    a, a_fences = _held(store, "a", "east")
    a_fence = a_fences.get("east")
    assert a_fence is not None
    claimed = a.claim_requests("east", a_fence)
    assert sorted(claimed, key=lambda r: r[1]) == [
        ("web", "refresh", {}),
        ("web", "sync", {"prune": True, "who": "alice"}),
    ]
    # a dies before its worker starts the sync (its claim is simply abandoned) and its
    # lease expires: the new owner claims the request again, under its own token.
    _expire(store, cluster_lease("east"))
    c, c_fences = _held(store, "c", "east")
    c_fence = c_fences.get("east")
    assert c_fence is not None and c_fence.token == a_fence.token + 1
    assert c.claim_requests("east", c_fence) == [("web", "sync", {"prune": True, "who": "alice"})]
    assert c.claim_requests("east", c_fence) == []
    # A stale claimer cannot start it, and its refused write leaves the request.
    with pytest.raises(LeaseLost):
        SyncHistory(FencedHistoryStorage(store, a_fences), lambda: pytest.fail()).begin(
            _sync("web", "east", "op-a")
        )
    history = SyncHistory(FencedHistoryStorage(store, c_fences), lambda: pytest.fail())
    history.begin(_sync("web", "east", "op-auto", Trigger.AUTOMATED))  # not the one asked
    assert c.pending_clusters() == {"east"}
    # Recorded as started, in the same transaction: the request is done with.
    history.begin(_sync("web", "east", "op-c"))
    assert c.pending_clusters() == set()


def test_a_request_claimed_by_a_restarted_worker_is_claimable_again(store: Store) -> None:
    with AppStore(store).transaction() as txn:
        txn.put_desired(desired("web", cluster="east"))
    a, fences = _held(store, "a", "east")
    fence = fences.get("east")
    assert fence is not None
    a.put_request("east", "web", "rollback", {"id": 3})
    assert a.claim_requests("east", fence) == [("web", "rollback", {"id": 3})]
    history = SyncHistory(FencedHistoryStorage(store, fences), lambda: pytest.fail())
    history.begin(_sync("web", "east", "op-1"))  # an operation started before: kept
    a.put_request("east", "web", "sync", {})
    assert a.claim_requests("east", fence) == [("web", "sync", {})]
    history.update(_sync("web", "east", "op-1"))  # the same operation again: not a start
    assert a.pending_clusters() == {"east"}
    # The worker is replaced under the same token before starting it: handed out again.
    assert a.unclaim("east", fence.token) == 1
    assert a.claim_requests("east", fence) == [("web", "sync", {})]
    history.begin(_sync("web", "east", "op-2", Trigger.ROLLBACK))
    assert a.pending_clusters() == set()


def test_a_replica_id_is_refused_while_a_live_replica_uses_it(store: Store) -> None:
    with store.write() as db:
        db.execute(
            "INSERT INTO replicas (id, host, pid, url, started_at, heartbeat_at) "
            f"VALUES ('r1', 'elsewhere', 4242, '', 0, {now_sql(store)})"
        )
    with pytest.raises(HubUsageError) as refused:
        LeaseStore(store, "r1", OPTIONS).join()
    message = str(refused.value)
    assert "'r1'" in message and "host elsewhere, pid 4242" in message
    assert "--replica-id" in message
    LeaseStore(store, "r2", OPTIONS).join()
    LeaseStore(store, "r2", OPTIONS).join()  # this process again: not another replica
    with store.write() as db:  # r1's heartbeat is older than the lease: it is gone
        db.execute("UPDATE replicas SET heartbeat_at = 0 WHERE id = 'r1'")
    LeaseStore(store, "r1", OPTIONS).join()
    assert {r.id for r in LeaseStore(store, "r1", OPTIONS).beat().live} == {"r1", "r2"}


def test_a_stale_leader_token_cannot_write_an_application(store: Store) -> None:
    a, b = LeaseStore(store, "a", OPTIONS), LeaseStore(store, "b", OPTIONS)
    a.beat()
    token = a.acquire(LEADER)
    assert token is not None
    fence = ClusterFence(LEADER, token, time.monotonic() + 60)
    leader_store = LeaderFencedStore(store, lambda: fence).as_store()
    controller = AppSetController(leader_store, cast(Any, None))
    with controller.apps.transaction() as txn:
        txn.put_desired(desired("web", cluster="east"))
    _expire(store, LEADER)
    assert b.acquire(LEADER) == token + 1  # b leads now; a has not noticed yet
    with (
        pytest.raises(LeaseLost, match=f"fencing token {token}"),
        controller.apps.transaction() as txn,
    ):
        txn.put_desired(desired("db", cluster="east"))
    assert AppStore(store).get("db") is None and AppStore(store).get("web") is not None
    assert fence.lost
    not_leader = LeaderFencedStore(store, lambda: None).as_store()
    with pytest.raises(LeaseLost, match="leader lease"), AppStore(not_leader).transaction() as txn:
        txn.put_desired(desired("db", cluster="east"))
    assert AppStore(store).get("db") is None


def test_a_lost_lease_in_a_sync_is_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    worker_log = logging.getLogger(ClusterWorker.__module__)
    quiet_lease_lost(worker_log)
    quiet_lease_lost(worker_log)  # once
    assert sum(isinstance(f, LeaseLostLogFilter) for f in worker_log.filters) == 1
    fence = ClusterFence(cluster_lease("east"), 7, time.monotonic() + 60)
    fence.lose("taken over")
    caplog.set_level(logging.INFO)
    try:
        try:
            fence.check_local()
        except LeaseLost as exc:
            raise RuntimeError("engine: writing the operation failed") from exc
    except RuntimeError:
        # What the worker does with an exception out of the engine (hub/worker/operations.py).
        worker_log.exception("app %s on %s: the sync failed unexpectedly", "web", "east")
    try:
        raise ValueError("a real bug")
    except ValueError:
        worker_log.exception("app %s on %s: the sync failed unexpectedly", "db", "east")
    lost, bug = caplog.records
    assert (lost.levelname, lost.getMessage(), lost.exc_info) == (
        "WARNING",
        "lost the lease of cluster east (token 7): stopping its worker",
        None,
    )
    assert "Traceback" not in caplog.handler.format(lost)
    assert "Traceback" in caplog.handler.format(bug)
    assert bug.levelname == "ERROR" and bug.exc_info is not None  # bugs keep their traceback


# ---------------------------------------------------------------- fencing


def _held(store: Store, replica: str, cluster: str) -> tuple[LeaseStore, Fences]:
    leases = LeaseStore(store, replica, OPTIONS)
    leases.beat()
    token = leases.acquire(cluster_lease(cluster))
    assert token is not None
    fences = Fences(store)
    fences.put(cluster, ClusterFence(cluster_lease(cluster), token, time.monotonic() + 60))
    return leases, fences


def test_a_status_write_with_a_superseded_token_is_refused_and_changes_nothing(
    store: Store,
) -> None:
    with AppStore(store).transaction() as txn:
        txn.put_desired(desired("web", cluster="east"))
    _, a_fences = _held(store, "a", "east")
    a_apps = FencedAppStore(store, a_fences)
    a_apps.set_status("web", sync_status="Synced")
    _expire(store, cluster_lease("east"))
    _, b_fences = _held(store, "b", "east")  # b takes over: token 2
    with pytest.raises(LeaseLost, match="fencing token 1"):
        a_apps.set_status("web", sync_status="OutOfSync", health_status="Degraded")
    fence = a_fences.get("east")
    assert fence is not None and fence.lost and not fence.valid()
    rec = AppStore(store).get("web")
    assert rec is not None and (rec.sync_status, rec.health_status) == ("Synced", "Unknown")
    FencedAppStore(store, b_fences).set_status("web", health_status="Healthy")
    with pytest.raises(LeaseLost):
        a_apps.finish_deletion("web")
    assert AppStore(store).get("web") is not None


def test_history_writes_are_fenced_by_the_cluster_of_the_operation(store: Store) -> None:
    _, a_fences = _held(store, "a", "east")
    history = SyncHistory(FencedHistoryStorage(store, a_fences), lambda: pytest.fail("no keys"))
    op = Operation(
        app="web",
        operation_id="op1",
        cluster="east",
        revision="abc",
        source={},
        initiated_by="test",
        trigger=Trigger.AUTOMATED,
        started_at=datetime.now(UTC),
        phase=OperationPhase.RUNNING,
    )
    history.begin(op)
    with pytest.raises(LeaseLost, match="holds no lease"):
        history.begin(replace(op, app="db", cluster="west"))
    _expire(store, cluster_lease("east"))
    _held(store, "b", "east")
    with pytest.raises(LeaseLost):
        history.update(op)
    assert [o.operation_id for o in SyncHistory(store, lambda: pytest.fail()).interrupted()] == [
        "op1"
    ]


def test_a_fence_past_its_local_deadline_refuses_without_asking_the_database() -> None:
    fence = ClusterFence(cluster_lease("east"), 1, time.monotonic() - 0.001)
    assert not fence.valid()
    with pytest.raises(LeaseLost, match="not renewed in time"):
        fence.check_local()
    renewed = ClusterFence(cluster_lease("east"), 1, time.monotonic() + 60)
    renewed.check_local()
    renewed.lose("taken over")
    with pytest.raises(LeaseLost, match="taken over"):
        renewed.check_local()


def test_a_take_over_waits_for_a_fenced_write_in_flight_then_refuses_the_old_token(
    store: Store,
) -> None:
    """The fence check reads the token without a row lock: what orders a take-over after a
    fenced write is the store's write lock, which both hold (the heartbeat, which does not
    take it, never changes a token)."""
    with AppStore(store).transaction() as txn:
        txn.put_desired(desired("web", cluster="east"))
    _, a_fences = _held(store, "a", "east")
    b = LeaseStore(store, "b", OPTIONS)
    b.beat()
    _expire(store, cluster_lease("east"))
    checked, commit = threading.Event(), threading.Event()

    def write_in_flight() -> None:
        with store.atomic():
            FencedAppStore(store, a_fences).set_status("web", sync_status="Synced")
            checked.set()  # token 1 checked and written, not committed yet
            commit.wait(30)

    writer = threading.Thread(target=write_in_flight)
    writer.start()
    assert checked.wait(10)
    tokens: list[int | None] = []
    taker = threading.Thread(target=lambda: tokens.append(b.acquire(cluster_lease("east"))))
    taker.start()
    taker.join(timeout=0.5)
    try:
        assert taker.is_alive() and not tokens  # the take-over waits for the write to commit
    finally:
        commit.set()
        writer.join()
        taker.join()
    assert tokens == [2]
    rec = AppStore(store).get("web")
    assert rec is not None and rec.sync_status == "Synced"  # written under token 1, in time
    with pytest.raises(LeaseLost, match="fencing token 1"):
        FencedAppStore(store, a_fences).set_status("web", sync_status="OutOfSync")


# ---------------------------------------------------------------- the heartbeat


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    with Store.open(postgres_url) as s:
        with s.write() as db:
            db.execute(
                "INSERT INTO clusters (name, server, credential_kind, credential_rev, key_id, "
                "wrapped_key, nonce, ciphertext) VALUES ('east', 'https://east', 'token', 'r', "
                "'k', ?, ?, ?)",
                (b"\0", b"\0", b"\0"),
            )
        yield s


def test_a_renewal_does_not_wait_for_a_writer_stalled_in_its_transaction(
    pg_store: Store,
) -> None:
    """On PostgreSQL every write transaction of every replica queues on one advisory lock.
    A writer stalled while holding it (its process paused, starved or cut off) held up the
    heartbeat of every replica: all their leases lapsed together although each was
    healthy. The renewal takes only the row locks of its own leases."""
    a = LeaseStore(pg_store, "a", OPTIONS)
    a.beat()
    token = a.acquire(cluster_lease("east"))
    holding, stalled_until = threading.Event(), threading.Event()

    def stalled_writer() -> None:  # any writer: another replica, the CLI
        with pg_store.write():
            holding.set()
            stalled_until.wait(30)

    writer = threading.Thread(target=stalled_writer)
    writer.start()
    assert holding.wait(10)
    beats: list[Any] = []
    heart = threading.Thread(target=lambda: beats.append(a.beat()))
    heart.start()
    heart.join(timeout=10)
    try:
        assert beats, "the heartbeat waited for the store's write lock"
        assert beats[0].renewed == {cluster_lease("east"): token}
    finally:
        stalled_until.set()
        writer.join()
        heart.join()


class _Host:
    """What ``Shards`` asks of the hub, recorded (no workers here)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.leading: list[bool] = []

    async def take_over(self, cluster: str) -> None:
        pass

    async def start_owned_worker(self, cluster: str) -> None:
        self.started.append(cluster)

    async def stop_worker(self, cluster: str, *, drain: bool, wait: bool = True) -> None:
        pass

    def leadership_changed(self, leader: bool) -> None:
        self.leading.append(leader)


def test_the_heartbeat_renews_while_every_store_call_slot_is_taken(store: Store) -> None:
    """A busy replica has every slot of its store-call limiter taken, with more calls
    queued: the heartbeat, which queued there behind them, has a slot of its own."""
    leases = LeaseStore(store, "a", LeaseOptions.for_lease(1.5))  # a beat every 0.5 s
    fences = Fences(store)
    store_calls = anyio.CapacityLimiter(2)
    host = _Host()
    shards = Shards(host, leases, fences, store_calls)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(shards.run)
            with anyio.fail_after(10):
                while sorted(host.started) != ["east", "west"] or not shards.is_leader():
                    await anyio.sleep(0.05)
            busy = anyio.Event()

            async def store_call() -> None:
                async with store_calls:
                    await busy.wait()

            for _ in range(3):  # every slot taken, one more call waiting
                tg.start_soon(store_call)
            while store_calls.borrowed_tokens < 2:
                await anyio.sleep(0.01)
            seen, beats = shards.last, 0
            with anyio.fail_after(10):  # a beat every 0.5 s: two of them
                while beats < 2:
                    await anyio.sleep(0.05)
                    if shards.last is not seen:
                        seen, beats = shards.last, beats + 1
            assert seen is not None
            assert set(seen.renewed) == {cluster_lease("east"), cluster_lease("west"), LEADER}
            assert all(f.valid() for f in fences.held().values()) and shards.is_leader()
            busy.set()
            tg.cancel_scope.cancel()

    anyio.run(main)
