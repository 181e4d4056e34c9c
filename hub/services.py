"""The composition root: the parts of a hub home, built in one place.

``open_services(home)`` opens the cluster registry, the state store, the Git repository
cache with its (repo, revision) -> SHA cache and the Git view over it, and the jq
evaluator, for every caller that wires several of them: the running hub
(``hub.controller.Hub``), the CLI's ``hub app sync|diff``, the cascade of ``hub cluster
rm``, ``hub source add``, ``hub appset reconcile`` and the API's diff. What differs between
those callers (how long a resolved revision is reused, the Git thread limiter, the fetch
metrics) is a parameter here, so each part is built one way only.

Parts that hold nothing until used (the repository cache, the jq child process) cost
nothing to a caller that does not use them. Opening is all or nothing: a part that fails
to open closes the ones opened before it, in reverse order, and the error propagates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio

from clusters.crypto import Keyring
from clusters.registry import Registry
from hub.apps import AppStore
from hub.home import load_keyring, open_registry, open_store
from hub.repo_credentials import use_repo_credentials
from hub.repos import FetchObserver, RepoCache, ResolvedRevisions
from hub.sources import HubGit, MaterializedGit
from hub.store import Store
from hub.sync.diff import JqRunner
from hub.sync.history import SyncHistory

# The CLI and the API have no poll cycle: a revision is fetched again once its answer is
# this old (a git generator reading many files at "HEAD" must not fetch once per file).
CLI_RESOLVE_TTL_S = 10.0


@dataclass(frozen=True, kw_only=True)
class Services:
    """The opened parts of one hub home (see the module docstring)."""

    home: Path
    registry: Registry  # on its own store connection (closing it closes that store)
    store: Store
    apps: AppStore
    history: SyncHistory  # unfenced; a replica wraps ``store`` in its fences itself
    repos: RepoCache  # resolves on every call: the sync engine's sources outside the hub
    revisions: ResolvedRevisions  # over ``repos``: one fetch per key per cycle (or TTL)
    git: HubGit  # local paths in place, URLs through ``revisions``
    jq: JqRunner
    keyring: Callable[[], Keyring]  # the master keys, loaded on each call (first use)


@contextmanager
def open_services(
    home: Path,
    *,
    resolve_ttl_s: float | None = CLI_RESOLVE_TTL_S,
    git_limiter: anyio.CapacityLimiter | None = None,
    on_fetch: FetchObserver | None = None,
) -> Iterator[Services]:
    """Open the parts of ``home``; closed in reverse order on exit.

    ``resolve_ttl_s``: how long ``revisions`` reuses a resolved SHA (None: until its
    ``new_cycle()``, which the hub calls each poll cycle). ``git_limiter`` bounds the
    threads ``revisions.sha`` resolves in; ``on_fetch`` observes each fetch (the hub's
    metrics). Chart repositories of the process use ``home``'s credentials from here on.
    """

    def keyring() -> Keyring:
        return load_keyring(home)

    with ExitStack() as stack:
        registry = open_registry(home)
        stack.callback(registry.close)
        store = open_store(home)
        stack.callback(store.close)
        repos = RepoCache(home)
        stack.callback(repos.close)
        use_repo_credentials(home)
        revisions = ResolvedRevisions(
            repos, ttl_s=resolve_ttl_s, limiter=git_limiter, on_fetch=on_fetch
        )
        git = HubGit(remote=MaterializedGit(revisions))
        stack.callback(git.close)
        jq = JqRunner()
        stack.callback(jq.close)
        yield Services(
            home=home,
            registry=registry,
            store=store,
            apps=AppStore(store),
            history=SyncHistory(store, keyring),
            repos=repos,
            revisions=revisions,
            git=git,
            jq=jq,
            keyring=keyring,
        )


__all__ = ["CLI_RESOLVE_TTL_S", "Services", "open_services"]
