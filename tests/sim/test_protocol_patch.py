"""The four PATCH kinds and server-side apply's ownership rules, through the official client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.conftest import KubeEnv
from tests.sim.helpers import configmap, deployment, raw_request

pytestmark = pytest.mark.e2e


@pytest.fixture
def api(kube: KubeEnv) -> Iterator[client.ApiClient]:
    api_client = kube.api_client()
    yield api_client
    api_client.close()


def _patch(api: client.ApiClient, path: str, body: Any, content_type: str, **query: str) -> Any:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    raw = (
        body
        if isinstance(body, bytes)
        else yaml.safe_dump(body).encode()
        if content_type.endswith("yaml")
        else __import__("json").dumps(body).encode()
    )
    resp = raw_request(api, "PATCH", f"{path}?{qs}" if qs else path, raw, content_type=content_type)
    return resp


def test_a_json_patch_applies_its_operations_in_order(
    api: client.ApiClient, namespace: str
) -> None:
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_config_map(namespace, configmap("cfg", {"a": "1", "b": "2"}))
    ops = [
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "remove", "path": "/data/b"},
        {"op": "add", "path": "/data/c", "value": "3"},
    ]
    resp = _patch(
        api, f"/api/v1/namespaces/{namespace}/configmaps/cfg", ops, "application/json-patch+json"
    )
    assert resp.status == 200, resp.body
    assert resp.json()["data"] == {"a": "10", "c": "3"}
    failing = [{"op": "test", "path": "/data/a", "value": "nope"}]
    resp = _patch(
        api,
        f"/api/v1/namespaces/{namespace}/configmaps/cfg",
        failing,
        "application/json-patch+json",
    )
    assert resp.status in (409, 422, 500) and resp.json()["kind"] == "Status"
    assert v1.read_namespaced_config_map("cfg", namespace).data == {"a": "10", "c": "3"}


def test_a_merge_patch_replaces_lists_and_null_deletes(
    api: client.ApiClient, namespace: str
) -> None:
    client.AppsV1Api(api).create_namespaced_deployment(namespace, deployment("web", replicas=0))
    body = {
        "metadata": {"labels": {"x": "1"}},
        "spec": {
            "template": {"spec": {"containers": [{"name": "other", "image": "busybox:1.36"}]}}
        },
    }
    resp = _patch(
        api,
        f"/apis/apps/v1/namespaces/{namespace}/deployments/web",
        body,
        "application/merge-patch+json",
    )
    assert resp.status == 200, resp.body
    containers = resp.json()["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["other"]
    resp = _patch(
        api,
        f"/apis/apps/v1/namespaces/{namespace}/deployments/web",
        {"metadata": {"labels": {"x": None}}},
        "application/merge-patch+json",
    )
    assert "x" not in (resp.json()["metadata"].get("labels") or {})


def test_a_strategic_merge_patch_merges_containers_by_name(
    api: client.ApiClient, namespace: str
) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=0))
    sidecar = {
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "envoy:1.30"}]}}}
    }
    patched = apps.patch_namespaced_deployment("web", namespace, sidecar)  # the client sends SMP
    assert sorted(c.name for c in patched.spec.template.spec.containers) == ["main", "sidecar"]
    env = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "main", "env": [{"name": "A", "value": "1"}]}]}
            }
        }
    }
    patched = apps.patch_namespaced_deployment("web", namespace, env)
    main = next(c for c in patched.spec.template.spec.containers if c.name == "main")
    assert main.image == "nginx:1.27" and [e.name for e in main.env] == ["A"]


def test_server_side_apply_creates_and_records_the_manager(
    api: client.ApiClient, namespace: str
) -> None:
    manifest = configmap("applied", {"a": "1"})
    resp = _patch(
        api,
        f"/api/v1/namespaces/{namespace}/configmaps/applied",
        manifest,
        "application/apply-patch+yaml",
        fieldManager="alice",
    )
    assert resp.status == 201, resp.body
    managers = {(m["manager"], m["operation"]) for m in resp.json()["metadata"]["managedFields"]}
    assert managers == {("alice", "Apply")}


def test_server_side_apply_conflicts_between_managers_unless_forced(
    api: client.ApiClient, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps/shared"
    assert (
        _patch(
            api,
            path,
            configmap("shared", {"a": "1"}),
            "application/apply-patch+yaml",
            fieldManager="alice",
        ).status
        == 201
    )
    resp = _patch(
        api,
        path,
        configmap("shared", {"a": "2"}),
        "application/apply-patch+yaml",
        fieldManager="bob",
    )
    assert resp.status == 409
    status = resp.json()
    assert status["reason"] == "Conflict"
    assert any("alice" in c.get("message", "") for c in status["details"]["causes"])
    resp = _patch(
        api,
        path,
        configmap("shared", {"a": "2"}),
        "application/apply-patch+yaml",
        fieldManager="bob",
        force="true",
    )
    assert resp.status == 200, resp.body
    obj = resp.json()
    assert obj["data"] == {"a": "2"}
    assert "bob" in {m["manager"] for m in obj["metadata"]["managedFields"]}


def test_server_side_apply_removes_fields_its_manager_no_longer_declares(
    api: client.ApiClient, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps/prune"
    _patch(
        api,
        path,
        configmap("prune", {"a": "1", "b": "2"}),
        "application/apply-patch+yaml",
        fieldManager="alice",
    )
    resp = _patch(
        api,
        path,
        configmap("prune", {"a": "1"}),
        "application/apply-patch+yaml",
        fieldManager="alice",
    )
    assert resp.json()["data"] == {"a": "1"}


def test_apply_without_a_field_manager_is_invalid(api: client.ApiClient, namespace: str) -> None:
    resp = _patch(
        api,
        f"/api/v1/namespaces/{namespace}/configmaps/nofm",
        configmap("nofm"),
        "application/apply-patch+yaml",
    )
    assert resp.status == 422 and resp.json()["reason"] == "Invalid"
    assert resp.json()["details"]["causes"][0]["field"] == "fieldManager"


def test_an_unknown_patch_content_type_is_unsupported_media_type(
    api: client.ApiClient, namespace: str
) -> None:
    client.CoreV1Api(api).create_namespaced_config_map(namespace, configmap("cfg"))
    resp = _patch(api, f"/api/v1/namespaces/{namespace}/configmaps/cfg", b"{}", "text/plain")
    assert resp.status == 415 and resp.json()["reason"] == "UnsupportedMediaType"


def test_patching_a_missing_object_is_not_found(api: client.ApiClient, namespace: str) -> None:
    resp = _patch(
        api,
        f"/api/v1/namespaces/{namespace}/configmaps/ghost",
        {"data": {"a": "1"}},
        "application/merge-patch+json",
    )
    assert resp.status == 404 and resp.json()["reason"] == "NotFound"


def test_a_dry_run_apply_shows_the_result_without_storing_it(
    api: client.ApiClient, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps/dry"
    resp = _patch(
        api,
        path,
        configmap("dry", {"a": "1"}),
        "application/apply-patch+yaml",
        fieldManager="alice",
        dryRun="All",
    )
    assert resp.status == 201 and resp.json()["data"] == {"a": "1"}
    assert raw_request(api, "GET", path).status == 404
