"""A render the caller validated (the worker's, ``Rendered.validated_against``) is not
validated again by the engine while the cluster's discovery is the one it was validated
against; its warnings are still reported, and the shared manifests come out of every sync
as they went in (the worker hands the same render to every sync of a revision). In
process, against ``hub sim``."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import hub.sync.attempt
from clusters.kube import AsyncKube, KubeClient
from clusters.sim import SimServer
from hub.sync.engine import (
    EventKind,
    ProgressEvent,
    Rendered,
    SyncRequest,
    scopes_of,
    sync_application,
)
from hub.sync.history import OperationPhase
from hub.sync.model import parse_application
from hub.sync.validate import SourcedManifest, validate_manifests
from tests.hub.test_controller_runtime import sim_client

pytestmark = [pytest.mark.sim_only("in-process client to a simulated cluster")]


@pytest.fixture
def client() -> Iterator[KubeClient]:
    with SimServer(clusters=["a"], ready_delay=0.1) as sim:
        kube = sim_client(sim, "a")
        yield kube
        kube.connection.close()


def cm(name: str, wave: int, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "annotations": {"argocd.argoproj.io/sync-wave": str(wave)},
    }
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": name}}


def test_a_validated_render_is_synced_as_given_and_comes_out_unchanged(
    client: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    validations: list[int] = []
    original = hub.sync.attempt.validate_manifests

    def counting(manifests: Any, **kw: Any) -> Any:
        validations.append(len(manifests))
        return original(manifests, **kw)

    monkeypatch.setattr(hub.sync.attempt, "validate_manifests", counting)
    app = parse_application(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": f"given-{uuid.uuid4().hex[:6]}"},
            "spec": {
                "project": "default",
                "source": {"repoURL": "https://example.com/r.git", "path": "app"},
                "destination": {"name": "a", "namespace": "default"},
                "syncPolicy": {"syncOptions": ["CreateNamespace=true"]},
            },
        }
    )
    raw = [
        # two waves (a health gate between them), a namespace the sync creates, and an
        # object whose namespace validation settles
        SourcedManifest(obj=cm("first", 0, "given-ns"), origin="app/a.yaml"),
        SourcedManifest(obj=cm("second", 1), origin="app/b.yaml"),
        SourcedManifest(
            obj={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "given-ns"}},
            origin="app/ns.yaml",
        ),
    ]
    events: list[ProgressEvent] = []

    async def main() -> list[Any]:
        kube = AsyncKube(client.connection)
        try:
            resources = await kube.resources()
            valid = validate_manifests(
                raw, destination_namespace="default", scopes=scopes_of(resources)
            )
            given = Rendered(
                revision="r" * 40,
                manifests=valid.manifests,
                sources={"repoURL": "x"},
                validated_against=(resources, "default"),
                warnings=("a warning of the caller's validation",),
            )
            before = copy.deepcopy([m.obj for m in given.manifests])
            results = []
            for _ in range(2):  # the second: the same render again, as a self-heal would
                request = SyncRequest(rendered=given, wait_healthy=True, timeout_s=60)
                results.append(await sync_application(kube, app, request, on_event=events.append))
            assert [m.obj for m in given.manifests] == before
            validations_before_refresh = len(validations)
            # a discovery refresh: the same render is validated again, against it
            await kube.resources(refresh=True)
            request = SyncRequest(rendered=given, wait_healthy=True, timeout_s=60)
            results.append(await sync_application(kube, app, request))
            assert validations_before_refresh == 0
            assert validations == [3]
            assert [m.obj for m in given.manifests] == before
            return results
        finally:
            await kube.aclose()

    results = anyio.run(main)
    assert [r.phase for r in results] == [OperationPhase.SUCCEEDED] * 3, [
        r.message for r in results
    ]
    warned = [e.message for e in events if e.kind is EventKind.WARNING]
    assert warned.count("a warning of the caller's validation") == 2
    cmr = client.resource_for("", "ConfigMap")
    assert client.get_or_none(cmr, "first", "given-ns") is not None
    assert client.get_or_none(cmr, "second", "default") is not None
