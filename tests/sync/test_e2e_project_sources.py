"""A sync is refused when the AppProject does not permit any one of a multi-source app's
repositories (Argo CD checks every source; the engine checked only the first). In process,
against ``hub sim``."""

from __future__ import annotations

from typing import Any

import pytest

from clusters.kube import KubeClient
from clusters.sim import SimServer
from hub.sync.engine import Rendered, SyncRequest, sync_application_blocking
from hub.sync.history import OperationPhase
from hub.sync.model import parse_application
from hub.sync.projects import ClusterRef, ProjectScope, parse_project
from hub.sync.validate import SourcedManifest
from tests.sync.test_e2e_dry_run_parallel import cluster

__all__ = ["cluster"]  # the fixture, used by name

pytestmark = [pytest.mark.sim_only("in-process client to a simulated cluster")]

ALLOWED = "https://example.com/allowed.git"
OTHER = "https://example.com/other.git"


def sync(client: KubeClient, sim: SimServer, sources: list[str]) -> Any:
    app = parse_application(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "multi"},
            "spec": {
                "project": "team",
                "sources": [{"repoURL": url, "path": "p"} for url in sources],
                "destination": {"name": "a", "namespace": "default"},
            },
        }
    )
    project = parse_project(
        {
            "metadata": {"name": "team"},
            "spec": {
                "sourceRepos": [ALLOWED],
                "destinations": [{"name": "a", "namespace": "*"}],
                "namespaceResourceWhitelist": [{"group": "*", "kind": "*"}],
            },
        }
    )
    scope = ProjectScope(
        project=project,
        cluster=ClusterRef(name="a", server=sim.server_url("a")),
        namespace="default",
    )
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "multi-cm"}}
    given = Rendered(
        revision=",".join("r" * 40 for _ in sources),
        manifests=(SourcedManifest(obj=cm, origin="p/cm.yaml"),),
        sources={"sources": [{"repoURL": url} for url in sources]},
    )
    request = SyncRequest(rendered=given, project=scope, wait_healthy=False)
    return sync_application_blocking(client, app, request)


def test_every_source_s_repository_must_be_permitted(
    cluster: tuple[SimServer, KubeClient],
) -> None:
    sim, client = cluster
    refused = sync(client, sim, [ALLOWED, OTHER])
    assert refused.phase is OperationPhase.FAILED
    assert f"application repo {OTHER} is not permitted in project 'team'" in refused.message
    res = client.resource_for("", "ConfigMap")
    assert client.get_or_none(res, "multi-cm", "default") is None
    allowed = sync(client, sim, [ALLOWED, ALLOWED])
    assert allowed.phase is OperationPhase.SUCCEEDED, allowed.message
