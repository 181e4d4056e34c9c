"""A sync waiting out its retry backoff holds no hub-wide sync slot (``FairSlots`` lent out
through ``Limits.backoff``): a cluster whose syncs keep failing cannot hold the fleet's
slots through minutes of backoff. It queues for a slot again for the next attempt, which
then succeeds. In-process hub against ``hub sim``; the slots themselves:
tests/hub/test_fair_slots.py."""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import anyio
import pytest

from clusters.sim import SimServer
from hub.controller import Hub, HubOptions
from tests.clusters.cli_support import Hub as Cli
from tests.hub.test_controller_runtime import run_checked, wait_until
from tests.sync.e2e_helpers import GitRepo

__all__ = ["run_checked"]  # the fixture, used by name

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(120)]

# Its namespace does not exist and it may not create it: every attempt fails (retryable,
# as in Argo CD) until someone creates the namespace.
APP = """
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: one
spec:
  project: default
  source: {{repoURL: {repo}, targetRevision: main, path: app}}
  destination: {{name: a, namespace: later}}
  syncPolicy:
    automated: {{prune: true}}
    retry: {{limit: 20, backoff: {{duration: 2s, factor: 1}}}}
"""
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {v: '1'}\n"


def home(tmp_path: Path, sim: SimServer) -> Path:
    """A hub home with cluster "a" of ``sim`` and the Application "one" in Git."""
    repo = GitRepo(tmp_path / "repo")
    repo.write({"apps/one.yaml": APP.format(repo=repo.path), "app/c.yaml": CM})
    cli = Cli(tmp_path / "home")
    cli.ok("init")
    cli.ok("cluster", "add", "a", "--kubeconfig", str(sim.kubeconfig_path), "--context", "a")
    cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "apps")
    return cli.home


def retrying(server: Hub) -> bool:
    """Has an attempt of "one" failed, with the next one announced?"""
    app = server.apps.get("one")
    message = str((app.operation_state or {}).get("message", "")) if app else ""
    return "attempt" in message and " in 2s" in message


def test_a_sync_in_its_retry_backoff_gives_its_hub_wide_slot_back(
    tmp_path: Path, run_checked: Callable[[Callable[[], Awaitable[None]]], None]
) -> None:
    with SimServer(clusters=["a"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        server = Hub(
            home(tmp_path, sim), HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5)
        )

        async def body() -> None:
            async with anyio.create_task_group() as tg:
                await tg.start(server.run)
                await wait_until(partial(retrying, server), "a failed attempt waiting to retry")
                worker = server.workers["a"]
                assert worker.syncs_in_flight  # the operation is still running...
                # ...but between attempts it holds no hub-wide slot
                lent = 0
                for _ in range(20):
                    lent += server.global_syncs.borrowed == 0
                    await anyio.sleep(0.1)
                assert lent >= 10, lent

                made = subprocess.run(
                    ["kubectl", "--kubeconfig", str(sim.kubeconfig_path), "--context", "a",
                     "create", "namespace", "later"],
                    capture_output=True, text=True, check=False,
                )  # fmt: skip
                assert made.returncode == 0, made.stderr

                def synced() -> bool:
                    app = server.apps.get("one")
                    return app is not None and app.sync_status == "Synced"

                await wait_until(synced, "the attempt after the namespace exists", 30)
                await wait_until(lambda: not worker.syncs_in_flight, "the operation to end")
                assert server.global_syncs.borrowed == 0
                assert server.global_syncs.waiting == 0
                await server.shutdown()

        run_checked(body)


def test_a_sync_terminated_in_its_backoff_ends_without_waiting_for_a_slot(
    tmp_path: Path, run_checked: Callable[[Callable[[], Awaitable[None]]], None]
) -> None:
    with SimServer(clusters=["a"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        options = HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5, global_syncs=1)
        server = Hub(home(tmp_path, sim), options)

        async def body() -> None:
            async with anyio.create_task_group() as tg:
                await tg.start(server.run)
                await wait_until(partial(retrying, server), "a failed attempt waiting to retry")
                worker = server.workers["a"]
                # Another cluster's sync takes the hub's only slot while "one" backs off.
                async with server.global_syncs.slot("elsewhere"):
                    await anyio.sleep(2.5)  # the backoff is over: "one" waits for the slot
                    assert server.global_syncs.waiting == 1 and worker.syncs_in_flight
                    worker.cancel_operations()
                    await wait_until(lambda: not worker.syncs_in_flight, "the sync to end", 10)
                    assert server.global_syncs.waiting == 0
                app = server.apps.get("one")
                assert app is not None
                state = app.operation_state or {}
                assert state.get("phase") == "Failed"
                message = str(state.get("message"))
                assert message.startswith("operation terminated while waiting to retry")
                assert 'namespaces "later" not found' in message  # the last attempt's failure
                assert server.global_syncs.borrowed == 0
                await server.shutdown()

        run_checked(body)
