"""End to end through the engine's Python API with live state from the hub's watch cache
(``live_state=LiveCache``, as ``hub serve`` passes it): no LIST per sync for the kinds the
cache holds, prune still exact, and the listing fallback for a kind the cache does not hold.

LISTs are counted on the hub side around ``AsyncKube._request``,
in the thread running the engine; the cache's own lists happen before, outside the count.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from clusters.cache import LiveCache
from clusters.connect import connect
from clusters.kube import AsyncKube, KubeClient, Transient
from hub.home import load_keyring, open_registry, open_store
from hub.repos import RepoCache
from hub.sync.engine import OperationResult, SyncRequest, sync_application_blocking
from hub.sync.history import OperationPhase, SyncHistory
from hub.sync.model import Application, parse_application_yaml
from hub.sync.resources import TRACKING_ANNOTATION, owning_app
from tests.conftest import KubeEnv
from tests.sync.e2e_helpers import CLUSTER, GitRepo, application, hub_app

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def cm(name: str) -> str:
    return f"""
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: {name}}}
        data: {{a: b}}
        """


class Engine:
    """The engine as the worker calls it, with a cache and a request counter."""

    def __init__(self, kube: KubeEnv, tmp_path: Path, repo: GitRepo, namespace: str) -> None:
        self.h = hub_app(kube, tmp_path)
        self.h.write_app(application("cached", repo, namespace=namespace))
        self.app: Application = parse_application_yaml(
            self.h.app_file.read_text(), source_file=str(self.h.app_file)
        )
        home = self.h.hub.home
        self.registry = open_registry(home)
        self.store = open_store(home)
        self.kube = KubeClient(connect(self.registry, CLUSTER))
        self.history = SyncHistory(self.store, lambda: load_keyring(home))
        self.repos = RepoCache(home)
        self.cache = LiveCache(
            AsyncKube(connect(self.registry, CLUSTER)),
            owner_of=owning_app,
            on_change=lambda _apps: None,
        )
        self.counts: Counter[str] = Counter()

    def fill(self, *kinds: tuple[str, str]) -> None:
        """List ``kinds`` into the cache (what its watches keep current in ``hub serve``)."""

        async def fill() -> None:
            for gk in kinds:
                await self.cache.list_kind(await self.cache.transport.resource_for(*gk))
            await self.cache.aclose()  # its sessions belong to this loop

        anyio.run(fill)

    def sync(self, monkeypatch: pytest.MonkeyPatch) -> OperationResult:
        original = AsyncKube._request

        async def counted(client: AsyncKube, method: str, path: str, **kw: Any) -> Any:
            query = dict(kw.get("query") or [])
            if method == "GET" and "limit" in query:
                self.counts["LIST"] += 1  # AsyncKube.list pages with limit
            return await original(client, method, path, **kw)

        self.counts.clear()
        with monkeypatch.context() as m:
            m.setattr(AsyncKube, "_request", counted)
            return sync_application_blocking(
                self.kube,
                self.app,
                SyncRequest(prune=True, wait_healthy=False, initiated_by="test"),
                sources=self.repos,
                history=self.history,
                live_state=self.cache,
            )

    def close(self) -> None:
        self.repos.close()
        self.store.close()
        self.registry.close()


@pytest.fixture
def engine(kube: KubeEnv, tmp_path: Path, namespace: str) -> Iterator[tuple[Engine, GitRepo]]:
    repo = GitRepo(tmp_path / "repo")
    repo.write(
        {"app/keep.yaml": cm("keep"), "app/drop.yaml": cm("drop"), "app/was.yaml": cm("was")}
    )
    e = Engine(kube, tmp_path, repo, namespace)
    try:
        yield e, repo
    finally:
        e.close()


def _exists(kubectl: Kubectl, namespace: str, name: str) -> bool:
    run = kubectl("get", "configmap", name, "-n", namespace)
    if run.returncode != 0:
        assert "NotFound" in run.stderr, run.stderr
    return run.returncode == 0


def test_a_sync_from_the_cache_lists_nothing_and_prunes_only_what_it_tracks(
    engine: tuple[Engine, GitRepo],
    kubectl: Kubectl,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    e, repo = engine
    e.fill(("", "ConfigMap"), ("", "Namespace"))
    first = e.sync(monkeypatch)
    assert first.phase is OperationPhase.SUCCEEDED, first.message
    assert e.counts["LIST"] == 0
    assert all(_exists(kubectl, namespace, n) for n in ("keep", "drop", "was"))

    kubectl("create", "configmap", "bystander", "-n", namespace, "--from-literal=x=y")
    e.fill(("", "ConfigMap"))  # the watch caught up with the first sync
    # After the cache's snapshot someone takes "was" over (our tracking id removed): the
    # cache still says it is ours, so prune must confirm with the API server first.
    kubectl("annotate", "configmap", "was", "-n", namespace, f"{TRACKING_ANNOTATION}-")
    repo.write({"app/drop.yaml": None, "app/was.yaml": None}, "drop two")

    second = e.sync(monkeypatch)
    assert second.phase is OperationPhase.SUCCEEDED, second.message
    assert e.counts["LIST"] == 0
    assert [r.name for r in second.resources if r.status == "Pruned"] == ["drop"]
    assert not _exists(kubectl, namespace, "drop")
    assert _exists(kubectl, namespace, "was")  # no longer ours: never pruned
    assert _exists(kubectl, namespace, "bystander") and _exists(kubectl, namespace, "keep")


def test_a_kind_the_cache_has_not_synced_is_listed_and_still_pruned(
    engine: tuple[Engine, GitRepo],
    kubectl: Kubectl,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    e, repo = engine
    e.fill(("", "Namespace"))
    first = e.sync(monkeypatch)  # ConfigMaps not cached at all: listed
    assert first.phase is OperationPhase.SUCCEEDED, first.message
    assert e.counts["LIST"] >= 1

    # ConfigMaps cached, then their watch fails (or relists after 410): not current, so
    # the engine lists them again rather than trust what the cache holds.
    e.fill(("", "ConfigMap"))
    res = e.kube.resource_for("", "ConfigMap")
    e.cache._failed(res, Transient("watch failed", status=503))
    assert not e.cache.is_current(("", "ConfigMap"))
    kubectl("create", "configmap", "bystander", "-n", namespace, "--from-literal=x=y")
    repo.write({"app/drop.yaml": None}, "drop one")
    second = e.sync(monkeypatch)
    assert second.phase is OperationPhase.SUCCEEDED, second.message
    assert e.counts["LIST"] >= 1
    assert not _exists(kubectl, namespace, "drop")
    assert _exists(kubectl, namespace, "bystander") and _exists(kubectl, namespace, "keep")
