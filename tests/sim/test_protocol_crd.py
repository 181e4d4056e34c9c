"""CustomResourceDefinitions: discovery follows them, their kinds are served, deletion cleans up."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, dynamic

from tests.conftest import KubeEnv
from tests.sim.helpers import eventually, raw_request

pytestmark = pytest.mark.e2e


@pytest.fixture
def api(kube: KubeEnv) -> Iterator[client.ApiClient]:
    api_client = kube.api_client()
    yield api_client
    api_client.close()


def _crd(group: str, scope: str = "Namespaced") -> dict[str, Any]:
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "shortNames": ["wg"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": schema,
                    "subresources": {"status": {}},
                },
                {"name": "v1beta1", "served": True, "storage": False, "schema": schema},
            ],
        },
    }


@pytest.fixture
def crd_group(api: client.ApiClient) -> Iterator[str]:
    group = f"t{uuid.uuid4().hex[:8]}.example.com"
    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(_crd(group))
    eventually(lambda: raw_request(api, "GET", f"/apis/{group}/v1").status == 200)
    yield group
    try:
        ext.delete_custom_resource_definition(f"widgets.{group}")
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def test_a_crd_is_established_and_appears_in_discovery(
    api: client.ApiClient, crd_group: str
) -> None:
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(f"widgets.{crd_group}")
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions.get("Established") == "True"
    groups = raw_request(api, "GET", "/apis").json()
    group = next(g for g in groups["groups"] if g["name"] == crd_group)
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    resources = raw_request(api, "GET", f"/apis/{crd_group}/v1").json()["resources"]
    names = {r["name"] for r in resources}
    assert {"widgets", "widgets/status"} <= names


def test_custom_objects_are_served_at_every_served_version(
    api: client.ApiClient, crd_group: str, namespace: str
) -> None:
    co = client.CustomObjectsApi(api)
    body = {
        "apiVersion": f"{crd_group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 3},
    }
    created = co.create_namespaced_custom_object(crd_group, "v1", namespace, "widgets", body)
    assert created["metadata"]["generation"] == 1
    as_beta = co.get_namespaced_custom_object(crd_group, "v1beta1", namespace, "widgets", "w1")
    assert as_beta["apiVersion"] == f"{crd_group}/v1beta1" and as_beta["spec"] == {"size": 3}
    updated = co.patch_namespaced_custom_object(
        crd_group, "v1", namespace, "widgets", "w1", {"spec": {"size": 4}}
    )
    assert updated["metadata"]["generation"] == 2
    status = co.patch_namespaced_custom_object_status(
        crd_group, "v1", namespace, "widgets", "w1", {"status": {"ready": True}}
    )
    assert status["status"] == {"ready": True} and status["metadata"]["generation"] == 2
    dyn = dynamic.DynamicClient(api)
    widgets = dyn.resources.get(api_version=f"{crd_group}/v1", kind="Widget")
    assert [w.metadata.name for w in widgets.get(namespace=namespace).items] == ["w1"]


def test_deleting_a_crd_deletes_its_objects_and_its_discovery(
    api: client.ApiClient, crd_group: str, namespace: str
) -> None:
    co = client.CustomObjectsApi(api)
    for i in range(2):
        body = {"apiVersion": f"{crd_group}/v1", "kind": "Widget", "metadata": {"name": f"w{i}"}}
        co.create_namespaced_custom_object(crd_group, "v1", namespace, "widgets", body)
    client.ApiextensionsV1Api(api).delete_custom_resource_definition(f"widgets.{crd_group}")
    eventually(lambda: raw_request(api, "GET", f"/apis/{crd_group}/v1").status == 404)
    assert crd_group not in {g["name"] for g in raw_request(api, "GET", "/apis").json()["groups"]}
    assert (
        raw_request(api, "GET", f"/apis/{crd_group}/v1/namespaces/{namespace}/widgets").status
        == 404
    )


def test_an_invalid_crd_is_rejected_with_the_field_named(api: client.ApiClient) -> None:
    body = _crd("bad.example.com")
    body["metadata"]["name"] = "wrong-name"
    with pytest.raises(client.ApiException) as err:
        client.ApiextensionsV1Api(api).create_custom_resource_definition(body)
    assert err.value.status == 422
    assert "metadata.name" in err.value.body


AGGREGATED = "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"


def _aggregated(api: client.ApiClient, path: str, accept: str) -> tuple[str, dict[str, Any]]:
    answer = raw_request(api, "GET", path, headers={"Accept": accept})
    assert answer.status == 200
    return answer.headers.get("Content-Type", ""), answer.json()


def test_aggregated_discovery_lists_every_version_of_every_group_in_one_answer(
    api: client.ApiClient, crd_group: str
) -> None:
    accept = ",".join(
        [AGGREGATED.format(v="v2"), AGGREGATED.format(v="v2beta1"), "application/json"]
    )
    media, doc = _aggregated(api, "/apis", accept)
    if doc["kind"] == "APIGroupList":
        pytest.skip("the API server predates aggregated discovery (Kubernetes 1.26)")
    assert doc["kind"] == "APIGroupDiscoveryList"
    version = doc["apiVersion"].removeprefix("apidiscovery.k8s.io/")
    assert version in ("v2", "v2beta1") and f"v={version};as=APIGroupDiscoveryList" in media
    group = next(g for g in doc["items"] if g["metadata"]["name"] == crd_group)
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    widgets = next(r for r in group["versions"][0]["resources"] if r["resource"] == "widgets")
    assert widgets["responseKind"] == {"group": crd_group, "version": "v1", "kind": "Widget"}
    assert widgets["scope"] == "Namespaced" and widgets["singularResource"] == "widget"
    assert [s["subresource"] for s in widgets.get("subresources", [])] == ["status"]
    apps = next(g for g in doc["items"] if g["metadata"]["name"] == "apps")
    deployments = next(
        r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments"
    )
    assert {"status", "scale"} <= {s["subresource"] for s in deployments["subresources"]}
    _, core = _aggregated(api, "/api", accept)
    (legacy,) = core["items"]
    assert legacy["metadata"].get("name", "") == ""
    kinds = {r["responseKind"]["kind"]: r["scope"] for r in legacy["versions"][0]["resources"]}
    assert kinds["ConfigMap"] == "Namespaced" and kinds["Namespace"] == "Cluster"


@pytest.mark.sim_only("which older discovery versions a real API server still serves varies")
def test_discovery_answers_the_first_acceptable_media_type(api: client.ApiClient) -> None:
    _, beta = _aggregated(api, "/apis", AGGREGATED.format(v="v2beta1"))
    assert beta["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
    _, plain = _aggregated(api, "/apis", "application/json," + AGGREGATED.format(v="v2"))
    assert plain["kind"] == "APIGroupList"
    _, unknown = _aggregated(api, "/apis", AGGREGATED.format(v="v9") + ",application/json")
    assert unknown["kind"] == "APIGroupList"
