"""Progressive sync (``spec.strategy.type: RollingSync``) as pure functions.

Argo CD's semantics (``applicationset_controller.go``: buildAppDependencyList,
buildAppSyncMap, updateApplicationSetApplicationStatus), decided from what the store
knows of the set's Applications:

- each Application belongs to the first step whose ``matchExpressions`` select its labels;
  an Application matched by no step is never synced by the strategy;
- an Application is *done* when it is Synced and Healthy at its new revision (its
  ``synced_sha`` is the revision it should run);
- the current step is the first one with an Application not done: Applications of later
  steps wait, those of the current step may sync, at most ``maxUpdate`` of them at once
  (name order decides which, so two workers asking at the same time agree);
- hub rules beyond Argo CD: an Application of the current or an earlier step that is
  Degraded, or whose sync of its new revision failed, halts the set (nothing more
  starts; the halting Application itself may still roll forward to a newer revision);
  ``hub rollout pause`` holds every sync of the set; ``hub rollout promote`` releases the
  current step whatever its ``maxUpdate`` (a manual gate is ``maxUpdate: 0``).

The worker asks ``plan_rollout`` before an automated sync of an owned Application (with
the revision it is about to sync, as the store may not know it yet); the hub's store loop
computes it for every RollingSync set to report ``applicationStatus`` and the current step.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from generators.errors import GeneratorError
from generators.selector import matches
from generators.spec import RollingSyncStep, Strategy, parse_appset
from hub.apps import AppRecord, AppSetRecord, AppStore, started_nothing
from hub.sync.model import declared_source_specs

log = logging.getLogger(__name__)

AppRolloutStatus = Literal["Waiting", "Pending", "Progressing", "Healthy"]
ROLLING_SYNC = "RollingSync"
_FAILED_PHASES = ("Failed", "Error")


def max_update_count(value: int | str, step_size: int) -> int:
    """How many Applications of a step of ``step_size`` may update at once: an int as is; a
    percentage of the step rounded down, but at least 1 unless it is 0% (Argo CD's rule)."""
    if isinstance(value, int):
        return value
    percent = int(value.rstrip("%"))
    if percent == 0:
        return 0
    return max(1, step_size * percent // 100)


@dataclass(frozen=True, kw_only=True)
class Member:
    """What the rollout needs of one Application of the set (from its store row)."""

    name: str
    labels: Mapping[str, str]
    source_key: str  # Applications with the same key track the same revision
    sync: str
    health: str
    desired_sha: str | None
    synced_sha: str | None
    op_phase: str = ""
    op_revision: str = ""


@dataclass(frozen=True, kw_only=True)
class Asking:
    """The Application a worker is about to sync: its fresh revision and sync status."""

    name: str
    revision: str
    sync: str


@dataclass(frozen=True, kw_only=True)
class Control:
    """The operator's hand on a set's rollout (persisted): paused, and the step released by
    ``hub rollout promote`` (1-based; forgotten when the rollout completes)."""

    paused: bool = False
    promoted_step: int | None = None


@dataclass(frozen=True, kw_only=True)
class AppStatus:
    app: str
    status: AppRolloutStatus
    step: int | None  # 1-based; None when no step selects the Application
    message: str
    go: bool = False  # may sync now

    def as_dict(self) -> dict[str, Any]:
        return {
            "application": self.app,
            "status": self.status,
            "step": None if self.step is None else str(self.step),
            "message": self.message,
        }


@dataclass(frozen=True, kw_only=True)
class Rollout:
    steps: int
    current_step: int | None  # 1-based; None when every step is done
    paused: bool
    promoted_step: int | None
    halted_by: str | None
    message: str
    apps: tuple[AppStatus, ...]

    def of(self, app: str) -> AppStatus | None:
        return next((a for a in self.apps if a.app == app), None)

    def hold_reason(self, app: str) -> str | None:
        """None when ``app`` may sync now, else why it waits."""
        found = self.of(app)
        if found is None:
            return "not an Application of this rollout"
        return None if found.go else found.message

    def as_dict(self) -> dict[str, Any]:
        return {
            "currentStep": None if self.current_step is None else str(self.current_step),
            "steps": self.steps,
            "paused": self.paused,
            "promotedStep": self.promoted_step,
            "haltedBy": self.halted_by,
            "message": self.message,
            "applicationStatus": [a.as_dict() for a in self.apps],
        }


def step_of(steps: Sequence[RollingSyncStep], labels: Mapping[str, str]) -> int | None:
    """The 0-based index of the first step selecting ``labels``, or None."""
    for i, step in enumerate(steps):
        if matches(step.selector, labels):
            return i
    return None


def plan_rollout(
    strategy: Strategy,
    members: Sequence[Member],
    control: Control = Control(),
    *,
    asking: Asking | None = None,
) -> Rollout:
    """The rollout of a RollingSync set now: each Application's status and whether it may
    sync; the current step; what halts or pauses it."""
    asked = next((m for m in members if asking and m.name == asking.name), None)

    def expected(m: Member) -> str | None:
        if asking is not None and asked is not None and m.source_key == asked.source_key:
            return asking.revision
        return m.desired_sha

    def sync_of(m: Member) -> str:
        return asking.sync if asking is not None and m.name == asking.name else m.sync

    # Each cluster's worker learns a new commit on its own refresh: for a moment some
    # Applications of one source want the new revision and the others still the old one.
    # None of them is done until they agree, or an earlier step that has not seen the commit
    # yet would count as done and the rollout would leap to the step that has.
    shas: dict[str, set[str]] = {}
    for m in members:
        if m.desired_sha and not (asked is not None and m.source_key == asked.source_key):
            shas.setdefault(m.source_key, set()).add(m.desired_sha)
    refreshing = sorted(m.name for m in members if len(shas.get(m.source_key, ())) > 1)

    def done(m: Member) -> bool:
        want = expected(m)
        return (
            m.name not in refreshing
            and sync_of(m) == "Synced"
            and m.health == "Healthy"
            and (want is None or m.synced_sha == want)
        )

    def broken(m: Member) -> str | None:
        if m.health == "Degraded":
            return f"{m.name} is Degraded"
        if m.op_phase in _FAILED_PHASES and m.op_revision and m.op_revision == expected(m):
            return f"the sync of {m.name} to {m.op_revision[:12]} {m.op_phase.lower()}"
        return None

    def in_flight(m: Member) -> bool:
        want = expected(m)
        return m.op_phase == "Running" or (want is not None and m.synced_sha == want)

    ordered = sorted(members, key=lambda m: m.name)
    by_step: dict[int, list[Member]] = {}
    unmatched: list[Member] = []
    for m in ordered:
        index = step_of(strategy.steps, m.labels)
        if index is None:
            unmatched.append(m)
        else:
            by_step.setdefault(index, []).append(m)
    current = next(
        (i for i in range(len(strategy.steps)) if any(not done(m) for m in by_step.get(i, []))),
        None,
    )
    halting: list[tuple[Member, str]] = []
    if current is not None:
        for i in range(current + 1):
            halting += [(m, why) for m in by_step.get(i, []) if (why := broken(m))]
    halted_by = halting[0][0].name if halting else None
    promoted = control.promoted_step if current is not None else None

    statuses: list[AppStatus] = []
    for i in range(len(strategy.steps)):
        step = strategy.steps[i]
        group = by_step.get(i, [])
        go: set[str] = set()
        hold = ""
        if i == current:
            flying = [m for m in group if not done(m) and in_flight(m)]
            waiting = [m for m in group if not done(m) and not in_flight(m)]
            cap = max_update_count(step.max_update, len(group))
            if promoted == i + 1:
                cap = len(group)
            if control.paused:
                hold = "the rollout is paused (hub rollout resume)"
            elif halting:
                hold = f"the rollout is halted: {halting[0][1]}"
                go = {m.name for m, _ in halting}
            elif cap == 0:
                hold = f"step {i + 1} has maxUpdate 0: waits for `hub rollout promote`"
                go = {m.name for m in flying}
            else:
                # Apps in flight were released already (a drift of theirs may be healed).
                go = {m.name for m in flying + waiting[: max(0, cap - len(flying))]}
                hold = f"step {i + 1} updates at most {cap} at once"
        for m in group:
            statuses.append(_status_of(m, i, current, go, hold, done(m), in_flight(m)))
    for m in unmatched:
        statuses.append(
            AppStatus(
                app=m.name,
                status="Healthy" if done(m) else "Waiting",
                step=None,
                message="selected by no step of spec.strategy: the rollout never syncs it",
            )
        )
    if current is None:
        message = "every step is done"
    elif control.paused:
        message = f"paused at step {current + 1}"
    elif halted_by is not None:
        message = f"halted at step {current + 1}: {halting[0][1]}; later steps keep their revision"
    else:
        message = f"step {current + 1} of {len(strategy.steps)} is rolling out"
    if refreshing:
        message += f" (not all on one revision yet: {', '.join(refreshing)} refreshing)"
    return Rollout(
        steps=len(strategy.steps),
        current_step=None if current is None else current + 1,
        paused=control.paused,
        promoted_step=promoted,
        halted_by=halted_by,
        message=message,
        apps=tuple(sorted(statuses, key=lambda s: s.app)),
    )


def _status_of(
    m: Member,
    index: int,
    current: int | None,
    go: set[str],
    hold: str,
    is_done: bool,
    flying: bool,
) -> AppStatus:
    step = index + 1
    if is_done:
        return AppStatus(
            app=m.name, status="Healthy", step=step, message="synced and healthy", go=True
        )
    if current is not None and index > current:
        return AppStatus(
            app=m.name,
            status="Waiting",
            step=step,
            message=f"waits for step {current + 1} to be synced and healthy",
        )
    if flying:
        return AppStatus(
            app=m.name,
            status="Progressing",
            step=step,
            message="synced, not healthy yet" if m.name in go else f"synced, not healthy; {hold}",
            go=m.name in go,
        )
    if m.name in go:
        return AppStatus(
            app=m.name, status="Pending", step=step, message="released: may sync", go=True
        )
    return AppStatus(app=m.name, status="Waiting", step=step, message=hold)


def source_key(spec: Mapping[str, Any]) -> str:
    """Which revision an Application tracks (its sources' repo, path-free): Applications
    with the same key move to the same new revision together."""
    keys = [
        (str(s.get("repoURL", "")), str(s.get("chart", "")), str(s.get("targetRevision", "")))
        for s in declared_source_specs(spec)
    ]
    return json.dumps(keys)


def member_of(rec: AppRecord) -> Member:
    """An Application's store row as the rollout sees it."""
    op = rec.operation_state or {}
    return Member(
        name=rec.name,
        labels=rec.labels,
        source_key=source_key(rec.spec),
        sync=rec.sync_status,
        health=rec.health_status,
        desired_sha=rec.desired_sha,
        synced_sha=rec.synced_sha,
        # A sync that never started (hub stopped first) is neither in flight nor a failure.
        op_phase="" if started_nothing(op) else str(op.get("phase") or ""),
        op_revision=str((op.get("syncResult") or {}).get("revision") or ""),
    )


def strategy_of(manifest: Mapping[str, Any], *, source: str) -> Strategy | None:
    """The RollingSync strategy of a stored ApplicationSet manifest, or None (no strategy,
    AllAtOnce, or a manifest that no longer parses: the set's controller reports that)."""
    spec = manifest.get("spec")
    if not isinstance(spec, Mapping) or spec.get("strategy") is None:
        return None  # most sets: no need to parse them on every tick
    try:
        strategy = parse_appset(manifest, source=source).spec.strategy
    except GeneratorError:
        return None
    return strategy if strategy is not None and strategy.type == ROLLING_SYNC else None


@functools.lru_cache(maxsize=512)
def _stored_strategy(manifest: str, source: str) -> Strategy | None:
    """``strategy_of`` a stored manifest's JSON text. Every automated sync of a set's
    Applications asks, and the text only changes with the set: parsed once per version
    (a ``Strategy`` is immutable, so sharing it is safe)."""
    return strategy_of(json.loads(manifest), source=source)


# ---------------------------------------------------------------- reading the store


def rollout_of(
    apps: AppStore,
    appset: str,
    *,
    asking: Asking | None = None,
    record: AppSetRecord | None = None,
) -> Rollout | None:
    """The rollout of stored set ``appset`` now, or None when it has no RollingSync strategy
    (one read of the set unless ``record`` is it, its Applications and its control row)."""
    if record is None:
        stored = apps.appset_manifest_text(appset)
        if stored is None:
            return None
        strategy = _stored_strategy(*stored)
    else:
        strategy = strategy_of(record.manifest, source=f"{record.source}:{record.file}")
    if strategy is None:
        return None
    paused, promoted = apps.rollout_control(appset)
    members = [member_of(r) for r in apps.list_apps(appset=appset, deleting=False)]
    return plan_rollout(
        strategy, members, Control(paused=paused, promoted_step=promoted), asking=asking
    )


@dataclass(frozen=True, kw_only=True)
class RolloutEvent:
    """A move of a set's rollout that notifications report (``on-rollout-*`` triggers)."""

    type: Literal["step-started", "halted", "completed"]
    step: int | None  # 1-based; None for "completed"
    steps: int
    revision: str  # the revisions the set's Applications move to (short, sorted)
    halted_by: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "step": None if self.step is None else str(self.step),
            "steps": self.steps,
            "revision": self.revision,
            "haltedBy": self.halted_by,
            "message": self.message,
        }


def rollout_events(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], *, revision: str
) -> list[RolloutEvent]:
    """What changed between two stored rollout statuses (``Rollout.as_dict``): a step that
    became current, a halt that appeared (or moved to another app or step), a rollout that
    finished. A step passed over between the two (its Applications synced within one
    look) is reported started too, so every step of a rollout is told in order. ``old``
    None is a set seen for the first time."""
    before = old or {}
    step, was = new.get("currentStep"), before.get("currentStep")
    steps = int(new.get("steps") or 0)
    halted, was_halted = new.get("haltedBy"), before.get("haltedBy")
    message = str(new.get("message") or "")

    def event(
        kind: Literal["step-started", "halted", "completed"], at: int | None = None
    ) -> RolloutEvent:
        return RolloutEvent(
            type=kind,
            step=at if at is not None else None if step is None else int(step),
            steps=steps,
            revision=revision,
            halted_by=halted if kind == "halted" else None,
            message=message,
        )

    out: list[RolloutEvent] = []
    if step is not None and (not before or step != was):
        # Steps passed between two looks (a quick step syncs within one poll) started too.
        now = int(step)
        first = now if not before else 1 if was is None or int(was) > now else int(was) + 1
        out += [event("step-started", k) for k in range(first, now + 1)]
    if halted is not None and step is not None and (halted != was_halted or step != was):
        out.append(event("halted"))
    if step is None and before and was is not None:
        out.append(event("completed"))
    return out


def revision_of(records: Sequence[AppRecord], rollout: Rollout) -> str:
    """The revisions the Applications of the current step move to (of every Application
    when the rollout is done), short and sorted ("" when unknown): the other steps may not
    have seen a new commit yet."""
    steps = {a.app: a.step for a in rollout.apps}
    current = [
        r
        for r in records
        if rollout.current_step is None or steps.get(r.name) == rollout.current_step
    ]
    return ",".join(sorted({r.desired_sha[:12] for r in current if r.desired_sha}))


OnRolloutEvents = Callable[[AppSetRecord, Mapping[str, Any], Sequence[RolloutEvent]], None]


def advance_rollouts(apps: AppStore, on_events: OnRolloutEvents | None = None) -> set[str]:
    """Recompute the rollout of every RollingSync set and record each that moved; a
    completed rollout forgets its promotion. ``on_events`` (the notifier) runs inside the
    status write's transaction with what moved. Returns the clusters whose workers should
    look again (the Applications of the sets that moved)."""
    wake: set[str] = set()
    for record in apps.list_appsets():
        rollout = rollout_of(apps, record.name, record=record)
        if rollout is None:
            continue
        if rollout.current_step is None:
            paused, promoted = apps.rollout_control(record.name)
            if promoted is not None:
                apps.set_rollout_control(record.name, paused=paused, promoted_step=None)
        old = apps.rollout_status(record.name)
        new = rollout.as_dict()
        if old == new:
            continue
        members = apps.list_apps(appset=record.name)
        with apps.store.atomic():
            apps.set_rollout_status(record.name, new)
            events = rollout_events(old, new, revision=revision_of(members, rollout))
            if events and on_events is not None:
                on_events(record, new, events)
        log.info("rollout of %s: %s", record.name, rollout.message)
        wake |= {r.cluster for r in members if r.cluster}
    return wake
