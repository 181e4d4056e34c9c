"""When a worker asks its cluster for its version (hub.worker.connection.probe_due): not
while the cluster's watches show it answering, always while the probe itself fails."""

from __future__ import annotations

from hub.worker.connection import PROBE_S, probe_due


def test_a_cluster_heard_within_the_period_is_not_probed() -> None:
    assert not probe_due(100.0, 100.0 + PROBE_S / 2, failing=False)
    assert not probe_due(100.0, 100.0 + PROBE_S - 0.001, failing=False)


def test_a_quiet_cluster_is_probed() -> None:
    assert probe_due(100.0, 100.0 + PROBE_S, failing=False)
    assert probe_due(0.0, 5_000.0, failing=False)  # never heard from


def test_a_failing_probe_asks_again_whatever_the_watches_say() -> None:
    assert probe_due(100.0, 100.5, failing=True)
