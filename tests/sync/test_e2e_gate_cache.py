"""The health gate fed by the worker's watch cache (``live_state``, as ``hub serve`` runs
the engine): a sync that waits for a PreSync hook Job and a Deployment's health starts no
watch thread of its own and sends no LIST; the cache's watches (tasks on an event loop, as
in a worker) bring the events. Without ``live_state`` the gate keeps its own watchers."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusters.cache import LiveCache
from clusters.connect import connect
from clusters.kube import KubeClient
from hub.home import load_keyring, open_registry, open_store
from hub.repos import RepoCache
from hub.sync import engine as engine_module
from hub.sync.engine import OperationResult, SyncRequest, sync_application
from hub.sync.health import HealthStatus
from hub.sync.history import OperationPhase, SyncHistory
from hub.sync.model import parse_application_yaml
from hub.sync.resources import owning_app
from tests.clusters.test_cache import running
from tests.conftest import KubeEnv
from tests.sync.e2e_helpers import CLUSTER, GitRepo, application, hub_app

pytestmark = pytest.mark.timeout(180)

FILES = {
    "app/hook.yaml": """
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
              containers: [{name: migrate, image: "busybox:1.36", command: ["true"]}]
        """,
    "app/deployment.yaml": """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
        spec:
          replicas: 2
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers: [{name: web, image: "nginx:1.25"}]
        """,
}

GATED = [("batch", "Job"), ("apps", "Deployment")]


class Counted:
    """LISTs sent from the engine's thread and gate watchers started, during a sync."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: Counter[str] = Counter()
        me = threading.get_ident()
        original = KubeClient._request
        start = engine_module._Watcher.start

        def request(client: KubeClient, method: str, path: str, **kw: Any) -> Any:
            query = dict(kw.get("query") or [])
            if threading.get_ident() == me and method == "GET" and "limit" in query:
                self.counts["LIST"] += 1
            return original(client, method, path, **kw)

        def watcher_start(w: engine_module._Watcher) -> None:
            self.counts["watcher"] += 1
            start(w)

        monkeypatch.setattr(KubeClient, "_request", request)
        monkeypatch.setattr(engine_module._Watcher, "start", watcher_start)


@pytest.fixture
def setup(kube: KubeEnv, tmp_path: Path, namespace: str) -> Iterator[dict[str, Any]]:
    repo = GitRepo(tmp_path / "repo")
    repo.write(FILES)
    h = hub_app(kube, tmp_path)
    h.write_app(application("gated", repo, namespace=namespace))
    home = h.hub.home
    registry = open_registry(home)
    store = open_store(home)
    repos = RepoCache(home)
    try:
        yield {
            "app": parse_application_yaml(h.app_file.read_text(), source_file=str(h.app_file)),
            "kube": KubeClient(connect(registry, CLUSTER)),
            "history": SyncHistory(store, lambda: load_keyring(home)),
            "repos": repos,
        }
    finally:
        repos.close()
        store.close()
        registry.close()


def sync(s: dict[str, Any], live_state: LiveCache | None) -> OperationResult:
    return sync_application(
        s["kube"],
        s["app"],
        SyncRequest(prune=True, wait_healthy=True, initiated_by="test", timeout_s=120),
        sources=s["repos"],
        history=s["history"],
        live_state=live_state,
    )


def test_the_gate_waits_on_the_watch_cache_without_watch_threads_or_lists(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    kube: KubeClient = setup["kube"]
    cache = LiveCache(kube, owner_of=owning_app, on_change=lambda _apps: None, window_s=2.0)
    kinds = [kube.resource_for(*gk) for gk in [*GATED, ("", "Namespace")]]
    with running(cache, *kinds):
        for res in kinds:
            wait = cache.wait_for_change(-1, 0)
            while not cache.is_current((res.group, res.kind)):
                wait = cache.wait_for_change(wait, 1.0)
        counted = Counted(monkeypatch)
        result = sync(setup, cache)
    assert result.phase is OperationPhase.SUCCEEDED, result.message
    assert result.health is HealthStatus.HEALTHY
    hook = [r for r in result.resources if r.kind == "Job"]
    assert hook and hook[0].status == "Succeeded", hook
    assert counted.counts["watcher"] == 0
    assert counted.counts["LIST"] == 0


def test_without_a_cache_the_gate_watches_on_its_own(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = Counted(monkeypatch)
    result = sync(setup, None)
    assert result.phase is OperationPhase.SUCCEEDED, result.message
    assert result.health is HealthStatus.HEALTHY
    assert counted.counts["watcher"] >= 1
