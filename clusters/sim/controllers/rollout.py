"""The Deployment controller's arithmetic, pure: surge and unavailability, how far to scale
the new ReplicaSet up and the old ones down, and the status it reports.

Follows kube-controller-manager's ``deployment/rolling.go``, ``sync.go`` and
``util/deployment_util.go`` so that the simulated rollouts move in the same steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from clusters.sim.controllers._util import int_or_percent


@dataclass(frozen=True, kw_only=True, slots=True)
class RS:
    """What the rollout needs of one ReplicaSet."""

    name: str
    replicas: int  # spec.replicas
    status_replicas: int = 0
    ready: int = 0
    available: int = 0
    created: float = 0.0  # creationTimestamp, for "oldest first"


def fenceposts(max_surge: object, max_unavailable: object, desired: int) -> tuple[int, int]:
    """(surge, unavailable) for ``desired`` replicas: surge rounds up, unavailable down, and
    both zero becomes unavailable 1 so a rollout can always move."""
    surge = int_or_percent(max_surge, desired, round_up=True)
    unavailable = int_or_percent(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_unavailable(
    strategy_type: str, max_surge: object, max_unavail: object, desired: int
) -> int:
    """deploymentutil.MaxUnavailable: 0 for Recreate or no replicas, never above desired."""
    if strategy_type != "RollingUpdate" or desired == 0:
        return 0
    return min(fenceposts(max_surge, max_unavail, desired)[1], desired)


def new_rs_replicas(
    *, desired: int, surge: int, new: RS | None, all_rs: Sequence[RS], recreate: bool = False
) -> int:
    """How many replicas the new ReplicaSet should have now (NewRSNewReplicas)."""
    if recreate:
        return desired
    current_new = new.replicas if new else 0
    current_total = sum(rs.replicas for rs in all_rs)
    max_total = desired + surge
    if current_total >= max_total:
        return current_new
    scale_up = min(max_total - current_total, desired - current_new)
    return current_new + max(scale_up, 0)


def scale_down_old(*, desired: int, unavailable: int, new: RS, old: Sequence[RS]) -> dict[str, int]:
    """New spec.replicas for old ReplicaSets during a rolling update (reconcileOldReplicaSets).

    Returns only the ReplicaSets whose replicas change. First unhealthy old replicas are
    cleaned up, then healthy ones scaled down while at least ``desired - unavailable``
    pods stay available.
    """
    old_pods = sum(rs.replicas for rs in old)
    if old_pods == 0:
        return {}
    all_rs = [new, *old]
    all_pods = sum(rs.replicas for rs in all_rs)
    min_available = desired - unavailable
    new_unavailable = new.replicas - new.available
    max_scaled_down = all_pods - min_available - new_unavailable
    if max_scaled_down <= 0:
        return {}

    changed: dict[str, int] = {}
    current = {rs.name: rs for rs in old}
    ordered = sorted(old, key=lambda rs: (rs.created, rs.name))

    # cleanupUnhealthyReplicas: scale away old pods that are not available anyway.
    cleaned = 0
    for rs in ordered:
        if cleaned >= max_scaled_down:
            break
        if rs.replicas == 0 or rs.replicas == rs.available:
            continue
        count = min(max_scaled_down - cleaned, rs.replicas - rs.available)
        updated = replace(rs, replicas=rs.replicas - count)
        current[rs.name] = updated
        changed[rs.name] = updated.replicas
        cleaned += count

    # scaleDownOldReplicaSetsForRollingUpdate: keep min_available pods available.
    everything = [new, *current.values()]
    available = sum(rs.available for rs in everything)
    if available > min_available:
        total = available - min_available
        done = 0
        for rs in sorted(current.values(), key=lambda r: (r.created, r.name)):
            if done >= total:
                break
            if rs.replicas == 0:
                continue
            count = min(rs.replicas, total - done)
            changed[rs.name] = rs.replicas - count
            done += count
    return changed


@dataclass(frozen=True, kw_only=True, slots=True)
class Counts:
    """The counters of a DeploymentStatus (calculateStatus)."""

    replicas: int
    updated: int
    ready: int
    available: int
    unavailable: int


def counts(new: RS | None, all_rs: Sequence[RS]) -> Counts:
    available = sum(rs.available for rs in all_rs)
    total_spec = sum(rs.replicas for rs in all_rs)
    return Counts(
        replicas=sum(rs.status_replicas for rs in all_rs),
        updated=new.status_replicas if new else 0,
        ready=sum(rs.ready for rs in all_rs),
        available=available,
        unavailable=max(total_spec - available, 0),
    )


def is_complete(desired: int, c: Counts) -> bool:
    """DeploymentComplete (the observedGeneration part is checked by the caller)."""
    return c.updated == desired and c.replicas == desired and c.available == desired


def made_progress(old: Counts, new: Counts) -> bool:
    """DeploymentProgressing: more updated/ready/available pods, or fewer old ones."""
    return (
        new.updated > old.updated
        or (new.replicas - new.updated) < (old.replicas - old.updated)
        or new.ready > old.ready
        or new.available > old.available
    )
