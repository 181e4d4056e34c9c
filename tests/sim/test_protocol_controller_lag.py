"""What kube-controller-manager does after a write, and how late: cascades and namespace
defaults.

A real control plane finishes garbage collection, `orphan`/`foregroundDeletion` finalizers
and namespace clean-up asynchronously; the simulator does it ``gc_delay`` seconds after the
write (``hub sim serve --gc-delay``). Tests of the intermediate states use a private
simulator with a long delay, so what they observe does not depend on timing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from clusters.sim import SimServer
from tests.conftest import KubeEnv, unique_name
from tests.sim.helpers import ROOT_CA, configmap, eventually

pytestmark = pytest.mark.e2e

SLOW = 1.5  # seconds: long enough that every "right after the delete" read sees the object


def _owned(name: str, owner: Any) -> dict[str, Any]:
    body = configmap(name)
    body["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid}
    ]  # fmt: skip
    return body


def _read(v1: client.CoreV1Api, name: str, namespace: str) -> Any:
    try:
        return v1.read_namespaced_config_map(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


@pytest.fixture
def slow(sim_factory: Callable[..., SimServer]) -> Iterator[tuple[client.CoreV1Api, str]]:
    """A private cluster whose garbage collector lags ``SLOW`` seconds, with a namespace."""
    server = sim_factory(clusters=1, controllers=False, gc_delay=SLOW)
    api = config.new_client_from_config(config_file=str(server.kubeconfig_path))
    v1 = client.CoreV1Api(api)
    v1.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lag"}})
    try:
        yield v1, "lag"
    finally:
        api.close()


@pytest.mark.sim_only("needs a private simulator with a long --gc-delay")
def test_a_foreground_delete_leaves_the_object_terminating_until_the_collector_runs(
    slow: tuple[client.CoreV1Api, str],
) -> None:
    v1, ns = slow
    v1.create_namespaced_config_map(ns, configmap("alone"))
    v1.delete_namespaced_config_map("alone", ns, propagation_policy="Foreground")
    # as kube-apiserver: the policy became a finalizer the garbage collector removes later
    terminating = _read(v1, "alone", ns)
    assert terminating is not None and terminating.metadata.deletion_timestamp is not None
    assert terminating.metadata.finalizers == ["foregroundDeletion"]
    eventually(lambda: _read(v1, "alone", ns) is None)


@pytest.mark.sim_only("needs a private simulator with a long --gc-delay")
def test_a_background_delete_removes_the_owner_at_once_and_its_dependents_later(
    slow: tuple[client.CoreV1Api, str],
) -> None:
    v1, ns = slow
    owner = v1.create_namespaced_config_map(ns, configmap("owner"))
    v1.create_namespaced_config_map(ns, _owned("child", owner))
    v1.delete_namespaced_config_map("owner", ns, propagation_policy="Background")
    assert _read(v1, "owner", ns) is None
    assert _read(v1, "child", ns) is not None  # not collected yet
    eventually(lambda: _read(v1, "child", ns) is None)


@pytest.mark.sim_only("needs a private simulator with a long --gc-delay")
def test_an_orphan_delete_holds_the_owner_with_the_orphan_finalizer_then_frees_dependents(
    slow: tuple[client.CoreV1Api, str],
) -> None:
    v1, ns = slow
    owner = v1.create_namespaced_config_map(ns, configmap("owner"))
    v1.create_namespaced_config_map(ns, _owned("child", owner))
    v1.delete_namespaced_config_map("owner", ns, propagation_policy="Orphan")
    held = _read(v1, "owner", ns)
    assert held is not None and held.metadata.finalizers == ["orphan"]
    eventually(lambda: _read(v1, "owner", ns) is None)
    child = _read(v1, "child", ns)
    assert child is not None and not child.metadata.owner_references


@pytest.mark.sim_only("needs a private simulator with a long --gc-delay")
def test_a_job_deleted_without_a_policy_orphans_its_pods_as_batch_v1_does(
    slow: tuple[client.CoreV1Api, str],
) -> None:
    v1, ns = slow
    batch = client.BatchV1Api(v1.api_client)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox"}],
                }
            }
        },
    }
    batch.create_namespaced_job(ns, job)
    batch.delete_namespaced_job("once", ns)
    held = batch.read_namespaced_job("once", ns)
    assert held.metadata.finalizers == ["orphan"]
    eventually(
        lambda: not any(j.metadata.name == "once" for j in batch.list_namespaced_job(ns).items)
    )


@pytest.mark.sim_only("needs a private simulator with a long --gc-delay")
def test_a_deleted_namespace_is_terminating_with_its_contents_for_a_while(
    slow: tuple[client.CoreV1Api, str],
) -> None:
    v1, ns = slow
    v1.create_namespaced_config_map(ns, configmap("inside"))
    v1.delete_namespace(ns)
    assert v1.read_namespace(ns).status.phase == "Terminating"
    assert _read(v1, "inside", ns) is not None

    def gone() -> bool:
        try:
            v1.read_namespace(ns)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    eventually(gone)


@pytest.mark.sim_only("restarts the simulator")
def test_a_deletion_in_progress_is_finished_after_a_restart(
    sim_factory: Callable[..., SimServer], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first = sim_factory(clusters=["keep"], state_dir=state, controllers=False, gc_delay=60)
    api = config.new_client_from_config(config_file=str(first.kubeconfig_path))
    try:
        v1 = client.CoreV1Api(api)
        v1.create_namespaced_config_map("default", configmap("half-gone"))
        v1.delete_namespaced_config_map("half-gone", "default", propagation_policy="Foreground")
    finally:
        api.close()
    first.stop()

    second = sim_factory(clusters=["keep"], state_dir=state, controllers=False, gc_delay=0.1)
    api = config.new_client_from_config(config_file=str(second.kubeconfig_path))
    try:
        v1 = client.CoreV1Api(api)
        eventually(lambda: _read(v1, "half-gone", "default") is None)
    finally:
        api.close()


# ---------------------------------------------------------------- what every namespace holds


def test_every_namespace_gets_the_root_ca_configmap_and_the_default_service_account(
    kube: KubeEnv,
) -> None:
    api = kube.api_client()
    v1 = client.CoreV1Api(api)
    name = unique_name("fresh")
    v1.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        ca = eventually(lambda: _read(v1, ROOT_CA, name))
        assert "BEGIN CERTIFICATE" in ca.data["ca.crt"]
        if kube.sim is not None:
            assert ca.data["ca.crt"] == kube.sim.ca_pem.decode()
        assert not (ca.metadata.annotations or {}).get("gitops-hub/tracking-id")
        eventually(
            lambda: any(
                a.metadata.name == "default" for a in v1.list_namespaced_service_account(name).items
            )
        )
        # kube-controller-manager puts it back when someone deletes it
        v1.delete_namespaced_config_map(ROOT_CA, name)
        eventually(lambda: _read(v1, ROOT_CA, name))
    finally:
        v1.delete_namespace(name)
        api.close()
