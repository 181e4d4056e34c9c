"""The objects of one simulated cluster and every rule a write must follow.

All methods are plain synchronous code that runs on the server's event loop, so no locks
are needed: a request handler or a controller calls them and they finish before anything
else touches the store. Cascades that a real cluster runs in kube-controller-manager
(garbage collection, the ``orphan``/``foregroundDeletion`` finalizers, namespace and CRD
clean-up) run ``gc_delay`` seconds later (``loop.call_later``), as the real controllers do
some time after the write that asked for them: clients see the intermediate
"Terminating" states and code that assumes deletion is instant fails against the sim as
it would against a real cluster. The objects kube-controller-manager publishes in every
namespace (the ``kube-root-ca.crt`` ConfigMap, the ``default`` ServiceAccount) appear
right after the namespace is created (``loop.call_soon``) and come back when deleted.

Stored objects are never mutated after they are stored: every write builds a new dict.
Handlers may therefore serialise stored objects directly without copying them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import os
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from clusters import wirejson
from clusters.sim import defaults, ssa
from clusters.sim import patch as patching
from clusters.sim.clock import rfc3339
from clusters.sim.kinds import (
    CRD_GROUP_KIND,
    NAMESPACE_GROUP_KIND,
    GroupKind,
    InvalidCRD,
    KindRegistry,
    ResourceType,
    types_from_crd,
)
from clusters.sim.selectors import (
    NO_FIELDS,
    FieldSelector,
    LabelSelector,
    selector_to_string,
)
from clusters.yamlload import SAFE_LOADER

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects

# The watch history, as kube-apiserver's watch cache keeps it (watch_cache.go): every
# change of the last 75 seconds (its eventFreshDuration), never fewer than the last 100
# (its lower bound), and here never more than DEFAULT_HISTORY per cluster. A count alone
# kept the last 1,000 changes of every cluster whatever their age: about 4 MB of old
# object versions per cluster, which a 1,000-cluster simulator grew into over six commits.
DEFAULT_HISTORY = 1000
DEFAULT_HISTORY_WINDOW = 75.0
HISTORY_FLOOR = 100
DEFAULT_GC_DELAY = 0.3  # seconds from a delete to kube-controller-manager's cascade step
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
DEFAULT_SERVICE_ACCOUNT = "default"
_ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
    "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
    "guaranteed across distributions of Kubernetes clusters."
)
PROTECTED_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME_KINDS = frozenset({"Namespace", "Service"})
_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def load_yaml(raw: bytes | str) -> Any:
    """A YAML request body. JSON (what most clients send in an apply, and a subset of YAML)
    goes through the json module, anything else through libyaml where it is installed:
    pure-Python YAML parsing was the largest single cost of a fleet's applies."""
    head = raw.lstrip()[:1]
    if head in (b"{", "{"):
        try:
            return wirejson.loads(raw)
        except ValueError:
            pass  # flow-style YAML that is not JSON
    doc = yaml.load(raw, Loader=SAFE_LOADER)
    try:
        # JSON has no NaN or infinity, and the server converts YAML to JSON first.
        wirejson.refuse_non_finite(doc)
    except ValueError as exc:
        raise yaml.YAMLError(f"error converting YAML to JSON: {exc}") from None
    return doc


# Kinds whose defaulting of the status reads nothing else of the object. A status write to
# one keeps the rest of the stored object as it is: shared with the stored version, neither
# copied nor defaulted again (it was defaulted when stored; defaulting only fills in what
# is unset). A real server's status strategy keeps the old spec the same way. The Pod (its
# qosClass) and the CRD (its storedVersions) read their spec, and go the long way.
_STATUS_ONLY_DEFAULTS: frozenset[GroupKind] = frozenset(
    {
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("batch", "Job"),
        ("batch", "CronJob"),
    }
)
# With this set (the test suite sets it), every such status write is also made the long
# way, and the two must agree (``ClusterStore._check_status_write``).
CHECK_WRITES_ENV = "HUB_SIM_CHECK_WRITES"


def now_iso() -> str:
    """Now in RFC 3339, whole seconds (every write stamps it)."""
    return rfc3339()


def clone_obj(obj: Obj) -> Obj:
    """``clone`` for an object (typed)."""
    return {k: clone(v) for k, v in obj.items()}


def clone(value: Any) -> Any:
    """Deep copy of JSON data (much faster than ``copy.deepcopy``)."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


# Errors --------------------------------------------------------------------------------


class ApiError(Exception):
    """A request the API refuses; carries the ``Status`` object a real server would send."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        out: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            out["details"] = self.details
        out["code"] = self.code
        return out


def _details(rt: ResourceType | None, name: str) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name} if name else {}
    if rt is not None:
        if rt.group:
            d["group"] = rt.group
        d["kind"] = rt.plural
    return d


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{rt.qualified_plural} "{name}" not found', _details(rt, name)
    )


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{rt.qualified_plural} "{name}" already exists', _details(rt, name)
    )


def conflict(rt: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.qualified_plural} "{name}": {why}',
        _details(rt, name),
    )


def stale(rt: ResourceType, name: str) -> ApiError:
    return conflict(
        rt,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cause:
    field: str
    reason: str  # FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, ...
    message: str


def invalid(rt: ResourceType, name: str, causes: list[Cause]) -> ApiError:
    summary = ", ".join(f"{c.field}: {c.message}" for c in causes)
    if len(causes) > 1:
        summary = f"[{summary}]"
    details = _details(rt, name)
    details["kind"] = rt.kind
    details["causes"] = [
        {"reason": c.reason, "message": c.message, "field": c.field} for c in causes
    ]
    qualified = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}', details)


def forbidden(rt: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(
        403, "Forbidden", f'{rt.qualified_plural} "{name}" is forbidden: {why}', _details(rt, name)
    )


def _semantics_error(exc: Exception) -> ApiError:
    code = int(getattr(exc, "code", 400) or 400)
    reason = str(getattr(exc, "reason", "BadRequest") or "BadRequest")
    return ApiError(code, reason, str(exc))


# Watch plumbing ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One stored change, kept in the history for watches that resume from a version."""

    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    group_kind: GroupKind
    namespace: str
    obj: Obj
    old: Obj | None
    at: float  # monotonic seconds when it was stored, for the history's time window


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a watcher receives: the event type as this watcher sees it, and the object."""

    type: str
    obj: Obj


# Queued to wake a watch stream's reader without an event (its deadline, a bookmark).
WAKE = Delivery("", {})


class Watcher:
    """One watch stream's subscription: filters changes and queues them."""

    MAX_BACKLOG = 20000

    def __init__(
        self,
        group_kind: GroupKind | None,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> None:
        self.group_kind = group_kind
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.queue: asyncio.Queue[Delivery | None] = asyncio.Queue()
        self.closed = False
        # Set when the store dropped this watcher (too slow, cluster removed).
        self.overflowed = False
        # Set when an outage fault ended the stream: the connection is dropped.
        self.aborted = False

    def _matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        if not self.labels.empty and not self.labels.matches(
            (obj.get("metadata") or {}).get("labels")
        ):
            return False
        return not self.fields.requirements or self.fields.matches(obj)

    def offer(self, change: Change) -> None:
        if self.closed:
            return
        if self.group_kind is not None and change.group_kind != self.group_kind:
            return
        if self.namespace and change.namespace != self.namespace:
            return
        now_match = self._matches(change.obj)
        kind = change.type
        if kind == "MODIFIED" and (not self.labels.empty or self.fields.requirements):
            # As the watch cache does: leaving the selection is a DELETED, entering an ADDED.
            was = self._matches(change.old)
            if was and not now_match:
                self._put(Delivery("DELETED", change.obj))
            elif now_match and not was:
                self._put(Delivery("ADDED", change.obj))
            elif now_match:
                self._put(Delivery("MODIFIED", change.obj))
        elif now_match:
            self._put(Delivery(kind, change.obj))

    def _put(self, delivery: Delivery) -> None:
        if self.queue.qsize() >= self.MAX_BACKLOG:
            # A consumer this far behind is dropped, as kube-apiserver drops slow watchers;
            # the client sees the stream end and re-lists.
            self.overflowed = True
            self.close()
            return
        self.queue.put_nowait(delivery)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)

    def wake(self) -> None:
        """Wake the reader with no event (``WAKE``); nothing once closed."""
        if not self.closed:
            self.queue.put_nowait(WAKE)


# The store -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ListResult:
    items: list[Obj]
    resource_version: str
    continue_token: str
    remaining: int | None


# What a write to the status subresource reads of its body.
_STATUS_BODY = frozenset({"apiVersion", "kind", "metadata", "status"})


def _meta(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


_META_ORDER = (
    "name", "generateName", "namespace", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields",
)  # fmt: skip


def _status_written(old: Obj, status: Any, *, shared: bool) -> Obj:
    """The stored object ``old`` with ``status`` and without managedFields: its other
    fields are ``old``'s own (``shared``) or copies of them."""
    result: Obj = {}
    for k, v in old.items():
        if k == "metadata":
            if shared:
                result[k] = {mk: mv for mk, mv in v.items() if mk != "managedFields"}
            else:
                result[k] = {mk: clone(mv) for mk, mv in v.items() if mk != "managedFields"}
        elif k != "status":
            result[k] = v if shared else clone(v)
        elif status is not None:
            result[k] = status
    if status is not None:
        result["status"] = status
    return result


def _clone_body(body: Obj) -> Obj:
    """``clone(body)``, but sharing the field sets of ``metadata.managedFields``."""
    meta = body.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return clone_obj(body)
    out: Obj = {}
    for k, v in body.items():
        if k == "metadata":
            out[k] = {
                mk: _clone_managed_fields(mv) if mk == "managedFields" else clone(mv)
                for mk, mv in meta.items()
            }
        else:
            out[k] = clone(v)
    return out


def _clone_managed_fields(entries: Any) -> Any:
    """``clone(entries)`` but for each entry's ``fieldsV1``, the largest part of an object
    (a controller's update and every patch send the stored entries back). Nothing changes
    a field set in place: the Go round trip leaves them alone (``defaults._OPAQUE``), the
    tracking only reads them, and what it stores it encodes, or the stored version shares."""
    if not isinstance(entries, list):
        return clone(entries)
    return [
        {k: v if k == "fieldsV1" and isinstance(v, dict) else clone(v) for k, v in e.items()}
        if isinstance(e, dict)
        else clone(e)
        for e in entries
    ]


def _share_unchanged(new: Obj, old: Obj) -> None:
    """Make ``new`` (about to be stored) share every part that is exactly ``old``'s.

    A write copies what it was sent, so a new version held its own copy of everything it
    left as it was (a Deployment's spec when only an annotation changed), kept as long as
    the version stays in the watch history for the garbage collector to walk, and caches
    by stored object (the Deployment controller's template hash) missed. Only the top
    dict and ``metadata`` itself stay new: the server sets resourceVersion in it."""
    for key, value in list(new.items()):
        if key == "metadata" and isinstance(value, dict):
            old_meta = old.get("metadata")
            if isinstance(old_meta, dict):
                for mkey, mvalue in list(value.items()):
                    if mkey in old_meta:
                        value[mkey] = _unchanged_or_new(mvalue, old_meta[mkey])
        elif key in old:
            new[key] = _unchanged_or_new(value, old[key])


def _unchanged_or_new(new: Any, old: Any) -> Any:
    """``old`` where ``new`` equals it as JSON (types and key order too: ``True == 1``
    and ``1 == 1.0`` in Python), else ``new`` with its unchanged parts replaced by
    ``old``'s. Stored objects are never changed in place, so sharing them is safe."""
    if new is old:
        return old
    kind = type(new)
    if kind is not type(old):
        return new
    if kind is dict:
        same = len(new) == len(old)
        old_keys = iter(old)
        kept_parts: list[tuple[str, Any]] = []
        for key, value in new.items():
            if next(old_keys, None) != key:
                same = False  # another key order is another JSON text
            if key not in old:
                same = False
                continue
            kept = _unchanged_or_new(value, old[key])
            if kept is not old[key]:
                same = False
            if kept is not value:
                kept_parts.append((key, kept))
        if same:
            return old
        for key, kept in kept_parts:
            new[key] = kept
        return new
    if kind is list:
        if len(new) != len(old):
            return new
        same = True
        for i, (value, old_value) in enumerate(zip(new, old, strict=True)):
            kept = _unchanged_or_new(value, old_value)
            if kept is not value:
                new[i] = kept
            if kept is not old_value:
                same = False
        return old if same else new
    return old if new == old else new


def _ordered(obj: Obj) -> Obj:
    """apiVersion, kind, metadata (in the server's field order), then the rest."""
    meta = obj.get("metadata") or {}
    ordered_meta = {k: meta[k] for k in _META_ORDER if k in meta}
    ordered_meta.update({k: v for k, v in meta.items() if k not in ordered_meta})
    out: Obj = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": ordered_meta,
    }
    out.update({k: v for k, v in obj.items() if k not in out})
    return out


def _comparable(obj: Obj) -> Obj:
    """The object minus what changes on every write, to detect no-op writes."""
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    meta.pop("resourceVersion", None)
    if isinstance(meta.get("managedFields"), list):
        meta["managedFields"] = [
            {k: v for k, v in e.items() if k != "time"} if isinstance(e, dict) else e
            for e in meta["managedFields"]
        ]
    out["metadata"] = meta
    return out


def _spec_part(obj: Obj, has_status: bool) -> Obj:
    skip = (
        {"metadata", "status", "apiVersion", "kind"}
        if has_status
        else {"metadata", "apiVersion", "kind"}
    )
    return {k: v for k, v in obj.items() if k not in skip}


def _published_name(group_kind: GroupKind) -> str | None:
    """The object kube-controller-manager keeps in every namespace for this kind, if any."""
    if group_kind == ("", "ConfigMap"):
        return ROOT_CA_CONFIGMAP
    if group_kind == ("", "ServiceAccount"):
        return DEFAULT_SERVICE_ACCOUNT
    return None


def _get_path(obj: Any, path: str) -> Any:
    cur = obj
    for part in [p for p in path.strip(".").split(".") if p]:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _set_path(obj: Obj, path: str, value: Any) -> None:
    parts = [p for p in path.strip(".").split(".") if p]
    cur = obj
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value


class ClusterStore:
    """Objects, resourceVersions and watch history of one simulated cluster."""

    def __init__(
        self,
        name: str,
        *,
        history: int = DEFAULT_HISTORY,
        history_window: float = DEFAULT_HISTORY_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[], None] | None = None,
        gc_delay: float = DEFAULT_GC_DELAY,
        root_ca: str = "",
    ) -> None:
        self.name = name
        self.gc_delay = max(0.0, gc_delay)
        self.root_ca = root_ca  # PEM published as kube-root-ca.crt in every namespace
        self.kinds = KindRegistry()
        self._objects: dict[GroupKind, dict[Key, Obj]] = {}
        self._rv = 0
        self._history: deque[Change] = deque(maxlen=max(1, history))
        self._history_window = history_window
        self._history_floor = min(HISTORY_FLOOR, max(1, history))
        self._clock = clock
        self._compacted_rv = 0
        self._watchers: dict[GroupKind | None, set[Watcher]] = {}
        self._on_change = on_change
        self._next_ip = 10
        self.closed = False
        self.check_writes = os.environ.get(CHECK_WRITES_ENV, "") not in ("", "0")

    # -- basic access ------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def watch_count(self) -> int:
        """Open watches, the simulated controllers' own one included."""
        return sum(len(w) for w in self._watchers.values())

    def object_count(self) -> int:
        return sum(len(o) for o in self._objects.values())

    def objects(self, group_kind: GroupKind) -> dict[Key, Obj]:
        return self._objects.get(group_kind, {})

    def find(self, group_kind: GroupKind, namespace: str, name: str) -> Obj | None:
        return self._objects.get(group_kind, {}).get((namespace, name))

    def _type_of(self, group_kind: GroupKind) -> ResourceType | None:
        return self.kinds.preferred(*group_kind)

    def serve_as(self, rt: ResourceType, obj: Obj) -> Obj:
        """The stored object as the version ``rt`` serves (versions share one schema here)."""
        if obj.get("apiVersion") == rt.api_version:
            return obj
        out = dict(obj)
        out["apiVersion"] = rt.api_version
        return out

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.find(rt.group_kind, namespace if rt.namespaced else "", name)
        if obj is None:
            raise not_found(rt, name)
        return self.serve_as(rt, obj)

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        labels: LabelSelector,
        fields: FieldSelector = NO_FIELDS,
        limit: int = 0,
        continue_token: str = "",
    ) -> ListResult:
        bucket = self._objects.get(rt.group_kind, {})
        start: Key | None = None
        if continue_token:
            start = self._decode_continue(continue_token)
        exact = fields.exact_name()
        if exact is not None and namespace is not None:
            obj = bucket.get((namespace if rt.namespaced else "", exact))
            candidates: list[tuple[Key, Obj]] = [((namespace, exact), obj)] if obj else []
        else:
            candidates = sorted(bucket.items()) if len(bucket) > 1 else list(bucket.items())
        items: list[Obj] = []
        remaining = 0
        last: Key | None = None
        for key, obj in candidates:
            if namespace and rt.namespaced and key[0] != namespace:
                continue
            if start is not None and key <= start:
                continue
            if not labels.empty and not labels.matches(_meta(obj).get("labels")):
                continue
            if fields.requirements and not fields.matches(obj):
                continue
            if limit and len(items) >= limit:
                remaining += 1
                continue
            items.append(self.serve_as(rt, obj))
            last = key
        token = ""
        if limit and remaining and last is not None:
            token = base64.urlsafe_b64encode(
                json.dumps({"v": "sim/1", "rv": self._rv, "start": list(last)}).encode()
            ).decode()
        # kube-apiserver counts the rest only when it need not filter it (no selector).
        unfiltered = labels.empty and not fields.requirements
        return ListResult(
            items=items,
            resource_version=str(self._rv),
            continue_token=token,
            remaining=remaining if token and unfiltered else None,
        )

    @staticmethod
    def _decode_continue(token: str) -> Key:
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
            ns, name = data["start"]
            return (str(ns), str(name))
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise bad_request(f"continue key is not valid: {exc}") from None

    # -- watch ---------------------------------------------------------------------------

    def watch(
        self,
        group_kind: GroupKind | None,
        namespace: str | None,
        *,
        labels: LabelSelector,
        fields: FieldSelector = NO_FIELDS,
        since: str | None,
    ) -> Watcher:
        """Subscribe to changes after ``since``; no version (or "0") replays current state.

        Raises ``ApiError`` 410 when ``since`` is older than the kept history.
        """
        watcher = Watcher(group_kind, namespace, labels, fields)
        if not since or since == "0":
            kinds = [group_kind] if group_kind is not None else list(self._objects)
            for gk in kinds:
                for key, obj in sorted(self._objects.get(gk, {}).items()):
                    if namespace and key[0] != namespace:
                        continue
                    if watcher._matches(obj):
                        watcher.queue.put_nowait(Delivery("ADDED", obj))
        else:
            try:
                version = int(since)
            except ValueError:
                raise bad_request(f'Invalid value for resourceVersion: "{since}"') from None
            if version < self._compacted_rv:
                raise gone(f"too old resource version: {version} ({self._compacted_rv + 1})")
            for change in self._history:
                if change.rv > version:
                    watcher.offer(change)
        self._watchers.setdefault(group_kind, set()).add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        watcher.closed = True
        group = self._watchers.get(watcher.group_kind)
        if group is not None:
            group.discard(watcher)

    def compact(self) -> None:
        """Forget the watch history, as an etcd compaction does (watches from older versions get 410)."""
        self._history.clear()
        self._compacted_rv = self._rv

    def _record(self, change: Change) -> None:
        history = self._history
        if len(history) == history.maxlen:
            self._compacted_rv = history[0].rv
        elif len(history) > self._history_floor:
            # Forget what is older than the window; a watch from before it gets 410 Gone.
            cutoff = change.at - self._history_window
            while len(history) > self._history_floor and history[0].at < cutoff:
                self._compacted_rv = history.popleft().rv
        history.append(change)
        for key in (change.group_kind, None):
            watchers = self._watchers.get(key)
            if watchers:
                for w in list(watchers):
                    w.offer(change)
                    if w.closed:
                        watchers.discard(w)
        if self._on_change is not None:
            self._on_change()

    def close(self) -> None:
        """End every watch (the cluster is going away or the server stops)."""
        self.closed = True
        for watchers in self._watchers.values():
            for w in watchers:
                w.close()
        self._watchers.clear()

    # -- scheduling cascades -----------------------------------------------------------

    def _soon(self, fn: Callable[[], None], delay: float = 0.0) -> None:
        """Run ``fn`` on the loop after ``delay`` seconds (at once when no loop runs: unit
        use of the store); refusals and bugs in a step are logged, never raised."""

        def run() -> None:
            if self.closed:
                return
            try:
                fn()
            except ApiError as exc:
                log.debug("cluster %s: cascade step refused: %s", self.name, exc)
            except Exception:  # a bug in a cascade must not take the server down
                log.exception("cluster %s: cascade step failed", self.name)

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            run()
            return
        if delay > 0:
            loop.call_later(delay, run)
        else:
            loop.call_soon(run)

    def _later(self, fn: Callable[[], None]) -> None:
        """A kube-controller-manager step: garbage collection, namespace and CRD clean-up."""
        self._soon(fn, self.gc_delay)

    # -- writes ------------------------------------------------------------------------

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _store(self, rt: ResourceType, obj: Obj, old: Obj | None) -> Obj:
        meta = obj["metadata"]
        meta["resourceVersion"] = self._next_rv()
        obj = _ordered(obj)
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        self._objects.setdefault(rt.group_kind, {})[key] = obj
        self._record(
            Change(
                self._rv,
                "MODIFIED" if old else "ADDED",
                rt.group_kind,
                key[0],
                obj,
                old,
                self._clock(),
            )
        )
        return obj

    def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        """Delete for good: DELETED event, then the cascades that depend on it."""
        meta = _meta(obj)
        key = (meta.get("namespace", ""), meta["name"])
        bucket = self._objects.get(rt.group_kind, {})
        if bucket.get(key) is not obj:
            return obj
        del bucket[key]
        final = dict(obj)
        final["metadata"] = dict(meta, resourceVersion=self._next_rv())
        self._record(Change(self._rv, "DELETED", rt.group_kind, key[0], final, obj, self._clock()))
        uid = meta.get("uid")
        if uid:
            self._later(lambda: self._collect_dependents(key[0], uid, rt.namespaced))
        for ref in meta.get("ownerReferences") or ():
            if isinstance(ref, dict):
                self._later(functools.partial(self._recheck_owner, key[0], ref))
        if key[0]:
            self._later(lambda: self._namespace_step(key[0]))
            if key[1] == _published_name(rt.group_kind):
                self._soon(lambda: self._publish_namespace_defaults(key[0]))
        if rt.custom:
            crd_name = f"{rt.plural}.{rt.group}"
            self._later(lambda: self._crd_step(crd_name))
        if rt.group_kind == CRD_GROUP_KIND:
            self.kinds.remove_crd(meta["name"])
        return final

    def _check_body(
        self,
        rt: ResourceType,
        namespace: str,
        body: Any,
        name: str | None,
        *,
        require_type: bool = False,
    ) -> Obj:
        if not isinstance(body, dict):
            raise bad_request(f"the body of the request must be a {rt.kind} object")
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if not require_type:
            # kube-apiserver's decoder defaults what the body leaves out from the URL.
            api_version, kind = api_version or rt.api_version, kind or rt.kind
        if not api_version or not kind:
            missing = "apiVersion" if not api_version else "kind"
            raise bad_request(f"Object '{missing}' is missing in the request body")
        if kind != rt.kind or api_version not in (rt.api_version, f"{rt.group}/{rt.version}"):
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({rt.api_version})"
                if kind == rt.kind
                else f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        obj = _clone_body(body)
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and body_ns != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if name is not None and meta.get("name") != name:
            if not meta.get("name"):
                meta["name"] = name
            else:
                raise bad_request(
                    f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
                )
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        for field_name in ("labels", "annotations"):
            value = meta.get(field_name)
            if value is None:
                continue
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise invalid(rt, str(meta.get("name", "")), [
                    Cause(field=f"metadata.{field_name}", reason="FieldValueInvalid",
                          message="Invalid value: must be a map of string keys to string values")
                ])  # fmt: skip
        return obj

    def _validate_name(self, rt: ResourceType, name: str) -> None:
        if rt.kind in _LABEL_NAME_KINDS:
            ok = len(name) <= 63 and bool(_DNS_LABEL.match(name))
            rule = (
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
                "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
                "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            )
        elif rt.custom or rt.group == "rbac.authorization.k8s.io":
            ok = "/" not in name and name not in (".", "..") and "%" not in name
            rule = "may not contain '/' or '%'"
        else:
            ok = len(name) <= 253 and bool(_DNS_SUBDOMAIN.match(name))
            rule = (
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                "'-' or '.', and must start and end with an alphanumeric character (e.g. "
                "'example.com', regex used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            )
        if not ok:
            raise invalid(
                rt,
                name,
                [
                    Cause(
                        field="metadata.name",
                        reason="FieldValueInvalid",
                        message=f'Invalid value: "{name}": {rule}',
                    )
                ],
            )

    def _check_namespace_open(self, rt: ResourceType, namespace: str, name: str) -> None:
        ns = self.find(NAMESPACE_GROUP_KIND, "", namespace)
        if ns is None:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                {"name": namespace, "kind": "namespaces"},
            )
        if _meta(ns).get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f'{rt.qualified_plural} "{name}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated",
                _details(rt, name),
            )

    def allocate_cluster_ip(self) -> str:
        used = {
            _get_path(o, "spec.clusterIP") for o in self._objects.get(("", "Service"), {}).values()
        }
        while True:
            n = self._next_ip
            self._next_ip += 1
            ip = f"10.96.{(n // 254) % 256}.{n % 254 + 1}"
            if ip not in used:
                return ip

    def _apply_defaults(self, obj: Obj, *, server_assigned: bool = True) -> None:
        try:
            defaults.apply_defaults(
                obj,
                allocate_cluster_ip=self.allocate_cluster_ip,
                server_assigned=server_assigned,
            )
        except (TypeError, AttributeError, ValueError) as exc:
            # Defaulting code meets shapes a validating server would reject first.
            raise bad_request(f"unable to default {obj.get('kind')}: {exc}") from None

    def _default_status(self, obj: Obj) -> None:
        """Default only the status of ``obj`` (a kind of ``_STATUS_ONLY_DEFAULTS``)."""
        scratch: Obj = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind")}
        if "status" in obj:
            scratch["status"] = obj["status"]
        self._apply_defaults(scratch)
        if "status" in scratch:
            obj["status"] = scratch["status"]
        else:
            obj.pop("status", None)

    def _check_status_write(self, old: Obj, status: Any, written: Obj) -> None:
        """Make a shared status write (``_STATUS_ONLY_DEFAULTS``) again the long way, on
        copies: copy the stored object, take the status, default all of it. Raises if
        the two disagree, or if the stored object is not defaulted already (a status
        write would then have changed the rest of it). Run with ``CHECK_WRITES_ENV``."""
        long_way = _status_written(clone(old), clone(status), shared=False)
        self._apply_defaults(long_way, server_assigned=False)
        self._apply_defaults(long_way)  # the long way defaults again after the tracking
        stored = clone(old)
        self._apply_defaults(stored)
        problems = []
        if wirejson.typed(long_way) != wirejson.typed(written):
            problems.append(f"the long way gives {long_way!r}, the shared one {written!r}")
        if wirejson.typed(stored) != wirejson.typed(old):
            problems.append(f"the stored object changes when defaulted again: {old!r}")
        if problems:
            raise AssertionError(
                f"status write of {old.get('kind')} {_meta(old).get('name')}: "
                + "; ".join(problems)
            )

    def _track(
        self,
        old: Obj | None,
        new: Obj,
        manager: str,
        subresource: str,
        now: str,
        status_subresource: bool,
    ) -> None:
        ssa.track_update(
            old,
            new,
            manager=manager,
            subresource=subresource,
            now=now,
            status_subresource=status_subresource,
        )

    def create(
        self,
        rt: ResourceType,
        namespace: str,
        body: Any,
        *,
        manager: str,
        dry_run: bool = False,
        tracked: bool = False,
    ) -> Obj:
        """Create an object (POST); ``tracked`` when managedFields are already set (apply)."""
        obj = self._check_body(rt, namespace, body, None)
        meta = obj["metadata"]
        name = meta.get("name")
        if not name:
            prefix = meta.get("generateName")
            if not prefix or not isinstance(prefix, str):
                raise invalid(
                    rt,
                    "",
                    [
                        Cause(
                            field="metadata.name",
                            reason="FieldValueRequired",
                            message="Required value: name or generateName is required",
                        )
                    ],
                )
            bucket = self._objects.get(rt.group_kind, {})
            ns = namespace if rt.namespaced else ""
            for _ in range(100):
                name = prefix + "".join(random.choice(_SUFFIX_CHARS) for _ in range(5))
                if (ns, name) not in bucket:
                    break
            meta["name"] = name
        if not isinstance(name, str):
            raise bad_request("metadata.name must be a string")
        self._validate_name(rt, name)
        if rt.namespaced:
            self._check_namespace_open(rt, namespace, name)
        if self.find(rt.group_kind, namespace if rt.namespaced else "", name) is not None:
            raise already_exists(rt, name)
        for server_set in (
            "uid",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "creationTimestamp",
            "generation",
        ):
            meta.pop(server_set, None)
        if rt.has_status() and rt.group_kind != NAMESPACE_GROUP_KIND:
            obj.pop("status", None)
        now = now_iso()
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now
        if rt.has_generation:
            meta["generation"] = 1
        self._prepare_kind(rt, None, obj)
        if not tracked:
            # A real server records the writer's fields after decoding defaults but before
            # the registry allocates IPs, selectors and finalizers, which nobody owns.
            self._apply_defaults(obj, server_assigned=False)
            meta.pop("managedFields", None)
            self._track(None, obj, manager, "", now, rt.has_status())
        self._apply_defaults(obj)
        if dry_run:
            return _ordered(obj)
        stored = self._store(rt, obj, None)
        self._after_write(rt, stored)
        if rt.group_kind == NAMESPACE_GROUP_KIND:
            self._soon(lambda: self._publish_namespace_defaults(name))
        return self.serve_as(rt, stored)

    def _prepare_kind(self, rt: ResourceType, old: Obj | None, obj: Obj) -> None:
        """What a kind's registry strategy does before a write."""
        gk = rt.group_kind
        if gk == NAMESPACE_GROUP_KIND:
            spec = obj.get("spec")
            if not isinstance(spec, dict):
                spec = obj["spec"] = {}
            if old is None:
                spec.setdefault("finalizers", ["kubernetes"])
                obj["status"] = {"phase": "Active"}
            else:
                obj["spec"] = old.get("spec", spec)
                obj["status"] = old.get("status", {"phase": "Active"})
        elif gk == ("", "Pod") and old is None:
            obj["status"] = {"phase": "Pending"}
        elif gk == CRD_GROUP_KIND:
            try:
                types = types_from_crd(obj)
            except InvalidCRD as exc:
                raise invalid(
                    rt,
                    str(_meta(obj).get("name", "")),
                    [Cause(field=exc.field_path, reason="FieldValueInvalid", message=exc.detail)],
                ) from None
            spec = obj["spec"]
            names = dict(spec["names"])
            names.setdefault("singular", names["kind"].lower())
            names.setdefault("listKind", f"{names['kind']}List")
            storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
            stored_versions = list((old or {}).get("status", {}).get("storedVersions") or [])
            if storage not in stored_versions:
                stored_versions.append(storage)
            now = now_iso()
            conditions = [
                {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
                {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
            ]  # fmt: skip
            if old is not None and isinstance(old.get("status"), dict):
                conditions = old["status"].get("conditions") or conditions
            obj["status"] = {
                "conditions": conditions,
                "acceptedNames": names,
                "storedVersions": stored_versions,
            }
            if not types:
                raise invalid(
                    rt,
                    str(_meta(obj).get("name")),
                    [
                        Cause(
                            field="spec.versions",
                            reason="FieldValueInvalid",
                            message="Invalid value: at least one version must be served",
                        )
                    ],
                )

    def _after_write(self, rt: ResourceType, stored: Obj) -> None:
        if rt.group_kind == CRD_GROUP_KIND and not _meta(stored).get("deletionTimestamp"):
            self.kinds.set_crd(_meta(stored)["name"], types_from_crd(stored))

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        manager: str,
        subresource: str = "",
        dry_run: bool = False,
    ) -> Obj:
        """Replace an object (PUT); a stale ``resourceVersion`` in the body is a 409."""
        if subresource == "status" and isinstance(body, dict):
            # Only the status (and the identity the checks read) is taken from the body:
            # leave the rest uncopied (a controller's status write sends the whole object).
            meta = body.get("metadata")
            if isinstance(meta, dict) and "managedFields" in meta:
                meta = {k: v for k, v in meta.items() if k != "managedFields"}
            body = {k: v for k, v in body.items() if k in _STATUS_BODY}
            if "metadata" in body:
                body["metadata"] = meta
        obj = self._check_body(rt, namespace, body, name)
        old = self.find(rt.group_kind, namespace if rt.namespaced else "", name)
        if old is None:
            raise not_found(rt, name)
        rv = obj["metadata"].get("resourceVersion")
        if rv and rv != _meta(old).get("resourceVersion"):
            raise stale(rt, name)
        return self._update_from(
            rt, old, obj, manager=manager, subresource=subresource, dry_run=dry_run, tracked=False
        )

    def _update_from(
        self,
        rt: ResourceType,
        old: Obj,
        new: Obj,
        *,
        manager: str,
        subresource: str,
        dry_run: bool,
        tracked: bool,
    ) -> Obj:
        old_meta = _meta(old)
        shared = subresource == "status" and rt.group_kind in _STATUS_ONLY_DEFAULTS
        if subresource == "status":
            # The stored object but for its status and managedFields: both are replaced
            # (from the body, and by the tracking), so copying them was waste.
            sent = new
            new = _status_written(old, new.get("status"), shared=shared)
            if tracked:
                new["metadata"]["managedFields"] = _meta(sent).get("managedFields", [])
            if shared:
                # (defaulting fills the sent status in place: the check needs it as sent)
                sent_status = clone(sent.get("status")) if self.check_writes else None
                self._default_status(new)
                if self.check_writes:
                    self._check_status_write(old, sent_status, new)
        else:
            meta = new.setdefault("metadata", {})
            if rt.has_status() and rt.group_kind != NAMESPACE_GROUP_KIND:
                if "status" in old:
                    new["status"] = clone(old["status"])
                else:
                    new.pop("status", None)
            if "managedFields" not in meta and "managedFields" in old_meta:
                meta["managedFields"] = _clone_managed_fields(old_meta["managedFields"])
        meta = new["metadata"]
        for fixed in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if fixed in old_meta:
                meta[fixed] = old_meta[fixed]
            else:
                meta.pop(fixed, None)
        meta["name"] = old_meta["name"]
        if "namespace" in old_meta:
            meta["namespace"] = old_meta["namespace"]
        meta["resourceVersion"] = old_meta.get("resourceVersion")
        if subresource != "status":
            self._prepare_kind(rt, old, new)
        # An update that omits a Service's allocated IPs and ports keeps them.
        defaults.carry_over_allocations(old, new)
        if not tracked:
            if not shared:
                self._apply_defaults(new, server_assigned=False)
            self._track(old, new, manager, subresource, now_iso(), rt.has_status())
        if not shared:
            self._apply_defaults(new)
            _share_unchanged(new, old)
        if rt.has_generation and _spec_part(new, rt.has_status()) != _spec_part(
            old, rt.has_status()
        ):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        if _comparable(new) == _comparable(old):
            return self.serve_as(rt, old)
        if old_meta.get("deletionTimestamp") and not meta.get("finalizers"):
            if dry_run:
                return _ordered(new)
            return self._remove(rt, old)
        if dry_run:
            return _ordered(new)
        stored = self._store(rt, new, old)
        self._after_write(rt, stored)
        return self.serve_as(rt, stored)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch_type: str,
        raw: bytes,
        *,
        manager: str,
        force: bool = False,
        subresource: str = "",
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """PATCH with one of the four patch types; returns (object, created)."""
        ns = namespace if rt.namespaced else ""
        old = self.find(rt.group_kind, ns, name)
        if patch_type == "apply":
            return self._apply(
                rt,
                namespace,
                name,
                old,
                raw,
                manager=manager,
                force=force,
                subresource=subresource,
                dry_run=dry_run,
            )
        if old is None:
            raise not_found(rt, name)
        try:
            doc = wirejson.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"error decoding patch: {exc}") from None
        base = clone(self.serve_as(rt, old))
        try:
            if patch_type == "json":
                if not isinstance(doc, list):
                    raise bad_request("json patch must be a list of operations")
                patched = patching.apply_json_patch(base, doc)
            elif patch_type == "merge":
                patched = patching.apply_merge_patch(base, doc)
            elif patch_type == "strategic":
                if rt.custom:
                    raise ApiError(
                        415,
                        "UnsupportedMediaType",
                        "strategic merge patch is not supported for custom resources; use a merge patch or server-side apply",
                    )
                patched = patching.apply_strategic_merge_patch(base, doc)
            else:
                raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {patch_type}")
        except patching.PatchError as patch_exc:
            raise _semantics_error(patch_exc) from None
        if not isinstance(patched, dict):
            raise bad_request("the patch did not produce an object")
        pmeta = patched.get("metadata")
        if not isinstance(pmeta, dict):
            raise bad_request("the patched object has no metadata")
        if pmeta.get("name") != name:
            raise bad_request(
                f"the name of the object ({pmeta.get('name')}) does not match the name on the URL ({name})"
            )
        rv = pmeta.get("resourceVersion")
        if rv and rv != _meta(old).get("resourceVersion"):
            raise stale(rt, name)
        obj = self._check_body(rt, namespace, patched, name)
        return self._update_from(
            rt, old, obj, manager=manager, subresource=subresource, dry_run=dry_run, tracked=False
        ), False

    def _apply(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        old: Obj | None,
        raw: bytes,
        *,
        manager: str,
        force: bool,
        subresource: str,
        dry_run: bool,
    ) -> tuple[Obj, bool]:
        if not manager:
            raise ApiError(
                422,
                "Invalid",
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is '
                "required for apply patch",
                {
                    "group": "meta.k8s.io",
                    "kind": "PatchOptions",
                    "causes": [
                        {
                            "reason": "FieldValueRequired",
                            "message": "Required value: is required for apply patch",
                            "field": "fieldManager",
                        }
                    ],
                },
            )
        try:
            applied = load_yaml(raw)
        except yaml.YAMLError as yaml_exc:
            raise bad_request(f"error decoding YAML: {yaml_exc}") from None
        applied = self._check_body(rt, namespace, applied, name, require_type=True)
        if subresource == "status" and old is None:
            raise not_found(rt, name)
        # The stored object itself: server_side_apply never changes its inputs, and copying
        # it hid the stored managedFields entries the result could share.
        live = self.serve_as(rt, old) if old is not None else None
        try:
            merged = ssa.server_side_apply(
                live,
                applied,
                manager=manager,
                force=force,
                now=now_iso(),
                subresource=subresource,
                status_subresource=rt.has_status(),
            )
        except ssa.ApplyConflict as conflict:
            raise ApiError(
                409, "Conflict", str(conflict), dict(_details(rt, name), causes=conflict.causes)
            ) from None
        except patching.PatchError as patch_exc:
            raise _semantics_error(patch_exc) from None
        except (ValueError, TypeError) as exc:
            raise bad_request(f"cannot apply {rt.kind} {name!r}: {exc}") from None
        if old is None:
            merged.setdefault("metadata", {})["name"] = name
            return self.create(
                rt, namespace, merged, manager=manager, dry_run=dry_run, tracked=True
            ), True
        merged = self._check_body(rt, namespace, merged, name)
        return self._update_from(
            rt, old, merged, manager=manager, subresource=subresource, dry_run=dry_run, tracked=True
        ), False

    # -- scale ---------------------------------------------------------------------------

    def _scale_paths(self, rt: ResourceType) -> tuple[str, str, str]:
        if rt.scale_paths is not None:
            return rt.scale_paths
        return (".spec.replicas", ".status.replicas", "")

    def get_scale(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.get(rt, namespace, name)
        spec_path, status_path, selector_path = self._scale_paths(rt)
        meta = _meta(obj)
        if rt.custom:
            selector = _get_path(obj, selector_path) if selector_path else None
        else:
            selector = selector_to_string(_get_path(obj, "spec.selector"))
        scale_status: Obj = {"replicas": int(_get_path(obj, status_path) or 0)}
        if selector:
            scale_status["selector"] = selector
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": int(_get_path(obj, spec_path) or 0)},
            "status": scale_status,
        }

    def update_scale(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        scale: Any,
        *,
        manager: str,
        dry_run: bool = False,
    ) -> Obj:
        if not isinstance(scale, dict) or scale.get("kind", "Scale") != "Scale":
            raise bad_request("the body of the request must be an autoscaling/v1 Scale")
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0',
                           {"name": name, "group": "autoscaling", "kind": "Scale", "causes": [{"reason": "FieldValueInvalid", "message": "Invalid value: must be greater than or equal to 0", "field": "spec.replicas"}]})  # fmt: skip
        old = self.find(rt.group_kind, namespace if rt.namespaced else "", name)
        if old is None:
            raise not_found(rt, name)
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv and rv != _meta(old).get("resourceVersion"):
            raise stale(rt, name)
        new = clone(self.serve_as(rt, old))
        _set_path(new, self._scale_paths(rt)[0], replicas)
        new = self._check_body(rt, namespace, new, name)
        self._update_from(
            rt, old, new, manager=manager, subresource="scale", dry_run=dry_run, tracked=False
        )
        if dry_run:
            result = self.get_scale(rt, namespace, name)
            result["spec"]["replicas"] = replicas
            return result
        return self.get_scale(rt, namespace, name)

    def patch_scale(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch_type: str,
        raw: bytes,
        *,
        manager: str,
        dry_run: bool = False,
    ) -> Obj:
        current = self.get_scale(rt, namespace, name)
        try:
            if patch_type == "json":
                patched = patching.apply_json_patch(current, wirejson.loads(raw))
            elif patch_type in ("merge", "strategic"):
                patched = patching.apply_merge_patch(current, wirejson.loads(raw))
            elif patch_type == "apply":
                doc = load_yaml(raw)
                patched = patching.apply_merge_patch(current, {"spec": (doc or {}).get("spec", {})})
            else:
                raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {patch_type}")
        except patching.PatchError as patch_exc:
            raise _semantics_error(patch_exc) from None
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"error decoding patch: {exc}") from None
        return self.update_scale(rt, namespace, name, patched, manager=manager, dry_run=dry_run)

    # -- delete ----------------------------------------------------------------------------

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        *,
        propagation: str | None = None,
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """DELETE; returns (object, gone) where gone is False while finalizers hold it."""
        ns = namespace if rt.namespaced else ""
        old = self.find(rt.group_kind, ns, name)
        if old is None:
            raise not_found(rt, name)
        meta = _meta(old)
        if preconditions:
            want_uid, want_rv = preconditions.get("uid"), preconditions.get("resourceVersion")
            if want_uid and want_uid != meta.get("uid"):
                raise conflict(
                    rt,
                    name,
                    f"Precondition failed: UID in precondition: {want_uid}, UID in object meta: {meta.get('uid')}",
                )
            if want_rv and want_rv != meta.get("resourceVersion"):
                raise conflict(
                    rt,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: {want_rv}, ResourceVersion in object meta: {meta.get('resourceVersion')}",
                )
        if propagation not in (None, "", "Foreground", "Background", "Orphan"):
            raise invalid(
                rt,
                name,
                [
                    Cause(
                        field="propagationPolicy",
                        reason="FieldValueNotSupported",
                        message=f'Unsupported value: "{propagation}": supported values: "Foreground", "Background", "Orphan"',
                    )
                ],
            )
        if rt.group_kind == NAMESPACE_GROUP_KIND and name in PROTECTED_NAMESPACES:
            raise forbidden(rt, name, "this namespace may not be deleted")
        if dry_run:
            return self.serve_as(rt, old), False
        if rt.group_kind == NAMESPACE_GROUP_KIND:
            return self._begin_namespace_deletion(rt, old), False
        if rt.group_kind == CRD_GROUP_KIND:
            return self._begin_crd_deletion(rt, old), False
        uid = meta.get("uid", "")
        current = list(meta.get("finalizers") or [])
        # As kube-apiserver: the policy becomes the `orphan` or `foregroundDeletion`
        # finalizer, which kube-controller-manager's garbage collector honours and removes
        # later; an earlier delete's finalizer stands when this one names no policy.
        if not propagation:
            if ORPHAN in current:
                propagation = "Orphan"
            elif FOREGROUND in current:
                propagation = "Foreground"
            else:
                propagation = "Orphan" if rt.group_kind == ("batch", "Job") else "Background"
        finalizers = [f for f in current if f not in (ORPHAN, FOREGROUND)]
        if propagation == "Orphan":
            finalizers.append(ORPHAN)
        elif propagation == "Foreground":
            finalizers.append(FOREGROUND)
        if not finalizers:
            return self.serve_as(rt, self._remove(rt, old)), True
        if meta.get("deletionTimestamp") and finalizers == current:
            return self.serve_as(rt, old), False
        marked = self._mark_deleting(rt, old, finalizers)
        if ORPHAN in finalizers or FOREGROUND in finalizers:
            self._later(lambda: self._gc_finalizer_step(rt, ns, name, uid))
        return self.serve_as(rt, marked), False

    def _mark_deleting(
        self, rt: ResourceType, old: Obj, finalizers: Sequence[str], **extra: Any
    ) -> Obj:
        new = clone(old)
        meta = new["metadata"]
        if not meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = now_iso()
            meta["deletionGracePeriodSeconds"] = 0
            if rt.has_generation:
                meta["generation"] = int(meta.get("generation") or 0) + 1
        meta["finalizers"] = [*finalizers]
        for path, value in extra.items():
            _set_path(new, path.replace("__", "."), value)
        return self._store(rt, new, old)

    def _dependents(
        self, namespace: str, owner_uid: str, owner_namespaced: bool
    ) -> Iterator[tuple[ResourceType, Obj]]:
        if not owner_uid:
            return
        for gk, bucket in list(self._objects.items()):
            rt = self._type_of(gk)
            if rt is None:
                continue
            for key, obj in list(bucket.items()):
                if owner_namespaced and key[0] != namespace:
                    continue
                refs = _meta(obj).get("ownerReferences") or ()
                if any(isinstance(r, dict) and r.get("uid") == owner_uid for r in refs):
                    yield rt, obj

    def _orphan_dependents(self, namespace: str, uid: str, namespaced: bool) -> None:
        for rt, obj in list(self._dependents(namespace, uid, namespaced)):
            new = clone(obj)
            refs = [r for r in new["metadata"].get("ownerReferences") or () if r.get("uid") != uid]
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                new["metadata"].pop("ownerReferences", None)
            self._update_from(
                rt,
                obj,
                new,
                manager="kube-controller-manager",
                subresource="",
                dry_run=False,
                tracked=False,
            )

    def _owner_exists(self, namespace: str, ref: dict[str, Any]) -> bool:
        api_version, kind = str(ref.get("apiVersion", "")), str(ref.get("kind", ""))
        group = api_version.rpartition("/")[0]
        rt = self._type_of((group, kind))
        if rt is None:
            return False
        owner = self.find(
            (group, kind), namespace if rt.namespaced else "", str(ref.get("name", ""))
        )
        return owner is not None and _meta(owner).get("uid") == ref.get("uid")

    def _collect_dependents(self, namespace: str, uid: str, owner_namespaced: bool) -> None:
        """Garbage collection after an owner is gone (background propagation)."""
        for rt, obj in list(self._dependents(namespace, uid, owner_namespaced)):
            meta = _meta(obj)
            dep_ns = meta.get("namespace", "")
            others = [
                r
                for r in meta.get("ownerReferences") or ()
                if isinstance(r, dict) and r.get("uid") != uid
            ]
            if any(self._owner_exists(dep_ns, r) for r in others):
                new = clone(obj)
                new["metadata"]["ownerReferences"] = others
                self._update_from(
                    rt,
                    obj,
                    new,
                    manager="kube-controller-manager",
                    subresource="",
                    dry_run=False,
                    tracked=False,
                )
            elif not meta.get("deletionTimestamp"):
                self.delete(rt, dep_ns, meta["name"], propagation="Background")

    def _gc_finalizer_step(self, rt: ResourceType, namespace: str, name: str, uid: str) -> None:
        """The garbage collector's turn on an owner held by `orphan` or `foregroundDeletion`."""
        owner = self.find(rt.group_kind, namespace, name)
        if owner is None or _meta(owner).get("uid") != uid:
            return
        finalizers = list(_meta(owner).get("finalizers") or ())
        if ORPHAN in finalizers:
            self._orphan_dependents(namespace, uid, rt.namespaced)
            self._drop_finalizer(rt, namespace, name, ORPHAN)
        elif FOREGROUND in finalizers:
            self._foreground_step(rt, namespace, name, uid)

    def _drop_finalizer(self, rt: ResourceType, namespace: str, name: str, finalizer: str) -> None:
        obj = self.find(rt.group_kind, namespace, name)
        if obj is None:
            return
        new = clone(obj)
        new["metadata"]["finalizers"] = [
            f for f in _meta(obj).get("finalizers") or () if f != finalizer
        ]
        self._update_from(
            rt,
            obj,
            new,
            manager="kube-controller-manager",
            subresource="",
            dry_run=False,
            tracked=True,
        )

    def _foreground_step(self, rt: ResourceType, namespace: str, name: str, uid: str) -> None:
        owner = self.find(rt.group_kind, namespace, name)
        if owner is None or _meta(owner).get("uid") != uid:
            return
        pending = False
        for dep_rt, dep in list(self._dependents(namespace, uid, rt.namespaced)):
            pending = True
            dmeta = _meta(dep)
            if not dmeta.get("deletionTimestamp"):
                self.delete(
                    dep_rt, dmeta.get("namespace", ""), dmeta["name"], propagation="Foreground"
                )
        if pending:
            return  # rechecked when each dependent is finally removed
        self._drop_finalizer(rt, namespace, name, FOREGROUND)

    def _recheck_owner(self, namespace: str, ref: dict[str, Any]) -> None:
        group = str(ref.get("apiVersion", "")).rpartition("/")[0]
        rt = self._type_of((group, str(ref.get("kind", ""))))
        if rt is None:
            return
        ns = namespace if rt.namespaced else ""
        owner = self.find(rt.group_kind, ns, str(ref.get("name", "")))
        if owner is not None and FOREGROUND in (_meta(owner).get("finalizers") or ()):
            self._foreground_step(rt, ns, _meta(owner)["name"], str(_meta(owner).get("uid")))

    # -- namespaces and CRDs -----------------------------------------------------------------

    def _begin_namespace_deletion(self, rt: ResourceType, old: Obj) -> Obj:
        if _meta(old).get("deletionTimestamp"):
            return self.serve_as(rt, old)
        marked = self._mark_deleting(
            rt, old, list(_meta(old).get("finalizers") or []), status__phase="Terminating"
        )
        name = _meta(marked)["name"]
        self._later(lambda: self._namespace_step(name))
        return self.serve_as(rt, marked)

    def _namespace_step(self, namespace: str) -> None:
        ns_obj = self.find(NAMESPACE_GROUP_KIND, "", namespace)
        if ns_obj is None or not _meta(ns_obj).get("deletionTimestamp"):
            return
        remaining = False
        for gk, bucket in list(self._objects.items()):
            rt = self._type_of(gk)
            if rt is None or not rt.namespaced:
                continue
            for key, obj in list(bucket.items()):
                if key[0] != namespace:
                    continue
                remaining = True
                if not _meta(obj).get("deletionTimestamp"):
                    self.delete(rt, namespace, key[1], propagation="Background")
        if remaining:
            return  # rechecked as each object is finally removed
        ns_rt = self._type_of(NAMESPACE_GROUP_KIND)
        ns_obj = self.find(NAMESPACE_GROUP_KIND, "", namespace)
        if ns_rt is None or ns_obj is None:
            return
        if _meta(ns_obj).get("finalizers"):
            return  # someone else's finalizer holds it, as on a real cluster
        self._remove(ns_rt, ns_obj)

    def _publish_namespace_defaults(self, namespace: str) -> None:
        """kube-controller-manager's root-CA publisher and service-account controller: every
        live namespace holds the ``kube-root-ca.crt`` ConfigMap and the ``default``
        ServiceAccount (re-created when deleted)."""
        ns_obj = self.find(NAMESPACE_GROUP_KIND, "", namespace)
        if ns_obj is None or _meta(ns_obj).get("deletionTimestamp"):
            return
        root_ca: Obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": ROOT_CA_CONFIGMAP,
                "annotations": {"kubernetes.io/description": _ROOT_CA_DESCRIPTION},
            },
            "data": {"ca.crt": self.root_ca},
        }
        account: Obj = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": DEFAULT_SERVICE_ACCOUNT},
        }
        for plural, body in (("configmaps", root_ca), ("serviceaccounts", account)):
            rt = self.kinds.lookup("", "v1", plural)
            if rt is None or self.find(rt.group_kind, namespace, body["metadata"]["name"]):
                continue
            self.create(rt, namespace, body, manager="kube-controller-manager")

    def _begin_crd_deletion(self, rt: ResourceType, old: Obj) -> Obj:
        finalizers = list(_meta(old).get("finalizers") or [])
        if CRD_CLEANUP not in finalizers:
            finalizers.append(CRD_CLEANUP)
        marked = self._mark_deleting(rt, old, finalizers)
        name = _meta(marked)["name"]
        self._later(lambda: self._crd_step(name))
        return self.serve_as(rt, marked)

    def _crd_step(self, crd_name: str) -> None:
        crd = self.find(CRD_GROUP_KIND, "", crd_name)
        if crd is None or not _meta(crd).get("deletionTimestamp"):
            return
        spec = crd.get("spec") or {}
        gk = (str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", "")))
        rt = self._type_of(gk)
        bucket = self._objects.get(gk, {})
        if rt is not None and bucket:
            for key, obj in list(bucket.items()):
                if not _meta(obj).get("deletionTimestamp"):
                    self.delete(rt, key[0], key[1], propagation="Background")
            if self._objects.get(gk):
                return
        self._objects.pop(gk, None)
        crd_rt = self._type_of(CRD_GROUP_KIND)
        crd = self.find(CRD_GROUP_KIND, "", crd_name)
        if crd_rt is None or crd is None:
            return
        finalizers = [f for f in _meta(crd).get("finalizers") or () if f != CRD_CLEANUP]
        if finalizers:
            new = clone(crd)
            new["metadata"]["finalizers"] = finalizers
            self._store(crd_rt, new, crd)
            return
        self._remove(crd_rt, crd)

    # -- persistence ---------------------------------------------------------------------

    def snapshot(self) -> Obj:
        objects = [obj for bucket in self._objects.values() for obj in bucket.values()]
        return {"resourceVersion": self._rv, "objects": objects}

    def load(self, data: Obj) -> None:
        """Restore a snapshot (watch history starts empty: older versions get 410)."""
        self._objects.clear()
        objects = data.get("objects") or []
        # CRDs first, so their kinds are known when their objects come.
        for obj in objects:
            if obj.get("kind") == "CustomResourceDefinition":
                name = _meta(obj).get("name", "")
                self._objects.setdefault(CRD_GROUP_KIND, {})[("", name)] = obj
                if not _meta(obj).get("deletionTimestamp"):
                    try:
                        self.kinds.set_crd(name, types_from_crd(obj))
                    except InvalidCRD:
                        log.warning("cluster %s: skipping invalid stored CRD %s", self.name, name)
        for obj in objects:
            if obj.get("kind") == "CustomResourceDefinition":
                continue
            group = str(obj.get("apiVersion", "")).rpartition("/")[0]
            meta = _meta(obj)
            self._objects.setdefault((group, str(obj.get("kind"))), {})[
                (meta.get("namespace", ""), meta.get("name", ""))
            ] = obj
        self._rv = int(data.get("resourceVersion") or 0)
        self._history.clear()
        self._compacted_rv = self._rv
        self._resume_controllers()

    def _resume_controllers(self) -> None:
        """After a restore: finish what kube-controller-manager had not yet done."""
        for gk, bucket in list(self._objects.items()):
            rt = self._type_of(gk)
            if rt is None:
                continue
            for (ns, name), obj in list(bucket.items()):
                meta = _meta(obj)
                deleting = bool(meta.get("deletionTimestamp"))
                if gk == NAMESPACE_GROUP_KIND:
                    step = self._namespace_step if deleting else self._publish_namespace_defaults
                    self._later(functools.partial(step, name))
                elif gk == CRD_GROUP_KIND and deleting:
                    self._later(functools.partial(self._crd_step, name))
                elif deleting and {ORPHAN, FOREGROUND} & set(meta.get("finalizers") or ()):
                    uid = str(meta.get("uid", ""))
                    self._later(functools.partial(self._gc_finalizer_step, rt, ns, name, uid))
