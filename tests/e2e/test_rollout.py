"""Progressive sync end to end: a RollingSync set over three sim clusters (env=dev, staging,
prod) walks a good release through the steps in order, and a crash-looping release stops
at the first step, named, and never reaches staging or prod."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from clusters.sim import SimServer
from hub.apps import AppStore
from hub.home import open_store
from tests.e2e.cdp import Browser, find_chromium
from tests.e2e.serve_support import CONFIGMAP, Fleet, hub_url, start_hub, stop_hub, wait_for
from tests.notifications.receivers import HttpReceiver
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(300)]

ENVS = ["dev", "staging", "prod"]
CHROMIUM = find_chromium()

APPSET = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: guestbook
  annotations:
    notifications.argoproj.io/subscribe.on-rollout-step-started.hook: ""
    notifications.argoproj.io/subscribe.on-rollout-halted.hook: ""
spec:
  generators:
    - clusters: {{}}
  strategy:
    type: RollingSync
    rollingSync:
      steps:
{steps}  template:
    metadata:
      name: '{{{{name}}}}-guestbook'
      labels: {{env: '{{{{metadata.labels.env}}}}'}}
    spec:
      project: default
      source: {{repoURL: {repo}, targetRevision: main, path: guestbook}}
      destination: {{server: '{{{{server}}}}', namespace: guestbook}}
      syncPolicy:
        automated: {{prune: true, selfHeal: true}}
        syncOptions: [CreateNamespace=true]
"""

ONE_BY_ONE = """\
        - matchExpressions: [{key: env, operator: In, values: [dev]}]
        - matchExpressions: [{key: env, operator: In, values: [staging]}]
        - matchExpressions: [{key: env, operator: In, values: [prod]}]
"""
# dev behind a manual gate; then staging and prod, one Application at a time.
GATED = """\
        - matchExpressions: [{key: env, operator: In, values: [dev]}]
          maxUpdate: 0
        - matchExpressions: [{key: env, operator: NotIn, values: [dev]}]
          maxUpdate: 1
"""

# A short progress deadline: a crash-looping rollout turns Degraded within seconds.
DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  progressDeadlineSeconds: 4
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: {image}
"""


# The rollout triggers' templates as webhook bodies the test can read.
NOTIFICATIONS = """
service.webhook.hook: |
  url: {url}
template.appset-rollout-step-started: |
  webhook:
    hook:
      method: POST
      path: /step
      body: '{{"step": "{{{{.app.status.rolloutEvent.step}}}}", "revision": "{{{{.app.status.rolloutEvent.revision}}}}"}}'
template.appset-rollout-halted: |
  webhook:
    hook:
      method: POST
      path: /halted
      body: '{{"step": "{{{{.app.status.rolloutEvent.step}}}}", "haltedBy": "{{{{.app.status.rolloutEvent.haltedBy}}}}", "revision": "{{{{.app.status.rolloutEvent.revision}}}}"}}'
"""


class RolloutFleet(Fleet):
    url = ""  # the running hub's API and dashboard


def rollout_status(fleet: Fleet) -> dict[str, Any]:
    store = open_store(fleet.home)
    try:
        return AppStore(store).rollout_status("guestbook") or {}
    finally:
        store.close()


@contextmanager
def rollout_fleet(
    tmp_path: Path, steps: str = ONE_BY_ONE, settle: bool = True, notify: str | None = None
) -> Iterator[RolloutFleet]:
    """Three clusters, the set applied (and, with ``settle``, every app Synced and Healthy
    on nginx:1.25); with ``notify``, the set's rollout notifications go to that URL."""
    with SimServer(clusters=ENVS, ready_delay=0.2, kubeconfig_path=tmp_path / "k") as sim:
        repo = GitRepo(tmp_path / "repo")
        repo.write(
            {
                "sets/guestbook.yaml": APPSET.format(repo=repo.path, steps=steps),
                "guestbook/deployment.yaml": DEPLOYMENT.format(image="nginx:1.25"),
                "guestbook/configmap.yaml": CONFIGMAP,
            }
        )
        f = RolloutFleet(tmp_path / "home", sim, repo, tmp_path / "hub.log")
        f.cli.ok("init")
        if notify is not None:
            (f.home / "notifications.yaml").write_text(NOTIFICATIONS.format(url=notify))
        for env in ENVS:
            f.cli.ok("cluster", "add", env, "--kubeconfig", str(sim.kubeconfig_path),
                     "--context", env, "--label", f"env={env}")  # fmt: skip
        f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "sets")
        start_hub(f, "--port", "0", "--git-poll", "1", "--resync", "30")
        try:
            f.url = hub_url(f)
            if settle:
                wait_for(
                    "every app Synced and Healthy", lambda: f.all_good(ENVS, "nginx:1.25"), 120
                )
                wait_for(
                    "the rollout done", lambda: rollout_status(f).get("currentStep", 0) is None
                )
            yield f
        finally:
            code = stop_hub(f)
        assert code == 0, f.hub_log()[-4000:]


def commit_image(fleet: Fleet, image: str) -> str:
    return fleet.repo.write({"guestbook/deployment.yaml": DEPLOYMENT.format(image=image)})


def at(op: dict[str, Any], key: str) -> datetime:
    return datetime.fromisoformat(op[key])


def sync_of(fleet: Fleet, env: str) -> dict[str, Any]:
    return dict(fleet.apps()[f"{env}-guestbook"].operation_state or {})


STEPS_JS = """[...document.querySelectorAll('#rollout li.step')].map((s) => ({
  state: s.dataset.state,
  title: s.querySelector('strong').textContent,
  apps: [...s.querySelectorAll('li[data-app]')].map((a) => [a.dataset.app, a.dataset.status]),
}))"""


async def dashboard_steps(url: str, profile: Path) -> list[dict[str, Any]]:
    """The rollout steps the dashboard's page of the set shows once it shows the halt."""
    assert CHROMIUM is not None
    async with Browser.launch(CHROMIUM, profile) as browser:
        page = await browser.new_page(url + "/#/appset/guestbook")
        await page.wait_for(
            "document.querySelector('#rollout li.step[data-state=Halted]') !== null",
            what="the halted rollout on the dashboard",
        )
        steps: list[dict[str, Any]] = await page.evaluate(STEPS_JS)
        return steps


def rollout_messages(http: HttpReceiver, revision: str) -> list[tuple[str, dict[str, str]]]:
    """(path, body) of each rollout webhook received about ``revision``, in order."""
    got = [(r.path, json.loads(r.body)) for r in list(http.requests)]
    return [(path, body) for path, body in got if body["revision"] == revision[:12]]


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_a_good_release_walks_the_steps_in_order_and_a_crash_loop_stops_at_the_first(
    tmp_path: Path,
) -> None:
    http = HttpReceiver().start()
    try:
        walk_a_good_release_then_a_crash_loop(tmp_path, http)
    finally:
        http.stop()


def walk_a_good_release_then_a_crash_loop(tmp_path: Path, http: HttpReceiver) -> None:
    with rollout_fleet(tmp_path, notify=http.url) as f:
        good = commit_image(f, "nginx:1.26")
        wait_for("the release on every cluster", lambda: f.all_good(ENVS, "nginx:1.26"), 120)
        ops = {env: sync_of(f, env) for env in ENVS}
        assert all(op["syncResult"]["revision"] == good for op in ops.values()), ops
        # Each step started only after the previous one had finished (one clock: the hub's).
        assert at(ops["dev"], "finishedAt") <= at(ops["staging"], "startedAt"), ops
        assert at(ops["staging"], "finishedAt") <= at(ops["prod"], "startedAt"), ops
        wait_for("the rollout done", lambda: rollout_status(f).get("currentStep", 0) is None)
        assert not [
            (env, c.message)
            for env in ENVS
            for c in f.apps()[f"{env}-guestbook"].conditions
            if c.type == "RolloutWaiting"
        ]

        bad = commit_image(f, "nginx:crashloop")
        status = wait_for(
            "the rollout halted by dev",
            lambda: (s := rollout_status(f)).get("haltedBy") == "dev-guestbook" and s,
            120,
        )
        assert status["currentStep"] == "1"
        assert "dev-guestbook is Degraded" in status["message"]
        # The later steps have seen the new revision and wait for it, on the old image.
        wait_for(
            "staging and prod seeing the bad revision",
            lambda: all(
                f.apps()[f"{env}-guestbook"].desired_sha == bad
                and f.apps()[f"{env}-guestbook"].sync_status == "OutOfSync"
                for env in ("staging", "prod")
            ),
        )
        # A held app says so (and the condition is gone once its step is released).
        held = wait_for(
            "staging saying it waits for the rollout",
            lambda: (
                "RolloutWaiting" in (o := f.cli.ok("app", "get", "staging-guestbook").output) and o
            ),
        )
        said = " ".join(held.split())  # the CLI wraps long messages
        assert "held by the rollout of guestbook: rollout step 2: waits for step 1" in said, held
        # The dashboard's ApplicationSet page shows the steps and their states.
        steps = asyncio.run(dashboard_steps(f.url, tmp_path / "profile"))
        assert [(s["title"], [a[0] for a in s["apps"]]) for s in steps] == [
            ("Step 1: Halted by dev-guestbook", ["dev-guestbook"]),
            ("Step 2: Waiting", ["staging-guestbook"]),
            ("Step 3: Waiting", ["prod-guestbook"]),
        ], steps
        assert steps[1]["apps"] == [["staging-guestbook", "Waiting"]]
        by_app = {a["application"]: a for a in rollout_status(f)["applicationStatus"]}
        assert by_app["staging-guestbook"]["status"] == "Waiting"
        assert by_app["prod-guestbook"]["status"] == "Waiting"
        assert f.image("dev") == "nginx:crashloop"
        shown = f.cli.ok("rollout", "status", "guestbook").output
        assert "halted at step 1: dev-guestbook is Degraded" in shown, shown
        got = json.loads(f.cli.ok("appset", "get", "guestbook", "-o", "json").output)
        assert got["rollout"]["haltedBy"] == "dev-guestbook"
        for env in ("staging", "prod"):
            assert f.image(env) == "nginx:1.26"
            assert f.apps()[f"{env}-guestbook"].synced_sha == good
            assert sync_of(f, env)["syncResult"]["revision"] == good
        # Notifications: each step of the good release started, in order; the bad one
        # started step 1 and halted there, naming the Degraded app.
        wait_for("the halt notification", lambda: len(rollout_messages(http, bad)) >= 2)
        assert rollout_messages(http, good) == [
            ("/step", {"step": str(n), "revision": good[:12]}) for n in (1, 2, 3)
        ], [(r.path, r.body) for r in http.requests]
        assert rollout_messages(http, bad) == [
            ("/step", {"step": "1", "revision": bad[:12]}),
            ("/halted", {"step": "1", "haltedBy": "dev-guestbook", "revision": bad[:12]}),
        ]


def app_status(fleet: Fleet, app: str) -> dict[str, Any]:
    by_app = {a["application"]: a for a in rollout_status(fleet).get("applicationStatus", [])}
    return dict(by_app.get(app) or {})


def test_a_manual_gate_waits_for_promote_a_pause_holds_it_and_max_update_1_goes_one_by_one(
    tmp_path: Path,
) -> None:
    with rollout_fleet(tmp_path, GATED, settle=False) as f:
        gate = wait_for(
            "dev held at the gate",
            lambda: (a := app_status(f, "dev-guestbook")).get("status") == "Waiting" and a,
        )
        assert "maxUpdate 0" in gate["message"] and "hub rollout promote" in gate["message"]
        wait_for("dev seen OutOfSync", lambda: f.apps()["dev-guestbook"].sync_status == "OutOfSync")
        assert f.deployment("dev") is None

        f.cli.ok("rollout", "pause", "guestbook")
        f.cli.ok("rollout", "promote", "guestbook")
        shown = json.loads(f.cli.ok("rollout", "status", "guestbook", "-o", "json").output)
        assert shown["paused"] and shown["promotedStep"] == 1
        held = wait_for(
            "the pause in the hub's status",
            lambda: (
                (a := app_status(f, "dev-guestbook"))
                .get("message", "")
                .startswith("the rollout is paused")
                and a
            ),
        )
        assert held["status"] == "Waiting"
        assert f.deployment("dev") is None

        # The pause outlives a restart: the new hub looks at dev again and still holds it.
        before = f.apps()["dev-guestbook"].reconciled_at
        assert stop_hub(f) == 0, f.hub_log()[-4000:]
        start_hub(f, "--port", "0", "--git-poll", "1", "--resync", "30")
        f.url = hub_url(f)  # the restarted hub's own port
        wait_for(
            "the restarted hub looking at dev",
            lambda: f.apps()["dev-guestbook"].reconciled_at != before,
        )
        assert app_status(f, "dev-guestbook")["message"].startswith("the rollout is paused")
        assert f.deployment("dev") is None

        f.cli.ok("rollout", "resume", "guestbook")
        wait_for("every app Synced and Healthy", lambda: f.all_good(ENVS, "nginx:1.25"), 120)
        ops = {env: sync_of(f, env) for env in ENVS}
        # maxUpdate 1: prod (first by name) then staging, never both at once.
        assert at(ops["dev"], "finishedAt") <= at(ops["prod"], "startedAt"), ops
        assert at(ops["prod"], "finishedAt") <= at(ops["staging"], "startedAt"), ops
        done = wait_for(
            "the rollout done", lambda: (s := rollout_status(f)).get("currentStep", 0) is None and s
        )
        assert done["promotedStep"] is None  # a promotion lasts one rollout

        refused = f.cli("rollout", "promote", "guestbook")
        assert refused.exit_code == 1 and "no step left to promote" in refused.output
        missing = f.cli("rollout", "status", "nope")
        assert missing.exit_code == 1 and "no ApplicationSet named 'nope'" in missing.output


def test_each_serve_once_run_advances_the_rollout_by_a_step(tmp_path: Path) -> None:
    with SimServer(clusters=ENVS, ready_delay=0.2, kubeconfig_path=tmp_path / "k") as sim:
        repo = GitRepo(tmp_path / "repo")
        repo.write(
            {
                "sets/guestbook.yaml": APPSET.format(repo=repo.path, steps=ONE_BY_ONE),
                "guestbook/deployment.yaml": DEPLOYMENT.format(image="nginx:1.25"),
                "guestbook/configmap.yaml": CONFIGMAP,
            }
        )
        f = Fleet(tmp_path / "home", sim, repo, tmp_path / "hub.log")
        f.cli.ok("init")
        for env in ENVS:
            f.cli.ok("cluster", "add", env, "--kubeconfig", str(sim.kubeconfig_path),
                     "--context", env, "--label", f"env={env}")  # fmt: skip
        f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "sets")
        for synced in (["dev"], ["dev", "staging"]):
            run = f.cli("serve", "--once", "--timeout", "60")
            assert run.exit_code == 1, run.output
            assert "held by the rollout of guestbook" in run.output
            assert [env for env in ENVS if f.deployment(env) is not None] == synced
        run = f.cli("serve", "--once", "--timeout", "60")
        assert run.exit_code == 0, run.output
        assert f.all_good(ENVS, "nginx:1.25")
