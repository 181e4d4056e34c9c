"""The hub in-process (anyio) against ``hub sim``: workers follow the registry, the
HubHandle actions, and a clean shutdown that leaves no task behind."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import anyio
import pytest

from clusters.connect import build_connection
from clusters.kube import KubeClient
from clusters.kubeconfig import BearerToken, TLSSettings
from clusters.registry import ClusterCredentials
from clusters.sim import SimServer
from hub import controller
from hub.apps import AppStore
from hub.controller import GC_THRESHOLDS, Hub, HubOptions, fence_cluster
from hub.errors import HubError
from hub.metrics import Metrics, repo_label
from hub.worker import ClusterWorker
from tests.clusters.cli_support import Hub as Cli
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(120)]

APP = """
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: {name}
spec:
  project: default
  source: {{repoURL: {repo}, targetRevision: main, path: app}}
  destination: {{name: {cluster}, namespace: default}}
"""


CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata: {{v: '{value}'}}\n"

# One automated Application, "one" on cluster "a" (the worker tests beside this file).
AUTO_APP = (
    APP.replace("{name}", "one").replace("{cluster}", "a")
    + "  syncPolicy:\n    automated: {{prune: true, selfHeal: true}}\n"
)


def sim_client(sim: SimServer, name: str) -> KubeClient:
    creds = ClusterCredentials(
        name=name,
        server=sim.server_url(name),
        tls=TLSSettings(ca_data=sim.ca_pem),
        credential=BearerToken(token=sim.token(name)),
        credential_rev="t",
    )
    return KubeClient(build_connection(creds))


@pytest.fixture
def run_checked() -> Iterator[Callable[[Callable[[], Awaitable[None]]], None]]:
    """Run an async test body; fail the test if it leaves any task running."""
    leftovers: list[set[asyncio.Task[object]]] = []

    def run(body: Callable[[], Awaitable[None]]) -> None:
        async def main() -> None:
            await body()
            current = asyncio.current_task()
            leftovers.append({t for t in asyncio.all_tasks() if t is not current and not t.done()})

        anyio.run(main)

    yield run
    assert leftovers and not any(leftovers), f"tasks left running: {leftovers}"


async def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.1)


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "repo")


@pytest.fixture
def home(tmp_path: Path, repo: GitRepo) -> Iterator[tuple[Path, SimServer]]:
    with SimServer(clusters=["a", "b"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        repo.write(
            {
                "apps/a.yaml": APP.format(name="one", repo=repo.path, cluster="a"),
                "apps/b.yaml": APP.format(name="two", repo=repo.path, cluster="b"),
                "app/cm.yaml": CM.format(value="1"),
            }
        )
        cli = Cli(tmp_path / "home")
        cli.ok("init")
        for name in ("a", "b"):
            cli.ok("cluster", "add", name, "--kubeconfig", str(sim.kubeconfig_path),
                   "--context", name)  # fmt: skip
        cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "apps")
        yield cli.home, sim


@contextmanager
def one_cluster_home(tmp_path: Path, repo: GitRepo, files: dict[str, str]) -> Iterator[Path]:
    """A hub home with one simulated cluster "a" and a root source of ``apps/`` holding
    ``files`` (written to ``repo`` first), for the tests of one worker."""
    with SimServer(clusters=["a"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        repo.write(files)
        cli = Cli(tmp_path / "home")
        cli.ok("init")
        cli.ok("cluster", "add", "a", "--kubeconfig", str(sim.kubeconfig_path), "--context", "a")
        cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "apps")
        yield cli.home


def all_synced(hub: Hub, names: list[str]) -> Callable[[], bool]:
    """Whether every one of ``names`` is an Application marked Synced."""

    def check() -> bool:
        records = [hub.apps.get(n) for n in names]
        return all(r is not None and r.sync_status == "Synced" for r in records)

    return check


def test_a_removed_cluster_s_worker_stops_and_shutdown_leaves_no_task(
    home: tuple[Path, SimServer], run_checked: Callable[[Callable[[], Awaitable[None]]], None]
) -> None:
    path, _sim = home
    hub = Hub(path, HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5))

    before = gc.get_threshold()
    assert before != GC_THRESHOLDS

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(hub.run)
            assert hub.ready()
            # A running hub's young generation is sized for the syncs in flight.
            assert gc.get_threshold() == GC_THRESHOLDS
            assert sorted(hub.workers) == ["a", "b"]
            await wait_until(
                lambda: all(c.state == "Connected" for c in hub.cluster_connections().values()),
                "both clusters connected",
            )
            with pytest.raises(HubError, match="does not exist"):
                await hub.request_sync("nope")
            assert await hub.notify_git_push(["https://example.com/other.git"]) == 0
            cli = Cli(path)
            await anyio.to_thread.run_sync(lambda: cli.ok("cluster", "rm", "b", "--yes"))
            await wait_until(lambda: "b" not in hub.workers, "the worker of b to stop")
            assert list(hub.cluster_connections()) == ["a"]
            await hub.shutdown()
        assert not hub.ready()
        assert gc.get_threshold() == before  # the process's own setting back

    run_checked(body)


@pytest.mark.parametrize("every_s", [0.05, 0.0])
def test_a_running_hub_hands_freed_memory_back_every_trim_interval_unless_told_not_to(
    home: tuple[Path, SimServer],
    run_checked: Callable[[Callable[[], Awaitable[None]]], None],
    monkeypatch: pytest.MonkeyPatch,
    every_s: float,
) -> None:
    path, _sim = home
    trims: list[float] = []

    def trim() -> bool:
        trims.append(time.monotonic())
        return True

    monkeypatch.setattr(controller, "malloc_trim", lambda: trim)
    options = HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5, trim_memory_s=every_s)
    hub = Hub(path, options)

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(hub.run)
            await anyio.sleep(0.6)
            await hub.shutdown()

    run_checked(body)
    if every_s == 0:
        assert trims == []
    else:
        assert len(trims) >= 3, trims
        # one at a time, each a full interval after the last
        assert all(b - a >= every_s * 0.9 for a, b in pairwise(trims))


def test_a_requested_sync_runs_for_an_app_without_automated_sync(
    home: tuple[Path, SimServer], run_checked: Callable[[Callable[[], Awaitable[None]]], None]
) -> None:
    path, _sim = home
    hub = Hub(path, HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5))

    def status(name: str) -> tuple[str, str]:
        record = hub.apps.get(name)
        assert record is not None
        return record.sync_status, record.health_status

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(hub.run)
            # Not automated: compared and reported, never synced on its own.
            await wait_until(lambda: status("one")[0] == "OutOfSync", "one compared")
            await hub.request_sync("one", who="test")
            await wait_until(lambda: status("one") == ("Synced", "Healthy"), "one synced")
            assert status("two")[0] == "OutOfSync"
            record = hub.apps.get("one")
            assert record is not None and record.operation_state is not None
            assert record.operation_state["initiatedBy"]["username"] == "test"
            await hub.shutdown()

    run_checked(body)


def test_a_rollback_reapplies_the_manifests_of_a_history_entry(
    home: tuple[Path, SimServer],
    repo: GitRepo,
    run_checked: Callable[[Callable[[], Awaitable[None]]], None],
) -> None:
    path, sim = home
    hub = Hub(path, HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5))
    client = sim_client(sim, "a")

    def greeting() -> str | None:
        obj = client.get_or_none(client.resource_for("", "ConfigMap"), "c", "default")
        return None if obj is None else (obj.get("data") or {}).get("v")

    def ids() -> list[int]:
        return [e.id for e in hub.history.entries("one")]

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(hub.run)
            await hub.request_sync("one")
            await wait_until(lambda: greeting() == "1" and bool(ids()), "first sync recorded")
            first = ids()[-1]
            repo.write({"app/cm.yaml": CM.format(value="2")})
            await hub.request_refresh(None)  # fetch now
            await wait_until(lambda: hub.apps.get("one").sync_status == "OutOfSync", "drift")  # type: ignore[union-attr]
            await hub.request_sync("one")
            await wait_until(lambda: greeting() == "2" and len(ids()) == 2, "second sync")
            await hub.request_rollback("one", first, who="test")
            await wait_until(lambda: greeting() == "1", "rolled back")
            await wait_until(lambda: len(ids()) == 3, "the rollback recorded")
            assert hub.history.entries("one")[-1].trigger.value == "rollback"
            await hub.shutdown()

    run_checked(body)
    client.connection.close()


def test_a_fenced_cluster_refuses_requested_syncs(
    home: tuple[Path, SimServer], run_checked: Callable[[Callable[[], Awaitable[None]]], None]
) -> None:
    path, _sim = home
    hub = Hub(path, HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5))

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(hub.run)
            # What `hub cluster rm b --cascade` does first: the running hub follows.
            await anyio.to_thread.run_sync(fence_cluster, path, "b", "test")
            await wait_until(lambda: hub.workers["b"].fenced is not None, "b fenced")
            with pytest.raises(HubError, match="cluster b is being removed"):
                await hub.request_sync("two", who="test")
            await hub.request_sync("one", who="test")  # other clusters are not affected
            await hub.shutdown()

    run_checked(body)


def test_a_git_cycle_wakes_the_workers_only_when_a_revision_moved(
    home: tuple[Path, SimServer],
    repo: GitRepo,
    run_checked: Callable[[Callable[[], Awaitable[None]]], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, _sim = home
    hub = Hub(path, HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5))
    hub.metrics = Metrics()  # as `hub serve` sets it: every fetch is observed
    wakes: list[str] = []
    original = ClusterWorker.wake

    def counted(self: ClusterWorker, *, reload: bool = False, refresh_all: bool = False) -> None:
        if refresh_all:
            wakes.append(self.name)
        original(self, reload=reload, refresh_all=refresh_all)

    # On the class: a worker restarted meanwhile is counted too.
    monkeypatch.setattr(ClusterWorker, "wake", counted)

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(hub.run)
            wakes.clear()
            await hub.git_cycle()
            assert wakes == [], "a poll that found nothing new refreshed every app"
            sha = repo.write({"app/cm.yaml": CM.format(value="2")})
            await hub.git_cycle()
            assert hub.revisions.errors == {}, hub.revisions.errors
            assert sha in hub.revisions.snapshot().values()
            assert sorted(set(wakes)) == ["a", "b"]
            fetches = hub.metrics.registry.get_sample_value(
                "hub_git_fetch_duration_seconds_count", {"repo": repo_label(str(repo.path))}
            )
            assert fetches is not None and fetches >= 2  # at least one per cycle
            await hub.shutdown()

    run_checked(body)


def test_a_worker_that_crashes_is_restarted_and_the_hub_and_other_clusters_go_on(
    home: tuple[Path, SimServer],
    run_checked: Callable[[Callable[[], Awaitable[None]]], None],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path, _sim = home
    hub = Hub(path, HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5))
    loop = ClusterWorker._loop
    crashes: list[str] = []

    async def buggy_loop(self: ClusterWorker) -> None:
        if self.name == "a" and not crashes:  # a bug that hits a's worker once
            crashes.append(self.name)
            raise RuntimeError("a bug in the worker")
        await loop(self)

    monkeypatch.setattr(ClusterWorker, "_loop", buggy_loop)

    def status(name: str) -> tuple[str, str]:
        record = hub.apps.get(name)
        assert record is not None
        return record.sync_status, record.health_status

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(hub.run)
            first = hub.workers.get("a")
            await hub.request_sync("two", who="test")
            await wait_until(lambda: status("two") == ("Synced", "Healthy"), "two synced")
            # a's worker is back (a new one, after its pause) and syncs as usual.
            await wait_until(
                lambda: hub.workers.get("a") not in (None, first), "a's worker restarted"
            )
            await wait_until(lambda: status("one")[0] == "OutOfSync", "one compared")
            await hub.request_sync("one", who="test")
            await wait_until(lambda: status("one") == ("Synced", "Healthy"), "one synced")
            await hub.shutdown()

    run_checked(body)
    assert crashes == ["a"]
    said = [r for r in caplog.records if "its worker stopped on an unexpected error" in r.message]
    assert len(said) == 1 and "cluster a:" in said[0].message, said
    assert said[0].exc_info is not None  # the traceback is in the log


def test_a_sync_a_refresh_starts_runs_before_the_worker_refreshes_its_other_apps(
    tmp_path: Path,
    repo: GitRepo,
    run_checked: Callable[[Callable[[], Awaitable[None]]], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A push that dirties every app of a cluster: the syncs the first refreshes start get
    going while the worker refreshes the rest. A refresh rarely waits (cache, inline store),
    so a worker that refreshed all its apps in one go held every sync back until the last
    one; with 100 workers the simulator idled through the first second of a rollout."""
    names = [f"app{i}" for i in range(4)]
    auto = APP + "  syncPolicy:\n    automated: {{prune: true}}\n"
    events: list[tuple[str, str]] = []
    take_dirty, refresh, sync = (
        ClusterWorker._take_dirty,
        ClusterWorker._refresh,
        ClusterWorker._sync,
    )

    def ticked(self: ClusterWorker) -> set[str]:
        dirty = take_dirty(self)
        events.append(("tick", ",".join(sorted(dirty))))
        return dirty

    async def refreshed(self: ClusterWorker, name: str) -> None:
        events.append(("refresh", name))
        await refresh(self, name)

    async def synced(self: ClusterWorker, rec: Any, *a: Any) -> None:
        events.append(("sync", rec.name))
        await sync(self, rec, *a)

    monkeypatch.setattr(ClusterWorker, "_take_dirty", ticked)
    monkeypatch.setattr(ClusterWorker, "_refresh", refreshed)
    monkeypatch.setattr(ClusterWorker, "_sync", synced)
    files = {f"apps/{n}.yaml": auto.format(name=n, repo=repo.path, cluster="a") for n in names}
    with one_cluster_home(tmp_path, repo, {**files, "app/cm.yaml": CM.format(value="1")}) as path:
        hub = Hub(path, HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5))

        async def body() -> None:
            async with anyio.create_task_group() as tg:
                await tg.start(hub.run)
                await wait_until(all_synced(hub, names), "every app synced")
                await hub.shutdown()

        run_checked(body)
    # The tick in which the first sync started refreshed the four apps; that sync began
    # before the last of those refreshes.
    first_sync = next(i for i, e in enumerate(events) if e[0] == "sync")
    tick = max(i for i, e in enumerate(events[:first_sync]) if e[0] == "tick")
    assert events[tick][1] == ",".join(names), events
    refreshes = [i for i, e in enumerate(events) if e[0] == "refresh" and i > tick][: len(names)]
    assert first_sync < refreshes[-1], events


def _desired_sha(hub: Hub, name: str) -> str | None:
    record = hub.apps.get(name)
    return None if record is None else record.desired_sha


def test_a_slow_sync_s_progress_names_only_the_waves_it_waits_in(
    home: tuple[Path, SimServer],
    repo: GitRepo,
    run_checked: Callable[[Callable[[], Awaitable[None]]], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A wave's message reaches the app's status once it stood a second, only in a sync of
    several steps (each waits for health): a single-step sync's one wave waits for
    nothing, and its message said nothing "running" does not (a write per slow sync)."""
    path, sim = home
    messages: list[str] = []
    original = AppStore.set_statuses

    def spy(self: AppStore, updates: Any, **kw: Any) -> list[str]:
        for u in updates:
            if u.name == "one" and u.operation_state is not None:
                messages.append(str(u.operation_state.get("message")))
        return original(self, updates, **kw)

    monkeypatch.setattr(AppStore, "set_statuses", spy)
    hub = Hub(path, HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5))

    def ended() -> bool:
        record = hub.apps.get("one")
        state = None if record is None else record.operation_state
        return state is not None and state.get("phase") == "Succeeded"

    async def sync_slowly() -> list[str]:
        messages.clear()
        sim.faults("a").set(latency=1.3)  # every request stands longer than the settle time
        try:
            await hub.request_sync("one", who="test")
            await wait_until(lambda: bool(messages) and ended(), "the slow sync ended")
        finally:
            sim.faults("a").clear()
        return list(messages)

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(hub.run)
            await wait_until(lambda: hub.apps.get("one") is not None, "one stored")
            single = await sync_slowly()
            assert single[0] == "running" and not any("wave" in m for m in single), single
            later = CM.replace("name: c", "name: c2").format(value="2")
            later = later.replace(
                "metadata: {", "metadata: {annotations: {argocd.argoproj.io/sync-wave: '1'}, "
            )
            sha = repo.write({"app/cm2.yaml": later})
            await hub.notify_git_push([str(repo.path)])
            await wait_until(lambda: _desired_sha(hub, "one") == sha, "the new commit seen")
            steps = await sync_slowly()
            assert "Sync wave 0" in steps or "Sync wave 1" in steps, steps
            await hub.shutdown()

    run_checked(body)
