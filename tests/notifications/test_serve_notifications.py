"""`hub serve` end to end: a failing sync sends one on-sync-failed webhook and one email,
a successful one sends on-sync-succeeded (its webhook body from the template, the token
from a sealed secret), and a message queued while the receiver is down survives a
SIGKILL of the hub and is delivered exactly once after restart."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusters.sim import SimServer
from hub.home import open_store
from tests.e2e.serve_support import DEPLOYMENT, Fleet, start_hub, stop_hub, wait_for
from tests.notifications.receivers import HttpReceiver, SmtpReceiver
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(240)]

CLUSTER = "solo"
TOKEN = "s3cret-token-value"

APP = """
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: shop
  annotations:
    notifications.argoproj.io/subscribe.on-sync-failed.hook: ""
    notifications.argoproj.io/subscribe.on-sync-failed.email: ops@example.com
    notifications.argoproj.io/subscribe.on-sync-succeeded.hook: ""
spec:
  project: default
  source:
    repoURL: {repo}
    targetRevision: main
    path: guestbook
  destination:
    name: solo
    namespace: guestbook
  syncPolicy:
    automated: {{}}
    syncOptions:
      - CreateNamespace=true
"""

HOOK = """
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  annotations:
    argocd.argoproj.io/hook: PreSync
    argocd.argoproj.io/hook-delete-policy: BeforeHookCreation
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: {image}
"""

SETTINGS = """
context: |
  argocdUrl: https://hub.example
service.webhook.hook: |
  url: {http}
  headers:
  - name: Authorization
    value: Bearer $hook-token
service.email: |
  host: 127.0.0.1
  port: {smtp}
  from: hub@example.com
template.app-sync-succeeded: |
  message: "{{{{.app.metadata.name}}}} synced"
  webhook:
    hook:
      method: POST
      path: /succeeded
      body: |
        {{"app": "{{{{.app.metadata.name}}}}", "phase": "{{{{.app.status.operationState.phase}}}}", "url": "{{{{.context.argocdUrl}}}}"}}
"""


def outbox(home: Path) -> list[tuple[str, str, str, int]]:
    """(trigger, service, state, attempts) of each outbox row."""
    store = open_store(home)
    try:
        with store.read() as db:
            rows = db.execute(
                "SELECT trigger, service, state, attempts FROM notification_outbox ORDER BY id"
            ).fetchall()
        return [(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]
    finally:
        store.close()


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


def make_fleet(root: Path, sim: SimServer, hook_image: str, http_url: str, smtp_port: int) -> Fleet:
    repo = GitRepo(root / "repo")
    repo.write(
        {
            "apps/shop.yaml": APP.format(repo=repo.path),
            "guestbook/deployment.yaml": DEPLOYMENT.format(image="nginx:1.25"),
            "guestbook/hook.yaml": HOOK.format(image=hook_image),
        },
        "shop",
    )
    f = Fleet(root / "home", sim, repo, root / "hub.log")
    f.cli.ok("init")
    f.cli.ok(
        "cluster", "add", CLUSTER, "--kubeconfig", str(sim.kubeconfig_path), "--context", CLUSTER
    )
    f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "apps")
    f.cli.ok("notify", "secret", "set", "hook-token", input=TOKEN + "\n")
    (f.home / "notifications.yaml").write_text(SETTINGS.format(http=http_url, smtp=smtp_port))
    return f


def test_failed_then_fixed_sync_sends_one_failure_webhook_one_email_and_one_success(
    tmp_path: Path, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    with SimServer(
        clusters=[CLUSTER], ready_delay=0.2, kubeconfig_path=tmp_path / "sim.kubeconfig"
    ) as sim:
        f = make_fleet(tmp_path, sim, "busybox:fail", http.url, smtp.port)
        start_hub(f, "--git-poll", "1", "--resync", "600", "--port", "0")
        try:
            wait_for("the failure webhook", lambda: len(http.requests) >= 1)
            wait_for("the failure email", lambda: len(smtp.messages) >= 1)
            failed = http.requests[0]
            assert failed.path == "/"
            assert failed.headers["Authorization"] == f"Bearer {TOKEN}"
            body = json.loads(failed.body)
            assert (body["app"], body["trigger"]) == ("shop", "on-sync-failed")
            assert "has failed" in body["message"]
            mail = smtp.messages[0]
            assert mail["To"] == "ops@example.com"
            assert mail["Subject"] == "Failed to sync application shop."

            f.repo.write({"guestbook/hook.yaml": HOOK.format(image="busybox")})
            wait_for("the success webhook", lambda: len(http.requests) >= 2)
            ok = http.requests[1]
            assert ok.path == "/succeeded"
            assert json.loads(ok.body) == {
                "app": "shop",
                "phase": "Succeeded",
                "url": "https://hub.example",
            }
            wait_for("every row sent", lambda: all(r[2] == "sent" for r in outbox(f.home)))
        finally:
            assert stop_hub(f) == 0
        # Nothing more was sent, and the token never reached the log or the database.
        assert len(http.requests) == 2
        assert len(smtp.messages) == 1
        assert TOKEN not in f.hub_log()
        assert TOKEN.encode() not in (f.home / "hub.db").read_bytes()


def test_a_message_queued_before_a_sigkill_is_delivered_once_after_restart(
    tmp_path: Path, smtp: SmtpReceiver
) -> None:
    http = HttpReceiver()  # not started yet: the hub's attempts fail
    with SimServer(
        clusters=[CLUSTER], ready_delay=0.2, kubeconfig_path=tmp_path / "sim.kubeconfig"
    ) as sim:
        f = make_fleet(tmp_path, sim, "busybox:fail", http.url, smtp.port)
        proc = start_hub(f, "--git-poll", "1", "--resync", "600", "--port", "0")
        wait_for(
            "a failed webhook attempt",
            lambda: any(s == "hook" and a >= 1 for _, s, _, a in outbox(f.home)),
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert [r[2] for r in outbox(f.home) if r[1] == "hook"] == ["pending"]
        http.start()
        try:
            start_hub(f, "--git-poll", "1", "--resync", "600", "--port", "0")
            try:
                wait_for("the webhook after restart", lambda: len(http.requests) >= 1)
                wait_for("every row sent", lambda: all(r[2] == "sent" for r in outbox(f.home)))
            finally:
                assert stop_hub(f) == 0
            assert len(http.requests) == 1
            assert json.loads(http.requests[0].body)["trigger"] == "on-sync-failed"
            assert len(smtp.messages) == 1
        finally:
            http.stop()


DEGRADING = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  progressDeadlineSeconds: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:crashloop
"""


def test_a_degraded_app_sends_on_health_degraded(tmp_path: Path, http: HttpReceiver) -> None:
    with SimServer(
        clusters=[CLUSTER], ready_delay=0.2, kubeconfig_path=tmp_path / "sim.kubeconfig"
    ) as sim:
        repo = GitRepo(tmp_path / "repo")
        app = APP.format(repo=repo.path).replace(
            "subscribe.on-sync-succeeded.hook", "subscribe.on-health-degraded.hook"
        )
        repo.write({"apps/shop.yaml": app, "guestbook/deployment.yaml": DEGRADING}, "shop")
        f = Fleet(tmp_path / "home", sim, repo, tmp_path / "hub.log")
        f.cli.ok("init")
        f.cli.ok(
            "cluster", "add", CLUSTER, "--kubeconfig", str(sim.kubeconfig_path),
            "--context", CLUSTER,
        )  # fmt: skip
        f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "apps")
        f.cli.ok("notify", "secret", "set", "hook-token", input=TOKEN + "\n")
        (f.home / "notifications.yaml").write_text(SETTINGS.format(http=http.url, smtp=1))
        start_hub(f, "--git-poll", "1", "--resync", "600", "--port", "0")
        try:
            wait_for("the degraded webhook", lambda: len(http.requests) >= 2)
            wait_for(
                "the hook rows marked sent",
                lambda: [r[2] for r in outbox(f.home) if r[1] == "hook"] == ["sent", "sent"],
            )
        finally:
            assert stop_hub(f) == 0
        # The sync fails too (its health gate sees the Deployment degrade): each once.
        bodies = [json.loads(r.body) for r in http.requests]
        assert sorted(b["trigger"] for b in bodies) == ["on-health-degraded", "on-sync-failed"]
        degraded = next(b for b in bodies if b["trigger"] == "on-health-degraded")
        assert degraded["message"] == "Application shop has degraded."
        assert f.apps()["shop"].health_status == "Degraded"
