"""`hub serve` end to end with two teams: each project role's token sees and syncs only
its own project's Applications on simulated clusters; a forbidden sync is a 403 naming
the rule and is in `hub audit`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from clusters.sim import SimServer
from tests.clusters.cli_support import CLEAN_ENV
from tests.e2e.cdp import Browser, Page, find_chromium
from tests.e2e.serve_support import (
    CONFIGMAP,
    Fleet,
    hub_url,
    start_hub,
    stop_hub,
    wait_for,
)
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(240)]

PROJECT = """
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: {team}
spec:
  sourceRepos: ['*']
  destinations: [{{server: '*', namespace: '*'}}]
  clusterResourceWhitelist: [{{group: '*', kind: '*'}}]
  roles:
    - name: deployer
      policies:
        - p, proj:{team}:deployer, applications, get, {team}/*, allow
        - p, proj:{team}:deployer, applications, sync, {team}/*, allow
"""

APPSET = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: {team}
spec:
  generators:
    - clusters: {{}}
  template:
    metadata:
      name: '{{{{name}}}}-{team}'
    spec:
      project: {team}
      source: {{repoURL: {repo}, targetRevision: main, path: config}}
      destination: {{server: '{{{{server}}}}', namespace: {team}}}
      syncPolicy:
        syncOptions: [CreateNamespace=true]
"""

TEAMS = ("team-a", "team-b")
CHROMIUM = find_chromium()  # without it the dashboard part is skipped (make system-deps)


def call(url: str, token: str | None, method: str = "GET") -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def test_two_teams_each_see_and_sync_only_their_own_applications(tmp_path: Path) -> None:
    with SimServer(
        clusters=["east", "west"], ready_delay=0.1, kubeconfig_path=tmp_path / "k"
    ) as sim:
        repo = GitRepo(tmp_path / "repo")
        files = {"config/configmap.yaml": CONFIGMAP}
        for team in TEAMS:
            files[f"hub/{team}-project.yaml"] = PROJECT.format(team=team)
            files[f"hub/{team}.yaml"] = APPSET.format(team=team, repo=repo.path)
        repo.write(files)
        f = Fleet(tmp_path / "home", sim, repo, tmp_path / "hub.log")
        f.cli.ok("init")
        for name in ("east", "west"):
            f.cli.ok("cluster", "add", name, "--kubeconfig", str(sim.kubeconfig_path),
                     "--context", name)  # fmt: skip
        f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "hub")
        (f.home / "rbac.yaml").write_text("policy.default: ''\n")  # no reads by default
        (f.home / "rbac.csv").write_text("g, vera, role:readonly\n")
        tokens = {
            team: f.cli.ok("token", "create", "--project-role", f"{team}:deployer").stdout.strip()
            for team in TEAMS
        }
        f.cli.ok("user", "add", "vera")
        reader = f.cli.ok("token", "create", "--user", "vera").stdout.strip()
        start_hub(f, "--git-poll", "1", "--resync", "600", "--port", "0")
        try:
            url = hub_url(f)
            wait_for("the hub ready", lambda: ready(url))
            wait_for("four Applications", lambda: len(f.apps()) == 4)

            for team, other in (TEAMS, TEAMS[::-1]):
                status, doc = call(f"{url}/api/v1/applications", tokens[team])
                assert status == 200
                assert {a["name"] for a in doc["items"]} == {f"east-{team}", f"west-{team}"}
                assert call(f"{url}/api/v1/applications/east-{other}", tokens[team])[0] == 403
            assert call(f"{url}/api/v1/applications", None)[1]["items"] == []  # anonymous

            # team-b may not sync team-a's Application: 403 naming subject, action, object
            status, doc = call(
                f"{url}/api/v1/applications/east-team-a/sync", tokens["team-b"], "POST"
            )
            assert status == 403, doc
            assert doc["error"]["subject"] == "proj:team-b:deployer"
            assert (doc["error"]["action"], doc["error"]["resource"]) == ("sync", "applications")
            assert doc["error"]["object"] == "team-a/east-team-a"
            assert f.kubectl("east", "get", "configmap", "settings", "-n", "team-a").returncode != 0

            # team-a syncs its own: the ConfigMap reaches the cluster
            status, doc = call(
                f"{url}/api/v1/applications/east-team-a/sync", tokens["team-a"], "POST"
            )
            assert status == 202, doc
            wait_for(
                "east-team-a synced",
                lambda: (
                    f.apps()["east-team-a"].sync_status == "Synced"
                    and f.kubectl("east", "get", "configmap", "settings", "-n", "team-a").returncode
                    == 0
                ),
            )
            assert f.apps()["east-team-b"].sync_status != "Synced"  # nobody synced team-b's
            if CHROMIUM is not None:
                asyncio.run(dashboard(url, tokens["team-a"], reader, tmp_path / "profile"))
        finally:
            assert stop_hub(f) == 0

        trail = json.loads(f.cli.ok("audit", "-o", "json").stdout)
        api = [
            (e["actor"], e["action"], e["target"], e["result"]) for e in trail if e["via"] == "api"
        ]
        assert api == [
            ("proj:team-b:deployer", "app.sync", "team-a/east-team-a", "refused"),
            ("proj:team-a:deployer", "app.sync", "team-a/east-team-a", "ok"),
        ]
        assert [e["action"] for e in trail if e["via"] == "cli"][:3] == [
            "cluster.add", "cluster.add", "source.add",
        ]  # fmt: skip
        assert "audit: app.sync team-a/east-team-a refused by proj:team-b:deployer" in f.hub_log()
        everything = f.hub_log() + json.dumps(trail)
        everything += "".join(
            p.read_bytes().decode("latin-1") for p in f.home.rglob("*") if p.is_file()
        )
        for token in tokens.values():
            assert token.split("_", 2)[2] not in everything


async def log_in(page: Page, token: str) -> None:
    await page.evaluate("document.getElementById('token-button').click()")
    await page.evaluate(f"document.getElementById('token-input').value = {json.dumps(token)}")
    await page.evaluate("document.getElementById('token-form').requestSubmit()")


async def dashboard(url: str, team_a: str, reader: str, profile: Path) -> None:
    """The dashboard logged in as team-a shows team-a's Applications only, with Sync; a
    read-only user sees all, without Sync."""
    apps_js = "[...document.querySelectorAll('#matrix a.app-link')].map(a => a.dataset.app).sort()"
    async with Browser.launch(CHROMIUM or "", profile) as browser:
        page = await browser.new_page(url + "/")
        await page.wait_for("document.getElementById('token-form').hidden === false || "
                            "document.getElementById('totals').childElementCount > 0",
                            what="the overview")  # fmt: skip
        assert await page.evaluate(apps_js) == []  # anonymous: policy.default is empty
        await log_in(page, team_a)
        await page.wait_for(
            "document.getElementById('whoami').textContent === 'signed in as proj:team-a:deployer'",
            what="team-a signed in",
        )
        await page.wait_for(f"JSON.stringify({apps_js}) === "
                            "JSON.stringify(['east-team-a', 'west-team-a'])",
                            what="only team-a's Applications")  # fmt: skip
        await page.evaluate("location.hash = '#/app/west-team-a'")
        await page.wait_for("document.getElementById('app-name').textContent === 'west-team-a'",
                            what="the app page")  # fmt: skip
        assert await page.evaluate("document.getElementById('sync-button').hidden") is False

        await log_in(page, reader)
        await page.wait_for("document.getElementById('whoami').textContent === 'signed in as vera'",
                            what="vera signed in")  # fmt: skip
        await page.wait_for("document.getElementById('sync-button').hidden === true",
                            what="no Sync button for a reader")  # fmt: skip
        assert await page.evaluate("document.getElementById('refresh-button').hidden") is False
        await page.evaluate("location.hash = '#/'")
        await page.wait_for(f"{apps_js}.length === 4", what="all four for a reader")


def test_a_hub_bound_beyond_loopback_answers_no_read_without_a_token(tmp_path: Path) -> None:
    f = Fleet(tmp_path / "home", None, None, tmp_path / "hub.log")  # type: ignore[arg-type]
    f.cli.ok("init")
    f.cli.ok("user", "add", "alice")
    token = f.cli.ok("token", "create", "--user", "alice").stdout.strip()
    (f.home / "rbac.yaml").write_text("policy.default: ''\n")
    with f.log.open("a") as log:  # without -v: the audit line must show anyway
        f.proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "--home", str(f.home), "serve", "--host", "0.0.0.0",
             "--port", "0"],
            stdout=log, stderr=subprocess.STDOUT, text=True,
            env={k: v for k, v in os.environ.items() if k not in CLEAN_ENV},
        )  # fmt: skip
    try:
        # the kernel picks the port as the hub binds it (all addresses); reached on loopback
        url = f"http://127.0.0.1:{urlsplit(hub_url(f)).port}"
        wait_for("the hub ready", lambda: ready(url))
        status, doc = call(f"{url}/api/v1/applications", None)
        assert status == 401, doc
        assert "requires a token for reads" in doc["error"]["message"]
        assert call(f"{url}/api/v1/applications", token) == (200, {"items": []})
        # alice has no role and there is no default: reads filter to nothing, a refresh of
        # everything is refused and recorded
        status, doc = call(f"{url}/api/v1/refresh", token, "POST")
        assert status == 403 and doc["error"]["subject"] == "alice", doc
    finally:
        assert stop_hub(f) == 0
    assert "audit: app.refresh */* refused by alice" in f.hub_log()
