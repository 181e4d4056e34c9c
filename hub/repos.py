"""The hub's Git access (the only module that imports ``git``).

``LocalRepoReader`` implements ``generators.git.RepoReader`` over local repositories
with GitPython. It reads trees and blobs of a commit directly from the object database
(``repo.commit(rev).tree``): nothing is checked out, the working tree is never
touched, and bare repositories work as well as clones.

A repoURL is mapped to a local path by an explicit table; a default path (the bare
``--repo PATH`` of ``hub appset generate``) serves every URL not in the table.

``RepoCache`` serves the sync engine: it resolves revisions to SHAs (cloning URLs bare
into the hub home) and exports the tree of a SHA as files for kustomize, again without a
checkout.

``ResolvedRevisions`` is the one (repo, revision) -> SHA cache in front of ``RepoCache``
(whose ``resolve`` fetches every time): answers live for a poll cycle and/or a TTL, one
fetch per key however many callers ask at once, and the hub's Applications keep the last
good SHA of a repository that cannot be fetched.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import secrets
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock, RLock
from typing import Any, Protocol

import anyio
import anyio.to_thread
import git
from gitdb.exc import BadName, BadObject

from generators.git import RepoReadError, RepoTree
from hub.errors import HubError
from hub.inline import check_blocking
from hub.logs import redact_url_credentials

log = logging.getLogger(__name__)


class RepoError(RepoReadError, HubError):
    """A repository, revision or file could not be read.

    Its text never holds a URL's credentials (``https://user:token@host/...`` becomes
    ``https://***@host/...``): it is shown by the CLI and the API and kept in conditions.
    """

    def __init__(self, message: str) -> None:
        super().__init__(redact_url_credentials(message))


@dataclass(frozen=True, kw_only=True)
class RepoMapping:
    """Which local repository serves which repoURL."""

    by_url: Mapping[str, Path] = field(default_factory=dict)
    default: Path | None = None

    def path_for(self, repo_url: str) -> Path:
        path = self.by_url.get(repo_url) or self.by_url.get(_normalize_url(repo_url))
        if path is None:
            path = self.default
        if path is None:
            known = ", ".join(sorted(self.by_url)) or "none"
            raise RepoError(
                f"no local repository for {repo_url} (mapped: {known}); pass --repo {repo_url}=PATH"
            )
        return path


def _normalize_url(url: str) -> str:
    url = url.rstrip("/")
    return url[:-4] if url.endswith(".git") else url


class LocalRepoReader:
    """``RepoReader`` over local Git repositories, reading objects without a checkout."""

    def __init__(self, mapping: RepoMapping) -> None:
        self._mapping = RepoMapping(
            by_url={**{_normalize_url(k): v for k, v in mapping.by_url.items()}, **mapping.by_url},
            default=mapping.default,
        )
        self._repos: dict[Path, git.Repo] = {}
        self._trees: dict[tuple[str, str], RepoTree] = {}
        self._lock = Lock()

    def close(self) -> None:
        with self._lock:
            for repo in self._repos.values():
                repo.close()
            self._repos.clear()
            self._trees.clear()

    def __enter__(self) -> LocalRepoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _repo(self, repo_url: str) -> git.Repo:
        path = self._mapping.path_for(repo_url)
        with self._lock:
            repo = self._repos.get(path)
            if repo is None:
                try:
                    repo = git.Repo(path)
                except git.NoSuchPathError:
                    raise RepoError(f"{repo_url}: local path {path} does not exist") from None
                except git.InvalidGitRepositoryError:
                    raise RepoError(f"{repo_url}: {path} is not a Git repository") from None
                self._repos[path] = repo
            return repo

    def _commit(self, repo_url: str, revision: str) -> git.Commit:
        repo = self._repo(repo_url)
        candidates = [revision or "HEAD"]
        if revision and revision != "HEAD":
            # A clone has the branches of its origin as remote-tracking refs only.
            candidates += [f"origin/{revision}", f"refs/tags/{revision}"]
        for candidate in candidates:
            try:
                return repo.commit(candidate)
            except (BadName, BadObject, ValueError, git.GitCommandError):
                continue
        raise RepoError(f"{repo_url}: revision {revision!r} not found in {repo.git_dir}")

    def list_tree(self, repo_url: str, revision: str) -> RepoTree:
        commit = self._commit(repo_url, revision)
        key = (str(self._mapping.path_for(repo_url)), commit.hexsha)
        with self._lock:
            cached = self._trees.get(key)
        if cached is not None:
            return cached
        files: list[str] = []
        directories: list[str] = []
        for item in commit.tree.traverse():
            assert isinstance(item, git.Blob | git.Tree | git.Submodule)
            if item.type == "tree":
                directories.append(str(item.path))
            elif item.type == "submodule":
                # A submodule is a directory in a checkout (Argo CD checks them out).
                directories.append(str(item.path))
            else:
                files.append(str(item.path))
        tree = RepoTree(files=tuple(sorted(files)), directories=tuple(sorted(directories)))
        with self._lock:
            self._trees[key] = tree
        return tree

    def read_file(self, repo_url: str, revision: str, path: str) -> bytes:
        commit = self._commit(repo_url, revision)
        try:
            blob = commit.tree / path
        except KeyError:
            raise RepoError(f"{repo_url}: no file {path!r} at {revision}") from None
        if blob.type != "blob":
            raise RepoError(f"{repo_url}: {path!r} at {revision} is not a file")
        data: bytes = blob.data_stream.read()
        return data


# ---------------------------------------------------------------- the sync engine's cache

DEFAULT_TREE_CACHE_BYTES = 512 * 1024 * 1024
DEFAULT_TREE_CACHE_AGE_S = 7 * 24 * 3600.0
# How stale the mark of a tree's use may be: far below any age clean() removes at.
TREE_TOUCH_INTERVAL_S = 60.0
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


def _is_local(repo_url: str) -> Path | None:
    """A repoURL that is a plain directory path, else None (``file://`` is a URL: cloned,
    so tests and local mirrors exercise the same path as remote repositories)."""
    if "://" in repo_url or re.match(r"^[\w.-]+@[\w.-]+:", repo_url):
        return None  # https://, ssh://, git@host:path
    return Path(repo_url).expanduser()


class RepoCache:
    """Sources for the sync engine: revisions resolved to SHAs, trees exported by SHA.

    - A local path is opened directly; a URL is cloned once, bare, into
      ``ROOT/repos/<hash of the URL>`` and fetched on each ``resolve``.
    - ``materialize(repo, sha)`` writes the tree of that commit to ``ROOT/trees/<sha>``
      from the object database (blobs written one by one; symlinks and the executable bit
      kept; submodules left empty): no working tree of the repository is ever checked out
      or touched. Kustomize needs real files, which is why this exists. Trees are reused
      across syncs and removed by ``clean`` once older than ``max_age_s`` or beyond
      ``max_bytes`` in total (least recently used first).

    Thread-safe (Git access is serialised: GitPython's ``Repo`` is not thread-safe); one per
    process (per hub home) is enough.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int = DEFAULT_TREE_CACHE_BYTES,
        max_age_s: float = DEFAULT_TREE_CACHE_AGE_S,
        credentials: Callable[[str], Any] | None = None,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._lock = RLock()  # GitPython's Repo is not thread-safe: one at a time
        self._repos: dict[str, git.Repo] = {}
        # ``hub repo add`` credentials of the hub home ``root`` (HTTPS Git), unless given
        self._credentials = credentials
        # sha -> (its tree's path, when this process last marked it used). Every render of
        # every Application asks for its tree: one Path object per tree keeps the render
        # caches' keys cheap to hash, and the mark (a utime) need not be made every time.
        self._materialized: dict[str, tuple[Path, float]] = {}

    def _git_env(self, repo_url: str) -> dict[str, str]:
        """Environment for clone and fetch: no prompts; for an http(s) URL with stored
        credentials, an ``Authorization`` header scoped to that URL through
        ``GIT_CONFIG_*`` (never on the command line, so never in an error message)."""
        env = {"GIT_TERMINAL_PROMPT": "0"}
        if not repo_url.startswith(("http://", "https://")):
            return env
        lookup = self._credentials
        if lookup is None:
            from hub.repo_credentials import home_credentials  # the store is not needed before

            lookup = home_credentials(self.root)
        creds = lookup(repo_url)
        if creds is not None:
            token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            env.update(
                {
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": f"http.{repo_url}.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: Basic {token}",
                }
            )
        return env

    def close(self) -> None:
        with self._lock:
            for repo in self._repos.values():
                repo.close()
            self._repos.clear()

    def __enter__(self) -> RepoCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _clone_dir(self, repo_url: str) -> Path:
        digest = hashlib.sha256(_normalize_url(repo_url).encode()).hexdigest()[:16]
        return self.root / "repos" / digest

    def _open(self, repo_url: str, *, fetch: bool) -> git.Repo:
        local = _is_local(repo_url)
        with self._lock:
            repo = self._repos.get(repo_url)
            if repo is None:
                repo, cloned = self._open_new(repo_url, local)
                self._repos[repo_url] = repo
                # A clone made just now is current; one an earlier process left is not.
                fetch = fetch and not cloned
            if fetch and local is None:
                try:
                    repo.git.fetch(
                        "--prune", "--tags", "--force", "origin", env=self._git_env(repo_url)
                    )
                except git.GitCommandError as exc:
                    raise RepoError(f"{repo_url}: fetch failed: {_git_detail(exc)}") from None
            return repo

    def _open_new(self, repo_url: str, local: Path | None) -> tuple[git.Repo, bool]:
        """The repository and whether this call cloned it."""
        if local is not None:
            try:
                return git.Repo(local), False
            except git.NoSuchPathError:
                raise RepoError(f"{repo_url}: no such directory") from None
            except git.InvalidGitRepositoryError:
                raise RepoError(f"{repo_url}: not a Git repository") from None
        target = self._clone_dir(repo_url)
        if (target / "HEAD").exists():
            return git.Repo(target), False
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + f".tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            repo = git.Repo.clone_from(
                repo_url, tmp, bare=True, mirror=True, env=self._git_env(repo_url)
            )
            repo.close()
            os.replace(tmp, target)
        except git.GitCommandError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RepoError(f"{repo_url}: clone failed: {_git_detail(exc)}") from None
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not (target / "HEAD").exists():  # another process won the race: use theirs
                raise
            return git.Repo(target), False
        return git.Repo(target), True

    def resolve(self, repo_url: str, revision: str) -> str:
        """The commit SHA ``revision`` (branch, tag, ``HEAD``, SHA) names now."""
        rev = revision or "HEAD"
        check_blocking("git resolve")
        with self._lock:
            repo = self._open(repo_url, fetch=not _SHA_RE.match(rev))
            candidates = [rev]
            if rev != "HEAD":
                candidates += [f"refs/heads/{rev}", f"refs/tags/{rev}", f"origin/{rev}"]
            for candidate in candidates:
                try:
                    return str(repo.commit(candidate).hexsha)
                except (BadName, BadObject, ValueError, git.GitCommandError):
                    continue
        raise RepoError(f"{repo_url}: revision {rev!r} not found")

    def materialize(self, repo_url: str, sha: str) -> Path:
        """The tree of commit ``sha`` as files under ``ROOT/trees/<sha>`` (reused if there)."""
        if not _SHA_RE.match(sha):
            raise RepoError(f"{repo_url}: materialize needs a full commit SHA, got {sha!r}")
        known = self._materialized.get(sha)
        target = known[0] if known is not None else self.root / "trees" / sha
        if target.is_dir():  # still there: clean() (of any process on this home) may remove it
            now = time.monotonic()
            if known is None or now - known[1] >= TREE_TOUCH_INTERVAL_S:
                os.utime(target)  # recently used: kept by clean()
                self._materialized[sha] = (target, now)
            return target
        check_blocking("git export")
        with self._lock:
            target = self._export(repo_url, sha, target)
        self._materialized[sha] = (target, time.monotonic())  # just written: as good as marked
        return target

    def _export(self, repo_url: str, sha: str, target: Path) -> Path:
        if target.is_dir():  # exported by another thread while we waited
            return target
        repo = self._open(repo_url, fetch=False)
        try:
            commit = repo.commit(sha)
        except (BadName, BadObject, ValueError, git.GitCommandError):
            raise RepoError(f"{repo_url}: commit {sha} not found") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{sha}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        tmp.mkdir()
        try:
            _export_tree(commit.tree, tmp)
            try:
                os.replace(tmp, target)
            except OSError:
                if not target.is_dir():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # exported concurrently: same content
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    def clean(self, *, now: float | None = None) -> int:
        """Remove exported trees past ``max_age_s``, then the least recently used ones
        until the rest fit in ``max_bytes``. Returns how many were removed."""
        trees = self.root / "trees"
        if not trees.is_dir():
            return 0
        current = time.time() if now is None else now
        entries = []
        for entry in trees.iterdir():
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            entries.append((entry.stat().st_mtime, _tree_size(entry), entry))
        entries.sort()
        total = sum(size for _, size, _ in entries)
        removed = 0
        for mtime, size, path in entries:
            if current - mtime > self.max_age_s or total > self.max_bytes:
                shutil.rmtree(path, ignore_errors=True)
                self._materialized.pop(path.name, None)
                total -= size
                removed += 1
        return removed


def _export_tree(tree: git.Tree, dest: Path) -> None:
    for item in tree.traverse():
        assert isinstance(item, git.Blob | git.Tree | git.Submodule)
        path = dest / str(item.path)
        if item.type == "tree" or item.type == "submodule":
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        data: bytes = item.data_stream.read()
        if item.mode == 0o120000:
            os.symlink(data.decode("utf-8", "surrogateescape"), path)
            continue
        path.write_bytes(data)
        if item.mode & 0o111:
            path.chmod(0o755)


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def _git_detail(exc: git.GitCommandError) -> str:
    """Git's complaint, one line, without the credentials of any URL it quotes."""
    text = redact_url_credentials(str(exc.stderr or exc).strip().replace("\n", " "))
    return text[:500]


# ---------------------------------------------------------------- resolved revisions


class TreeSource(Protocol):
    """What ``ResolvedRevisions`` caches in front of (``RepoCache``)."""

    def resolve(self, repo_url: str, revision: str) -> str: ...

    def materialize(self, repo_url: str, sha: str) -> Path: ...


class FetchObserver(Protocol):
    """Told of every fetch ``ResolvedRevisions`` makes (``Metrics.observe_git_fetch``;
    passed in rather than imported so that this module needs no metrics library)."""

    def __call__(self, repo_url: str, seconds: float, /, *, ok: bool) -> None: ...


_Key = tuple[str, str]  # (repo URL, revision; "" is "HEAD")
KNOWN_SHAS = 4096  # (repo, SHA) pairs ResolvedRevisions remembers as resolved


class _Cycle:
    """One poll cycle's answers. ``new_cycle`` replaces the object, and every call keeps
    the one it started in, so a resolve that outlives its cycle fills only that cycle."""

    def __init__(self) -> None:
        self.fetched: dict[_Key, tuple[float, str]] = {}  # -> (when asked, SHA)
        # What ``sha()`` answered (a fresh SHA or the last good one): the revisions the
        # Applications run at, which the hub compares between cycles (``snapshot``).
        self.served: dict[_Key, tuple[float, str]] = {}


class ResolvedRevisions:
    """(repo, revision) -> SHA through ``source`` (``RepoCache``), fetched once per cycle.

    ``RepoCache.resolve`` fetches on every call, so an answer is kept until ``new_cycle()``
    (the hub calls it for each Git poll or webhook, and when its leader published moved
    revisions) or, with ``ttl_s``, until it is that old (the CLI and the API, which have
    no poll cycle: a git generator reading many files at "HEAD" must not fetch once per
    file). Sources, git generators, Applications and the sync engine of one hub share one
    instance, hence one fetch per key per cycle.

    - ``resolve``: blocking; a lock per key makes concurrent callers of one key wait for
      one fetch (other keys do not wait: ``RepoCache`` serialises the Git work itself).
      Errors raise (a source load records them; it must not read an old SHA as new).
    - ``sha``: for the event loop, ``resolve`` in a thread under ``limiter``. A repository
      that cannot be fetched answers its last good SHA for that key (the Applications
      keep running what they ran) and is recorded in ``errors`` and ``failures`` (the hub
      retries with backoff) until a fetch of it succeeds; with no good SHA yet it raises.
    - ``materialize`` goes straight to ``source``, so reading an exported tree never waits
      behind a fetch.
    """

    def __init__(
        self,
        source: TreeSource,
        *,
        ttl_s: float | None = None,
        limiter: anyio.CapacityLimiter | None = None,
        on_fetch: FetchObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._limiter = limiter
        self._on_fetch = on_fetch
        self._clock = clock
        self._cycle = _Cycle()
        self._good: dict[_Key, str] = {}  # per key, the last SHA sha() resolved (no error)
        # (repo, SHA) pairs a resolve answered: asked for by SHA (a render of a revision
        # this hub resolved), they need no Git work, whatever the cycle. Bounded, oldest out.
        self._known: OrderedDict[_Key, None] = OrderedDict()
        self._locks: dict[_Key, Lock] = {}
        self._mutex = Lock()  # guards _locks and the cycles' dicts (threads and the loop)
        self.errors: dict[str, str] = {}  # repo -> its last fetch error (sha() only)
        self.failures: dict[str, int] = {}  # repo -> failed fetches in a row (sha() only)

    def new_cycle(self) -> None:
        """Forget this cycle's answers: the next ask of each key fetches."""
        with self._mutex:
            self._cycle = _Cycle()

    def _fresh(self, answers: dict[_Key, tuple[float, str]], key: _Key) -> str | None:
        with self._mutex:
            found = answers.get(key)
        if found is None:
            return None
        asked, sha = found
        if self._ttl_s is not None and self._clock() - asked >= self._ttl_s:
            return None
        return sha

    def resolve(self, repo_url: str, revision: str) -> str:
        """The SHA ``revision`` names, fetched at most once per cycle (and TTL)."""
        key = (repo_url, revision or "HEAD")
        with self._mutex:
            cycle = self._cycle
        return self._resolve(cycle, key)

    def _resolve(self, cycle: _Cycle, key: _Key) -> str:
        found = self._fresh(cycle.fetched, key)
        if found is not None:
            return found
        with self._mutex:
            if key in self._known:
                self._known.move_to_end(key)
                return key[1]
        check_blocking("git resolve")  # before the key's lock: a fetch may hold it
        with self._mutex:
            lock = self._locks.setdefault(key, Lock())
        with lock:
            found = self._fresh(cycle.fetched, key)  # fetched while this call waited
            if found is not None:
                return found
            asked = self._clock()
            try:
                sha = self._source.resolve(*key)
            except HubError:
                if self._on_fetch is not None:
                    self._on_fetch(key[0], self._clock() - asked, ok=False)
                raise
            if self._on_fetch is not None:
                self._on_fetch(key[0], self._clock() - asked, ok=True)
            with self._mutex:
                cycle.fetched[key] = (asked, sha)
                self._known[(key[0], sha)] = None
                self._known.move_to_end((key[0], sha))
                while len(self._known) > KNOWN_SHAS:
                    self._known.popitem(last=False)
            return sha

    async def sha(self, repo_url: str, revision: str) -> str:
        """``resolve`` for the event loop, falling back to the last good SHA on errors."""
        key = (repo_url, revision or "HEAD")
        with self._mutex:
            cycle = self._cycle
        found = self._fresh(cycle.served, key)
        if found is not None:
            return found
        asked = self._clock()
        try:
            # fetched in this cycle (by a source load or a render): no thread needed
            fetched = self._fresh(cycle.fetched, key)
            if fetched is not None:
                sha = fetched
            else:
                sha = await anyio.to_thread.run_sync(
                    self._resolve, cycle, key, limiter=self._limiter
                )
        except HubError as exc:
            self.errors[repo_url] = str(exc)
            self.failures[repo_url] = self.failures.get(repo_url, 0) + 1
            good = self._good.get(key)
            if good is None:
                raise
            log.warning("%s: %s; keeping the last good revision %s", repo_url, exc, good[:12])
            sha = good
        else:
            self.errors.pop(repo_url, None)
            self.failures.pop(repo_url, None)
            self._good[key] = sha
        with self._mutex:
            cycle.served[key] = (asked, sha)
        return sha

    def snapshot(self) -> dict[_Key, str]:
        """What ``sha()`` answered in this cycle (the hub wakes its workers when it moves)."""
        with self._mutex:
            return {key: sha for key, (_, sha) in self._cycle.served.items()}

    def materialize(self, repo_url: str, sha: str) -> Path:
        return self._source.materialize(repo_url, sha)
