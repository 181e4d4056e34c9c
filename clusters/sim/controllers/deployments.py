"""The Deployment controller: ReplicaSets per pod template, rolling or recreate rollouts,
history pruning, and the status and conditions ``kubectl rollout status`` and Argo CD read.

Follows kube-controller-manager's deployment controller (``rolling.go``, ``recreate.go``,
``sync.go``, ``progress.go``). Not simulated: proportional scaling of several active
ReplicaSets while a rollout is in progress (a scale then goes through the rolling-update
arithmetic instead), ``spec.rollbackTo``, and the ReplicaFailure condition.
"""

from __future__ import annotations

from typing import Any

from clusters.sim.clock import now_epoch, rfc3339
from clusters.sim.controllers._util import (
    find_condition,
    int_field,
    is_terminating,
    owned_by,
    owner_reference,
    parse_time,
    prune_zero,
    set_condition,
    spec_of,
    status_of,
    template_hash,
    without_condition,
)
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
from clusters.sim.controllers.runtime import Runtime, error_reason
from clusters.sim.interface import Obj
from clusters.sim.readonly import thaw

REVISION = "deployment.kubernetes.io/revision"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
# Annotations the controller does not copy from the Deployment to its ReplicaSets.
_NOT_COPIED = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    DESIRED,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
}

NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"


def _condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    now = rfc3339()
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def _revision(rs: Obj) -> int:
    try:
        return int((rs.get("metadata", {}).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _annotation_int(rs: Obj, key: str) -> int | None:
    value = (rs.get("metadata", {}).get("annotations") or {}).get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# pod-template-hash by template, by identity: every pass over a Deployment hashes its
# template (a JSON rendering), which changes only with the Deployment's spec. The
# templates are the stored versions', never changed in place; each entry keeps its
# template alive, so no other object can take its id while it is cached.
_HASHES: dict[int, tuple[Obj, int, str]] = {}
_HASHES_KEPT = 4096


def _hash_of(template: Obj, collisions: int) -> str:
    """``template_hash(template, collisions)``, computed once per stored template."""
    cached = _HASHES.get(id(template))
    if cached is not None and cached[0] is template and cached[1] == collisions:
        return cached[2]
    value = template_hash(template, collisions)
    if len(_HASHES) >= _HASHES_KEPT:
        del _HASHES[next(iter(_HASHES))]  # the oldest
    _HASHES[id(template)] = (template, collisions, value)
    return value


def _model(rs: Obj) -> RS:
    status = status_of(rs)
    return RS(
        name=rs["metadata"]["name"],
        replicas=int_field(spec_of(rs), "replicas", 1),
        status_replicas=int_field(status, "replicas", 0),
        ready=int_field(status, "readyReplicas", 0),
        available=int_field(status, "availableReplicas", 0),
        created=parse_time(rs["metadata"].get("creationTimestamp")) or 0.0,
        max_replicas=_annotation_int(rs, MAX_REPLICAS),
    )


class _Sync:
    """One pass of the controller over one Deployment."""

    def __init__(self, rt: Runtime, d: Obj, rss: list[Obj]):
        self.rt = rt
        self.d = d
        self.name: str = d["metadata"]["name"]
        self.namespace: str = d["metadata"].get("namespace", "")
        spec = spec_of(d)
        self.desired = int_field(spec, "replicas", 1)
        self.template: dict[str, Any] = spec.get("template") or {}
        strategy = spec.get("strategy") or {}
        self.strategy = str(strategy.get("type") or "RollingUpdate")
        rolling = strategy.get("rollingUpdate") or {}
        self.max_surge_value = rolling.get("maxSurge")
        self.max_unavailable_value = rolling.get("maxUnavailable")
        if self.strategy == "RollingUpdate":
            self.surge, self.unavailable = fenceposts(
                self.max_surge_value, self.max_unavailable_value, self.desired
            )
        else:
            self.surge, self.unavailable = 0, 0
        deadline = spec.get("progressDeadlineSeconds", 600)
        self.deadline: int | None = deadline if isinstance(deadline, int) else None
        self.paused = bool(spec.get("paused"))
        self.sync_only = self.paused
        self.history_limit = int_field(spec, "revisionHistoryLimit", 10)
        self.old_status = status_of(d)
        self.conditions: list[dict[str, Any]] = [
            dict(c) for c in self.old_status.get("conditions") or [] if isinstance(c, dict)
        ]
        self.collisions = int_field(self.old_status, "collisionCount", 0)
        # One model per ReplicaSet for the whole pass (sorting, sizing and the status read
        # each one several times), by identity: the objects are the stored versions,
        # never changed in place, and the dict keeps each one alive so no id is reused.
        self._models: dict[int, tuple[Obj, RS]] = {}
        self.hash = _hash_of(self.template, self.collisions)
        self.new_name = f"{self.name}-{self.hash}"
        self.rss = sorted(rss, key=lambda rs: (self.model(rs).created, rs["metadata"]["name"]))
        self.new_rs = next((rs for rs in self.rss if rs["metadata"]["name"] == self.new_name), None)

    def model(self, rs: Obj) -> RS:
        """``_model(rs)``, made once per ReplicaSet version in this pass."""
        cached = self._models.get(id(rs))
        if cached is not None and cached[0] is rs:
            return cached[1]
        made = _model(rs)
        self._models[id(rs)] = (rs, made)
        return made

    @property
    def old_rss(self) -> list[Obj]:
        return [rs for rs in self.rss if rs is not self.new_rs]

    def _replace(self, old: Obj, new: Obj) -> None:
        self.rss = [new if rs is old else rs for rs in self.rss]
        if self.new_rs is old:
            self.new_rs = new

    # -- writes ----------------------------------------------------------------------

    async def scale(self, rs: Obj, replicas: int) -> None:
        annotations = dict(rs["metadata"].get("annotations") or {})
        wanted = {DESIRED: str(self.desired), MAX_REPLICAS: str(self.desired + self.surge)}
        if int_field(spec_of(rs), "replicas", 1) == replicas and all(
            annotations.get(k) == v for k, v in wanted.items()
        ):
            return
        # A new object over the stored one's parts, not a deep copy: the store copies
        # what it is sent, and nothing here changes what it read.
        updated = {
            **rs,
            "metadata": {**rs["metadata"], "annotations": {**annotations, **wanted}},
            "spec": {**rs["spec"], "replicas": replicas},
        }
        self._replace(rs, await self.rt.api.update(updated))

    async def create_new_rs(self, replicas: int, revision: int) -> None:
        tmeta = self.template.get("metadata") or {}
        labels = {**(tmeta.get("labels") or {}), HASH_LABEL: self.hash}
        selector = thaw(spec_of(self.d).get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: self.hash}
        annotations = {
            k: v
            for k, v in (self.d["metadata"].get("annotations") or {}).items()
            if k not in _NOT_COPIED
        }
        annotations.update(
            {
                REVISION: str(revision),
                DESIRED: str(self.desired),
                MAX_REPLICAS: str(self.desired + self.surge),
            }
        )
        rs_spec: dict[str, Any] = {
            "replicas": replicas,
            "selector": selector,
            "template": {
                **thaw(self.template),
                "metadata": {**thaw(tmeta), "labels": labels},
            },
        }
        min_ready = int_field(spec_of(self.d), "minReadySeconds", 0)
        if min_ready:
            rs_spec["minReadySeconds"] = min_ready
        manifest: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": self.new_name,
                "namespace": self.namespace,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [owner_reference(self.d)],
            },
            "spec": rs_spec,
        }
        try:
            created = await self.rt.api.create(manifest)
        except Exception as exc:
            if error_reason(exc) != "AlreadyExists":
                raise
            # A ReplicaSet of that name that is not ours: hash again with a new salt.
            self.collisions += 1
            raise
        self.rss.append(created)
        self.new_rs = created
        if self.deadline is not None:
            self.conditions = set_condition(
                self.conditions,
                _condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    f'Created new replica set "{self.new_name}"',
                ),
            )

    async def sync_new_rs_revision(self, revision: int) -> None:
        """An existing new ReplicaSet: newest revision, the Deployment's minReadySeconds."""
        rs = self.new_rs
        assert rs is not None
        min_ready = int_field(spec_of(self.d), "minReadySeconds", 0)
        if _revision(rs) < revision or int_field(spec_of(rs), "minReadySeconds", 0) != min_ready:
            updated = thaw(rs)
            if _revision(rs) < revision:
                updated["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
            if min_ready:
                updated["spec"]["minReadySeconds"] = min_ready
            else:
                updated["spec"].pop("minReadySeconds", None)
            self._replace(rs, await self.rt.api.update(updated))
        if self.deadline is not None and find_condition(self.conditions, "Progressing") is None:
            self.conditions = set_condition(
                self.conditions,
                _condition(
                    "Progressing",
                    "True",
                    "FoundNewReplicaSet",
                    f'Found new replica set "{self.new_name}"',
                ),
            )

    # -- strategies ------------------------------------------------------------------

    def next_revision(self) -> int:
        return max((_revision(rs) for rs in self.old_rss), default=0) + 1

    async def rolling(self) -> None:
        revision = self.next_revision()
        if self.new_rs is None:
            replicas = new_rs_replicas(
                desired=self.desired,
                surge=self.surge,
                new=None,
                all_rs=[self.model(rs) for rs in self.rss],
            )
            await self.create_new_rs(replicas, revision)
        else:
            await self.sync_new_rs_revision(revision)
        new_rs = self.new_rs
        assert new_rs is not None
        new_model = self.model(new_rs)
        if new_model.replicas > self.desired:
            await self.scale(new_rs, self.desired)
        elif new_model.replicas < self.desired:
            target = new_rs_replicas(
                desired=self.desired,
                surge=self.surge,
                new=new_model,
                all_rs=[self.model(rs) for rs in self.rss],
            )
            await self.scale(new_rs, target)
        assert self.new_rs is not None
        changes = scale_down_old(
            desired=self.desired,
            unavailable=self.unavailable,
            new=self.model(self.new_rs),
            old=[self.model(rs) for rs in self.old_rss],
        )
        for rs in list(self.old_rss):
            if rs["metadata"]["name"] in changes:
                await self.scale(rs, changes[rs["metadata"]["name"]])

    async def recreate(self) -> None:
        active_old = [rs for rs in self.old_rss if int_field(spec_of(rs), "replicas", 1) > 0]
        for rs in active_old:
            await self.scale(rs, 0)
        if active_old:
            return
        old_uids = {rs["metadata"].get("uid") for rs in self.old_rss}
        if old_uids:
            pods = await self.rt.select(
                "v1", "Pod", self.namespace, spec_of(self.d).get("selector")
            )
            for pod in pods:
                owners = pod.get("metadata", {}).get("ownerReferences") or []
                if any(o.get("uid") in old_uids for o in owners) and status_of(pod).get(
                    "phase"
                ) not in ("Succeeded", "Failed"):
                    return  # old pods still running: wait for them to go
        revision = self.next_revision()
        if self.new_rs is None:
            await self.create_new_rs(self.desired, revision)
        else:
            await self.sync_new_rs_revision(revision)
            await self.scale(self.new_rs, self.desired)

    def is_scaling_event(self) -> bool:
        """An active ReplicaSet was last sized for another replica count (isScalingEvent)."""
        return any(
            (wanted := _annotation_int(rs, DESIRED)) is not None and wanted != self.desired
            for rs in self.rss
            if int_field(spec_of(rs), "replicas", 1) > 0
        )

    async def sync_scale(self) -> None:
        """dc.sync's scale: for a paused Deployment or a change of replicas alone."""
        plan = scale_plan(
            desired=self.desired,
            surge=self.surge,
            new=self.model(self.new_rs) if self.new_rs is not None else None,
            old=[self.model(rs) for rs in self.old_rss],
            rolling=self.strategy == "RollingUpdate",
            status_replicas=int_field(self.old_status, "replicas", 0),
        )
        for rs in list(self.rss):
            if rs["metadata"]["name"] in plan:
                await self.scale(rs, plan[rs["metadata"]["name"]])

    # -- status ----------------------------------------------------------------------

    def status(self) -> tuple[dict[str, Any], float | None]:
        """The new DeploymentStatus and, while a rollout is pending, when to check its deadline."""
        models = [self.model(rs) for rs in self.rss]
        new_model = self.model(self.new_rs) if self.new_rs is not None else None
        now_counts = counts(new_model, models)
        floor = self.desired - max_unavailable(
            self.strategy, self.max_surge_value, self.max_unavailable_value, self.desired
        )
        conditions = self.conditions
        if now_counts.available >= floor:
            conditions = set_condition(
                conditions,
                _condition(
                    "Available",
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                ),
            )
        else:
            conditions = set_condition(
                conditions,
                _condition(
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                ),
            )
        wait: float | None = None
        if self.deadline is None:
            conditions = without_condition(conditions, "Progressing")
        elif not self.sync_only:
            conditions, wait = self._progress(conditions, now_counts, new_model)
        status: dict[str, Any] = prune_zero(
            {
                "observedGeneration": self.d["metadata"].get("generation", 0),
                "replicas": now_counts.replicas,
                "updatedReplicas": now_counts.updated,
                "readyReplicas": now_counts.ready,
                "availableReplicas": now_counts.available,
                "unavailableReplicas": now_counts.unavailable,
            }
        )
        status["conditions"] = conditions
        if self.collisions or "collisionCount" in self.old_status:
            status["collisionCount"] = self.collisions
        return status, wait

    def _progress(
        self, conditions: list[dict[str, Any]], now_counts: Counts, new_model: RS | None
    ) -> tuple[list[dict[str, Any]], float | None]:
        assert self.deadline is not None
        current = find_condition(conditions, "Progressing")
        if (
            now_counts.replicas == now_counts.updated
            and current is not None
            and current.get("reason") == NEW_RS_AVAILABLE
        ):
            return conditions, None
        subject = f'ReplicaSet "{new_model.name}"' if new_model else f'Deployment "{self.name}"'
        old = self.old_status
        old_counts = Counts(
            replicas=int_field(old, "replicas", 0),
            updated=int_field(old, "updatedReplicas", 0),
            ready=int_field(old, "readyReplicas", 0),
            available=int_field(old, "availableReplicas", 0),
            unavailable=int_field(old, "unavailableReplicas", 0),
        )
        if is_complete(self.desired, now_counts):
            return set_condition(
                conditions,
                _condition(
                    "Progressing",
                    "True",
                    NEW_RS_AVAILABLE,
                    f"{subject} has successfully progressed.",
                ),
            ), None
        if made_progress(old_counts, now_counts):
            fresh = _condition(
                "Progressing", "True", "ReplicaSetUpdated", f"{subject} is progressing."
            )
            if current is not None and current.get("status") == "True":
                fresh["lastTransitionTime"] = current.get("lastTransitionTime")
            conditions = [*without_condition(conditions, "Progressing"), fresh]
            # Look again when the deadline counted from this update (whole seconds, as
            # written) has passed: no event of our own status write will ask for it.
            since = parse_time(fresh["lastUpdateTime"]) or now_epoch()
            return conditions, max(since + self.deadline - now_epoch(), 0.0) + 0.05
        if current is None:
            return conditions, None
        if current.get("reason") == TIMED_OUT:
            return conditions, None
        since = parse_time(current.get("lastUpdateTime")) or now_epoch()
        remaining = since + self.deadline - now_epoch()
        if remaining < 0:
            return set_condition(
                conditions,
                _condition(
                    "Progressing", "False", TIMED_OUT, f"{subject} has timed out progressing."
                ),
            ), None
        return conditions, remaining + 0.05

    async def cleanup(self) -> None:
        """Delete the oldest fully scaled-down ReplicaSets beyond revisionHistoryLimit."""
        candidates = [
            rs
            for rs in self.old_rss
            if int_field(spec_of(rs), "replicas", 1) == 0
            and int_field(status_of(rs), "replicas", 0) == 0
            and int_field(status_of(rs), "observedGeneration", 0)
            >= int(rs["metadata"].get("generation", 0))
            and not is_terminating(rs)
        ]
        excess = len(candidates) - max(self.history_limit, 0)
        if excess <= 0:
            return
        candidates.sort(key=lambda rs: (_revision(rs), self.model(rs).created))
        for rs in candidates[:excess]:
            await self.rt.api.delete(
                "apps/v1", "ReplicaSet", self.namespace, rs["metadata"]["name"]
            )
            self.rss = [r for r in self.rss if r is not rs]


async def reconcile_deployment(rt: Runtime, namespace: str, name: str) -> float | None:
    api = rt.api
    d = await api.get("apps/v1", "Deployment", namespace, name)
    if d is None or is_terminating(d):
        return None
    rss = [
        rs
        for rs in await rt.select("apps/v1", "ReplicaSet", namespace, spec_of(d).get("selector"))
        if owned_by(rs, d)
    ]
    sync = _Sync(rt, d, rss)

    if sync.deadline is not None:
        current = find_condition(sync.conditions, "Progressing")
        if current is None or current.get("reason") != TIMED_OUT:
            was_paused = current is not None and current.get("reason") == PAUSED
            if sync.paused and not was_paused:
                sync.conditions = set_condition(
                    sync.conditions,
                    _condition("Progressing", "Unknown", PAUSED, "Deployment is paused"),
                )
            elif not sync.paused and was_paused:
                sync.conditions = set_condition(
                    sync.conditions,
                    _condition(
                        "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed"
                    ),
                )

    # Like the real controller, a paused Deployment or a change of replicas alone is only
    # scaled (proportionally across ReplicaSets), without a rollout or progress estimate.
    sync.sync_only = sync.paused or sync.is_scaling_event()
    try:
        if sync.sync_only:
            await sync.sync_scale()
        elif sync.strategy == "Recreate":
            await sync.recreate()
        else:
            await sync.rolling()
    except Exception as exc:
        if error_reason(exc) == "AlreadyExists" and sync.collisions != int_field(
            sync.old_status, "collisionCount", 0
        ):
            await rt.api.update_status(
                {**d, "status": {**sync.old_status, "collisionCount": sync.collisions}}
            )
            return 0.0
        raise

    status, wait = sync.status()
    if (
        is_complete(
            sync.desired,
            counts(
                sync.model(sync.new_rs) if sync.new_rs else None,
                [sync.model(rs) for rs in sync.rss],
            ),
        )
        or sync.paused
    ):
        await sync.cleanup()

    # The Deployment carries its current revision like the real controller sets it.
    if sync.new_rs is not None:
        revision = str(_revision(sync.new_rs))
        annotations = d["metadata"].get("annotations") or {}
        if annotations.get(REVISION) != revision:
            meta = {**d["metadata"], "annotations": {**annotations, REVISION: revision}}
            d = await api.update({**d, "metadata": meta})  # (the store copies what it is sent)
    await rt.write_status(d, status)
    return wait
