"""A sync cut short before its engine recorded it (docs/replicas.md, "Interrupted
operations"): the worker writes the app's running state, then the engine renders and
records the operation in flight, and only then touches the cluster. A hub or replica
killed between the two leaves ``operation_state`` Running for the new revision and no
operation in flight, so nothing is recorded as interrupted. The next hub (a restart, or
the replica taking the cluster over; both load the apps the same way once the
interrupted operations are recorded) must attempt that revision: it was seen stuck
OutOfSync in tests/e2e/test_replicas.py, the stale Running state taken for an attempt.
The next hub also rewrites such a state as finished (Error, ``interrupted: before-start``,
no history entry: nothing ran), so an app without automated sync no longer shows Running
until its next sync. In-process hub against ``hub sim``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from clusters.sim import SimServer
from hub.apps import AppStore
from hub.controller import Hub, HubOptions
from hub.home import open_store
from hub.store import Store
from hub.sync.history import SyncHistory
from tests.clusters.cli_support import Hub as Cli
from tests.hub.test_controller_runtime import APP as MANUAL_APP
from tests.hub.test_controller_runtime import AUTO_APP as APP
from tests.hub.test_controller_runtime import CM, run_checked, sim_client, wait_until
from tests.sync.e2e_helpers import GitRepo

__all__ = ["run_checked"]  # the fixture, used by name

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(120)]


def running_state(
    revision: str, *, trigger: str = "automated", started: str = "2026-12-03T10:00:00+00:00"
) -> dict[str, Any]:
    """The operation state ``Operations._operate`` writes first, before the engine runs."""
    return {
        "phase": "Running",
        "trigger": trigger,
        "startedAt": started,
        "syncResult": {"revision": revision},
        "message": "running",
    }


def leave_running(store: Store, triggers: dict[str, str], revision: str) -> str:
    """What a hub killed right after ``Operations._operate``'s first write leaves: each
    app's operation Running (``triggers``: app -> who started it) and nothing recorded.
    Returns the operations' start time."""
    started = datetime.now(UTC).isoformat()
    for name, trigger in triggers.items():
        AppStore(store).set_status(
            name, operation_state=running_state(revision, trigger=trigger, started=started)
        )
    return started


def test_a_revision_left_running_before_the_engine_recorded_it_is_synced_by_the_next_hub(
    tmp_path: Path, run_checked: Callable[[Callable[[], Awaitable[None]]], None]
) -> None:
    repo = GitRepo(tmp_path / "repo")
    options = HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5)
    with SimServer(clusters=["a"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        first = repo.write(
            {
                "apps/a.yaml": APP.format(repo=repo.path),
                # "two" has no automated sync: its state stays until an operator syncs it.
                "apps/b.yaml": MANUAL_APP.format(name="two", cluster="a", repo=repo.path),
                "app/cm.yaml": CM.format(value="1"),
            }
        )
        cli = Cli(tmp_path / "home")
        cli.ok("init")
        cli.ok("cluster", "add", "a", "--kubeconfig", str(sim.kubeconfig_path), "--context", "a")
        cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "apps")
        client = sim_client(sim, "a")
        cm = client.resource_for("", "ConfigMap")

        def value() -> str | None:
            obj = client.get_or_none(cm, "c", "default")
            return None if obj is None else (obj.get("data") or {}).get("v")

        def syncs(server: Hub) -> list[tuple[str, str, str]]:
            return [
                (e.trigger.value, e.revision, e.phase.value) for e in server.history.entries("one")
            ]

        before = Hub(cli.home, options)

        async def sync_first() -> None:
            async with anyio.create_task_group() as tg:
                await tg.start(before.run)
                await wait_until(lambda: value() == "1" and len(syncs(before)) == 1, "commit 1")
                await before.shutdown()

        run_checked(sync_first)
        assert syncs(before) == [("automated", first, "Succeeded")]

        # A commit; the hub that saw it was killed right after writing the running state
        # of its syncs (what ``Operations._operate`` writes first; "two" by an operator),
        # before the engine recorded the operations in flight: the store holds just that.
        second = repo.write({"app/cm.yaml": CM.format(value="2")})
        store = open_store(cli.home)
        try:
            started = leave_running(store, {"one": "automated", "two": "user"}, second)
            assert SyncHistory(store, lambda: pytest.fail()).interrupted() == []
        finally:
            store.close()

        after = Hub(cli.home, options)

        async def next_hub() -> None:
            async with anyio.create_task_group() as tg:
                await tg.start(after.run)
                await wait_until(
                    lambda: value() == "2" and len(syncs(after)) == 2,
                    "the next hub syncs the revision left Running",
                    timeout=20,
                )
                await after.shutdown()

        run_checked(next_hub)
        # Attempted once, by the next hub; nothing was recorded as interrupted (nothing
        # had begun).
        assert syncs(after) == [
            ("automated", first, "Succeeded"),
            ("automated", second, "Succeeded"),
        ]
        # The manual app's state says what happened, from the store the CLI and API read;
        # its revision, trigger and start are kept; it ran nothing, so nothing is recorded.
        shown = json.loads(cli.ok("app", "get", "two", "-o", "json").stdout)["operationState"]
        assert shown["phase"] == "Error"
        assert shown["interrupted"] == "before-start"
        assert "interrupted before it started" in shown["message"]
        assert "nothing was applied" in shown["message"]
        assert (shown["trigger"], shown["startedAt"]) == ("user", started)
        assert shown["syncResult"] == {"revision": second}
        assert datetime.fromisoformat(shown["finishedAt"]) >= datetime.fromisoformat(started)
        assert after.history.entries("two") == []
        client.connection.close()
