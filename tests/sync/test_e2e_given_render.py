"""A render the caller validated (the worker's, ``Rendered.validated_against``) is not
validated again by the engine while the cluster's discovery is the one it was validated
against; its warnings are still reported, and the shared manifests come out of every sync
as they went in (the worker hands the same render to every sync of a revision). In
process, against ``hub sim``."""

from __future__ import annotations

import copy
from typing import Any

import anyio
import pytest

import hub.sync.attempt
from clusters.kube import AsyncKube, KubeClient
from hub.sync.engine import (
    EventKind,
    ProgressEvent,
    Rendered,
    SyncRequest,
    scopes_of,
    sync_application,
)
from hub.sync.history import OperationPhase
from hub.sync.validate import validate_manifests
from tests.sync.test_e2e_async_engine import app_and_request, client

__all__ = ["client"]  # the fixture, used by name

pytestmark = [pytest.mark.sim_only("in-process client to a simulated cluster")]


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
    # two waves (a health gate between them), a namespace the sync creates, and an object
    # whose namespace validation settles
    app, unvalidated = app_and_request(
        [
            cm("first", 0, "given-ns"),
            cm("second", 1),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "given-ns"}},
        ]
    )
    assert unvalidated.rendered is not None
    raw = unvalidated.rendered.manifests
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
