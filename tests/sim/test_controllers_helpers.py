"""Pure helpers of the simulated controllers: fault images, hashes, selectors, conditions,
the kubelet's status, endpoints and which reconcilers an event wakes."""

from __future__ import annotations

from typing import Any

import pytest

from clusters.sim import clock
from clusters.sim.clock import rfc3339
from clusters.sim.controllers._util import (
    SAFE_ALPHABET,
    go_duration,
    image_fault,
    image_tag,
    map_selects,
    normalize_image,
    pod_fault,
    prune_zero,
    selector_string,
    set_condition,
    template_hash,
)
from clusters.sim.controllers.network import endpoints_subsets
from clusters.sim.controllers.pods import pod_status
from clusters.sim.controllers.runtime import HPAS_IN, SERVICES_IN, keys_for
from clusters.sim.controllers.templates import deletion_order
from clusters.sim.defaults import qos_class
from clusters.sim.interface import ObjectEvent
from clusters.sim.store import now_iso


@pytest.mark.parametrize(
    ("image", "tag", "fault"),
    [
        ("nginx", "", None),
        ("nginx:1.25", "1.25", None),
        ("nginx:crashloop", "crashloop", "crashloop"),
        ("registry:5000/team/app:v2-crashloop", "v2-crashloop", "crashloop"),
        ("registry:5000/team/app", "", None),  # the port is not a tag
        ("busybox:fail", "fail", "fail"),
        ("busybox:will-FAIL-now", "will-FAIL-now", "fail"),
        ("failing/app:1.0", "1.0", None),  # only the tag counts
        ("app@sha256:abc", "", None),
        ("app:crashloop@sha256:abc", "crashloop", "crashloop"),
    ],
)
def test_faults_come_from_the_image_tag_only(image: str, tag: str, fault: str | None) -> None:
    assert image_tag(image) == tag
    assert image_fault(image) == fault


def test_a_crashlooping_container_wins_over_a_failing_one() -> None:
    spec = {"containers": [{"image": "a:fail"}, {"image": "b:crashloop"}, {"image": "c:1"}]}
    assert pod_fault(spec) == "crashloop"
    assert pod_fault({"containers": [{"image": "c:1"}]}) is None


@pytest.mark.parametrize(
    ("image", "full"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:1.25", "docker.io/library/nginx:1.25"),
        ("bitnami/redis:7", "docker.io/bitnami/redis:7"),
        ("ghcr.io/org/app:v1", "ghcr.io/org/app:v1"),
        ("localhost/app:v1", "localhost/app:v1"),
        ("registry:5000/app", "registry:5000/app:latest"),
    ],
)
def test_images_are_reported_fully_qualified_like_containerd_does(image: str, full: str) -> None:
    assert normalize_image(image) == full


def test_template_hashes_are_stable_safe_and_salted_by_collisions() -> None:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"image": "a"}]}}
    same = {"spec": {"containers": [{"image": "a"}]}, "metadata": {"labels": {"app": "web"}}}
    first = template_hash(template)
    assert first == template_hash(same)
    assert set(first) <= set(SAFE_ALPHABET)
    assert 1 <= len(first) <= 10
    assert template_hash(template, 1) != first
    assert template_hash({**template, "spec": {"containers": [{"image": "b"}]}}) != first


def test_an_empty_service_selector_selects_nothing() -> None:
    assert not map_selects({}, {"a": "1"})
    assert map_selects({"a": "1"}, {"a": "1", "b": "2"})


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "200ms"), (10, "10s"), (80, "1m20s"), (300, "5m0s"), (3725, "1h2m5s")],
)
def test_durations_print_like_go(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


@pytest.mark.parametrize(
    ("resources", "qos"),
    [
        ({}, "BestEffort"),
        ({"requests": {"cpu": "100m"}}, "Burstable"),
        ({"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),
        (
            {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
            "Burstable",
        ),
    ],
)
def test_qos_class_follows_requests_and_limits(resources: dict[str, Any], qos: str) -> None:
    assert qos_class({"containers": [{"resources": resources}]}) == qos


def test_setting_a_condition_keeps_its_transition_time_while_the_status_holds() -> None:
    old = [{"type": "Available", "status": "True", "reason": "A", "lastTransitionTime": "t0"}]
    same = {"type": "Available", "status": "True", "reason": "A", "lastTransitionTime": "t1"}
    assert set_condition(old, same) is old
    reworded = {"type": "Available", "status": "True", "reason": "B", "lastTransitionTime": "t1"}
    assert set_condition(old, reworded) == [{**reworded, "lastTransitionTime": "t0"}]
    flipped = {"type": "Available", "status": "False", "reason": "C", "lastTransitionTime": "t2"}
    assert set_condition(old, flipped) == [flipped]


def test_zero_counters_are_omitted_unless_the_api_always_sends_them() -> None:
    assert prune_zero({"replicas": 0, "ready": 0, "name": "x"}, keep=("replicas",)) == {
        "replicas": 0,
        "name": "x",
    }


def pod(name: str = "p", image: str = "nginx:1", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": {"app": "x"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": image}]},
        "status": status,
    }


def test_a_pending_pod_waits_for_its_container_to_be_created() -> None:
    status = pod_status(pod(), "pending", host_ip="10.0.0.2")
    assert status["phase"] == "Pending"
    assert "podIP" not in status
    (container,) = status["containerStatuses"]
    assert container["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert container["ready"] is False
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ContainersNotReady")
    assert ready["message"] == "containers with unready status: [main]"


def test_a_crashlooping_pod_reports_back_off_and_the_last_failure() -> None:
    status = pod_status(pod(), "crashloop", host_ip="10.0.0.2", restarts=3, wait=0.4)
    assert status["phase"] == "Running" and status["podIP"]
    (container,) = status["containerStatuses"]
    assert container["restartCount"] == 3
    assert container["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert container["state"]["waiting"]["message"] == (
        "back-off 400ms restarting failed container=main pod=p_ns(uid-p)"
    )
    assert container["lastState"]["terminated"]["exitCode"] == 1
    assert container["lastState"]["terminated"]["reason"] == "Error"


def test_a_running_pod_keeps_its_start_and_transition_times() -> None:
    first = pod_status(pod(), "running", host_ip="10.0.0.2")
    again = pod_status(pod(**first), "running", host_ip="10.0.0.2")
    assert again == first


def test_endpoints_split_ready_and_not_ready_pods_and_resolve_named_ports() -> None:
    svc = {
        "spec": {
            "selector": {"app": "x"},
            "ports": [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}],
        }
    }
    ready = pod("a", podIP="10.244.0.2", conditions=[{"type": "Ready", "status": "True"}])
    waiting = pod("b", podIP="10.244.0.1", conditions=[{"type": "Ready", "status": "False"}])
    for p in (ready, waiting):
        p["spec"]["containers"][0]["ports"] = [{"name": "web", "containerPort": 8080}]
    (subset,) = endpoints_subsets(svc, [ready, waiting])
    assert [a["ip"] for a in subset["addresses"]] == ["10.244.0.2"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.244.0.1"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert subset["addresses"][0]["targetRef"] == {
        "kind": "Pod",
        "namespace": "ns",
        "name": "a",
        "uid": "uid-a",
    }


def test_scale_down_removes_unready_and_newest_pods_first() -> None:
    ready_old = pod("ready-old", phase="Running", conditions=[{"type": "Ready", "status": "True"}])
    ready_old["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    ready_new = pod("ready-new", phase="Running", conditions=[{"type": "Ready", "status": "True"}])
    ready_new["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    pending = pod("pending", phase="Pending")
    order = [p["metadata"]["name"] for p in deletion_order([ready_old, ready_new, pending])]
    assert order == ["pending", "ready-new", "ready-old"]


def test_a_pod_event_wakes_the_pod_its_owner_and_the_services_of_its_namespace() -> None:
    owned = pod("web-abc")
    owned["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web",
            "uid": "u",
            "controller": True,
        }
    ]
    assert keys_for(ObjectEvent(type="MODIFIED", object=owned)) == [
        ("ReplicaSet", "ns", "web"),
        ("Pod", "ns", "web-abc"),
        (SERVICES_IN, "ns", ""),
    ]


def test_a_replicaset_event_wakes_its_deployment_and_the_hpas() -> None:
    rs = {
        "kind": "ReplicaSet",
        "metadata": {
            "name": "web-1",
            "namespace": "ns",
            "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": True}],
        },
    }
    assert keys_for(ObjectEvent(type="MODIFIED", object=rs)) == [
        ("Deployment", "ns", "web"),
        ("ReplicaSet", "ns", "web-1"),
        (HPAS_IN, "ns", ""),
    ]


def test_kinds_no_controller_owns_wake_nothing() -> None:
    cm = {"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}}
    assert keys_for(ObjectEvent(type="ADDED", object=cm)) == []


@pytest.mark.parametrize(
    ("selector", "text"),
    [
        (None, ""),
        ({}, ""),
        ({"app": "web", "tier": "front"}, "app=web,tier=front"),  # a Service's plain map
        ({"matchLabels": {"b": "2", "a": "1"}}, "a=1,b=2"),
        (
            {
                "matchLabels": {"app": "x"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                    {"key": "tier", "operator": "NotIn", "values": ["db"]},
                    {"key": "canary", "operator": "Exists"},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ],
            },
            "app=x,env in (dev,prod),tier notin (db),canary,!legacy",
        ),
    ],
)
def test_selectors_become_the_list_apis_string_form(selector: Any, text: str) -> None:
    assert selector_string(selector) == text


def test_selector_strings_parse_back_to_the_same_matches() -> None:
    from clusters.sim.selectors import parse_label_selector

    selector = {
        "matchLabels": {"app": "x"},
        "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}],
    }
    parsed = parse_label_selector(selector_string(selector))
    assert parsed.matches({"app": "x", "env": "dev"})
    assert not parsed.matches({"app": "x", "env": "test"})
    assert not parsed.matches({"env": "dev"})


@pytest.mark.parametrize(
    ("epochs", "texts"),
    [
        ((0.0, 0.999, 1.0), ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "1970-01-01T00:00:01Z")),
        ((1_764_892_799.5, 1_764_892_800.0, 1_764_892_799.0),
         ("2025-12-04T23:59:59Z", "2025-12-05T00:00:00Z", "2025-12-04T23:59:59Z")),
    ],
)  # fmt: skip
def test_timestamps_are_whole_seconds_whichever_second_came_before(
    epochs: tuple[float, ...], texts: tuple[str, ...]
) -> None:
    """rfc3339 keeps the text of the last second it formatted: a later call for another
    second (later or earlier) must not be answered from it."""
    assert tuple(rfc3339(e) for e in epochs) == texts


def test_now_is_stamped_in_the_current_second(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([100.2, 100.7, 101.1])
    monkeypatch.setattr(clock.time, "time", lambda: next(ticks))
    assert [now_iso(), now_iso(), now_iso()] == [
        "1970-01-01T00:01:40Z",
        "1970-01-01T00:01:40Z",
        "1970-01-01T00:01:41Z",
    ]


def test_a_deployment_pass_models_each_replica_set_version_once() -> None:
    from clusters.sim.controllers.deployments import _Sync
    from clusters.sim.controllers.runtime import Runtime
    from clusters.sim.objectapi import StoreObjectAPI
    from clusters.sim.store import ClusterStore

    def rs(name: str, replicas: int) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas, "availableReplicas": replicas},
        }

    d = {"metadata": {"name": "web"}, "spec": {"replicas": 2, "template": {}}}
    first = rs("web-a", 1)
    runtime = Runtime(StoreObjectAPI(ClusterStore("c")), ready_delay=0, handlers={})
    sync = _Sync(runtime, d, [first])
    assert sync.model(first) is sync.model(first)
    scaled = rs("web-a", 2)  # the version a scale stores: another object, another model
    assert (sync.model(first).replicas, sync.model(scaled).replicas) == (1, 2)
    assert sync.model(scaled).available == 2


def test_the_template_hash_is_computed_once_per_template_object() -> None:
    from clusters.sim.controllers import deployments

    template = {"spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}
    assert deployments._hash_of(template, 0) == template_hash(template, 0)
    assert deployments._hash_of(template, 1) == template_hash(template, 1)  # a collision
    assert deployments._HASHES[id(template)] == (template, 1, template_hash(template, 1))
    other = {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}
    assert deployments._hash_of(other, 0) == template_hash(other, 0) != template_hash(template, 0)
    for n in range(deployments._HASHES_KEPT + 5):
        deployments._hash_of({"n": n}, 0)
    assert len(deployments._HASHES) == deployments._HASHES_KEPT  # bounded: oldest go first
    assert id(template) not in deployments._HASHES


def test_a_label_selector_is_parsed_once_and_a_bad_one_refused_every_time() -> None:
    from clusters.sim.selectors import SelectorError, parse_label_selector

    assert parse_label_selector("app=web,tier!=db") is parse_label_selector("app=web,tier!=db")
    assert parse_label_selector("app=web").matches({"app": "web"})
    for _ in range(2):
        with pytest.raises(SelectorError):
            parse_label_selector("app in (web")
