"""The composition root (``hub.services.open_services``): one wiring of a home's parts,
closed in reverse order, also when a part fails to open."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hub.services
from clusters.registry import Registry
from hub.apps import AppStore
from hub.charts import shared_chart_repos
from hub.errors import HubError
from hub.home import init_home, load_keyring
from hub.repo_credentials import RepoCredentialStore
from hub.repos import RepoCache, ResolvedRevisions
from hub.services import CLI_RESOLVE_TTL_S, open_services
from hub.sources import HubGit
from hub.store import Store
from hub.sync.diff import JqRunner

ENV = {"HUB_MASTER_KEY": ""}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("HUB_MASTER_KEY", raising=False)
    monkeypatch.delenv("HUB_DATABASE_URL", raising=False)
    init_home(tmp_path / "home", env=ENV)
    return tmp_path / "home"


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every part whose ``close`` runs, in the order it runs (the real close still runs)."""
    calls: list[Any] = []
    for cls in (Registry, Store, RepoCache, HubGit, JqRunner):
        original = cls.close

        def spy(self: Any, _original: Any = original) -> None:
            calls.append(self)
            _original(self)

        monkeypatch.setattr(cls, "close", spy)
    yield calls


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _commit(repo: Path, text: str) -> str:
    (repo / "f.txt").write_text(text)
    _git(repo, "add", "f.txt")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", text)
    return _git(repo, "rev-parse", "HEAD")


def test_the_parts_share_one_store_and_close_in_reverse_order(
    home: Path, closed: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shared_chart_repos(), "credentials", lambda _url: None)
    with open_services(home) as parts:
        assert parts.home == home
        assert parts.keyring().primary.key_id == load_keyring(home, env=ENV).primary.key_id
        assert list(parts.registry.list()) == []
        parts.store.set_meta("probe", "1")
        assert AppStore(parts.store).list_apps() == parts.apps.list_apps() == []
        assert parts.history.entries("nothing") == []
        # Charts of private repositories are read with this home's `hub repo add` entries.
        RepoCredentialStore(parts.store, parts.keyring).add(
            "https://charts.example.com/private", "u", "p", pass_credentials=False
        )
        found = shared_chart_repos().credentials("https://charts.example.com/private/x")
        assert found is not None and found.username == "u"
        closed.clear()  # that lookup opened and closed a store of its own (per use)
        assert closed == []
    registry_store = parts.registry._storage
    assert registry_store is not parts.store  # the registry keeps its own connection
    assert closed == [parts.jq, parts.git, parts.repos, parts.store, parts.registry, registry_store]


@pytest.mark.parametrize("failing", ["RepoCache", "JqRunner", "HubGit"])
def test_a_part_that_fails_to_open_closes_the_parts_opened_before_it(
    home: Path, closed: list[Any], monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    stores: list[Store] = []
    registries: list[Registry] = []
    real_store, real_registry = hub.services.open_store, hub.services.open_registry

    def open_store(h: Path) -> Store:
        stores.append(real_store(h))
        return stores[-1]

    def open_registry(h: Path) -> Registry:
        registries.append(real_registry(h))
        return registries[-1]

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(f"{failing} cannot open")

    monkeypatch.setattr(hub.services, "open_store", open_store)
    monkeypatch.setattr(hub.services, "open_registry", open_registry)
    monkeypatch.setattr(hub.services, failing, broken)
    with pytest.raises(OSError, match=f"{failing} cannot open"), open_services(home):
        pytest.fail("the body must not run")
    [store], [registry] = stores, registries
    assert store in closed and registry in closed
    assert closed.index(store) < closed.index(registry)  # reverse order of opening
    repos = [c for c in closed if isinstance(c, RepoCache)]
    assert len(repos) == (0 if failing == "RepoCache" else 1)


def test_a_store_that_fails_to_open_closes_the_registry(
    home: Path, closed: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_registry = hub.services.open_registry
    registries: list[Registry] = []

    def open_registry(h: Path) -> Registry:
        registries.append(real_registry(h))
        return registries[-1]

    def open_store(h: Path) -> Store:
        raise HubError(f"state database {h}: the server went away")

    monkeypatch.setattr(hub.services, "open_registry", open_registry)
    monkeypatch.setattr(hub.services, "open_store", open_store)
    with pytest.raises(HubError, match="went away"), open_services(home):
        pytest.fail("the body must not run")
    [registry] = registries
    assert closed == [registry, registry._storage]


def test_the_resolve_ttl_is_the_callers_choice(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ttls: list[float | None] = []
    real = hub.services.ResolvedRevisions

    def revisions(*args: Any, **kwargs: Any) -> ResolvedRevisions:
        ttls.append(kwargs["ttl_s"])
        return real(*args, **kwargs)

    monkeypatch.setattr(hub.services, "ResolvedRevisions", revisions)
    with open_services(home):
        assert ttls == [CLI_RESOLVE_TTL_S] == [10.0]  # the CLI's and the API's default
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    first = _commit(repo, "one")
    # The hub: one answer per poll cycle, until new_cycle().
    with open_services(home, resolve_ttl_s=None) as parts:
        assert parts.revisions.resolve(str(repo), "HEAD") == first
        second = _commit(repo, "two")
        assert parts.revisions.resolve(str(repo), "HEAD") == first
        parts.revisions.new_cycle()
        assert parts.revisions.resolve(str(repo), "HEAD") == second
    # No reuse at all with a TTL of 0: each ask resolves again.
    with open_services(home, resolve_ttl_s=0.0) as parts:
        assert parts.revisions.resolve(str(repo), "HEAD") == second
        third = _commit(repo, "three")
        assert parts.revisions.resolve(str(repo), "HEAD") == third
        # The sources of `hub app sync|diff` resolve on every call, through the same cache.
        assert parts.repos.resolve(str(repo), "HEAD") == third


def test_the_hub_closes_its_parts_and_a_failed_wiring_leaks_none(
    home: Path, closed: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import hub.controller
    from hub.controller import Hub

    running = Hub(home)
    running._open()
    assert closed == []
    parts = (running.jq, running.git, running.repo_cache, running.store, running.registry)
    running._close()
    assert closed[:5] == list(parts)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the notifier cannot start")

    closed.clear()
    monkeypatch.setattr(hub.controller, "Notifier", broken)
    failing = Hub(home)
    with pytest.raises(RuntimeError, match="notifier"):
        failing._open()
    assert failing.store in closed and failing.registry in closed and failing.jq in closed
