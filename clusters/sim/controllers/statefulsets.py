"""The StatefulSet controller: pods ``<sts>-<ordinal>`` with stable names and claims.

OrderedReady (the default) creates one pod at a time, each after the previous is Ready, and
removes them highest ordinal first; Parallel does everything at once. A RollingUpdate
replaces pods whose ``controller-revision-hash`` is not the update revision, highest
ordinal first, one at a time, honouring ``partition``; OnDelete leaves them. One
PersistentVolumeClaim ``<template>-<sts>-<ordinal>`` per volumeClaimTemplate and pod.
Each template is recorded as a ControllerRevision ``<sts>-<hash>`` (see revisions.py); new
pods always get the update revision's template, even below a partition.
"""

from __future__ import annotations

from typing import Any

from clusters.sim.clock import now_epoch
from clusters.sim.controllers._util import (
    availability,
    int_field,
    is_terminating,
    owned_by,
    owner_reference,
    pod_is_active,
    pod_is_ready,
    prune_zero,
    spec_of,
    status_of,
    template_hash,
)
from clusters.sim.controllers.revisions import sync_revisions
from clusters.sim.controllers.runtime import Runtime, error_reason
from clusters.sim.controllers.templates import pod_from_template
from clusters.sim.interface import Obj
from clusters.sim.readonly import thaw

REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def _ordinal(sts_name: str, pod: Obj) -> int | None:
    name = pod["metadata"]["name"]
    prefix = f"{sts_name}-"
    if not name.startswith(prefix) or not name[len(prefix) :].isdigit():
        return None
    return int(name[len(prefix) :])


async def _ensure_claims(rt: Runtime, sts: Obj, ordinal: int) -> list[dict[str, Any]]:
    """Create the pod's claims if missing; return the pod volumes that mount them."""
    api = rt.api
    spec = spec_of(sts)
    name = sts["metadata"]["name"]
    namespace = sts["metadata"].get("namespace", "")
    selector_labels = (spec.get("selector") or {}).get("matchLabels") or {}
    policy = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    volumes = []
    for template in spec.get("volumeClaimTemplates") or []:
        tmeta = template.get("metadata") or {}
        claim_name = f"{tmeta.get('name')}-{name}-{ordinal}"
        volumes.append(
            {"name": tmeta.get("name"), "persistentVolumeClaim": {"claimName": claim_name}}
        )
        if await api.get("v1", "PersistentVolumeClaim", namespace, claim_name) is not None:
            continue
        metadata: dict[str, Any] = {
            "name": claim_name,
            "namespace": namespace,
            "labels": {**(tmeta.get("labels") or {}), **selector_labels},
        }
        if tmeta.get("annotations"):
            metadata["annotations"] = dict(tmeta["annotations"])
        if policy.get("whenDeleted") == "Delete":
            metadata["ownerReferences"] = [owner_reference(sts)]
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": metadata,
            "spec": thaw(template.get("spec") or {}),
        }
        try:
            await api.create(claim)
        except Exception as exc:
            if error_reason(exc) != "AlreadyExists":
                raise
    return volumes


async def reconcile_statefulset(rt: Runtime, namespace: str, name: str) -> float | None:
    api = rt.api
    sts = await api.get("apps/v1", "StatefulSet", namespace, name)
    if sts is None or is_terminating(sts):
        return None
    spec = spec_of(sts)
    replicas = int_field(spec, "replicas", 1)
    start = int_field(spec.get("ordinals") or {}, "start", 0)
    template = spec.get("template") or {}
    revision_hash = template_hash(template, int_field(status_of(sts), "collisionCount", 0))
    update_revision = f"{name}-{revision_hash}"
    old_status = status_of(sts)
    current_revision = str(old_status.get("currentRevision") or update_revision)
    await sync_revisions(rt, sts, template, revision_hash, keep={current_revision, update_revision})
    parallel = spec.get("podManagementPolicy") == "Parallel"
    strategy = spec.get("updateStrategy") or {}
    rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
    partition = int_field(strategy.get("rollingUpdate") or {}, "partition", 0)

    pods: dict[int, Obj] = {}
    for pod in await rt.select("v1", "Pod", namespace, spec.get("selector")):
        if owned_by(pod, sts):
            ordinal = _ordinal(name, pod)
            if ordinal is not None:
                pods[ordinal] = pod
    wanted = range(start, start + replicas)
    nodes = await rt.nodes()

    # Failed pods are replaced, like the real controller does.
    for ordinal, pod in list(pods.items()):
        if status_of(pod).get("phase") == "Failed" and not is_terminating(pod):
            await api.delete("v1", "Pod", namespace, pod["metadata"]["name"])
            del pods[ordinal]

    blocked = False
    for ordinal in wanted:
        existing = pods.get(ordinal)
        if existing is None:
            volumes = await _ensure_claims(rt, sts, ordinal)
            pod_name = f"{name}-{ordinal}"
            manifest = pod_from_template(
                template,
                name=pod_name,
                namespace=namespace,
                owner_ref=owner_reference(sts),
                labels={
                    REVISION_LABEL: update_revision,
                    POD_NAME_LABEL: pod_name,
                    POD_INDEX_LABEL: str(ordinal),
                },
                node_name=nodes[ordinal % len(nodes)].name,
                spec_overrides={"hostname": pod_name},
            )
            if spec.get("serviceName"):
                manifest["spec"]["subdomain"] = spec["serviceName"]
            if volumes:
                claimed = {v["name"] for v in volumes}
                kept = [
                    v for v in manifest["spec"].get("volumes") or [] if v.get("name") not in claimed
                ]
                manifest["spec"]["volumes"] = kept + volumes
            try:
                pods[ordinal] = await api.create(manifest)
            except Exception as exc:
                if error_reason(exc) != "AlreadyExists":
                    raise
                return 0.05  # the old pod of that name is still going away
            if not parallel:
                blocked = True
                break
        elif not parallel and (not pod_is_ready(existing) or is_terminating(existing)):
            blocked = True
            break

    # Scale down: highest ordinal first (one at a time unless Parallel).
    excess = sorted((o for o in pods if o not in wanted), reverse=True)
    if excess and not blocked:
        for ordinal in excess if parallel else excess[:1]:
            if not is_terminating(pods[ordinal]):
                await api.delete("v1", "Pod", namespace, pods[ordinal]["metadata"]["name"])
            del pods[ordinal]

    # Rolling update: replace the highest outdated pod once all are ready.
    in_range = [pods[o] for o in wanted if o in pods]
    if rolling and not blocked and not excess and len(in_range) == replicas:
        all_ready = all(pod_is_ready(p) and pod_is_active(p) for p in in_range)
        outdated = [
            o
            for o in wanted
            if o in pods
            and o >= start + partition
            and (pods[o]["metadata"].get("labels") or {}).get(REVISION_LABEL) != update_revision
        ]
        if outdated and (all_ready or parallel):
            victim = max(outdated)
            await api.delete("v1", "Pod", namespace, pods[victim]["metadata"]["name"])
            del pods[victim]

    status, wait = _status(sts, list(pods.values()), current_revision, update_revision, rolling)
    await rt.write_status(sts, status)
    return wait


def _status(
    sts: Obj, pods: list[Obj], current_revision: str, update_revision: str, rolling: bool
) -> tuple[dict[str, Any], float | None]:
    spec = spec_of(sts)
    min_ready = int_field(spec, "minReadySeconds", 0)
    now = now_epoch()
    active = [p for p in pods if not is_terminating(p)]
    current = updated = 0
    for pod in active:
        revision = (pod["metadata"].get("labels") or {}).get(REVISION_LABEL)
        current += revision == current_revision
        updated += revision == update_revision
    ready, available, wait = availability(active, min_ready, now)
    replicas = len(active)
    if (
        rolling
        and updated == replicas
        and ready == replicas
        and replicas == int_field(spec, "replicas", 1)
    ):
        current_revision, current = update_revision, updated
    status = prune_zero(
        {
            "observedGeneration": sts["metadata"].get("generation", 0),
            "replicas": replicas,
            "readyReplicas": ready,
            "currentReplicas": current,
            "updatedReplicas": updated,
            "currentRevision": current_revision,
            "updateRevision": update_revision,
            "collisionCount": int_field(status_of(sts), "collisionCount", 0),
            "availableReplicas": available,
        },
        keep=("replicas", "availableReplicas", "collisionCount"),
    )
    conditions = status_of(sts).get("conditions")
    if conditions:
        status["conditions"] = conditions
    return status, (wait + 0.01 if wait is not None else None)
