"""Sources: where the hub reads the ApplicationSets, Applications and AppProjects people commit.

A source is a name, a repository (URL or local path), a directory inside it and a
revision. Loading a source resolves the revision to a commit SHA once and reads every
``.yaml``/``.yml``/``.json`` file under the directory (recursively, in path order) *at that
SHA*, so one load never mixes two commits. Every document of kind ApplicationSet,
Application or AppProject (``argoproj.io/v1alpha1``) is parsed at this boundary into typed
objects; documents of other kinds are ignored (a directory may hold other manifests).

A load is all or nothing: any bad file (YAML error, a document that is not a mapping, an
invalid ApplicationSet/Application/AppProject, two objects of one kind with one name)
makes ``SourceLoad.errors`` non-empty, each error naming the file and the document index.
The controller then keeps the last good set of that source and deletes nothing
(``hub.appsets``). The same holds when the repository or revision cannot be read.

A file that held an ApplicationSet at the last good revision and now declares none (it is
empty, holds ``foo: bar``, or its ``kind`` has a typo) is an error of that file too
(``check_set_files``): only removing the file deletes a set.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import yaml

from generators.errors import GeneratorError
from generators.git import RepoReader, RepoTree
from generators.spec import ApplicationSet, load_yaml_documents, parse_appset
from hub.errors import HubError, HubUsageError
from hub.repos import LocalRepoReader, RepoError, RepoMapping
from hub.store import Store
from hub.sync.model import Application, SyncError, parse_application
from hub.sync.projects import parse_project

API_VERSION = "argoproj.io/v1alpha1"
KINDS = ("ApplicationSet", "Application", "AppProject")
EXTENSIONS = (".yaml", ".yml", ".json")
DEFAULT_REVISION = "HEAD"

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class SourceError(HubError):
    """A source could not be added, found or read."""


# ---------------------------------------------------------------- Git access


class SourceGit(RepoReader, Protocol):
    """What loading sources and expanding git generators need from Git."""

    def resolve(self, repo_url: str, revision: str) -> str:
        """The commit SHA ``revision`` names now (raise ``RepoError`` if it cannot)."""
        ...


def local_path(repo: str) -> Path | None:
    """The local directory a plain path names, else None. ``file://`` counts as a URL
    (cloned into the repo cache), as ``RepoCache`` treats it."""
    if "://" in repo or re.match(r"^[\w.-]+@[\w.-]+:", repo):
        return None
    return Path(repo)


class HubGit:
    """``SourceGit`` for the hub: local repositories are read in place with
    ``LocalRepoReader``; remote URLs go to ``remote`` (the repo cache of a running hub),
    or fail with a message saying so when there is none."""

    def __init__(self, remote: SourceGit | None = None) -> None:
        self._remote = remote
        self._local: dict[Path, LocalRepoReader] = {}

    def close(self) -> None:
        for reader in self._local.values():
            reader.close()
        self._local.clear()

    def __enter__(self) -> HubGit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reader(self, repo_url: str) -> tuple[LocalRepoReader | SourceGit, str]:
        path = local_path(repo_url)
        if path is None:
            if self._remote is None:
                raise RepoError(
                    f"{repo_url}: remote repositories are read through the hub's repo "
                    "cache, which this command has no access to; use a local clone's path"
                )
            return self._remote, repo_url
        path = path.expanduser().resolve()
        reader = self._local.get(path)
        if reader is None:
            reader = self._local[path] = LocalRepoReader(RepoMapping(default=path))
        return reader, repo_url

    def resolve(self, repo_url: str, revision: str) -> str:
        reader, url = self._reader(repo_url)
        if isinstance(reader, LocalRepoReader):
            # LocalRepoReader has no public resolve yet; _commit is its resolution rule
            # (branch, origin/branch, tag). Switch to RepoCache.resolve once it exists.
            return str(reader._commit(url, revision).hexsha)
        return reader.resolve(url, revision)

    def list_tree(self, repo_url: str, revision: str) -> RepoTree:
        reader, url = self._reader(repo_url)
        return reader.list_tree(url, revision)

    def read_file(self, repo_url: str, revision: str, path: str) -> bytes:
        reader, url = self._reader(repo_url)
        return reader.read_file(url, revision, path)


class TreeProvider(Protocol):
    """The sync engine's view of Git (``hub.repos.RepoCache``): SHAs and exported trees."""

    def resolve(self, repo_url: str, revision: str) -> str: ...

    def materialize(self, repo_url: str, sha: str) -> Path: ...


_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


class MaterializedGit:
    """``SourceGit`` over a ``TreeProvider``: trees are read from the exported directory of
    the commit, so the sync engine and the controller share one clone and one export.

    Every read of a branch or tag resolves it, so the provider should answer from a cache
    (``hub.repos.ResolvedRevisions``): a git generator reading many files at "HEAD" must
    not fetch once per file."""

    def __init__(self, provider: TreeProvider) -> None:
        self._provider = provider

    def resolve(self, repo_url: str, revision: str) -> str:
        return self._provider.resolve(repo_url, revision)

    def _root(self, repo_url: str, revision: str) -> Path:
        sha = revision if _FULL_SHA.match(revision) else self.resolve(repo_url, revision)
        return self._provider.materialize(repo_url, sha)

    def list_tree(self, repo_url: str, revision: str) -> RepoTree:
        root = self._root(repo_url, revision)
        files: list[str] = []
        dirs: list[str] = []
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            (dirs if path.is_dir() and not path.is_symlink() else files).append(rel)
        return RepoTree(files=tuple(files), directories=tuple(dirs))

    def read_file(self, repo_url: str, revision: str, path: str) -> bytes:
        root = self._root(repo_url, revision).resolve()
        target = (root / path).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise RepoError(f"{repo_url}: no file {path!r} at {revision}")
        return target.read_bytes()


# ---------------------------------------------------------------- sources


@dataclass(frozen=True, kw_only=True)
class Source:
    name: str
    repo: str
    path: str = ""
    revision: str = DEFAULT_REVISION


@dataclass(frozen=True, kw_only=True)
class SourceRecord:
    source: Source
    created_at: datetime
    last_sha: str | None
    last_loaded_at: datetime | None
    last_error: str | None
    #: A revision held by the deletion guard (``hub source confirm`` lets it through).
    held_sha: str | None = None
    #: The held revision someone confirmed; only that exact SHA may delete past the guard.
    confirmed_sha: str | None = None
    #: Errors of single files of the newest revision (path -> message), for their sets.
    file_errors: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        s = self.source
        return {
            "name": s.name,
            "repo": s.repo,
            "path": s.path,
            "revision": s.revision,
            "lastSha": self.last_sha,
            "lastLoadedAt": None
            if self.last_loaded_at is None
            else self.last_loaded_at.isoformat(),
            "lastError": self.last_error,
            "heldSha": self.held_sha,
            "state": self.state,
        }

    @property
    def state(self) -> str:
        """``held`` (a revision waits for ``hub source confirm``), ``error``, ``ok`` or ``-``
        (never loaded)."""
        if self.held_sha is not None:
            return "held"
        if self.last_error:
            return "error"
        return "ok" if self.last_sha else "-"


def normalize_path(path: str) -> str:
    """A directory inside a repository: relative, ``/``-separated, ``''`` for the root."""
    text = path.strip().replace("\\", "/")
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
    if text.startswith("/") or ".." in parts:
        raise HubUsageError(
            f"--path {path!r}: must be a directory inside the repository (relative, no '..')"
        )
    return "/".join(parts)


def make_source(name: str, repo: str, path: str, revision: str = DEFAULT_REVISION) -> Source:
    """Validate command-line input into a ``Source`` (local paths made absolute)."""
    if not _NAME.fullmatch(name) or len(name) > 63:
        raise HubUsageError(
            f"source name {name!r}: use lower-case letters, digits and '-' (at most 63)"
        )
    if not repo:
        raise HubUsageError("--repo is required: a Git URL or a local repository path")
    local = local_path(repo)
    if local is not None:
        repo = str(local.expanduser().resolve())
    return Source(
        name=name, repo=repo, path=normalize_path(path), revision=revision or DEFAULT_REVISION
    )


class SourceStore:
    """The ``sources`` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, source: Source) -> None:
        with self.store.write() as db:
            if db.execute("SELECT 1 FROM sources WHERE name = ?", (source.name,)).fetchone():
                raise HubUsageError(
                    f"source {source.name!r} already exists; remove it first with "
                    f"`hub source rm {source.name}`"
                )
            db.execute(
                "INSERT INTO sources (name, repo, path, revision, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    source.name,
                    source.repo,
                    source.path,
                    source.revision,
                    datetime.now(UTC).isoformat(),
                ),
            )

    def list(self) -> list[SourceRecord]:
        with self.store.read() as db:
            rows = db.execute(
                "SELECT name, repo, path, revision, created_at, last_sha, last_loaded_at, "
                "last_error, held_sha, confirmed_sha, file_errors FROM sources ORDER BY name"
            ).fetchall()
        return [
            SourceRecord(
                source=Source(name=n, repo=r, path=p, revision=rev),
                created_at=datetime.fromisoformat(c),
                last_sha=sha,
                last_loaded_at=None if t is None else datetime.fromisoformat(t),
                last_error=err,
                held_sha=held,
                confirmed_sha=confirmed,
                file_errors=json.loads(files),
            )
            for n, r, p, rev, c, sha, t, err, held, confirmed, files in rows
        ]

    def get(self, name: str) -> SourceRecord:
        for record in self.list():
            if record.source.name == name:
                return record
        raise SourceError(f"source {name!r} does not exist (see `hub source list`)")

    def remove(self, name: str) -> Source:
        record = self.get(name)
        with self.store.write() as db:
            db.execute("DELETE FROM sources WHERE name = ?", (name,))
        return record.source

    def record_load(self, load: SourceLoad) -> None:
        """Remember a load: a clean one moves ``last_sha`` (and ends any hold); a failed one
        only the error and the errors of single files."""
        stamp = datetime.now(UTC).isoformat()
        with self.store.write() as db:
            if load.ok:
                db.execute(
                    "UPDATE sources SET last_sha = ?, last_loaded_at = ?, last_error = NULL, "
                    "held_sha = NULL, file_errors = '{}' WHERE name = ?",
                    (load.sha, stamp, load.source.name),
                )
            else:
                db.execute(
                    "UPDATE sources SET last_loaded_at = ?, last_error = ?, held_sha = NULL, "
                    "file_errors = ? WHERE name = ?",
                    (
                        stamp,
                        "; ".join(load.errors),
                        json.dumps(dict(load.file_errors), sort_keys=True),
                        load.source.name,
                    ),
                )

    def record_hold(self, load: SourceLoad, message: str) -> None:
        """Remember that ``load`` (clean) is held by the deletion guard: ``last_sha`` stays."""
        with self.store.write() as db:
            db.execute(
                "UPDATE sources SET last_loaded_at = ?, last_error = ?, held_sha = ?, "
                "file_errors = '{}' WHERE name = ?",
                (datetime.now(UTC).isoformat(), message, load.sha, load.source.name),
            )

    def confirm(self, name: str) -> str:
        """Let the revision held now for source ``name`` through the deletion guard; returns
        its SHA. Only that SHA is confirmed: a later revision is guarded again."""
        record = self.get(name)
        if record.held_sha is None:
            raise SourceError(
                f"source {name!r} has no held revision to confirm (see `hub source list`)"
            )
        with self.store.write() as db:
            db.execute(
                "UPDATE sources SET confirmed_sha = ? WHERE name = ? AND held_sha = ?",
                (record.held_sha, name, record.held_sha),
            )
        return record.held_sha


# ---------------------------------------------------------------- loading


@dataclass(frozen=True, kw_only=True)
class AppSetManifest:
    appset: ApplicationSet
    manifest: Mapping[str, Any]
    file: str

    @property
    def name(self) -> str:
        return self.appset.name


@dataclass(frozen=True, kw_only=True)
class AppManifest:
    app: Application
    manifest: Mapping[str, Any]
    file: str

    @property
    def name(self) -> str:
        return self.app.name


@dataclass(frozen=True, kw_only=True)
class ProjectManifest:
    name: str
    manifest: Mapping[str, Any]
    file: str


@dataclass(frozen=True, kw_only=True)
class SourceLoad:
    """Everything one source declares at one commit, or why it could not be read."""

    source: Source
    sha: str | None
    appsets: tuple[AppSetManifest, ...] = ()
    applications: tuple[AppManifest, ...] = ()
    projects: tuple[ProjectManifest, ...] = ()
    errors: tuple[str, ...] = field(default_factory=tuple)
    files: int = 0
    #: The manifest files read (paths inside the repository), in order.
    paths: tuple[str, ...] = ()
    #: What each file holds, for messages (``'empty'``, ``"kind 'ApplicationSett'"``...).
    contents: Mapping[str, str] = field(default_factory=dict)
    #: The errors of single files (path -> message), so a set can be told its file is bad.
    file_errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors and self.sha is not None


def _under(path: str, directory: str) -> bool:
    return not directory or path == directory or path.startswith(directory + "/")


def manifest_files(tree: RepoTree, directory: str) -> list[str]:
    """The manifest files under ``directory``, sorted; hidden files and dirs skipped."""
    out = []
    for path in tree.files:
        if not _under(path, directory) or not path.endswith(EXTENSIONS):
            continue
        if any(part.startswith(".") for part in path.split("/")):
            continue
        out.append(path)
    return sorted(out)


class _CleanLoads:
    """The last clean load of each source (no error of any kind), by source name: a Git
    poll that finds the source at the same SHA reads nothing again (parsing a source's
    YAML in Python took ~0.4 s per poll for ten ApplicationSets). A load with errors is
    made again every time, so a transient read error is retried and reported afresh."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loads: dict[str, SourceLoad] = {}

    def get(self, source: Source, sha: str) -> SourceLoad | None:
        with self._lock:
            load = self._loads.get(source.name)
        return load if load is not None and load.source == source and load.sha == sha else None

    def keep(self, load: SourceLoad) -> None:
        with self._lock:
            if load.errors or load.sha is None:
                self._loads.pop(load.source.name, None)
            else:
                self._loads[load.source.name] = load


_CLEAN_LOADS = _CleanLoads()


def load_source(source: Source, git: SourceGit) -> SourceLoad:
    """Read every manifest of ``source`` at the SHA its revision names now."""
    where = f"source {source.name} ({source.repo}"
    where += f" {source.path or '/'}@{source.revision})"
    try:
        sha = git.resolve(source.repo, source.revision)
    except (GeneratorError, HubError) as exc:
        return SourceLoad(source=source, sha=None, errors=(f"{where}: {exc}",))
    known = _CLEAN_LOADS.get(source, sha)
    if known is not None:
        return known
    load = _read_source(source, git, sha, where)
    _CLEAN_LOADS.keep(load)
    return load


def _read_source(source: Source, git: SourceGit, sha: str, where: str) -> SourceLoad:
    try:
        tree = git.list_tree(source.repo, sha)
    except (GeneratorError, HubError) as exc:
        return SourceLoad(source=source, sha=None, errors=(f"{where}: {exc}",))
    if source.path and source.path not in tree.directories:
        return SourceLoad(
            source=source,
            sha=sha,
            errors=(f"{where}: no directory {source.path!r} at {sha[:12]}",),
        )
    appsets: list[AppSetManifest] = []
    apps: list[AppManifest] = []
    projects: list[ProjectManifest] = []
    errors: list[str] = []
    contents: dict[str, str] = {}
    file_errors: dict[str, str] = {}
    files = manifest_files(tree, source.path)
    for path in files:
        try:
            data = git.read_file(source.repo, sha, path)
        except (GeneratorError, HubError) as exc:
            errors.append(f"{where}: {path}: {exc}")
            file_errors[path] = errors[-1]
            continue
        before = len(errors)
        contents[path] = _parse_file(path, data, sha, appsets, apps, projects, errors)
        if len(errors) > before:
            file_errors[path] = "; ".join(errors[before:])
    _check_unique(appsets, apps, projects, errors)
    return SourceLoad(
        source=source,
        sha=sha,
        appsets=tuple(appsets),
        applications=tuple(apps),
        projects=tuple(projects),
        errors=tuple(errors),
        files=len(files),
        paths=tuple(files),
        contents=contents,
        file_errors=file_errors,
    )


def check_set_files(load: SourceLoad, previous: Mapping[str, Sequence[str]]) -> SourceLoad:
    """``load`` with an error for every file that held an ApplicationSet at the last good
    revision (``previous``: file -> names of the sets stored from it) and is still there
    but declares no ApplicationSet now.

    Git history makes such a file look like a deliberate removal of the set (Argo CD would
    delete its Applications), but an emptied file, ``foo: bar`` or a typo in ``kind`` are
    mistakes far more often; removing the file (``git rm``) is the one way to delete a set.
    """
    if load.sha is None:
        return load
    present = set(load.paths)
    declaring = {a.file for a in load.appsets}
    errors: list[str] = []
    file_errors: dict[str, str] = {}
    for path in sorted(previous):
        if path not in present or path in declaring or path in load.file_errors:
            continue
        names = ", ".join(repr(n) for n in sorted(previous[path]))
        holds = load.contents.get(path, "no ApplicationSet")
        message = (
            f"{path}@{load.sha[:12]}: held ApplicationSet {names} at the last good revision "
            f"and now holds {holds}: the set is kept as it was and nothing is deleted. Fix "
            "the file; to delete the set, remove the file (git rm)"
        )
        errors.append(message)
        file_errors[path] = message
    if not errors:
        return load
    return replace(
        load,
        errors=(*load.errors, *errors),
        file_errors={**load.file_errors, **file_errors},
    )


def _parse_file(
    path: str,
    data: bytes,
    sha: str,
    appsets: list[AppSetManifest],
    apps: list[AppManifest],
    projects: list[ProjectManifest],
    errors: list[str],
) -> str:
    """Parse one file into the lists; returns what it holds, in words (for messages)."""
    at = f"{path}@{sha[:12]}"
    try:
        docs = load_yaml_documents(data)
    except yaml.YAMLError as exc:
        errors.append(f"{at}: not valid YAML: {exc}")
        return "invalid YAML"
    except (ValueError, TypeError, RecursionError, UnicodeError) as exc:
        # A loader that lets a constructor's error out (``!!int zz``) or a document nested
        # too deep: still an error of this one file, never a crash of the load.
        errors.append(f"{at}: cannot be read as YAML: {type(exc).__name__}: {exc}")
        return "invalid YAML"
    kinds: list[str] = []
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        name = f"{path}#{index}"
        if not isinstance(doc, Mapping):
            errors.append(f"{at} document {index}: must be a mapping, got {type(doc).__name__}")
            kinds.append(f"a {type(doc).__name__}")
            continue
        kind = doc.get("kind")
        kinds.append(f"kind {kind!r}" if kind is not None else "a document without kind")
        if kind not in KINDS:
            continue
        if doc.get("apiVersion") != API_VERSION:
            errors.append(
                f"{at} document {index}: {kind} must have apiVersion {API_VERSION}, "
                f"got {doc.get('apiVersion')!r}"
            )
            continue
        try:
            manifest = json.loads(json.dumps(doc))  # plain JSON data: no YAML leftovers
            if kind == "ApplicationSet":
                appset = parse_appset(doc, source=name)
                appsets.append(AppSetManifest(appset=appset, manifest=manifest, file=path))
            elif kind == "Application":
                app = parse_application(doc, source_file=name)
                apps.append(AppManifest(app=app, manifest=manifest, file=path))
            else:
                projects.append(_parse_project(doc, name, path, manifest))
        except (GeneratorError, SyncError, SourceError) as exc:
            errors.append(f"{at} document {index}: {exc}")
        except (ValueError, TypeError, RecursionError) as exc:
            errors.append(f"{at} document {index}: {kind} cannot be read: {exc}")
    if not kinds:
        return "nothing (an empty file)"
    return ", ".join(dict.fromkeys(kinds))


def _parse_project(
    doc: Mapping[str, Any], where: str, path: str, manifest: Mapping[str, Any]
) -> ProjectManifest:
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        raise SourceError(f"{where}: metadata.name is required")
    spec = doc.get("spec")
    if spec is not None and not isinstance(spec, Mapping):
        raise SourceError(f"{where}: spec must be a mapping")
    parse_project(doc, where)  # typed once here, so a stored AppProject is always readable
    return ProjectManifest(name=name, manifest=manifest, file=path)


def _check_unique(
    appsets: list[AppSetManifest],
    apps: list[AppManifest],
    projects: list[ProjectManifest],
    errors: list[str],
) -> None:
    for kind, items in (
        ("ApplicationSet", [(a.name, a.file) for a in appsets]),
        ("Application", [(a.name, a.file) for a in apps]),
        ("AppProject", [(p.name, p.file) for p in projects]),
    ):
        seen: dict[str, str] = {}
        for name, file in items:
            if name in seen:
                errors.append(f"{file}: {kind} {name!r} is also declared in {seen[name]}")
            else:
                seen[name] = file
