"""Where the CLI's fleet views come from: a running hub's API, else the store (read-only).

``open_fleet`` picks the source: ``--server URL`` when given, else the hub recorded in
``$HUB_HOME/serve.json`` when it answers, else the state database, read without writing.
Both sources return the same documents (``hub.api.views`` builds them in either case).
Actions (sync, rollback, refresh) need a running hub.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hub.api.client import ApiClient, find_running_hub
from hub.api.token import ENV_TOKEN, read_token
from hub.api.views import AppFilter, FleetView
from hub.errors import HubError, HubUsageError


class NoRunningHub(HubError):
    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} needs a running hub: start `hub serve` (or pass --server URL); "
            "`hub app sync -f FILE` syncs a file without one"
        )


class Fleet(Protocol):
    kind: str  # "api" | "store"

    def status(self, *, appset: str | None, cluster: str | None) -> dict[str, Any]: ...
    def apps(self, flt: AppFilter) -> list[dict[str, Any]]: ...
    def app(self, name: str) -> dict[str, Any]: ...
    def history(self, name: str) -> list[dict[str, Any]]: ...
    def diff(self, name: str) -> dict[str, Any]: ...
    def appsets(self) -> list[dict[str, Any]]: ...
    def appset(self, name: str) -> dict[str, Any]: ...
    def sync(self, name: str, *, prune: bool, revision: str | None) -> dict[str, Any]: ...
    def rollback(self, name: str, entry: int) -> dict[str, Any]: ...


def _q(name: str) -> str:
    import urllib.parse

    return urllib.parse.quote(name, safe="")


@dataclass
class ApiFleet:
    client: ApiClient
    kind: str = "api"

    def status(self, *, appset: str | None, cluster: str | None) -> dict[str, Any]:
        doc: dict[str, Any] = self.client.get(
            "/api/v1/status", {"appset": appset, "cluster": cluster}
        )
        return doc

    def apps(self, flt: AppFilter) -> list[dict[str, Any]]:
        query = {
            "cluster": flt.cluster,
            "appset": flt.appset,
            "sync": flt.sync,
            "health": flt.health,
        }
        items: list[dict[str, Any]] = self.client.get("/api/v1/applications", query)["items"]
        return items

    def app(self, name: str) -> dict[str, Any]:
        doc: dict[str, Any] = self.client.get(f"/api/v1/applications/{_q(name)}")
        return doc

    def history(self, name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.client.get(f"/api/v1/applications/{_q(name)}/history")[
            "items"
        ]
        return items

    def diff(self, name: str) -> dict[str, Any]:
        doc: dict[str, Any] = self.client.get(f"/api/v1/applications/{_q(name)}/diff")
        return doc

    def appsets(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.client.get("/api/v1/applicationsets")["items"]
        return items

    def appset(self, name: str) -> dict[str, Any]:
        doc: dict[str, Any] = self.client.get(f"/api/v1/applicationsets/{_q(name)}")
        return doc

    def sync(self, name: str, *, prune: bool, revision: str | None) -> dict[str, Any]:
        doc: dict[str, Any] = self.client.post(
            f"/api/v1/applications/{_q(name)}/sync", {"prune": prune, "revision": revision}
        )
        return doc

    def rollback(self, name: str, entry: int) -> dict[str, Any]:
        doc: dict[str, Any] = self.client.post(
            f"/api/v1/applications/{_q(name)}/rollback", {"id": entry}
        )
        return doc


@dataclass
class StoreFleet:
    view: FleetView
    home: Path
    kind: str = "store"

    def status(self, *, appset: str | None, cluster: str | None) -> dict[str, Any]:
        return self.view.status(live=None, appset=appset, cluster=cluster).to_json()

    def apps(self, flt: AppFilter) -> list[dict[str, Any]]:
        return self.view.app_list(flt)

    def app(self, name: str) -> dict[str, Any]:
        return self.view.app(name)

    def history(self, name: str) -> list[dict[str, Any]]:
        return self.view.app_history(name)

    def diff(self, name: str) -> dict[str, Any]:
        # The same one-shot comparison as `hub app diff -f`: reads the cluster, writes nothing.
        from hub.api.app import engine_differ

        return engine_differ(self.home)(self.view.record(name)).to_json()

    def appsets(self) -> list[dict[str, Any]]:
        return self.view.appsets()

    def appset(self, name: str) -> dict[str, Any]:
        return self.view.appset(name)

    def sync(self, name: str, *, prune: bool, revision: str | None) -> dict[str, Any]:
        raise NoRunningHub(f"syncing {name}")

    def rollback(self, name: str, entry: int) -> dict[str, Any]:
        raise NoRunningHub(f"rolling back {name}")


def api_token(home: Path, explicit: str | None) -> str | None:
    return explicit or os.environ.get(ENV_TOKEN) or read_token(home)


@contextmanager
def open_fleet(
    home: Path,
    *,
    server: str | None = None,
    token: str | None = None,
    need_hub: bool = False,
    offline: bool = False,
) -> Iterator[Fleet]:
    """The running hub's API if one answers, else (unless ``need_hub``) the store;
    ``offline`` reads the store even when a hub runs."""
    if offline and (server or need_hub):
        raise HubUsageError("--offline reads the store; it cannot be combined with --server")
    url = None if offline else server or find_running_hub(home)
    if url is not None:
        yield ApiFleet(ApiClient(url, token=api_token(home, token) if need_hub else token))
        return
    if need_hub:
        raise NoRunningHub("this command")
    from hub.home import open_store

    with open_store(home) as store:
        yield StoreFleet(FleetView(store), home)
