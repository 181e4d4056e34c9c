"""Status rollups end to end: a real `hub serve` syncing `hub sim` clusters, read through
the JSON API, the CLI (through the API and read-only from the store), /metrics, the
clusters themselves (kubectl), and the dashboard in headless Chromium.

The story, in file order: two ApplicationSets over three clusters sync; one Application
(api on west) fails (a crash-looping image with a short progress deadline, so its
Deployment is Degraded); a `kubectl scale` on east drifts api-east (no selfHeal, so it
stays OutOfSync). Every view must show the same numbers, and they must be the clusters'
real state. Then the dashboard's sync button (with the API token) heals the drift.

A screenshot of each dashboard page is saved under the test's tmp dir (and copied to
$HUB_ARTIFACTS_DIR when set) for a human to look at.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clusters.sim import SimServer
from hub.api.token import read_token
from tests.clusters.cli_support import CLEAN_ENV, Hub
from tests.conftest import run_kubectl
from tests.e2e import serve_support
from tests.e2e.cdp import Browser, Page, find_chromium
from tests.e2e.serve_support import CONFIGMAP, served_url
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(300)]

CLUSTERS = {"east": "tier=api", "west": "tier=api", "north": "tier=web"}

GUESTBOOK_SET = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: guestbook
spec:
  generators:
    - clusters:
        selector:
          matchLabels: {{env: prod}}
  template:
    metadata:
      name: '{{{{name}}}}-guestbook'
    spec:
      project: default
      source: {{repoURL: {repo}, targetRevision: main, path: guestbook}}
      destination: {{server: '{{{{server}}}}', namespace: guestbook}}
      syncPolicy:
        automated: {{prune: true, selfHeal: true}}
        syncOptions: [CreateNamespace=true]
"""

API_SET = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: api
spec:
  generators:
    - clusters:
        selector:
          matchLabels: {{tier: api}}
  template:
    metadata:
      name: '{{{{name}}}}-api'
    spec:
      project: default
      source: {{repoURL: {repo}, targetRevision: main, path: 'api/{{{{name}}}}'}}
      destination: {{server: '{{{{server}}}}', namespace: api}}
      syncPolicy:
        automated: {{prune: true}}
        syncOptions: [CreateNamespace=true]
"""

# The same set with a template that names a parameter no generator gives: an error of
# the set (ErrorOccurred), which keeps its Applications.
BROKEN_API_SET = (
    API_SET.replace("metadata:\n  name: api\nspec:\n", "metadata:\n  name: api\nspec:\n"
                    "  goTemplate: true\n  goTemplateOptions: [missingkey=error]\n")
    .replace("'{{{{name}}}}-api'", "'{{{{ .nosuch }}}}-api'")
)  # fmt: skip

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 2
  progressDeadlineSeconds: {deadline}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: {name}
          image: {image}
"""


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    """The shared poller, with the longer deadline a browser round trip needs."""
    return serve_support.wait_for(what, check, timeout)


class Fleet:
    def __init__(self, home: Path, sim: SimServer, url: str, log: Path, repo: GitRepo) -> None:
        self.repo = repo
        self.home = home
        self.sim = sim
        self.url = url
        self.log = log
        self.cli = Hub(home)

    def get(self, path: str) -> Any:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.url + path, timeout=10) as response:
            body = response.read()
        return json.loads(body) if path != "/metrics" else body.decode()

    def api_status(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.get("/api/v1/status")
        return doc

    def apps(self) -> dict[str, tuple[str, str]]:
        return {
            a["name"]: (a["sync"], a["health"]) for a in self.get("/api/v1/applications")["items"]
        }

    def kubectl_json(self, cluster: str, *args: str) -> Any:
        out = run_kubectl(self.sim.kubeconfig_path, *args, "-o", "json", context=cluster)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def hub_log(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("dashboard")
    with SimServer(
        clusters=list(CLUSTERS), ready_delay=0.2, kubeconfig_path=root / "sim.kubeconfig"
    ) as sim:
        repo = GitRepo(root / "repo")
        repo.write(
            {
                "appsets/guestbook.yaml": GUESTBOOK_SET.format(repo=repo.path),
                "appsets/api.yaml": API_SET.format(repo=repo.path),
                "guestbook/deployment.yaml": DEPLOYMENT.format(name="web", image="nginx:1.25", deadline=600),
                "guestbook/configmap.yaml": CONFIGMAP,
                "api/east/deployment.yaml": DEPLOYMENT.format(name="api", image="api:1.0", deadline=600),
                # the failure: a crash loop that passes its progress deadline -> Degraded
                "api/west/deployment.yaml": DEPLOYMENT.format(name="api", image="api:1.0-crashloop", deadline=2),
            },
            "two ApplicationSets",
        )  # fmt: skip
        home = root / "home"
        cli = Hub(home)
        cli.ok("init")
        for name, label in CLUSTERS.items():
            cli.ok(
                "cluster", "add", name, "--kubeconfig", str(sim.kubeconfig_path),
                "--context", name, "--label", "env=prod", "--label", label,
            )  # fmt: skip
        cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "appsets")
        log = root / "hub.log"
        env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hub", "--home", str(home), "-v", "serve",
                 "--git-poll", "2", "--resync", "30", "--port", "0"],
                stdout=out, stderr=subprocess.STDOUT, text=True, env=env,
            )  # fmt: skip
            try:
                yield Fleet(home, sim, served_url(home, proc, log), log, repo)
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def settled(fleet: Fleet, *, drifted: bool = False) -> dict[str, tuple[str, str]] | None:
    """The fleet as the story expects it: all Synced and Healthy but west-api (Degraded),
    and with ``drifted`` east-api may be OutOfSync."""
    try:
        apps = fleet.apps()
    except OSError:
        return None  # the API is not up yet
    if drifted and apps.get("east-api", ("",))[0] == "OutOfSync":
        apps = {**apps, "east-api": ("Synced", "Healthy")}
    want_good = ["east-guestbook", "west-guestbook", "north-guestbook", "east-api"]
    if any(apps.get(n) != ("Synced", "Healthy") for n in want_good):
        return None
    if apps.get("west-api", ("", ""))[1] != "Degraded":
        return None
    return apps


def without_volatile(doc: dict[str, Any], *, connections: bool) -> dict[str, Any]:
    """A status document without its timestamp (and connection states, which the store
    only knows from the last check)."""
    out: dict[str, Any] = json.loads(json.dumps(doc))
    out.pop("generatedAt")
    if not connections:
        for c in out["clusters"]:
            c.pop("connection")
    return out


def real_state(fleet: Fleet) -> dict[str, tuple[str, str]]:
    """Each api Application's state as the cluster shows it: OutOfSync when the replica
    count differs from Git's 2, Degraded when the Deployment passed its progress deadline."""
    out = {}
    for cluster in ("east", "west"):
        dep = fleet.kubectl_json(cluster, "get", "deployment", "api", "-n", "api")
        sync = "Synced" if dep["spec"]["replicas"] == 2 else "OutOfSync"
        reasons = {c.get("reason") for c in dep.get("status", {}).get("conditions", [])}
        ready = dep.get("status", {}).get("readyReplicas", 0) == dep["spec"]["replicas"]
        health = (
            "Degraded"
            if "ProgressDeadlineExceeded" in reasons
            else "Healthy"
            if ready
            else "Progressing"
        )
        out[f"{cluster}-api"] = (sync, health)
    return out


def test_rollups_agree_across_api_cli_store_metrics_and_the_clusters(fleet: Fleet) -> None:
    wait_for("the fleet synced with one failure", lambda: settled(fleet), timeout=120)
    wait_for("/readyz", lambda: fleet.get("/readyz")["status"] == "ready")
    # drift: east's api scaled by hand; no selfHeal, so it stays OutOfSync
    run_kubectl(fleet.sim.kubeconfig_path, "scale", "deployment", "api", "-n", "api",
                "--replicas=5", context="east")  # fmt: skip
    wait_for("east-api OutOfSync", lambda: fleet.apps().get("east-api", ("",))[0] == "OutOfSync")

    real, apps = real_state(fleet), fleet.apps()
    assert real["east-api"][0] == apps["east-api"][0] == "OutOfSync"
    assert real["west-api"][1] == apps["west-api"][1] == "Degraded"

    def views_agree() -> dict[str, Any] | None:
        # Three reads of a live hub: retried in case a resync lands between them.
        api = fleet.api_status()
        via_cli = json.loads(fleet.cli.ok("status", "-o", "json", "--server", fleet.url).stdout)
        from_store = json.loads(fleet.cli.ok("status", "-o", "json", "--offline").stdout)
        same = without_volatile(via_cli, connections=True) == without_volatile(
            api, connections=True
        ) and without_volatile(from_store, connections=False) == without_volatile(
            api, connections=False
        )
        return api if same else None

    api = wait_for("CLI, store and API to agree", views_agree, timeout=30)
    rows = {c["name"]: c for c in api["clusters"]}
    assert {n: r["connection"]["state"] for n, r in rows.items()} == dict.fromkeys(
        CLUSTERS, "Connected"
    )
    assert rows["east"]["applications"]["sync"] == {"Synced": 1, "OutOfSync": 1, "Unknown": 0}
    assert rows["west"]["applications"]["health"]["Degraded"] == 1
    assert rows["north"]["applications"]["total"] == 1
    cells = {
        (r["appset"], c["cluster"]): (c["sync"], c["health"])
        for r in api["matrix"]["rows"]
        for c in r["cells"]
    }
    assert cells[("api", "east")][0] == "OutOfSync"
    assert cells[("api", "west")][1] == "Degraded"
    assert cells[("guestbook", "north")] == ("Synced", "Healthy")
    assert ("api", "north") not in cells

    # /metrics counts the same Applications
    counts: dict[tuple[str, str], int] = {}
    for family in text_string_to_metric_families(fleet.get("/metrics")):
        for s in family.samples:
            if s.name == "hub_applications":
                key = (s.labels["cluster"], s.labels["health_status"])
                counts[key] = counts.get(key, 0) + int(s.value)
    for name, row in rows.items():
        for health, n in row["applications"]["health"].items():
            assert counts.get((name, health), 0) == n, (name, health)

    # the reconcilers' own series
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(fleet.get("/metrics"))
        for s in family.samples
    }
    assert samples[("hub_sync_operations_total", (("cluster", "west"), ("result", "Failed")))] >= 1
    assert (
        samples[("hub_sync_operations_total", (("cluster", "north"), ("result", "Succeeded")))] >= 1
    )
    assert (
        samples[("hub_cluster_connection_state", (("cluster", "east"), ("state", "Connected")))]
        == 1
    )
    assert samples[("hub_reconcile_duration_seconds_count", (("cluster", "east"),))] >= 1

    # --fail-on: the Degraded app fails "degraded"; restricting to guestbook passes
    failing = fleet.cli("status", "--server", fleet.url, "--fail-on", "degraded")
    assert failing.exit_code == 3 and "west-api" in failing.stderr
    fleet.cli.ok("status", "--server", fleet.url, "--appset", "guestbook", "--fail-on", "degraded")


# ---------------------------------------------------------------- the dashboard

CHROMIUM = find_chromium()


def save_shot(path: Path) -> None:
    target = os.environ.get("HUB_ARTIFACTS_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)
    print(f"screenshot: {path}")


MATRIX_JS = """[...document.querySelectorAll('#matrix td.cell')].map(td => ({
  appset: td.dataset.appset, cluster: td.dataset.cluster, sync: td.dataset.sync,
  health: td.dataset.health, background: getComputedStyle(td).backgroundColor,
  weight: getComputedStyle(td).fontWeight, border: getComputedStyle(td).borderTopStyle}))"""

CLUSTERS_JS = """Object.fromEntries([...document.querySelectorAll('#clusters tbody tr')].map(tr =>
  [tr.dataset.cluster, Object.fromEntries([...tr.querySelectorAll('td[data-count]')].map(
    td => [td.dataset.count, Number(td.textContent)])).valueOf()]))"""


def dashboard_numbers(
    api: dict[str, Any],
) -> tuple[list[tuple[str, str, str, str]], dict[str, Any]]:
    matrix = sorted(
        (r["appset"] or "", c["cluster"], c["sync"], c["health"])
        for r in api["matrix"]["rows"]
        for c in r["cells"]
    )
    clusters = {
        c["name"]: {
            "total": c["applications"]["total"],
            **{k: v for k, v in c["applications"]["sync"].items() if k != "Unknown"},
            "SyncUnknown": c["applications"]["sync"]["Unknown"],
            **{k: v for k, v in c["applications"]["health"].items() if k != "Unknown"},
            "HealthUnknown": c["applications"]["health"]["Unknown"],
        }
        for c in api["clusters"]
    }
    return matrix, clusters


async def page_numbers(page: Page) -> tuple[list[tuple[str, str, str, str]], dict[str, Any]]:
    cells = await page.evaluate(MATRIX_JS)
    matrix = sorted((c["appset"], c["cluster"], c["sync"], c["health"]) for c in cells)
    return matrix, await page.evaluate(CLUSTERS_JS)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_dashboard_shows_the_fleet_a_visible_degraded_cell_resources_and_syncs(
    fleet: Fleet, tmp_path: Path
) -> None:
    assert CHROMIUM is not None
    wait_for("the fleet synced", lambda: settled(fleet, drifted=True), timeout=120)
    if fleet.apps()["east-api"][0] != "OutOfSync":  # run alone: make the drift here
        run_kubectl(fleet.sim.kubeconfig_path, "scale", "deployment", "api", "-n", "api",
                    "--replicas=5", context="east")  # fmt: skip
    wait_for("the failure and the drift", lambda: (a := fleet.apps()) and a.get("east-api", ("",))[0] == "OutOfSync" and a.get("west-api", ("", ""))[1] == "Degraded")  # fmt: skip
    token = read_token(fleet.home)
    assert token is not None
    shots = tmp_path / "artifacts"

    async def scenario() -> None:
        async with Browser.launch(CHROMIUM, tmp_path / "profile") as browser:
            page = await browser.new_page(fleet.url + "/")
            await page.wait_for(
                "document.querySelectorAll('#matrix td.cell').length >= 5", what="the matrix"
            )
            # the page shows what the API says
            assert await page_numbers(page) == dashboard_numbers(fleet.api_status())
            cells = {(c["appset"], c["cluster"]): c for c in await page.evaluate(MATRIX_JS)}
            degraded, healthy = cells[("api", "west")], cells[("guestbook", "north")]
            assert degraded["health"] == "Degraded" and healthy["health"] == "Healthy"
            # visibly different: another fill colour and bold text
            assert degraded["background"] != healthy["background"]
            assert int(degraded["weight"]) >= 700 > int(healthy["weight"])
            assert cells[("api", "east")]["border"] == "dashed"  # OutOfSync outline
            assert (
                await page.evaluate(
                    "document.querySelector('#clusters tr[data-cluster=east] .badge').textContent"
                )
                == "Connected"
            )
            save_shot(await page.screenshot(shots / "dashboard-overview.png"))

            # an Application page: its resources, diff and history
            await page.evaluate(
                "document.querySelector('#matrix a.app-link[data-app=west-api]').click()"
            )
            await page.wait_for(
                "document.querySelectorAll('#resources tr.resource').length > 0", what="resources"
            )
            rows = await page.evaluate(
                "[...document.querySelectorAll('#resources tr.resource')].map(tr => [...tr.cells].map(td => td.textContent))"
            )
            assert any(r[0] == "Deployment.apps" and r[1] == "api" for r in rows), rows
            assert (
                await page.evaluate("document.getElementById('app-health').textContent")
                == "Degraded"
            )
            await page.wait_for(
                "document.querySelectorAll('#history tbody tr[data-id]').length > 0", what="history"
            )
            save_shot(await page.screenshot(shots / "dashboard-app.png"))

            # the sync button, with the token, heals east's drift
            await page.evaluate("location.hash = '#/app/east-api'")
            await page.wait_for(
                "document.getElementById('app-name').textContent === 'east-api'",
                what="east-api page",
            )
            await page.wait_for(
                "document.getElementById('diff').textContent.includes('replicas')",
                what="the drift in the diff",
            )
            # the resource tree shows the live status from the comparison, not the last sync's
            live = "#resources tr[data-key='apps/Deployment/api/api'] td.sync"
            assert await page.evaluate(f'document.querySelector("{live}").textContent') == (
                "OutOfSync"
            )
            await page.evaluate("document.getElementById('sync-button').click()")
            await page.wait_for(
                "!document.getElementById('token-form').hidden", what="the token prompt"
            )
            await page.evaluate(
                f"document.getElementById('token-input').value = {json.dumps(token)}"
            )
            # giving the token runs the sync that asked for it
            await page.evaluate("document.getElementById('token-form').requestSubmit()")
            await page.wait_for(
                "document.getElementById('action-result').textContent === 'sync queued'",
                what="sync queued",
            )
            await page.wait_for(
                "document.getElementById('app-sync').textContent === 'Synced'",
                what="east-api Synced",
                timeout=90,
            )

            # live refresh: back on the overview, the page agrees with the API again
            await page.evaluate("location.hash = '#/'")
            await page.wait_for(
                "document.querySelector('#matrix td[data-appset=api][data-cluster=east]').dataset.sync === 'Synced'",
                what="the overview updated",
            )
            assert await page_numbers(page) == dashboard_numbers(fleet.api_status())
            save_shot(await page.screenshot(shots / "dashboard-after-sync.png"))

            assert not [m for m in browser.console if m.startswith("exception")], browser.console

    asyncio.run(scenario())
    assert (
        fleet.kubectl_json("east", "get", "deployment", "api", "-n", "api")["spec"]["replicas"] == 2
    )


def test_the_cli_diffs_and_syncs_an_application_by_name_through_the_hub(fleet: Fleet) -> None:
    # east-api may still be drifted by the rollups test: the browser test, which syncs it
    # back, is skipped on a machine without chromium
    wait_for("the fleet synced with one failure", lambda: settled(fleet, drifted=True), timeout=120)
    run_kubectl(fleet.sim.kubeconfig_path, "scale", "deployment", "api", "-n", "api",
                "--replicas=4", context="east")  # fmt: skip
    wait_for("east-api OutOfSync", lambda: fleet.apps().get("east-api", ("",))[0] == "OutOfSync")
    diff = fleet.cli("app", "diff", "east-api", "--server", fleet.url)
    assert diff.exit_code == 1, diff.output
    assert "replicas: 4" in diff.stdout and "replicas: 2" in diff.stdout
    synced = fleet.cli(
        "app", "sync", "east-api", "--wait", "--server", fleet.url, "--timeout", "120"
    )
    assert synced.exit_code == 0, synced.output
    print(synced.stdout)  # for a human running with -s: what --wait shows
    assert "Succeeded" in synced.stdout and "east-api: Synced / Healthy" in synced.stdout
    assert "Sync wave 0: 1 Synced" in synced.stdout
    assert (
        fleet.kubectl_json("east", "get", "deployment", "api", "-n", "api")["spec"]["replicas"] == 2
    )
    assert fleet.cli("app", "diff", "east-api", "--server", fleet.url).exit_code == 0
    history = json.loads(fleet.cli.ok("app", "history", "east-api", "-o", "json").stdout)
    assert (
        history[-1]["phase"] == "Succeeded" and history[-1]["initiatedBy"] == "role:admin"
    )  # the admin token


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_a_failing_applicationset_is_named_on_the_dashboard(fleet: Fleet, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    wait_for("the fleet synced", lambda: settled(fleet, drifted=True), timeout=120)
    shots = tmp_path / "artifacts"

    async def scenario() -> None:
        async with Browser.launch(CHROMIUM, tmp_path / "profile") as browser:
            page = await browser.new_page(fleet.url + "/")
            await page.wait_for(
                "document.querySelectorAll('#matrix td.cell').length >= 5", what="the matrix"
            )
            assert await page.evaluate("document.querySelectorAll('#appset-errors li').length") == 0
            # a set whose template fails keeps its Applications; the page names the error
            good = fleet.repo.path.joinpath("appsets/api.yaml").read_text()
            fleet.repo.write({"appsets/api.yaml": BROKEN_API_SET.format(repo=fleet.repo.path)})
            try:
                await page.wait_for(
                    "document.querySelector('#appset-errors li[data-appset=api]')?.textContent",
                    what="the set's error on the overview",
                    timeout=60,
                )
                assert (
                    await page.evaluate(
                        "document.querySelectorAll('#matrix td[data-appset=api]').length"
                    )
                    == 2
                )
                save_shot(await page.screenshot(shots / "dashboard-appset-error.png"))
            finally:
                fleet.repo.write({"appsets/api.yaml": good}, "fix the api set")
            await page.wait_for(
                "document.querySelectorAll('#appset-errors li').length === 0",
                what="the error gone",
                timeout=60,
            )
            assert not [m for m in browser.console if m.startswith("exception")], browser.console

    asyncio.run(scenario())
