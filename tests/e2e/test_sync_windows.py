"""AppProject sync windows end to end: `hub serve` holds an automated sync while a deny
window is active, refuses `hub app sync NAME`, and syncs once a commit removes the window."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clusters.sim import SimServer
from hub.api.client import ApiClient, find_running_hub
from hub.api.token import read_token
from hub.apps import AppStore
from hub.home import open_store
from hub.sync.windows import SYNC_WINDOW_BLOCKED
from tests.e2e.serve_support import (
    AUTOMATED,
    CONFIGMAP,
    DEPLOYMENT,
    Fleet,
    guestbook_appset,
    start_hub,
    stop_hub,
    wait_for,
)
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(240)]

APP = "one-guestbook"

PROJECT = """
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: prod
spec:
  sourceRepos: ['*']
  destinations: [{server: '*', namespace: '*'}]
"""

# Active at any time: it starts every minute and lasts an hour.
DENY_NOW = """
  syncWindows:
    - kind: deny
      schedule: '* * * * *'
      duration: 1h
      applications: ['*-guestbook']
"""


def windows_stored(fleet: Fleet) -> list[object]:
    store = open_store(fleet.home)
    try:
        projects = AppStore(store).list_projects()
    finally:
        store.close()
    return [p.manifest.get("spec", {}).get("syncWindows") for p in projects if p.name == "prod"]


@contextmanager
def guestbook_fleet(tmp_path: Path, *serve_args: str, automated: bool = True) -> Iterator[Fleet]:
    """One cluster, the guestbook app in project prod (no window yet), `hub serve` running
    and the app Synced and Healthy on nginx:1.25 (synced by hand without ``automated``)."""
    with SimServer(clusters=["one"], ready_delay=0.2, kubeconfig_path=tmp_path / "k") as sim:
        repo = GitRepo(tmp_path / "repo")
        repo.write(
            {
                "sets/guestbook.yaml": guestbook_appset(
                    repo.path, project="prod", policy=[AUTOMATED] if automated else []
                ),
                "sets/project.yaml": PROJECT,
                "guestbook/deployment.yaml": DEPLOYMENT.format(image="nginx:1.25"),
                "guestbook/configmap.yaml": CONFIGMAP,
            }
        )
        f = Fleet(tmp_path / "home", sim, repo, tmp_path / "hub.log")
        f.cli.ok("init")
        f.cli.ok("cluster", "add", "one", "--kubeconfig", str(sim.kubeconfig_path),
                 "--context", "one")  # fmt: skip
        f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "sets")
        start_hub(f, "--port", "0", *serve_args)
        try:
            if not automated:
                wait_for("the app and the hub's API", lambda: find_running_hub(f.home))
                wait_for("the app", lambda: APP in f.apps())
                f.cli.ok("app", "sync", APP, "--wait", "--timeout", "60")
            wait_for("the app Synced and Healthy", lambda: f.all_good(["one"], "nginx:1.25"))
            yield f
        finally:
            code = stop_hub(f)
        assert code == 0, f.hub_log()[-4000:]


def read_git_now(fleet: Fleet) -> None:
    url = find_running_hub(fleet.home)
    assert url is not None
    ApiClient(url, token=read_token(fleet.home)).post("/api/v1/refresh")


def held_message(fleet: Fleet, sha: str) -> str | None:
    """The SyncWindowBlocked message once the app is OutOfSync at ``sha`` and held."""
    app = fleet.apps()[APP]
    blocked = [c for c in app.conditions if c.type == SYNC_WINDOW_BLOCKED]
    if app.desired_sha == sha and app.sync_status == "OutOfSync" and blocked:
        return blocked[0].message
    return None


def test_a_deny_window_holds_syncs_until_a_commit_removes_it(tmp_path: Path) -> None:
    with guestbook_fleet(tmp_path, "--git-poll", "1", "--resync", "30") as f:
        # The window first, alone: the hub has it before any change to hold.
        f.repo.write({"sets/project.yaml": PROJECT + DENY_NOW}, "freeze: deny window")
        wait_for("the window in the store", lambda: windows_stored(f) != [None])
        held_sha = f.commit_image("nginx:1.26")

        message = wait_for("the sync held by the window", lambda: held_message(f, held_sha))
        assert "deny window syncWindows[0] (schedule '* * * * *', duration 1h)" in message
        assert "of project prod is active until at least 20" in message
        assert f.image("one") == "nginx:1.25"

        refused = f.cli("app", "sync", APP)
        assert refused.exit_code == 1, refused.output
        assert f"application {APP}: manual sync refused: deny window syncWindows[0]" in (
            refused.output
        )
        assert "manualSync: true" in refused.output
        shown = f.cli.ok("app", "get", APP).output
        assert SYNC_WINDOW_BLOCKED in shown and "syncWindows[0]" in shown

        # Nothing slipped through meanwhile: still the old image, no sync of the new commit.
        app = f.apps()[APP]
        assert f.image("one") == "nginx:1.25"
        assert (app.operation_state or {}).get("syncResult", {}).get("revision") != held_sha

        thaw_sha = f.repo.write({"sets/project.yaml": PROJECT}, "thaw: window removed")
        wait_for("the held change synced", lambda: f.all_good(["one"], "nginx:1.26"))
        wait_for("its revision recorded", lambda: f.apps()[APP].synced_sha == thaw_sha, timeout=30)
        app = f.apps()[APP]
        assert not [c for c in app.conditions if c.type == SYNC_WINDOW_BLOCKED]


@pytest.mark.timeout(300)
def test_a_held_sync_runs_by_itself_when_the_window_ends(tmp_path: Path) -> None:
    # No Git poll, no resync and no commit after the hold (Git is read when asked): only the
    # hub's re-check at the window's end can wake the app.
    with guestbook_fleet(tmp_path, "--git-poll", "3600", "--resync", "3600") as f:
        now = datetime.now(UTC)
        # The window opened at the top of this minute and closes 30 s from now (a cron
        # schedule has minutes; the duration, a Go duration, may count seconds).
        length = f"{now.second + 30}s"
        window = f"""
  syncWindows:
    - kind: deny
      schedule: '{now.minute} {now.hour} * * *'
      duration: {length}
      clusters: [one]
"""
        f.repo.write({"sets/project.yaml": PROJECT + window}, "freeze for two minutes")
        read_git_now(f)
        wait_for("the window in the store", lambda: windows_stored(f) != [None])
        held_sha = f.commit_image("nginx:1.26")
        read_git_now(f)
        message = wait_for("the sync held by the window", lambda: held_message(f, held_sha))
        assert f"schedule '{now.minute} {now.hour} * * *', duration {length}" in message
        assert f.image("one") == "nginx:1.25"
        wait_for(
            "the sync after the window ended",
            lambda: f.all_good(["one"], "nginx:1.26"),
            timeout=120,
        )
        # Not before the window closed (the hub's clock and this one are the machine's).
        assert datetime.now(UTC) >= now.replace(microsecond=0) + timedelta(seconds=30)
        assert not [c for c in f.apps()[APP].conditions if c.type == SYNC_WINDOW_BLOCKED]


def test_a_deny_window_refuses_manual_syncs_and_rollbacks_unless_it_allows_them(
    tmp_path: Path,
) -> None:
    with guestbook_fleet(tmp_path, "--git-poll", "1", "--resync", "30", automated=False) as f:
        [entry] = json.loads(f.cli.ok("app", "history", APP, "-o", "json").output)
        f.repo.write({"sets/project.yaml": PROJECT + DENY_NOW}, "freeze: deny window")
        wait_for("the window in the store", lambda: windows_stored(f) != [None])
        rollback = ["rollback", APP, str(entry["id"])]
        for action, args in (("manual sync", ["sync", APP]), ("rollback", rollback)):
            refused = f.cli("app", *args)
            assert refused.exit_code == 1, refused.output
            says = f"application {APP}: {action} refused: deny window syncWindows[0]"
            assert says in refused.output

        # manualSync: true lets people through; automated syncs would still wait.
        f.repo.write(
            {"sets/project.yaml": PROJECT + DENY_NOW + "      manualSync: true\n"},
            "freeze, but people may sync by hand",
        )
        wait_for(
            "manualSync in the store",
            lambda: windows_stored(f) != [None] and "manualSync" in str(windows_stored(f)),
        )
        sha = f.commit_image("nginx:1.26")
        wait_for("the new commit seen", lambda: f.apps()[APP].desired_sha == sha)
        f.cli.ok("app", "sync", APP, "--wait", "--timeout", "60")
        assert f.image("one") == "nginx:1.26"
