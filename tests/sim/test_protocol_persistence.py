"""--state-dir: objects, tokens and the CA survive a restart; versions keep increasing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client, config

from clusters.sim import SimServer
from tests.sim.helpers import configmap

pytestmark = [pytest.mark.e2e, pytest.mark.sim_only("restarts the simulator")]


def test_objects_tokens_and_ca_survive_a_restart(
    sim_factory: Callable[..., SimServer], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first = sim_factory(clusters=["keep"], state_dir=state, controllers=False)
    token, ca = first.token("keep"), first.ca_pem
    api = config.new_client_from_config(config_file=str(first.kubeconfig_path))
    try:
        v1 = client.CoreV1Api(api)
        v1.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
        rv = int(
            v1.create_namespaced_config_map(
                "team", configmap("saved", {"a": "1"})
            ).metadata.resource_version
        )
    finally:
        api.close()
    first.stop()

    second = sim_factory(clusters=["keep"], state_dir=state, controllers=False)
    assert second.token("keep") == token and second.ca_pem == ca
    api = config.new_client_from_config(config_file=str(second.kubeconfig_path))
    try:
        v1 = client.CoreV1Api(api)
        assert v1.read_namespaced_config_map("saved", "team").data == {"a": "1"}
        later = v1.patch_namespaced_config_map("saved", "team", {"data": {"a": "2"}})
        assert int(later.metadata.resource_version) > rv
    finally:
        api.close()


def test_a_cluster_added_at_run_time_is_kept_too(
    sim_factory: Callable[..., SimServer], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first = sim_factory(clusters=["base"], state_dir=state, controllers=False)
    first.add_cluster("added")
    first.stop()
    second = sim_factory(clusters=["base"], state_dir=state, controllers=False)
    assert second.cluster_names == ["base", "added"]
