"""End to end: the seed scenario's writes follow phases and waves, each gated on health."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tests.conftest import KubeEnv
from tests.sync.e2e_helpers import GitRepo, Recorder, Seen, application, hub_app


def seed_files(ns: str, image: str = "nginx:1.27") -> dict[str, str | None]:
    return {
        "app/00-namespace.yaml": f"""
            apiVersion: v1
            kind: Namespace
            metadata:
              name: {ns}
              annotations: {{argocd.argoproj.io/sync-wave: "-2"}}
            """,
        "app/01-rbac.yaml": f"""
            apiVersion: v1
            kind: ServiceAccount
            metadata:
              name: payments
              annotations: {{argocd.argoproj.io/sync-wave: "-2"}}
            ---
            apiVersion: rbac.authorization.k8s.io/v1
            kind: Role
            metadata:
              name: payments
              annotations: {{argocd.argoproj.io/sync-wave: "-2"}}
            rules:
            - apiGroups: [""]
              resources: [configmaps]
              verbs: [get, list]
            ---
            apiVersion: rbac.authorization.k8s.io/v1
            kind: RoleBinding
            metadata:
              name: payments
              annotations: {{argocd.argoproj.io/sync-wave: "-2"}}
            roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: payments}}
            subjects:
            - {{kind: ServiceAccount, name: payments, namespace: {ns}}}
            """,
        "app/02-config.yaml": """
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: payments
              annotations: {argocd.argoproj.io/sync-wave: "-1"}
            data: {LOG_LEVEL: info}
            """,
        "app/03-migrate.yaml": """
            apiVersion: batch/v1
            kind: Job
            metadata:
              generateName: migrate-
              annotations:
                argocd.argoproj.io/hook: PreSync
                argocd.argoproj.io/hook-delete-policy: BeforeHookCreation
            spec:
              backoffLimit: 0
              template:
                spec:
                  restartPolicy: Never
                  containers: [{name: migrate, image: "busybox:1.36", command: [true]}]
            """,
        "app/04-deployment.yaml": f"""
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: payments
              annotations: {{argocd.argoproj.io/sync-wave: "1"}}
            spec:
              replicas: 3
              selector: {{matchLabels: {{app: payments}}}}
              template:
                metadata: {{labels: {{app: payments}}}}
                spec:
                  serviceAccountName: payments
                  containers:
                  - name: payments
                    image: "{image}"
                    ports: [{{containerPort: 80}}]
                    readinessProbe:
                      httpGet: {{path: /, port: 80}}
            """,
        "app/05-edge.yaml": """
            apiVersion: v1
            kind: Service
            metadata:
              name: payments
              annotations: {argocd.argoproj.io/sync-wave: "1"}
            spec:
              selector: {app: payments}
              ports: [{port: 80, targetPort: 80}]
            ---
            apiVersion: networking.k8s.io/v1
            kind: Ingress
            metadata:
              name: payments
              annotations: {argocd.argoproj.io/sync-wave: "2"}
            spec:
              rules:
              - host: payments.example.com
                http:
                  paths:
                  - path: /
                    pathType: Prefix
                    backend: {service: {name: payments, port: {number: 80}}}
            ---
            apiVersion: autoscaling/v2
            kind: HorizontalPodAutoscaler
            metadata:
              name: payments
              annotations: {argocd.argoproj.io/sync-wave: "2"}
            spec:
              scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: payments}
              minReplicas: 3
              maxReplicas: 6
              metrics:
              - type: Resource
                resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
            """,
        "app/06-smoke.yaml": """
            apiVersion: batch/v1
            kind: Job
            metadata:
              name: smoke
              annotations:
                argocd.argoproj.io/hook: PostSync
                argocd.argoproj.io/hook-delete-policy: HookSucceeded
            spec:
              backoffLimit: 0
              template:
                spec:
                  restartPolicy: Never
                  containers: [{name: smoke, image: "busybox:1.36", command: [true]}]
            """,
    }


def _deployment_healthy(s: Seen) -> bool:
    status = s.obj.get("status") or {}
    want = s.obj["spec"]["replicas"]
    return bool(
        status.get("observedGeneration", 0) >= s.obj["metadata"]["generation"]
        and status.get("updatedReplicas") == want
        and status.get("availableReplicas") == want
        and status.get("replicas") == want
    )


def _job_complete(s: Seen) -> bool:
    conditions = (s.obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)


def _ingress_has_address(s: Seen) -> bool:
    status: dict[str, Any] = s.obj.get("status") or {}
    return bool((status.get("loadBalancer") or {}).get("ingress"))


def test_seed_scenario_writes_follow_phases_and_waves_and_wait_for_health(
    kube: KubeEnv, tmp_path: Path
) -> None:
    ns = f"pay-{uuid.uuid4().hex[:6]}"
    repo = GitRepo(tmp_path / "repo")
    repo.write(seed_files(ns), "seed")
    h = hub_app(kube, tmp_path)
    h.write_app(application("payments", repo, namespace=ns))
    recorder = Recorder(
        kube,
        ns,
        [
            ("batch/v1", "Job"),
            ("v1", "ServiceAccount"),
            ("rbac.authorization.k8s.io/v1", "Role"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("v1", "ConfigMap"),
            ("apps/v1", "Deployment"),
            ("v1", "Service"),
            ("networking.k8s.io/v1", "Ingress"),
            ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ],
    )
    try:
        run = h.sync("--timeout", "60")
    finally:
        events = recorder.stop()
    assert run.exit_code == 0, run.output
    out = run.stdout
    # progress is printed phase by phase, wave by wave
    assert out.index("PreSync") < out.index("\nSync\n") < out.index("PostSync")
    assert out.index("  wave -2") < out.index("  wave -1") < out.index("  wave 1")
    assert "Sync status: Synced" in out and "Health:      Healthy" in out

    def created(kind: str, name: str) -> int:
        return Recorder.first(events, kind, name, lambda s: s.type == "ADDED")

    migrate_created = created("Job", "migrate-")
    migrate_done = Recorder.first(events, "Job", "migrate-", _job_complete)
    wave_minus2 = min(created(k, "payments") for k in ("ServiceAccount", "Role", "RoleBinding"))
    wave_minus2_last = max(
        created(k, "payments") for k in ("ServiceAccount", "Role", "RoleBinding")
    )
    config = created("ConfigMap", "payments")
    deploy = created("Deployment", "payments")
    deploy_healthy = Recorder.first(events, "Deployment", "payments", _deployment_healthy)
    wave2_first = min(
        created("Ingress", "payments"), created("HorizontalPodAutoscaler", "payments")
    )
    ingress_ready = Recorder.first(events, "Ingress", "payments", _ingress_has_address)
    smoke = created("Job", "smoke")

    # PreSync hook ran and completed before any Sync-phase write
    assert migrate_created < migrate_done < wave_minus2
    # waves in order; kind order inside wave -2 (ServiceAccount, Role, RoleBinding)
    assert [created(k, "payments") for k in ("ServiceAccount", "Role", "RoleBinding")] == sorted(
        created(k, "payments") for k in ("ServiceAccount", "Role", "RoleBinding")
    )
    assert wave_minus2_last < config < deploy
    # wave 2 starts only once the Deployment (wave 1) is Healthy at the generation we wrote
    assert deploy < deploy_healthy < wave2_first
    # PostSync starts only once wave 2 is Healthy (the Ingress has its address)
    assert wave2_first < ingress_ready < smoke
    # the smoke hook (HookSucceeded) is gone after the successful operation
    assert any(s.kind == "Job" and s.name == "smoke" and s.type == "DELETED" for s in events)
    assert "Succeeded" in out

    history = h("history", "-f", str(h.app_file))
    assert history.exit_code == 0 and "Succeeded" in history.stdout
