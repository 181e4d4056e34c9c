"""The one interface between the simulated controllers and the API storage.

Controllers (``controllers.py``) never touch the storage or the HTTP layer
directly: they read and write objects through ``ObjectAPI``, the way KWOK's
controllers talk to a real API server. A later adapter can implement this
protocol over a real cluster's REST API.

Objects are plain Kubernetes manifests (``dict``), exactly as the API returns them.
What the API returns is read-only: it may be the server's own stored object, shared with
every other reader, so a controller copies before it changes anything
(``copy.deepcopy``, ``{**obj, "status": ...}``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Obj = dict[str, Any]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """A change to one object, in resourceVersion order."""

    type: EventType
    object: Obj


class ObjectAPI(Protocol):
    """What a simulated controller may do to the objects of one cluster."""

    @property
    def cluster(self) -> str:
        """The cluster's name (for logs and fault settings)."""
        ...

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> Obj | None:
        """The object, or None when it does not exist."""
        ...

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[Obj]:
        """Objects of a kind, optionally in one namespace and matching a label selector."""
        ...

    async def create(self, obj: Obj) -> Obj:
        """Create (defaulting and metadata as for an API request); returns the stored object."""
        ...

    async def update(self, obj: Obj) -> Obj:
        """Replace metadata and spec (not status); resourceVersion checked when set."""
        ...

    async def update_status(self, obj: Obj) -> Obj:
        """Replace only ``status`` (the status subresource)."""
        ...

    async def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        """Delete with Background propagation; no error when already gone."""
        ...

    def events(self) -> AsyncIterator[ObjectEvent]:
        """Every later change to any object of this cluster, in order, until cancelled.

        The event's object is read-only (it may be the server's own copy)."""
        ...
