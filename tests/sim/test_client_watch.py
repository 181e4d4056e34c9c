"""watch.Watch against the cluster: ordering, resuming from a version, 410, selectors, bookmarks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config, watch

from clusters.sim import SimServer
from tests.conftest import KubeEnv
from tests.sim.helpers import configmap, raw_request

pytestmark = pytest.mark.e2e


@pytest.fixture
def api(kube: KubeEnv) -> Iterator[client.ApiClient]:
    api_client = kube.api_client()
    yield api_client
    api_client.close()


def _events(
    v1: client.CoreV1Api, namespace: str, rv: str, count: int, **kwargs: Any
) -> list[tuple[str, str, str]]:
    w = watch.Watch()
    seen: list[tuple[str, str, str]] = []
    for event in w.stream(
        v1.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=10, **kwargs
    ):
        obj = event["object"]
        seen.append((event["type"], obj.metadata.name, (obj.data or {}).get("v", "")))
        if len(seen) >= count:
            w.stop()
    return seen


def test_a_watch_from_a_version_sees_every_later_change_in_order(
    api: client.ApiClient, namespace: str
) -> None:
    v1 = client.CoreV1Api(api)
    start = v1.list_namespaced_config_map(namespace).metadata.resource_version
    v1.create_namespaced_config_map(namespace, configmap("a", {"v": "1"}))
    v1.create_namespaced_config_map(namespace, configmap("b", {"v": "1"}))
    for i in range(2, 6):
        v1.patch_namespaced_config_map("a", namespace, {"data": {"v": str(i)}})
    v1.delete_namespaced_config_map("b", namespace)
    expected = [("ADDED", "a", "1"), ("ADDED", "b", "1")]
    expected += [("MODIFIED", "a", str(i)) for i in range(2, 6)]
    expected += [("DELETED", "b", "1")]
    assert _events(v1, namespace, start, len(expected)) == expected


def test_a_watch_streams_changes_made_while_it_is_open(
    api: client.ApiClient, namespace: str
) -> None:
    v1 = client.CoreV1Api(api)
    start = v1.list_namespaced_config_map(namespace).metadata.resource_version

    def writer() -> None:
        for i in range(5):
            v1.create_namespaced_config_map(namespace, configmap(f"live-{i}", {"v": str(i)}))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = _events(v1, namespace, start, 5)
    finally:
        thread.join()
    assert seen == [("ADDED", f"live-{i}", str(i)) for i in range(5)]


def test_a_label_selected_watch_reports_objects_leaving_the_selection_as_deleted(
    api: client.ApiClient, namespace: str
) -> None:
    v1 = client.CoreV1Api(api)
    start = v1.list_namespaced_config_map(namespace).metadata.resource_version
    v1.create_namespaced_config_map(namespace, configmap("x", {"v": "1"}, labels={"pick": "yes"}))
    v1.create_namespaced_config_map(namespace, configmap("y", {"v": "1"}))
    v1.patch_namespaced_config_map("x", namespace, {"metadata": {"labels": {"pick": "no"}}})
    seen = _events(v1, namespace, start, 2, label_selector="pick=yes")
    assert seen == [("ADDED", "x", "1"), ("DELETED", "x", "1")]


def test_a_watch_without_a_version_starts_with_the_current_objects(
    api: client.ApiClient, namespace: str
) -> None:
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_config_map(namespace, configmap("there", {"v": "1"}))
    w = watch.Watch()
    seen = []
    for event in w.stream(v1.list_namespaced_config_map, namespace, timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if seen[-1][1] == "there":
            break
    w.stop()
    # one synthetic ADDED per object already there (kube-root-ca.crt is in every namespace)
    assert ("ADDED", "there") in seen and {t for t, _ in seen} == {"ADDED"}


def test_timeout_seconds_ends_the_stream(api: client.ApiClient, namespace: str) -> None:
    v1 = client.CoreV1Api(api)
    rv = v1.list_namespaced_config_map(namespace).metadata.resource_version
    events = list(
        watch.Watch().stream(
            v1.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=1
        )
    )
    assert events == []


@pytest.mark.sim_only("compacts the watch history on demand")
def test_a_watch_from_a_compacted_version_gets_410_gone(
    sim: SimServer, api: client.ApiClient, namespace: str
) -> None:
    v1 = client.CoreV1Api(api)
    old = v1.create_namespaced_config_map(namespace, configmap("old")).metadata.resource_version
    v1.patch_namespaced_config_map("old", namespace, {"data": {"v": "2"}})
    sim.compact(sim.cluster_names[0])
    with pytest.raises(client.ApiException) as err:
        list(
            watch.Watch().stream(
                v1.list_namespaced_config_map, namespace, resource_version=old, timeout_seconds=5
            )
        )
    assert err.value.status == 410
    # The raw stream says so the way kube-apiserver does: a 200 with one ERROR event.
    resp = raw_request(
        api, "GET", f"/api/v1/namespaces/{namespace}/configmaps?watch=1&resourceVersion={old}"
    )
    assert resp.status == 200
    event = json.loads(resp.body.splitlines()[0])
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"


def test_an_old_version_falls_out_of_a_short_history(sim_factory: Any) -> None:
    server = sim_factory(clusters=1, controllers=False, watch_history=5)
    api = config.new_client_from_config(config_file=str(server.kubeconfig_path))
    try:
        v1 = client.CoreV1Api(api)
        rv = v1.create_namespaced_config_map("default", configmap("c")).metadata.resource_version
        for i in range(10):
            v1.patch_namespaced_config_map("c", "default", {"data": {"v": str(i)}})
        with pytest.raises(client.ApiException) as err:
            list(
                watch.Watch().stream(
                    v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=5
                )
            )
        assert err.value.status == 410
    finally:
        api.close()


def test_bookmarks_carry_the_current_version(sim_factory: Any) -> None:
    server = sim_factory(clusters=1, controllers=False, bookmark_interval=0.2)
    api = config.new_client_from_config(config_file=str(server.kubeconfig_path))
    try:
        v1 = client.CoreV1Api(api)
        rv = v1.list_namespaced_config_map("default").metadata.resource_version
        resp = raw_request(
            api,
            "GET",
            f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=1",
        )
        events = [json.loads(line) for line in resp.body.splitlines()]
        # one every 0.2 s of the 1 s stream: the stream's timer is armed again after each
        assert len(events) >= 2 and all(e["type"] == "BOOKMARK" for e in events)
        assert events[0]["object"]["metadata"]["resourceVersion"] == rv
    finally:
        api.close()
