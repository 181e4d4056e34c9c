"""`hub shard list`, the replicas section of `hub status` and `hub serve --once` on a shared
store, from the store alone (no replica running): PostgreSQL and SQLite."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

from hub.apps import AppStore
from hub.controller import delete_cluster_resources
from hub.home import open_store
from hub.leases import LEADER, LeaseOptions, LeaseStore, cluster_lease, now_sql
from tests.clusters.cli_support import Hub
from tests.conftest import KubeEnv
from tests.hub.test_apps_store import desired


def _register(store_home: Path, names: list[str]) -> None:
    with open_store(store_home) as store, store.write() as db:
        for name in names:
            db.execute(
                "INSERT INTO clusters (name, server, credential_kind, credential_rev, "
                "key_id, wrapped_key, nonce, ciphertext) VALUES (?, ?, 'token', 'r', "
                "'k', ?, ?, ?)",
                (name, f"https://{name}", b"\0", b"\0", b"\0"),
            )


def test_shard_list_and_status_show_replicas_leases_and_the_leader(
    tmp_path: Path, postgres_url: str
) -> None:
    cli = Hub(tmp_path / "home")
    cli.ok("init", "--database", postgres_url)
    _register(cli.home, ["east", "west", "north"])
    options = LeaseOptions.for_lease(15.0)
    with open_store(cli.home) as store:
        a, b = LeaseStore(store, "replica-a", options), LeaseStore(store, "replica-b", options)
        a.beat(url="http://127.0.0.1:8080")
        b.beat(url="http://127.0.0.1:8081")
        assert a.acquire(cluster_lease("east")) == 1
        assert a.acquire(LEADER) == 1
        assert b.acquire(cluster_lease("west")) == 1
    doc = json.loads(cli.ok("shard", "list", "-o", "json").stdout)
    assert doc["leader"] == "replica-a"
    assert {r["id"]: r["clusters"] for r in doc["replicas"]} == {
        "replica-a": ["east"],
        "replica-b": ["west"],
    }
    owners = {c["cluster"]: (c["owner"], c["token"]) for c in doc["clusters"]}
    assert owners == {"east": ("replica-a", 1), "north": (None, None), "west": ("replica-b", 1)}
    table = cli.ok("shard", "list").stdout
    assert "replica-a *" in table and "leader: replica-a" in table
    assert "north" in table and "EXPIRES IN" in table
    status = cli.ok("status").stdout
    assert "replicas (hub shard list):" in status and "replica-b" in status
    as_json = json.loads(cli.ok("status", "-o", "json").stdout)
    assert as_json["replicas"]["leader"] == "replica-a"
    # One pass of every cluster beside the replicas' leases would break the leases' promise.
    once = cli("serve", "--once")
    assert once.exit_code == 2 and "shared by replicas" in once.output


def test_a_sqlite_home_has_no_replicas(tmp_path: Path) -> None:
    cli = Hub(tmp_path / "home")
    cli.ok("init")
    assert "SQLite: one `hub serve`, no replicas" in cli.ok("shard", "list").stdout
    assert json.loads(cli.ok("shard", "list", "-o", "json").stdout)["replicas"] == []
    status = cli.ok("status")
    assert "replicas" not in status.stdout
    assert "replicas" not in json.loads(cli.ok("status", "-o", "json").stdout)


def test_serve_refuses_a_replica_id_a_live_replica_uses(tmp_path: Path, postgres_url: str) -> None:
    cli = Hub(tmp_path / "home")
    cli.ok("init", "--database", postgres_url)
    with open_store(cli.home) as store, store.write() as db:
        # A replica live on another machine under this id (heartbeat: now).
        db.execute(
            "INSERT INTO replicas (id, host, pid, url, started_at, heartbeat_at) "
            f"VALUES ('hub-a', 'db-host-2', 4242, '', 0, {now_sql(store)})"
        )
    refused = cli("serve", "--replica-id", "hub-a", "--port", "0")
    assert refused.exit_code == 2, refused.output
    assert "replica id 'hub-a' is already used by a live replica" in refused.output
    assert "host db-host-2, pid 4242" in refused.output and "--replica-id" in refused.output
    assert "Traceback" not in refused.output
    with open_store(cli.home) as store, store.read() as db:
        rows = db.execute("SELECT host, pid FROM replicas WHERE id = 'hub-a'").fetchall()
    assert [tuple(r) for r in rows] == [("db-host-2", 4242)]  # the live one is untouched


def test_a_cascade_with_replicas_runs_under_the_clusters_lease(
    tmp_path: Path, postgres_url: str, kube: KubeEnv
) -> None:
    cli = Hub(tmp_path / "home")
    cli.ok("init", "--database", postgres_url)
    cli.ok(
        "cluster", "add", "east", "--kubeconfig", str(kube.kubeconfig), "--context", kube.context
    )
    with open_store(cli.home) as store:
        with AppStore(store).transaction() as txn:
            txn.put_desired(desired("web", cluster="east"))
        r1 = LeaseStore(store, "r1", LeaseOptions.for_lease(15.0))
        r1.beat()  # a live replica, holding no lease yet
        # No replica holds the cluster: this command takes its lease and deletes itself;
        # until the caller closes `held` (after removing the cluster) no replica gets it.
        with ExitStack() as held:
            outcome = delete_cluster_resources(cli.home, "east", timeout_s=5, hold=held)
            assert outcome.by == "this command, holding the cluster's lease", outcome
            assert outcome.done, outcome.remaining
            assert r1.acquire(cluster_lease("east")) is None
            holder = r1.beat().leases[cluster_lease("east")].owner
            assert holder is not None and holder.startswith("hub-cli-")
        token = r1.acquire(cluster_lease("east"))
        assert token is not None
        # Now r1 holds it: the command leaves the deletion to r1 and waits for it, as for
        # a running hub (r1 here is only rows in the store and deletes nothing; the
        # cluster held nothing of `web`, so listed afresh it is done once the wait ends).
        removed = cli("cluster", "rm", "east", "--cascade", "--yes", "--timeout", "1")
        assert removed.exit_code == 0, removed.output
        assert "deleted (by replica r1, the owner of its lease)" in removed.output
        assert r1.beat().renewed == {cluster_lease("east"): token}  # still r1's, untouched
