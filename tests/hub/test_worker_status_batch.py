"""Cheaper syncs (issue 12): a worker writes the refresh results of one tick in one store
transaction, and an operation's state still reaches the store at once. In-process hub
against ``hub sim``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

import anyio
import pytest

from clusters.sim import SimServer
from hub.apps import AppStore, StatusUpdate
from hub.controller import Hub, HubOptions
from hub.home import open_store
from hub.sync.history import SyncHistory
from tests.clusters.cli_support import Hub as Cli
from tests.hub.test_controller_runtime import run_checked, wait_until
from tests.sync.e2e_helpers import GitRepo
from tests.sync.test_e2e_seed import seed_files

__all__ = ["run_checked"]  # the fixture, used by name

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(120)]

APPS = 6
APP = """
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: app-{i}
spec:
  project: default
  source: {{repoURL: {repo}, targetRevision: main, path: app-{i}}}
  destination: {{name: a, namespace: default}}
"""
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c-{i}}}\ndata: {{v: '1'}}\n"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[tuple[Path, GitRepo]]:
    repo = GitRepo(tmp_path / "repo")
    with SimServer(clusters=["a"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        files = {f"apps/{i}.yaml": APP.format(i=i, repo=repo.path) for i in range(APPS)}
        files |= {f"app-{i}/cm.yaml": CM.format(i=i) for i in range(APPS)}
        repo.write(files)
        cli = Cli(tmp_path / "home")
        cli.ok("init")
        cli.ok("cluster", "add", "a", "--kubeconfig", str(sim.kubeconfig_path), "--context", "a")
        cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "apps")
        yield cli.home, repo


def test_one_tick_s_refresh_results_share_one_transaction(
    home: tuple[Path, GitRepo],
    monkeypatch: pytest.MonkeyPatch,
    run_checked: Callable[[Callable[[], Awaitable[None]]], None],
) -> None:
    calls: list[list[StatusUpdate]] = []
    original = AppStore.set_statuses

    def spy(
        self: AppStore, updates: Sequence[StatusUpdate], *, reconciled_at: datetime | None = None
    ) -> list[str]:
        calls.append(list(updates))
        return original(self, updates, reconciled_at=reconciled_at)

    monkeypatch.setattr(AppStore, "set_statuses", spy)
    path, repo = home
    server = Hub(path, HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5))

    def desired(sha: str) -> list[list[str]]:
        return [[u.name for u in c if u.desired_sha == sha] for c in calls]

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)
            first = repo.git("rev-parse", "HEAD")
            await wait_until(lambda: sum(map(len, desired(first))) >= APPS, "every app compared")
            # A new commit: the poll wakes the worker for every app, and the tick that
            # compares them all writes their results in one transaction.
            second = repo.write({f"app-{i}/cm.yaml": CM.format(i=i) + "# 2\n" for i in range(APPS)})
            await server.request_refresh(None)
            await wait_until(lambda: sum(map(len, desired(second))) >= APPS, "new commit seen")
            assert [c for c in desired(second) if c] == [[f"app-{i}" for i in range(APPS)]]
            for i in range(APPS):
                record = server.apps.get(f"app-{i}")
                assert record is not None and record.desired_sha == second

            # An operation's state is written alone, at once (the API shows it running).
            calls.clear()
            await server.request_sync("app-0", who="test")
            await wait_until(
                lambda: any(u.operation_state for c in calls for u in c), "running recorded"
            )
            running = next(c for c in calls if any(u.operation_state for u in c))
            assert [u.name for u in running] == ["app-0"]
            assert running[0].operation_state is not None
            assert running[0].operation_state["phase"] == "Running"
            await server.shutdown()

    run_checked(body)


def test_a_sync_s_status_is_written_with_its_in_flight_record_and_its_history_entry(
    home: tuple[Path, GitRepo],
    monkeypatch: pytest.MonkeyPatch,
    run_checked: Callable[[Callable[[], Awaitable[None]]], None],
) -> None:
    """The running state commits with the operation in flight, the final state with the
    history entry it names (one transaction at each end of a sync, not two): another
    connection sees neither half before the other."""
    path, _repo = home
    server = Hub(path, HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5))
    other = open_store(path)  # sees only what is committed
    seen: list[tuple[str, bool, bool, list[int], list[int]]] = []
    original = AppStore.set_statuses

    def spy(
        self: AppStore, updates: Sequence[StatusUpdate], *, reconciled_at: datetime | None = None
    ) -> list[str]:
        for u in updates:
            if u.name == "app-0" and u.operation_state is not None:
                here, there = server.history, SyncHistory(other, lambda: pytest.fail())
                seen.append(
                    (
                        str(u.operation_state["phase"]),
                        here.in_flight("app-0") is not None,
                        there.in_flight("app-0") is not None,
                        [e.id for e in here.entries("app-0")],
                        [e.id for e in there.entries("app-0")],
                    )
                )
        return original(self, updates, reconciled_at=reconciled_at)

    monkeypatch.setattr(AppStore, "set_statuses", spy)

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)
            await wait_until(lambda: server.apps.get("app-0") is not None, "app-0 stored")
            await server.request_sync("app-0", who="test")
            await wait_until(lambda: len(seen) >= 2, "the sync's end recorded")
            await server.shutdown()

    try:
        run_checked(body)
    finally:
        other.close()
    (running, *_progress, final) = seen
    # running: the in-flight record is in this transaction and not committed before it
    assert running[:3] == ("Running", True, False)
    # final: the history entry and the status land together
    phase, in_flight_here, in_flight_there, entries_here, entries_there = final
    assert phase == "Succeeded" and not in_flight_here and in_flight_there
    assert entries_here == [0] and entries_there == []
    record = server.apps.get("app-0")
    assert record is not None and record.operation_state is not None
    assert record.operation_state["historyId"] == 0


def test_a_retried_operation_s_state_counts_its_retries(
    home: tuple[Path, GitRepo],
    run_checked: Callable[[Callable[[], Awaitable[None]]], None],
) -> None:
    """``operationState.retryCount`` is the attempts after the first (Argo CD's), not 0
    whatever happened."""
    path, repo = home
    retry = "  syncPolicy: {retry: {limit: 2, backoff: {duration: 10ms}}}\n"
    # A PreSync hook whose Job fails (the simulator's `fail` image): every attempt fails.
    failing_hook = str(seed_files("default")["app/03-migrate.yaml"]).replace(
        "busybox:1.36", "busybox:fail"
    )
    repo.write(
        {"apps/5.yaml": APP.format(i=5, repo=repo.path) + retry, "app-5/job.yaml": failing_hook}
    )
    server = Hub(path, HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5))

    def finished() -> bool:
        record = server.apps.get("app-5")
        state = None if record is None else record.operation_state
        return state is not None and state.get("phase") not in (None, "Running")

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)
            await wait_until(lambda: server.apps.get("app-5") is not None, "app-5 stored")
            await server.request_sync("app-5", who="test")
            await wait_until(finished, "the sync of app-5 ended")
            await server.shutdown()

    run_checked(body)
    record = server.apps.get("app-5")
    assert record is not None and record.operation_state is not None
    state = record.operation_state
    assert state["phase"] in ("Failed", "Error") and "migrate-" in state["message"], state
    assert state["retryCount"] == 2, state
