"""PersistentVolumeClaims: dynamically provisioned and Bound ``ready_delay`` after creation.

The claim gets ``spec.volumeName: pvc-<uid>``, the bind annotations, and status phase
Bound with the requested capacity and access modes. When the server stores
PersistentVolumes, a matching volume is created (reclaim policy Delete) and removed again
when its claim is gone.
"""

from __future__ import annotations

from typing import Any

from clusters.sim.controllers._util import is_terminating, spec_of, status_of
from clusters.sim.controllers.runtime import Runtime, error_reason
from clusters.sim.interface import Obj
from clusters.sim.readonly import thaw

PROVISIONER = "sim.gitops-hub.io/hostpath"


async def reconcile_claim(rt: Runtime, namespace: str, name: str) -> float | None:
    api = rt.api
    path = f"PersistentVolumeClaim/{namespace}/{name}"
    pvc = await api.get("v1", "PersistentVolumeClaim", namespace, name)
    if pvc is None or is_terminating(pvc) or status_of(pvc).get("phase") == "Bound":
        rt.forget(path)
        return None
    md = pvc["metadata"]
    uid = str(md.get("uid", ""))
    if not status_of(pvc).get("phase"):
        pvc = await rt.write_status(pvc, {"phase": "Pending"})
    waited = rt.waited(path, uid)
    if waited < rt.ready_delay:
        return rt.ready_delay - waited

    spec = spec_of(pvc)
    volume = str(spec.get("volumeName") or f"pvc-{uid}")
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    modes = list(spec.get("accessModes") or ["ReadWriteOnce"])
    if (
        await rt.served("v1", "PersistentVolume")
        and await api.get("v1", "PersistentVolume", None, volume) is None
    ):
        try:
            pv = await api.create(_volume(pvc, volume, storage, modes))
            await rt.write_status(pv, {"phase": "Bound"})
        except Exception as exc:
            if error_reason(exc) != "AlreadyExists":
                raise

    if spec.get("volumeName") != volume or "pv.kubernetes.io/bind-completed" not in (
        md.get("annotations") or {}
    ):
        updated = thaw(pvc)
        updated["spec"]["volumeName"] = volume
        updated["metadata"]["annotations"] = {
            **(md.get("annotations") or {}),
            "pv.kubernetes.io/bind-completed": "yes",
            "pv.kubernetes.io/bound-by-controller": "yes",
            "volume.beta.kubernetes.io/storage-provisioner": PROVISIONER,
            "volume.kubernetes.io/storage-provisioner": PROVISIONER,
        }
        pvc = await api.update(updated)
    await rt.write_status(
        pvc, {"phase": "Bound", "accessModes": modes, "capacity": {"storage": storage}}
    )
    rt.forget(path)
    return None


def _volume(pvc: Obj, name: str, storage: str, modes: list[str]) -> Obj:
    md = pvc["metadata"]
    spec = spec_of(pvc)
    pv_spec: dict[str, Any] = {
        "capacity": {"storage": storage},
        "accessModes": modes,
        "persistentVolumeReclaimPolicy": "Delete",
        "volumeMode": spec.get("volumeMode", "Filesystem"),
        "hostPath": {"path": f"/var/lib/sim-volumes/{name}", "type": ""},
        "claimRef": {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": md.get("namespace", ""),
            "name": md["name"],
            "uid": md.get("uid", ""),
        },
    }
    if spec.get("storageClassName"):
        pv_spec["storageClassName"] = spec["storageClassName"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
        },
        "spec": pv_spec,
    }


async def reconcile_volume(rt: Runtime, _namespace: str, name: str) -> float | None:
    """Delete a provisioned volume whose claim is gone (reclaim policy Delete)."""
    api = rt.api
    if not await rt.served("v1", "PersistentVolume"):
        return None
    pv = await api.get("v1", "PersistentVolume", None, name)
    if pv is None:
        return None
    spec = spec_of(pv)
    if spec.get("persistentVolumeReclaimPolicy") != "Delete":
        return None
    ref = spec.get("claimRef") or {}
    claim = await api.get("v1", "PersistentVolumeClaim", ref.get("namespace"), str(ref.get("name")))
    if claim is None or claim["metadata"].get("uid") != ref.get("uid"):
        await api.delete("v1", "PersistentVolume", None, name)
    return None
