"""The controller runtime of one simulated cluster: a deduplicating work queue fed by the
cluster's change events and by timers, drained by the loop's scheduler.

Cheap when idle by construction: one task per cluster (the event pump) parked on an await,
and one loop timer while something is pending (a pod waiting to become Ready, a Job's
deadline, a CronJob's next run; the cluster's due times live in one heap); no polling. The
keys are reconciled by the loop's ``Scheduler``, which runs every cluster's in turn, a
bounded slice per turn of the loop (``scheduler``).
Reconcilers are level-based: each reads the current objects, acts, and returns how long
until it wants another look (or None), so a lost event or a restart costs nothing but a
resync.

What keeps the queue short (under a fleet benchmark most reconciles used to change
nothing):

- A reconcile runs without a suspension point (the store answers synchronously), so when
  it ends it has seen every change up to its own writes. The event of a write a reconcile
  made itself therefore does not enqueue that same key again (it still wakes every other
  key it concerns: a pod's status write wakes its ReplicaSet, not the pod).
- A pod's change wakes its owner (ReplicaSet, Job, ...) only when something an owner reads
  of it changed (``owner_view``): the kubelet's Pending status with its
  ContainerCreating details changes nothing a ReplicaSet counts.
- Fan-out keys (the Services selecting a namespace's pods, the HPAs of a namespace) are
  expanded by the event pump from an index it keeps of those objects, instead of a
  reconcile that lists them for every pod or workload event.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from clusters.sim.controllers._util import (
    controller_ref,
    fake_ip,
    pod_condition,
    pod_is_ready,
    selector_string,
    status_of,
)
from clusters.sim.controllers.scheduler import Scheduler
from clusters.sim.interface import Obj, ObjectAPI, ObjectEvent
from clusters.sim.readonly import ReadOnlyError

log = logging.getLogger("clusters.sim.controllers")

# (kind, namespace, name); namespace "" for cluster-scoped objects and fan-out keys.
Key = tuple[str, str, str]
Handler = Callable[["Runtime", str, str], Awaitable[float | None]]

# Fan-out keys: one event names a set of objects to look at again. The pump expands the
# first two from its index; the others are reconciled as keys of their own.
SERVICES_IN = "ServicesIn"
HPAS_IN = "HPAsIn"
ALL_DAEMONSETS = "AllDaemonSets"
PERSISTENT_VOLUME = "PersistentVolume"

# Kinds whose objects are reconciled on start (state may come from --state-dir).
RESYNC: tuple[tuple[str, str], ...] = (
    ("v1", "Pod"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "Service"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("networking.k8s.io/v1", "Ingress"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
)

_OWNER_KINDS = {"ReplicaSet", "StatefulSet", "DaemonSet", "Job", "Deployment", "CronJob"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Node:
    name: str
    ip: str


def error_reason(exc: BaseException) -> str | None:
    """The Kubernetes Status reason an ObjectAPI error carries (Conflict, NotFound, ...)."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    code = getattr(exc, "code", None)
    if not isinstance(code, int):
        code = getattr(exc, "status", None)
    if code == 409:
        return "Conflict"
    if code == 404:
        return "NotFound"
    return None


def is_retryable(exc: BaseException) -> bool:
    """Races with other writers: re-read and try again soon."""
    return error_reason(exc) in {"Conflict", "AlreadyExists", "NotFound"}


def keys_for(event: ObjectEvent) -> list[Key]:
    """Which reconcilers an object change concerns."""
    obj = event.object
    kind = obj.get("kind", "")
    md = obj.get("metadata") or {}
    ns = md.get("namespace") or ""
    name = md.get("name") or ""
    keys: list[Key] = []
    owner = controller_ref(obj)
    if owner is not None and owner.get("kind") in _OWNER_KINDS:
        keys.append((str(owner["kind"]), ns, str(owner.get("name", ""))))
    if kind == "Pod":
        keys += [("Pod", ns, name), (SERVICES_IN, ns, "")]
    elif kind in ("ReplicaSet", "Deployment", "StatefulSet"):
        keys += [(kind, ns, name), (HPAS_IN, ns, "")]
    elif kind in (
        "DaemonSet",
        "Job",
        "CronJob",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PersistentVolumeClaim",
    ):
        keys.append((kind, ns, name))
        if kind == "PersistentVolumeClaim" and event.type == "DELETED":
            volume = (obj.get("spec") or {}).get("volumeName")
            if volume:
                keys.append((PERSISTENT_VOLUME, "", str(volume)))
    elif kind == "Node":
        keys.append((ALL_DAEMONSETS, "", ""))
    return keys


def owner_view(pod: Obj) -> tuple[Any, ...]:
    """What the pod's owners read of it (metadata, node, phase, readiness since when,
    restarts): a change outside it does not wake the owner."""
    md = pod.get("metadata") or {}
    status = status_of(pod)
    ready = pod_is_ready(pod)
    return (
        md.get("deletionTimestamp"),
        md.get("labels"),
        md.get("annotations"),
        md.get("ownerReferences"),
        md.get("finalizers"),
        (pod.get("spec") or {}).get("nodeName"),
        status.get("phase"),
        ready,
        (pod_condition(pod, "Ready") or {}).get("lastTransitionTime") if ready else None,
        max((c.get("restartCount", 0) for c in status.get("containerStatuses") or []), default=0),
    )


def _path(obj: Obj) -> tuple[str, str, str]:
    md = obj.get("metadata") or {}
    return (str(obj.get("kind", "")), str(md.get("namespace") or ""), str(md.get("name") or ""))


def _version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class _OwnWrites:
    """The ObjectAPI the reconcilers use: the cluster's, remembering which key wrote what.

    Every object a reconcile creates or updates is noted with its new resourceVersion, so
    the pump can tell that event apart from everyone else's (see the module docstring).
    """

    def __init__(self, api: ObjectAPI, runtime: Runtime) -> None:
        self._api = api
        self._rt = runtime

    @property
    def cluster(self) -> str:
        return self._api.cluster

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> Obj | None:
        return await self._api.get(api_version, kind, namespace, name)

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[Obj]:
        return await self._api.list(api_version, kind, namespace, label_selector)

    async def create(self, obj: Obj) -> Obj:
        return self._rt.wrote(await self._api.create(obj))

    async def update(self, obj: Obj) -> Obj:
        return self._rt.wrote(await self._api.update(obj))

    async def update_status(self, obj: Obj) -> Obj:
        return self._rt.wrote(await self._api.update_status(obj))

    async def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        await self._api.delete(api_version, kind, namespace, name)

    def events(self) -> AsyncIterator[ObjectEvent]:
        return self._api.events()


class Runtime:
    """Queue, timers and small shared caches of one cluster's controllers."""

    def __init__(
        self,
        api: ObjectAPI,
        *,
        ready_delay: float,
        handlers: Mapping[str, Handler],
        scheduler: Scheduler | None = None,
    ):
        self.api: ObjectAPI = _OwnWrites(api, self)
        self.ready_delay = max(ready_delay, 0.0)
        self._handlers = handlers
        # The loop's scheduler, shared by every cluster of a server; None: this runtime
        # runs one of its own while it runs (a cluster on its own, as in tests).
        self._shared = scheduler
        self._scheduler: Scheduler | None = None  # the one in use, while running
        # key -> perf_counter() when enqueued (the scheduler measures the wait)
        self._queue: dict[Key, float] = {}
        self._timers: dict[Key, float] = {}
        self._heap: list[tuple[float, Key]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        self._stopped: asyncio.Future[None] | None = None
        self._failures: dict[Key, int] = {}
        self._nodes: list[Node] | None = None
        self._served: dict[tuple[str, str], bool] = {}
        # "Kind/ns/name" -> (uid, monotonic time first seen waiting): pods, claims, load
        # balancers. Keyed by path so a deleted object's entry can be dropped by name.
        self.born: dict[str, tuple[str, float]] = {}
        # Crash-looping pods' next container restart ("Pod/ns/name" -> monotonic time).
        self.restart_at: dict[str, float] = {}
        # Reconciles run, by key kind (for tests and profiles: what the queue costs).
        self.reconciles: Counter[str] = Counter()
        self._current: Key | None = None
        # Object path -> {resourceVersion of a write a reconcile made: that reconcile's key}
        self._own: dict[tuple[str, str, str], dict[str, Key]] = {}
        # Pod path -> owner_view of its last event.
        self._pod_views: dict[tuple[str, str, str], tuple[Any, ...]] = {}
        # The pump's index for fan-out keys: namespace -> names.
        self._fan_out: dict[str, dict[str, set[str]]] = {SERVICES_IN: {}, HPAS_IN: {}}
        # The loop ``run`` runs in, while it does: finding the running loop makes a
        # getpid system call on every call (Python 3.11), some 3% of a rollout's CPU.
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- clock and queue --------------------------------------------------------------

    def clock(self) -> float:
        loop = self._loop
        return (loop if loop is not None else asyncio.get_running_loop()).time()

    def enqueue(self, key: Key) -> None:
        if key not in self._queue:
            self._queue[key] = time.perf_counter()
            if self._scheduler is not None:
                self._scheduler.ready(self)

    def enqueue_after(self, key: Key, delay: float) -> None:
        due = self.clock() + max(delay, 0.0)
        current = self._timers.get(key)
        # An earlier look is always safe (reconcilers are level-based); keep the earliest.
        if current is not None and current <= due:
            return
        self._timers[key] = due
        heapq.heappush(self._heap, (due, key))
        self._arm_timer()

    def _arm_timer(self) -> None:
        """One loop timer per cluster, at its earliest due time (while running)."""
        loop = self._loop
        if loop is None or not self._heap:
            return
        due = self._heap[0][0]
        if self._timer is not None:
            if self._timer_due <= due:
                return
            self._timer.cancel()
        self._timer_due = due
        self._timer = loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.clock()
        while self._heap and self._heap[0][0] <= now:
            due, key = heapq.heappop(self._heap)
            if self._timers.get(key) == due:
                del self._timers[key]
                self.enqueue(key)
        self._arm_timer()

    def waited(self, path: str, uid: str) -> float:
        """Seconds since this object (by path, and this incarnation by uid) was first seen."""
        now = self.clock()
        seen = self.born.get(path)
        if seen is None or seen[0] != uid:
            seen = (uid, now)
            self.born[path] = seen
        return now - seen[1]

    def forget(self, path: str) -> None:
        """Drop the timing memory of an object that is settled or gone."""
        self.born.pop(path, None)
        self.restart_at.pop(path, None)

    # -- own writes -------------------------------------------------------------------

    def wrote(self, obj: Obj) -> Obj:
        """Note that the running reconcile stored this object (returns it)."""
        if self._current is not None:
            version = _version(obj)
            if version:
                self._own.setdefault(_path(obj), {})[version] = self._current
        return obj

    def _writer(self, event: ObjectEvent) -> Key | None:
        """The key whose reconcile made this change, if one did; forgets what is past."""
        path = _path(event.object)
        own = self._own.get(path)
        if not own:
            return None
        version = _version(event.object)
        writer = own.pop(version, None)
        if version.isdigit():
            # A write that changed nothing returned an older version whose event is past.
            for stale in [v for v in own if not v.isdigit() or int(v) < int(version)]:
                del own[stale]
        if not own or event.type == "DELETED":
            del self._own[path]
        return writer

    def _unchanged_owner(self, event: ObjectEvent) -> Key | None:
        """The owner's key when this pod change is nothing its owner reads."""
        obj = event.object
        if obj.get("kind") != "Pod":
            return None
        path = _path(obj)
        if event.type == "DELETED":
            self._pod_views.pop(path, None)
            return None
        view = owner_view(obj)
        before = self._pod_views.get(path)
        self._pod_views[path] = view
        owner = controller_ref(obj)
        if event.type != "MODIFIED" or before != view or owner is None:
            return None
        return (str(owner.get("kind", "")), path[1], str(owner.get("name", "")))

    def _index(self, event: ObjectEvent) -> None:
        """Keep the fan-out index: Services with a pod selector, HPAs, by namespace."""
        obj = event.object
        kind = obj.get("kind")
        if kind == "Service":
            fan = SERVICES_IN
            member = event.type != "DELETED" and bool((obj.get("spec") or {}).get("selector"))
        elif kind == "HorizontalPodAutoscaler":
            fan = HPAS_IN
            member = event.type != "DELETED"
        else:
            return
        _, ns, name = _path(obj)
        names = self._fan_out[fan].setdefault(ns, set())
        if member:
            names.add(name)
        else:
            names.discard(name)
            if not names:
                del self._fan_out[fan][ns]

    def _expand(self, key: Key) -> list[Key]:
        fan = self._fan_out.get(key[0])
        if fan is None:
            return [key]
        kind = "Service" if key[0] == SERVICES_IN else "HorizontalPodAutoscaler"
        return [(kind, key[1], name) for name in sorted(fan.get(key[1], ()))]

    # -- shared look-ups --------------------------------------------------------------

    async def nodes(self) -> list[Node]:
        """The cluster's Nodes (cached until a Node changes), or one made-up node."""
        if self._nodes is None:
            found: list[Node] = []
            try:
                for node in await self.api.list("v1", "Node"):
                    name = node.get("metadata", {}).get("name")
                    if not name:
                        continue
                    ip = next(
                        (
                            a.get("address")
                            for a in status_of(node).get("addresses") or []
                            if a.get("type") == "InternalIP" and a.get("address")
                        ),
                        None,
                    )
                    found.append(
                        Node(name=name, ip=ip or fake_ip("172.18", self.api.cluster, name))
                    )
            except Exception as exc:  # Nodes not served: a single made-up node will do
                log.debug("%s: cannot list nodes: %s", self.api.cluster, exc)
            if not found:
                name = f"{self.api.cluster}-node-1"
                found = [Node(name=name, ip=fake_ip("172.18", self.api.cluster, name))]
            self._nodes = sorted(found, key=lambda n: n.name)
        return self._nodes

    async def served(self, api_version: str, kind: str) -> bool:
        """Whether the server stores this kind at all (EndpointSlice, PersistentVolume)."""
        key = (api_version, kind)
        if key not in self._served:
            try:
                await self.api.list(api_version, kind)
                self._served[key] = True
            except Exception:
                self._served[key] = False
        return self._served[key]

    async def select(
        self, api_version: str, kind: str, namespace: str, selector: Mapping[str, Any] | None
    ) -> list[Obj]:
        """Objects of a namespace matching a selector, filtered by the storage."""
        return await self.api.list(api_version, kind, namespace, selector_string(selector) or None)

    async def write_status(self, obj: Obj, status: dict[str, Any]) -> Obj:
        """update_status only when something changed, so our own events settle."""
        if obj.get("status") == status:
            return obj
        return await self.api.update_status({**obj, "status": status})

    # -- running ----------------------------------------------------------------------

    async def run(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        own = self._shared is None
        scheduler = Scheduler() if own else self._shared
        assert scheduler is not None
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pump(), name=f"sim-events-{self.api.cluster}")
                # let the pump subscribe before listing, so no change falls in between
                await asyncio.sleep(0)
                await self._resync()
                if own:
                    group.create_task(scheduler.run(), name=f"sim-controllers-{self.api.cluster}")
                self._scheduler = scheduler
                if self._queue:
                    scheduler.ready(self)
                self._arm_timer()
                # Until cancelled, or a reconcile fails for good. A task of the group, not
                # an await in this body: compiled (mypyc 2.4), a cancellation met in the
                # body of this ``async with`` was raised again later in the task that
                # stopped the server (tests/sim/test_client_watch.py's teardown caught it).
                group.create_task(self._until_stopped(), name=f"sim-stop-{self.api.cluster}")
        finally:
            self._detach()

    def _detach(self) -> None:
        self._leave_scheduler()
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._loop = None

    def _leave_scheduler(self) -> None:
        # read once: compiled, a second read after the first is cleared saw None
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.forget(self)

    async def _until_stopped(self) -> None:
        assert self._stopped is not None
        await self._stopped

    # -- what the scheduler calls -----------------------------------------------------

    def has_work(self) -> bool:
        return bool(self._queue) and self._scheduler is not None

    async def step(self) -> None:
        """Reconcile the key enqueued first."""
        key = next(iter(self._queue))
        enqueued = self._queue.pop(key)
        if self._scheduler is not None:
            self._scheduler.delays.add(time.perf_counter() - enqueued)
        await self._reconcile(key)

    def fail(self, exc: BaseException) -> None:
        """A reconcile failed in a way no retry fixes: ``run`` raises it."""
        self._leave_scheduler()
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_exception(exc)

    async def _resync(self) -> None:
        for api_version, kind in RESYNC:
            try:
                objects = await self.api.list(api_version, kind)
            except Exception as exc:
                log.debug("%s: cannot list %s: %s", self.api.cluster, kind, exc)
                continue
            for obj in objects:
                self._index(ObjectEvent(type="ADDED", object=obj))
                self.enqueue(_path(obj))

    async def _pump(self) -> None:
        events = self.api.events()
        try:
            async for event in events:
                kind = event.object.get("kind")
                if kind == "Node":
                    self._nodes = None
                self._index(event)
                skip = {self._writer(event), self._unchanged_owner(event)}
                for fanned in keys_for(event):
                    for key in self._expand(fanned):
                        if key not in skip:
                            self.enqueue(key)
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()

    async def _reconcile(self, key: Key) -> None:
        handler = self._handlers.get(key[0])
        if handler is None:
            return
        self.reconciles[key[0]] += 1
        self._current = key
        try:
            again = await handler(self, key[1], key[2])
        except ReadOnlyError:
            raise  # a controller bug (it changed what it read), never retried into silence
        except Exception as exc:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            if is_retryable(exc):
                delay = min(0.02 * 2**failures, 2.0)
                log.debug("%s: %s: %s; retrying", self.api.cluster, key, exc)
            else:
                delay = min(0.5 * 2**failures, 30.0)
                log.warning(
                    "%s: reconciling %s %s/%s failed (retry in %.1fs): %s",
                    self.api.cluster,
                    key[0],
                    key[1],
                    key[2],
                    delay,
                    exc,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
            self.enqueue_after(key, delay)
            return
        finally:
            self._current = None
        self._failures.pop(key, None)
        if again is not None:
            self.enqueue_after(key, again)
