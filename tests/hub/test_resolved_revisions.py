"""ResolvedRevisions: the one (repo, revision) -> SHA cache of the hub, the CLI and the API."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio
import pytest

from hub.repos import RepoError, ResolvedRevisions


class FakeRepos:
    """A ``RepoCache`` stand-in: SHAs from a table, an unreachable remote when ``down``, and
    a fetch that can be held open (``hold``) to make callers overlap."""

    def __init__(self) -> None:
        self.shas = {("r", "main"): "a" * 40, ("r", "dev"): "d" * 40, ("q", "HEAD"): "c" * 40}
        self.down = False
        self.calls: list[tuple[str, str]] = []
        self.entered = threading.Event()  # a fetch is in progress
        self.hold: threading.Event | None = None  # set: fetches wait for it

    def resolve(self, repo_url: str, revision: str) -> str:
        self.calls.append((repo_url, revision))
        self.entered.set()
        if self.hold is not None and repo_url == "r":
            assert self.hold.wait(30), "the test never released the fetch"
        if self.down:
            raise RepoError(f"{repo_url}: fetch failed: connection refused")
        return self.shas[(repo_url, revision)]

    def materialize(self, repo_url: str, sha: str) -> Path:
        return Path("/trees") / sha


def test_an_unreachable_repo_keeps_its_last_good_revision_and_counts_failures() -> None:
    repos = FakeRepos()
    revisions = ResolvedRevisions(repos, limiter=anyio.CapacityLimiter(1))

    async def body() -> None:
        assert await revisions.sha("r", "main") == "a" * 40
        assert await revisions.sha("r", "main") == "a" * 40
        assert len(repos.calls) == 1  # resolved once per cycle
        revisions.new_cycle()
        repos.down = True
        assert await revisions.sha("r", "main") == "a" * 40  # last good, not an error
        assert revisions.failures == {"r": 1} and "connection refused" in revisions.errors["r"]
        assert revisions.snapshot() == {("r", "main"): "a" * 40}
        with pytest.raises(RepoError):
            await revisions.sha("r", "other-branch")  # never resolved: nothing to fall back on
        assert revisions.failures == {"r": 2}
        revisions.new_cycle()
        repos.down = False
        repos.shas[("r", "main")] = "b" * 40
        assert await revisions.sha("r", "main") == "b" * 40
        assert revisions.failures == {} and revisions.errors == {}

    anyio.run(body)


def test_the_blocking_resolve_raises_instead_of_falling_back() -> None:
    # A source load must record the error, not read an old SHA as if it were new.
    repos = FakeRepos()
    revisions = ResolvedRevisions(repos)
    assert anyio.run(revisions.sha, "r", "main") == "a" * 40
    revisions.new_cycle()
    repos.down = True
    with pytest.raises(RepoError, match="connection refused"):
        revisions.resolve("r", "main")
    assert revisions.errors == {} and revisions.failures == {}  # the hub's backoff is sha()'s


def test_answers_last_one_cycle_and_are_shared_by_resolve_and_sha() -> None:
    repos = FakeRepos()
    revisions = ResolvedRevisions(repos)
    assert revisions.resolve("r", "main") == "a" * 40
    assert anyio.run(revisions.sha, "r", "main") == "a" * 40
    assert revisions.resolve("q", "") == revisions.resolve("q", "HEAD") == "c" * 40
    assert repos.calls == [("r", "main"), ("q", "HEAD")]
    # Only what sha() answered is the Applications' revisions: a source's repo moving
    # must not wake every worker.
    assert revisions.snapshot() == {("r", "main"): "a" * 40}
    repos.shas[("r", "main")] = "b" * 40
    assert revisions.resolve("r", "main") == "a" * 40  # same cycle: no fetch
    revisions.new_cycle()
    assert revisions.snapshot() == {}
    assert revisions.resolve("r", "main") == "b" * 40
    assert len(repos.calls) == 3


def test_a_resolve_started_in_an_old_cycle_does_not_fill_the_new_one() -> None:
    repos = FakeRepos()
    repos.hold = threading.Event()
    revisions = ResolvedRevisions(repos)
    answers: list[str] = []

    async def body() -> None:
        async with anyio.create_task_group() as tg:

            async def ask() -> None:
                answers.append(await revisions.sha("r", "main"))

            tg.start_soon(ask)
            while not repos.entered.is_set():
                await anyio.sleep(0.01)
            revisions.new_cycle()  # a poll starts while the old fetch is still running
            repos.shas[("r", "main")] = "b" * 40
            assert repos.hold is not None
            repos.hold.set()
        assert answers == ["b" * 40]  # the old call answers what its fetch found
        assert revisions.snapshot() == {}  # ... and leaves the new cycle empty
        assert await revisions.sha("r", "main") == "b" * 40
        assert len(repos.calls) == 2  # the new cycle fetched again

    anyio.run(body)


def test_concurrent_resolves_of_one_key_fetch_once_and_other_keys_do_not_wait() -> None:
    repos = FakeRepos()
    repos.hold = threading.Event()
    revisions = ResolvedRevisions(repos)
    results: list[str] = []
    arrived = threading.Semaphore(0)

    def ask() -> None:
        arrived.release()
        results.append(revisions.resolve("r", "main"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for _ in threads:
        assert arrived.acquire(timeout=30)
    assert repos.entered.wait(30)
    # Another key is answered while "r" is still being fetched.
    other = threading.Thread(target=lambda: results.append(revisions.resolve("q", "HEAD")))
    other.start()
    other.join(30)
    assert not other.is_alive(), "a resolve of another key waited behind a fetch"
    time.sleep(0.2)  # give the eight a chance to overlap (the lock must make them wait)
    repos.hold.set()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["a" * 40] * 8 + ["c" * 40]
    assert repos.calls.count(("r", "main")) == 1


def test_a_ttl_expires_answers_within_a_cycle() -> None:
    now = [1000.0]
    repos = FakeRepos()
    revisions = ResolvedRevisions(repos, ttl_s=10.0, clock=lambda: now[0])
    assert revisions.resolve("r", "main") == "a" * 40
    now[0] += 9.9
    repos.shas[("r", "main")] = "b" * 40
    assert revisions.resolve("r", "main") == "a" * 40
    assert len(repos.calls) == 1
    now[0] += 0.1  # 10 s old: fetched again
    assert revisions.resolve("r", "main") == "b" * 40
    assert len(repos.calls) == 2
    revisions.new_cycle()  # new_cycle() forgets answers a TTL would still keep
    assert revisions.resolve("r", "main") == "b" * 40
    assert len(repos.calls) == 3


def test_every_fetch_is_reported_with_its_outcome() -> None:
    now = [0.0]
    seen: list[tuple[str, float, bool]] = []
    repos = FakeRepos()

    def observe(repo_url: str, seconds: float, /, *, ok: bool) -> None:
        seen.append((repo_url, seconds, ok))

    def resolve(repo_url: str, revision: str) -> str:
        now[0] += 1.5  # the fetch takes 1.5 s on the injected clock
        return FakeRepos.resolve(repos, repo_url, revision)

    repos.resolve = resolve  # type: ignore[method-assign]
    revisions = ResolvedRevisions(repos, on_fetch=observe, clock=lambda: now[0])
    revisions.resolve("r", "main")
    revisions.resolve("r", "main")  # answered from the cycle: no fetch, nothing reported
    repos.down = True
    with pytest.raises(RepoError):
        revisions.resolve("q", "HEAD")
    assert seen == [("r", 1.5, True), ("q", 1.5, False)]
    assert revisions.materialize("r", "a" * 40) == Path("/trees") / ("a" * 40)
