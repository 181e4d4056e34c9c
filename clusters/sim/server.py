"""The simulator's HTTPS server: many clusters on one port, each under ``/clusters/NAME``.

One aiohttp application routes every request by hand (one catch-all route is faster than
hundreds of patterns): the cluster prefix, then faults, then the bearer token, then the
Kubernetes REST path. Storage calls are synchronous and run on this loop, so a request's
read-modify-write is atomic without locks. ``/sim/...`` is the admin API (own token).
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import functools
import hmac
import logging
import os
import secrets
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from clusters import wirejson
from clusters.errors import ClusterUsageError
from clusters.sim.controllers.scheduler import Scheduler
from clusters.sim.faults import NO_FAULTS, FaultError, FaultSettings
from clusters.sim.http2 import H2Connections, H2ServerConnection, by_alpn
from clusters.sim.httpapi import Answer, SimRequest, open_stream
from clusters.sim.kinds import BUILTIN, ResourceType
from clusters.sim.kubeconfig import ClusterEntry, write_kubeconfig
from clusters.sim.objectapi import StoreObjectAPI
from clusters.sim.selectors import (
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from clusters.sim.stats import FullCollectionFreezer, ProcessStats
from clusters.sim.store import (
    DEFAULT_GC_DELAY,
    DEFAULT_HISTORY,
    WAKE,
    ApiError,
    ClusterStore,
    Delivery,
    Obj,
    Watcher,
    bad_request,
    clone_obj,
    load_yaml,
)
from clusters.sim.tls import CertificateAuthority, server_ssl_context

log = logging.getLogger(__name__)

KUBE_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T00:00:00Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}

PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
DEFAULT_WATCH_TIMEOUT = 1800.0
MAX_BODY = 3 * 1024 * 1024


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=wirejson.dumps(obj), status=status, content_type="application/json")


def _status_response(err: ApiError) -> web.Response:
    return _json(err.status(), err.code)


def _unauthorized() -> web.Response:
    return _status_response(ApiError(401, "Unauthorized", "Unauthorized"))


ADMIN = "admin"
ANONYMOUS = "system:anonymous"
# What kubeadm's RBAC (system:public-info-viewer) lets system:unauthenticated read.
_PUBLIC_PATHS = frozenset({"version", "version/", "healthz", "livez", "readyz"})
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def _public_info(method: str, tail: str) -> bool:
    return method == "GET" and (
        tail in _PUBLIC_PATHS or tail.startswith(("healthz/", "livez/", "readyz/"))
    )


def _anonymous_forbidden(method: str, tail: str, *, watch: bool = False) -> ApiError:
    """The 403 kube-apiserver's RBAC gives system:anonymous, in its resource or path form."""
    user = f'User "{ANONYMOUS}"'
    segs = [s for s in tail.split("/") if s]
    group, rest = "", []
    if segs[:2] == ["api", "v1"]:
        group, rest = "", segs[2:]
    elif segs[:1] == ["apis"] and len(segs) >= 3:
        group, rest = segs[1], segs[3:]
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    elif len(rest) == 2 and rest[0] == "namespaces" and method != "POST":
        rest = ["namespaces", rest[1]]
    if not rest:
        return ApiError(
            403,
            "Forbidden",
            f'forbidden: {user} cannot {method.lower()} path "/{tail}"',
            {},
        )
    resource = "/".join([rest[0], *rest[2:3]])
    name = rest[1] if len(rest) > 1 else ""
    if method == "GET":
        verb = ("watch" if watch else "list") if not name else "get"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = _VERBS.get(method, method.lower())
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    qualified = f"{rest[0]}.{group}" if group else rest[0]  # GroupResource.String()
    subject = f'{qualified} "{name}"' if name else qualified
    details: Obj = {"kind": rest[0]}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return ApiError(
        403,
        "Forbidden",
        f'{subject} is forbidden: {user} cannot {verb} resource "{resource}" in API group '
        f'"{group}" {scope}',
        details,
    )


NOT_FOUND_PATH = ApiError(404, "NotFound", "the server could not find the requested resource", {})


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def _user_agent_manager(request: SimRequest) -> str:
    agent = request.headers.get("User-Agent", "")
    return agent.split("/", 1)[0].strip() or "unknown"


def _wants_table(request: SimRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "as=Table" in accept and "g=meta.k8s.io" in accept


def _check_accept(request: SimRequest) -> None:
    """Refuse what we cannot send: an Accept that lists only protobuf or CBOR."""
    accept = request.headers.get("Accept")
    if not accept:
        return
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in (
            "application/json",
            "application/*",
            "*/*",
            "application/yaml",
            "text/plain",
            "",
        ):
            return
    raise ApiError(
        406,
        "NotAcceptable",
        "only the following media types are accepted: application/json, application/yaml",
    )


# Protobuf request bodies ------------------------------------------------------------------
#
# kubectl's typed commands (``kubectl create namespace|configmap|secret|serviceaccount``)
# send protobuf. The simulator reads those few simple kinds; any other protobuf body is a
# 415, which the docs list as a gap. Field numbers are those of k8s.io/api's generated.proto.

_PROTO_MAGIC = b"k8s\x00"
# field number -> (JSON name, how to read it); "msg:X" nests message X, "map:s"/"map:b" are
# map<string,string|bytes>, "rep:" prefixes repeated fields.
_PROTO_MESSAGES: dict[str, dict[int, tuple[str, str]]] = {
    "ObjectMeta": {
        1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"),
        11: ("labels", "map:s"), 12: ("annotations", "map:s"),
        13: ("ownerReferences", "rep:msg:OwnerReference"), 14: ("finalizers", "rep:str"),
    },
    "OwnerReference": {
        1: ("kind", "str"), 3: ("name", "str"), 4: ("uid", "str"), 5: ("apiVersion", "str"),
        6: ("controller", "bool"), 7: ("blockOwnerDeletion", "bool"),
    },
    "ConfigMap": {1: ("metadata", "msg:ObjectMeta"), 2: ("data", "map:s"), 3: ("binaryData", "map:b"), 4: ("immutable", "bool")},
    "Secret": {1: ("metadata", "msg:ObjectMeta"), 2: ("data", "map:b"), 3: ("type", "str"), 4: ("stringData", "map:s"), 5: ("immutable", "bool")},
    "Namespace": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "rep:str")},
    "ServiceAccount": {
        1: ("metadata", "msg:ObjectMeta"), 3: ("imagePullSecrets", "rep:msg:LocalObjectReference"),
        4: ("automountServiceAccountToken", "bool"),
    },
    "LocalObjectReference": {1: ("name", "str")},
}  # fmt: skip
_PROTO_KINDS = frozenset(
    {("", "ConfigMap"), ("", "Secret"), ("", "Namespace"), ("", "ServiceAccount")}
)


def _proto_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of one protobuf message; raises ValueError."""
    out: list[tuple[int, int | bytes]] = []
    pos, end = 0, len(data)

    def varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            if pos >= end or shift > 63:
                raise ValueError("truncated varint")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    while pos < end:
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.append((number, varint()))
        elif wire == 2:
            length = varint()
            if pos + length > end:
                raise ValueError("truncated field")
            out.append((number, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _proto_message(data: bytes, message: str) -> Obj:
    import base64

    spec = _PROTO_MESSAGES[message]
    out: Obj = {}
    for number, value in _proto_fields(data):
        if number not in spec:
            continue  # server-set or unsupported fields: ignored, as a server would overwrite them
        name, how = spec[number]
        repeated = how.startswith("rep:")
        how = how.removeprefix("rep:")
        item: Any
        if how == "str" and isinstance(value, bytes):
            item = value.decode()
        elif how == "bool" and isinstance(value, int):
            item = bool(value)
        elif how.startswith("msg:") and isinstance(value, bytes):
            item = _proto_message(value, how[4:])
        elif how.startswith("map:") and isinstance(value, bytes):
            entry = dict(_proto_fields(value))
            key, val = entry.get(1, b""), entry.get(2, b"")
            if not isinstance(key, bytes) or not isinstance(val, bytes):
                raise ValueError(f"bad map entry in {message}.{name}")
            text = base64.b64encode(val).decode() if how == "map:b" else val.decode()
            out.setdefault(name, {})[key.decode()] = text
            continue
        else:
            raise ValueError(f"unexpected wire type for {message}.{name}")
        if repeated:
            out.setdefault(name, []).append(item)
        elif item != "":  # gogo-protobuf writes empty strings for unset fields
            out[name] = item
    return out


def _decode_protobuf(raw: bytes, rt: ResourceType) -> Obj:
    try:
        if not raw.startswith(_PROTO_MAGIC):
            raise ValueError("missing the k8s protobuf prefix")
        envelope = dict(_proto_fields(raw[len(_PROTO_MAGIC) :]))
        type_meta, body = envelope.get(1, b""), envelope.get(2, b"")
        if not isinstance(type_meta, bytes) or not isinstance(body, bytes):
            raise ValueError("malformed runtime.Unknown envelope")
        tm = {n: v.decode() for n, v in _proto_fields(type_meta) if isinstance(v, bytes)}
        if tm.get(2) not in (None, "", rt.kind):
            raise ValueError(f"kind {tm.get(2)} does not match {rt.kind}")
        obj = _proto_message(body, rt.kind)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(
            f"the object provided is unrecognized (must be of type {rt.kind}): {exc}"
        ) from None
    return {"apiVersion": rt.api_version, "kind": rt.kind, **obj}


# Discovery -----------------------------------------------------------------------------


def _api_resource(rt: ResourceType) -> list[Obj]:
    main: Obj = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    out = [main]
    for sub in rt.subresources:
        entry: Obj = {
            "name": f"{rt.plural}/{sub}",
            "singularName": "",
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": ["get", "patch", "update"],
        }
        if sub == "scale":
            entry.update(group="autoscaling", version="v1", kind="Scale")
        elif sub == "finalize":
            entry["verbs"] = ["update"]
        out.append(entry)
    return out


@dataclass
class _Discovery:
    """Discovery documents of one registry revision (shared when a cluster has no CRDs):
    the legacy ones (a document per group and per group version) and the aggregated ones
    (``/api`` and ``/apis`` each answer every version's resources in one document)."""

    revision: int
    api_group_list: Obj
    groups: dict[str, Obj]
    resource_lists: dict[tuple[str, str], Obj]
    aggregated_core: list[Obj]  # the items of /api's APIGroupDiscoveryList
    aggregated_groups: list[Obj]  # the items of /apis's


# Aggregated discovery (GA in Kubernetes 1.30; v2beta1 since 1.26): what a client asks for
# in its Accept header, and the media type of the answer.
AGGREGATED_GROUP = "apidiscovery.k8s.io"
AGGREGATED_VERSIONS = ("v2", "v2beta1")


def _aggregated_version(request: SimRequest) -> str | None:
    """The aggregated-discovery version the request's Accept prefers over plain JSON (the
    first acceptable media range wins, as an API server negotiates), or None."""
    for part in request.headers.get("Accept", "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media.lower() not in ("application/json", "application/*", "*/*"):
            continue
        named = dict(p.split("=", 1) for p in params if "=" in p)
        if not named.get("g") and not named.get("as"):
            return None  # plain JSON comes first
        if (
            named.get("g") == AGGREGATED_GROUP
            and named.get("v") in AGGREGATED_VERSIONS
            and named.get("as") == "APIGroupDiscoveryList"
        ):
            return named["v"]
    return None


def _aggregated_answer(items: list[Obj], version: str) -> web.Response:
    doc = {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"{AGGREGATED_GROUP}/{version}",
        "metadata": {},
        "items": items,
    }
    media = f"application/json;g={AGGREGATED_GROUP};v={version};as=APIGroupDiscoveryList"
    return web.Response(body=wirejson.dumps(doc), headers={"Content-Type": media})


def _aggregated_resource(entries: list[Obj], group: str, version: str) -> Obj:
    """One kind's legacy discovery entries (``_api_resource``) in the aggregated form."""
    main, subresources = entries[0], entries[1:]
    out: Obj = {
        "resource": main["name"],
        "responseKind": {"group": group, "version": version, "kind": main["kind"]},
        "scope": "Namespaced" if main["namespaced"] else "Cluster",
        "singularResource": main["singularName"],
        "verbs": main["verbs"],
    }
    for key in ("shortNames", "categories"):
        if key in main:
            out[key] = main[key]
    if subresources:
        out["subresources"] = [
            {
                "subresource": sub["name"].split("/", 1)[1],
                "responseKind": {
                    "group": sub.get("group", group),
                    "version": sub.get("version", version),
                    "kind": sub["kind"],
                },
                "verbs": sub["verbs"],
            }
            for sub in subresources
        ]
    return out


def _aggregated_group(
    name: str, versions: list[str], by_gv: dict[tuple[str, str], list[ResourceType]]
) -> Obj:
    return {
        "metadata": {"name": name} if name else {},
        "versions": [
            {
                "version": v,
                "resources": [
                    _aggregated_resource(_api_resource(rt), name, v) for rt in by_gv[(name, v)]
                ],
                "freshness": "Current",
            }
            for v in versions
        ],
    }


def _build_discovery(revision: int, types: Iterable[ResourceType]) -> _Discovery:
    by_gv: dict[tuple[str, str], list[ResourceType]] = {}
    group_versions: dict[str, list[str]] = {}
    for rt in types:
        by_gv.setdefault((rt.group, rt.version), []).append(rt)
        if rt.group:
            versions = group_versions.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
    from clusters.sim.kinds import _version_priority

    groups: dict[str, Obj] = {}
    for group, versions in group_versions.items():
        versions.sort(key=_version_priority)
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups[group] = {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": gvs,
            "preferredVersion": gvs[0],
        }
    resource_lists = {
        (g, v): {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{g}/{v}" if g else v,
            "resources": [entry for rt in rts for entry in _api_resource(rt)],
        }
        for (g, v), rts in by_gv.items()
    }
    api_group_list = {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {k: v for k, v in g.items() if k not in ("kind", "apiVersion")} for g in groups.values()
        ],
    }
    core_versions = sorted({v for g, v in by_gv if not g}, key=_version_priority)
    aggregated_core = [_aggregated_group("", core_versions, by_gv)] if core_versions else []
    aggregated_groups = [
        _aggregated_group(group, versions, by_gv) for group, versions in group_versions.items()
    ]
    return _Discovery(
        revision, api_group_list, groups, resource_lists, aggregated_core, aggregated_groups
    )


_BUILTIN_DISCOVERY = _build_discovery(0, BUILTIN)


# The fleet -------------------------------------------------------------------------------


@dataclass
class SimCluster:
    name: str
    token: str
    store: ClusterStore
    faults: FaultSettings = NO_FAULTS
    controllers: asyncio.Task[None] | None = None
    discovery: _Discovery | None = None
    # Open watch streams of API clients (not the controllers' own subscription).
    streams: set[Watcher] = field(default_factory=set)

    def set_faults(self, settings: FaultSettings) -> None:
        """Switch faults (on the loop). An outage or an error rate also ends the open watch
        streams, as a failing API server's connections do: without it a client's watch
        opened before the fault kept delivering events, and the fault reached only new
        requests. Latency alone leaves them open."""
        self.faults = settings
        if settings.outage is not None or settings.error_rate > 0:
            for watcher in list(self.streams):
                watcher.aborted = settings.outage is not None
                watcher.close()

    def discovery_docs(self) -> _Discovery:
        registry = self.store.kinds
        if not registry.has_custom():
            return _BUILTIN_DISCOVERY
        if self.discovery is None or self.discovery.revision != registry.revision:
            self.discovery = _build_discovery(registry.revision, registry.all())
        return self.discovery


def _valid_cluster_name(name: str) -> bool:
    import re

    return bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name))


@dataclass
class Fleet:
    """Every cluster one server process serves, plus the admin token and persistence."""

    admin_token: str
    state_dir: Path | None = None
    controllers: bool = True
    ready_delay: float = 0.2
    gc_delay: float = DEFAULT_GC_DELAY
    root_ca: str = ""
    anonymous_auth: bool = True
    history: int = DEFAULT_HISTORY
    bookmark_interval: float = 30.0
    clusters: dict[str, SimCluster] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _dirty: set[str] = field(default_factory=set)
    _flush_handle: asyncio.TimerHandle | None = None
    on_membership_change: Callable[[], None] | None = None
    # Every cluster's controllers run their reconciles on this one scheduler, a bounded
    # slice per turn of the loop, so the API servers answer between slices
    # (clusters/sim/controllers/scheduler.py). Started with the first cluster's.
    scheduler: Scheduler = field(default_factory=lambda: Scheduler())
    _scheduler_task: asyncio.Task[None] | None = None

    # -- membership -------------------------------------------------------------------

    def add(self, name: str, *, token: str | None = None, state: Obj | None = None) -> SimCluster:
        """Create (or restore) a cluster and start its controllers; must run on the loop."""
        if not _valid_cluster_name(name):
            raise ClusterUsageError(
                f"cluster name {name!r} is not valid: use lowercase letters, digits and '-' (at most 63)"
            )
        if name in self.clusters:
            raise ClusterUsageError(f"cluster {name!r} already exists")
        store = ClusterStore(
            name,
            history=self.history,
            on_change=lambda: self._mark_dirty(name),
            gc_delay=self.gc_delay,
            root_ca=self.root_ca,
        )
        if state is not None:
            store.load(state)
        else:
            _seed(store)
        cluster = SimCluster(name=name, token=token or secrets.token_urlsafe(32), store=store)
        self.clusters[name] = cluster
        self._start_controllers(cluster)
        self._mark_dirty(name)
        if self.on_membership_change is not None:
            self.on_membership_change()
        return cluster

    def _start_controllers(self, cluster: SimCluster) -> None:
        if not self.controllers:
            return
        try:
            from clusters.sim.controllers import run_controllers
        except ImportError:  # pragma: no cover - controllers land separately
            log.warning("simulated controllers are not available; objects will not progress")
            return
        api = StoreObjectAPI(cluster.store)
        loop = asyncio.get_running_loop()
        if self._scheduler_task is None or self._scheduler_task.done():
            self._scheduler_task = loop.create_task(
                self.scheduler.run(), name="sim-controller-scheduler"
            )
        cluster.controllers = loop.create_task(
            run_controllers(api, ready_delay=self.ready_delay, scheduler=self.scheduler),
            name=f"sim-controllers-{cluster.name}",
        )
        cluster.controllers.add_done_callback(lambda t: _log_task_end(cluster.name, t))

    async def remove(self, name: str) -> None:
        cluster = self.clusters.pop(name, None)
        if cluster is None:
            raise ClusterUsageError(f"no cluster named {name!r}")
        await self._stop_cluster(cluster)
        self._dirty.discard(name)
        if self.state_dir is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / "clusters" / f"{name}.json").unlink()
        if self.on_membership_change is not None:
            self.on_membership_change()

    async def _stop_cluster(self, cluster: SimCluster) -> None:
        cluster.store.close()
        task = cluster.controllers
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def shutdown(self) -> None:
        self.stopping.set()
        for cluster in list(self.clusters.values()):
            await self._stop_cluster(cluster)
        task, self._scheduler_task = self._scheduler_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.flush()

    # -- persistence ----------------------------------------------------------------------

    def _mark_dirty(self, name: str) -> None:
        if self.state_dir is None:
            return
        self._dirty.add(name)
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(0.5, self.flush)

    def flush(self) -> None:
        """Write every changed cluster's state (atomically, mode 0600: tokens inside)."""
        self._flush_handle = None
        if self.state_dir is None:
            return
        directory = self.state_dir / "clusters"
        directory.mkdir(parents=True, exist_ok=True)
        for name in sorted(self._dirty):
            cluster = self.clusters.get(name)
            if cluster is None:
                continue
            data = {"name": name, "token": cluster.token, "state": cluster.store.snapshot()}
            _atomic_write(directory / f"{name}.json", wirejson.dumps(data))
        self._dirty.clear()

    def load_persisted(self) -> dict[str, tuple[str, Obj]]:
        """Persisted clusters: name -> (token, state)."""
        out: dict[str, tuple[str, Obj]] = {}
        if self.state_dir is None:
            return out
        directory = self.state_dir / "clusters"
        if not directory.is_dir():
            return out
        for path in sorted(directory.glob("*.json")):
            try:
                data = wirejson.loads(path.read_bytes())
                out[str(data["name"])] = (str(data["token"]), dict(data["state"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise ClusterUsageError(
                    f"{path}: not a simulator state file ({exc}); move it away or pick another --state-dir"
                ) from None
        return out


def _log_task_end(name: str, task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("cluster %s: simulated controllers stopped: %r", name, task.exception())


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _seed(store: ClusterStore) -> None:
    """What a fresh kube-apiserver has: system namespaces, the kubernetes Service, one node."""
    kinds = store.kinds
    ns_rt = kinds.lookup("", "v1", "namespaces")
    svc_rt = kinds.lookup("", "v1", "services")
    node_rt = kinds.lookup("", "v1", "nodes")
    assert ns_rt and svc_rt and node_rt
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        store.create(
            ns_rt,
            "",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            manager="kube-apiserver",
        )
    store.create(
        svc_rt,
        "default",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kubernetes",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "clusterIP": "10.96.0.1",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                "sessionAffinity": "None",
                "type": "ClusterIP",
            },
        },
        manager="kube-apiserver",
    )
    node_name = f"{store.name}-node"
    node = store.create(
        node_rt,
        "",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": node_name,
                "labels": {
                    "kubernetes.io/hostname": node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "node-role.kubernetes.io/control-plane": "",
                    "type": "sim",
                },
            },
            "spec": {"podCIDR": "10.244.0.0/24"},
        },
        manager="kubelet",
    )
    status = {
        "capacity": {"cpu": "32", "memory": "256Gi", "pods": "1100"},
        "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "1100"},
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
             "lastHeartbeatTime": node["metadata"]["creationTimestamp"], "lastTransitionTime": node["metadata"]["creationTimestamp"]},
        ],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": node_name}],
        "nodeInfo": {"kubeletVersion": "v1.32.0", "kubeProxyVersion": "v1.32.0", "containerRuntimeVersion": "sim://1.0",
                     "operatingSystem": "linux", "architecture": "amd64", "osImage": "hub sim", "kernelVersion": "6.0.0",
                     "machineID": "", "systemUUID": "", "bootID": ""},
        "phase": "Running",
    }  # fmt: skip
    store.update(
        node_rt, "", node_name, dict(node, status=status), manager="kubelet", subresource="status"
    )


# Request handling --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Target:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str


def _parse_resource_path(cluster: SimCluster, group: str, version: str, segs: list[str]) -> _Target:
    namespace: str | None = None
    if (
        segs
        and segs[0] == "namespaces"
        and len(segs) >= 3
        and not (len(segs) == 3 and segs[2] in ("status", "finalize"))
    ):
        namespace = segs[1]
        segs = segs[2:]
    if not segs or not segs[0] or len(segs) > 3 or any(not s for s in segs):
        raise NOT_FOUND_PATH
    rt = cluster.store.kinds.lookup(group, version, segs[0])
    if rt is None:
        raise NOT_FOUND_PATH
    if namespace is not None and not rt.namespaced:
        raise NOT_FOUND_PATH
    name = segs[1] if len(segs) > 1 else None
    sub = segs[2] if len(segs) > 2 else ""
    if sub and sub not in rt.subresources:
        raise NOT_FOUND_PATH
    if rt.namespaced and namespace is None and name is not None:
        raise NOT_FOUND_PATH
    return _Target(rt=rt, namespace=namespace, name=name, subresource=sub)


class SimApp:
    """The aiohttp application of one simulator process."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.app = web.Application(client_max_size=MAX_BODY)
        self.app.router.add_route("*", "/{tail:.*}", self.handle)
        self.external_address = ""
        self.stats = ProcessStats(controller_seconds=lambda: fleet.scheduler.busy_s)
        self.h2 = H2Connections(self.stats)
        # set by RunningSim: the HTTP/1.1 connections its aiohttp server holds
        self.http1_connections: Callable[[], int] = lambda: 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """aiohttp's handler (HTTP/1.1): what ``serve`` answers."""
        answer = await self.serve(request)
        assert isinstance(answer, web.StreamResponse)
        return answer

    async def serve(self, request: SimRequest) -> Answer:
        """The answer to one request, whichever protocol carried it."""
        if request.method == "GET" and _truthy(request.query.get("watch")):
            self.stats.watches_opened += 1  # streams: their duration is not a latency
            return await self._handle(request)
        started = time.perf_counter()  # not loop.time(): whole milliseconds under uvloop
        try:
            return await self._handle(request)
        finally:
            self.stats.request(request.method, time.perf_counter() - started)

    async def _handle(self, request: SimRequest) -> Answer:
        path = request.path
        try:
            if path.startswith("/clusters/"):
                name, _, tail = path[len("/clusters/") :].partition("/")
                cluster = self.fleet.clusters.get(name)
                if cluster is None:
                    return _status_response(
                        ApiError(404, "NotFound", f'cluster "{name}" is not served here', {})
                    )
                faults = cluster.faults
                if faults.active:
                    early = await self._apply_faults(request, cluster)
                    if early is not None:
                        return early
                user = self._authenticate(request, cluster.token)
                if user is None or (user == ANONYMOUS and not self.fleet.anonymous_auth):
                    return _unauthorized()
                if user == ANONYMOUS and not _public_info(request.method, tail):
                    watch = _truthy(request.query.get("watch"))
                    return _status_response(_anonymous_forbidden(request.method, tail, watch=watch))
                return await self._cluster_request(request, cluster, tail.rstrip("/"))
            if path == "/sim" or path.startswith("/sim/"):
                if not self._authorized(request, self.fleet.admin_token):
                    return _unauthorized()
                return await self._admin(request, path[len("/sim") :].strip("/"))
            if path in ("/healthz", "/livez", "/readyz"):
                return web.Response(text="ok")
            return _status_response(NOT_FOUND_PATH)
        except ApiError as err:
            return _status_response(err)
        except SelectorError as selector_err:
            return _status_response(bad_request(str(selector_err)))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # the server must answer, whatever a request carries
            log.exception("internal error serving %s %s", request.method, path)
            return _status_response(
                ApiError(
                    500, "InternalError", f"Internal error occurred: {type(exc).__name__}: {exc}"
                )
            )

    @staticmethod
    def _authenticate(request: SimRequest, token: str) -> str | None:
        """The user a cluster request runs as: ADMIN with the cluster's token, ANONYMOUS
        without a bearer token, None (401) for a bearer token that is not the cluster's."""
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer":
            return ANONYMOUS  # no credentials the server knows how to check
        if hmac.compare_digest(given.strip().encode(), token.encode()):
            return ADMIN
        return None

    @staticmethod
    def _authorized(request: SimRequest, token: str) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        )

    async def _apply_faults(
        self, request: SimRequest, cluster: SimCluster
    ) -> web.StreamResponse | None:
        faults = cluster.faults
        if faults.outage == "refuse":
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError  # aiohttp ends the handler quietly on a dead transport
        if faults.outage == "hang":
            # Never answer; give up only when the client goes away or the server stops.
            while not self.fleet.stopping.is_set():
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.fleet.stopping.wait(), 0.5)
            raise asyncio.CancelledError
        if faults.latency:
            await asyncio.sleep(faults.latency)
        if faults.should_fail():
            if faults.error_code == 500:
                return _status_response(
                    ApiError(
                        500, "InternalError", "Internal error occurred: injected fault (hub sim)"
                    )
                )
            return _status_response(
                ApiError(
                    503,
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request (injected fault, hub sim)",
                )
            )
        return None

    # -- cluster API ----------------------------------------------------------------------

    async def _cluster_request(self, request: SimRequest, cluster: SimCluster, tail: str) -> Answer:
        segs = tail.split("/") if tail else []
        method = request.method
        if not segs:
            return _json(
                {
                    "paths": [
                        "/api",
                        "/api/v1",
                        "/apis",
                        "/healthz",
                        "/livez",
                        "/openapi/v2",
                        "/openapi/v3",
                        "/readyz",
                        "/version",
                    ]
                }
            )
        if segs[:2] == ["clusters", cluster.name] and segs[2:3] == ["openapi"]:
            # A client that joins serverRelativeURL onto its base path repeats our prefix.
            segs = segs[2:]
        head = segs[0]
        if method == "GET" and len(segs) == 1 and head in ("healthz", "livez", "readyz"):
            return web.Response(text="ok")
        if head == "version" and len(segs) == 1:
            return _json(KUBE_VERSION)
        if head == "openapi":
            return self._openapi(cluster, segs[1:])
        if head == "api":
            if len(segs) == 1:
                aggregated = _aggregated_version(request)
                if aggregated is not None:
                    return _aggregated_answer(cluster.discovery_docs().aggregated_core, aggregated)
                return _json(
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": self.external_address}
                        ],
                    }
                )
            if segs[1] != "v1":
                raise NOT_FOUND_PATH
            if len(segs) == 2:
                return self._resource_list(cluster, "", "v1")
            return await self._resource_request(
                request, cluster, _parse_resource_path(cluster, "", "v1", segs[2:])
            )
        if head == "apis":
            docs = cluster.discovery_docs()
            if len(segs) == 1:
                aggregated = _aggregated_version(request)
                if aggregated is not None:
                    return _aggregated_answer(docs.aggregated_groups, aggregated)
                return _json(docs.api_group_list)
            group = segs[1]
            if len(segs) == 2:
                if group not in docs.groups:
                    raise NOT_FOUND_PATH
                return _json(docs.groups[group])
            version = segs[2]
            if len(segs) == 3:
                return self._resource_list(cluster, group, version)
            return await self._resource_request(
                request, cluster, _parse_resource_path(cluster, group, version, segs[3:])
            )
        raise NOT_FOUND_PATH

    def _resource_list(self, cluster: SimCluster, group: str, version: str) -> web.Response:
        doc = cluster.discovery_docs().resource_lists.get((group, version))
        if doc is None:
            raise NOT_FOUND_PATH
        return _json(doc)

    def _openapi(self, cluster: SimCluster, segs: list[str]) -> web.Response:
        """Just enough OpenAPI for kubectl: v3 PATCH operations naming ``fieldValidation``.

        With those kubectl validates on the server (``fieldValidation=Strict``) instead of
        fetching full schemas; it builds strategic merge patches from its built-in types.
        """
        if segs == ["v2"]:
            raise ApiError(404, "NotFound", "the simulator serves OpenAPI v3 only", {})
        if segs == ["v3"]:
            docs = cluster.discovery_docs()
            prefix = f"/clusters/{cluster.name}/openapi/v3/"
            roots = {
                (f"apis/{g}/{v}" if g else f"api/{v}"): {
                    "serverRelativeURL": f"{prefix}{f'apis/{g}/{v}' if g else f'api/{v}'}?hash={docs.revision}"
                }
                for g, v in docs.resource_lists
            }
            return _json({"paths": roots})
        if segs[:1] != ["v3"]:
            raise NOT_FOUND_PATH
        segs = segs[1:]
        if len(segs) == 2 and segs[0] == "api":
            group, version = "", segs[1]
        elif len(segs) == 3 and segs[0] == "apis":
            group, version = segs[1], segs[2]
        else:
            raise NOT_FOUND_PATH
        types = cluster.store.kinds.in_group_version(group, version)
        if not types:
            raise NOT_FOUND_PATH
        params = [
            {"name": n, "in": "query", "schema": {"type": "string"}}
            for n in ("dryRun", "fieldManager", "fieldValidation", "force")
        ]
        paths: Obj = {}
        for rt in types:
            base = f"/apis/{group}/{version}" if group else f"/api/{version}"
            where = (
                f"{base}/namespaces/{{namespace}}/{rt.plural}/{{name}}"
                if rt.namespaced
                else f"{base}/{rt.plural}/{{name}}"
            )
            paths[where] = {
                "patch": {
                    "operationId": f"patch{rt.kind}",
                    "parameters": params,
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {
                        "group": group,
                        "version": version,
                        "kind": rt.kind,
                    },
                }
            }
        return _json(
            {
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": KUBE_VERSION["gitVersion"]},
                "paths": paths,
                "components": {"schemas": {}},
            }
        )

    async def _read_body(self, request: SimRequest, rt: ResourceType) -> Any:
        raw = await request.read()
        ctype = request.content_type
        if ctype == "application/vnd.kubernetes.protobuf" and rt.group_kind in _PROTO_KINDS:
            return _decode_protobuf(raw, rt)
        if ctype in ("application/vnd.kubernetes.protobuf", "application/cbor"):
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
            )
        if not raw.strip():
            raise bad_request(
                f"the object provided is unrecognized (must be of type {rt.kind}): empty body"
            )
        try:
            if ctype == "application/yaml":
                return load_yaml(raw)
            return wirejson.loads(raw)
        except (ValueError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise bad_request(
                f"the object provided is unrecognized (must be of type {rt.kind}): couldn't get version/kind; json parse error: {exc}"
            ) from None

    async def _resource_request(
        self, request: SimRequest, cluster: SimCluster, target: _Target
    ) -> Answer:
        method = request.method
        q = request.query
        rt, name, sub = target.rt, target.name, target.subresource
        ns = target.namespace or ""
        store = cluster.store
        dry_run = "All" in q.getall("dryRun", [])
        manager = q.get("fieldManager") or ""
        verb_ok = {"GET", "POST", "PUT", "PATCH", "DELETE"}
        if method not in verb_ok:
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        if method == "GET":
            _check_accept(request)
            if name is None:
                if _truthy(q.get("watch")):
                    return await self._watch(request, cluster, target)
                return self._list(request, cluster, target)
            if sub == "scale":
                return _json(store.get_scale(rt, ns, name))
            obj = store.get(rt, ns, name)
            if _wants_table(request):
                return _json(
                    build_table(rt, [obj], str(store.resource_version), "", q.get("includeObject"))
                )
            return _json(obj)
        if method == "POST":
            if name is not None or sub:
                raise ApiError(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                )
            body = await self._read_body(request, rt)
            created = store.create(
                rt, ns, body, manager=manager or _user_agent_manager(request), dry_run=dry_run
            )
            return _json(created, 201)
        if name is None:
            if method == "DELETE":
                return await self._delete_collection(request, cluster, target)
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        if method == "PUT":
            body = await self._read_body(request, rt)
            mgr = manager or _user_agent_manager(request)
            if sub == "scale":
                return _json(store.update_scale(rt, ns, name, body, manager=mgr, dry_run=dry_run))
            subresource = "status" if sub == "status" else ""
            if sub == "finalize":
                return _json(self._finalize_namespace(store, rt, name, body))
            return _json(
                store.update(
                    rt, ns, name, body, manager=mgr, subresource=subresource, dry_run=dry_run
                )
            )
        if method == "PATCH":
            patch_type = PATCH_TYPES.get(request.content_type)
            if patch_type is None:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json",
                )
            raw = await request.read()
            mgr = manager if patch_type == "apply" else (manager or _user_agent_manager(request))
            force = _truthy(q.get("force"))
            if force and patch_type != "apply":
                raise bad_request("force is only supported with apply patches")
            if sub == "scale":
                return _json(
                    store.patch_scale(
                        rt, ns, name, patch_type, raw, manager=mgr or "unknown", dry_run=dry_run
                    )
                )
            if sub == "finalize":
                raise ApiError(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                )
            patched, was_created = store.patch(
                rt,
                ns,
                name,
                patch_type,
                raw,
                manager=mgr,
                force=force,
                subresource=sub,
                dry_run=dry_run,
            )
            return _json(patched, 201 if was_created else 200)
        # DELETE
        if sub:
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        options = await self._delete_options(request)
        propagation = q.get("propagationPolicy") or options.get("propagationPolicy")
        if _truthy(q.get("orphanDependents")) or options.get("orphanDependents") is True:
            propagation = propagation or "Orphan"
        dry_run = dry_run or "All" in (options.get("dryRun") or [])
        obj, gone = store.delete(
            rt,
            ns,
            name,
            propagation=propagation,
            preconditions=options.get("preconditions"),
            dry_run=dry_run,
        )
        if gone and not rt.custom and rt.kind != "Pod":
            meta = obj.get("metadata") or {}
            details: Obj = {"name": name}
            if rt.group:
                details["group"] = rt.group
            details.update(kind=rt.plural, uid=meta.get("uid"))
            return _json(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": details,
                }
            )
        return _json(obj)

    async def _delete_options(self, request: SimRequest) -> Obj:
        if not request.can_read_body:
            return {}
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            options = wirejson.loads(raw)
        except ValueError as exc:
            raise bad_request(f"invalid DeleteOptions: {exc}") from None
        if not isinstance(options, dict):
            raise bad_request("invalid DeleteOptions: must be an object")
        return options

    def _finalize_namespace(
        self, store: ClusterStore, rt: ResourceType, name: str, body: Any
    ) -> Obj:
        """PUT namespaces/NAME/finalize: only spec.finalizers changes."""
        old = store.get(rt, "", name)
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a Namespace")
        finalizers = ((body.get("spec") or {}).get("finalizers")) or []
        new = clone_obj(old)
        new.setdefault("spec", {})["finalizers"] = finalizers
        stored = store._store(rt, new, old)
        if stored["metadata"].get("deletionTimestamp") and not finalizers:
            store._later(lambda: store._namespace_step(name))
        return stored

    def _list(self, request: SimRequest, cluster: SimCluster, target: _Target) -> web.Response:
        q = request.query
        rt = target.rt
        labels = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"), rt.kind)
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            raise bad_request(f"invalid limit: {q.get('limit')!r}") from None
        result = cluster.store.list(
            rt,
            target.namespace,
            labels=labels,
            fields=fields,
            limit=max(0, limit),
            continue_token=q.get("continue", ""),
        )
        if _wants_table(request):
            return _json(
                build_table(
                    rt,
                    result.items,
                    result.resource_version,
                    result.continue_token,
                    q.get("includeObject"),
                )
            )
        meta: Obj = {"resourceVersion": result.resource_version}
        if result.continue_token:
            meta["continue"] = result.continue_token
            if result.remaining is not None:
                meta["remainingItemCount"] = result.remaining
        items = (
            result.items
            if rt.custom
            else [
                {k: v for k, v in o.items() if k not in ("apiVersion", "kind")}
                for o in result.items
            ]
        )
        return _json(
            {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta, "items": items}
        )

    async def _delete_collection(
        self, request: SimRequest, cluster: SimCluster, target: _Target
    ) -> web.Response:
        q = request.query
        rt = target.rt
        labels = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"), rt.kind)
        options = await self._delete_options(request)
        dry_run = "All" in q.getall("dryRun", []) or "All" in (options.get("dryRun") or [])
        propagation = q.get("propagationPolicy") or options.get("propagationPolicy")
        result = cluster.store.list(rt, target.namespace, labels=labels, fields=fields)
        deleted = []
        for obj in result.items:
            meta = obj["metadata"]
            with contextlib.suppress(ApiError):
                out, _ = cluster.store.delete(
                    rt,
                    meta.get("namespace", ""),
                    meta["name"],
                    propagation=propagation,
                    dry_run=dry_run,
                )
                deleted.append(out)
        return _json(
            {
                "kind": rt.list_kind,
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(cluster.store.resource_version)},
                "items": deleted,
            }
        )

    async def _watch(self, request: SimRequest, cluster: SimCluster, target: _Target) -> Answer:
        q = request.query
        rt = target.rt
        labels = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"), rt.kind)
        try:
            timeout = float(q["timeoutSeconds"]) if "timeoutSeconds" in q else DEFAULT_WATCH_TIMEOUT
        except ValueError:
            raise bad_request(f"invalid timeoutSeconds: {q['timeoutSeconds']!r}") from None
        bookmarks = _truthy(q.get("allowWatchBookmarks"))
        send_initial = _truthy(q.get("sendInitialEvents"))
        table = _wants_table(request)
        include = q.get("includeObject")
        store = cluster.store
        since = q.get("resourceVersion") or None
        if send_initial:
            since = None
        watcher: Watcher | None = None
        gone: ApiError | None = None
        try:
            watcher = store.watch(
                rt.group_kind, target.namespace, labels=labels, fields=fields, since=since
            )
            cluster.streams.add(watcher)
        except ApiError as err:
            if err.code != 410:
                raise
            gone = err
        response = await open_stream(
            request, {"Content-Type": "application/json", "Cache-Control": "no-cache, private"}
        )

        def encode(kind: str, obj: Obj) -> bytes:
            if table and kind in ("ADDED", "MODIFIED", "DELETED"):
                obj = build_table(rt, [store.serve_as(rt, obj)], "", "", include)
            else:
                obj = store.serve_as(rt, obj) if kind != "BOOKMARK" else obj
            return wirejson.dumps({"type": kind, "object": obj}) + b"\n"

        def bookmark(initial_end: bool = False) -> bytes:
            meta: Obj = {"resourceVersion": str(store.resource_version)}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return encode(
                "BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}
            )

        timer: asyncio.TimerHandle | None = None
        try:
            if gone is not None or watcher is None:
                assert gone is not None
                await response.write(
                    wirejson.dumps({"type": "ERROR", "object": gone.status()}) + b"\n"
                )
                return response
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max(0.0, timeout)
            next_bookmark = loop.time() + self.fleet.bookmark_interval
            if send_initial and bookmarks:
                # Initial events are already queued; the marker follows them.
                chunk = self._drain(watcher, encode)
                await response.write(chunk + bookmark(initial_end=True))

            # One loop timer wakes the stream at its deadline or next bookmark, instead of
            # a timeout around every wait for an event (a busy watch waits thousands of
            # times between two bookmarks).
            def wake_at_next_due() -> asyncio.TimerHandle:
                due = min(deadline, next_bookmark) if bookmarks else deadline
                return loop.call_at(due, watcher.wake)

            timer = wake_at_next_due()
            while True:
                now = loop.time()
                if now >= deadline or self.fleet.stopping.is_set():
                    break
                if bookmarks and now >= next_bookmark:
                    await response.write(bookmark())
                    next_bookmark = loop.time() + self.fleet.bookmark_interval
                    timer.cancel()
                    timer = wake_at_next_due()
                first = await watcher.queue.get()
                if first is WAKE:
                    # Early (a loop timer's resolution is a millisecond) or stale: the
                    # next due time gets the one timer.
                    timer.cancel()
                    timer = wake_at_next_due()
                    continue
                if first is None:
                    break
                delay = cluster.faults.watch_delay
                if delay:
                    # events that happen meanwhile go out with this one, as late or less
                    await asyncio.sleep(delay)
                chunk = encode(first.type, first.obj) + self._drain(watcher, encode)
                await response.write(chunk)
                if watcher.closed and watcher.queue.empty():
                    break
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            if timer is not None:
                timer.cancel()
            if watcher is not None:
                store.unwatch(watcher)
                cluster.streams.discard(watcher)
        if watcher is not None and watcher.aborted:
            transport = request.transport
            if transport is not None:
                transport.abort()  # an outage: the connection drops, no end of stream
            return response
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    @staticmethod
    def _drain(watcher: Watcher, encode: Callable[[str, Obj], bytes]) -> bytes:
        parts: list[bytes] = []
        while not watcher.queue.empty():
            item: Delivery | None = watcher.queue.get_nowait()
            if item is None:
                watcher.queue.put_nowait(None)
                break
            if item is WAKE:
                continue
            parts.append(encode(item.type, item.obj))
        return b"".join(parts)

    # -- admin API ------------------------------------------------------------------------

    async def _admin(self, request: SimRequest, tail: str) -> web.Response:
        segs = tail.split("/") if tail else []
        method = request.method
        fleet = self.fleet
        try:
            if segs == ["stats"] and method == "GET":
                reset = _truthy(request.query.get("reset"))
                return _json(
                    self.stats.take(
                        reset=reset,
                        clusters=len(fleet.clusters),
                        watches=sum(c.store.watch_count() for c in fleet.clusters.values()),
                        objects=sum(c.store.object_count() for c in fleet.clusters.values()),
                        h2_connections_open=len(self.h2.open),
                        h2_streams_open=self.h2.streams_open,
                        http1_connections_open=self.http1_connections(),
                        controllers=fleet.scheduler.take_delays(reset=reset),
                    )
                )
            if segs == ["clusters"]:
                if method == "GET":
                    return _json(
                        {
                            "clusters": [
                                {"name": c.name, "faults": c.faults.to_json()}
                                for c in fleet.clusters.values()
                            ]
                        }
                    )
                if method == "POST":
                    body = await request.json()
                    name = body.get("name") if isinstance(body, dict) else None
                    if not isinstance(name, str):
                        raise bad_request('body must be {"name": "CLUSTER"}')
                    added = fleet.add(name)
                    return _json({"name": added.name, "token": added.token}, 201)
            elif len(segs) == 2 and segs[0] == "clusters" and method == "DELETE":
                await fleet.remove(segs[1])
                return _json({"removed": segs[1]})
            elif len(segs) == 3 and segs[0] == "clusters" and segs[2] == "faults":
                cluster = fleet.clusters.get(segs[1])
                if cluster is None:
                    raise ApiError(404, "NotFound", f'cluster "{segs[1]}" not found', {})
                if method == "GET":
                    return _json(cluster.faults.to_json())
                if method == "PUT":
                    cluster.set_faults(FaultSettings.parse(await request.json()))
                    return _json(cluster.faults.to_json())
                if method == "DELETE":
                    cluster.set_faults(NO_FAULTS)
                    return _json(cluster.faults.to_json())
            elif segs == ["clusters", "compact"] or (
                len(segs) == 3 and segs[0] == "clusters" and segs[2] == "compact"
            ):
                target = fleet.clusters.get(segs[1])
                if target is None or method != "POST":
                    raise NOT_FOUND_PATH
                target.store.compact()
                return _json(
                    {
                        "compacted": target.name,
                        "resourceVersion": str(target.store.resource_version),
                    }
                )
        except (FaultError, ClusterUsageError) as usage_exc:
            raise bad_request(str(usage_exc)) from None
        except ValueError as exc:
            raise bad_request(f"invalid JSON body: {exc}") from None
        raise NOT_FOUND_PATH


def new_admin_token() -> str:
    return secrets.token_urlsafe(32)


# Tables (kubectl get) ----------------------------------------------------------------------

Column = tuple[str, str, str, Callable[[Obj], Any]]  # name, type, format, cell


def _age(obj: Obj) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    try:
        seconds = int(time.time() - calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return "<unknown>"
    return human_duration(max(0, seconds))


def human_duration(seconds: int) -> str:
    """kubectl's short duration: 45s, 5m12s, 3h4m, 2d5h, 400d."""
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def _g(obj: Any, path: str, default: Any = None) -> Any:
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return default
        cur = cur.get(part)
    return default if cur is None else cur


def _pod_status(pod: Obj) -> str:
    if _g(pod, "metadata.deletionTimestamp"):
        return "Terminating"
    for cs in _g(pod, "status.containerStatuses", []) or []:
        waiting = _g(cs, "state.waiting.reason")
        if waiting:
            return str(waiting)
        terminated = _g(cs, "state.terminated.reason")
        if terminated:
            return str(terminated)
    return str(_g(pod, "status.phase", "Pending"))


def _pod_ready(pod: Obj) -> str:
    statuses = _g(pod, "status.containerStatuses", []) or []
    total = len(_g(pod, "spec.containers", []) or [])
    return f"{sum(1 for cs in statuses if cs.get('ready'))}/{total}"


def _job_status(job: Obj) -> str:
    for cond in _g(job, "status.conditions", []) or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed", "Suspended"):
            return str(cond["type"])
    return "Running"


def _ports(svc: Obj) -> str:
    ports = _g(svc, "spec.ports", []) or []
    out = []
    for p in ports:
        text = f"{p.get('port')}"
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        out.append(f"{text}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _external_ip(svc: Obj) -> str:
    ips = [
        i.get("ip") or i.get("hostname") for i in _g(svc, "status.loadBalancer.ingress", []) or []
    ]
    ips = [i for i in ips if i] + list(_g(svc, "spec.externalIPs", []) or [])
    if ips:
        return ",".join(ips)
    return "<pending>" if _g(svc, "spec.type") == "LoadBalancer" else "<none>"


def _node_status(node: Obj) -> str:
    for cond in _g(node, "status.conditions", []) or []:
        if cond.get("type") == "Ready":
            return "Ready" if cond.get("status") == "True" else "NotReady"
    return "Unknown"


_S, _I = "string", "integer"
_KIND_COLUMNS: dict[tuple[str, str], list[Column]] = {
    ("", "Namespace"): [("Status", _S, "", lambda o: _g(o, "status.phase", ""))],
    ("", "Pod"): [
        ("Ready", _S, "", _pod_ready),
        ("Status", _S, "", _pod_status),
        ("Restarts", _I, "", lambda o: sum(int(c.get("restartCount", 0)) for c in _g(o, "status.containerStatuses", []) or [])),
    ],
    ("apps", "Deployment"): [
        ("Ready", _S, "", lambda o: f"{_g(o, 'status.readyReplicas', 0)}/{_g(o, 'spec.replicas', 1)}"),
        ("Up-to-date", _I, "", lambda o: _g(o, "status.updatedReplicas", 0)),
        ("Available", _I, "", lambda o: _g(o, "status.availableReplicas", 0)),
    ],
    ("apps", "ReplicaSet"): [
        ("Desired", _I, "", lambda o: _g(o, "spec.replicas", 1)),
        ("Current", _I, "", lambda o: _g(o, "status.replicas", 0)),
        ("Ready", _I, "", lambda o: _g(o, "status.readyReplicas", 0)),
    ],
    ("apps", "StatefulSet"): [("Ready", _S, "", lambda o: f"{_g(o, 'status.readyReplicas', 0)}/{_g(o, 'spec.replicas', 1)}")],
    ("apps", "DaemonSet"): [
        ("Desired", _I, "", lambda o: _g(o, "status.desiredNumberScheduled", 0)),
        ("Current", _I, "", lambda o: _g(o, "status.currentNumberScheduled", 0)),
        ("Ready", _I, "", lambda o: _g(o, "status.numberReady", 0)),
        ("Up-to-date", _I, "", lambda o: _g(o, "status.updatedNumberScheduled", 0)),
        ("Available", _I, "", lambda o: _g(o, "status.numberAvailable", 0)),
    ],
    ("batch", "Job"): [
        ("Status", _S, "", _job_status),
        ("Completions", _S, "", lambda o: f"{_g(o, 'status.succeeded', 0)}/{_g(o, 'spec.completions', 1)}"),
    ],
    ("batch", "CronJob"): [
        ("Schedule", _S, "", lambda o: _g(o, "spec.schedule", "")),
        ("Suspend", _S, "", lambda o: "True" if _g(o, "spec.suspend") else "False"),
        ("Active", _I, "", lambda o: len(_g(o, "status.active", []) or [])),
    ],
    ("", "Service"): [
        ("Type", _S, "", lambda o: _g(o, "spec.type", "ClusterIP")),
        ("Cluster-IP", _S, "", lambda o: _g(o, "spec.clusterIP", "<none>")),
        ("External-IP", _S, "", _external_ip),
        ("Port(s)", _S, "", _ports),
    ],
    ("", "ConfigMap"): [("Data", _I, "", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}))],
    ("", "Secret"): [
        ("Type", _S, "", lambda o: o.get("type", "Opaque")),
        ("Data", _I, "", lambda o: len(o.get("data") or {}) + len(o.get("stringData") or {})),
    ],
    ("", "PersistentVolumeClaim"): [
        ("Status", _S, "", lambda o: _g(o, "status.phase", "Pending")),
        ("Volume", _S, "", lambda o: _g(o, "spec.volumeName", "")),
        ("Capacity", _S, "", lambda o: _g(o, "status.capacity.storage", "")),
        ("Access Modes", _S, "", lambda o: ",".join(_g(o, "status.accessModes", []) or [])),
        ("StorageClass", _S, "", lambda o: _g(o, "spec.storageClassName", "")),
    ],
    ("", "Node"): [
        ("Status", _S, "", _node_status),
        ("Roles", _S, "", lambda o: ",".join(sorted(k.rpartition("/")[2] for k in (_g(o, "metadata.labels", {}) or {}) if k.startswith("node-role.kubernetes.io/"))) or "<none>"),
    ],
    ("networking.k8s.io", "Ingress"): [
        ("Class", _S, "", lambda o: _g(o, "spec.ingressClassName", "<none>")),
        ("Hosts", _S, "", lambda o: ",".join(r.get("host", "*") for r in _g(o, "spec.rules", []) or []) or "*"),
        ("Address", _S, "", lambda o: ",".join(i.get("ip") or i.get("hostname", "") for i in _g(o, "status.loadBalancer.ingress", []) or [])),
        ("Ports", _S, "", lambda o: "80, 443" if _g(o, "spec.tls") else "80"),
    ],
    ("autoscaling", "HorizontalPodAutoscaler"): [
        ("Reference", _S, "", lambda o: f"{_g(o, 'spec.scaleTargetRef.kind', '')}/{_g(o, 'spec.scaleTargetRef.name', '')}"),
        ("MinPods", _I, "", lambda o: _g(o, "spec.minReplicas", 1)),
        ("MaxPods", _I, "", lambda o: _g(o, "spec.maxReplicas", 0)),
        ("Replicas", _I, "", lambda o: _g(o, "status.currentReplicas", 0)),
    ],
}  # fmt: skip


def _column_value(path: str, obj: Obj) -> Any:
    return _g(obj, path, "")


def _custom_columns(rt: ResourceType) -> list[Column]:
    out: list[Column] = []
    for col_name, col_type, path in rt.printer_columns:
        if col_type == "date":
            continue  # shown as AGE below, as kubectl does for creationTimestamp columns
        out.append((col_name, col_type, "", functools.partial(_column_value, path.lstrip("."))))
    return out


def build_table(
    rt: ResourceType,
    objects: list[Obj],
    resource_version: str,
    continue_token: str,
    include: str | None,
) -> Obj:
    """A ``meta.k8s.io/v1`` Table as kube-apiserver's printers make for ``kubectl get``."""
    columns: list[Column] = [("Name", _S, "name", lambda o: _g(o, "metadata.name", ""))]
    columns += _custom_columns(rt) if rt.custom else _KIND_COLUMNS.get(rt.group_kind, [])
    columns.append(("Age", _S, "", _age))
    rows = []
    for obj in objects:
        row: Obj = {"cells": [cell(obj) for _, _, _, cell in columns]}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata", {}),
            }
        rows.append(row)
    meta: Obj = {"resourceVersion": resource_version} if resource_version else {}
    if continue_token:
        meta["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": [
            {"name": n, "type": t, "format": f, "description": n, "priority": 0}
            for n, t, f, _ in columns
        ],
        "rows": rows,
    }


# Running a server ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """How to run a simulator process (parsed from the CLI or SimServer's arguments)."""

    names: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 0
    state_dir: Path | None = None
    kubeconfig_path: Path | None = None
    admin_token_path: Path | None = None
    ready_delay: float = 0.2
    gc_delay: float = DEFAULT_GC_DELAY
    anonymous_auth: bool = True
    controllers: bool = True
    history: int = DEFAULT_HISTORY
    bookmark_interval: float = 30.0
    # Freeze the survivors of every full garbage collection (stats.FullCollectionFreezer):
    # for a process of its own only, as it is process-wide.
    freeze_gc: bool = False
    # Offer HTTP/2 (ALPN h2) beside HTTP/1.1, as kube-apiserver does (clusters.sim.http2).
    http2: bool = False


def cluster_names(clusters: int | Iterable[str]) -> tuple[str, ...]:
    if isinstance(clusters, int):
        if clusters < 0:
            raise ClusterUsageError(f"--clusters must be 0 or more, not {clusters}")
        return tuple(f"sim-{i}" for i in range(1, clusters + 1))
    names = tuple(clusters)
    bad = [n for n in names if not _valid_cluster_name(n)]
    if bad:
        raise ClusterUsageError(
            f"cluster name {bad[0]!r} is not valid: use lowercase letters, digits and '-' (at most 63)"
        )
    if len(set(names)) != len(names):
        raise ClusterUsageError("cluster names must be unique")
    return names


class RunningSim:
    """A started simulator on the current event loop: fleet, HTTPS site, kubeconfig.

    ``ca`` and ``admin_token`` are given when the process is one shard of several
    (``clusters.sim.shards``): every shard then serves under the same CA and admin token,
    and ``on_clusters`` hears of membership changes (the parent writes the kubeconfig).
    """

    def __init__(
        self,
        config: SimConfig,
        *,
        ca: CertificateAuthority | None = None,
        admin_token: str | None = None,
        on_clusters: Callable[[list[ClusterEntry]], None] | None = None,
    ) -> None:
        self.config = config
        self._ca = ca
        self._admin_token = admin_token
        self.on_clusters = on_clusters
        self.fleet: Fleet | None = None
        self.runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self.port = 0
        self.ca_pem = b""
        self.app: SimApp | None = None
        self._freezer: FullCollectionFreezer | None = None
        self._freezer_task: asyncio.Task[None] | None = None
        self._kubeconfig_pending = False

    @property
    def url(self) -> str:
        host = self.config.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"

    def server_url(self, name: str) -> str:
        return f"{self.url}/clusters/{name}"

    async def start(self) -> None:
        cfg = self.config
        state_dir = cfg.state_dir
        if self._ca is not None and self._admin_token is not None:
            ca, admin_token = self._ca, self._admin_token
        elif state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
            ca = CertificateAuthority.load_or_create(state_dir)
            admin_file = state_dir / "admin-token"
            if admin_file.exists():
                admin_token = admin_file.read_text().strip()
            else:
                admin_token = new_admin_token()
                _atomic_write(admin_file, admin_token.encode())
        else:
            ca = CertificateAuthority.generate()
            admin_token = new_admin_token()
        self.ca_pem = ca.cert_pem
        if cfg.admin_token_path is not None:
            cfg.admin_token_path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(cfg.admin_token_path, admin_token.encode())
        from hub.logs import redact

        redact(admin_token)
        fleet = Fleet(
            admin_token=admin_token,
            state_dir=state_dir,
            controllers=cfg.controllers,
            ready_delay=cfg.ready_delay,
            gc_delay=cfg.gc_delay,
            root_ca=ca.cert_pem.decode(),
            anonymous_auth=cfg.anonymous_auth,
            history=cfg.history,
            bookmark_interval=cfg.bookmark_interval,
        )
        self.fleet = fleet
        persisted = fleet.load_persisted()
        for name in dict.fromkeys([*cfg.names, *persisted]):
            token, state = persisted.get(name, (None, None))
            cluster = fleet.add(name, token=token, state=state)
            redact(cluster.token)
        fleet.on_membership_change = self._kubeconfig_soon
        app = SimApp(fleet)
        self.app = app
        app.stats.start()
        if cfg.freeze_gc:
            self._freezer = FullCollectionFreezer()
            self._freezer_task = asyncio.get_running_loop().create_task(
                self._freezer.run(), name="sim-gc-freeze"
            )
        self.runner = web.AppRunner(
            app.app, access_log=None, shutdown_timeout=2.0, handler_cancellation=True
        )
        await self.runner.setup()
        http1 = self.runner.server
        assert http1 is not None
        app.http1_connections = lambda: len(http1.connections)
        ssl_ctx = server_ssl_context(ca, cfg.host, http2=cfg.http2)
        port = cfg.port
        if port == 0 and state_dir is not None and (state_dir / "port").exists():
            # Reuse the last port so kubeconfigs made before a restart keep working.
            with contextlib.suppress(ValueError):
                port = int((state_dir / "port").read_text().strip())
        try:
            server = await self._listen(port, ssl_ctx)
        except OSError:
            if port == cfg.port:
                await self.runner.cleanup()
                raise ClusterUsageError(
                    f"cannot listen on {cfg.host}:{cfg.port}: address in use or not available"
                ) from None
            server = await self._listen(cfg.port, ssl_ctx)
        # Any: uvloop's server returns a list of sockets where asyncio's types say a tuple.
        listening: Any = server
        self.port = int(listening.sockets[0].getsockname()[1])
        app.external_address = f"{cfg.host}:{self.port}"
        if state_dir is not None:
            (state_dir / "port").write_text(str(self.port))
        self.write_kubeconfig()

    async def _listen(self, port: int, ssl_ctx: ssl.SSLContext) -> asyncio.Server:
        """Accept TLS connections on ``port``: each served by aiohttp (HTTP/1.1) or, when
        the client and the config chose h2, by ``H2ServerConnection``."""
        runner, app = self.runner, self.app
        assert runner is not None and runner.server is not None and app is not None
        http1 = runner.server
        factory: Callable[[], asyncio.BaseProtocol] = http1
        if self.config.http2:
            factory = by_alpn(http1, lambda: H2ServerConnection(app.serve, app.h2, MAX_BODY))
        self._server = await asyncio.get_running_loop().create_server(
            factory, self.config.host, port, ssl=ssl_ctx, backlog=1024
        )
        return self._server

    def _kubeconfig_soon(self) -> None:
        # Adding many clusters in one go must not rewrite the file once per cluster.
        if not self._kubeconfig_pending:
            self._kubeconfig_pending = True
            asyncio.get_running_loop().call_soon(self.write_kubeconfig)

    def entries(self) -> list[ClusterEntry]:
        fleet = self.fleet
        if fleet is None:
            return []
        return [
            ClusterEntry(name=c.name, server=self.server_url(c.name), token=c.token)
            for c in fleet.clusters.values()
        ]

    def write_kubeconfig(self) -> None:
        self._kubeconfig_pending = False
        if self.fleet is None or not self.port:
            return
        if self.on_clusters is not None:
            self.on_clusters(self.entries())
        if self.config.kubeconfig_path is not None:
            write_kubeconfig(self.config.kubeconfig_path, self.entries(), self.ca_pem)

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stats.stop()
        if self._freezer_task is not None:
            self._freezer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._freezer_task
            self._freezer_task = None
        if self.fleet is not None:
            await self.fleet.shutdown()
        if self._server is not None:
            self._server.close()  # no new connections
            self._server = None
        if self.app is not None:
            self.app.h2.close_all()  # GOAWAY, then closed
        if self.runner is not None:
            server = self.runner.server
            if server is not None:
                # Keep-alive TLS connections would wait for the peer's close_notify and
                # outlive the loop; a stopping server just drops them.
                for conn in list(server.connections):
                    transport = conn.transport
                    if transport is not None:
                        transport.abort()
                await asyncio.sleep(0)
            if self.app is not None:
                self.app.h2.abort_all()
            await self.runner.cleanup()
            self.runner = None


class FaultControl:
    """``sim.faults(name)``: switch one cluster's faults from another thread."""

    def __init__(self, sim: SimServer, name: str) -> None:
        self._sim = sim
        self._name = name

    def set(
        self,
        *,
        latency: float = 0.0,
        error_rate: float = 0.0,
        error_code: int = 503,
        outage: str | None = None,
        watch_delay: float = 0.0,
    ) -> FaultSettings:
        try:
            settings = FaultSettings.parse(
                {
                    "latency": latency,
                    "error_rate": error_rate,
                    "error_code": error_code,
                    "outage": outage,
                    "watch_delay": watch_delay,
                }
            )
        except FaultError as exc:
            raise ClusterUsageError(str(exc)) from None
        cluster = self._sim._cluster(self._name)
        self._sim._call(lambda: cluster.set_faults(settings))
        return settings

    def clear(self) -> None:
        cluster = self._sim._cluster(self._name)
        self._sim._call(lambda: cluster.set_faults(NO_FAULTS))

    @property
    def current(self) -> FaultSettings:
        return self._sim._cluster(self._name).faults


class SimServer:
    """Simulated clusters served from a background thread, for tests and the demo.

    ``with SimServer(clusters=3) as sim:`` starts one HTTPS port serving ``sim-1..sim-3``
    and writes a kubeconfig (``sim.kubeconfig_path``) with one context per cluster.
    """

    def __init__(
        self,
        clusters: int | Iterable[str] = 3,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path | str | None = None,
        kubeconfig_path: Path | str | None = None,
        ready_delay: float = 0.2,
        gc_delay: float = DEFAULT_GC_DELAY,
        anonymous_auth: bool = True,
        controllers: bool = True,
        watch_history: int = DEFAULT_HISTORY,
        bookmark_interval: float = 30.0,
        http2: bool = False,
    ) -> None:
        self._tmp: Any = None
        if kubeconfig_path is None:
            import tempfile

            self._tmp = tempfile.TemporaryDirectory(prefix="hub-sim-")
            kubeconfig_path = Path(self._tmp.name) / "kubeconfig"
        self.config = SimConfig(
            names=cluster_names(clusters),
            host=host,
            port=port,
            state_dir=Path(state_dir) if state_dir is not None else None,
            kubeconfig_path=Path(kubeconfig_path),
            ready_delay=ready_delay,
            gc_delay=gc_delay,
            anonymous_auth=anonymous_auth,
            controllers=controllers,
            history=watch_history,
            bookmark_interval=bookmark_interval,
            http2=http2,
        )
        self._running: RunningSim | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serving_thread: Any = None
        self._stop_event: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> SimServer:
        import threading

        if self._serving_thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            async def main() -> None:
                self._loop = asyncio.get_running_loop()
                self._stop_event = asyncio.Event()
                running = RunningSim(self.config)
                try:
                    await running.start()
                except BaseException as exc:
                    failure.append(exc)
                    await running.stop()
                    ready.set()
                    return
                self._running = running
                ready.set()
                try:
                    await self._stop_event.wait()
                finally:
                    await running.stop()

            asyncio.run(main())

        self._serving_thread = threading.Thread(target=run, name="hub-sim", daemon=True)
        self._serving_thread.start()
        ready.wait()
        if failure:
            self._serving_thread.join()
            self._serving_thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        thread = self._serving_thread
        if thread is None:
            return
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)
        thread.join(timeout=30)
        self._serving_thread = None
        self._running = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- facts ---------------------------------------------------------------------------

    def _run(self) -> RunningSim:
        if self._running is None:
            raise ClusterUsageError("the simulator is not running; call start() first")
        return self._running

    def _fleet(self) -> Fleet:
        fleet = self._run().fleet
        assert fleet is not None
        return fleet

    def _cluster(self, name: str) -> SimCluster:
        cluster = self._fleet().clusters.get(name)
        if cluster is None:
            raise ClusterUsageError(f"no simulated cluster named {name!r}")
        return cluster

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop (it may return a coroutine) and wait for it."""
        loop = self._loop
        assert loop is not None

        async def wrapper() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(wrapper(), loop).result(timeout=60)

    @property
    def kubeconfig_path(self) -> Path:
        assert self.config.kubeconfig_path is not None
        return self.config.kubeconfig_path

    @property
    def cluster_names(self) -> list[str]:
        return list(self._fleet().clusters)

    @property
    def url(self) -> str:
        return self._run().url

    @property
    def port(self) -> int:
        return self._run().port

    @property
    def ca_pem(self) -> bytes:
        return self._run().ca_pem

    @property
    def admin_token(self) -> str:
        return self._fleet().admin_token

    def server_url(self, name: str) -> str:
        self._cluster(name)
        return self._run().server_url(name)

    @property
    def http2(self) -> bool:
        """Whether it offers HTTP/2 beside HTTP/1.1."""
        return self.config.http2

    def token(self, name: str) -> str:
        return self._cluster(name).token

    def faults(self, name: str) -> FaultControl:
        self._cluster(name)
        return FaultControl(self, name)

    def add_cluster(self, name: str) -> str:
        """Serve a new empty cluster at run time (the kubeconfig is rewritten); returns its name."""
        cluster_names([name])
        self._call(lambda: self._fleet().add(name))
        self._call(self._run().write_kubeconfig)
        return name

    def remove_cluster(self, name: str) -> None:
        self._call(lambda: self._fleet().remove(name))
        self._call(self._run().write_kubeconfig)

    def compact(self, name: str) -> None:
        """Forget the watch history of a cluster, so watches from older versions get 410."""
        self._call(lambda: self._cluster(name).store.compact())

    def flush(self) -> None:
        """Write pending state to ``state_dir`` now."""
        self._call(lambda: self._fleet().flush())
