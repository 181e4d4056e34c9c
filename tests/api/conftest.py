from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from aiohttp import web

from hub.api.app import DiffView, create_api_app
from hub.apps import AppRecord
from hub.metrics import Metrics, connection_states, store_app_counts
from hub.store import Store
from tests.api.fleet import RecordingHub, populate

TOKEN = "test-token-0123456789abcdef"
WEBHOOK_SECRET = "webhook-secret-for-tests"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("HUB_MASTER_KEY", raising=False)
    path = tmp_path / "home"
    populate(path)
    return path


@pytest.fixture
def hub() -> RecordingHub:
    return RecordingHub()


def static_differ(record: AppRecord) -> DiffView:
    """Stands in for the engine (which needs a cluster): echoes what it was asked."""
    return DiffView(
        revision="f" * 40, status="OutOfSync", diff=f"--- live\n+++ desired {record.name}\n"
    )


class MakeApp(Protocol):
    def __call__(
        self, *, handle: RecordingHub | None = ..., secret: str | None = ...
    ) -> web.Application: ...


@pytest.fixture
def make_app(home: Path, hub: RecordingHub) -> Iterator[MakeApp]:
    """``create_api_app`` over the populated home, the recording hub and a store-backed
    Metrics (``handle=None``: an API with no hub behind it)."""
    stores: list[Store] = []

    def make(
        *, handle: RecordingHub | None = hub, secret: str | None = WEBHOOK_SECRET
    ) -> web.Application:
        store = Store.open(home / "hub.db")
        stores.append(store)
        metrics = Metrics(
            app_counts=store_app_counts(store),
            connections=None if handle is None else connection_states(handle),
        )
        return create_api_app(
            home=home,
            handle=handle,
            token=TOKEN,
            metrics=metrics,
            webhook_secret=secret,
            differ=static_differ,
        )

    yield make
    for s in stores:
        s.close()
