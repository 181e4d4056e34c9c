"""`hub app sync NAME --wait` and `hub app rollback NAME ID --wait`: when they exit 0.

The waiting logic reads the hub through the ``Fleet`` protocol; here a scripted fleet plays
the hub's answers in the order a real one gives them after a first sync: the history
entry appears before the reconciler has compared the cluster again (the record still says
OutOfSync / Missing), then Progressing, then Healthy. The end-to-end form runs against
`hub serve` in tests/e2e/test_serve_git_mistakes.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
import pytest

from hub.cli.status import _follow

ENTRY = {"id": 0, "phase": "Succeeded", "message": "successfully synced", "resources": []}


class ScriptedFleet:
    """``fleet.app(name)`` answers from ``states`` in turn (the last one repeats)."""

    kind = "api"

    def __init__(self, states: Sequence[tuple[str, str]], phase: str = "Succeeded") -> None:
        self.states = list(states)
        self.entry = {**ENTRY, "phase": phase}
        self.reads = 0

    def app(self, name: str) -> dict[str, Any]:
        sync, health = self.states[min(self.reads, len(self.states) - 1)]
        self.reads += 1
        return {
            "name": name,
            "sync": sync,
            "health": health,
            "operation": None,
            "destination": {"namespace": "web"},
        }

    def history(self, name: str) -> list[dict[str, Any]]:
        return [self.entry]


def exit_code(fleet: ScriptedFleet, *, want_synced: bool = True, timeout: float = 30) -> int:
    with pytest.raises(click.exceptions.Exit) as raised:
        _follow(fleet, "web", -1, timeout, want_synced=want_synced)  # type: ignore[arg-type]
    return raised.value.exit_code


def test_a_first_sync_exits_0_once_the_app_settles_synced_and_healthy() -> None:
    fleet = ScriptedFleet(
        [
            ("OutOfSync", "Missing"),  # read with the history entry: not compared yet
            ("OutOfSync", "Missing"),
            ("Synced", "Progressing"),
            ("Synced", "Healthy"),
        ]
    )
    assert exit_code(fleet) == 0


@pytest.mark.parametrize("health", ["Degraded", "Suspended"])
def test_a_sync_that_settles_unhealthy_exits_1_without_waiting_for_the_timeout(
    health: str,
) -> None:
    fleet = ScriptedFleet([("OutOfSync", "Missing"), ("Synced", health)])
    assert exit_code(fleet, timeout=3600) == 1


def test_a_failed_operation_exits_1_at_once() -> None:
    assert exit_code(ScriptedFleet([("OutOfSync", "Missing")], phase="Failed"), timeout=3600) == 1


def test_a_sync_that_never_settles_exits_1_at_the_timeout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert exit_code(ScriptedFleet([("OutOfSync", "Healthy")]), timeout=1) == 1
    assert "timed out" in capsys.readouterr().err


def test_a_rollback_needs_healthy_only_since_it_leaves_the_app_out_of_sync() -> None:
    fleet = ScriptedFleet([("OutOfSync", "Progressing"), ("OutOfSync", "Healthy")])
    assert exit_code(fleet, want_synced=False) == 0
