"""The simulated controllers run Jobs, CronJobs and bare Pods to their end, bind claims and
give Services and Ingresses addresses, seen through the official ``kubernetes`` client."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sim.test_controllers_workloads import (
    cluster,
    condition,
    deployment,
    get_deploy,
    k8s,
    ns,
    pods_of,
    raw,
    rollout_done,
    wait_for,
)

pytestmark = pytest.mark.sim_only("needs the simulated controllers")
__all__ = ["cluster", "ns"]  # fixtures shared with the workloads tests


def delete(cluster: Any, path: str) -> None:
    """DELETE through the client's transport (typed delete calls choke on a Status reply)."""
    method, url, headers, _, _ = cluster.param_serialize(
        "DELETE", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
    )
    assert cluster.call_api(method, url, headers).status == 200


def job(name: str, image: str = "busybox:1.36", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": image, "command": ["true"]}],
                }
            },
            **spec,
        },
    }


def job_path(ns: str, name: str) -> str:
    return f"/apis/batch/v1/namespaces/{ns}/jobs/{name}"


def finished(cluster: Any, ns: str, name: str) -> dict[str, Any] | None:
    j = raw(cluster, job_path(ns, name))
    for kind in ("Complete", "Failed"):
        if condition(j, kind).get("status") == "True":
            return j  # type: ignore[no-any-return]
    return None


def test_a_job_completes_with_the_conditions_of_kubernetes_1_31(cluster: Any, ns: str) -> None:
    k8s(cluster, "BatchV1Api").create_namespaced_job(ns, job("once", completions=3, parallelism=2))
    j = wait_for("job finished", lambda: finished(cluster, ns, "once"))
    status = j["status"]
    assert status["succeeded"] == 3
    assert "failed" not in status and "active" not in status
    assert status["ready"] == 0 and status["terminating"] == 0
    assert status["startTime"] and status["completionTime"]
    types = [c["type"] for c in status["conditions"]]
    assert types == ["SuccessCriteriaMet", "Complete"]
    complete = condition(j, "Complete")
    assert complete["reason"] == "CompletionsReached"
    assert complete["message"] == "Reached expected number of succeeded pods"

    pods = pods_of(cluster, ns, "job-name=once")
    assert len(pods) == 3  # finished pods stay for logs
    for pod in pods:
        assert pod["status"]["phase"] == "Succeeded"
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")


def test_a_job_with_a_fail_image_fails_once_the_backoff_limit_is_spent(
    cluster: Any, ns: str
) -> None:
    k8s(cluster, "BatchV1Api").create_namespaced_job(
        ns, job("broken", image="busybox:fail", backoffLimit=2)
    )
    j = wait_for("job finished", lambda: finished(cluster, ns, "broken"))
    failed = condition(j, "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "BackoffLimitExceeded")
    assert failed["message"] == "Job has reached the specified backoff limit"
    assert condition(j, "FailureTarget")["reason"] == "BackoffLimitExceeded"
    assert j["status"]["failed"] == 3  # the first try and backoffLimit retries
    assert "succeeded" not in j["status"] and "completionTime" not in j["status"]
    pods = pods_of(cluster, ns, "job-name=broken")
    assert len(pods) == 3
    for pod in pods:
        assert pod["status"]["phase"] == "Failed"
        assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1


def test_a_job_past_its_active_deadline_fails(cluster: Any, ns: str) -> None:
    slow = job("slow", image="busybox:crashloop", activeDeadlineSeconds=1)
    slow["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    slow["spec"]["backoffLimit"] = 100
    k8s(cluster, "BatchV1Api").create_namespaced_job(ns, slow)
    j = wait_for("job finished", lambda: finished(cluster, ns, "slow"), timeout=15)
    failed = condition(j, "Failed")
    assert failed["reason"] == "DeadlineExceeded"
    assert failed["message"] == "Job was active longer than specified deadline"


def test_a_suspended_job_starts_no_pods_until_resumed(cluster: Any, ns: str) -> None:
    batch = k8s(cluster, "BatchV1Api")
    batch.create_namespaced_job(ns, job("later", suspend=True))
    j = wait_for(
        "suspended condition",
        lambda: (
            (j := raw(cluster, job_path(ns, "later")))
            and condition(j, "Suspended").get("status") == "True"
            and j
        ),
    )
    assert condition(j, "Suspended")["reason"] == "JobSuspended"
    assert pods_of(cluster, ns, "job-name=later") == []
    batch.patch_namespaced_job("later", ns, {"spec": {"suspend": False}})
    j = wait_for("job finished", lambda: finished(cluster, ns, "later"))
    assert condition(j, "Suspended")["status"] == "False"
    assert condition(j, "Suspended")["reason"] == "JobResumed"


def test_a_finished_job_with_a_ttl_is_deleted(cluster: Any, ns: str) -> None:
    k8s(cluster, "BatchV1Api").create_namespaced_job(ns, job("brief", ttlSecondsAfterFinished=0))
    wait_for(
        "job deleted",
        lambda: all(
            j.metadata.name != "brief"
            for j in k8s(cluster, "BatchV1Api").list_namespaced_job(ns).items
        ),
    )


def test_a_cronjob_that_missed_a_run_starts_it_and_records_the_success(
    cluster: Any, ns: str
) -> None:
    batch = k8s(cluster, "BatchV1Api")
    cj = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": job("x")["spec"]}},
    }
    created = cluster.sanitize_for_serialization(batch.create_namespaced_cron_job(ns, cj))
    # As if the controller had last run it two minutes ago: the missed run starts now.
    created["status"] = {"lastScheduleTime": "2020-01-01T00:00:00Z"}
    batch.replace_namespaced_cron_job_status("tick", ns, created)

    def ran() -> dict[str, Any] | None:
        status = raw(cluster, f"/apis/batch/v1/namespaces/{ns}/cronjobs/tick").get("status") or {}
        return status if status.get("lastSuccessfulTime") and not status.get("active") else None

    status = ran_status = wait_for("the missed run to succeed", ran)
    assert ran_status["lastScheduleTime"] > "2020-01-01T00:00:00Z"
    (started,) = batch.list_namespaced_job(ns).items
    scheduled = status["lastScheduleTime"]
    from datetime import datetime

    minute = int(datetime.fromisoformat(scheduled.replace("Z", "+00:00")).timestamp()) // 60
    assert started.metadata.name == f"tick-{minute}"
    assert started.metadata.owner_references[0].kind == "CronJob"


# --- bare pods ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "restart_policy", "phase"),
    [
        ("busybox:1.36", "Never", "Succeeded"),
        ("busybox:fail", "Never", "Failed"),
        ("busybox:1.36", "Always", "Running"),
    ],
)
def test_a_bare_pod_ends_as_its_image_and_restart_policy_say(
    cluster: Any, ns: str, image: str, restart_policy: str, phase: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bare", "labels": {"app": "bare"}},
        "spec": {"restartPolicy": restart_policy, "containers": [{"name": "main", "image": image}]},
    }
    k8s(cluster, "CoreV1Api").create_namespaced_pod(ns, pod)
    path = f"/api/v1/namespaces/{ns}/pods/bare"
    got = wait_for(
        phase,
        lambda: (p := raw(cluster, path)) and p.get("status", {}).get("phase") == phase and p,
    )
    assert got["spec"]["nodeName"]
    ready = condition(got, "Ready")
    assert ready["status"] == ("True" if phase == "Running" else "False")


def test_a_bare_crashlooping_pod_runs_without_becoming_ready(cluster: Any, ns: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "loop"},
        "spec": {"containers": [{"name": "main", "image": "example.com/app:v2-crashloop"}]},
    }
    k8s(cluster, "CoreV1Api").create_namespaced_pod(ns, pod)
    path = f"/api/v1/namespaces/{ns}/pods/loop"
    got = wait_for(
        "restarts",
        lambda: (
            (p := raw(cluster, path))
            and (p.get("status", {}).get("containerStatuses") or [{}])[0].get("restartCount", 0)
            >= 3
            and p
        ),
    )
    assert got["status"]["phase"] == "Running"
    assert condition(got, "Ready")["status"] == "False"
    assert got["status"]["containerStatuses"][0]["image"] == "example.com/app:v2-crashloop"


# --- storage and network ----------------------------------------------------------------


def test_a_claim_is_bound_to_a_provisioned_volume(cluster: Any, ns: str) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}},
    }
    core = k8s(cluster, "CoreV1Api")
    core.create_namespaced_persistent_volume_claim(ns, claim)
    path = f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data"
    got = wait_for(
        "Bound",
        lambda: (c := raw(cluster, path)) and c.get("status", {}).get("phase") == "Bound" and c,
    )
    assert got["status"]["capacity"] == {"storage": "5Gi"}
    assert got["status"]["accessModes"] == ["ReadWriteOnce"]
    volume = got["spec"]["volumeName"]
    assert volume == f"pvc-{got['metadata']['uid']}"
    pv = raw(cluster, f"/api/v1/persistentvolumes/{volume}")
    assert pv["spec"]["claimRef"]["name"] == "data"
    assert pv["spec"]["capacity"] == {"storage": "5Gi"}

    delete(cluster, path)
    wait_for(
        "volume released",
        lambda: all(v.metadata.name != volume for v in core.list_persistent_volume().items),
    )


def test_a_load_balancer_service_gets_an_address_and_endpoints_list_ready_pods(
    cluster: Any, ns: str
) -> None:
    k8s(cluster, "AppsV1Api").create_namespaced_deployment(ns, deployment("web", replicas=2))
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }
    core = k8s(cluster, "CoreV1Api")
    core.create_namespaced_service(ns, svc)
    path = f"/api/v1/namespaces/{ns}/services/web"
    got = wait_for(
        "LB address",
        lambda: raw(cluster, path).get("status", {}).get("loadBalancer", {}).get("ingress"),
    )
    (ingress,) = got
    assert ingress["ipMode"] == "VIP" and ingress["ip"]
    again = raw(cluster, path)["status"]["loadBalancer"]["ingress"][0]["ip"]
    assert again == ingress["ip"]

    wait_for("rollout", lambda: rollout_done(get_deploy(cluster, ns, "web")))
    pod_ips = sorted(p["status"]["podIP"] for p in pods_of(cluster, ns, "app=web"))
    endpoints = wait_for(
        "endpoints",
        lambda: (
            (e := raw(cluster, f"/api/v1/namespaces/{ns}/endpoints/web"))
            and sorted(a["ip"] for s in e.get("subsets", []) for a in s.get("addresses", []))
            == pod_ips
            and e
        ),
    )
    (subset,) = endpoints["subsets"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert {a["targetRef"]["kind"] for a in subset["addresses"]} == {"Pod"}

    delete(cluster, path)
    wait_for(
        "endpoints removed",
        lambda: all(e.metadata.name != "web" for e in core.list_namespaced_endpoints(ns).items),
    )


def test_an_ingress_gets_an_address(cluster: Any, ns: str) -> None:
    ing = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web"},
        "spec": {
            "rules": [
                {
                    "host": "web.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "web", "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ]
        },
    }
    k8s(cluster, "NetworkingV1Api").create_namespaced_ingress(ns, ing)
    path = f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/web"
    (address,) = wait_for(
        "ingress address",
        lambda: raw(cluster, path).get("status", {}).get("loadBalancer", {}).get("ingress"),
    )
    assert address["ip"]
