"""A Git cycle skips the ApplicationSet pass when nothing it reads changed, and runs it on
every change of what it reads: sources, repositories read by git generators, the
registry, the stored Applications/AppProjects, a deletion confirmation; at least every
``appset_resync_s``; and on every refresh.

The hub is opened in-process without its workers (no cluster is contacted: the clusters
are registered with ``--skip-check``); each test drives ``Hub.git_cycle`` itself."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from clusters.registry import ClusterRecord, LastCheck
from hub.apps import AppStore, AppTxn, DesiredApp, ProjectRecord
from hub.controller import (
    PERIODIC_PASS_DEFER,
    AppSetInputs,
    AppSetPass,
    Hub,
    HubOptions,
    appset_cluster_marks,
    appset_pass_reason,
    moved_reads,
)
from hub.metrics import Metrics
from hub.sources import SourceStore
from hub.store import Store
from tests.clusters.cli_support import Hub as Cli
from tests.sync.e2e_helpers import GitRepo

pytestmark = pytest.mark.timeout(120)

WEB = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {{name: web}}
spec:
  generators:
    - clusters: {{selector: {{matchLabels: {{env: prod}}}}}}
  template:
    metadata: {{name: 'web-{{{{name}}}}'}}
    spec:
      project: default
      source: {{repoURL: {apps}, targetRevision: main, path: web}}
      destination: {{name: '{{{{name}}}}', namespace: web}}
"""

# Reads a repository that is no source: only the recorded Git reads can see it move.
CFG = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {{name: cfg}}
spec:
  generators:
    - git:
        repoURL: {config}
        revision: main
        directories: [{{path: 'envs/*'}}]
  template:
    metadata: {{name: 'cfg-{{{{path.basename}}}}'}}
    spec:
      project: default
      source: {{repoURL: {apps}, targetRevision: main, path: '{{{{path}}}}'}}
      destination: {{name: east, namespace: cfg}}
"""

BULK = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {{name: bulk}}
spec:
  generators:
    - list:
        elements: [{elements}]
  template:
    metadata: {{name: 'bulk-{{{{n}}}}'}}
    spec:
      project: default
      source: {{repoURL: {apps}, targetRevision: main, path: bulk}}
      destination: {{name: east, namespace: bulk}}
"""

PLAIN = """
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {{name: plain}}
spec:
  project: team
  source: {{repoURL: {apps}, targetRevision: main, path: web}}
  destination: {{name: west, namespace: plain}}
"""

PROJECT = """
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: team}
spec:
  sourceRepos: ['*']
  destinations: [{server: '*', namespace: '*'}]
"""


@dataclass
class World:
    home: Path
    cli: Cli
    kubeconfig: Path
    source: GitRepo
    config: GitRepo
    apps: GitRepo

    def add_cluster(self, name: str, *labels: str) -> None:
        extra = [arg for label in labels for arg in ("--label", label)]
        self.cli.ok("cluster", "add", name, "--kubeconfig", str(self.kubeconfig),
                    "--context", name, "--skip-check", *extra)  # fmt: skip


def kubeconfig(path: Path, names: list[str]) -> Path:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": n, "cluster": {"server": f"https://{n}.example:6443"}} for n in names
        ],
        "users": [{"name": "u", "user": {"token": "tok-123456"}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "u"}} for n in names],
        "current-context": names[0],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def world(tmp_path: Path) -> World:
    apps = GitRepo(tmp_path / "apps")
    apps.write({"web/cm.yaml": "kind: ConfigMap\n"})
    config = GitRepo(tmp_path / "config")
    config.write({"envs/a/x.yaml": "a: 1\n", "envs/b/x.yaml": "b: 1\n"})
    source = GitRepo(tmp_path / "source")
    elements = ", ".join(f"{{n: '{i}'}}" for i in range(12))
    source.write(
        {
            "appsets/web.yaml": WEB.format(apps=apps.path),
            "appsets/cfg.yaml": CFG.format(apps=apps.path, config=config.path),
            "appsets/bulk.yaml": BULK.format(apps=apps.path, elements=elements),
            "appsets/project.yaml": PROJECT,
            "appsets/plain.yaml": PLAIN.format(apps=apps.path),
        }
    )
    cli = Cli(tmp_path / "home")
    cli.ok("init")
    w = World(
        home=cli.home,
        cli=cli,
        kubeconfig=kubeconfig(tmp_path / "kubeconfig", ["east", "west", "north", "south"]),
        source=source,
        config=config,
        apps=apps,
    )
    w.add_cluster("east", "env=prod")
    w.add_cluster("west", "env=prod")
    w.add_cluster("north")
    cli.ok("source", "add", "root", "--repo", str(source.path), "--path", "appsets")
    return w


Body = Callable[[Hub], Awaitable[None]]


@pytest.fixture
def run_hub(world: World) -> Iterator[Callable[[Body], Hub]]:
    """Open a hub on the world's home (no workers), run ``body`` against it, close it."""

    def run(body: Body, options: HubOptions | None = None) -> Hub:
        hub = Hub(world.home, options or HubOptions(appset_resync_s=3600.0))
        hub.metrics = Metrics()

        async def main() -> None:
            await anyio.to_thread.run_sync(hub._open)
            try:
                await body(hub)
            finally:
                await anyio.to_thread.run_sync(hub._close)

        anyio.run(main)
        return hub

    yield run


async def settle(hub: Hub) -> None:
    """Cycles until one skips: a pass that wrote something runs once more (so a write of
    one set that another set reads is seen), then nothing moves."""
    for _ in range(4):
        skipped = hub.appset_passes["skipped"]
        await hub.git_cycle()
        if hub.appset_passes["skipped"] > skipped:
            return
    raise AssertionError(f"no cycle skipped: {hub.appset_passes}")


async def full_pass_after(hub: Hub, change: Callable[[], object]) -> None:
    """Make ``change`` (outside the hub), run one cycle, which must be a full pass."""
    await settle(hub)
    await anyio.to_thread.run_sync(change)
    full = hub.appset_passes["full"]
    await hub.git_cycle()
    assert hub.appset_passes["full"] == full + 1, f"the change was not seen: {hub.appset_passes}"


def count_expansions(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The calls of ``reconcile_appsets`` (an ApplicationSet pass) from now on."""
    calls: list[object] = []
    original = hub.appsets.reconcile_appsets
    monkeypatch.setattr(
        hub.appsets,
        "reconcile_appsets",
        lambda *a, **k: calls.append(a) or original(*a, **k),
    )
    return calls


def names(hub: Hub, prefix: str = "") -> set[str]:
    """The Applications not being deleted (the template's finalizer: a removed one is
    marked for its cluster's worker, which these tests do not run)."""
    return {a.name for a in hub.apps.list_apps() if a.name.startswith(prefix) and not a.deleting}


# ---------------------------------------------------------------- skipping


def test_an_unchanged_cycle_skips_the_pass_and_still_polls_the_applications_repos(
    world: World, run_hub: Callable[[Body], Hub], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body(hub: Hub) -> None:
        await hub.git_cycle()
        assert names(hub, "web-") == {"web-east", "web-west"}
        assert names(hub, "cfg-") == {"cfg-a", "cfg-b"}
        assert names(hub, "plain") == {"plain"}
        await settle(hub)
        calls = count_expansions(hub, monkeypatch)
        await hub.git_cycle()
        await hub.git_cycle()
        assert calls == [], "an unchanged cycle expanded the ApplicationSets"
        assert hub.metrics is not None
        skipped = hub.metrics.registry.get_sample_value(
            "hub_appset_reconciles_total", {"result": "skipped"}
        )
        full = hub.metrics.registry.get_sample_value(
            "hub_appset_reconciles_total", {"result": "full"}
        )
        assert skipped is not None and skipped >= 3
        assert full == hub.appset_passes["full"] and full is not None and full >= 1
        # A commit to the repository the Applications deploy from (no source, not read
        # by a generator): no pass, but the poll still finds it.
        sha = world.apps.write({"web/cm.yaml": "kind: ConfigMap\nv: 2\n"})
        await hub.git_cycle()
        assert calls == []
        assert hub.revisions.snapshot()[(str(world.apps.path), "main")] == sha

    run_hub(body)


# ---------------------------------------------------------------- every input


def test_a_new_commit_in_the_source_runs_the_pass(
    world: World, run_hub: Callable[[Body], Hub]
) -> None:
    async def body(hub: Hub) -> None:
        await hub.git_cycle()
        await full_pass_after(
            hub, lambda: world.source.write({"appsets/web.yaml": None}, "drop web")
        )
        assert names(hub, "web-") == set()

    run_hub(body)


def source_row(world: World) -> dict[str, Any]:
    rows = json.loads(world.cli.ok("source", "list", "-o", "json").stdout)
    return next(r for r in rows if r["name"] == "root")  # type: ignore[no-any-return]


def test_a_commit_that_leaves_the_sources_files_as_they_were_is_recorded_without_a_pass(
    world: World, run_hub: Callable[[Body], Hub], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image bump committed beside the ApplicationSets (same repository, outside the
    source's path) moves the source's SHA, not its files: the cycle records the commit
    and skips the pass, which at 10,000 Applications costs seconds."""

    async def body(hub: Hub) -> None:
        await hub.git_cycle()
        await settle(hub)
        ingested = {a.name: a.sha for a in hub.apps.list_appsets()}
        calls = count_expansions(hub, monkeypatch)
        full, skipped = hub.appset_passes["full"], hub.appset_passes["skipped"]
        sha = world.source.write({"services/web.yaml": "kind: ConfigMap\nv: 2\n"}, "bump")
        await hub.git_cycle()
        assert calls == [] and hub.appset_passes["full"] == full
        assert hub.appset_passes["skipped"] == skipped + 1
        assert source_row(world)["lastSha"] == sha  # `hub source list` shows the commit
        assert {a.name: a.sha for a in hub.apps.list_appsets()} == ingested
        # recorded once: the next cycles find nothing moved and write nothing
        writes = count_record_loads(monkeypatch)
        await hub.git_cycle()
        await hub.git_cycle()
        assert calls == [] and writes == []
        # a commit that does change the source's files is a full pass, as before
        world.source.write({"appsets/web.yaml": None}, "drop web")
        await hub.git_cycle()
        assert hub.appset_passes["full"] == full + 1 and names(hub, "web-") == set()

    run_hub(body)


def count_record_loads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The loads ``SourceStore.record_load`` writes from now on."""
    writes: list[object] = []
    original = SourceStore.record_load

    def counting(self: SourceStore, load: Any) -> None:
        writes.append(load)
        original(self, load)

    monkeypatch.setattr(SourceStore, "record_load", counting)
    return writes


def test_a_held_source_that_moves_runs_the_pass_even_with_the_same_files(
    world: World, run_hub: Callable[[Body], Hub]
) -> None:
    """The deletion guard decides on every new commit of a held source: its files being
    unchanged is no reason to record it past the hold."""

    async def body(hub: Hub) -> None:
        await hub.git_cycle()
        held = world.source.write({"appsets/bulk.yaml": None}, "drop bulk")
        await hub.git_cycle()
        await settle(hub)
        assert source_row(world)["heldSha"] == held
        full = hub.appset_passes["full"]
        newer = world.source.write({"services/web.yaml": "kind: ConfigMap\n"}, "bump")
        await hub.git_cycle()
        assert hub.appset_passes["full"] == full + 1
        row = source_row(world)
        assert row["heldSha"] == newer and row["lastSha"] not in (held, newer)
        assert len(names(hub, "bulk-")) == 12  # still held: nothing deleted

    run_hub(body)


def test_a_commit_in_a_repo_only_a_git_generator_reads_runs_the_pass(
    world: World, run_hub: Callable[[Body], Hub]
) -> None:
    async def body(hub: Hub) -> None:
        await hub.git_cycle()
        await full_pass_after(hub, lambda: world.config.write({"envs/c/x.yaml": "c: 1\n"}))
        assert names(hub, "cfg-") == {"cfg-a", "cfg-b", "cfg-c"}

    run_hub(body)


def test_a_cluster_label_change_runs_the_pass(world: World, run_hub: Callable[[Body], Hub]) -> None:
    async def body(hub: Hub) -> None:
        await hub.git_cycle()
        await full_pass_after(hub, lambda: world.cli.ok("cluster", "label", "north", "env=prod"))
        assert names(hub, "web-") == {"web-east", "web-west", "web-north"}

    run_hub(body)


def test_a_cluster_added_or_removed_runs_the_pass(
    world: World, run_hub: Callable[[Body], Hub]
) -> None:
    async def body(hub: Hub) -> None:
        await hub.git_cycle()
        await full_pass_after(hub, lambda: world.add_cluster("south", "env=prod"))
        assert names(hub, "web-") == {"web-east", "web-west", "web-south"}
        await full_pass_after(hub, lambda: world.cli.ok("cluster", "rm", "west", "--yes"))
        assert names(hub, "web-") == {"web-east", "web-south"}

    run_hub(body)


def test_an_application_changed_or_deleted_by_another_path_runs_the_pass(
    world: World, run_hub: Callable[[Body], Hub]
) -> None:
    async def body(hub: Hub) -> None:
        await hub.git_cycle()
        store = AppStore(hub.store)
        record = store.get("web-east")
        assert record is not None

        def edit() -> None:
            spec = {**record.spec, "source": {**record.spec["source"], "path": "elsewhere"}}
            desired = DesiredApp(
                name=record.name,
                appset=record.appset,
                source=record.source,
                file=record.file,
                cluster=record.cluster,
                dest_name=record.dest_name,
                namespace=record.namespace,
                spec=spec,
            )
            with store.transaction() as txn:
                txn.put_desired(desired)

        await full_pass_after(hub, edit)
        again = store.get("web-east")
        assert again is not None and again.spec["source"]["path"] == "web"  # set back
        await full_pass_after(hub, lambda: store.finish_deletion("web-west"))
        assert "web-west" in names(hub)  # generated again

    run_hub(body)


def test_a_project_changed_in_the_store_runs_the_pass(
    world: World, run_hub: Callable[[Body], Hub]
) -> None:
    async def body(hub: Hub) -> None:
        await hub.git_cycle()
        store = AppStore(hub.store)
        assert [p.name for p in store.list_projects()] == ["team"]

        def drop() -> None:
            with store.transaction() as txn:
                txn.replace_projects("root", [])

        await full_pass_after(hub, drop)
        assert [p.name for p in store.list_projects()] == ["team"]  # ingested again

    run_hub(body)


def test_a_confirmed_held_revision_runs_the_pass(
    world: World, run_hub: Callable[[Body], Hub]
) -> None:
    async def body(hub: Hub) -> None:
        await hub.git_cycle()
        assert len(names(hub, "bulk-")) == 12
        # Removing the set would delete 12 of the source's 17 Applications: held.
        sha = world.source.write({"appsets/bulk.yaml": None}, "drop bulk")
        await hub.git_cycle()
        await settle(hub)
        assert len(names(hub, "bulk-")) == 12
        record = world.cli.ok("source", "list", "-o", "json").stdout
        assert sha in record
        await full_pass_after(hub, lambda: world.cli.ok("source", "confirm", "root"))
        assert names(hub, "bulk-") == set()

    run_hub(body)


def test_a_git_read_that_failed_runs_the_pass_again_every_cycle(
    world: World, run_hub: Callable[[Body], Hub]
) -> None:
    broken = CFG.format(apps=world.apps.path, config=world.config.path).replace(
        "revision: main", "revision: no-such-branch"
    )

    async def body(hub: Hub) -> None:
        await hub.git_cycle()
        await full_pass_after(hub, lambda: world.source.write({"appsets/cfg.yaml": broken}))
        for _ in range(3):
            full = hub.appset_passes["full"]
            await hub.git_cycle()
            assert hub.appset_passes["full"] == full + 1
        assert names(hub, "cfg-") == {"cfg-a", "cfg-b"}  # kept (a generator error)

    run_hub(body)


def test_the_periodic_pass_runs_even_when_nothing_changed(
    world: World, run_hub: Callable[[Body], Hub]
) -> None:
    async def body(hub: Hub) -> None:
        await hub.git_cycle()
        assert hub.options.appset_resync_s == 60.0
        clock = hub._clock

        def moved() -> None:  # a minute goes by
            hub._clock = lambda: clock() + 60.0

        await full_pass_after(hub, moved)

    run_hub(body, HubOptions())  # the default: a minute


def test_a_sync_in_flight_postpones_the_periodic_pass(
    world: World, run_hub: Callable[[Body], Hub]
) -> None:
    async def body(hub: Hub) -> None:
        await hub.git_cycle()
        await settle(hub)
        clock = hub._clock
        hub._clock = lambda: clock() + 60.0
        full = hub.appset_passes["full"]
        # The token a sync holds while it runs (hub.worker.operations).
        async with hub.global_syncs.slot("a-cluster"):
            await hub.git_cycle()
            assert hub.appset_passes["full"] == full
        await hub.git_cycle()
        assert hub.appset_passes["full"] == full + 1

    run_hub(body, HubOptions())


async def cycled(hub: Hub, result: str, before: int) -> None:
    """Wait until the Git loop ran a cycle with ``result`` ("full" or "skipped")."""
    with anyio.fail_after(30):
        while hub.appset_passes[result] == before:
            await anyio.sleep(0.05)


def test_a_refresh_runs_the_pass(world: World, run_hub: Callable[[Body], Hub]) -> None:
    async def body(hub: Hub) -> None:
        await hub.git_cycle()
        await settle(hub)
        full = hub.appset_passes["full"]
        await hub.git_cycle(force=True)
        assert hub.appset_passes["full"] == full + 1
        # The Git loop: a refresh request (the API's) or a new leader wakes it for a full
        # pass.
        async with anyio.create_task_group() as tg:
            tg.start_soon(hub._git_loop)
            await settle(hub)
            full = hub.appset_passes["full"]
            await hub.request_refresh(None)
            await cycled(hub, "full", full)
            hub.leadership_changed(True)  # a new leader
            await cycled(hub, "full", full + 1)
            tg.cancel_scope.cancel()

    run_hub(body, HubOptions(appset_resync_s=3600.0, git_poll_s=600.0))


def test_a_push_webhook_runs_a_cycle_at_once_and_the_pass_only_when_its_inputs_moved(
    world: World, run_hub: Callable[[Body], Hub]
) -> None:
    """A push is no refresh: the cycle it wakes fetches at once, and expands the
    ApplicationSets only when what they read moved, so a push of an image bump does not
    cost a pass over every Application."""

    async def body(hub: Hub) -> None:
        await hub.git_cycle()
        async with anyio.create_task_group() as tg:
            tg.start_soon(hub._git_loop)
            await settle(hub)
            full, skipped = hub.appset_passes["full"], hub.appset_passes["skipped"]
            # beside the sets, not under the source's path: recorded, no pass
            sha = world.source.write({"services/web.yaml": "kind: ConfigMap\n"}, "bump")
            assert await hub.notify_git_push([str(world.source.path)]) == 1
            await cycled(hub, "skipped", skipped)
            assert hub.appset_passes["full"] == full
            assert source_row(world)["lastSha"] == sha
            # the source's files changed: a pass
            world.source.write({"appsets/web.yaml": None}, "drop web")
            assert await hub.notify_git_push([str(world.source.path)]) == 1
            await cycled(hub, "full", full)
            assert names(hub, "web-") == set()
            # a push to a repository only a git generator reads, with a new directory
            full = hub.appset_passes["full"]
            world.config.write({"envs/c/x.yaml": "c: 1\n"})
            assert await hub.notify_git_push([str(world.config.path)]) == 1
            await cycled(hub, "full", full)
            assert names(hub, "cfg-") == {"cfg-a", "cfg-b", "cfg-c"}
            tg.cancel_scope.cancel()

    run_hub(body, HubOptions(appset_resync_s=3600.0, git_poll_s=600.0))


# ---------------------------------------------------------------- the pure decision


def inputs(**changes: Any) -> AppSetInputs:
    base = AppSetInputs(sources="s1", clusters=(("east",),), store=((1, 1),))
    return replace(base, **changes)


LAST = AppSetPass(inputs=inputs(), reads={}, unsure=False, at=100.0)


@pytest.mark.parametrize(
    ("last", "now_inputs", "now", "asked", "want"),
    [
        (LAST, inputs(), 110.0, False, None),
        (None, inputs(), 110.0, False, "first pass"),
        (LAST, inputs(), 110.0, True, "refresh requested"),
        (LAST, inputs(), 160.0, False, "periodic pass"),
        (replace(LAST, unsure=True), inputs(), 110.0, False, "a Git read failed"),
        (LAST, inputs(sources="s2"), 110.0, False, "a source changed"),
        # the same files at another commit: recorded by the cycle, no pass...
        (LAST, inputs(revisions=(("root", "a", "b"),)), 110.0, False, None),
        # ...unless a source is held or failing: the pass decides
        (LAST, inputs(revisions=(("root", "a", "b"),), clean=False), 110.0, False, "a source"),
        (LAST, inputs(clean=False), 110.0, False, None),
        (LAST, inputs(clusters=(("west",),)), 110.0, False, "the clusters changed"),
        (LAST, inputs(store=((2, 1),)), 110.0, False, "the stored Applications"),
    ],
)
def test_the_pass_runs_for_each_reason_and_only_then(
    last: AppSetPass | None, now_inputs: AppSetInputs, now: float, asked: bool, want: str | None
) -> None:
    reason = appset_pass_reason(last, now_inputs, now=now, resync_s=60.0, asked=asked)
    if want is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(want)


def test_syncs_in_flight_postpone_only_the_periodic_pass_and_only_so_long() -> None:
    def reason(now: float, **changes: Any) -> str | None:
        return appset_pass_reason(
            LAST, inputs(**changes), now=now, resync_s=60.0, asked=False, syncing=True
        )

    assert reason(160.0) is None  # due, but a rollout is running
    assert reason(100.0 + 60.0 * PERIODIC_PASS_DEFER) == "periodic pass"  # not forever
    # What an input asks for is never postponed.
    assert reason(160.0, sources="s2") == "a source changed"
    assert reason(160.0, store=((2, 1),)) is not None
    asked = appset_pass_reason(LAST, inputs(), now=110.0, resync_s=60.0, asked=True, syncing=True)
    assert asked == "refresh requested"


def test_a_read_moved_or_read_at_two_shas_counts_as_moved() -> None:
    reads = {("r", "main"): frozenset({"a"}), ("q", "main"): frozenset({"a", "b"})}
    assert moved_reads(reads, {("r", "main"): "a", ("q", "main"): "a"}) == [("q", "main")]
    assert moved_reads(reads, {("r", "main"): "b", ("q", "main"): "a"}) == [
        ("q", "main"),
        ("r", "main"),
    ]


def test_a_health_check_does_not_move_the_cluster_marks_a_label_does() -> None:
    east = ClusterRecord(name="east", server="https://east:6443", labels={"env": "prod"})
    checked = replace(
        east, last_check=LastCheck(time=datetime.now(UTC), ok=False, message="refused")
    )
    assert appset_cluster_marks([east]) == appset_cluster_marks([checked])
    assert appset_cluster_marks([east]) != appset_cluster_marks(
        [replace(east, labels={"env": "dev"})]
    )


# ---------------------------------------------------------------- the store mark


def desired(name: str, path: str = "p") -> DesiredApp:
    return DesiredApp(
        name=name,
        appset="web",
        source="root",
        cluster="east",
        dest_name="east",
        namespace="web",
        spec={
            "project": "default",
            "source": {"repoURL": "https://git.example/r.git", "path": path},
            "destination": {"name": "east", "namespace": "web"},
        },
    )


def test_the_desired_mark_moves_with_what_the_controller_reads_not_with_status(
    db_location: Path | str,
) -> None:
    store = Store.open(db_location, create=True)
    try:
        apps = AppStore(store)
        with apps.transaction() as txn:
            txn.put_appset(name="web", source="root", file="web.yaml", manifest={"a": 1}, sha="1")
            txn.put_desired(desired("one"))
            txn.put_desired(desired("two"))
        marks = [apps.desired_mark()]
        # What every sync and every pass write: no move.
        apps.set_status("one", sync_status="Synced", health_status="Healthy", synced_sha="f")
        with apps.transaction() as txn:
            txn.put_appset(name="web", source="root", file="web.yaml", manifest={"a": 1}, sha="1")
            txn.set_appset_status(
                "web", conditions=(), status={"applications": 2}, generated=2, last_error=None
            )
        assert apps.desired_mark() == marks[0]
        changes: list[Callable[[AppTxn], object]] = [
            lambda txn: txn.put_desired(desired("one", path="q")),
            lambda txn: txn.mark_deleting("two", "test"),
            lambda txn: txn.disown("one"),
            lambda txn: txn.delete_app("two"),
            lambda txn: txn.put_appset(
                name="web", source="root", file="web.yaml", manifest={"a": 2}, sha="2"
            ),
            lambda txn: txn.replace_projects(
                "root",
                [ProjectRecord(name="team", source="root", file="p.yaml", manifest={}, sha="2")],
            ),
        ]
        for change in changes:
            with apps.transaction() as txn:
                change(txn)
            marks.append(apps.desired_mark())
            assert marks[-1] != marks[-2], f"change {len(marks) - 1} did not move the mark"
    finally:
        store.close()
