"""A sync ends when its last wave is applied, often before the watch events of those
applies reach the worker's live cache. The refresh that follows must not take the objects
as they were before the sync for drift: no self-heal re-applies what the sync just applied
(``hub.worker.decisions.unheard_writes_wait_s``). Real drift is still healed. In-process
hub against ``hub sim``, whose ``watch_delay`` fault holds every watch event back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from clusters.sim import SimServer
from hub.controller import Hub, HubOptions
from tests.clusters.cli_support import Hub as Cli
from tests.hub.test_controller_runtime import AUTO_APP as APP
from tests.hub.test_controller_runtime import CM, run_checked, sim_client, wait_until
from tests.sync.e2e_helpers import GitRepo

__all__ = ["run_checked"]  # the fixture, used by name

pytestmark = [pytest.mark.sim_only("injects a watch delay"), pytest.mark.timeout(120)]

WATCH_DELAY_S = 1.5


def test_a_sync_s_own_writes_heard_late_are_no_drift_and_real_drift_is_healed(
    tmp_path: Path, run_checked: Callable[[Callable[[], Awaitable[None]]], None]
) -> None:
    repo = GitRepo(tmp_path / "repo")
    with SimServer(clusters=["a"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        repo.write({"apps/a.yaml": APP.format(repo=repo.path), "app/cm.yaml": CM.format(value="1")})
        cli = Cli(tmp_path / "home")
        cli.ok("init")
        cli.ok("cluster", "add", "a", "--kubeconfig", str(sim.kubeconfig_path), "--context", "a")
        cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "apps")
        sim.faults("a").set(watch_delay=WATCH_DELAY_S)
        server = Hub(cli.home, HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5))
        client = sim_client(sim, "a")
        cm = client.resource_for("", "ConfigMap")

        def value() -> str | None:
            obj = client.get_or_none(cm, "c", "default")
            return None if obj is None else (obj.get("data") or {}).get("v")

        def triggers() -> list[str]:
            return [e.trigger.value for e in server.history.entries("one")]

        def synced() -> bool:
            rec = server.services.apps.get("one")
            return rec is not None and rec.sync_status == "Synced"

        async def body() -> None:
            async with anyio.create_task_group() as tg:
                await tg.start(server.run)
                await wait_until(lambda: value() == "1" and synced(), "the automated sync")
                # every event of the sync has been heard by now, twice over
                await anyio.sleep(2 * WATCH_DELAY_S)
                assert synced()
                assert triggers() == ["automated"]  # not re-applied as a "self-heal"
                client.merge_patch(cm, "c", "default", {"data": {"v": "drift"}})
                await wait_until(
                    lambda: value() == "1" and triggers() == ["automated", "self-heal"],
                    "the drift healed",
                )
                await server.shutdown()

        run_checked(body)
