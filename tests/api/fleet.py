"""A hub home populated through the real store APIs, and a HubHandle for the API tests.

``RecordingHub`` is our own protocol (``hub.handle.HubHandle``), not a fake of the
Kubernetes API: it records what the API asked of the hub and answers what a hub would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from clusters.kubeconfig import BearerToken, TLSSettings
from clusters.registry import NewCluster
from hub.apps import AppStore, Condition, DesiredApp
from hub.errors import HubError
from hub.handle import ClusterConnection
from hub.home import init_home, load_keyring, open_registry, open_store
from hub.sync.history import Operation, OperationPhase, ResourceResult, SyncHistory, Trigger

T = TypeVar("T")
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CLUSTER_TOKENS = {"east": "east-bearer-credential-0001", "west": "west-bearer-credential-0002"}
REPO = "https://git.example.com/platform/fleet.git"

# name -> (appset, cluster, sync, health)
APPS: dict[str, tuple[str | None, str, str, str]] = {
    "web-east": ("web", "east", "Synced", "Healthy"),
    "web-west": ("web", "west", "OutOfSync", "Degraded"),
    "api-east": ("api", "east", "Synced", "Progressing"),
    "tools": (None, "east", "Unknown", "Unknown"),
}


def app_manifest(name: str, cluster: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name},
        "spec": {
            "project": "default",
            "source": {"repoURL": REPO, "path": f"apps/{name}", "targetRevision": "main"},
            "destination": {"name": cluster, "namespace": name},
        },
    }


def populate(home: Path, database: str | None = None) -> None:
    """Two clusters, two ApplicationSets, four Applications, and a sync history
    (in ``database``, a PostgreSQL URL, when given)."""
    init_home(home, env={}, database=database)
    registry = open_registry(home)
    try:
        for name, token in CLUSTER_TOKENS.items():
            registry.add(
                NewCluster(
                    name=name,
                    server=f"https://{name}.example:6443",
                    tls=TLSSettings(),
                    credential=BearerToken(token=token),
                    labels={"env": "prod"},
                ),
                check=False,
            )
    finally:
        registry.close()
    store = open_store(home)
    try:
        apps = AppStore(store)
        with apps.transaction() as txn:
            for set_name in ("web", "api"):
                txn.put_appset(
                    name=set_name,
                    source="root",
                    file=f"appsets/{set_name}.yaml",
                    manifest={"kind": "ApplicationSet", "metadata": {"name": set_name}},
                    sha="1" * 40,
                )
            for name, (appset, cluster, _, _) in APPS.items():
                txn.put_desired(
                    DesiredApp.from_manifest(
                        app_manifest(name, cluster), appset=appset, source="root", cluster=cluster
                    )
                )
        for name, (_, _, sync, health) in APPS.items():
            apps.set_status(
                name,
                sync_status=sync,
                health_status=health,
                conditions=[Condition(type="SyncError", message="boom")]
                if health == "Degraded"
                else [],
            )
        history = SyncHistory(store, lambda: load_keyring(home, env={}))
        for i, (name, phase, status) in enumerate(
            [
                ("web-east", OperationPhase.SUCCEEDED, "Synced"),
                ("web-west", OperationPhase.FAILED, "SyncFailed"),
                ("web-west", OperationPhase.SUCCEEDED, "Synced"),
            ]
        ):
            cluster = APPS[name][1]
            op = Operation(
                app=name,
                operation_id=f"op{i}",
                cluster=cluster,
                revision=f"{i}" * 40,
                source={"repoURL": REPO},
                initiated_by="automated",
                trigger=Trigger.AUTOMATED,
                started_at=T0 + timedelta(minutes=i),
                phase=phase,
                message="successfully synced" if status == "Synced" else "one or more objects failed",
                resources=(
                    ResourceResult(group="apps", kind="Deployment", namespace=name, name=name,
                                   phase="Sync", wave=1, action="apply", status=status,
                                   message="deployment.apps/" + name + " configured",
                                   health="Degraded" if status == "SyncFailed" else "Healthy"),
                    ResourceResult(group="", kind="ConfigMap", namespace=name, name=f"{name}-config",
                                   phase="Sync", wave=0, action="apply", status="Synced",
                                   health=None),
                ),
            )  # fmt: skip
            history.record(
                op,
                finished_at=T0 + timedelta(minutes=i, seconds=30),
                manifests=[{"apiVersion": "v1", "kind": "Secret", "data": {"k": "c2VjcmV0"}}],
            )
    finally:
        store.close()


@dataclass
class RecordingHub:
    """A ``HubHandle`` that records the API's requests."""

    is_ready: bool = True
    connections: dict[str, ClusterConnection] = field(
        default_factory=lambda: {
            "east": ClusterConnection(state="Connected", since="2026-03-01T11:00:00Z"),
            "west": ClusterConnection(state="Unreachable", message="connection refused"),
        }
    )
    known_repos: tuple[str, ...] = (REPO,)
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def ready(self) -> bool:
        return self.is_ready

    def cluster_connections(self) -> dict[str, ClusterConnection]:
        return dict(self.connections)

    async def request_sync(
        self, app: str, *, prune: bool = False, revision: str | None = None, who: str = "api"
    ) -> None:
        self.calls.append(("sync", app, prune, revision, who))

    async def request_refresh(self, app: str | None = None) -> None:
        self.calls.append(("refresh", app))

    async def request_rollback(self, app: str, history_id: int, *, who: str = "api") -> None:
        if history_id > 100:
            raise HubError(f"app {app}: no history entry {history_id}")
        self.calls.append(("rollback", app, history_id, who))

    async def notify_git_push(self, repo_urls: list[str]) -> int:
        self.calls.append(("push", tuple(repo_urls)))
        return sum(1 for u in repo_urls if u in self.known_repos)


def run_client(app: web.Application, scenario: Callable[[TestClient[Any, Any]], Awaitable[T]]) -> T:
    """Serve ``app`` on 127.0.0.1 and run ``scenario`` with a client of it."""

    async def main() -> T:
        async with TestClient(TestServer(app)) as client:
            return await scenario(client)

    return asyncio.run(main())
