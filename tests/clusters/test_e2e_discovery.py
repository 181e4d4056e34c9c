"""The hub's discovery against the test cluster (``hub sim``, or a real one with
``HUB_E2E_KUBECONFIG``), through a registered cluster's connection: aggregated discovery
where the server offers it finds what the per-version documents find."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from clusters import kube as kube_module
from clusters.connect import connect
from clusters.kube import ApiResource, AsyncKube, KubeClient
from hub.home import open_registry
from tests.kube_env import KubeEnv
from tests.sync.e2e_helpers import CLUSTER, hub_app

pytestmark = pytest.mark.e2e


def test_aggregated_and_legacy_discovery_find_the_same_kinds(
    kube: KubeEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = hub_app(kube, tmp_path).hub.home
    registry = open_registry(home)

    async def discover() -> dict[tuple[str, str], ApiResource]:
        client = AsyncKube(connect(registry, CLUSTER))
        try:
            return await client.resources(refresh=True)
        finally:
            await client.aclose()

    try:
        aggregated = anyio.run(discover)
        blocking = KubeClient(connect(registry, CLUSTER)).resources(refresh=True)
        monkeypatch.setattr(kube_module, "DISCOVERY_ACCEPT", "application/json")
        legacy = anyio.run(discover)
    finally:
        registry.close()
    assert aggregated == legacy == blocking
    for kind in [("", "Namespace"), ("", "ConfigMap"), ("apps", "Deployment")]:
        assert {"list", "watch", "patch"} <= aggregated[kind].verbs
    assert not aggregated[("", "Namespace")].namespaced
    assert aggregated[("apps", "Deployment")].plural == "deployments"
