"""What the HTTP API may ask of a running hub.

The reconcilers (``hub.controller``) implement ``HubHandle``; the API
(``hub.api``) only depends on this protocol, so either side can be built and
tested without the other. Reads go to the store; this is for actions and for the
few facts only the running process knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

ConnectionState = Literal["Connected", "Unreachable", "Unauthorized", "Unknown"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ClusterConnection:
    """A cluster's connection as its worker last saw it."""

    state: ConnectionState
    message: str = ""
    since: str = ""  # RFC 3339


class HubHandle(Protocol):
    """Actions and live facts of a running hub."""

    def ready(self) -> bool:
        """True once sources were loaded and every cluster worker has started."""
        ...

    def cluster_connections(self) -> dict[str, ClusterConnection]:
        """Connection state per registered cluster."""
        ...

    async def request_sync(
        self, app: str, *, prune: bool = False, revision: str | None = None, who: str = "api"
    ) -> None:
        """Queue a sync of one Application; raises HubError when it does not exist."""
        ...

    async def request_refresh(self, app: str | None = None) -> None:
        """Re-read Git and re-compare one Application (or all when None)."""
        ...

    async def request_rollback(self, app: str, history_id: int, *, who: str = "api") -> None:
        """Queue a rollback of an Application to a history entry."""
        ...

    async def notify_git_push(self, repo_urls: list[str]) -> int:
        """A push webhook arrived: fetch these repositories now; returns how many matched."""
        ...
