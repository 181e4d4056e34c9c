"""A worker reads Namespaces from its watch cache: an Application's first sync asks the
cluster for no namespace of its own, whether the namespace exists or the sync creates it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from clusters.kube import AsyncKube
from hub.controller import Hub, HubOptions
from hub.sync.model import Application, Destination
from hub.sync.resources import NAMESPACE_KIND
from hub.worker.services import Desired
from tests.hub import test_controller_runtime as runtime
from tests.hub.test_controller_runtime import wait_until
from tests.sync.e2e_helpers import GitRepo

# test_controller_runtime's Application, automated, in a namespace its sync may create
APP = runtime.APP.replace("{cluster}, namespace: default", "a, namespace: {namespace}") + (
    "  syncPolicy:\n    automated: {{prune: true}}\n    syncOptions: [CreateNamespace=true]\n"
)

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {v: '1'}\n"


def desired(namespace: str, *manifests: dict[str, Any]) -> Desired:
    app = Application(name="x", destination=Destination(name="a", namespace=namespace))
    return Desired(generation=1, sha="s", app=app, manifests=manifests)


def test_the_kinds_read_are_the_manifests_kinds_and_namespaces_when_one_is_named() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "r"},
    }
    assert desired("n", cm).kinds_read == (("", "ConfigMap"), NAMESPACE_KIND)
    assert desired("", cm).kinds_read == (("", "ConfigMap"), NAMESPACE_KIND)
    assert desired("n", role).kinds_read == (
        NAMESPACE_KIND,
        ("rbac.authorization.k8s.io", "ClusterRole"),
    )
    # cluster-scoped objects only and no destination namespace: nothing asks for one
    assert desired("", role).kinds_read == (("rbac.authorization.k8s.io", "ClusterRole"),)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    repo = GitRepo(tmp_path / "repo")
    files = {"app/cm.yaml": CM}
    # three created by their first sync, one that exists already
    for i, namespace in enumerate(["new-1", "new-2", "new-3", "default"]):
        files[f"apps/{i}.yaml"] = APP.format(name=f"app{i}", repo=repo.path, namespace=namespace)
    with runtime.one_cluster_home(tmp_path, repo, files) as path:
        yield path


@pytest.mark.sim_only("counts the hub's requests to a simulated cluster")
@pytest.mark.timeout(120)
def test_first_syncs_read_namespaces_from_the_cache_not_a_get_each(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = Hub(home, HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5))
    namespace_gets: list[str] = []
    original = AsyncKube._request

    async def counted(client: AsyncKube, method: str, url: str, **kw: Any) -> Any:
        parts = url.strip("/").split("/")
        if method == "GET" and parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 4:
            namespace_gets.append(parts[3])
        return await original(client, method, url, **kw)

    monkeypatch.setattr(AsyncKube, "_request", counted)

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(hub.run)
            await wait_until(
                runtime.all_synced(hub, [f"app{i}" for i in range(4)]), "every app synced"
            )
            await hub.shutdown()

    anyio.run(body)
    assert namespace_gets == []
