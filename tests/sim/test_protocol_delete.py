"""Deletion: finalizers, propagation policies, owner-reference garbage collection, namespaces."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.conftest import KubeEnv, unique_name
from tests.sim.helpers import configmap, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def api(kube: KubeEnv) -> Iterator[client.ApiClient]:
    api_client = kube.api_client()
    yield api_client
    api_client.close()


def _owned(name: str, owner: Any) -> dict[str, Any]:
    body = configmap(name)
    body["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": owner.metadata.name,
            "uid": owner.metadata.uid,
        }
    ]
    return body


def _exists(v1: client.CoreV1Api, name: str, namespace: str) -> bool:
    try:
        v1.read_namespaced_config_map(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_a_finalizer_holds_an_object_until_it_is_removed(
    api: client.ApiClient, namespace: str
) -> None:
    v1 = client.CoreV1Api(api)
    body = configmap("held")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    v1.create_namespaced_config_map(namespace, body)
    v1.delete_namespaced_config_map("held", namespace)
    held = v1.read_namespaced_config_map("held", namespace)
    assert held.metadata.deletion_timestamp is not None
    v1.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})
    eventually(lambda: not _exists(v1, "held", namespace))


@pytest.mark.parametrize("policy", ["Background", "Foreground"])
def test_deleting_an_owner_deletes_its_dependents(
    api: client.ApiClient, namespace: str, policy: str
) -> None:
    v1 = client.CoreV1Api(api)
    owner = v1.create_namespaced_config_map(namespace, configmap("owner"))
    v1.create_namespaced_config_map(namespace, _owned("child", owner))
    v1.delete_namespaced_config_map("owner", namespace, propagation_policy=policy)
    eventually(lambda: not _exists(v1, "child", namespace) and not _exists(v1, "owner", namespace))


def test_foreground_deletion_waits_for_a_dependent_held_by_a_finalizer(
    api: client.ApiClient, namespace: str
) -> None:
    v1 = client.CoreV1Api(api)
    owner = v1.create_namespaced_config_map(namespace, configmap("owner"))
    child = _owned("child", owner)
    child["metadata"]["finalizers"] = ["example.com/hold"]
    v1.create_namespaced_config_map(namespace, child)
    v1.delete_namespaced_config_map("owner", namespace, propagation_policy="Foreground")
    held_owner = eventually(lambda: v1.read_namespaced_config_map("owner", namespace))
    assert held_owner.metadata.deletion_timestamp is not None
    assert "foregroundDeletion" in (held_owner.metadata.finalizers or [])
    eventually(
        lambda: v1.read_namespaced_config_map("child", namespace).metadata.deletion_timestamp
    )
    v1.patch_namespaced_config_map("child", namespace, {"metadata": {"finalizers": None}})
    eventually(lambda: not _exists(v1, "owner", namespace))


def test_orphan_deletion_keeps_dependents_and_drops_their_owner_reference(
    api: client.ApiClient, namespace: str
) -> None:
    v1 = client.CoreV1Api(api)
    owner = v1.create_namespaced_config_map(namespace, configmap("owner"))
    v1.create_namespaced_config_map(namespace, _owned("child", owner))
    v1.delete_namespaced_config_map("owner", namespace, propagation_policy="Orphan")
    eventually(lambda: not _exists(v1, "owner", namespace))
    child = v1.read_namespaced_config_map("child", namespace)
    assert not child.metadata.owner_references


def test_a_dependent_with_another_living_owner_survives(
    api: client.ApiClient, namespace: str
) -> None:
    v1 = client.CoreV1Api(api)
    first = v1.create_namespaced_config_map(namespace, configmap("first"))
    second = v1.create_namespaced_config_map(namespace, configmap("second"))
    body = _owned("child", first)
    body["metadata"]["ownerReferences"].append(
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "second", "uid": second.metadata.uid}
    )
    v1.create_namespaced_config_map(namespace, body)
    v1.delete_namespaced_config_map("first", namespace)
    eventually(lambda: not _exists(v1, "first", namespace))
    child = eventually(
        lambda: (
            (c := v1.read_namespaced_config_map("child", namespace))
            and len(c.metadata.owner_references or []) == 1
            and c
        )
    )
    assert child.metadata.owner_references[0].name == "second"


def test_a_stale_delete_precondition_is_a_conflict(api: client.ApiClient, namespace: str) -> None:
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_config_map(namespace, configmap("cfg"))
    with pytest.raises(client.ApiException) as err:
        v1.delete_namespaced_config_map(
            "cfg",
            namespace,
            body=client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version="1")),
        )
    assert err.value.status == 409


def test_deleting_a_namespace_terminates_it_and_removes_its_contents(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    name = unique_name("doomed")
    v1.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    for i in range(3):
        v1.create_namespaced_config_map(name, configmap(f"cm-{i}"))
    held = configmap("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    v1.create_namespaced_config_map(name, held)
    v1.delete_namespace(name)
    ns = v1.read_namespace(name)
    assert ns.status.phase == "Terminating"
    with pytest.raises(client.ApiException) as err:
        v1.create_namespaced_config_map(name, configmap("late"))
    assert err.value.status == 403
    eventually(
        lambda: (
            [
                c.metadata.name
                for c in v1.list_namespaced_config_map(name).items
                if c.metadata.name != "kube-root-ca.crt"
            ]
            == ["held"]
        )
    )
    v1.patch_namespaced_config_map("held", name, {"metadata": {"finalizers": None}})

    def gone() -> bool:
        try:
            v1.read_namespace(name)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    eventually(gone)


def test_system_namespaces_cannot_be_deleted(api: client.ApiClient) -> None:
    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(api).delete_namespace("kube-system", dry_run="All")
    assert err.value.status == 403


def test_delete_collection_removes_only_the_selected_objects(
    api: client.ApiClient, namespace: str
) -> None:
    v1 = client.CoreV1Api(api)
    for name, labels in [("a", {"batch": "1"}), ("b", {"batch": "1"}), ("c", {"batch": "2"})]:
        v1.create_namespaced_config_map(namespace, configmap(name, labels=labels))
    v1.delete_collection_namespaced_config_map(namespace, label_selector="batch=1")
    eventually(
        lambda: (
            sorted(
                c.metadata.name
                for c in v1.list_namespaced_config_map(namespace, label_selector="batch").items
            )
            == ["c"]
        )
    )
