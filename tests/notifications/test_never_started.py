"""An operation that never started is no failed sync (docs/notifications.md, "When a
trigger fires"). A hub killed between a sync's running state and its engine's first record
leaves ``operation_state`` Running; the next hub rewrites it as a finished Error marked
``interrupted: before-start`` (``Hub.record_interrupted``): nothing was applied, and an
automated app syncs the revision again at once. The app's next status write evaluates its
triggers: that state must not fire ``on-sync-failed`` (nothing failed), while the app's
status still shows it. In-process hub against ``hub sim``, a real webhook receiver on
loopback."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from clusters.sim import SimServer
from hub.controller import Hub, HubOptions
from hub.home import open_store
from hub.notifications.dispatcher import outbox_rows
from tests.clusters.cli_support import Hub as Cli
from tests.hub.test_controller_runtime import CM, run_checked, wait_until
from tests.hub.test_worker_left_running import leave_running
from tests.notifications.receivers import HttpReceiver
from tests.sync.e2e_helpers import GitRepo

__all__ = ["run_checked"]  # the fixture, used by name

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(120)]

SUBSCRIBED = "notifications.argoproj.io/subscribe."
APP = f"""
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: {{name}}
  annotations:
    {SUBSCRIBED}on-sync-failed.hook: ""
    {SUBSCRIBED}on-sync-succeeded.hook: ""
    {SUBSCRIBED}probe.hook: ""
spec:
  project: default
  source: {{{{repoURL: {{repo}}, targetRevision: main, path: {{name}}}}}}
  destination: {{{{name: a, namespace: default}}}}
"""
SETTINGS = """
service.webhook.hook: |
  url: {url}
"""
# Defined for the next hub only: a trigger new to an app fires at the app's first status
# write, so its message for "two" shows that the next hub evaluated "two"'s triggers after
# the rewrite (the write that would fire on-sync-failed).
PROBE = """
template.probe: |
  message: evaluated
trigger.probe: |
  - when: app.metadata.name != ''
    send: [probe]
"""


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver().start()
    yield r
    r.stop()


def test_an_operation_that_never_started_fires_no_sync_failed(
    tmp_path: Path,
    receiver: HttpReceiver,
    run_checked: Callable[[Callable[[], Awaitable[None]]], None],
) -> None:
    repo = GitRepo(tmp_path / "repo")
    options = HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5)
    with SimServer(clusters=["a"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        first = repo.write(
            {
                # "one" syncs automatically; "two" waits for an operator.
                "apps/one.yaml": APP.format(name="one", repo=repo.path)
                + "  syncPolicy:\n    automated: {}\n",
                "apps/two.yaml": APP.format(name="two", repo=repo.path),
                "one/cm.yaml": CM.format(value="1"),
                "two/cm.yaml": CM.format(value="1").replace("name: c", "name: d"),
            }
        )
        cli = Cli(tmp_path / "home")
        cli.ok("init")
        cli.ok("cluster", "add", "a", "--kubeconfig", str(sim.kubeconfig_path), "--context", "a")
        cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "apps")
        (cli.home / "notifications.yaml").write_text(SETTINGS.format(url=receiver.url))

        def received() -> list[tuple[str, str]]:
            return [
                (body["app"], body["trigger"])
                for body in (json.loads(r.body) for r in list(receiver.requests))
            ]

        def synced(server: Hub, revision: str, app: str = "one") -> bool:
            return any(
                e.revision == revision and e.phase.value == "Succeeded"
                for e in server.history.entries(app)
            )

        before = Hub(cli.home, options)

        async def sync_first() -> None:
            async with anyio.create_task_group() as tg:
                await tg.start(before.run)
                await wait_until(lambda: synced(before, first), "commit 1 synced by 'one'")
                # An operator syncs "two" once, so it tracks a live object: the next hub's
                # first ConfigMap list then wakes it. (An app tracking nothing of a kind is
                # not woken by a first list that names other apps' objects: it waits for the
                # resync, clusters/cache.py ``replace_kind``; not this test's subject.)
                await before.request_sync("two")
                # Delivered *and recorded*: a message in flight at shutdown is sent again by
                # the next hub (at least once, docs/notifications.md), which is not this
                # test's subject.
                await wait_until(
                    lambda: (
                        synced(before, first, "two")
                        and len(received()) == 2
                        and len(outbox_rows(before.store, state="sent")) == 2
                    ),
                    "'two' synced, both messages recorded as sent",
                )
                await before.shutdown()

        run_checked(sync_first)
        assert sorted(received()) == [("one", "on-sync-succeeded"), ("two", "on-sync-succeeded")]

        # A commit; the hub that saw it was killed right after writing the running state of
        # its syncs ("two" by an operator), before the engines recorded anything.
        second = repo.write({"one/cm.yaml": CM.format(value="2")})
        store = open_store(cli.home)
        try:
            leave_running(store, {"one": "automated", "two": "user"}, second)
        finally:
            store.close()
        (cli.home / "notifications.yaml").write_text(SETTINGS.format(url=receiver.url) + PROBE)

        after = Hub(cli.home, options)

        async def next_hub() -> None:
            async with anyio.create_task_group() as tg:
                await tg.start(after.run)
                try:
                    await wait_until(
                        lambda: (
                            synced(after, second)
                            and {("one", "probe"), ("two", "probe")} <= set(received())
                            and received().count(("one", "on-sync-succeeded")) == 2
                        ),
                        "the next hub syncs the revision left Running and evaluates both apps",
                        timeout=60,
                    )
                except TimeoutError:
                    pytest.fail(f"synced: {synced(after, second)}, received: {received()}")
                await after.shutdown()

        run_checked(next_hub)

        # Nothing said a sync failed: of the two operations left Running, none ran; the
        # automated app's retry succeeded. The outbox holds every firing, sent or not.
        expected = [
            ("one", "on-sync-succeeded"),
            ("one", "on-sync-succeeded"),
            ("one", "probe"),
            ("two", "on-sync-succeeded"),
            ("two", "probe"),
        ]
        assert sorted(received()) == expected
        store = open_store(cli.home)
        try:
            assert (
                sorted((str(r["app"]), str(r["trigger"])) for r in outbox_rows(store)) == expected
            )
        finally:
            store.close()
        # The operator still sees what happened to "two" in its status.
        shown = json.loads(cli.ok("app", "get", "two", "-o", "json").stdout)["operationState"]
        assert (shown["phase"], shown["interrupted"]) == ("Error", "before-start")
