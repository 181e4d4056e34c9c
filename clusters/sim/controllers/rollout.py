"""The Deployment controller's arithmetic, pure: surge and unavailability, how far to scale
the new ReplicaSet up and the old ones down, and the status it reports.

Follows kube-controller-manager's ``deployment/rolling.go``, ``sync.go`` and
``util/deployment_util.go`` so that the simulated rollouts move in the same steps.
"""

from __future__ import annotations

import math
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
    # deployment.kubernetes.io/max-replicas as last written: the size the Deployment could
    # reach when this ReplicaSet was last scaled, the base of proportional scaling
    max_replicas: int | None = None


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


def _round(value: float) -> int:
    """Go's math.Round: halves away from zero."""
    return math.floor(abs(value) + 0.5) * (1 if value >= 0 else -1)


def _proportion(rs: RS, *, desired: int, surge: int, before: int, to_add: int, added: int) -> int:
    """GetProportion: this ReplicaSet's share of a scale, never past what is left to add."""
    if rs.replicas == 0 or to_add == 0 or to_add == added:
        return 0
    if desired == 0:
        fraction = -rs.replicas
    else:
        base = rs.max_replicas if rs.max_replicas else before
        fraction = _round(rs.replicas * (desired + surge) / base) - rs.replicas if base else 0
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def scale_plan(
    *,
    desired: int,
    surge: int,
    new: RS | None,
    old: Sequence[RS],
    rolling: bool,
    status_replicas: int,
) -> dict[str, int]:
    """The sizes ``dc.sync``'s scale gives to ReplicaSets on a scaling event or while paused.

    One active ReplicaSet (or none: the newest) takes the whole count; a saturated new one
    takes over from the old ones; otherwise, for a rolling update, ``desired + surge`` is
    shared out in proportion to each active ReplicaSet's size, leftovers to the largest.
    Returns the planned size of every ReplicaSet to touch (unchanged sizes included, so
    their annotations follow the new replica count).
    """
    everything = ([new] if new is not None else []) + sorted(
        old, key=lambda rs: (rs.created, rs.name), reverse=True
    )
    active = [rs for rs in everything if rs.replicas > 0]
    if len(active) <= 1:
        target = active[0] if active else (everything[0] if everything else None)
        return {} if target is None else {target.name: desired}
    if new is not None and new.replicas == desired and new.available == desired:
        return {rs.name: 0 for rs in active if rs is not new}
    if not rolling:
        return {}
    allowed = desired + surge if desired > 0 else 0
    to_add = allowed - sum(rs.replicas for rs in active)
    if to_add > 0:  # larger first; among equals, newer first
        order = sorted(active, key=lambda rs: (-rs.replicas, -rs.created, rs.name))
    else:  # larger first; among equals, older first
        order = sorted(active, key=lambda rs: (-rs.replicas, rs.created, rs.name))
    sizes: dict[str, int] = {}
    added = 0
    for rs in order:
        share = _proportion(
            rs, desired=desired, surge=surge, before=status_replicas, to_add=to_add, added=added
        )
        sizes[rs.name] = rs.replicas + share
        added += share
    if order and to_add != 0:
        first = order[0].name
        sizes[first] = max(sizes[first] + to_add - added, 0)
    return sizes


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
