"""The hub's Git access (the only module that imports ``git``).

``LocalRepoReader`` implements ``generators.git.RepoReader`` over local repositories
with GitPython. It reads trees and blobs of a commit directly from the object database
(``repo.commit(rev).tree``): nothing is checked out, the working tree is never
touched, and bare repositories work as well as clones.

A repoURL is mapped to a local path by an explicit table; a default path (the bare
``--repo PATH`` of ``hub appset generate``) serves every URL not in the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock

import git
from gitdb.exc import BadName, BadObject

from generators.git import RepoReadError, RepoTree
from hub.errors import HubError


class RepoError(RepoReadError, HubError):
    """A repository, revision or file could not be read."""


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
