"""The Deployment controller's pure arithmetic: surge/unavailable rounding, how far a
rolling update scales each ReplicaSet, and the status counters."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusters.sim.controllers._util import int_or_percent
from clusters.sim.controllers.rollout import (
    RS,
    Counts,
    counts,
    fenceposts,
    is_complete,
    made_progress,
    max_unavailable,
    new_rs_replicas,
    scale_down_old,
    scale_plan,
)


@pytest.mark.parametrize(
    ("surge", "unavailable", "desired", "expected"),
    [
        (None, None, 3, (1, 0)),  # defaults 25%/25%: surge rounds up, unavailable down
        (None, None, 4, (1, 1)),
        (None, None, 10, (3, 2)),
        ("50%", "33%", 10, (5, 3)),
        (2, "10%", 5, (2, 0)),
        (0, 0, 5, (0, 1)),  # both zero would deadlock: unavailable becomes 1
        ("0%", "0%", 5, (0, 1)),
        (1, 0, 0, (1, 0)),
    ],
)
def test_fenceposts_round_like_kubernetes(
    surge: object, unavailable: object, desired: int, expected: tuple[int, int]
) -> None:
    assert fenceposts(surge, unavailable, desired) == expected


@pytest.mark.parametrize(
    ("value", "total", "round_up", "expected"),
    [
        ("25%", 3, True, 1),
        ("25%", 3, False, 0),
        ("100%", 7, False, 7),
        (4, 100, True, 4),
        ("5", 9, False, 5),
    ],
)
def test_int_or_percent_resolves_against_the_total(
    value: object, total: int, round_up: bool, expected: int
) -> None:
    assert int_or_percent(value, total, round_up=round_up) == expected


@pytest.mark.parametrize("bad", ["x%", True, 1.5, "ten"])
def test_int_or_percent_rejects_what_is_neither(bad: object) -> None:
    with pytest.raises(ValueError):
        int_or_percent(bad, 10, round_up=True)


def test_max_unavailable_is_zero_for_recreate_and_capped_at_desired() -> None:
    assert max_unavailable("Recreate", None, None, 5) == 0
    assert max_unavailable("RollingUpdate", None, None, 0) == 0
    assert max_unavailable("RollingUpdate", 0, 10, 3) == 3
    assert max_unavailable("RollingUpdate", None, None, 4) == 1


def old_rs(
    replicas: int, available: int | None = None, name: str = "old", created: float = 0
) -> RS:
    avail = replicas if available is None else available
    return RS(
        name=name,
        replicas=replicas,
        status_replicas=replicas,
        ready=avail,
        available=avail,
        created=created,
    )


def test_a_new_replicaset_starts_with_the_surge() -> None:
    assert new_rs_replicas(desired=3, surge=1, new=None, all_rs=[old_rs(3)]) == 1
    assert new_rs_replicas(desired=10, surge=3, new=None, all_rs=[old_rs(10)]) == 3


def test_the_new_replicaset_never_pushes_the_total_past_the_surge() -> None:
    new = RS(name="new", replicas=1)
    assert new_rs_replicas(desired=3, surge=1, new=new, all_rs=[new, old_rs(3)]) == 1
    assert new_rs_replicas(desired=3, surge=1, new=new, all_rs=[new, old_rs(2)]) == 2


def test_recreate_wants_every_replica_at_once() -> None:
    assert new_rs_replicas(desired=4, surge=0, new=None, all_rs=[], recreate=True) == 4


def test_unavailable_new_pods_keep_every_old_pod_serving() -> None:
    """The crash-loop case: maxUnavailable 0 and a new pod that never becomes available."""
    new = RS(name="new", replicas=1, status_replicas=1)
    assert scale_down_old(desired=3, unavailable=0, new=new, old=[old_rs(3)]) == {}


def test_old_pods_go_as_new_ones_become_available() -> None:
    new = RS(name="new", replicas=1, status_replicas=1, ready=1, available=1)
    assert scale_down_old(desired=3, unavailable=0, new=new, old=[old_rs(3)]) == {"old": 2}


def test_unhealthy_old_pods_are_cleaned_up_first_and_oldest_replicasets_go_first() -> None:
    new = RS(name="new", replicas=2, status_replicas=2, ready=2, available=2)
    older = old_rs(2, available=0, name="older", created=1)
    old = old_rs(2, name="old", created=2)
    changes = scale_down_old(desired=4, unavailable=1, new=new, old=[old, older])
    assert changes["older"] == 0  # its two unavailable pods cost nothing
    assert changes.get("old", 2) == 1  # then one available pod, keeping 3 of 4 available


@st.composite
def rollouts(draw: st.DrawFn) -> tuple[int, object, object]:
    desired = draw(st.integers(min_value=0, max_value=30))
    amount = st.one_of(
        st.integers(min_value=0, max_value=10),
        st.integers(min_value=0, max_value=100).map(lambda p: f"{p}%"),
    )
    return desired, draw(amount), draw(amount)


@given(rollouts())
def test_a_rolling_update_always_finishes_within_its_surge_and_availability_bounds(
    case: tuple[int, object, object],
) -> None:
    desired, surge_value, unavailable_value = case
    surge, unavailable = fenceposts(surge_value, unavailable_value, desired)
    new = RS(name="new", replicas=0, created=2)
    old = old_rs(desired, created=1)
    for _ in range(4 * desired + 4):
        target = new_rs_replicas(desired=desired, surge=surge, new=new, all_rs=[new, old])
        new = replace(new, replicas=target)
        assert new.replicas + old.replicas <= max(desired + surge, desired)
        left = scale_down_old(desired=desired, unavailable=unavailable, new=new, old=[old]).get(
            "old", old.replicas
        )
        old = replace(old, replicas=left, status_replicas=left, available=min(old.available, left))
        assert old.available + new.available >= min(desired - unavailable, desired)
        # the kubelet: every pod becomes available before the next pass
        new = replace(new, status_replicas=new.replicas, ready=new.replicas, available=new.replicas)
        if new.replicas == desired and old.replicas == 0:
            return
    pytest.fail(f"rollout stuck: new={new} old={old}")


def test_status_counters_follow_calculate_status() -> None:
    new = RS(name="new", replicas=2, status_replicas=1, ready=1, available=1)
    old = RS(name="old", replicas=2, status_replicas=3, ready=3, available=2)
    assert counts(new, [new, old]) == Counts(
        replicas=4, updated=1, ready=4, available=3, unavailable=1
    )
    assert counts(None, []) == Counts(replicas=0, updated=0, ready=0, available=0, unavailable=0)


def test_complete_needs_every_replica_updated_and_available() -> None:
    assert is_complete(3, Counts(replicas=3, updated=3, ready=3, available=3, unavailable=0))
    assert not is_complete(3, Counts(replicas=4, updated=3, ready=4, available=4, unavailable=0))
    assert not is_complete(3, Counts(replicas=3, updated=3, ready=3, available=2, unavailable=1))


@pytest.mark.parametrize(
    ("before", "after", "progress"),
    [
        ((3, 0, 3, 3), (4, 1, 3, 3), True),  # more updated
        ((4, 1, 3, 3), (3, 1, 3, 3), True),  # fewer old
        ((4, 1, 3, 3), (4, 1, 4, 3), True),  # more ready
        ((4, 1, 4, 3), (4, 1, 4, 4), True),  # more available
        ((4, 1, 3, 3), (4, 1, 3, 3), False),  # nothing moved (a crash loop)
    ],
)
def test_progress_is_any_counter_moving_forward(
    before: tuple[int, int, int, int], after: tuple[int, int, int, int], progress: bool
) -> None:
    def c(v: tuple[int, int, int, int]) -> Counts:
        return Counts(replicas=v[0], updated=v[1], ready=v[2], available=v[3], unavailable=0)

    assert made_progress(c(before), c(after)) is progress


def test_scaling_a_stuck_rollout_shares_new_replicas_in_proportion() -> None:
    """The Kubernetes documentation's example: 10 replicas, maxSurge 3, a rollout stuck with
    8 old and 5 new pods, scaled to 15: 3 more old and 2 more new."""
    old = RS(name="old", replicas=8, available=8, created=1, max_replicas=13)
    new = RS(name="new", replicas=5, available=0, created=2, max_replicas=13)
    plan = scale_plan(desired=15, surge=3, new=new, old=[old], rolling=True, status_replicas=13)
    assert plan == {"old": 11, "new": 7}


def test_scaling_down_a_stuck_rollout_takes_from_both_and_never_below_zero() -> None:
    old = RS(name="old", replicas=8, available=8, created=1, max_replicas=13)
    new = RS(name="new", replicas=5, available=0, created=2, max_replicas=13)
    plan = scale_plan(desired=5, surge=1, new=new, old=[old], rolling=True, status_replicas=13)
    assert sum(plan.values()) == 6  # desired + surge
    assert plan["old"] > plan["new"] >= 0
    assert scale_plan(desired=0, surge=0, new=new, old=[old], rolling=True, status_replicas=13) == {
        "old": 0,
        "new": 0,
    }


def test_a_single_active_replicaset_takes_the_whole_new_count() -> None:
    new = RS(name="new", replicas=3, available=3, created=2)
    idle = RS(name="old", replicas=0, created=1)
    assert scale_plan(desired=5, surge=2, new=new, old=[idle], rolling=True, status_replicas=3) == {
        "new": 5
    }
    # nothing active: the newest ReplicaSet is scaled
    assert scale_plan(
        desired=2, surge=1, new=None, old=[idle, replace(idle, name="older", created=0)],
        rolling=True, status_replicas=0,
    ) == {"old": 2}  # fmt: skip


def test_a_saturated_new_replicaset_retires_the_old_ones() -> None:
    new = RS(name="new", replicas=4, available=4, created=2)
    old = RS(name="old", replicas=1, available=1, created=1)
    assert scale_plan(desired=4, surge=1, new=new, old=[old], rolling=True, status_replicas=5) == {
        "old": 0
    }
