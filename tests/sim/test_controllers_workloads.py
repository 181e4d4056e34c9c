"""The simulated controllers move workloads to their real status, seen through the official
``kubernetes`` client against a running ``hub sim``: Deployments (rollouts, crash loops,
scaling, pause), ReplicaSets, StatefulSets, DaemonSets and HPAs."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clusters.sim import SimServer

pytestmark = pytest.mark.sim_only("needs the simulated controllers")

READY_DELAY = 0.1


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """An ApiClient for a private one-cluster sim with a short ready delay."""
    if os.environ.get("HUB_E2E_KUBECONFIG"):
        pytest.skip("needs the simulated controllers")
    from kubernetes import config

    with SimServer(clusters=["ctl"], ready_delay=READY_DELAY) as sim:
        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(sim.kubeconfig_path), context="ctl"
        )
        try:
            yield api
        finally:
            api.close()


@pytest.fixture
def ns(cluster: Any) -> str:
    name = f"ctl-{uuid.uuid4().hex[:8]}"
    k8s(cluster, "CoreV1Api").create_namespace(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    return name


def k8s(cluster: Any, group: str) -> Any:
    """One of the official client's typed API groups (``"AppsV1Api"``), fed plain manifests."""
    from kubernetes import client

    return getattr(client, group)(cluster)


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll until ``probe`` returns something truthy; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.03)
    pytest.fail(f"timed out waiting for {what}; last: {last!r}")


def raw(cluster: Any, path: str) -> Any:
    """GET a path and return the JSON as the server sent it (zero fields stay absent)."""
    import json

    method, url, headers, _, _ = cluster.param_serialize(
        "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
    )
    response = cluster.call_api(method, url, headers)
    return json.loads(response.read())


def deployment(
    name: str, image: str = "nginx:1.25", replicas: int = 3, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
            **spec,
        },
    }


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return {}


def get_deploy(cluster: Any, ns: str, name: str) -> dict[str, Any]:
    return raw(cluster, f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")  # type: ignore[no-any-return]


def rollout_done(d: dict[str, Any]) -> bool:
    """kubectl rollout status's rule, plus observedGeneration caught up."""
    status = d.get("status") or {}
    want = d["spec"]["replicas"]
    return (
        status.get("observedGeneration") == d["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == want
        and status.get("replicas", 0) == want
        and status.get("availableReplicas", 0) == want
        and condition(d, "Progressing").get("reason") == "NewReplicaSetAvailable"
    )


def pods_of(cluster: Any, ns: str, selector: str) -> list[dict[str, Any]]:
    items = k8s(cluster, "CoreV1Api").list_namespaced_pod(ns, label_selector=selector).items
    return [cluster.sanitize_for_serialization(p) for p in items]


def replicasets(cluster: Any, ns: str) -> list[dict[str, Any]]:
    return raw(cluster, f"/apis/apps/v1/namespaces/{ns}/replicasets")["items"]  # type: ignore[no-any-return]


# --- Deployments -----------------------------------------------------------------------


def test_a_deployment_becomes_available_with_the_status_fields_of_a_real_cluster(
    cluster: Any, ns: str
) -> None:
    k8s(cluster, "AppsV1Api").create_namespaced_deployment(ns, deployment("web"))
    d = wait_for(
        "web to roll out", lambda: (d := get_deploy(cluster, ns, "web")) and rollout_done(d) and d
    )

    status = d["status"]
    assert status["readyReplicas"] == 3
    assert "unavailableReplicas" not in status  # omitempty, as a real server sends it
    available = condition(d, "Available")
    assert (available["status"], available["reason"]) == ("True", "MinimumReplicasAvailable")
    assert available["message"] == "Deployment has minimum availability."
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"

    (rs,) = replicasets(cluster, ns)
    template_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{template_hash}"
    assert rs["spec"]["selector"]["matchLabels"] == {
        "app": "web",
        "pod-template-hash": template_hash,
    }
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == template_hash
    owner = rs["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Deployment", "web", True)
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "3"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "4"
    assert rs["status"] == {
        "replicas": 3,
        "fullyLabeledReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
        "observedGeneration": 1,
    }

    pods = pods_of(cluster, ns, "app=web")
    assert len(pods) == 3
    for pod in pods:
        assert pod["metadata"]["name"].startswith(f"web-{template_hash}-")
        assert len(pod["metadata"]["name"]) == len(f"web-{template_hash}-") + 5
        assert pod["metadata"]["ownerReferences"][0]["name"] == rs["metadata"]["name"]
        assert pod["spec"]["nodeName"] == "ctl-node"  # the server's one Node
        status = pod["status"]
        assert status["phase"] == "Running"
        assert status["podIP"] and status["hostIP"]
        assert {c["type"]: c["status"] for c in status["conditions"]} == {
            "PodReadyToStartContainers": "True",
            "Initialized": "True",
            "Ready": "True",
            "ContainersReady": "True",
            "PodScheduled": "True",
        }
        (container,) = status["containerStatuses"]
        assert container["ready"] and container["started"]
        assert container["restartCount"] == 0
        assert container["state"]["running"]["startedAt"]
        assert container["imageID"].startswith("docker.io/library/nginx@sha256:")
        assert container["containerID"].startswith("containerd://")


def test_a_rolling_update_moves_every_replica_to_a_new_replicaset(cluster: Any, ns: str) -> None:
    apps = k8s(cluster, "AppsV1Api")
    apps.create_namespaced_deployment(ns, deployment("web", replicas=4))
    wait_for("first rollout", lambda: rollout_done(get_deploy(cluster, ns, "web")))
    (first,) = replicasets(cluster, ns)

    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]}}}
    }
    apps.patch_namespaced_deployment("web", ns, patch)
    seen_generations: list[tuple[int, int]] = []

    def done() -> dict[str, Any] | None:
        d = get_deploy(cluster, ns, "web")
        seen_generations.append(
            (d["metadata"]["generation"], (d.get("status") or {}).get("observedGeneration", 0))
        )
        return d if d["metadata"]["generation"] == 2 and rollout_done(d) else None

    d = wait_for("second rollout", done)
    assert all(observed <= generation for generation, observed in seen_generations)
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    by_name = {rs["metadata"]["name"]: rs for rs in replicasets(cluster, ns)}
    old = by_name.pop(first["metadata"]["name"])
    (new,) = by_name.values()
    assert old["spec"]["replicas"] == 0 and old["status"]["replicas"] == 0
    assert new["spec"]["replicas"] == 4
    assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    images = {p["spec"]["containers"][0]["image"] for p in pods_of(cluster, ns, "app=web")}
    assert images == {"nginx:1.27"}


def test_observed_generation_catches_up_only_once_the_new_replicaset_exists(
    cluster: Any, ns: str
) -> None:
    from kubernetes import watch

    apps = k8s(cluster, "AppsV1Api")
    apps.create_namespaced_deployment(ns, deployment("web", replicas=2))
    wait_for("first rollout", lambda: rollout_done(get_deploy(cluster, ns, "web")))
    start = get_deploy(cluster, ns, "web")["metadata"]["resourceVersion"]
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]}}}
    }
    apps.patch_namespaced_deployment("web", ns, patch)

    seen: list[dict[str, Any]] = []
    watcher: Any = watch.Watch()  # type: ignore[no-untyped-call]
    stream = watcher.stream(
        apps.list_namespaced_deployment, ns, resource_version=start, timeout_seconds=10
    )
    for event in stream:
        d = cluster.sanitize_for_serialization(event["object"])
        seen.append(d)
        if d["metadata"]["generation"] == 2 and rollout_done(d):
            break
    assert seen and rollout_done(seen[-1])
    for d in seen:
        assert d["status"].get("observedGeneration", 0) <= d["metadata"]["generation"]
    first_caught_up = next(d for d in seen if d["status"]["observedGeneration"] == 2)
    new_rs = next(
        rs["metadata"]["name"]
        for rs in replicasets(cluster, ns)
        if rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    )
    # the status that first claims generation 2 already speaks of the new ReplicaSet
    assert new_rs in condition(first_caught_up, "Progressing")["message"]
    assert first_caught_up["status"].get("updatedReplicas", 0) < 2


def argo_health(d: dict[str, Any]) -> str:
    """Argo CD's Deployment health rule (shared/spec/sync-semantics.md section 3)."""
    spec, status = d["spec"], d.get("status") or {}
    if spec.get("paused"):
        return "Suspended"
    if d["metadata"]["generation"] > status.get("observedGeneration", 0):
        return "Progressing"
    if condition(d, "Progressing").get("reason") == "ProgressDeadlineExceeded":
        return "Degraded"
    updated = status.get("updatedReplicas", 0)
    if updated < spec.get("replicas", 1) or status.get("replicas", 0) > updated:
        return "Progressing"
    if status.get("availableReplicas", 0) < updated:
        return "Progressing"
    return "Healthy"


@pytest.mark.parametrize(
    ("image", "verdict"), [("nginx:1.27", "Healthy"), ("nginx:crashloop", "Degraded")]
)
def test_argo_health_rules_read_a_rollout_from_progressing_to_its_verdict(
    cluster: Any, ns: str, image: str, verdict: str
) -> None:
    from kubernetes import watch

    apps = k8s(cluster, "AppsV1Api")
    apps.create_namespaced_deployment(ns, deployment("web", replicas=3, progressDeadlineSeconds=2))
    wait_for("first rollout", lambda: rollout_done(get_deploy(cluster, ns, "web")))
    start = get_deploy(cluster, ns, "web")["metadata"]["resourceVersion"]
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}}
    apps.patch_namespaced_deployment("web", ns, patch)

    verdicts: list[str] = []
    watcher: Any = watch.Watch()  # type: ignore[no-untyped-call]
    for event in watcher.stream(
        apps.list_namespaced_deployment, ns, resource_version=start, timeout_seconds=15
    ):
        health = argo_health(cluster.sanitize_for_serialization(event["object"]))
        if not verdicts or verdicts[-1] != health:
            verdicts.append(health)
        if health == verdict:
            watcher.stop()
    # never a premature verdict, never back: Progressing until the end
    assert verdicts == ["Progressing", verdict]
    if verdict == "Healthy":
        images = {p["spec"]["containers"][0]["image"] for p in pods_of(cluster, ns, "app=web")}
        assert images == {image}


def test_a_crashlooping_image_keeps_the_old_pods_serving_and_exceeds_the_progress_deadline(
    cluster: Any, ns: str
) -> None:
    apps = k8s(cluster, "AppsV1Api")
    apps.create_namespaced_deployment(ns, deployment("web", replicas=3, progressDeadlineSeconds=2))
    wait_for("first rollout", lambda: rollout_done(get_deploy(cluster, ns, "web")))
    (first,) = replicasets(cluster, ns)
    old_hash = first["metadata"]["labels"]["pod-template-hash"]

    patch = {
        "spec": {
            "template": {"spec": {"containers": [{"name": "main", "image": "nginx:crashloop"}]}}
        }
    }
    apps.patch_namespaced_deployment("web", ns, patch)
    d = wait_for(
        "ProgressDeadlineExceeded",
        lambda: (
            (d := get_deploy(cluster, ns, "web"))
            and condition(d, "Progressing").get("reason") == "ProgressDeadlineExceeded"
            and d
        ),
        timeout=15,
    )
    progressing = condition(d, "Progressing")
    assert progressing["status"] == "False"
    assert progressing["message"].endswith("has timed out progressing.")
    assert d["status"]["observedGeneration"] == d["metadata"]["generation"]
    assert d["status"]["availableReplicas"] == 3
    assert condition(d, "Available")["status"] == "True"

    old_pods = pods_of(cluster, ns, f"pod-template-hash={old_hash}")
    assert len(old_pods) == 3
    assert all(p["status"]["phase"] == "Running" for p in old_pods)
    new_pods = [p for p in pods_of(cluster, ns, "app=web") if p not in old_pods]
    assert len(new_pods) == 1  # maxSurge 25% of 3 rounds up to 1; maxUnavailable rounds to 0

    def crashing() -> dict[str, Any] | None:
        (pod,) = [
            p
            for p in pods_of(cluster, ns, "app=web")
            if p["metadata"]["labels"]["pod-template-hash"] != old_hash
        ]
        container = pod["status"]["containerStatuses"][0]
        return container if container["restartCount"] >= 2 else None

    container = wait_for("restarts to grow", crashing)
    assert container["ready"] is False
    waiting = container["state"]["waiting"]
    assert waiting["reason"] == "CrashLoopBackOff"
    assert waiting["message"].startswith("back-off ")
    assert "restarting failed container=main" in waiting["message"]
    assert container["lastState"]["terminated"]["exitCode"] == 1
    assert container["lastState"]["terminated"]["reason"] == "Error"

    # Scaling the stuck Deployment to 6 shares the new replicas out in proportion (old 6,
    # new 2); the rolling update then trades one old pod for a new one, as maxUnavailable
    # (25% of 6 = 1) allows: old 5, new 3, still available.
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 6}})

    def sizes() -> dict[str, int]:
        return {
            rs["metadata"]["labels"]["pod-template-hash"]: rs["spec"]["replicas"]
            for rs in replicasets(cluster, ns)
        }

    final = wait_for("new 3", lambda: sorted((got := sizes()).values()) == [3, 5] and got)
    assert final[old_hash] == 5
    d = wait_for(
        "5 available",
        lambda: (d := get_deploy(cluster, ns, "web"))["status"].get("availableReplicas") == 5 and d,
    )
    assert condition(d, "Available")["status"] == "True"


@pytest.mark.parametrize(("start", "to"), [(2, 5), (5, 1)])
def test_scaling_a_deployment_adds_or_removes_pods(
    cluster: Any, ns: str, start: int, to: int
) -> None:
    apps = k8s(cluster, "AppsV1Api")
    apps.create_namespaced_deployment(ns, deployment("web", replicas=start))
    wait_for("first rollout", lambda: rollout_done(get_deploy(cluster, ns, "web")))
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": to}})
    d = wait_for(
        f"{to} replicas",
        lambda: (
            (d := get_deploy(cluster, ns, "web"))
            and d["metadata"]["generation"] == 2
            and rollout_done(d)
            and d
        ),
    )
    assert d["status"]["readyReplicas"] == to
    wait_for(f"{to} pods", lambda: len(pods_of(cluster, ns, "app=web")) == to)
    assert len(replicasets(cluster, ns)) == 1


def test_recreate_scales_the_old_replicaset_to_zero_before_creating_the_new_one(
    cluster: Any, ns: str
) -> None:
    apps = k8s(cluster, "AppsV1Api")
    apps.create_namespaced_deployment(
        ns, deployment("web", replicas=2, strategy={"type": "Recreate"})
    )
    wait_for("first rollout", lambda: rollout_done(get_deploy(cluster, ns, "web")))
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]}}}
    }
    apps.patch_namespaced_deployment("web", ns, patch)
    mixed: list[set[str]] = []

    def done() -> bool:
        images = {p["spec"]["containers"][0]["image"] for p in pods_of(cluster, ns, "app=web")}
        mixed.append(images)
        d = get_deploy(cluster, ns, "web")
        return d["metadata"]["generation"] == 2 and rollout_done(d)

    wait_for("recreate rollout", done)
    assert not any(len(images) > 1 for images in mixed)


def test_a_paused_deployment_does_not_roll_out_and_says_so(cluster: Any, ns: str) -> None:
    apps = k8s(cluster, "AppsV1Api")
    apps.create_namespaced_deployment(ns, deployment("web", replicas=1))
    wait_for("first rollout", lambda: rollout_done(get_deploy(cluster, ns, "web")))
    apps.patch_namespaced_deployment("web", ns, {"spec": {"paused": True}})
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]}}}
    }
    apps.patch_namespaced_deployment("web", ns, patch)
    d = wait_for(
        "paused condition",
        lambda: (
            (d := get_deploy(cluster, ns, "web"))
            and d["status"].get("observedGeneration") == d["metadata"]["generation"]
            and condition(d, "Progressing").get("reason") == "DeploymentPaused"
            and d
        ),
    )
    assert condition(d, "Progressing")["status"] == "Unknown"
    assert len(replicasets(cluster, ns)) == 1

    apps.patch_namespaced_deployment("web", ns, {"spec": {"paused": False}})
    wait_for(
        "rollout after resume",
        lambda: (
            (d := get_deploy(cluster, ns, "web"))
            and rollout_done(d)
            and len(replicasets(cluster, ns)) == 2
        ),
    )


def test_revision_history_limit_prunes_old_replicasets(cluster: Any, ns: str) -> None:
    apps = k8s(cluster, "AppsV1Api")
    apps.create_namespaced_deployment(ns, deployment("web", replicas=1, revisionHistoryLimit=1))
    for tag in ("1.25", "1.26", "1.27"):
        patch = {
            "spec": {
                "template": {"spec": {"containers": [{"name": "main", "image": f"nginx:{tag}"}]}}
            }
        }
        apps.patch_namespaced_deployment("web", ns, patch)
        wait_for(f"rollout of {tag}", lambda: rollout_done(get_deploy(cluster, ns, "web")))
    wait_for("history pruned to 1 old ReplicaSet", lambda: len(replicasets(cluster, ns)) == 2)
    revisions = sorted(
        int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
        for rs in replicasets(cluster, ns)
    )
    assert revisions == [2, 3]


def test_a_standalone_replicaset_reports_its_pods(cluster: Any, ns: str) -> None:
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "solo"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "solo"}},
            "template": {
                "metadata": {"labels": {"app": "solo"}},
                "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
            },
        },
    }
    k8s(cluster, "AppsV1Api").create_namespaced_replica_set(ns, rs)
    status = wait_for(
        "solo ready",
        lambda: (
            (s := raw(cluster, f"/apis/apps/v1/namespaces/{ns}/replicasets/solo")["status"]).get(
                "availableReplicas"
            )
            == 2
            and s
        ),
    )
    assert status == {
        "replicas": 2,
        "fullyLabeledReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "observedGeneration": 1,
    }


# --- StatefulSets, DaemonSets, HPAs ----------------------------------------------------


@pytest.mark.parametrize("policy", ["OrderedReady", "Parallel"])
def test_a_statefulset_creates_numbered_pods_and_claims(cluster: Any, ns: str, policy: str) -> None:
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 3,
            "serviceName": "db",
            "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "containers": [
                        {
                            "name": "db",
                            "image": "postgres:16",
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ]
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }
    k8s(cluster, "AppsV1Api").create_namespaced_stateful_set(ns, sts)
    created_order: list[str] = []

    def ready() -> dict[str, Any] | None:
        for pod in pods_of(cluster, ns, "app=db"):
            if pod["metadata"]["name"] not in created_order:
                created_order.append(pod["metadata"]["name"])
        s = raw(cluster, f"/apis/apps/v1/namespaces/{ns}/statefulsets/db")
        return s if (s.get("status") or {}).get("availableReplicas") == 3 else None

    s = wait_for("db ready", ready)
    status = s["status"]
    assert status["replicas"] == 3 and status["readyReplicas"] == 3
    assert status["currentReplicas"] == 3 and status["updatedReplicas"] == 3
    assert status["currentRevision"] == status["updateRevision"]
    assert status["updateRevision"].startswith("db-")
    assert status["observedGeneration"] == 1
    assert status["collisionCount"] == 0
    assert sorted(created_order) == ["db-0", "db-1", "db-2"]
    if policy == "OrderedReady":
        assert created_order == ["db-0", "db-1", "db-2"]
    pod = next(p for p in pods_of(cluster, ns, "app=db") if p["metadata"]["name"] == "db-1")
    assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-1"
    assert pod["metadata"]["labels"]["controller-revision-hash"] == status["updateRevision"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-1"}} in pod["spec"][
        "volumes"
    ]
    claims = raw(cluster, f"/api/v1/namespaces/{ns}/persistentvolumeclaims")["items"]
    assert sorted(c["metadata"]["name"] for c in claims) == ["data-db-0", "data-db-1", "data-db-2"]
    wait_for(
        "claims bound",
        lambda: all(
            c["status"].get("phase") == "Bound"
            for c in raw(cluster, f"/api/v1/namespaces/{ns}/persistentvolumeclaims")["items"]
        ),
    )


def test_a_statefulset_rolling_update_ends_with_one_revision(cluster: Any, ns: str) -> None:
    apps = k8s(cluster, "AppsV1Api")
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "kv"},
        "spec": {
            "replicas": 2,
            "serviceName": "kv",
            "selector": {"matchLabels": {"app": "kv"}},
            "template": {
                "metadata": {"labels": {"app": "kv"}},
                "spec": {"containers": [{"name": "kv", "image": "redis:7.0"}]},
            },
        },
    }
    apps.create_namespaced_stateful_set(ns, sts)
    path = f"/apis/apps/v1/namespaces/{ns}/statefulsets/kv"
    wait_for("kv ready", lambda: raw(cluster, path).get("status", {}).get("availableReplicas") == 2)
    first = raw(cluster, path)["status"]["updateRevision"]
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "kv", "image": "redis:7.2"}]}}}}
    apps.patch_namespaced_stateful_set("kv", ns, patch)
    status = wait_for(
        "kv updated",
        lambda: (
            (s := raw(cluster, path)["status"])
            and s.get("observedGeneration") == 2
            and s.get("updatedReplicas") == 2
            and s.get("readyReplicas") == 2
            and s["currentRevision"] == s["updateRevision"]
            and s
        ),
    )
    assert status["updateRevision"] != first
    images = {p["spec"]["containers"][0]["image"] for p in pods_of(cluster, ns, "app=kv")}
    assert images == {"redis:7.2"}
    revisions = raw(cluster, f"/apis/apps/v1/namespaces/{ns}/controllerrevisions")["items"]
    numbered = {r["metadata"]["name"]: r["revision"] for r in revisions}
    assert numbered == {first: 1, status["updateRevision"]: 2}
    latest = next(r for r in revisions if r["revision"] == 2)
    assert latest["data"]["spec"]["template"]["spec"]["containers"][0]["image"] == "redis:7.2"
    assert latest["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"


def test_a_daemonset_runs_one_pod_per_node(cluster: Any, ns: str) -> None:
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": "fluent-bit:3.0"}]},
            },
        },
    }
    k8s(cluster, "AppsV1Api").create_namespaced_daemon_set(ns, ds)
    path = f"/apis/apps/v1/namespaces/{ns}/daemonsets/agent"
    status = wait_for(
        "agent available",
        lambda: (s := raw(cluster, path).get("status") or {}).get("numberAvailable") and s,
    )
    nodes = k8s(cluster, "CoreV1Api").list_node().items
    assert status == {
        "currentNumberScheduled": len(nodes),
        "numberMisscheduled": 0,
        "desiredNumberScheduled": len(nodes),
        "numberReady": len(nodes),
        "observedGeneration": 1,
        "updatedNumberScheduled": len(nodes),
        "numberAvailable": len(nodes),
    }
    pods = pods_of(cluster, ns, "app=agent")
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(n.metadata.name for n in nodes)


def hpa(name: str, target: str, low: int, high: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                }
            ],
        },
    }


def test_an_hpa_reports_status_and_scales_a_target_below_its_minimum(cluster: Any, ns: str) -> None:
    k8s(cluster, "AppsV1Api").create_namespaced_deployment(ns, deployment("web", replicas=1))
    k8s(cluster, "AutoscalingV2Api").create_namespaced_horizontal_pod_autoscaler(
        ns, hpa("web", "web", 2, 5)
    )
    path = f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/web"
    wait_for(
        "web scaled to 2 and rolled out",
        lambda: (d := get_deploy(cluster, ns, "web"))["spec"]["replicas"] == 2 and rollout_done(d),
    )
    status = wait_for(
        "settled HPA status",
        lambda: (
            (s := raw(cluster, path).get("status") or {}).get("currentReplicas") == 2
            and condition({"status": s}, "AbleToScale").get("reason") == "ReadyForNewScale"
            and s
        ),
    )
    assert status["desiredReplicas"] == 2
    assert "lastScaleTime" in status
    conds = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conds == {
        "AbleToScale": ("True", "ReadyForNewScale"),
        "ScalingActive": ("True", "ValidMetricFound"),
        "ScalingLimited": ("False", "DesiredWithinRange"),
    }


def test_an_hpa_without_its_target_cannot_get_the_scale(cluster: Any, ns: str) -> None:
    k8s(cluster, "AutoscalingV2Api").create_namespaced_horizontal_pod_autoscaler(
        ns, hpa("lost", "nowhere", 1, 3)
    )
    path = f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/lost"
    status = wait_for("HPA status", lambda: raw(cluster, path).get("status"))
    able = condition({"status": status}, "AbleToScale")
    assert (able["status"], able["reason"]) == ("False", "FailedGetScale")
    assert 'deployments.apps "nowhere" not found' in able["message"]
