"""Render an Application source directory into manifests (the only I/O of the pure core).

Three source types, chosen like Argo CD's repo-server does:

- **Helm** when the source has a ``helm`` block or is a chart (``chart:``), or the path
  holds ``Chart.yaml`` and no kustomization: ``helm template`` (``hub/sync/helm.py``).
- **Kustomize** when the path holds ``kustomization.yaml``, ``kustomization.yml`` or
  ``Kustomization``: ``kustomize build PATH`` if ``kustomize`` is on PATH, else
  ``kubectl kustomize PATH``; a clear error when neither exists; killed after a timeout.
- **Directory** otherwise: every ``*.yaml``, ``*.yml`` and ``*.json`` file, multi-document,
  ``*List`` kinds flattened, sub-directories only with ``directory.recurse``. ``include`` and
  ``exclude`` are globs in the syntax Argo CD uses (gobwas/glob without separators, so ``*``
  also matches ``/``), matched against the path relative to the source path; exclude wins.

Files are read in the order Go's ``filepath.Walk`` visits them, so output is deterministic.
Every manifest remembers its file (``apps/web.yaml#2``) for error messages. Reading Git at a
commit is another module's job: this one works on a directory.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generators import yamlio
from hub.inline import check_blocking
from hub.sync.helm import RenderContext, is_chart_dir, render_chart
from hub.sync.model import ApplicationSource, DirectorySource, RenderError
from hub.sync.resources import argo_glob_match
from hub.sync.validate import SourcedManifest

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_KUSTOMIZE_TIMEOUT_S = 90.0
# A directory walk with more files than this is left to a thread (``hub.inline``).
INLINE_MAX_FILES = 64
# A parsed file larger than this (its pickle, in bytes) is read back in a thread too.
INLINE_MAX_PICKLE = 256 * 1024
# A file not parsed before is parsed on the loop up to this size (characters; a few ms of
# PyYAML): a commit wakes every worker at once, and sent to threads, each of their first
# renders parsed the same new file again before the first parse was remembered.
INLINE_MAX_PARSE = 16 * 1024


@dataclass(frozen=True, kw_only=True)
class RenderResult:
    manifests: tuple[SourcedManifest, ...]
    tool: str  # "directory", "kustomize" or "helm"


# --------------------------------------------------------------------------- YAML loading


def _flatten(doc: Any, origin: str, out: list[SourcedManifest]) -> None:
    if isinstance(doc, dict) and str(doc.get("kind") or "").endswith("List"):
        items = doc.get("items")
        if isinstance(items, list):
            for i, item in enumerate(items):
                if not isinstance(item, dict):
                    raise RenderError(f"{origin}: items[{i}] is not a Kubernetes object")
                out.append(SourcedManifest(obj=item, origin=f"{origin} items[{i}]"))
            return
        if items is None and "spec" not in doc and "status" not in doc:
            return  # an empty List, as Argo's isNullList skips
    if not isinstance(doc, dict):
        kind = "a list" if isinstance(doc, list) else type(doc).__name__
        raise RenderError(f"{origin}: expected a Kubernetes object, got {kind}")
    out.append(SourcedManifest(obj=doc, origin=origin))


def parse_manifests(text: str, *, origin: str, is_json: bool = False) -> list[SourcedManifest]:
    """Objects from one file's text: YAML multi-document (empty documents skipped) or JSON."""
    out: list[SourcedManifest] = []
    if is_json:
        try:
            doc = yamlio.load_json(text) if text.strip() else None
        except yamlio.YamlError as exc:
            raise RenderError(f"{origin}: invalid JSON: {exc}") from exc
        if doc is not None:
            _flatten(doc, origin, out)
        return out
    try:
        # Kubernetes reading (timestamps stay strings), hardened against hostile files
        docs = yamlio.load_all(text)
    except yamlio.YamlError as exc:
        raise RenderError(f"{origin}: invalid YAML: {_one_line(str(exc))}") from exc
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        _flatten(doc, f"{origin}#{i + 1}" if len(docs) > 1 else origin, out)
    return out


class _Pickles:
    """Pickles by key, bounded by the bytes held (a key's own size counted with its
    pickle), least recently used out first; thread-safe (renders run in worker threads)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._held = 0
        self._lock = threading.Lock()
        self._entries: OrderedDict[Any, tuple[bytes, int]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Any) -> bytes | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found[0]

    def put(self, key: Any, blob: bytes, *, key_bytes: int = 0) -> None:
        size = key_bytes + len(blob)
        with self._lock:
            self.misses += 1
            if size > self.max_bytes or key in self._entries:
                return
            self._entries[key] = (blob, size)
            self._held += size
            while self._held > self.max_bytes:
                _, (_, old) = self._entries.popitem(last=False)
                self._held -= old

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._held = 0


class _Remembering:
    """What ``ParsedFiles`` and ``TreeRenders`` share: their pickles and hit counts."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._pickles = _Pickles(max_bytes)

    @property
    def hits(self) -> int:
        return self._pickles.hits

    @property
    def misses(self) -> int:
        return self._pickles.misses


class ParsedFiles(_Remembering):
    """Objects parsed from manifest files, remembered by the file's text (and origin).

    A fleet renders one path for many Applications (a clusters generator gives every
    cluster the same ``services/web``), and PyYAML in Python takes ~2 ms for a small file
    where reading back a pickle of its objects takes ~6 us. Each hit is a fresh copy, so
    no caller shares (or can change) another's objects. Bounded by the bytes held, least
    recently used out first; errors are not remembered (each render reports its own). The
    pickles are made here from parsed YAML and never leave the process."""

    def parse(self, text: str, *, origin: str, is_json: bool = False) -> list[SourcedManifest]:
        key = (text, origin, is_json)
        blob = self._pickles.get(key)
        if blob is not None:
            if len(blob) > INLINE_MAX_PICKLE:
                check_blocking("a large file")
            return [SourcedManifest(obj=obj, origin=o) for obj, o in pickle.loads(blob)]
        if len(text) > INLINE_MAX_PARSE:
            check_blocking("parsing a large file")
        manifests = parse_manifests(text, origin=origin, is_json=is_json)
        blob = pickle.dumps([(m.obj, m.origin) for m in manifests], protocol=5)
        self._pickles.put(key, blob, key_bytes=len(text))
        return manifests


#: The process's parsed files (renders run in worker threads of one hub process).
PARSED_FILES = ParsedFiles()


class TreeRenders(_Remembering):
    """Renders of a source path in a tree that never changes, remembered.

    ``hub.sync.sources`` renders from exported commits (``trees/<sha>``) and unpacked
    chart versions, whose files never change. A directory's or a kustomization's render
    depends on those files alone, and a fleet renders one path for many Applications (a
    clusters generator gives every cluster the same ``services/web``): it is worked out
    once per commit, not once per Application. That spares each further Application the
    walk and the reads, and a kustomization its ``kustomize build``. A Helm render reads
    the Application's name, namespace and cluster, so it is never kept.

    Each hit is a fresh copy, as with ``ParsedFiles``; bounded by the bytes held, least
    recently used out first; errors are not remembered."""

    def clear(self) -> None:
        """Forget every render (``bench/tree_renders.py`` compares with and without)."""
        self._pickles.clear()

    def render(
        self, tree: Path, source: ApplicationSource, render: Callable[[], RenderResult]
    ) -> RenderResult:
        """``render()``'s result for ``source`` in ``tree`` (an immutable tree: see the
        class doc), from memory when it was rendered before."""
        if source.helm is not None or source.is_chart_repo:
            return render()
        # what render_source reads of a non-Helm source: the path and directory options
        # (a kustomization is told by its file, whatever the spec declares)
        key = (str(tree), source.path.strip("/"), source.directory)
        blob = self._pickles.get(key)
        if blob is not None:
            if len(blob) > INLINE_MAX_PICKLE:
                check_blocking("a large render")
            tool, items = pickle.loads(blob)
            return RenderResult(
                manifests=tuple(SourcedManifest(obj=obj, origin=o) for obj, o in items),
                tool=tool,
            )
        result = render()
        if result.tool not in ("directory", "kustomize"):
            return result  # a path holding a chart: Helm after all
        blob = pickle.dumps(
            (result.tool, [(m.obj, m.origin) for m in result.manifests]), protocol=5
        )
        self._pickles.put(key, blob)
        return result


#: The process's renders of exported trees (``hub.sync.sources.render_app``).
TREE_RENDERS = TreeRenders()


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- globs


def glob_match(pattern: str, text: str) -> bool:
    """Does ``text`` match the Argo CD ``directory.include``/``exclude`` glob ``pattern``?"""
    try:
        return argo_glob_match(pattern, text)
    except ValueError as exc:
        # Argo logs a warning and treats the pattern as matching nothing; an include that
        # silently matches nothing would render empty, so say it loudly instead.
        raise RenderError(f"invalid glob pattern {pattern!r}: {exc}") from exc


# --------------------------------------------------------------------------- directory


def _walk(root: Path, recurse: bool) -> list[Path]:
    """Files in ``filepath.Walk`` order: lexical by name within a directory, depth first."""
    found: list[Path] = []
    # A stack of the directories being read (no recursive closure: it would be a reference
    # cycle holding every path found until a full garbage collection)
    stack = [iter(_entries(root))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        if entry.is_dir(follow_symlinks=False):
            if recurse:
                stack.append(iter(_entries(Path(entry.path))))
        else:
            found.append(Path(entry.path))
        if len(found) > INLINE_MAX_FILES:
            check_blocking("a large directory")
    return found


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        return sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        raise RenderError(f"cannot read directory {directory}: {exc}") from exc


def _check_inside(path: Path, root: Path | None, *, base: Path | None = None) -> None:
    """Refuse ``path`` when it resolves outside ``root`` (``base``: ``root`` resolved)."""
    if root is None:
        return
    resolved = path.resolve()
    base = base or root.resolve()
    if resolved != base and base not in resolved.parents:
        raise RenderError(
            f"{path}: resolves outside the repository ({resolved}); refusing to read it"
        )


def render_directory(
    path: Path, *, directory: DirectorySource | None = None, repo_root: Path | None = None
) -> RenderResult:
    """Every manifest file under ``path`` (see module docstring for the rules)."""
    directory = directory or DirectorySource()
    if not path.is_dir():
        raise RenderError(f"{path}: source path does not exist or is not a directory")
    base = repo_root.resolve() if repo_root is not None else None
    _check_inside(path, repo_root, base=base)
    label_root = repo_root if repo_root is not None else path
    manifests: list[SourcedManifest] = []
    for file in _walk(path, directory.recurse):
        name = file.name
        if not (name.endswith(MANIFEST_SUFFIXES) or name.endswith(".jsonnet")):
            continue
        rel = file.relative_to(path).as_posix()
        if directory.exclude and glob_match(directory.exclude, rel):
            continue
        if directory.include and not glob_match(directory.include, rel):
            continue
        label = _label(file, label_root)
        if name.endswith(".jsonnet"):
            raise RenderError(
                f"{label}: jsonnet is not supported yet; exclude the file "
                "(directory.exclude) or render it to YAML"
            )
        # The walk follows no directory link, so only a file that is a link itself can
        # lead outside (resolving every file was a top cost of a fleet's renders).
        if file.is_symlink():
            _check_inside(file, repo_root, base=base)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RenderError(f"{label}: cannot read: {exc}") from exc
        manifests.extend(PARSED_FILES.parse(text, origin=label, is_json=name.endswith(".json")))
    return RenderResult(manifests=tuple(manifests), tool="directory")


def _label(file: Path, root: Path) -> str:
    try:
        return file.relative_to(root).as_posix()
    except ValueError:
        return str(file)


# --------------------------------------------------------------------------- kustomize


def is_kustomization_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in KUSTOMIZATION_FILES)


def find_kustomize_command() -> list[str] | None:
    """``kustomize build`` if installed, else ``kubectl kustomize``, else None."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render_kustomize(
    path: Path,
    *,
    timeout_s: float = DEFAULT_KUSTOMIZE_TIMEOUT_S,
    command: Sequence[str] | None = None,
    repo_root: Path | None = None,
) -> RenderResult:
    """Run kustomize on ``path`` and parse its output."""
    check_blocking("kustomize")
    _check_inside(path, repo_root)
    cmd = list(command) if command else find_kustomize_command()
    label = _label(path, repo_root) if repo_root is not None else str(path)
    if not cmd:
        raise RenderError(
            f"{label}: holds a kustomization but neither `kustomize` nor `kubectl` is on PATH; "
            "install one of them"
        )
    argv = [*cmd, str(path)]
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=str(path),
        )
    except subprocess.TimeoutExpired as exc:
        raise RenderError(
            f"{label}: `{' '.join(cmd)}` did not finish within {timeout_s:g}s"
        ) from exc
    except OSError as exc:
        raise RenderError(f"{label}: cannot run `{' '.join(cmd)}`: {exc}") from exc
    if proc.returncode != 0:
        detail = _one_line(proc.stderr or proc.stdout)[:2000]
        raise RenderError(f"{label}: `{' '.join(cmd)}` failed (exit {proc.returncode}): {detail}")
    manifests = parse_manifests(proc.stdout, origin=f"{label} (kustomize)")
    return RenderResult(manifests=tuple(manifests), tool="kustomize")


# --------------------------------------------------------------------------- entry point


def render_source(
    repo_root: Path,
    source: ApplicationSource,
    *,
    kustomize_timeout_s: float = DEFAULT_KUSTOMIZE_TIMEOUT_S,
    kustomize_command: Sequence[str] | None = None,
    context: RenderContext | None = None,
) -> RenderResult:
    """Render ``source.path`` inside a checked-out tree ``repo_root`` (for a chart from a
    chart repository: ``repo_root`` is the unpacked chart and ``path`` is empty).
    ``context`` carries what Helm needs (release name, namespace, cluster capabilities)."""
    reason = source.unsupported_reason()
    if reason:
        raise RenderError(f"{source.repo_url} {source.path or '.'}: {reason}")
    rel = source.path.strip("/") or "."
    path = repo_root / rel
    if not path.is_dir():
        raise RenderError(
            f"{source.repo_url}: path {source.path or '.'!r} does not exist at revision "
            f"{source.target_revision} (nothing rendered, nothing will be pruned)"
        )
    explicit_helm = source.helm is not None or source.is_chart_repo
    if not explicit_helm and is_kustomization_dir(path):
        return render_kustomize(
            path, timeout_s=kustomize_timeout_s, command=kustomize_command, repo_root=repo_root
        )
    if explicit_helm or is_chart_dir(path):
        return render_helm(repo_root, path, source, context)
    return render_directory(path, directory=source.directory, repo_root=repo_root)


def render_helm(
    repo_root: Path, path: Path, source: ApplicationSource, context: RenderContext | None
) -> RenderResult:
    """``helm template`` of the chart at ``path``, parsed."""
    _check_inside(path, repo_root)
    label = source.chart or _label(path, repo_root)
    if source.is_chart_repo:
        label = f"{source.repo_url} chart {source.chart}"
    if not is_chart_dir(path):
        raise RenderError(f"{label}: not a Helm chart (no Chart.yaml)")
    if context is None:
        raise RenderError(f"{label}: a Helm render needs the Application's context")
    text = render_chart(path, repo_root, source, context, label=label)
    return RenderResult(
        manifests=tuple(parse_manifests(text, origin=f"{label} (helm)")), tool="helm"
    )
