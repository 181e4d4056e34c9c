"""The official client's typed and dynamic APIs against the cluster: CRUD and metadata rules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from tests.conftest import KubeEnv, unique_name
from tests.sim.helpers import configmap, deployment, without_published

pytestmark = pytest.mark.e2e


@pytest.fixture
def api(kube: KubeEnv) -> Iterator[client.ApiClient]:
    api_client = kube.api_client()
    yield api_client
    api_client.close()


def test_a_configmap_goes_through_create_read_replace_and_delete(
    api: client.ApiClient, namespace: str
) -> None:
    v1 = client.CoreV1Api(api)
    created = v1.create_namespaced_config_map(namespace, configmap("cfg", {"a": "1"}))
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert int(created.metadata.resource_version) > 0

    read = v1.read_namespaced_config_map("cfg", namespace)
    assert read.data == {"a": "1"}
    read.data["b"] = "2"
    replaced = v1.replace_namespaced_config_map("cfg", namespace, read)
    assert replaced.data == {"a": "1", "b": "2"}
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    assert replaced.metadata.uid == created.metadata.uid

    v1.delete_namespaced_config_map("cfg", namespace)
    with pytest.raises(client.ApiException) as err:
        v1.read_namespaced_config_map("cfg", namespace)
    assert err.value.status == 404


def test_generate_name_gives_a_unique_name_with_the_prefix(
    api: client.ApiClient, namespace: str
) -> None:
    v1 = client.CoreV1Api(api)
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}
    names = {v1.create_namespaced_config_map(namespace, body).metadata.name for _ in range(3)}
    assert len(names) == 3
    assert all(n.startswith("gen-") and len(n) == len("gen-") + 5 for n in names)


def test_resource_versions_increase_across_kinds_in_one_cluster(
    api: client.ApiClient, namespace: str
) -> None:
    v1 = client.CoreV1Api(api)
    a = v1.create_namespaced_config_map(namespace, configmap("a"))
    s = v1.create_namespaced_secret(
        namespace,
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}},
    )
    b = v1.create_namespaced_config_map(namespace, configmap("b"))
    versions = [int(o.metadata.resource_version) for o in (a, s, b)]
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_a_put_with_a_stale_resource_version_is_a_conflict(
    api: client.ApiClient, namespace: str
) -> None:
    v1 = client.CoreV1Api(api)
    first = v1.create_namespaced_config_map(namespace, configmap("cfg", {"a": "1"}))
    v1.patch_namespaced_config_map("cfg", namespace, {"data": {"a": "2"}})
    first.data = {"a": "3"}
    with pytest.raises(client.ApiException) as err:
        v1.replace_namespaced_config_map("cfg", namespace, first)
    assert err.value.status == 409
    assert '"reason":"Conflict"' in err.value.body.replace(" ", "")
    assert v1.read_namespaced_config_map("cfg", namespace).data == {"a": "2"}


def test_a_write_that_changes_nothing_keeps_the_resource_version(
    api: client.ApiClient, namespace: str
) -> None:
    v1 = client.CoreV1Api(api)
    created = v1.create_namespaced_config_map(namespace, configmap("cfg", {"a": "1"}))
    patched = v1.patch_namespaced_config_map("cfg", namespace, {"data": {"a": "1"}})
    assert patched.metadata.resource_version == created.metadata.resource_version


def test_generation_moves_on_spec_changes_only(api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(api)
    created = apps.create_namespaced_deployment(namespace, deployment("web", replicas=0))
    assert created.metadata.generation == 1
    labelled = apps.patch_namespaced_deployment(
        "web", namespace, {"metadata": {"labels": {"team": "a"}}}
    )
    assert labelled.metadata.generation == 1
    rescaled = apps.patch_namespaced_deployment(
        "web", namespace, {"spec": {"replicas": 0, "minReadySeconds": 5}}
    )
    assert rescaled.metadata.generation == 2


def test_the_server_fills_in_defaults_like_kube_apiserver(
    api: client.ApiClient, namespace: str
) -> None:
    apps = client.AppsV1Api(api)
    created = apps.create_namespaced_deployment(
        namespace, deployment("web", replicas=0, image="nginx")
    )
    spec = created.spec
    assert spec.revision_history_limit == 10
    assert spec.progress_deadline_seconds == 600
    assert spec.strategy.type == "RollingUpdate"
    pod = spec.template.spec
    assert pod.restart_policy == "Always" and pod.dns_policy == "ClusterFirst"
    assert pod.containers[0].image_pull_policy == "Always"  # no tag means :latest
    svc = client.CoreV1Api(api).create_namespaced_service(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
        },
    )
    assert svc.spec.type == "ClusterIP" and svc.spec.cluster_ip
    assert svc.spec.ports[0].protocol == "TCP" and svc.spec.ports[0].target_port == 80


def test_every_write_records_managed_fields(api: client.ApiClient, namespace: str) -> None:
    v1 = client.CoreV1Api(api)
    created = v1.create_namespaced_config_map(
        namespace, configmap("cfg", {"a": "1"}), field_manager="tester"
    )
    managers = {(m.manager, m.operation) for m in created.metadata.managed_fields}
    assert ("tester", "Update") in managers
    patched = v1.patch_namespaced_config_map(
        "cfg", namespace, {"data": {"b": "2"}}, field_manager="other"
    )
    assert {m.manager for m in patched.metadata.managed_fields} == {"tester", "other"}


def test_label_and_field_selectors_pick_the_right_objects(
    api: client.ApiClient, namespace: str
) -> None:
    v1 = client.CoreV1Api(api)
    for name, labels in [
        ("a", {"tier": "web", "env": "prod"}),
        ("b", {"tier": "db", "env": "prod"}),
        ("c", {"tier": "web"}),
    ]:
        v1.create_namespaced_config_map(namespace, configmap(name, labels=labels))

    def names(**kwargs: str) -> list[str]:
        # `!=` and `!key` also match objects without the label, kube-root-ca.crt among them
        return without_published(
            sorted(
                o.metadata.name for o in v1.list_namespaced_config_map(namespace, **kwargs).items
            )
        )

    assert names(label_selector="tier=web") == ["a", "c"]
    assert names(label_selector="tier==web,env=prod") == ["a"]
    assert names(label_selector="tier!=web") == ["b"]
    assert names(label_selector="tier in (db, web),env") == ["a", "b"]
    assert names(label_selector="tier notin (web)") == ["b"]
    assert names(label_selector="!env") == ["c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b", label_selector="tier") == ["a", "c"]
    assert names(field_selector=f"metadata.namespace={namespace}", label_selector="tier") == [
        "a",
        "b",
        "c",
    ]


def test_a_bad_selector_is_a_bad_request(api: client.ApiClient, namespace: str) -> None:
    v1 = client.CoreV1Api(api)
    with pytest.raises(client.ApiException) as err:
        v1.list_namespaced_config_map(namespace, field_selector="data.a=1")
    assert err.value.status == 400
    with pytest.raises(client.ApiException) as err:
        v1.list_namespaced_config_map(namespace, label_selector="a in (b")
    assert err.value.status == 400


def test_limit_and_continue_page_through_a_list(api: client.ApiClient, namespace: str) -> None:
    v1 = client.CoreV1Api(api)
    for i in range(7):
        v1.create_namespaced_config_map(namespace, configmap(f"cm-{i}", labels={"page": "yes"}))
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = v1.list_namespaced_config_map(
            namespace, label_selector="page", limit=3, _continue=token
        )
        pages += 1
        seen += [o.metadata.name for o in page.items]
        token = page.metadata._continue
        if not token:
            break
        # kube-apiserver does not count what a selector would have to filter
        assert page.metadata.remaining_item_count is None
    assert pages == 3
    assert seen == [f"cm-{i}" for i in range(7)]

    # Unfiltered, the count is there: every ConfigMap of the namespace (kube-root-ca.crt too).
    total = len(v1.list_namespaced_config_map(namespace).items)
    first = v1.list_namespaced_config_map(namespace, limit=3)
    assert first.metadata._continue and first.metadata.remaining_item_count == total - 3


def test_dry_run_validates_without_storing(api: client.ApiClient, namespace: str) -> None:
    v1 = client.CoreV1Api(api)
    result = v1.create_namespaced_config_map(
        namespace, configmap("ghost", {"a": "1"}), dry_run="All"
    )
    assert result.metadata.name == "ghost"
    with pytest.raises(client.ApiException) as err:
        v1.read_namespaced_config_map("ghost", namespace)
    assert err.value.status == 404
    v1.create_namespaced_config_map(namespace, configmap("real", {"a": "1"}))
    v1.patch_namespaced_config_map("real", namespace, {"data": {"a": "2"}}, dry_run="All")
    v1.delete_namespaced_config_map("real", namespace, dry_run="All")
    assert v1.read_namespaced_config_map("real", namespace).data == {"a": "1"}


def test_status_subresource_is_separate_from_the_main_resource(
    api: client.ApiClient, namespace: str
) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=0))
    # The main resource ignores status; the status subresource ignores everything else.
    apps.patch_namespaced_deployment("web", namespace, {"status": {"observedGeneration": 42}})
    assert (apps.read_namespaced_deployment("web", namespace).status.observed_generation or 0) != 42
    patched = apps.patch_namespaced_deployment_status(
        "web", namespace, {"spec": {"replicas": 9}, "status": {"observedGeneration": 42}}
    )
    assert patched.status.observed_generation == 42
    assert patched.spec.replicas == 0


def test_scale_subresource_reads_and_sets_replicas(api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=0))
    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert scale.kind == "Scale" and scale.spec.replicas == 0
    assert scale.status.selector == "app=web"
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 2}})
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 2
    # The Deployment controller writes status meanwhile, so a read-modify-write may lose
    # the race with a 409, as on a real cluster; retry on conflict like kubectl does.
    for _ in range(10):
        scale = apps.read_namespaced_deployment_scale("web", namespace)
        scale.spec.replicas = 0
        try:
            replaced = apps.replace_namespaced_deployment_scale("web", namespace, scale)
            break
        except ApiException as exc:
            if exc.status != 409:
                raise
    else:
        pytest.fail("replacing the scale conflicted 10 times in a row")
    assert replaced.spec.replicas == 0


def test_the_dynamic_client_discovers_and_serves_built_in_kinds(
    api: client.ApiClient, namespace: str
) -> None:
    dyn = dynamic.DynamicClient(api)
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    cms.create(body=configmap("dyn", {"x": "y"}), namespace=namespace)
    assert cms.get(name="dyn", namespace=namespace).to_dict()["data"] == {"x": "y"}
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deployments.namespaced and "scale" in deployments.subresources
    nodes = dyn.resources.get(api_version="v1", kind="Node").get()
    assert len(nodes.items) >= 1
    listed = cms.get(namespace=namespace)
    assert without_published([i.metadata.name for i in listed.items]) == ["dyn"]


def test_the_default_namespaces_and_kubernetes_service_exist(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    names = {n.metadata.name for n in v1.list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    assert v1.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    assert client.VersionApi(api).get_code().major == "1"


def test_cluster_scoped_objects_live_outside_namespaces(api: client.ApiClient) -> None:
    rbac = client.RbacAuthorizationV1Api(api)
    name = unique_name("role")
    body = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "namespace": "ignored"},
        "rules": [],
    }
    created = rbac.create_cluster_role(body)
    try:
        assert created.metadata.namespace is None
    finally:
        rbac.delete_cluster_role(name)
