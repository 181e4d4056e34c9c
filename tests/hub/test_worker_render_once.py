"""Render once (issue 12): the worker renders and validates an Application once per
(revision, spec) and every sync it starts applies that render without validating it again
while the cluster's discovery is the one it was validated against; the engine renders
only a revision the worker has not (a manual sync to another commit). In-process hub
against ``hub sim``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import hub.sync.attempt
import hub.worker.refresher
from clusters.sim import SimServer
from hub.controller import Hub, HubOptions
from hub.sync.sources import ResolvedSource
from tests.clusters.cli_support import Hub as Cli
from tests.hub.test_controller_runtime import AUTO_APP as APP
from tests.hub.test_controller_runtime import (
    CM,
    all_synced,
    one_cluster_home,
    run_checked,
    sim_client,
    wait_until,
)
from tests.sync.e2e_helpers import GitRepo

__all__ = ["run_checked"]  # the fixture, used by name

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(120)]


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The revisions rendered, by who rendered them (the worker, the engine)."""
    seen: dict[str, list[str]] = {"worker": [], "engine": []}
    for who, module in (("worker", hub.worker.refresher), ("engine", hub.sync.attempt)):
        original = module.render_app

        def spy(
            app: Any,
            resolved: list[ResolvedSource],
            *a: Any,
            _who: str = who,
            _original: Any = original,
            **kw: Any,
        ) -> Any:
            rendered = _original(app, resolved, *a, **kw)
            # counted once done: a render tried on the loop may stop at a blocking step
            # (hub.inline) and run again in a thread
            seen[_who].append(",".join(r.revision for r in resolved))
            return rendered

        monkeypatch.setattr(module, "render_app", spy)
    seen["engine validations"] = []
    validate = hub.sync.attempt.validate_manifests

    def validating(manifests: Any, **kw: Any) -> Any:
        seen["engine validations"].append(",".join(sorted(str(m.key) for m in manifests)))
        return validate(manifests, **kw)

    monkeypatch.setattr(hub.sync.attempt, "validate_manifests", validating)
    return seen


@pytest.fixture
def home(tmp_path: Path) -> Iterator[tuple[Path, SimServer, GitRepo, list[str]]]:
    repo = GitRepo(tmp_path / "repo")
    with SimServer(clusters=["a"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        old = repo.write({"app/cm.yaml": CM.format(value="0")})
        new = repo.write(
            {"apps/a.yaml": APP.format(repo=repo.path), "app/cm.yaml": CM.format(value="1")}
        )
        cli = Cli(tmp_path / "home")
        cli.ok("init")
        cli.ok("cluster", "add", "a", "--kubeconfig", str(sim.kubeconfig_path), "--context", "a")
        cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "apps")
        yield cli.home, sim, repo, [old, new]


def test_one_render_per_revision_serves_the_sync_and_the_self_heal_and_another_revision_renders(
    home: tuple[Path, SimServer, GitRepo, list[str]],
    renders: dict[str, list[str]],
    run_checked: Callable[[Callable[[], Awaitable[None]]], None],
) -> None:
    path, sim, _repo, (old, new) = home
    server = Hub(path, HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5))
    client = sim_client(sim, "a")
    cm = client.resource_for("", "ConfigMap")

    def value() -> str | None:
        obj = client.get_or_none(cm, "c", "default")
        return None if obj is None else (obj.get("data") or {}).get("v")

    def triggers() -> list[tuple[str, str]]:
        return [(e.trigger.value, e.revision) for e in server.history.entries("one")]

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)
            await wait_until(lambda: value() == "1" and len(triggers()) == 1, "automated sync")
            client.merge_patch(cm, "c", "default", {"data": {"v": "drift"}})
            await wait_until(lambda: len(triggers()) == 2 and value() == "1", "self-heal")
            assert triggers() == [("automated", new), ("self-heal", new)]
            # One render of `new`, by the worker, validated there; both syncs applied it.
            assert renders == {"worker": [new], "engine": [], "engine validations": []}
            entry = server.history.entries("one")[-1]
            assert entry.source.get("revision") == new, entry.source

            # A manual sync to another commit renders that commit (once, in the engine).
            await server.request_sync("one", revision=old, who="test")
            await wait_until(lambda: any(r == old for _t, r in triggers()), "the sync to old")
            assert renders["engine"] == [old]
            assert renders["worker"] == [new]
            assert len(renders["engine validations"]) == 1  # its own render, validated
            # the automated sync takes the app back to `new`: the worker's render again
            await wait_until(lambda: len(triggers()) == 4 and value() == "1", "back to new")
            assert triggers()[-1] == ("automated", new)
            assert len(renders["engine validations"]) == 1

            # Discovery refreshed (a CRD installed, say): the next sync validates the
            # worker's render again, against the discovery of now.
            await server.workers["a"].kube.resources(refresh=True)
            client.merge_patch(cm, "c", "default", {"data": {"v": "drift"}})
            await wait_until(lambda: len(triggers()) == 5 and value() == "1", "self-heal")
            assert triggers()[-1] == ("self-heal", new)
            assert renders["engine validations"][1:] == ["/ConfigMap default/c"]  # the worker's
            await server.shutdown()

    run_checked(body)
    client.connection.close()


def test_renders_that_need_no_blocking_step_run_on_the_loop(
    tmp_path: Path, run_checked: Callable[[Callable[[], Awaitable[None]]], None]
) -> None:
    """Three Applications of one path: the first render exports the commit's tree (in a
    thread), the others find it exported and render on the worker's loop; all three sync."""
    repo = GitRepo(tmp_path / "repo")
    names = ["one", "two", "three"]
    apps = {
        f"apps/{n}.yaml": APP.format(repo=repo.path).replace("name: one", f"name: {n}")
        + f"  # {n}\n"
        for n in names
    }
    with one_cluster_home(
        tmp_path, repo, {**apps, "app/cm.yaml": CM.format(value="shared")}
    ) as path:
        server = Hub(path, HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5))

        async def body() -> None:
            async with anyio.create_task_group() as tg:
                await tg.start(server.run)
                await wait_until(all_synced(server, names), "three apps synced")
                assert len(server.apps.list_apps()) == 3
                renders = server.workers["a"].renders
                assert renders["thread"] >= 1, renders  # the first: the tree was not exported
                assert renders["inline"] >= 1, renders
                assert renders["thread"] + renders["inline"] == 3, renders
                await server.shutdown()

        run_checked(body)
