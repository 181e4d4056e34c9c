"""The health gate fed by the worker's watch cache (``live_state``, as ``hub serve`` runs
the engine): a sync that waits for a PreSync hook Job and a Deployment's health sends no
LIST and opens no watch of its own; the cache's watches (tasks on the same event loop, as
in a worker) bring the events. Without ``live_state`` the gate lists and watches the kinds
it waits on through a ``LiveCache`` of its own (no thread)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from clusters.cache import LiveCache
from clusters.connect import connect
from clusters.kube import AsyncKube
from hub.home import load_keyring, open_registry, open_store
from hub.repos import RepoCache
from hub.sync.engine import OperationResult, SyncRequest, sync_application
from hub.sync.health import HealthStatus
from hub.sync.history import OperationPhase, SyncHistory
from hub.sync.model import parse_application_yaml
from hub.sync.resources import owning_app
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
    """LISTs and watch requests sent through ``AsyncKube`` during a sync."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: Counter[str] = Counter()
        original = AsyncKube._request
        original_open = AsyncKube._open

        async def request(client: AsyncKube, method: str, path: str, **kw: Any) -> Any:
            query = dict(kw.get("query") or [])
            if method == "GET" and "limit" in query:
                self.counts["LIST"] += 1
            return await original(client, method, path, **kw)

        def opened(client: AsyncKube, method: str, path: str, query: Any, **kw: Any) -> Any:
            if dict(query).get("watch"):
                self.counts["watch"] += 1
            return original_open(client, method, path, query, **kw)

        monkeypatch.setattr(AsyncKube, "_request", request)
        monkeypatch.setattr(AsyncKube, "_open", opened)


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
            "connection": connect(registry, CLUSTER),
            "history": SyncHistory(store, lambda: load_keyring(home)),
            "repos": repos,
        }
    finally:
        repos.close()
        store.close()
        registry.close()


async def sync(s: dict[str, Any], kube: AsyncKube, live_state: LiveCache | None) -> OperationResult:
    return await sync_application(
        kube,
        s["app"],
        SyncRequest(prune=True, wait_healthy=True, initiated_by="test", timeout_s=120),
        sources=s["repos"],
        history=s["history"],
        live_state=live_state,
    )


def test_the_gate_waits_on_the_watch_cache_without_watches_or_lists_of_its_own(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> tuple[OperationResult, Counted]:
        kube = AsyncKube(setup["connection"])
        cache = LiveCache(kube, owner_of=owning_app, on_change=lambda _apps: None)
        try:
            kinds = [await kube.resource_for(*gk) for gk in [*GATED, ("", "Namespace")]]
            async with anyio.create_task_group() as tg:
                for res in kinds:
                    tg.start_soon(cache.run_kind, res)
                while not all(cache.is_current((r.group, r.kind)) for r in kinds):
                    await cache.changed(cache.version, 1.0)
                counted = Counted(monkeypatch)
                result = await sync(setup, kube, cache)
                tg.cancel_scope.cancel()
        finally:
            await kube.aclose()
        return result, counted

    result, counted = anyio.run(main)
    assert result.phase is OperationPhase.SUCCEEDED, result.message
    assert result.health is HealthStatus.HEALTHY
    hook = [r for r in result.resources if r.kind == "Job"]
    assert hook and hook[0].status == "Succeeded", hook
    assert counted.counts["watch"] == 0
    assert counted.counts["LIST"] == 0


def test_without_a_cache_the_gate_watches_on_its_own(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = Counted(monkeypatch)

    async def main() -> OperationResult:
        kube = AsyncKube(setup["connection"])
        try:
            return await sync(setup, kube, None)
        finally:
            await kube.aclose()

    result = anyio.run(main)
    assert result.phase is OperationPhase.SUCCEEDED, result.message
    assert result.health is HealthStatus.HEALTHY
    assert counted.counts["watch"] >= 1
