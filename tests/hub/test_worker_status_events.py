"""A rolling Deployment writes its status five to ten times. The worker refreshes its app
only on the writes that can change what the app reports (its health, or anything the
compare reads), as Argo CD's controller does (``skipResourceUpdate``): the app still goes
Progressing, then Healthy, at the new revision. In-process hub against ``hub sim``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

import hub.worker.refresher
from clusters.sim import SimServer
from hub.controller import Hub, HubOptions
from hub.sync.health import HealthRules
from hub.sync.model import IgnoreDifference
from tests.clusters.cli_support import Hub as Cli
from tests.hub.test_controller_runtime import AUTO_APP as APP
from tests.hub.test_controller_runtime import run_checked, wait_until
from tests.sync.e2e_helpers import GitRepo

__all__ = ["run_checked"]  # the fixture, used by name

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(120)]

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: "nginx:{tag}"}}]
"""


def test_a_rollout_refreshes_its_app_on_health_changes_not_on_every_status_write(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run_checked: Callable[[Callable[[], Awaitable[None]]], None],
) -> None:
    healths: list[str] = []
    evaluations: list[str] = []
    write, evaluate = (
        hub.worker.refresher.Refresher._write,
        hub.worker.refresher.Refresher._evaluate,
    )

    async def recording_write(self: Any, name: str, **kw: Any) -> None:
        if name == "one" and kw.get("health_status") is not None:
            healths.append(kw["health_status"])
        await write(self, name, **kw)

    def counting_evaluate(self: Any, desired: Any) -> Any:
        evaluations.append(desired.app.name)
        return evaluate(self, desired)

    monkeypatch.setattr(hub.worker.refresher.Refresher, "_write", recording_write)
    monkeypatch.setattr(hub.worker.refresher.Refresher, "_evaluate", counting_evaluate)

    repo = GitRepo(tmp_path / "repo")
    with SimServer(clusters=["a"], ready_delay=0.1, kubeconfig_path=tmp_path / "k") as sim:
        first = repo.write(
            {"apps/a.yaml": APP.format(repo=repo.path), "app/web.yaml": DEPLOYMENT.format(tag=1)}
        )
        cli = Cli(tmp_path / "home")
        cli.ok("init")
        cli.ok("cluster", "add", "a", "--kubeconfig", str(sim.kubeconfig_path), "--context", "a")
        cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "apps")
        server = Hub(cli.home, HubOptions(git_poll_s=600, resync_s=600, shutdown_grace_s=5))

        def settled(sha: str) -> Callable[[], bool]:
            def check() -> bool:
                app = server.apps.get("one")
                return (
                    app is not None
                    and (app.sync_status, app.health_status, app.synced_sha)
                    == ("Synced", "Healthy", sha)
                    and not server.workers["a"].syncs_in_flight
                )

            return check

        async def body() -> None:
            async with anyio.create_task_group() as tg:
                await tg.start(server.run)
                await wait_until(settled(first), "the first rollout")
                cache = server.workers["a"].cache
                assert cache is not None
                events, unheard = cache.stats.events, cache.stats.unheard
                del healths[:], evaluations[:]

                new = repo.write({"app/web.yaml": DEPLOYMENT.format(tag=2)})
                await server.notify_git_push([str(repo.path)])
                await wait_until(settled(new), "the image rollout")
                await anyio.sleep(0.5)  # any late status write is in

                seen, skipped = cache.stats.events - events, cache.stats.unheard - unheard
                assert skipped >= 1, (seen, skipped)
                # every event of the rollout was the app's; those skipped were not compared
                assert len(evaluations) <= seen - skipped + 1, (evaluations, seen, skipped)
                assert "Progressing" in healths and healths[-1] == "Healthy", healths
                await server.shutdown()

        run_checked(body)


def _deployment(*, image: str, ready: int, generation: int = 2, rv: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "generation": generation,
            "resourceVersion": rv,
            "managedFields": [
                {"manager": "gitops-hub", "operation": "Apply", "fieldsV1": {"f:spec": {}}},
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "subresource": "status",
                    "time": f"2026-12-05T00:00:0{rv}Z",
                    "fieldsV1": {"f:status": {}},
                },
            ],
        },
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": image}]}}},
        "status": {
            "observedGeneration": generation,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": ready,
            "availableReplicas": ready,
        },
    }


@pytest.mark.parametrize(
    ("new", "rules", "unheard"),
    [
        # a status write, still Progressing (1 of 2 ready, then a new resourceVersion)
        (_deployment(image="a", ready=1, rv="2"), (), True),
        # the status write that makes it Healthy
        (_deployment(image="a", ready=2, rv="2"), (), False),
        # anything the compare reads
        (_deployment(image="b", ready=1, rv="2"), (), False),
        # ignore rules that read other managers' field sets: every change is heard
        (_deployment(image="a", ready=1, rv="2"), ("kube-controller-manager",), False),
    ],
)
def test_an_app_hears_the_changes_that_can_move_its_status(
    new: dict[str, Any], rules: tuple[str, ...], unheard: bool
) -> None:
    old = _deployment(image="a", ready=1)
    ignore = (IgnoreDifference(kind="Deployment", managed_fields_managers=rules),) if rules else ()
    worker = SimpleNamespace(
        _desired={"one": SimpleNamespace(app=SimpleNamespace(ignore_differences=ignore))},
        svc=SimpleNamespace(health_rules=HealthRules.default()),
    )
    assert hub.worker.refresher.Refresher._unheard(worker, "one", old, new) is unheard  # type: ignore[arg-type]
    # an app not rendered yet hears everything
    assert hub.worker.refresher.Refresher._unheard(worker, "two", old, new) is False  # type: ignore[arg-type]
