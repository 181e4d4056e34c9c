"""End to end through the engine's Python API (as the hub's reconcilers call it): a sync
waiting at a health gate is cancelled from another thread and stops writing."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from hub.sync.engine import (
    CancelToken,
    EventKind,
    OperationResult,
    ProgressEvent,
    SyncRequest,
    sync_application_blocking,
)
from hub.sync.history import OperationPhase
from hub.sync.model import parse_application_yaml
from tests.conftest import KubeEnv
from tests.sync.e2e_helpers import GitRepo, application, engine_parts, hub_app

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.mark.sim_only("a rollout that never finishes needs the simulator's `crashloop` image")
def test_cancelling_a_sync_at_a_health_gate_ends_it_failed_without_later_writes(
    kube: KubeEnv, tmp_path: Path, kubectl: Kubectl, namespace: str
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write(
        {
            "app/deploy.yaml": """
                apiVersion: apps/v1
                kind: Deployment
                metadata: {name: stuck}
                spec:
                  replicas: 1
                  progressDeadlineSeconds: 600
                  selector: {matchLabels: {app: stuck}}
                  template:
                    metadata: {labels: {app: stuck}}
                    spec:
                      containers: [{name: stuck, image: "nginx:crashloop"}]
                """,
            "app/later.yaml": """
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: later, annotations: {argocd.argoproj.io/sync-wave: "1"}}
                """,
        }
    )
    h = hub_app(kube, tmp_path)
    h.write_app(application("stuck", repo, namespace=namespace))
    app = parse_application_yaml(h.app_file.read_text(), source_file=str(h.app_file))
    home = h.hub.home

    token = CancelToken()
    waiting = threading.Event()
    events: list[ProgressEvent] = []
    results: list[OperationResult] = []

    def on_event(event: ProgressEvent) -> None:
        events.append(event)
        if event.kind is EventKind.RESOURCE and event.health == "Progressing":
            waiting.set()

    with engine_parts(home) as parts:
        worker = threading.Thread(
            target=lambda: results.append(
                sync_application_blocking(
                    parts.kube,
                    app,
                    SyncRequest(initiated_by="test"),
                    sources=parts.repos,
                    history=parts.history,
                    on_event=on_event,
                    cancel=token,
                )
            )
        )
        worker.start()
        assert waiting.wait(30), [e.message for e in events]
        token.cancel()
        worker.join(30)
        assert not worker.is_alive()
        (result,) = results
        assert result.phase is OperationPhase.FAILED
        assert "terminated" in result.message
        entries = parts.history.entries(app.name)
        assert entries[-1].phase is OperationPhase.FAILED and entries[-1].initiated_by == "test"
        assert parts.history.interrupted() == []
    got = kubectl("get", "configmap", "later", "-n", namespace)
    assert got.returncode != 0 and "NotFound" in got.stderr
    deploy = yaml.safe_load(kubectl("get", "deploy", "stuck", "-n", namespace, "-o", "yaml").stdout)
    assert deploy["metadata"]["name"] == "stuck"
