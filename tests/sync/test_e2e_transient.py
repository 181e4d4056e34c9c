"""End to end: transient API errors are retried with the app's backoff; the sync completes."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client

from clusters.sim import SimServer
from hub.sync.model import Backoff, RetryPolicy
from hub.sync.retry import retry_delay_s
from tests.conftest import KubeEnv
from tests.sync.e2e_helpers import CLUSTER, GitRepo, application, hub_app

FILES: dict[str, str | None] = {
    "app/config.yaml": """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: settings, annotations: {argocd.argoproj.io/sync-wave: "-1"}}
        data: {a: b}
        """,
    "app/deploy.yaml": """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: payments}
        spec:
          replicas: 2
          selector: {matchLabels: {app: payments}}
          template:
            metadata: {labels: {app: payments}}
            spec:
              containers: [{name: payments, image: "nginx:1.27"}]
        """,
    "app/later.yaml": """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: later, annotations: {argocd.argoproj.io/sync-wave: "1"}}
        data: {c: d}
        """,
}


@pytest.mark.sim_only("needs the simulator's error injection")
def test_transient_api_errors_are_retried_with_the_configured_backoff(
    sim_factory: Callable[..., SimServer], tmp_path: Path
) -> None:
    sim = sim_factory(clusters=1, ready_delay=0.1)
    env = KubeEnv(kubeconfig=sim.kubeconfig_path, contexts=sim.cluster_names, sim=sim)
    repo = GitRepo(tmp_path / "repo")
    repo.write(FILES)
    h = hub_app(env, tmp_path)
    retry = {"limit": 8, "backoff": {"duration": "100ms", "factor": 2, "maxDuration": "1s"}}
    spec = {"syncPolicy": {"retry": retry}}
    h.write_app(application("flaky", repo, namespace="default", extra_spec=spec))
    policy = RetryPolicy(limit=8, backoff=Backoff(duration_s=0.1, factor=2, max_duration_s=1.0))

    sim.faults(sim.cluster_names[0]).set(error_rate=0.3, error_code=503)
    try:
        run = h.sync("--timeout", "90")
    finally:
        sim.faults(sim.cluster_names[0]).clear()

    assert run.exit_code == 0, run.output
    retries = re.findall(r"retry (\d+) in ([\d.]+)s", run.stdout)
    assert retries, "no retry happened; raise error_rate"
    assert "HTTP 503" in run.stdout
    for attempt, delay in retries:
        assert float(delay) == pytest.approx(retry_delay_s(policy, int(attempt) - 1))
    assert "Operation:   Succeeded" in run.stdout and CLUSTER
    api = client.CoreV1Api(env.api_client())
    try:
        assert api.read_namespaced_config_map("later", "default").data == {"c": "d"}
    finally:
        api.api_client.close()
