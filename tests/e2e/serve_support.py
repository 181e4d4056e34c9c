"""Shared parts of the `hub serve` end-to-end tests: polling, the fleet under test, the
hub as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clusters.sim import SimServer
from hub.apps import AppRecord, AppStore
from hub.home import open_store
from hub.ports import free_port as free_port  # re-exported: the e2e tests import it here
from tests.clusters.cli_support import CLEAN_ENV, Hub
from tests.kube_env import run_kubectl
from tests.sync.e2e_helpers import GitRepo

NS = "guestbook"

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
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

# One Application per cluster from the `web` path, into namespace `web` (format with repo=).
WEB_APPSET = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: web
spec:
  generators:
    - clusters: {{}}
  template:
    metadata:
      name: '{{{{name}}}}-web'
    spec:
      project: default
      source: {{repoURL: {repo}, targetRevision: main, path: web}}
      destination: {{server: '{{{{server}}}}', namespace: web}}
      syncPolicy:
        syncOptions: [CreateNamespace=true]
"""

AUTOMATED = "automated: {prune: true, selfHeal: true}"


def guestbook_appset(
    repo: object, *, project: str = "default", policy: Sequence[str] = (AUTOMATED,)
) -> str:
    """One Application per cluster from the `guestbook` path into namespace `guestbook`
    (``NS``), which the sync creates; ``policy``: the syncPolicy lines besides that."""
    lines = "".join(f"        {line}\n" for line in policy)
    return f"""
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: guestbook
spec:
  generators:
    - clusters: {{}}
  template:
    metadata:
      name: '{{{{name}}}}-guestbook'
    spec:
      project: {project}
      source: {{repoURL: {repo}, targetRevision: main, path: guestbook}}
      destination: {{server: '{{{{server}}}}', namespace: {NS}}}
      syncPolicy:
{lines}        syncOptions: [CreateNamespace=true]
"""


CONFIGMAP = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello
"""


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def served_url(home: Path, proc: subprocess.Popen[str], log: Path, timeout: float = 60.0) -> str:
    """The API address published (``serve.json``) by ``hub serve --port 0`` running as
    ``proc``. The kernel picks the port as the hub binds it, so a server of another test
    process cannot take it in between, as a port picked beforehand allowed."""

    def published() -> str | None:
        if proc.poll() is not None:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise AssertionError(f"hub serve exited ({proc.returncode}): {tail}")
        try:
            doc = json.loads((home / "serve.json").read_text())
        except (OSError, ValueError):
            return None
        return str(doc["url"]) if doc.get("pid") == proc.pid else None

    url: str = wait_for("the hub's API address", published, timeout)
    return url


def hub_url(fleet: Fleet, timeout: float = 60.0) -> str:
    """``served_url`` of the hub ``start_hub(fleet, ..., "--port", "0")`` started."""
    assert fleet.proc is not None
    return served_url(fleet.home, fleet.proc, fleet.log, timeout)


class Fleet:
    def __init__(self, home: Path, sim: SimServer, repo: GitRepo, log: Path) -> None:
        self.home = home
        self.sim = sim
        self.repo = repo
        self.log = log
        self.cli = Hub(home)
        self.proc: subprocess.Popen[str] | None = None

    def apps(self) -> dict[str, AppRecord]:
        store = open_store(self.home)
        try:
            return {a.name: a for a in AppStore(store).list_apps()}
        finally:
            store.close()

    def kubectl(self, cluster: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.sim.kubeconfig_path, *args, context=cluster)

    def deployment(self, cluster: str) -> dict[str, Any] | None:
        out = self.kubectl(cluster, "get", "deployment", "web", "-n", NS, "-o", "json")
        return json.loads(out.stdout) if out.returncode == 0 else None

    def image(self, cluster: str) -> str | None:
        dep = self.deployment(cluster)
        if dep is None:
            return None
        return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])

    def all_good(self, names: list[str], image: str) -> bool:
        apps = self.apps()
        for cluster in names:
            app = apps.get(f"{cluster}-guestbook")
            if app is None or (app.sync_status, app.health_status) != ("Synced", "Healthy"):
                return False
            if self.image(cluster) != image:
                return False
        return True

    def commit_image(self, image: str) -> str:
        return self.repo.write({"guestbook/deployment.yaml": DEPLOYMENT.format(image=image)})

    def hub_log(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def start_hub(fleet: Fleet, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``hub serve ARGS`` as a subprocess logging to ``fleet.log`` (appended)."""
    env = {**{k: v for k, v in os.environ.items() if k not in CLEAN_ENV}, **(env or {})}
    with fleet.log.open("a") as log:
        fleet.proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "--home", str(fleet.home), "-v", "serve", *args],
            stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
    return fleet.proc


def stop_hub(fleet: Fleet) -> int:
    """SIGTERM, then the exit code (killed after a minute)."""
    assert fleet.proc is not None
    fleet.proc.send_signal(signal.SIGTERM)
    try:
        return fleet.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        fleet.proc.kill()
        raise
