"""``ObjectAPI`` over a simulated cluster's store: how the simulated controllers act.

Controllers write through the same code path as API requests (validation, defaulting,
resourceVersion, generation, managedFields, watch events), under the field manager a
real cluster's component would use. Failures raise ``ApiError`` with the HTTP code and
reason a real API server would answer (e.g. 409 ``Conflict`` on a stale resourceVersion).

Reads and write results are the store's own objects, not copies: stored objects are never
changed in place (a write stores a new object), so sharing them is safe as long as the
controllers do not change what they get, and deep-copying every object a controller
listed was the simulator's largest cost under load. With ``check_reads`` (the tests turn
it on through ``HUB_SIM_CHECK_READS``) every result is a frozen copy instead, so a
controller that changes an object in place fails there with ``ReadOnlyError``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import cast

from clusters.sim.interface import EventType, Obj, ObjectEvent
from clusters.sim.kinds import ResourceType
from clusters.sim.readonly import freeze
from clusters.sim.selectors import EVERYTHING, parse_label_selector
from clusters.sim.store import ApiError, ClusterStore

# Set (to anything but "" or "0") to hand the controllers frozen copies (see above).
CHECK_READS_ENV = "HUB_SIM_CHECK_READS"


def _shared(obj: Obj) -> Obj:
    return obj


def _frozen(obj: Obj) -> Obj:
    return cast(Obj, freeze(obj))


def checking_reads() -> bool:
    """Whether the environment asks for checked reads."""
    return os.environ.get(CHECK_READS_ENV, "") not in ("", "0")


class StoreObjectAPI:
    """The simulated controllers' view of one cluster (implements ``interface.ObjectAPI``)."""

    def __init__(
        self,
        store: ClusterStore,
        *,
        manager: str = "kube-controller-manager",
        check_reads: bool | None = None,
    ) -> None:
        self._store = store
        self._manager = manager
        self.check_reads = checking_reads() if check_reads is None else check_reads
        self._out: Callable[[Obj], Obj] = _frozen if self.check_reads else _shared

    @property
    def cluster(self) -> str:
        return self._store.name

    def _type(self, api_version: str, kind: str) -> ResourceType:
        rt = self._store.kinds.by_kind(api_version, kind)
        if rt is None:
            raise ApiError(
                404,
                "NotFound",
                f"the server could not find the requested resource ({kind}.{api_version})",
                {},
            )
        return rt

    def _type_of(self, obj: Obj) -> ResourceType:
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "an object must be a dict")
        return self._type(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> Obj | None:
        rt = self._type(api_version, kind)
        found = self._store.find(rt.group_kind, (namespace or "") if rt.namespaced else "", name)
        return self._out(self._store.serve_as(rt, found)) if found is not None else None

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[Obj]:
        rt = self._type(api_version, kind)
        labels = parse_label_selector(label_selector) if label_selector else EVERYTHING
        result = self._store.list(rt, namespace if rt.namespaced else None, labels=labels)
        out = self._out
        return [out(o) for o in result.items]

    async def create(self, obj: Obj) -> Obj:
        rt = self._type_of(obj)
        namespace = str((obj.get("metadata") or {}).get("namespace") or "")
        return self._out(self._store.create(rt, namespace, obj, manager=self._manager))

    async def update(self, obj: Obj) -> Obj:
        rt = self._type_of(obj)
        meta = obj.get("metadata") or {}
        return self._out(
            self._store.update(
                rt,
                str(meta.get("namespace") or ""),
                str(meta.get("name", "")),
                obj,
                manager=self._manager,
            )
        )

    async def update_status(self, obj: Obj) -> Obj:
        rt = self._type_of(obj)
        meta = obj.get("metadata") or {}
        return self._out(
            self._store.update(
                rt, str(meta.get("namespace") or ""), str(meta.get("name", "")), obj,
                manager=self._manager, subresource="status",
            )
        )  # fmt: skip

    async def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        rt = self._type(api_version, kind)
        try:
            self._store.delete(rt, namespace or "", name, propagation="Background")
        except ApiError as err:
            if err.code != 404:
                raise

    async def events(self) -> AsyncIterator[ObjectEvent]:
        store = self._store
        watcher = store.watch(None, None, labels=EVERYTHING, since=str(store.resource_version))
        try:
            while True:
                item = await watcher.queue.get()
                if item is None:
                    return
                kind: EventType = item.type  # type: ignore[assignment]
                # The stored object, not a copy: stored objects are never changed in place,
                # and copying every change for the event pump cost more than the pump.
                yield ObjectEvent(type=kind, object=self._out(item.obj))
        finally:
            store.unwatch(watcher)
