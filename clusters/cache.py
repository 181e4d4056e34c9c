"""The live cache of one cluster: list once, then watch, per resource kind.

A ``LiveCache`` holds, for every kind a cluster worker asked for, the key of every live
object (group, kind, namespace, name -> resourceVersion) and the full body only of objects
that carry a tracking id (``owner_of(obj)`` names an app). Reconcilers read live state from
here, so steady state makes no per-Application GET or LIST: after one LIST per kind, a
watch from the list's resourceVersion keeps it current. A kept body is stored ``compact``:
equal to what the API returned, its managedFields' field trees shared with every equal
tree of the fleet (they were half of a cached Deployment's memory).

``run_kind(res)`` is the loop for one kind, a coroutine the worker runs as a task on its
event loop (no thread per watch; requests go through ``clusters.kube.AsyncKube``, one
connection pool per cluster): LIST, then watch windows resumed from the last
resourceVersion seen (BOOKMARKs asked for and followed). A window is long and jittered as
client-go's reflector does (``window_seconds``: 5 to 10 minutes, sent as the server-side
``timeoutSeconds``), so a fleet's watches are not all re-opened at once nor every few
seconds. After an error it backs off (``backoff_delay``) and resumes from that
resourceVersion; a 410 Gone (``Gone``) means the history is gone, so it lists again. It
runs until cancelled. Every change to a tracked object, and every object that stops or
starts being tracked, is reported through ``on_change`` with the names of the apps
concerned (after a kind's first list: the empty set, every app); ``on_state`` says
whether the cluster answered (None) or what went wrong. Both are plain calls on the loop.

``version`` counts every change the cache saw; ``changed(since, timeout_s)`` awaits (on
the loop) the next one, so the sync engine's health gate, hook and prune waits sleep until
the cache moves instead of polling the API. Reads take a lock, so a thread (the worker's
comparison) may read while the loop writes.

Only ``clusters/`` imports the Kubernetes client; this module builds on ``clusters.kube``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from clusters.kube import ApiResource, AsyncKube, Gone, KubeError, Obj

log = logging.getLogger(__name__)

Key = tuple[str, str, str, str]  # group, kind, namespace, name
OwnerOf = Callable[[Mapping[str, Any]], "str | None"]
ChangeSink = Callable[[set[str]], None]
# (app, cached object, its new version): True when the app need not hear of the change (it
# cannot change what the app reports). Called with the cache's lock held: it must not
# call the cache.
Unheard = Callable[[str, Obj, Obj], bool]
StateSink = Callable[[ApiResource, "KubeError | None"], None]

#: A watch request's server-side timeout is drawn from [MIN, 2 x MIN) seconds, as
#: client-go's reflector does (minWatchTimeout 5 minutes): long enough that a thousand
#: clusters' watches cost a few requests a second, jittered so they do not end together.
MIN_WINDOW_S = 300.0


def window_seconds(rand: Callable[[], float] = random.random) -> float:
    """The next watch window: MIN_WINDOW_S times a factor in [1, 2)."""
    return MIN_WINDOW_S * (1.0 + rand())


def backoff_delay(
    failures: int,
    *,
    base_s: float = 1.0,
    factor: float = 2.0,
    cap_s: float = 30.0,
    jitter: float = 0.2,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after ``failures`` consecutive failures (1 = the first): exponential,
    capped, with +/- ``jitter`` spread so a fleet that failed together does not retry in step."""
    if failures <= 0:
        return 0.0
    delay = min(cap_s, base_s * factor ** (failures - 1))
    return max(0.0, delay * (1.0 + jitter * (2.0 * rand() - 1.0)))


def key_of(obj: Mapping[str, Any]) -> Key:
    api_version = str(obj.get("apiVersion") or "")
    group, sep, _ = api_version.rpartition("/")
    meta = obj.get("metadata") or {}
    return (
        group if sep else "",
        str(obj.get("kind") or ""),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
    )


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class _Fields(dict[str, Any]):
    """A ``fieldsV1`` tree shared by every cached object that has an equal one (a plain dict
    that can be weakly referenced)."""

    __slots__ = ("__weakref__",)


_SHARED_FIELDS: weakref.WeakValueDictionary[str, _Fields] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()
_ENTRY_STRINGS = ("manager", "operation", "apiVersion", "fieldsType", "subresource")


def _shared_fields(tree: Mapping[str, Any]) -> _Fields:
    """The one ``_Fields`` equal to ``tree``. Held weakly: freed with the last object.

    Keyed by ``repr`` (the API server writes a field set in one order, so equal sets print
    alike; one printed in another order is merely not shared), and checked for equality
    before sharing."""
    key = repr(tree)
    with _SHARED_LOCK:
        found = _SHARED_FIELDS.get(key)
        if found is None:
            _SHARED_FIELDS[key] = found = _Fields(_interned(tree))
        elif found != tree:  # not expected; never share what differs
            return _Fields(_interned(tree))
        return found


def _key(k: Any) -> Any:
    return sys.intern(k) if type(k) is str else k


def _interned(value: Any) -> Any:
    """A copy of ``value`` whose mapping keys are interned strings: every object decoded
    from a watch event has its own copy of every key ("metadata", "containers", label
    names...), tens of bytes each, a hundred per Deployment."""
    if isinstance(value, dict):
        return {_key(k): _interned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interned(v) for v in value]
    return value


def _compact_entry(entry: Any, previous: Any = None) -> Any:
    """A managedFields entry as the cache keeps it. ``previous``: the entry at the same
    place in the cached version of the object, whose field set is reused when equal."""
    if not isinstance(entry, dict):
        return entry
    if isinstance(previous, dict) and previous == entry:
        return previous
    out: dict[str, Any] = {}
    for k, v in entry.items():
        if k == "fieldsV1" and isinstance(v, dict):
            old = previous.get("fieldsV1") if isinstance(previous, dict) else None
            v = old if isinstance(old, _Fields) and old == v else _shared_fields(v)
        elif k in _ENTRY_STRINGS and type(v) is str:
            v = sys.intern(v)
        else:
            v = _interned(v)
        out[_key(k)] = v
    return out


def _compact_metadata(meta: dict[str, Any], previous: Any) -> dict[str, Any]:
    """``metadata`` as the cache keeps it, reusing from ``previous`` (the cached version's
    metadata) what a watch event mostly repeats: the labels, the annotations and the
    managedFields entries that are equal to their earlier selves.

    Only where Python's equality is exact (``1 == True`` is not exact, and the diff tells
    them apart): maps of strings, and managedFields, whose field sets mean their keys only.
    Anything else is copied, as ``spec`` and ``status`` are. A reused map keeps the key
    order it had in ``previous``; the API server writes maps sorted, so the two agree in
    practice, and no reader depends on it."""
    prev = previous if isinstance(previous, dict) else {}
    out: dict[str, Any] = {}
    for mk, mv in meta.items():
        old = prev.get(mk)
        if mk == "managedFields" and isinstance(mv, list):
            olds = old if isinstance(old, list) else []
            mv = [_compact_entry(e, olds[i] if i < len(olds) else None) for i, e in enumerate(mv)]
        elif (
            type(mv) is dict
            and type(old) is dict
            and old == mv
            and all(type(v) is str for v in mv.values())
        ):
            mv = old
        else:
            mv = _interned(mv)
        out[_key(mk)] = mv
    return out


def compact(obj: Obj, previous: Obj | None = None) -> Obj:
    """``obj`` as the cache keeps it: an equal object that shares what a fleet repeats.

    managedFields are half of a decoded Deployment (their ``fieldsV1`` trees: a dict per
    field), and the same few trees recur in every cluster (one per manager and shape): each
    distinct tree is kept once (``_shared_fields``), the entries' small strings and the
    metadata's mapping keys are interned. Nothing is dropped: the diff reads managedFields
    (the hub's own field set, and ignoreDifferences' managedFieldsManagers). Cached objects
    are read-only for every reader (they always were: the cache hands them out by
    reference), which is what makes the sharing safe.

    Everything outside ``metadata`` (``spec``, ``status``, ``data``...) is kept as decoded,
    shared with ``obj``: the wire decoder (orjson) already hands out one string object per
    distinct short key across every document it decodes, so re-keying a copy saved no
    memory (10,000 decoded Deployments: 53.0 MB as decoded, 52.5 MB re-keyed) and cost
    11 us per Deployment event. The caller hands ``obj`` over and does not change it.

    ``previous`` is the cached version of the same object: a watch event mostly repeats it
    (a rolling Deployment's status writes change a few fields), and reusing its unchanged
    metadata costs a comparison instead of a copy (``_compact_metadata``)."""
    out: Obj = {}
    for k, v in obj.items():
        if k == "metadata" and isinstance(v, dict):
            v = _compact_metadata(v, None if previous is None else previous.get("metadata"))
        out[_key(k)] = v
    return out


@dataclass
class _Kind:
    res: ApiResource
    refs: dict[Key, str] = field(default_factory=dict)  # every object: key -> resourceVersion
    resource_version: str = ""
    synced: bool = False
    failing: bool = False  # the last list or watch failed; updates may be missed meanwhile


@dataclass
class CacheStats:
    lists: int = 0
    watches: int = 0
    relists_after_gone: int = 0
    events: int = 0
    errors: int = 0
    unheard: int = 0  # changes of tracked objects their app was not told of (``Unheard``)


class LiveCache:
    """Live objects of one cluster (see the module docstring). Thread-safe."""

    def __init__(
        self,
        kube: AsyncKube,
        *,
        owner_of: OwnerOf,
        on_change: ChangeSink,
        on_state: StateSink | None = None,
        unheard: Unheard | None = None,
        window_s: float | None = None,
        backoff: Callable[[int], float] = backoff_delay,
    ) -> None:
        self.transport = kube  # the lists and watches (discovery is the caller's)
        self.name = getattr(kube, "name", "")  # the cluster's (tests pass no client)
        self._owner_of = owner_of
        self._on_change = on_change
        self._unheard = unheard
        self._on_state = on_state or (lambda _res, _err: None)
        self.window_s = window_s  # None: ``window_seconds()`` per request
        self._backoff = backoff  # seconds to wait after n consecutive failures
        self._lock = threading.Lock()
        self.version = 0  # bumped on every list, event and failure: see changed
        self._moved: anyio.Event | None = None  # made by the first waiter, set on a bump
        self._kinds: dict[tuple[str, str], _Kind] = {}
        self._tracked: dict[Key, Obj] = {}
        # the app each tracked object was stored under: its tracking id, parsed once
        self._owners: dict[Key, str] = {}
        self._by_app: dict[str, set[Key]] = {}
        self.stats = CacheStats()
        # Monotonic time of the last list or watch event, bookmarks included: proof that
        # the cluster answers (the worker's liveness probe is skipped while it is recent).
        self.heard_at = 0.0

    async def aclose(self) -> None:
        """Release the transport's sockets (the kinds' tasks must be cancelled first)."""
        if self.transport is not None:
            await self.transport.aclose()

    # -- reads

    async def changed(self, since: int, timeout_s: float) -> int:
        """Await (on the loop) until ``version`` differs from ``since`` or ``timeout_s``
        passed; the version then. Read ``version`` before reading the state it covers, then
        await with it: a change in between is not missed."""
        if self.version == since and timeout_s > 0:
            if self._moved is None:
                self._moved = anyio.Event()
            moved = self._moved
            with anyio.move_on_after(timeout_s):
                await moved.wait()
        return self.version

    def _bump(self) -> None:
        """Caller holds the lock; on the loop (the Event belongs to it)."""
        self.version += 1
        moved, self._moved = self._moved, None
        if moved is not None:
            moved.set()

    def kinds(self) -> set[tuple[str, str]]:
        with self._lock:
            return set(self._kinds)

    def is_synced(self, group_kind: tuple[str, str]) -> bool:
        with self._lock:
            kind = self._kinds.get(group_kind)
            return kind is not None and kind.synced

    def is_current(self, group_kind: tuple[str, str]) -> bool:
        """Listed, and its watch has not failed since (no relist after 410 pending): what
        a sync may read instead of LISTing the kind."""
        with self._lock:
            kind = self._kinds.get(group_kind)
            return kind is not None and kind.synced and not kind.failing

    def tracked(self, app: str) -> list[Obj]:
        """The live objects whose tracking id names ``app``."""
        with self._lock:
            return [self._tracked[k] for k in sorted(self._by_app.get(app, ()))]

    def get_tracked(self, key: Key) -> Obj | None:
        with self._lock:
            return self._tracked.get(key)

    def exists(self, key: Key) -> bool:
        """Whether any object (tracked or not) has this key, as far as the cache knows."""
        with self._lock:
            kind = self._kinds.get((key[0], key[1]))
            return kind is not None and key in kind.refs

    def apps(self) -> set[str]:
        with self._lock:
            return {a for a, keys in self._by_app.items() if keys}

    # -- registration

    def add_kind(self, res: ApiResource) -> bool:
        """Start caching a kind; False when it is cached already."""
        with self._lock:
            if (res.group, res.kind) in self._kinds:
                return False
            self._kinds[(res.group, res.kind)] = _Kind(res=res)
            return True

    # -- updates (called by run_kind; public for tests of the bookkeeping)

    def _store(self, key: Key, obj: Obj | None, changed: set[str]) -> None:
        """Put (or with None remove) one object; collect the apps whose view changed.

        Caller holds the lock."""
        old = self._tracked.get(key)
        old_app = self._owners.get(key)
        new_app = None if obj is None else self._owner_of(obj)
        if old_app is not None and old is not None:
            self._by_app.get(old_app, set()).discard(key)
            del self._tracked[key]
            del self._owners[key]
        if obj is None or new_app is None:
            if old_app is not None:
                changed.add(old_app)
            return
        stored = self._tracked[key] = compact(obj, old)
        self._owners[key] = new_app
        self._by_app.setdefault(new_app, set()).add(key)
        if old is not None and old_app == new_app and self._is_unheard(new_app, old, stored):
            self.stats.unheard += 1
            return
        if old_app is not None:
            changed.add(old_app)
        changed.add(new_app)

    def _is_unheard(self, app: str, old: Obj, new: Obj) -> bool:
        if self._unheard is None:
            return False
        try:
            return self._unheard(app, old, new)
        except Exception:  # a bug in the hook: the app hears of it, the watch goes on
            log.exception("%s: deciding whether app %s hears a change failed", self.name, app)
            return False

    def replace_kind(self, res: ApiResource, items: Iterable[Obj], resource_version: str) -> None:
        """A fresh LIST of a kind replaces what was cached for it."""
        self.heard_at = time.monotonic()
        changed: set[str] = set()
        with self._lock:
            kind = self._kinds.setdefault((res.group, res.kind), _Kind(res=res))
            fresh: dict[Key, Obj] = {key_of(o): o for o in items}
            for key in list(kind.refs):
                if key not in fresh:
                    self._store(key, None, changed)
            for key, obj in fresh.items():
                old = self._tracked.get(key)
                if old is not None and _rv(old) == _rv(obj) and kind.synced:
                    continue
                self._store(key, obj, changed)
            kind.refs = {k: _rv(o) for k, o in fresh.items()}
            kind.resource_version = resource_version
            first = not kind.synced
            kind.synced = True
            kind.failing = False
            self._bump()
        if first:
            # The first list of a kind changes what every app can see, tracked or not: an
            # app whose refresh waited for the kind is woken even when the list names only
            # other apps' objects (the empty set: everyone).
            self._on_change(set())
        elif changed:
            self._on_change(changed)

    def apply_event(self, res: ApiResource, etype: str, obj: Obj) -> None:
        self.heard_at = time.monotonic()
        rv = _rv(obj)
        changed: set[str] = set()
        with self._lock:
            kind = self._kinds.setdefault((res.group, res.kind), _Kind(res=res))
            if rv:
                kind.resource_version = rv
            if etype == "BOOKMARK":
                return
            key = key_of(obj)
            if etype == "DELETED":
                kind.refs.pop(key, None)
                self._store(key, None, changed)
            else:
                kind.refs[key] = rv
                self._store(key, obj, changed)
            self.stats.events += 1
            self._bump()
        if changed:
            self._on_change(changed)

    # -- the loop (coroutines on the worker's event loop)

    async def list_kind(self, res: ApiResource) -> None:
        items, rv = await self.transport.list(res)
        with self._lock:
            self.stats.lists += 1
        self.replace_kind(res, items, rv)

    async def watch_window(
        self, res: ApiResource, on_open: Callable[[], None] | None = None
    ) -> None:
        """One watch request from the cached resourceVersion until the window ends."""
        with self._lock:
            rv = self._kinds[(res.group, res.kind)].resource_version
            self.stats.watches += 1
        window = self.window_s if self.window_s is not None else window_seconds()
        events = self.transport.watch(res, resource_version=rv, timeout_s=window, on_open=on_open)
        async with contextlib.aclosing(events):
            async for event in events:
                self.apply_event(res, event.type, event.object)

    async def run_kind(self, res: ApiResource) -> None:
        """List and watch ``res`` until cancelled."""
        self.add_kind(res)
        failures = 0
        need_list = True

        def answered() -> None:
            # The watch is accepted: current again now, not at the end of a window that
            # may last minutes (a 410 in its first line marks it failing again).
            nonlocal failures
            if failures:
                failures = 0
                with self._lock:
                    self._kinds[(res.group, res.kind)].failing = False
                    self._bump()
                self._on_state(res, None)

        while True:
            try:
                if need_list:
                    await self.list_kind(res)
                    need_list = False
                    self._on_state(res, None)
                await self.watch_window(res, answered)
                answered()
            except Gone:
                with self._lock:
                    self.stats.relists_after_gone += 1
                    self._kinds[(res.group, res.kind)].failing = True  # until the relist
                    self._bump()
                need_list = True  # history expired: the only way back is a new LIST
            except KubeError as exc:
                failures += 1
                self._failed(res, exc)
                await anyio.sleep(self._backoff(failures))
            except Exception as exc:  # a bug: this kind goes on, and so does the worker's loop
                log.exception("cluster %s: watching %s failed unexpectedly", self.name, res.plural)
                failures += 1
                self._failed(
                    res, KubeError(f"{self.name}: watch {res.plural}: {type(exc).__name__}")
                )
                await anyio.sleep(self._backoff(failures))

    def _failed(self, res: ApiResource, exc: KubeError) -> None:
        with self._lock:
            self.stats.errors += 1
            kind = self._kinds.get((res.group, res.kind))
            if kind is not None:
                kind.failing = True
            self._bump()
        self._on_state(res, exc)
