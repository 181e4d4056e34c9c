"""The watch history keeps what kube-apiserver's watch cache keeps: the last 75 seconds of
changes, never fewer than the last 100, never more than the count it was given
(clusters.sim.store)."""

from __future__ import annotations

import pytest

from clusters.sim.selectors import EVERYTHING
from clusters.sim.store import DEFAULT_HISTORY_WINDOW, HISTORY_FLOOR, ApiError, ClusterStore
from tests.sim.test_status_writes import _type


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _store(clock: _Clock, history: int = 1000) -> ClusterStore:
    s = ClusterStore("c", history=history, clock=clock)
    s.create(_type(s, "v1", "Namespace"), "", {"metadata": {"name": "default"}}, manager="t")
    return s


def _write(s: ClusterStore, n: int, start: int = 0) -> list[str]:
    """n ConfigMaps created; their resourceVersions."""
    rt = _type(s, "v1", "ConfigMap")
    out = []
    for i in range(start, start + n):
        made = s.create(rt, "default", {"metadata": {"name": f"cm-{i}"}}, manager="t")
        out.append(made["metadata"]["resourceVersion"])
    return out


def _replayed(s: ClusterStore, since: str) -> int:
    """How many changes a watch from ``since`` replays (ApiError 410 when too old)."""
    w = s.watch(None, None, labels=EVERYTHING, since=since)
    try:
        return w.queue.qsize()
    finally:
        s.unwatch(w)


def test_changes_older_than_the_window_are_forgotten_beyond_the_floor() -> None:
    clock = _Clock()
    s = _store(clock)
    old = _write(s, 300)
    clock.now += DEFAULT_HISTORY_WINDOW + 1
    new = _write(s, 1, start=300)
    # The old changes went, but the newest HISTORY_FLOOR stayed (with the new one).
    assert _replayed(s, old[-HISTORY_FLOOR]) == HISTORY_FLOOR
    with pytest.raises(ApiError) as err:
        _replayed(s, old[-HISTORY_FLOOR - 2])
    assert err.value.code == 410
    assert _replayed(s, new[0]) == 0


def test_changes_inside_the_window_are_kept_past_the_floor() -> None:
    clock = _Clock()
    s = _store(clock)
    first = _write(s, 500)
    clock.now += DEFAULT_HISTORY_WINDOW - 1
    _write(s, 10, start=500)
    # All 509 changes after the first ConfigMap's are still there.
    assert _replayed(s, first[0]) == 509


def test_the_count_still_bounds_a_busy_window() -> None:
    clock = _Clock()
    s = _store(clock, history=50)
    rvs = _write(s, 200)
    assert _replayed(s, rvs[-50]) == 49
    with pytest.raises(ApiError):
        _replayed(s, rvs[-52])


def test_a_quiet_cluster_keeps_its_last_changes_however_old() -> None:
    clock = _Clock()
    s = _store(clock)
    rvs = _write(s, 20)
    clock.now += 10 * DEFAULT_HISTORY_WINDOW
    _write(s, 1, start=20)
    # Under the floor nothing is forgotten, as the apiserver's cache never shrinks below it.
    assert _replayed(s, rvs[0]) == 20
