"""Services, their endpoints, and Ingresses.

- A Service of type LoadBalancer gets ``status.loadBalancer.ingress[{ip, ipMode: VIP}]``
  ``ready_delay`` after it was first seen (a stable fake IP per Service); other types have
  an empty ``loadBalancer``.
- A Service with a selector gets an Endpoints object of its name listing the selected
  pods' IPs (ready ones as addresses, others as notReadyAddresses), and, when the server
  serves discovery.k8s.io/v1, one EndpointSlice. Both go away with the Service.
- An Ingress gets ``status.loadBalancer.ingress[{ip}]`` after ``ready_delay``: the cluster's
  one fake ingress-controller address.
"""

from __future__ import annotations

from typing import Any

from clusters.sim.controllers._util import (
    fake_ip,
    is_terminating,
    map_selects,
    pod_is_ready,
    spec_of,
    status_of,
)
from clusters.sim.controllers.runtime import Runtime
from clusters.sim.controllers.templates import create_named
from clusters.sim.interface import Obj
from clusters.sim.readonly import thaw

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"


async def reconcile_service(rt: Runtime, namespace: str, name: str) -> float | None:
    api = rt.api
    path = f"Service/{namespace}/{name}"
    svc = await api.get("v1", "Service", namespace, name)
    if svc is None:
        rt.forget(path)
        if await api.get("v1", "Endpoints", namespace, name) is not None:
            await api.delete("v1", "Endpoints", namespace, name)
        return None
    if is_terminating(svc):
        return None
    spec = spec_of(svc)
    wait: float | None = None

    if spec.get("type") == "LoadBalancer":
        current = (status_of(svc).get("loadBalancer") or {}).get("ingress")
        if not current:
            waited = rt.waited(path, str(svc["metadata"].get("uid", "")))
            if waited < rt.ready_delay:
                wait = rt.ready_delay - waited
            else:
                ip = fake_ip("172.19", api.cluster, namespace, name)
                status = {
                    **status_of(svc),
                    "loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]},
                }
                svc = await rt.write_status(svc, status)
                rt.forget(path)
    elif (status_of(svc).get("loadBalancer") or {}).get("ingress"):
        svc = await rt.write_status(svc, {**status_of(svc), "loadBalancer": {}})

    if spec.get("selector") and spec.get("type") != "ExternalName":
        pods = [
            p
            for p in await rt.select("v1", "Pod", namespace, spec["selector"])
            if map_selects(spec["selector"], p["metadata"].get("labels"))
            and not is_terminating(p)
            and status_of(p).get("phase") not in ("Succeeded", "Failed")
            and status_of(p).get("podIP")
        ]
        await _endpoints(rt, svc, pods)
        if await rt.served("discovery.k8s.io/v1", "EndpointSlice"):
            await _endpoint_slice(rt, svc, pods)
    return wait


def _resolve_port(port: dict[str, Any], pod: Obj) -> int | None:
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for cport in container.get("ports") or []:
            if cport.get("name") == target:
                value = cport.get("containerPort")
                return value if isinstance(value, int) else None
    return None


def _endpoint_ports(svc: Obj, pod: Obj) -> list[dict[str, Any]]:
    ports = []
    for port in spec_of(svc).get("ports") or []:
        number = _resolve_port(port, pod)
        if number is None:
            continue
        entry: dict[str, Any] = {"port": number, "protocol": port.get("protocol", "TCP")}
        if port.get("name"):
            entry["name"] = port["name"]
        if port.get("appProtocol"):
            entry["appProtocol"] = port["appProtocol"]
        ports.append(entry)
    return ports


def _address(pod: Obj) -> dict[str, Any]:
    md = pod["metadata"]
    address: dict[str, Any] = {"ip": status_of(pod)["podIP"]}
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        address["nodeName"] = node
    address["targetRef"] = {
        "kind": "Pod",
        "namespace": md.get("namespace", ""),
        "name": md["name"],
        "uid": md.get("uid", ""),
    }
    return address


def endpoints_subsets(svc: Obj, pods: list[Obj]) -> list[dict[str, Any]]:
    """Endpoints subsets: pods grouped by their resolved port set, sorted for stability."""
    publish_all = bool(spec_of(svc).get("publishNotReadyAddresses"))
    groups: dict[str, dict[str, Any]] = {}
    for pod in sorted(pods, key=lambda p: str(status_of(p).get("podIP"))):
        ports = _endpoint_ports(svc, pod)
        if spec_of(svc).get("ports") and not ports:
            continue
        key = repr(ports)
        group = groups.setdefault(key, {"addresses": [], "notReadyAddresses": [], "ports": ports})
        kind = "addresses" if publish_all or pod_is_ready(pod) else "notReadyAddresses"
        group[kind].append(_address(pod))
    subsets = []
    for group in groups.values():
        subset = {k: v for k, v in group.items() if v}
        if subset.get("addresses") or subset.get("notReadyAddresses"):
            subsets.append(subset)
    return subsets


async def _endpoints(rt: Runtime, svc: Obj, pods: list[Obj]) -> None:
    api = rt.api
    md = svc["metadata"]
    labels = dict(md.get("labels") or {})
    if spec_of(svc).get("clusterIP") == "None":
        labels["service.kubernetes.io/headless"] = ""
    subsets = endpoints_subsets(svc, pods)
    current = await api.get("v1", "Endpoints", md.get("namespace", ""), md["name"])
    if current is None:
        manifest: Obj = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": md["name"],
                "namespace": md.get("namespace", ""),
                "labels": labels,
            },
        }
        if subsets:
            manifest["subsets"] = subsets
        await api.create(manifest)  # AlreadyExists: a race, retried from a fresh read
        return
    if (current.get("subsets") or []) == subsets and (
        current["metadata"].get("labels") or {}
    ) == labels:
        return
    updated = thaw(current)
    updated["metadata"]["labels"] = labels
    if subsets:
        updated["subsets"] = subsets
    else:
        updated.pop("subsets", None)
    await api.update(updated)


async def _endpoint_slice(rt: Runtime, svc: Obj, pods: list[Obj]) -> None:
    api = rt.api
    md = svc["metadata"]
    namespace = md.get("namespace", "")
    slices = [
        s
        for s in await api.list(
            "discovery.k8s.io/v1", "EndpointSlice", namespace, f"{SERVICE_NAME_LABEL}={md['name']}"
        )
        if (s["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY
    ]
    endpoints = []
    ports: list[dict[str, Any]] = []
    for pod in sorted(pods, key=lambda p: str(status_of(p).get("podIP"))):
        ready = pod_is_ready(pod)
        ports = ports or _endpoint_ports(svc, pod)
        entry: dict[str, Any] = {
            "addresses": [status_of(pod)["podIP"]],
            "conditions": {"ready": ready, "serving": ready, "terminating": False},
            "targetRef": _address(pod)["targetRef"],
        }
        if (pod.get("spec") or {}).get("nodeName"):
            entry["nodeName"] = pod["spec"]["nodeName"]
        endpoints.append(entry)
    labels = {
        **(md.get("labels") or {}),
        SERVICE_NAME_LABEL: md["name"],
        MANAGED_BY_LABEL: MANAGED_BY,
    }
    body = {"addressType": "IPv4", "endpoints": endpoints, "ports": ports}
    if not slices:
        manifest: Obj = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "",
                "namespace": namespace,
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "name": md["name"],
                        "uid": md.get("uid", ""),
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            **body,
        }
        await create_named(rt, manifest, md["name"])
        return
    current = slices[0]
    for extra in slices[1:]:
        await api.delete(
            "discovery.k8s.io/v1", "EndpointSlice", namespace, extra["metadata"]["name"]
        )
    if (
        all(current.get(k) == v for k, v in body.items())
        and current["metadata"].get("labels") == labels
    ):
        return
    updated = thaw(current)
    updated.update(body)
    updated["metadata"]["labels"] = labels
    await api.update(updated)


async def reconcile_ingress(rt: Runtime, namespace: str, name: str) -> float | None:
    api = rt.api
    path = f"Ingress/{namespace}/{name}"
    ingress = await api.get("networking.k8s.io/v1", "Ingress", namespace, name)
    if ingress is None:
        rt.forget(path)
        return None
    if is_terminating(ingress) or (status_of(ingress).get("loadBalancer") or {}).get("ingress"):
        rt.forget(path)
        return None
    waited = rt.waited(path, str(ingress["metadata"].get("uid", "")))
    if waited < rt.ready_delay:
        return rt.ready_delay - waited
    ip = fake_ip("172.20", api.cluster, "ingress-controller")
    await rt.write_status(
        ingress, {**status_of(ingress), "loadBalancer": {"ingress": [{"ip": ip}]}}
    )
    rt.forget(path)
    return None
