"""The server-side dry runs of one sync run side by side (bounded), and a rejected object
still fails the sync before anything is written (Argo CD's dry-run pass). The plan's first
write is not dry-run: its own answer is the verdict, and a refusal of it fails the sync
with nothing written all the same. Neither is an apply of an object already live as
declared: it changes nothing either way. In process, against ``hub sim``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from clusters.kube import AsyncKube, Invalid, KubeClient, Transient
from clusters.sim import SimServer
from hub.sync.engine import DRY_RUN_PARALLEL, Rendered, SyncRequest, sync_application_blocking
from hub.sync.history import OperationPhase
from hub.sync.model import parse_application
from hub.sync.validate import SourcedManifest
from tests.hub.test_controller_runtime import sim_client

pytestmark = [pytest.mark.sim_only("in-process client to a simulated cluster")]


class DryRuns:
    """Counts the dry-run requests in flight at once; the first two wait for each other
    (a meeting point, not a clock), so side-by-side dry runs are seen whatever the machine
    load. The engine runs on one event loop: no lock needed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.in_flight = 0
        self.most = 0
        self.writes: list[str] = []
        self.dry: list[str] = []
        self.arrived = 0
        self.met: anyio.Event | None = None
        self.broken = False
        original = AsyncKube._request

        async def spy(client: AsyncKube, method: str, path: str, **kw: Any) -> Any:
            dry = ("dryRun", "All") in (kw.get("query") or [])
            if not dry:
                if method in ("PATCH", "POST", "PUT", "DELETE"):
                    self.writes.append(f"{method} {path}")
                return await original(client, method, path, **kw)
            self.dry.append(path)
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            try:
                # one at a time: the wait times out (broken) and ``most`` stays 1
                if not self.broken and self.arrived < 2:
                    self.arrived += 1
                    if self.met is None:
                        self.met = anyio.Event()
                    if self.arrived == 2:
                        self.met.set()
                    with anyio.move_on_after(10) as waited:
                        await self.met.wait()
                    self.broken = self.broken or waited.cancelled_caught
                return await original(client, method, path, **kw)
            finally:
                self.in_flight -= 1

        monkeypatch.setattr(AsyncKube, "_request", spy)


@pytest.fixture
def cluster() -> Iterator[tuple[SimServer, KubeClient]]:
    with SimServer(clusters=["a"], ready_delay=0.1) as sim:
        client = sim_client(sim, "a")
        yield sim, client
        client.connection.close()


def sync(
    client: KubeClient,
    names: list[str],
    *,
    dry_run: bool = False,
    sync_options: dict[str, str] | None = None,
    data: dict[str, dict[str, str]] | None = None,
    app_name: str | None = None,
) -> Any:
    app = parse_application(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": app_name or f"dry-{uuid.uuid4().hex[:6]}"},
            "spec": {
                "project": "default",
                "source": {"repoURL": "https://example.com/r.git", "path": "app"},
                "destination": {"name": "a", "namespace": "default"},
            },
        }
    )
    options = sync_options or {}

    def meta(name: str) -> dict[str, Any]:
        if name not in options:
            return {"name": name}
        return {
            "name": name,
            "annotations": {"argocd.argoproj.io/sync-options": options[name]},
        }

    def config_map(name: str) -> dict[str, Any]:
        cm: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name)}
        if data and name in data:
            cm["data"] = data[name]
        return cm

    manifests = tuple(SourcedManifest(obj=config_map(n), origin=f"app/{n}.yaml") for n in names)
    given = Rendered(revision="r" * 40, manifests=manifests, sources={"repoURL": "x"})
    request = SyncRequest(rendered=given, wait_healthy=False, dry_run=dry_run)
    return sync_application_blocking(client, app, request)


def test_dry_runs_overlap_and_all_succeed_before_the_writes(
    cluster: tuple[SimServer, KubeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    _sim, client = cluster
    seen = DryRuns(monkeypatch)
    names = [f"c{i}" for i in range(DRY_RUN_PARALLEL + 2)]
    result = sync(client, names)
    assert result.phase is OperationPhase.SUCCEEDED, result.message
    assert 1 < seen.most <= DRY_RUN_PARALLEL
    assert len(seen.writes) == len(names)
    # every object but the first write was dry-run, and that write came first
    assert sorted(p.rsplit("/", 1)[1] for p in seen.dry) == names[1:]
    assert seen.writes[0].endswith("/c0")


def test_a_rejected_object_fails_the_sync_before_anything_is_written(
    cluster: tuple[SimServer, KubeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    _sim, client = cluster
    seen = DryRuns(monkeypatch)
    result = sync(client, ["a1", "Bad_One", "a2", "a3", "Bad_Two", "a4"])
    assert result.phase is OperationPhase.FAILED
    assert result.message.startswith("2 manifest(s) rejected by the API server (dry run)")
    # named with their files, in plan order
    first, second = result.message.index("Bad_One"), result.message.index("Bad_Two")
    assert first < second and "app/Bad_One.yaml" in result.message
    assert seen.writes == []
    assert len(seen.dry) == 6  # the first write's object too, so every rejection is named
    cm = client.resource_for("", "ConfigMap")
    assert all(client.get_or_none(cm, n, "default") is None for n in ("a1", "a2", "a3", "a4"))


def test_a_refused_first_write_fails_the_sync_with_nothing_written(
    cluster: tuple[SimServer, KubeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    _sim, client = cluster
    seen = DryRuns(monkeypatch)
    result = sync(client, ["A_bad", "b1", "b2"])
    assert result.phase is OperationPhase.FAILED
    assert result.message.startswith(
        "1 manifest(s) rejected by the API server (first write); nothing was applied: "
        "app/A_bad.yaml: ConfigMap A_bad: "
    ), result.message
    assert sorted(p.rsplit("/", 1)[1] for p in seen.dry) == ["b1", "b2"]
    assert [w.rsplit("/", 1)[1] for w in seen.writes] == ["A_bad"]  # refused
    cm = client.resource_for("", "ConfigMap")
    assert all(client.get_or_none(cm, n, "default") is None for n in ("A_bad", "b1", "b2"))
    assert result.resources == ()  # as after a refused dry run: no resource was synced


def test_a_first_write_that_is_not_an_apply_is_dry_run_first(
    cluster: tuple[SimServer, KubeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Replace=true is a PUT: its verdict is not the dry run's (a server-side apply), so
    # it is asked before anything is written, as every other object is.
    _sim, client = cluster
    seen = DryRuns(monkeypatch)
    result = sync(client, ["A_bad", "b1"], sync_options={"A_bad": "Replace=true"})
    assert result.phase is OperationPhase.FAILED
    assert result.message.startswith("1 manifest(s) rejected by the API server (dry run)")
    assert sorted(p.rsplit("/", 1)[1] for p in seen.dry) == ["A_bad", "b1"]
    assert seen.writes == []


def test_a_requested_dry_run_asks_the_server_about_every_object(
    cluster: tuple[SimServer, KubeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    _sim, client = cluster
    seen = DryRuns(monkeypatch)
    result = sync(client, ["d1", "d2", "d3"], dry_run=True)
    assert result.phase is OperationPhase.SUCCEEDED, result.message
    assert sorted(p.rsplit("/", 1)[1] for p in seen.dry) == ["d1", "d2", "d3"]
    assert seen.writes == []


def test_a_transient_error_on_the_first_write_is_not_taken_for_a_verdict(
    cluster: tuple[SimServer, KubeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 503 (or a timeout) on a write does not say whether it was stored: the sync fails
    # the wave as for any write, retryable, and never claims that nothing was applied.
    _sim, client = cluster
    original = AsyncKube._send  # below the per-request retrier
    refused: list[str] = []

    async def unavailable(kube: AsyncKube, method: str, path: str, **kw: Any) -> Any:
        dry = ("dryRun", "All") in (kw.get("query") or [])
        if method == "PATCH" and not dry and path.endswith("/t0"):
            refused.append(path)
            raise Transient("HTTP 503: unavailable", status=503)
        return await original(kube, method, path, **kw)

    monkeypatch.setattr(AsyncKube, "_send", unavailable)
    result = sync(client, ["t0", "t1"])
    assert result.phase is OperationPhase.FAILED
    assert "nothing was applied" not in result.message
    assert "t0" in result.message and "503" in result.message
    assert len(refused) > 1  # retried per request first, as every write is
    assert [(r.name, r.status) for r in result.resources] == [("t0", "SyncFailed")]


def test_a_rollout_asks_no_dry_run_of_objects_already_as_declared(
    cluster: tuple[SimServer, KubeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An image bump changes one object of many: the others are applied (Argo applies
    # every object of a sync) but not dry-run, and the one change is its own verdict.
    _sim, client = cluster
    names = ["c0", "c1", "c2", "c3"]
    assert sync(client, names, app_name="roll").phase is OperationPhase.SUCCEEDED
    seen = DryRuns(monkeypatch)
    result = sync(client, names, app_name="roll", data={"c2": {"v": "2"}})
    assert result.phase is OperationPhase.SUCCEEDED, result.message
    assert seen.dry == []
    assert [w.rsplit("/", 1)[1] for w in seen.writes] == names
    cm = client.resource_for("", "ConfigMap")
    assert (client.get_or_none(cm, "c2", "default") or {}).get("data") == {"v": "2"}
    # two changes: the second is dry-run before anything is written, the first is not
    seen.dry.clear()
    seen.writes.clear()
    now = {"c1": {"v": "3"}, "c2": {"v": "2"}, "c3": {"v": "3"}}
    result = sync(client, names, app_name="roll", data=now)
    assert result.phase is OperationPhase.SUCCEEDED, result.message
    assert [p.rsplit("/", 1)[1] for p in seen.dry] == ["c3"]
    assert [w.rsplit("/", 1)[1] for w in seen.writes] == names


def refuse_writes_of(monkeypatch: pytest.MonkeyPatch, *names: str) -> list[str]:
    """The API server refuses (422) every write of these objects, as an admission policy
    added since they were applied would; dry runs of them too. Returns the refused paths."""
    original = AsyncKube._send  # below the per-request retrier
    refused: list[str] = []

    async def policy(kube: AsyncKube, method: str, path: str, **kw: Any) -> Any:
        if method == "PATCH" and path.rsplit("/", 1)[1] in names:
            refused.append(path)
            raise Invalid(f"admission denied the request: {path.rsplit('/', 1)[1]}")
        return await original(kube, method, path, **kw)

    monkeypatch.setattr(AsyncKube, "_send", policy)
    return refused


def resync_refusing(
    client: KubeClient,
    monkeypatch: pytest.MonkeyPatch,
    names: list[str],
    *,
    change: str,
    refuse: str,
) -> tuple[Any, list[str]]:
    """Sync ``names`` into a new app, then have the server refuse every write of
    ``refuse`` and sync the app again with ``change``'s data changed: the result and the
    refused paths."""
    app_name = f"ref-{uuid.uuid4().hex[:6]}"
    assert sync(client, names, app_name=app_name).phase is OperationPhase.SUCCEEDED
    refused = refuse_writes_of(monkeypatch, refuse)
    return sync(client, names, app_name=app_name, data={change: {"v": "2"}}), refused


def test_an_unchanged_object_refused_after_the_change_fails_the_sync_not_the_change(
    cluster: tuple[SimServer, KubeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The refused object is live as Git declares it: the sync fails and names it, and the
    # change before it stays applied (what a dry run of it would have held back).
    _sim, client = cluster
    result, refused = resync_refusing(client, monkeypatch, ["a0", "a1"], change="a0", refuse="a1")
    assert result.phase is OperationPhase.FAILED
    assert "a1" in result.message and "admission denied" in result.message
    assert "nothing was" not in result.message
    assert len(refused) == 1  # its apply, never a dry run
    cm = client.resource_for("", "ConfigMap")
    assert (client.get_or_none(cm, "a0", "default") or {}).get("data") == {"v": "2"}
    assert client.get_or_none(cm, "a1", "default") is not None
    by_name = {r.name: r.status for r in result.resources}
    assert by_name == {"a0": "Synced", "a1": "SyncFailed"}


def test_a_refused_first_change_after_unchanged_applies_says_nothing_changed(
    cluster: tuple[SimServer, KubeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    _sim, client = cluster
    result, refused = resync_refusing(client, monkeypatch, ["a0", "b1"], change="b1", refuse="b1")
    assert result.phase is OperationPhase.FAILED
    assert result.message.startswith(
        "1 manifest(s) rejected by the API server (first write); nothing was changed (the 1 "
        "object(s) applied before it were already as Git declares them): app/b1.yaml: "
        "ConfigMap b1: admission denied the request: b1"
    ), result.message
    assert len(refused) == 1
    cm = client.resource_for("", "ConfigMap")
    assert "data" not in (client.get_or_none(cm, "b1", "default") or {})
