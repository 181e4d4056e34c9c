"""The engine on one event loop (issue 12): many syncs in flight cost no thread each, and a
sync cancelled through its token from the loop itself stops at once. In process, against
``hub sim``."""

from __future__ import annotations

import gc
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import anyio
import pytest

from clusters.kube import AsyncKube, KubeClient
from clusters.sim import SimServer
from hub.sync.engine import (
    CancelToken,
    EventKind,
    OperationResult,
    ProgressEvent,
    Rendered,
    SyncRequest,
    sync_application,
)
from hub.sync.history import OperationPhase
from hub.sync.model import parse_application
from hub.sync.validate import SourcedManifest
from tests.hub.test_controller_runtime import sim_client

pytestmark = [pytest.mark.sim_only("in-process client to a simulated cluster")]


@pytest.fixture
def client() -> Iterator[KubeClient]:
    with SimServer(clusters=["a"], ready_delay=0.3) as sim:
        kube = sim_client(sim, "a")
        yield kube
        kube.connection.close()


def deployment(name: str, image: str = "nginx:1.25") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    }


def app_and_request(objects: list[dict[str, Any]]) -> tuple[Any, SyncRequest]:
    name = f"a-{uuid.uuid4().hex[:8]}"
    app = parse_application(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name},
            "spec": {
                "project": "default",
                "source": {"repoURL": "https://example.com/r.git", "path": "app"},
                "destination": {"name": "a", "namespace": "default"},
            },
        }
    )
    manifests = tuple(SourcedManifest(obj=o, origin="app/x.yaml") for o in objects)
    given = Rendered(revision="r" * 40, manifests=manifests, sources={"repoURL": "x"})
    # wait_healthy: each sync stays in flight at its health gate until the rollout is done
    return app, SyncRequest(rendered=given, wait_healthy=True, timeout_s=120)


def peak_threads_during(kube: KubeClient, count: int) -> tuple[int, list[OperationResult]]:
    """Run ``count`` syncs at once on one loop; the most threads seen meanwhile."""
    results: list[OperationResult] = []
    peak = threading.active_count()

    async def main() -> None:
        nonlocal peak
        client = AsyncKube(kube.connection)
        try:
            await client.resources()  # discovery once, before the syncs start
            async with anyio.create_task_group() as syncs:

                async def one(index: int) -> None:
                    app, request = app_and_request([deployment(f"d{count}-{index}")])
                    results.append(await sync_application(client, app, request))

                for index in range(count):
                    syncs.start_soon(one, index)
                async with anyio.create_task_group() as watch:

                    async def sample() -> None:
                        nonlocal peak
                        while True:
                            peak = max(peak, threading.active_count())
                            await anyio.sleep(0.01)

                    watch.start_soon(sample)
                    while len(results) < count:
                        await anyio.sleep(0.05)
                    watch.cancel_scope.cancel()
        finally:
            await client.aclose()

    anyio.run(main)
    return peak, results


def test_the_thread_count_does_not_grow_with_the_number_of_syncs_in_flight(
    client: KubeClient,
) -> None:
    baseline, first = peak_threads_during(client, 1)
    many, results = peak_threads_during(client, 25)
    assert all(r.phase is OperationPhase.SUCCEEDED for r in [*first, *results]), [
        r.message for r in results if r.phase is not OperationPhase.SUCCEEDED
    ]
    # 25 syncs at their health gates at once: with a thread per sync this was >= 25 more
    assert many <= baseline + 2, (baseline, many)


def test_cancelling_on_the_loop_interrupts_the_gate_and_ends_the_sync_terminated(
    client: KubeClient,
) -> None:
    token = CancelToken()
    events: list[ProgressEvent] = []

    def on_event(event: ProgressEvent) -> None:
        events.append(event)
        if event.kind is EventKind.RESOURCE and event.health == "Progressing":
            token.cancel()  # on the loop, from inside the operation's own callback

    later = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "later"}}
    later["metadata"]["annotations"] = {"argocd.argoproj.io/sync-wave": "1"}
    later["metadata"]["namespace"] = "default"
    app, request = app_and_request([deployment("stuck", "nginx:crashloop"), later])

    async def main() -> OperationResult:
        kube = AsyncKube(client.connection)
        try:
            return await sync_application(kube, app, request, on_event=on_event, cancel=token)
        finally:
            await kube.aclose()

    result = anyio.run(main)
    assert result.phase is OperationPhase.FAILED
    assert result.message == "operation terminated"
    assert any(e.health == "Progressing" for e in events)
    cm = client.resource_for("", "ConfigMap")
    assert client.get_or_none(cm, "later", "default") is None  # the next wave never ran


def cyclic_garbage_of_a_sync(
    client: KubeClient, objects: list[dict[str, Any]], *, wait_healthy: bool
) -> Counter[str]:
    """The types of what one one-shot sync left in reference cycles: a collection before
    and after it, under ``gc.DEBUG_SAVEALL`` (what a collection finds stays in gc.garbage)."""
    app, request = app_and_request(objects)
    request = replace(request, wait_healthy=wait_healthy)

    async def main() -> OperationResult:
        kube = AsyncKube(client.connection)
        try:
            await kube.resources()
            gc.collect()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                return await sync_application(kube, app, request)
            finally:
                gc.collect()
                gc.set_debug(0)
        finally:
            await kube.aclose()

    try:
        result = anyio.run(main)
        assert result.phase is OperationPhase.SUCCEEDED, result.message
        return Counter(type(o).__name__ for o in gc.garbage)
    finally:
        gc.garbage.clear()


PER_SYNC = {"Run", "CancelToken", "AppComparison", "ResourceResult"}


def test_a_finished_sync_is_freed_at_once_not_by_a_full_garbage_collection(
    client: KubeClient,
) -> None:
    # At 1,000 clusters the syncs' leftovers waited for full collections, which a hub
    # now runs rarely (hub.controller.GC_THRESHOLDS): hundreds of MB of garbage. A sync as
    # the hub runs it: no watches of the engine's own (the hub passes its live cache).
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "freed"}}
    config["metadata"]["namespace"] = "default"
    cyclic = cyclic_garbage_of_a_sync(client, [config], wait_healthy=False)
    assert not PER_SYNC & set(cyclic), cyclic


def test_a_sync_whose_gate_watched_on_its_own_is_freed_at_once_too(client: KubeClient) -> None:
    # No live cache given (a one-shot; in the hub, a gate on a kind its cache lacks, such
    # as a hook's Job): the gate lists and watches in a LiveCache of the operation's own,
    # whose tasks end with the sync. Nor may a watch's task be left in a cycle, with its
    # frames, the cache it filled and its connection (asyncio's closed transport refers to
    # itself through a bound method in Python 3.11, a few hundred bytes: not ours).
    cyclic = cyclic_garbage_of_a_sync(client, [deployment("watched")], wait_healthy=True)
    assert not {*PER_SYNC, "LiveCache", "Task", "CancelledError", "frame"} & set(cyclic), cyclic
