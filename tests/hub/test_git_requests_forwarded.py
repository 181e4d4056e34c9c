"""A Git request a follower forwards to the leader (replica mode, docs/replicas.md): a push
webhook received by a follower wakes the leader's Git cycle without forcing the
ApplicationSet pass, as a push received by the leader does; a refresh forwarded the same
way forces it. Two replicas in one process on one SQLite home; no cluster is contacted."""

from __future__ import annotations

import time
from pathlib import Path

import anyio

from hub.controller import Hub, HubOptions, ReplicaConfig
from hub.leases import LEADER, ClusterFence, LeaseOptions
from tests.clusters.cli_support import Hub as Cli
from tests.sync.e2e_helpers import GitRepo

OPTIONS = LeaseOptions.for_lease(15.0)


def test_a_push_forwarded_to_the_leader_wakes_its_cycle_and_a_refresh_forces_the_pass(
    tmp_path: Path,
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write({"appsets/.keep": ""})
    cli = Cli(tmp_path / "home")
    cli.ok("init")
    cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "appsets")
    leader = Hub(cli.home, HubOptions(), replica=ReplicaConfig(replica_id="r1", leases=OPTIONS))
    follower = Hub(cli.home, HubOptions(), replica=ReplicaConfig(replica_id="r2", leases=OPTIONS))
    leader._open()
    follower._open()
    try:
        assert leader.shards is not None and leader.leases is not None
        leader.leases.beat()
        token = leader.leases.acquire(LEADER)
        assert token is not None
        leader.shards.leader = ClusterFence(LEADER, token, time.monotonic() + 60)
        assert leader.is_leader() and not follower.is_leader()

        async def main() -> None:
            assert await follower.notify_git_push([str(repo.path)]) == 1
            await leader._take_requests()
            assert leader._git_now.is_set() and not leader._git_forced  # woken, not forced

            leader._git_now = anyio.Event()
            await follower.request_refresh(None)
            await leader._take_requests()
            assert leader._git_now.is_set() and leader._git_forced

        anyio.run(main)
    finally:
        follower._close()
        leader._close()
