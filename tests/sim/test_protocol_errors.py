"""Bad input gets the Status object a real API server sends, and breaks nothing else."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client, config

from clusters.sim import SimServer
from tests.conftest import KubeEnv
from tests.sim.helpers import configmap, raw_request

pytestmark = pytest.mark.e2e


@pytest.fixture
def api(kube: KubeEnv) -> Iterator[client.ApiClient]:
    api_client = kube.api_client()
    yield api_client
    api_client.close()


def _status(resp: object) -> dict[str, object]:
    body = json.loads(resp.body)  # type: ignore[attr-defined]
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == resp.status  # type: ignore[attr-defined]
    return body  # type: ignore[no-any-return]


BAD_CREATES = [
    pytest.param(
        b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {',
        400,
        "BadRequest",
        id="malformed-json",
    ),
    pytest.param(b"[1, 2, 3]", 400, "BadRequest", id="not-an-object"),
    pytest.param(
        b'{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}',
        400,
        "BadRequest",
        id="wrong-kind",
    ),
    pytest.param(
        b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}',
        422,
        "Invalid",
        id="missing-name",
    ),
    pytest.param(
        b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not_Valid"}}',
        422,
        "Invalid",
        id="invalid-name",
    ),
    pytest.param(
        b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "elsewhere"}}',
        400,
        "BadRequest",
        id="namespace-mismatch",
    ),
    # Not JSON, though Python's json module reads it: a real server refuses it undecoded.
    pytest.param(
        b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "n"}, "data": {"a": NaN}}',
        400,
        "BadRequest",
        id="nan",
    ),
]


@pytest.mark.parametrize(
    "body",
    [
        b'{"kind": "ConfigMap", "metadata": {"name": "untyped-1"}}',
        b'{"apiVersion": "v1", "metadata": {"name": "untyped-2"}}',
        b'{"metadata": {"name": "untyped-3"}, "data": {"a": "b"}}',
    ],
    ids=["missing-apiVersion", "missing-kind", "missing-both"],
)
def test_a_create_takes_what_the_body_leaves_out_from_the_url(
    api: client.ApiClient, namespace: str, body: bytes
) -> None:
    resp = raw_request(api, "POST", f"/api/v1/namespaces/{namespace}/configmaps", body)
    assert resp.status == 201, resp.body
    assert (resp.json()["apiVersion"], resp.json()["kind"]) == ("v1", "ConfigMap")


@pytest.mark.parametrize(("body", "code", "reason"), BAD_CREATES)
def test_a_bad_create_gets_the_right_status(
    api: client.ApiClient, namespace: str, body: bytes, code: int, reason: str
) -> None:
    resp = raw_request(api, "POST", f"/api/v1/namespaces/{namespace}/configmaps", body)
    assert resp.status == code, resp.body
    assert _status(resp)["reason"] == reason


def test_an_invalid_object_names_the_field_in_its_causes(
    api: client.ApiClient, namespace: str
) -> None:
    resp = raw_request(
        api,
        "POST",
        f"/api/v1/namespaces/{namespace}/configmaps",
        b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}',
    )
    causes = _status(resp)["details"]["causes"]  # type: ignore[index]
    assert causes[0]["field"] == "metadata.name"


def test_malformed_yaml_in_an_apply_is_a_bad_request(api: client.ApiClient, namespace: str) -> None:
    resp = raw_request(
        api,
        "PATCH",
        f"/api/v1/namespaces/{namespace}/configmaps/x?fieldManager=t",
        b"kind: [unclosed",
        content_type="application/apply-patch+yaml",
    )
    assert resp.status == 400 and _status(resp)["reason"] == "BadRequest"


def test_creating_an_existing_object_is_already_exists(
    api: client.ApiClient, namespace: str
) -> None:
    client.CoreV1Api(api).create_namespaced_config_map(namespace, configmap("dup"))
    resp = raw_request(
        api,
        "POST",
        f"/api/v1/namespaces/{namespace}/configmaps",
        json.dumps(configmap("dup")).encode(),
    )
    assert resp.status == 409 and _status(resp)["reason"] == "AlreadyExists"


def test_creating_in_a_missing_namespace_is_not_found(api: client.ApiClient) -> None:
    resp = raw_request(
        api,
        "POST",
        "/api/v1/namespaces/no-such-namespace-here/configmaps",
        json.dumps(configmap("x")).encode(),
    )
    assert resp.status == 404 and _status(resp)["reason"] == "NotFound"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/namespaces/default/widgets",
        "/apis/nope.example.com/v1/things",
        "/api/v1/namespaces/default/nodes",  # a cluster-scoped kind under a namespace
        "/api/v2/pods",
    ],
)
def test_an_unknown_resource_path_is_not_found(api: client.ApiClient, path: str) -> None:
    resp = raw_request(api, "GET", path)
    assert resp.status == 404 and _status(resp)["reason"] == "NotFound"


def test_a_method_a_collection_does_not_have_is_not_allowed(
    api: client.ApiClient, namespace: str
) -> None:
    resp = raw_request(api, "PUT", f"/api/v1/namespaces/{namespace}/configmaps", b"{}")
    assert resp.status == 405 and _status(resp)["reason"] == "MethodNotAllowed"


@pytest.mark.sim_only(
    reason="kube-apiserver reads protobuf bodies; the simulator only for four kinds (docs/sim.md)"
)
def test_a_protobuf_body_is_unsupported_media_type(api: client.ApiClient, namespace: str) -> None:
    resp = raw_request(
        api,
        "POST",
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        b"k8s\x00",
        content_type="application/vnd.kubernetes.protobuf",
    )
    assert resp.status == 415 and _status(resp)["reason"] == "UnsupportedMediaType"


def test_a_request_without_a_token_is_anonymous_and_forbidden(
    kube: KubeEnv, api: client.ApiClient
) -> None:
    resp = raw_request(api, "GET", "/api/v1/namespaces", auth=False)
    if kube.sim is None:  # a real cluster answers 401 when run with --anonymous-auth=false
        assert resp.status in (401, 403), resp.body
        return
    # the simulator models kubeadm: anonymous requests allowed, but RBAC forbids them
    assert resp.status == 403 and _status(resp)["reason"] == "Forbidden"
    assert 'User "system:anonymous" cannot list resource "namespaces"' in str(
        _status(resp)["message"]
    )
    assert raw_request(api, "GET", "/version", auth=False).status == 200  # public info


@pytest.mark.sim_only("starts a private simulator with --no-anonymous-auth")
def test_without_anonymous_auth_a_request_without_a_token_is_unauthorized(
    sim_factory: Callable[..., SimServer],
) -> None:
    server = sim_factory(clusters=1, controllers=False, anonymous_auth=False)
    api = config.new_client_from_config(config_file=str(server.kubeconfig_path))
    try:
        for path in ("/api/v1/namespaces", "/version"):
            resp = raw_request(api, "GET", path, auth=False)
            assert resp.status == 401 and _status(resp)["reason"] == "Unauthorized"
    finally:
        api.close()


def test_a_wrong_token_is_unauthorized(api: client.ApiClient) -> None:
    resp = raw_request(
        api,
        "GET",
        "/api/v1/namespaces",
        auth=False,
        headers={"Authorization": "Bearer not-the-token"},
    )
    assert resp.status == 401


@pytest.mark.sim_only("needs a token of another simulated cluster")
def test_one_clusters_token_does_not_open_another(kube: KubeEnv) -> None:
    assert kube.sim is not None
    first, second = kube.contexts[:2]
    api = kube.api_client(first)
    try:
        other = kube.sim.token(second)
        resp = raw_request(
            api,
            "GET",
            "/api/v1/namespaces",
            auth=False,
            headers={"Authorization": f"Bearer {other}"},
        )
        assert resp.status == 401
    finally:
        api.close()


def test_bad_input_does_not_disturb_the_cluster(api: client.ApiClient, namespace: str) -> None:
    junk = [
        b"\xff\xfe\x00",
        b"{" * 5000,
        b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": "nope"}',
        b"null",
    ]
    for body in junk:
        resp = raw_request(api, "POST", f"/api/v1/namespaces/{namespace}/configmaps", body)
        assert 400 <= resp.status < 500, (body[:20], resp.status, resp.body[:200])
    client.CoreV1Api(api).create_namespaced_config_map(namespace, configmap("fine"))
    assert (
        client.CoreV1Api(api).read_namespaced_config_map("fine", namespace).metadata.name == "fine"
    )
