"""The typed adapter over a cluster's REST API (the one place requests to a spoke are made).

``AsyncKube`` is what the hub runs on: every request and watch of the sync engine, the
worker's live cache and the deletion path awaits it on the event loop. One ``aiohttp``
session (a connection pool) per cluster, built from the ``Connection``'s TLS material and
bearer token (an exec plugin's token is refreshed through the connection's own hook), so a
thousand clusters' watches and syncs are sockets on one loop, not threads. Discovery (and
the server version) is cached per cluster and shared by every view of it; concurrent
callers share one discovery in flight.

``KubeClient`` is the same protocol, blocking, through the official ``kubernetes``
client's ``ApiClient``: kept for the CLI paths that are not the engine (``hub cluster
check``, registry probes, tests' second opinion). Only ``clusters/`` imports
``kubernetes`` (DESIGN.md layering).

Both speak the REST protocol with raw JSON objects (manifests are the one place raw dicts
are allowed) and turn every failure into a ``KubeError`` subclass, so callers never see an
``ApiException``, a urllib3 or an aiohttp error:

- ``NotFound`` (404), ``Conflict`` (409), ``Gone`` (410, a ``Conflict``: list again),
  ``Invalid`` (400/422, with the API's causes), ``Unauthorized`` (401/403), ``Transient``
  (429, 500, 502, 503, 504, timeouts, refused or dropped connections — the ones worth
  retrying), ``KubeError`` for anything else. A watch's ERROR event raises the same kinds.

Every call has a deadline (``timeout_s``, default ``DEFAULT_TIMEOUT_S``); a watch's is its
window. Discovery maps a (group, kind) to its resource (plural name, namespaced or not,
preferred version) and is refreshed once on a miss, so kinds whose CRD was applied a moment
ago are found. ``with_retry`` gives a view whose every single request goes through a
retrier (the engine retries transient errors per the app's backoff).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import ssl
import threading
import time
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import anyio
import anyio.to_thread
import urllib3
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

from clusters import wirejson
from clusters.connect import Connection
from clusters.errors import ClusterError
from clusters.h2client import Http2Connection, Http2Stream, StreamFailed

DEFAULT_TIMEOUT_S = 30.0
FIELD_MANAGER = "gitops-hub"
# Requests (not watches) one cluster has in flight at once. Over HTTP/1.1 each is a
# connection: unbounded, a burst of syncs opened dozens per cluster, each with its TLS
# handshake, kept only until idle. Waiting for a slot counts against the request's
# deadline. Each open connection also costs ~50 KB of memory (OpenSSL's state, the TLS
# read buffer, aiohttp's protocol): at 1,000 clusters two slots fewer are ~100 MB and a
# third of the hub's handshakes. At sub-millisecond answers the hub's CPU, not a
# cluster's connections, bounds a rollout: 8 -> 4 -> 2 slots made no commit slower
# (docs/benchmarks.md, rounds 4 and 6).
REQUEST_SLOTS = 2
# How long an idle connection is kept (aiohttp's default is 15 s). A connected worker's
# liveness probe asks every ~10 s, but not while watch events show the cluster answering,
# so two probes were often more than 15 s apart: a third of them paid a new connection
# and TLS handshake (an idle fleet of 300: 633 connections a minute, 314 at 30 s).
KEEPALIVE_S = 30.0
# HTTP/2 where the server offers it (every real API server does): one connection per
# cluster carries all its watches and requests (``clusters.h2client``). HUB_HTTP2=0 keeps
# every cluster on HTTP/1.1 (a proxy between hub and cluster that breaks HTTP/2).
HTTP2 = os.environ.get("HUB_HTTP2", "1").strip().lower() not in ("0", "false", "no", "off")
# HTTP/2 connections one cluster may hold: another opens only when every one is at the
# server's stream limit (250 on kube-apiserver), so this is reached only by a server that
# allows very few streams; requests then wait for a slot (within their deadline).
H2_CONNECTIONS = 4
# How much of a refusal's body (a Status) is read over HTTP/2.
MAX_ERROR_BODY = 1024 * 1024
# What HTTP/2 requests say they are: aiohttp's own default, so a server sees (and names
# field managers after) the same agent whichever protocol carried the request.
USER_AGENT = aiohttp.http.SERVER_SOFTWARE

Obj = dict[str, Any]
PropagationPolicy = Literal["Foreground", "Background", "Orphan"]


# ---------------------------------------------------------------- errors


class KubeError(ClusterError):
    """A request to a cluster's API failed; ``status`` is the HTTP status (0 if none)."""

    def __init__(self, message: str, *, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFound(KubeError):
    """The object (or its kind) does not exist."""


class Conflict(KubeError):
    """409: already exists, a resourceVersion conflict, or a field manager conflict."""


class Gone(Conflict):
    """410: the resourceVersion asked for is older than the server's history; list again."""


class Invalid(KubeError):
    """400/422: the API server rejected the object; ``causes`` lists field-level reasons."""

    def __init__(
        self, message: str, *, status: int = 422, reason: str = "", causes: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message, status=status, reason=reason)
        self.causes = causes


class Unauthorized(KubeError):
    """401/403: the credential is rejected or lacks the permission."""


class Transient(KubeError):
    """Worth retrying: throttled, server error, timeout or a connection problem."""


_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


# ---------------------------------------------------------------- discovery


@dataclass(frozen=True, kw_only=True)
class ApiResource:
    """Where a kind is served: ``/apis/{group}/{version}/[namespaces/{ns}/]{plural}``."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: frozenset[str] = frozenset()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str = "", name: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name, safe='')}"
        return base


@dataclass(frozen=True, kw_only=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: Obj


def _at_version(res: ApiResource, api_version: str) -> ApiResource:
    """``res`` at the object's own apiVersion: another served version of the kind uses
    that version's path."""
    if res.api_version == api_version:
        return res
    _, _, version = api_version.rpartition("/")
    return ApiResource(
        group=res.group,
        version=version or res.version,
        kind=res.kind,
        plural=res.plural,
        namespaced=res.namespaced,
        verbs=res.verbs,
    )


def _group_of(api_version: str) -> str:
    group, sep, _ = api_version.rpartition("/")
    return group if sep else ""


Retrier = Callable[[str, Callable[[], Any]], Any]
"""``retrier(what, send)``: call ``send()`` (one HTTP request), retrying ``Transient`` as it
sees fit; ``what`` names the request for messages."""


class _DiscoveryCache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.resources: dict[tuple[str, str], ApiResource] | None = None


class KubeClient:
    """Typed REST calls against one cluster (see the module docstring).

    ``retrier`` wraps every single HTTP request (so a request that failed transiently is
    re-sent alone, not the whole discovery or list it is part of); ``with_retry`` gives a
    view with another retrier sharing this client's connection and discovery cache.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retrier: Retrier | None = None,
        _cache: _DiscoveryCache | None = None,
    ) -> None:
        self.connection = connection
        self.name = connection.name
        self.timeout_s = timeout_s
        self._api: ApiClient = connection.api_client
        self._retrier = retrier
        self._cache = _cache or _DiscoveryCache()

    def with_retry(self, retrier: Retrier | None) -> KubeClient:
        return KubeClient(
            self.connection, timeout_s=self.timeout_s, retrier=retrier, _cache=self._cache
        )

    # -- transport

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout_s: float | None = None,
        stream: bool = False,
        accept: str = "application/json",
    ) -> Any:
        def send() -> Any:
            return self._send(
                method,
                path,
                query=query,
                body=body,
                content_type=content_type,
                timeout_s=timeout_s,
                stream=stream,
                accept=accept,
            )

        if self._retrier is None:
            return send()
        return self._retrier(f"{method} {path}", send)

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout_s: float | None = None,
        stream: bool = False,
        accept: str = "application/json",
    ) -> Any:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        what = f"{method} {path}"
        try:
            request = self._api.param_serialize(
                method,
                path,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(*request, _request_timeout=(timeout, timeout))
        except ApiException as exc:  # TLS failures surface as status 0
            raise Transient(f"{self.name}: {what}: {exc.reason or 'request failed'}") from None
        except urllib3.exceptions.HTTPError as exc:
            raise Transient(f"{self.name}: {what}: {_describe(exc, timeout)}") from None
        except OSError as exc:
            raise Transient(f"{self.name}: {what}: {exc.strerror or type(exc).__name__}") from None
        status = int(response.status)
        if stream and 200 <= status <= 299:
            return response.response
        try:
            data = response.read()  # type: ignore[no-untyped-call]
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Transient(f"{self.name}: {what}: {_describe(exc, timeout)}") from None
        if 200 <= status <= 299:
            if not data:
                return {}
            try:
                return wirejson.loads(data)
            except ValueError:
                raise KubeError(f"{self.name}: {what}: answer is not JSON", status=status) from None
        raise _error(self.name, what, status, data)

    # -- discovery

    def _discover(self) -> dict[tuple[str, str], ApiResource]:
        core = self._request("GET", "/api", accept=DISCOVERY_ACCEPT)
        groups = self._request("GET", "/apis", accept=DISCOVERY_ACCEPT)
        versions, known = discovery_versions(core, groups)
        for group, version in [gv for gv in versions if gv not in known]:  # a legacy server's
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            try:
                doc = self._request("GET", path)
            except NotFound:
                continue  # a group going away between the two calls
            known[(group, version)] = _resources_of(group, version, doc)
        found = _first_of_each_kind(versions, known)
        with self._cache.lock:
            self._cache.resources = found
        return found

    def resources(self, *, refresh: bool = False) -> dict[tuple[str, str], ApiResource]:
        """Every (group, kind) the cluster serves, at its preferred version."""
        with self._cache.lock:
            cached = self._cache.resources
        if cached is None or refresh:
            return self._discover()
        return cached

    def server_version(self) -> str:
        """The API server's ``gitVersion`` (``GET /version``), "" when it gives none."""
        doc = self._request("GET", "/version")
        return str(doc.get("gitVersion") or "") if isinstance(doc, dict) else ""

    def resource_for(self, group: str, kind: str) -> ApiResource:
        """The resource serving (group, kind); rediscovers once before raising NotFound."""
        res = self.resources().get((group, kind))
        if res is None:
            res = self.resources(refresh=True).get((group, kind))
        if res is None:
            shown = f"{group}/{kind}" if group else kind
            raise NotFound(
                f"{self.name}: kind {shown} is not served by the cluster (is its CRD installed?)",
                status=404,
            )
        return res

    def resource_of(self, obj: Mapping[str, Any]) -> ApiResource:
        """The resource for an object, at the object's own apiVersion when served."""
        api_version = str(obj.get("apiVersion") or "")
        kind = str(obj.get("kind") or "")
        return _at_version(self.resource_for(_group_of(api_version), kind), api_version)

    # -- reads

    def get(self, res: ApiResource, name: str, namespace: str = "") -> Obj:
        obj: Obj = self._request("GET", res.path(namespace, name))
        return _with_type(obj, res)

    def get_or_none(self, res: ApiResource, name: str, namespace: str = "") -> Obj | None:
        try:
            return self.get(res, name, namespace)
        except NotFound:
            return None

    def list(
        self, res: ApiResource, *, namespace: str = "", label_selector: str = ""
    ) -> tuple[list[Obj], str]:
        """Objects of a resource (all namespaces unless ``namespace``) and the list's
        resourceVersion, paging through ``continue`` tokens."""
        items: list[Obj] = []
        token = ""
        while True:
            query = [("limit", "500")]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if token:
                query.append(("continue", token))
            doc = self._request("GET", res.path(namespace), query=query)
            for item in doc.get("items") or []:
                items.append(_with_type(item, res))
            meta = doc.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                return items, str(meta.get("resourceVersion") or "")

    def watch(
        self,
        res: ApiResource,
        *,
        namespace: str = "",
        resource_version: str = "",
        field_selector: str = "",
        timeout_s: float = 30.0,
    ) -> Iterator[WatchEvent]:
        """Events after ``resource_version`` until the server ends the watch (after at most
        ``timeout_s``) or the caller stops iterating. An ``ERROR`` event raises ``KubeError``
        (410 Gone as ``Gone``: list again)."""
        seconds = max(1, int(timeout_s))
        query = [("watch", "1"), ("timeoutSeconds", str(seconds)), ("allowWatchBookmarks", "1")]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        raw = self._request(
            "GET", res.path(namespace), query=query, timeout_s=seconds + 5.0, stream=True
        )
        buffer = b""
        try:
            for chunk in raw.stream(4096, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield self._event(res, line)
            if buffer.strip():
                yield self._event(res, buffer)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Transient(
                f"{self.name}: watch {res.plural}: {_describe(exc, timeout_s)}"
            ) from None
        finally:
            raw.release_conn()

    def _event(self, res: ApiResource, line: bytes) -> WatchEvent:
        return _event(self.name, res, line)

    # -- writes

    def apply(
        self,
        obj: Mapping[str, Any],
        *,
        field_manager: str = FIELD_MANAGER,
        force: bool = True,
        dry_run: bool = False,
    ) -> Obj:
        """Server-side apply (``application/apply-patch+yaml``); returns the object as stored
        (its ``metadata.generation`` is what the health gate waits for)."""
        res = self.resource_of(obj)
        meta = obj.get("metadata") or {}
        query = [("fieldManager", field_manager), ("force", "true" if force else "false")]
        if dry_run:
            query.append(("dryRun", "All"))
        out: Obj = self._request(
            "PATCH",
            res.path(str(meta.get("namespace") or ""), str(meta.get("name") or "")),
            query=query,
            body=dict(obj),
            content_type="application/apply-patch+yaml",
        )
        return out

    def replace(self, obj: Mapping[str, Any], *, field_manager: str = FIELD_MANAGER) -> Obj:
        """PUT the object (``Replace=true``), creating it when absent. The live
        resourceVersion is sent so a concurrent writer makes this a Conflict, not a loss."""
        res = self.resource_of(obj)
        meta = obj.get("metadata") or {}
        name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "")
        live = self.get_or_none(res, name, namespace)
        if live is None:
            return self.create(obj, field_manager=field_manager)
        body = dict(obj)
        body["metadata"] = {
            **dict(meta),
            "resourceVersion": (live.get("metadata") or {}).get("resourceVersion"),
        }
        out: Obj = self._request(
            "PUT",
            res.path(namespace, name),
            query=[("fieldManager", field_manager)],
            body=body,
        )
        return out

    def create(self, obj: Mapping[str, Any], *, field_manager: str = FIELD_MANAGER) -> Obj:
        res = self.resource_of(obj)
        meta = obj.get("metadata") or {}
        out: Obj = self._request(
            "POST",
            res.path(str(meta.get("namespace") or "")),
            query=[("fieldManager", field_manager)],
            body=dict(obj),
        )
        return out

    def merge_patch(self, res: ApiResource, name: str, namespace: str, patch: Obj) -> Obj:
        out: Obj = self._request(
            "PATCH",
            res.path(namespace, name),
            body=patch,
            content_type="application/merge-patch+json",
        )
        return out

    def delete(
        self,
        res: ApiResource,
        name: str,
        namespace: str = "",
        *,
        propagation: PropagationPolicy = "Foreground",
    ) -> bool:
        """Delete; False when it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        try:
            self._request("DELETE", res.path(namespace, name), body=body)
        except NotFound:
            return False
        return True


# ---------------------------------------------------------------- async transport


def _ssl_context(cfg: Configuration) -> ssl.SSLContext:
    """The TLS settings of a connection's ``Configuration`` for aiohttp: its CA (data or
    file), client certificate (the memfd paths ``clusters.connect`` made), or no
    verification when the user chose insecure-skip-tls-verify."""
    if not cfg.verify_ssl:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif cfg.ca_cert_data:
        ctx = ssl.create_default_context(cadata=str(cfg.ca_cert_data))
    else:
        ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file or None)
    return ctx


#: The TLS read buffer of each connection to a spoke. asyncio gives every TLS connection a
#: 256 KiB buffer (``SSLProtocol.max_size``) for the encrypted bytes it reads from the
#: socket, allocated when the connection opens and held while it lives; a hub holds one
#: connection per watched kind per cluster (HTTP/1.1), so at 1,000 clusters those buffers
#: alone were most of its memory (docs/benchmarks.md, "Memory per cluster"). One TLS
#: record is at most 16 KiB, so a buffer of that size still reads a whole record per call:
#: a large LIST takes more (cheap) reads, nothing else changes.
TLS_READ_BUFFER = 16 * 1024

#: Discovery documents fetched at once per cluster: enough to keep discovery quick, few
#: enough that a connecting fleet does not open (and keep alive) a socket per API group.
DISCOVERY_PARALLEL = 3


def _shrink_tls_buffer(transport: Any, size: int = TLS_READ_BUFFER) -> bool:
    """Give an asyncio TLS transport a ``size`` read buffer instead of its 256 KiB one;
    False (and nothing changed) when the transport is not one whose internals are known
    (plain HTTP, another event loop). Called right after the connection is made, between
    two reads, when nothing holds a view of the old buffer."""
    proto = getattr(transport, "_ssl_protocol", None)
    buffer = getattr(proto, "_ssl_buffer", None)
    if proto is None or not isinstance(buffer, bytearray) or not hasattr(proto, "max_size"):
        return False
    if len(buffer) > size:
        # max_size on the instance: get_buffer() never grows the buffer past it again
        proto.max_size = size
        proto._ssl_buffer = bytearray(size)
        proto._ssl_buffer_view = memoryview(proto._ssl_buffer)
    return True


_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=None, sock_read=None)


class _LeanConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` whose TLS connections read through a ``TLS_READ_BUFFER`` buffer."""

    opened = 0  # connections this connector opened (each one a TLS handshake)

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
        self.opened += 1
        proto = await super()._create_connection(req, traces, timeout)
        _shrink_tls_buffer(proto.transport)
        return proto


_SHARED_RESOURCES: weakref.WeakValueDictionary[tuple[Any, ...], ApiResource] = (
    weakref.WeakValueDictionary()
)
_SHARED_LOCK = threading.Lock()


def _shared(res: ApiResource) -> ApiResource:
    """One ``ApiResource`` object for equal ones: a fleet's clusters serve the same kinds,
    so their discovery maps point at the same objects (strings and verb sets included)
    instead of each cluster keeping its own decoded copy. Held weakly: a kind no cluster
    serves any more is freed."""
    # keyed by its fields, not by itself: a key is held strongly, and would keep it alive
    key = (res.group, res.version, res.kind, res.plural, res.namespaced, res.verbs)
    with _SHARED_LOCK:
        found = _SHARED_RESOURCES.get(key)
        if found is None:
            _SHARED_RESOURCES[key] = found = res
        return found


class _Slots:
    """At most ``total`` holders at once, first come first served. A free slot is taken
    without a turn of the event loop: anyio's CapacityLimiter yields on every acquire (a
    cancellation checkpoint), one extra loop turn per request, thousands per rollout. A
    released slot goes straight to the longest waiter."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.in_use = 0
        self._waiters: collections.deque[anyio.Event] = collections.deque()

    async def __aenter__(self) -> None:
        if self.in_use < self.total and not self._waiters:
            self.in_use += 1
            return
        handed = anyio.Event()
        self._waiters.append(handed)
        try:
            await handed.wait()
        except BaseException:
            if handed.is_set():
                self._release()  # handed a slot while being cancelled: pass it on
            else:
                self._waiters.remove(handed)
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()  # the slot changes hands: in_use stays
        else:
            self.in_use -= 1


class _Pool:
    """What the views of one ``AsyncKube`` share: the connections and the discovery
    cache. ``http2``: None until the server was asked, then whether it speaks HTTP/2
    (``h2`` its connections: one, unless the server's stream limit is reached, as Go's
    client does; reopened when lost); False keeps to the aiohttp session."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.http2: bool | None = None if HTTP2 else False
        # not closed yet; after a GOAWAY one stays until the streams it let finish end
        self.h2: list[Http2Connection] = []
        self.h2_opening = anyio.Lock()
        self.h2_opened = 0
        self.h2_ssl: ssl.SSLContext | None = None
        self.resources: dict[tuple[str, str], ApiResource] | None = None
        self.version: str | None = None
        self.discovering: anyio.Event | None = None  # set when the discovery in flight ends
        self.write_guard: Callable[[], None] | None = None
        self.request_slots = _Slots(REQUEST_SLOTS)
        self.answered_at = 0.0  # monotonic time of the last 2xx answer


class _Answer:
    """A 2xx answer being read, whichever protocol carries it: ``status``, ``read()``
    (the whole body) and ``chunks()`` (the body as it arrives; ``TimeoutError`` after
    the request's ``read_s`` of silence)."""

    __slots__ = ("status",)

    status: int

    async def read(self) -> bytes:
        raise NotImplementedError

    def chunks(self) -> AsyncIterator[bytes]:
        raise NotImplementedError


class _Http1Answer(_Answer):
    __slots__ = ("_resp",)

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status

    async def read(self) -> bytes:
        return await self._resp.read()

    def chunks(self) -> AsyncIterator[bytes]:
        return self._resp.content.iter_any()  # aiohttp's sock_read is the silence limit


class _Http2Answer(_Answer):
    __slots__ = ("_read_s", "_stream")

    def __init__(self, stream: Http2Stream, read_s: float | None) -> None:
        self._stream = stream
        self._read_s = read_s
        self.status = stream.status

    async def read(self) -> bytes:
        return await self._stream.read(self._read_s)  # as aiohttp's sock_read on HTTP/1.1

    def chunks(self) -> AsyncIterator[bytes]:
        return self._stream.chunks(self._read_s)


async def _error_body(stream: Http2Stream, read_s: float) -> bytes:
    """The start of a refusal's body (a ``Status``), as much as comes within ``read_s``
    of silence: a server that answers 500 and then says nothing must not hold the caller
    (a watch has no deadline of its own)."""
    parts: list[bytes] = []
    size = 0
    with contextlib.suppress(StreamFailed, TimeoutError):
        async for chunk in stream.chunks(read_s):
            parts.append(chunk)
            size += len(chunk)
            if size >= MAX_ERROR_BODY:
                break
    return b"".join(parts)[:MAX_ERROR_BODY]


AsyncRetrier = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]
"""``await retrier(what, send)``: await ``send()`` (one HTTP request), retrying
``Transient`` as it sees fit; ``what`` names the request for messages."""


class AsyncKube:
    """Typed REST calls against one cluster on the event loop (see the module docstring):
    the same verbs and error kinds as ``KubeClient``.

    One ``aiohttp.ClientSession`` per cluster, opened on first use in the running loop;
    ``aclose()`` releases its sockets. Not thread-safe: use it from its loop only. The
    ``Connection`` is kept referenced, so the in-memory certificate files stay open.
    ``with_retry`` gives a view with another retrier sharing this one's session and
    discovery cache (discovery runs once per cluster, however many syncs ask at once).
    ``write_guard``, when given, is called before every POST/PUT/PATCH/DELETE (hub
    replicas: a write refused unless this replica holds the cluster's lease); whatever it
    raises reaches the caller as is.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retrier: AsyncRetrier | None = None,
        write_guard: Callable[[], None] | None = None,
        _pool: _Pool | None = None,
    ) -> None:
        self.connection = connection
        self.name = connection.name
        self.timeout_s = timeout_s
        cfg = connection.configuration
        self._base = str(cfg.host).rstrip("/")
        self._prefix = urlsplit(self._base).path  # a server under a path (hub sim, proxies)
        self._server_name: str | None = getattr(cfg, "tls_server_name", None) or None
        self._retrier = retrier
        self._pool = _pool or _Pool()
        if write_guard is not None:
            self._pool.write_guard = write_guard

    def with_retry(self, retrier: AsyncRetrier | None) -> AsyncKube:
        return AsyncKube(
            self.connection, timeout_s=self.timeout_s, retrier=retrier, _pool=self._pool
        )

    async def aclose(self) -> None:
        session, self._pool.session = self._pool.session, None
        h2, self._pool.h2 = self._pool.h2, []
        for conn in h2:
            await conn.close()
        if session is not None or h2:
            if session is not None:
                await session.close()
            # TLS transports finish closing on the next turns of the loop; a loop ended
            # at once (``anyio.run`` of a one-shot) would leave their sockets to the GC
            await anyio.sleep(0.05)

    @property
    def connections_opened(self) -> int:
        """Connections this cluster's pool opened so far (each one a TLS handshake)."""
        session = self._pool.session
        connector = session.connector if session is not None else None
        opened = connector.opened if isinstance(connector, _LeanConnector) else 0
        return opened + self._pool.h2_opened

    @property
    def answered_at(self) -> float:
        """Monotonic time of the cluster's last 2xx answer to any request (0: none yet):
        proof that it answers, as good as a liveness probe."""
        return self._pool.answered_at

    @property
    def protocol(self) -> str:
        """ "HTTP/2" or "HTTP/1.1" once the cluster was asked, "" before."""
        return {True: "HTTP/2", False: "HTTP/1.1", None: ""}[self._pool.http2]

    def _open_session(self) -> aiohttp.ClientSession:
        pool = self._pool
        if pool.session is None or pool.session.closed:
            cfg = self.connection.configuration
            try:
                ctx = _ssl_context(cfg)
            except (ssl.SSLError, OSError) as exc:
                raise KubeError(f"{self.name}: TLS settings unusable: {exc}") from None
            # limit: the pool's sockets for this cluster (each watch holds one)
            connector = _LeanConnector(
                ssl=ctx, limit=256, enable_cleanup_closed=True, keepalive_timeout=KEEPALIVE_S
            )
            pool.session = aiohttp.ClientSession(
                connector=connector, auto_decompress=True, raise_for_status=False
            )
        return pool.session

    async def _authorization(self) -> str | None:
        cfg = self.connection.configuration
        if cfg.refresh_api_key_hook is None:
            return cfg.get_api_key_with_prefix("authorization")
        # an exec plugin may run (a subprocess) when its token is about to expire
        token: str | None = await anyio.to_thread.run_sync(
            cfg.get_api_key_with_prefix, "authorization"
        )
        return token

    # -- transport

    @contextlib.asynccontextmanager
    async def _open(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        *,
        body: Any = None,
        content_type: str = "application/json",
        timeout_s: float | None,
        read_s: float | None,
        accept: str = "application/json",
    ) -> AsyncIterator[_Answer]:
        """One request; yields a 2xx answer, raises the ``KubeError`` kind of anything
        else (transport failures as ``Transient``). ``timeout_s`` None: the caller's own
        deadline covers the request, and no timers of our own are armed (two per
        request, thousands per rollout). ``read_s``: the longest silence while reading."""
        what = f"{method} {path}"
        headers = {"Accept": accept}
        data: bytes | None = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        token = await self._authorization()
        if token:
            headers["Authorization"] = token
        h2 = await self._http2_connection(what)
        if h2 is not None:
            async with self._open_h2(
                h2, method, path, query, headers, data, timeout_s=timeout_s, read_s=read_s
            ) as answer:
                self._pool.answered_at = time.monotonic()
                yield answer
            return
        session = self._open_session()
        timeout = (
            _NO_TIMEOUT
            if timeout_s is None
            else aiohttp.ClientTimeout(
                total=timeout_s, sock_connect=self.timeout_s, sock_read=read_s
            )
        )
        try:
            async with session.request(
                method,
                self._base + path,
                params=query,
                headers=headers,
                data=data,
                timeout=timeout,
                server_hostname=self._server_name,
            ) as resp:
                if not 200 <= resp.status <= 299:
                    raise _error(self.name, what, resp.status, await resp.read())
                self._pool.answered_at = time.monotonic()
                yield _Http1Answer(resp)
        except KubeError:
            raise
        except TimeoutError:
            if timeout_s is None:
                raise  # the caller's deadline: it names it
            raise Transient(f"{self.name}: {what}: no answer within {timeout_s:g}s") from None
        except aiohttp.ClientSSLError as exc:
            raise Transient(f"{self.name}: {what}: TLS failed: {type(exc).__name__}") from None
        except aiohttp.ClientConnectorError:
            raise Transient(f"{self.name}: {what}: connection refused") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError):
            raise Transient(f"{self.name}: {what}: connection closed without an answer") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise Transient(f"{self.name}: {what}: {type(exc).__name__}") from None

    async def _http2_connection(self, what: str) -> Http2Connection | None:
        """The cluster's HTTP/2 connection, opened (once, however many ask at once) when
        there is none; None when the server speaks only HTTP/1.1 (asked once)."""
        pool = self._pool
        if pool.http2 is False:
            return None
        for conn in pool.h2:
            if conn.has_room:
                return conn
        async with pool.h2_opening:
            pool.h2 = [conn for conn in pool.h2 if conn.transport is not None]
            for conn in pool.h2:
                if conn.has_room:
                    return conn
            usable = [conn for conn in pool.h2 if conn.usable]
            if len(usable) >= H2_CONNECTIONS:
                # a server allowing few (or no) streams must not get a connection per
                # request: wait for a slot on the least busy one, within the deadline
                return min(usable, key=lambda conn: conn.open_streams)
            url = urlsplit(self._base)
            if url.scheme != "https" or not url.hostname:
                pool.http2 = False  # HTTP/2 to an API server is negotiated in TLS only
                return None
            if pool.h2_ssl is None:
                try:
                    pool.h2_ssl = _ssl_context(self.connection.configuration)
                except (ssl.SSLError, OSError) as exc:
                    raise KubeError(f"{self.name}: TLS settings unusable: {exc}") from None
                pool.h2_ssl.set_alpn_protocols(["h2", "http/1.1"])
            try:
                opened = await Http2Connection.open(
                    url.hostname,
                    url.port or 443,
                    ssl_context=pool.h2_ssl,
                    server_hostname=self._server_name,
                    timeout_s=self.timeout_s,
                )
            except TimeoutError:
                raise Transient(
                    f"{self.name}: {what}: no answer within {self.timeout_s:g}s"
                ) from None
            except ssl.SSLError as exc:
                raise Transient(f"{self.name}: {what}: TLS failed: {type(exc).__name__}") from None
            except StreamFailed as exc:  # connected, then lost before the server's SETTINGS
                raise Transient(f"{self.name}: {what}: {exc}") from None
            except OSError:
                raise Transient(f"{self.name}: {what}: connection refused") from None
            if opened is None:
                pool.http2 = False
                return None
            pool.http2 = True
            pool.h2_opened += 1
            if opened.transport is not None:
                _shrink_tls_buffer(opened.transport)
            pool.h2.append(opened)
            return opened

    @contextlib.asynccontextmanager
    async def _open_h2(
        self,
        conn: Http2Connection,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        data: bytes | None,
        *,
        timeout_s: float | None,
        read_s: float | None,
    ) -> AsyncIterator[_Answer]:
        """``_open`` over the cluster's HTTP/2 connection."""
        what = f"{method} {path}"
        target = self._prefix + path
        if query:
            target += "?" + urlencode(query, quote_via=quote)
        headers["User-Agent"] = USER_AGENT
        try:
            stream = await conn.request(
                method,
                target,
                headers.items(),
                data,
                timeout_s=timeout_s,
            )
        except TimeoutError:
            if timeout_s is None:
                raise  # the caller's deadline: it names it
            raise Transient(f"{self.name}: {what}: no answer within {timeout_s:g}s") from None
        except StreamFailed as exc:
            raise Transient(f"{self.name}: {what}: {exc}") from None
        try:
            if not 200 <= stream.status <= 299:
                payload = await _error_body(stream, read_s or self.timeout_s)
                raise _error(self.name, what, stream.status, payload)
            yield _Http2Answer(stream, read_s)
        finally:
            stream.close()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout_s: float | None = None,
        decode: bool = True,
        accept: str = "application/json",
    ) -> Any:
        """One request answered with JSON (``{}`` for an empty body), through the retrier;
        ``timeout_s``: its deadline when not the client's; ``decode=False``: a success's
        body is read and dropped (``{}``), for a caller that wants the verdict only."""

        async def send() -> Any:
            return await self._send(
                method,
                path,
                query=query or [],
                body=body,
                content_type=content_type,
                timeout_s=timeout_s or self.timeout_s,
                decode=decode,
                accept=accept,
            )

        if self._retrier is None:
            return await send()
        return await self._retrier(f"{method} {path}", send)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]],
        body: Any,
        content_type: str,
        timeout_s: float,
        decode: bool = True,
        accept: str = "application/json",
    ) -> Any:
        what = f"{method} {path}"
        guard = self._pool.write_guard
        if guard is not None and method != "GET":
            guard()
        try:
            with anyio.fail_after(timeout_s):  # the wait for a slot included
                async with (
                    self._pool.request_slots,
                    self._open(
                        method,
                        path,
                        query,
                        body=body,
                        content_type=content_type,
                        timeout_s=None,  # fail_after above
                        read_s=None,
                        accept=accept,
                    ) as resp,
                ):
                    try:
                        data = await resp.read()
                    except (aiohttp.ClientError, OSError) as exc:
                        raise Transient(f"{self.name}: {what}: {type(exc).__name__}") from None
                    status = resp.status
        except TimeoutError:  # the slot, aiohttp's own deadline or the body's read
            raise Transient(f"{self.name}: {what}: no answer within {timeout_s:g}s") from None
        if not data or not decode:
            return {}
        try:
            return wirejson.loads(data)
        except ValueError:
            raise KubeError(f"{self.name}: {what}: answer is not JSON", status=status) from None

    # -- discovery

    async def _discover(self) -> dict[tuple[str, str], ApiResource]:
        core = await self._request("GET", "/api", accept=DISCOVERY_ACCEPT)
        groups = await self._request("GET", "/apis", accept=DISCOVERY_ACCEPT)
        versions, known = discovery_versions(core, groups)
        missing = [gv for gv in versions if gv not in known]  # a legacy server's

        async def one(group: str, version: str) -> None:
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            with contextlib.suppress(NotFound):  # a group going away between the two calls
                doc = await self._request("GET", path)
                known[(group, version)] = _resources_of(group, version, doc)

        async def some(share: list[GroupVersion]) -> None:
            for group, version in share:
                await one(group, version)

        if missing:
            async with anyio.create_task_group() as tg:
                for i in range(DISCOVERY_PARALLEL):
                    tg.start_soon(some, missing[i::DISCOVERY_PARALLEL])
        found = _first_of_each_kind(versions, known)
        return {gk: _shared(res) for gk, res in found.items()}

    async def resources(self, *, refresh: bool = False) -> dict[tuple[str, str], ApiResource]:
        """Every (group, kind) the cluster serves, at its preferred version. Cached per
        cluster; concurrent callers share one discovery in flight."""
        pool = self._pool
        while True:
            if pool.resources is not None and not refresh:
                return pool.resources
            if pool.discovering is None:
                break
            await pool.discovering.wait()  # someone else's discovery: take its answer
            refresh = False
        pool.discovering = done = anyio.Event()
        try:
            pool.resources = await self._discover()
            return pool.resources
        finally:
            pool.discovering = None
            done.set()

    async def server_version(self) -> str:
        """The API server's ``gitVersion`` (``GET /version``), "" when it gives none; asked
        once per cluster."""
        if self._pool.version is None:
            doc = await self._request("GET", "/version")
            self._pool.version = str(doc.get("gitVersion") or "") if isinstance(doc, dict) else ""
        return self._pool.version

    async def ping(self, timeout_s: float | None = None) -> None:
        """One small request (``GET /version``) that proves the cluster answers (within
        ``timeout_s`` when given, else the client's deadline)."""
        await self._request("GET", "/version", timeout_s=timeout_s)

    async def resource_for(self, group: str, kind: str) -> ApiResource:
        """The resource serving (group, kind); rediscovers once before raising NotFound."""
        res = (await self.resources()).get((group, kind))
        if res is None:
            res = (await self.resources(refresh=True)).get((group, kind))
        if res is None:
            shown = f"{group}/{kind}" if group else kind
            raise NotFound(
                f"{self.name}: kind {shown} is not served by the cluster (is its CRD installed?)",
                status=404,
            )
        return res

    async def resource_of(self, obj: Mapping[str, Any]) -> ApiResource:
        """The resource for an object, at the object's own apiVersion when served."""
        api_version = str(obj.get("apiVersion") or "")
        res = await self.resource_for(_group_of(api_version), str(obj.get("kind") or ""))
        return _at_version(res, api_version)

    # -- reads

    async def get(self, res: ApiResource, name: str, namespace: str = "") -> Obj:
        obj: Obj = await self._request("GET", res.path(namespace, name))
        return _with_type(obj, res)

    async def get_or_none(self, res: ApiResource, name: str, namespace: str = "") -> Obj | None:
        try:
            return await self.get(res, name, namespace)
        except NotFound:
            return None

    async def list(
        self, res: ApiResource, *, namespace: str = "", label_selector: str = ""
    ) -> tuple[list[Obj], str]:
        """Every object (all namespaces unless ``namespace``), paging through ``continue``
        tokens, and the list's resourceVersion."""
        items: list[Obj] = []
        token = ""
        path = res.path(namespace)
        while True:
            query = [("limit", "500")]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if token:
                query.append(("continue", token))
            doc = await self._request("GET", path, query=query)
            for item in doc.get("items") or []:
                items.append(_with_type(item, res))
            meta = doc.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                return items, str(meta.get("resourceVersion") or "")

    async def watch(
        self,
        res: ApiResource,
        *,
        namespace: str = "",
        resource_version: str = "",
        field_selector: str = "",
        timeout_s: float = 30.0,
        on_open: Callable[[], None] | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Events after ``resource_version`` until the server ends the window (after
        ``timeout_s``, sent as ``timeoutSeconds``) with BOOKMARKs asked for; an ERROR event
        raises (410 as ``Gone``). Close it with ``contextlib.aclosing`` when stopping
        early. The socket may stay silent for the whole window (no change, no bookmark):
        only past the window and a margin is it taken for dead. ``on_open`` is called once
        the server accepted the watch (a window may last minutes: the caller need not wait
        for its end to know the cluster answered)."""
        seconds = max(1, int(timeout_s))
        query = [("watch", "1"), ("timeoutSeconds", str(seconds)), ("allowWatchBookmarks", "1")]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        path = res.path(namespace)
        limit = seconds + 5.0
        async with contextlib.AsyncExitStack() as stack:
            # The window bounds the stream, not the wait for the answer: a cluster that
            # accepts the connection and never answers (a hang) must fail like any call.
            try:
                with anyio.fail_after(self.timeout_s):
                    resp = await stack.enter_async_context(
                        self._open("GET", path, query, timeout_s=limit, read_s=limit)
                    )
            except TimeoutError:
                raise Transient(
                    f"{self.name}: watch {res.plural}: no answer within {self.timeout_s:g}s"
                ) from None
            if on_open is not None:
                on_open()
            buffer = bytearray()
            try:
                async for chunk in resp.chunks():
                    buffer += chunk
                    start = 0
                    while (end := buffer.find(b"\n", start)) >= 0:
                        line = bytes(buffer[start:end])
                        start = end + 1
                        if line.strip():
                            yield _event(self.name, res, line)
                    del buffer[:start]
            except TimeoutError:
                raise Transient(
                    f"{self.name}: watch {res.plural}: no answer within {limit:g}s"
                ) from None
            except (aiohttp.ClientError, OSError) as exc:
                raise Transient(
                    f"{self.name}: watch {res.plural}: connection closed ({type(exc).__name__})"
                ) from None
            if bytes(buffer).strip():
                yield _event(self.name, res, bytes(buffer))

    # -- writes

    async def apply(
        self,
        obj: Mapping[str, Any],
        *,
        field_manager: str = FIELD_MANAGER,
        force: bool = True,
        dry_run: bool = False,
    ) -> Obj:
        """Server-side apply (``application/apply-patch+yaml``; ``dry_run``: dryRun=All);
        returns the object as stored (its ``metadata.generation`` is what the health gate
        waits for). A dry run returns ``{}``: its verdict is that it did not raise, and
        decoding the object it would store was a JSON parse per object per sync."""
        res = await self.resource_of(obj)
        meta = obj.get("metadata") or {}
        query = [("fieldManager", field_manager), ("force", "true" if force else "false")]
        if dry_run:
            query.append(("dryRun", "All"))
        out: Obj = await self._request(
            "PATCH",
            res.path(str(meta.get("namespace") or ""), str(meta.get("name") or "")),
            query=query,
            body=dict(obj),
            content_type="application/apply-patch+yaml",
            decode=not dry_run,
        )
        return out

    async def replace(self, obj: Mapping[str, Any], *, field_manager: str = FIELD_MANAGER) -> Obj:
        """PUT the object (``Replace=true``), creating it when absent. The live
        resourceVersion is sent so a concurrent writer makes this a Conflict, not a loss."""
        res = await self.resource_of(obj)
        meta = obj.get("metadata") or {}
        name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "")
        live = await self.get_or_none(res, name, namespace)
        if live is None:
            return await self.create(obj, field_manager=field_manager)
        body = dict(obj)
        body["metadata"] = {
            **dict(meta),
            "resourceVersion": (live.get("metadata") or {}).get("resourceVersion"),
        }
        out: Obj = await self._request(
            "PUT", res.path(namespace, name), query=[("fieldManager", field_manager)], body=body
        )
        return out

    async def create(self, obj: Mapping[str, Any], *, field_manager: str = FIELD_MANAGER) -> Obj:
        res = await self.resource_of(obj)
        meta = obj.get("metadata") or {}
        out: Obj = await self._request(
            "POST",
            res.path(str(meta.get("namespace") or "")),
            query=[("fieldManager", field_manager)],
            body=dict(obj),
        )
        return out

    async def merge_patch(self, res: ApiResource, name: str, namespace: str, patch: Obj) -> Obj:
        out: Obj = await self._request(
            "PATCH",
            res.path(namespace, name),
            body=patch,
            content_type="application/merge-patch+json",
        )
        return out

    async def delete(
        self,
        res: ApiResource,
        name: str,
        namespace: str = "",
        *,
        propagation: PropagationPolicy = "Foreground",
    ) -> bool:
        """Delete; False when it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        try:
            await self._request("DELETE", res.path(namespace, name), body=body)
        except NotFound:
            return False
        return True


# Aggregated discovery (Kubernetes 1.26 beta, 1.30 GA): ``/api`` and ``/apis`` answer every
# group version's resources in one document when asked for it, where the legacy protocol
# needs a request per group version (a dozen on ``hub sim``, fifty or more on a real
# cluster with its add-ons). A server that does not know the type answers plain JSON.
DISCOVERY_ACCEPT = ",".join(
    [
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
        "application/json",
    ]
)
_AGGREGATED_API_VERSIONS = ("apidiscovery.k8s.io/v2", "apidiscovery.k8s.io/v2beta1")

GroupVersion = tuple[str, str]


def discovery_versions(
    core: Any, groups: Any
) -> tuple[list[GroupVersion], dict[GroupVersion, list[ApiResource]]]:
    """What the answers of ``/api`` and ``/apis`` say: the group versions to read, in
    discovery order (the core versions, then each group's preferred one), and the resources
    of those the answers already carry (all of them when both are aggregated)."""
    versions: list[GroupVersion] = []
    known: dict[GroupVersion, list[ApiResource]] = {}
    for doc, legacy in ((core, _core_versions), (groups, _preferred_group_versions)):
        if not isinstance(doc, Mapping):
            continue
        if doc.get("kind") == "APIGroupDiscoveryList" and doc.get("apiVersion") in (
            _AGGREGATED_API_VERSIONS
        ):
            for gv, resources in _aggregated_resources(doc):
                versions.append(gv)
                known[gv] = resources
        else:
            versions.extend(legacy(doc))
    return versions, known


def _core_versions(doc: Mapping[str, Any]) -> list[GroupVersion]:
    return [("", v) for v in _items(doc.get("versions")) if isinstance(v, str) and v]


def _preferred_group_versions(doc: Mapping[str, Any]) -> list[GroupVersion]:
    out = []
    for g in _items(doc.get("groups")):
        if not isinstance(g, Mapping) or not isinstance(g.get("name"), str) or not g["name"]:
            continue
        preferred = _fields(g.get("preferredVersion")).get("version")
        if not preferred:
            preferred = _fields(next(iter(_items(g.get("versions"))), None)).get("version")
        if isinstance(preferred, str) and preferred:
            out.append((g["name"], preferred))
    return out


def _aggregated_resources(
    doc: Mapping[str, Any],
) -> list[tuple[GroupVersion, list[ApiResource]]]:
    """Each group's preferred version in an ``APIGroupDiscoveryList`` with its kinds: the
    first version listed (they come in order of preference) that is not marked Stale (an
    aggregated API server that has not answered lately), as a legacy client would read the
    preferred version's own document. Subresources are left out."""
    out = []
    for item in _items(doc.get("items")):
        group = _fields(_fields(item).get("metadata")).get("name") or ""
        if not isinstance(group, str):
            continue
        for v in map(_fields, _items(_fields(item).get("versions"))):
            version = v.get("version")
            if v.get("freshness") == "Stale" or not isinstance(version, str) or not version:
                continue
            resources = []
            for r in map(_fields, _items(v.get("resources"))):
                plural, kind = r.get("resource"), _fields(r.get("responseKind")).get("kind")
                if not isinstance(plural, str) or not plural or not isinstance(kind, str):
                    continue
                resources.append(
                    ApiResource(
                        group=group,
                        version=version,
                        kind=kind,
                        plural=plural,
                        namespaced=r.get("scope") == "Namespaced",
                        verbs=_verbs(r.get("verbs")),
                    )
                )
            out.append(((group, version), resources))
            break
    return out


def _items(value: Any) -> list[Any]:
    """A discovery field that should be a list; anything else reads as empty."""
    return value if isinstance(value, list) else []


def _fields(value: Any) -> Mapping[str, Any]:
    """A discovery field that should be an object; anything else reads as empty."""
    return value if isinstance(value, Mapping) else {}


def _verbs(value: Any) -> frozenset[str]:
    return frozenset(v for v in _items(value) if isinstance(v, str))


def _first_of_each_kind(
    versions: list[GroupVersion], known: Mapping[GroupVersion, list[ApiResource]]
) -> dict[tuple[str, str], ApiResource]:
    """(group, kind) -> its resource, the first in discovery order winning."""
    found: dict[tuple[str, str], ApiResource] = {}
    for gv in versions:
        for res in known.get(gv, ()):
            found.setdefault((res.group, res.kind), res)
    return found


def _resources_of(group: str, version: str, doc: Mapping[str, Any]) -> list[ApiResource]:
    """The kinds one discovery document (``/api/v1``, ``/apis/GROUP/VERSION``) serves,
    without subresources."""
    out = []
    for r in map(_fields, _items(_fields(doc).get("resources"))):
        name = r.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            continue  # subresources
        out.append(
            ApiResource(
                group=group,
                version=version,
                kind=str(r.get("kind") or ""),
                plural=name,
                namespaced=bool(r.get("namespaced")),
                verbs=_verbs(r.get("verbs")),
            )
        )
    return out


def _event(cluster: str, res: ApiResource, line: bytes) -> WatchEvent:
    """One line of a watch stream; an ERROR event raises its ``KubeError`` kind."""
    try:
        doc = wirejson.loads(line)
    except ValueError:
        raise Transient(f"{cluster}: watch {res.plural}: broken event") from None
    etype = str(doc.get("type") or "")
    obj = doc.get("object") or {}
    if etype == "ERROR":
        code = int(obj.get("code") or 0)
        msg = str(obj.get("message") or "watch error")
        if code == 410:
            raise Gone(f"{cluster}: watch {res.plural}: {msg}", status=410)
        raise _error(cluster, f"watch {res.plural}", code or 500, json.dumps(obj).encode())
    return WatchEvent(type=etype, object=_with_type(obj, res))


def _with_type(obj: Obj, res: ApiResource) -> Obj:
    # list items come without apiVersion/kind; the engine keys objects by them
    obj.setdefault("apiVersion", res.api_version)
    obj.setdefault("kind", res.kind)
    return obj


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return "connection refused"
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return "connection closed without an answer"
    return type(exc).__name__


def _error(cluster: str, what: str, status: int, data: bytes | None) -> KubeError:
    message = ""
    reason = ""
    causes: tuple[str, ...] = ()
    try:
        doc = wirejson.loads(data or b"{}")
    except ValueError:
        doc = {}
    if isinstance(doc, dict):
        message = str(doc.get("message") or "")
        reason = str(doc.get("reason") or "")
        details = doc.get("details") if isinstance(doc.get("details"), dict) else {}
        causes = tuple(
            f"{c.get('field') or ''}: {c.get('message') or c.get('reason') or ''}".strip(": ")
            for c in (details or {}).get("causes") or []
            if isinstance(c, dict)
        )
    text = f"{cluster}: {what}: HTTP {status}{' ' + reason if reason else ''}"
    if message:
        text += f": {message}"
    if status == 404:
        return NotFound(text, status=status, reason=reason)
    if status == 409:
        return Conflict(text, status=status, reason=reason)
    if status == 410:
        return Gone(text, status=status, reason=reason)
    if status in (400, 422):
        return Invalid(text, status=status, reason=reason, causes=causes)
    if status in (401, 403):
        return Unauthorized(text, status=status, reason=reason)
    if status in _TRANSIENT_STATUS:
        return Transient(text, status=status, reason=reason)
    return KubeError(text, status=status, reason=reason)
