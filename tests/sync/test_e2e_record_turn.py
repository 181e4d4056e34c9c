"""A sync gives its hub-wide slot back before its history record waits its turn
(``Limits.cluster_done``, then ``WritesFirst.wait_turn``): the record needs no cluster,
and held there the slots of hundreds of finished syncs went back together when the turn
came, so the next hundreds started, and wrote, in one burst (issue 12). End to end through
the engine's Python API, as the hub's reconcilers call it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import anyio

from hub.sync.engine import SyncRequest, sync_application_blocking
from hub.sync.history import OperationPhase
from hub.sync.model import parse_application_yaml
from hub.sync.operation import Limits
from hub.sync.priority import WritesFirst
from hub.worker.slots import FairSlots
from tests.conftest import KubeEnv
from tests.sync.e2e_helpers import CLUSTER, GitRepo, application, engine_parts, hub_app

Kubectl = Callable[..., subprocess.CompletedProcess[str]]

CM = """
apiVersion: v1
kind: ConfigMap
metadata: {name: recorded}
data: {a: b}
"""


class SlotsAtTheGate(WritesFirst):
    """Notes the hub-wide slots held when the record asks for its turn."""

    def __init__(self, slots: FairSlots) -> None:
        super().__init__()
        self.slots = slots
        self.held_at_turn: list[int] = []

    async def wait_turn(self) -> None:
        self.held_at_turn.append(self.slots.borrowed)
        await super().wait_turn()


def test_the_record_waits_its_turn_without_a_hub_wide_slot(
    kube: KubeEnv, tmp_path: Path, kubectl: Kubectl, namespace: str
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write({"app/cm.yaml": CM})
    h = hub_app(kube, tmp_path)
    h.write_app(application("recorded", repo, namespace=namespace))
    app = parse_application_yaml(h.app_file.read_text(), source_file=str(h.app_file))
    home = h.hub.home
    slots = FairSlots(1)
    gate = SlotsAtTheGate(slots)
    released: list[int] = []

    with engine_parts(home) as parts:

        async def with_a_slot() -> None:
            async with slots.slot(CLUSTER) as hold:

                def cluster_done() -> None:
                    hold.release()
                    released.append(slots.borrowed)

                limits = Limits(cluster_done=cluster_done, writes_first=gate)
                result = await anyio.to_thread.run_sync(
                    lambda: sync_application_blocking(
                        parts.kube,
                        app,
                        SyncRequest(initiated_by="test"),
                        sources=parts.repos,
                        history=parts.history,
                        limits=limits,
                    )
                )
                assert result.phase is OperationPhase.SUCCEEDED, result.message
                assert not hold.holding
            assert slots.borrowed == 0  # given back once, not twice

        anyio.run(with_a_slot)
        assert released == [0]
        assert gate.held_at_turn == [0]  # the record asked for its turn holding no slot
        (entry,) = parts.history.entries(app.name)
        assert entry.phase is OperationPhase.SUCCEEDED
    assert kubectl("get", "configmap", "recorded", "-n", namespace).returncode == 0
