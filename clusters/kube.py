"""A small typed adapter over the official ``kubernetes`` client for the sync engine.

The engine's cluster I/O goes through ``KubeClient`` only, so ``kubernetes`` stays inside
``clusters/`` (DESIGN.md layering). It speaks the REST protocol with raw JSON objects
(manifests are the one place raw dicts are allowed) through the connection's
``ApiClient`` — the same authentication, TLS and credential refresh as every other part of
the hub — and turns every failure into a ``KubeError`` subclass, so callers never see an
``ApiException`` or a urllib3 error:

- ``NotFound`` (404), ``Conflict`` (409), ``Invalid`` (400/422, with the API's causes),
  ``Unauthorized`` (401/403), ``Transient`` (429, 500, 502, 503, 504, timeouts, refused or
  dropped connections — the ones worth retrying), ``KubeError`` for anything else.

Every call has a deadline (``timeout_s``, default ``DEFAULT_TIMEOUT_S``). Discovery maps a
(group, kind) to its resource (plural name, namespaced or not, preferred version) and is
refreshed once on a miss, so kinds whose CRD was applied a moment ago are found.

Thread-safe: one ``KubeClient`` per cluster may be shared by threads.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from clusters.connect import Connection
from clusters.errors import ClusterError

DEFAULT_TIMEOUT_S = 30.0
FIELD_MANAGER = "gitops-hub"

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
    ) -> Any:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        headers = {"Accept": "application/json"}
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
                return json.loads(data)
            except ValueError:
                raise KubeError(f"{self.name}: {what}: answer is not JSON", status=status) from None
        raise _error(self.name, what, status, data)

    # -- discovery

    def _discover(self) -> dict[tuple[str, str], ApiResource]:
        found: dict[tuple[str, str], ApiResource] = {}
        versions: list[tuple[str, str]] = []
        core = self._request("GET", "/api")
        for v in core.get("versions") or []:
            versions.append(("", str(v)))
        groups = self._request("GET", "/apis")
        for g in groups.get("groups") or []:
            preferred = (g.get("preferredVersion") or {}).get("version")
            if not preferred and g.get("versions"):
                preferred = g["versions"][0].get("version")
            if preferred:
                versions.append((str(g["name"]), str(preferred)))
        for group, version in versions:
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            try:
                doc = self._request("GET", path)
            except NotFound:
                continue  # a group going away between the two calls
            for r in doc.get("resources") or []:
                name = str(r.get("name") or "")
                if not name or "/" in name:
                    continue  # subresources
                res = ApiResource(
                    group=group,
                    version=version,
                    kind=str(r.get("kind") or ""),
                    plural=name,
                    namespaced=bool(r.get("namespaced")),
                    verbs=frozenset(r.get("verbs") or ()),
                )
                found.setdefault((group, res.kind), res)
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
        res = self.resource_for(_group_of(api_version), kind)
        if res.api_version == api_version:
            return res
        # the object names another served version of the kind: use that one's path
        _, _, version = api_version.rpartition("/")
        return ApiResource(
            group=res.group,
            version=version or res.version,
            kind=res.kind,
            plural=res.plural,
            namespaced=res.namespaced,
            verbs=res.verbs,
        )

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
        (410 Gone as ``Conflict``: list again)."""
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
        try:
            doc = json.loads(line)
        except ValueError:
            raise Transient(f"{self.name}: watch {res.plural}: broken event") from None
        etype = str(doc.get("type") or "")
        obj = doc.get("object") or {}
        if etype == "ERROR":
            code = int(obj.get("code") or 0)
            msg = str(obj.get("message") or "watch error")
            if code == 410:
                raise Conflict(f"{self.name}: watch {res.plural}: {msg}", status=410)
            raise _error(self.name, f"watch {res.plural}", code or 500, json.dumps(obj).encode())
        return WatchEvent(type=etype, object=_with_type(obj, res))

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
        doc = json.loads(data or b"{}")
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
    if status in (400, 422):
        return Invalid(text, status=status, reason=reason, causes=causes)
    if status in (401, 403):
        return Unauthorized(text, status=status, reason=reason)
    if status in _TRANSIENT_STATUS:
        return Transient(text, status=status, reason=reason)
    return KubeError(text, status=status, reason=reason)
