"""``Hub.record_interrupted`` in replica mode (docs/replicas.md, "Interrupted operations"):
on taking a cluster over, an Application of that cluster left Running with no operation
in flight (its previous owner was killed between the running state and the engine's
record) is rewritten as never started, with the new lease's token, and only for that
cluster; a replica whose token is superseded writes nothing. No cluster is contacted (the
rewrite is store-only), so no ``hub sim`` here."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from hub.apps import BEFORE_START, AppStore
from hub.controller import Hub, HubOptions, ReplicaConfig
from hub.home import open_store
from hub.leases import ClusterFence, LeaseLost, LeaseOptions, LeaseStore, cluster_lease
from hub.worker import last_operation_of
from tests.clusters.cli_support import Hub as Cli
from tests.hub.test_apps_store import desired
from tests.hub.test_worker_left_running import running_state

REV = "c" * 40
RUNNING = running_state(REV)
OPTIONS = LeaseOptions.for_lease(15.0)


def _state(home: Path, name: str) -> dict[str, Any]:
    store = open_store(home)
    try:
        rec = AppStore(store).get(name)
        assert rec is not None and rec.operation_state is not None
        return dict(rec.operation_state)
    finally:
        store.close()


def test_a_take_over_rewrites_what_was_left_running_fenced_and_for_its_cluster_only(
    tmp_path: Path,
) -> None:
    cli = Cli(tmp_path / "home")
    cli.ok("init")
    store = open_store(cli.home)
    try:
        apps = AppStore(store)
        with apps.transaction() as txn:
            for name, cluster in (("east-1", "east"), ("east-2", "east"), ("west-1", "west")):
                txn.put_desired(desired(name, cluster=cluster))
        for name in ("east-1", "west-1"):
            apps.set_status(name, operation_state=RUNNING)
        apps.set_status("east-2", operation_state={**RUNNING, "phase": "Succeeded"})
    finally:
        store.close()

    hub = Hub(cli.home, HubOptions(), replica=ReplicaConfig(replica_id="r1", leases=OPTIONS))
    hub._open()
    try:
        assert hub.shards is not None and hub.leases is not None
        with hub.store.write() as db:  # the row a heartbeat adds for a registered cluster
            db.execute("INSERT INTO leases (name) VALUES (?)", (cluster_lease("east"),))
        hub.leases.beat()
        token = hub.leases.acquire(cluster_lease("east"))
        assert token is not None
        fence = ClusterFence(cluster_lease("east"), token, time.monotonic() + 60)
        hub.shards.fences.put("east", fence)

        # Another replica took "east" meanwhile (r1's lease lapsed): r1 writes nothing.
        with hub.store.write() as db:
            db.execute("UPDATE leases SET expires_at = 0 WHERE name = ?", (cluster_lease("east"),))
        other = LeaseStore(hub.store, "r2", OPTIONS)
        other.beat()
        assert other.acquire(cluster_lease("east")) == token + 1
        with pytest.raises(LeaseLost):
            hub.record_interrupted("east")
        assert _state(cli.home, "east-1") == RUNNING

        # r1 takes it back (a new token): the take-over rewrites east's state only.
        with hub.store.write() as db:
            db.execute("UPDATE leases SET expires_at = 0 WHERE name = ?", (cluster_lease("east"),))
        token = hub.leases.acquire(cluster_lease("east"))
        assert token is not None
        fence = ClusterFence(cluster_lease("east"), token, time.monotonic() + 60)
        hub.shards.fences.put("east", fence)
        assert hub.record_interrupted("east") == {}  # nothing in flight: no hooks to free
    finally:
        hub._close()

    rewritten = _state(cli.home, "east-1")
    assert rewritten["phase"] == "Error" and rewritten["interrupted"] == BEFORE_START
    assert {k: rewritten[k] for k in ("trigger", "startedAt", "syncResult")} == {
        k: RUNNING[k] for k in ("trigger", "startedAt", "syncResult")
    }
    assert "finishedAt" in rewritten
    assert last_operation_of(rewritten) is None  # no attempt: automated sync tries it again
    assert _state(cli.home, "west-1") == RUNNING  # another cluster: its own take-over's
    assert _state(cli.home, "east-2")["phase"] == "Succeeded"  # finished: left alone
