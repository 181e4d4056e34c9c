"""The git generator: ``directories`` and ``files`` of a repository at a revision.

Git access goes through ``RepoReader``, given at construction; the generator itself
does no I/O of its own. Semantics follow Argo CD on a real repository:

directories
    Every directory of the tree (intermediate parents too: ``p1`` and ``p1/app``),
    hidden ones (a segment starting with ``.``) skipped with everything below them,
    in the order a directory walk visits them. A directory is kept when some
    non-exclude item matches it with Go's ``path.Match`` (``*`` and ``?`` never cross
    ``/``) and no ``exclude: true`` item does; exclude always wins, item order is
    irrelevant. Params: ``path``, ``path.basename``, ``path.basenameNormalized``,
    ``path[i]`` (go: ``path: {path, basename, basenameNormalized, segments}``).

files
    Include items are globbed and their results unioned, then files matched by any
    exclude item are removed; files are processed in sorted path order. Default
    globbing is ``git ls-files`` pathspec matching (``*`` crosses ``/``, a literal path
    also matches everything below it); with ``new_git_file_globbing`` it is doublestar
    (``*`` one segment, ``**`` any number of segments, ``{a,b}``). Each file holds a
    YAML/JSON object or a list of objects (one param set each); an empty file or an
    empty list gives one set with only the path params, as in Argo CD.
    fast mode flattens with dots and Go's ``%v``; go mode keeps the nesting. Path
    params (``path`` = the file's directory, ``path.filename``...) are written after
    the file's keys.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import re2

from generators.base import GenerateContext
from generators.clusters import append_values
from generators.errors import GeneratorError
from generators.params import Params, copy_params, flatten_to_strings, json_numbers, sanitize_name
from generators.spec import (
    AppTemplate,
    GeneratorSpec,
    GitGeneratorSpec,
    GitPathItem,
    load_first_yaml_document,
)
from generators.yamlio import YamlError


class RepoReadError(GeneratorError):
    """A ``RepoReader`` could not read a repository, revision or file."""


@dataclass(frozen=True, kw_only=True)
class RepoTree:
    """Every path of a repository at one revision, ``/``-separated, no leading ``/``.

    ``directories`` includes hidden ones; the generator decides what to skip.
    """

    files: tuple[str, ...]
    directories: tuple[str, ...]


class RepoReader(Protocol):
    """Read-only access to Git repositories. Raise ``RepoReadError`` on failure."""

    def list_tree(self, repo_url: str, revision: str) -> RepoTree:
        """All files and directories of ``repo_url`` at ``revision``."""
        ...

    def read_file(self, repo_url: str, revision: str, path: str) -> bytes:
        """The content of one file at ``revision``."""
        ...


# --------------------------------------------------------------------------- globs


class GlobError(GeneratorError):
    """A glob pattern is malformed."""


def _class_to_regex(
    pattern: str, i: int, *, negations: str, allow_slash: bool, strict: bool = False
) -> tuple[str, int]:
    """Translate ``[...]`` starting at ``pattern[i] == '['``; returns (regex, next index).

    Raises ``GlobError`` for a malformed class (Go's ErrBadPattern). ``strict`` is Go's
    ``path.Match``, where an unescaped ``-`` or ``]`` may not stand for itself.
    """
    i += 1
    negate = False
    if i < len(pattern) and pattern[i] in negations:
        negate = True
        i += 1
    parts: list[str] = []
    first = True
    while True:
        if i >= len(pattern):
            raise GlobError("unterminated character class")
        ch = pattern[i]
        if ch == "]" and not first:
            i += 1
            break
        first = False
        if pattern.startswith("[:", i) and negations == "!^":
            end = pattern.find(":]", i + 2)
            if end > 0:
                name = pattern[i + 2 : end]
                posix = _POSIX_CLASSES.get(name)
                if posix is None:
                    raise GlobError(f"unknown character class [:{name}:]")
                parts.append(posix)
                i = end + 2
                continue
        lo, i = _class_char(pattern, i, strict)
        is_range = i < len(pattern) and pattern[i] == "-"
        if is_range and not strict:
            is_range = i + 1 < len(pattern) and pattern[i + 1] != "]"
        if is_range:
            if i + 1 >= len(pattern):
                raise GlobError("unterminated character class")
            hi, i = _class_char(pattern, i + 1, strict)
            if hi < lo:
                raise GlobError(f"bad range {lo}-{hi}")
            parts.append(f"{re2.escape(lo)}-{re2.escape(hi)}")
        else:
            parts.append(re2.escape(lo))
    body = "".join(parts)
    if negate:
        return (f"[^{body}]" if allow_slash else f"[^/{body}]"), i
    return f"[{body}]", i


def _class_char(pattern: str, i: int, strict: bool = False) -> tuple[str, int]:
    ch = pattern[i]
    if strict and ch in "-]":
        raise GlobError(f"unescaped {ch!r} in character class")
    if ch == "\\":
        if i + 1 >= len(pattern):
            raise GlobError("trailing backslash in character class")
        return pattern[i + 1], i + 2
    return ch, i + 1


# Globs become RE2 regexes, not Python ``re`` ones: ``*a*a*a*a*a*a*a*a*a*a*b`` against a
# long file name backtracked for minutes; RE2 is linear in the name.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.dot_nl = True  # a file name may hold a newline; ``*`` matches it as in Go
_RE2_OPTIONS.log_errors = False


def _compile(regex: str) -> Any:
    try:
        return re2.compile(regex, options=_RE2_OPTIONS)
    except re2.error as exc:
        raise GlobError(f"pattern cannot be compiled: {exc}") from None


_POSIX_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}


@lru_cache(maxsize=1024)
def path_match_regex(pattern: str) -> Any:
    """Go's ``path.Match`` as a regex: ``*``/``?`` stop at ``/``, ``[^...]`` classes."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            regex, i = _class_to_regex(pattern, i, negations="^", allow_slash=True, strict=True)
            out.append(regex)
        elif ch == "\\":
            if i + 1 >= len(pattern):
                raise GlobError("trailing backslash")
            out.append(re2.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re2.escape(ch))
            i += 1
    return _compile("".join(out))


def path_match(pattern: str, name: str) -> bool:
    """Go's ``path.Match(pattern, name)``; ``GlobError`` for a bad pattern."""
    return path_match_regex(pattern).fullmatch(name) is not None


_WILDCARDS = re.compile(r"[*?\[\\]")


@lru_cache(maxsize=1024)
def _pathspec_regex(pattern: str) -> Any:
    """git's wildmatch without WM_PATHNAME: ``*`` and ``?`` cross ``/``."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            while i < len(pattern) and pattern[i] == "*":
                i += 1
            out.append(".*")
        elif ch == "?":
            out.append(".")
            i += 1
        elif ch == "[":
            try:
                regex, i = _class_to_regex(pattern, i, negations="!^", allow_slash=True)
            except GlobError:
                return None  # wildmatch aborts: the pattern matches nothing
            out.append(regex)
        elif ch == "\\" and i + 1 < len(pattern):
            out.append(re2.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re2.escape(ch))
            i += 1
    return _compile("".join(out))


def pathspec_match(pattern: str, name: str) -> bool:
    """Whether ``git ls-files -- <pattern>`` lists file ``name`` (default pathspec magic)."""
    if pattern.startswith("./"):
        pattern = pattern[2:]
    if pattern in ("", "."):
        return True
    # A pathspec matches a path literally, or as a leading directory of it.
    if name == pattern or (
        name.startswith(pattern) and (pattern.endswith("/") or name[len(pattern)] == "/")
    ):
        return True
    if not _WILDCARDS.search(pattern):
        return False
    regex = _pathspec_regex(pattern)
    return regex is not None and regex.fullmatch(name) is not None


@lru_cache(maxsize=1024)
def _doublestar_regex(pattern: str) -> Any:
    def translate(segment_pattern: str, i: int, stop: str) -> tuple[str, int]:
        out: list[str] = []
        while i < len(segment_pattern):
            ch = segment_pattern[i]
            if ch in stop:
                break
            if ch == "*":
                at_start = i == 0 or segment_pattern[i - 1] == "/"
                if segment_pattern.startswith("**", i):
                    end = i + 2
                    at_end = end == len(segment_pattern) or segment_pattern[end] == "/"
                    if at_start and at_end:
                        if end < len(segment_pattern):  # "**/": zero or more directories
                            out.append("(?:[^/]*/)*")
                            i = end + 1
                        else:  # trailing "**": anything below, or nothing
                            if out and out[-1] == "/":
                                out[-1] = "(?:/.*)?"
                            else:
                                out.append(".*")
                            i = end
                        continue
                    while i < len(segment_pattern) and segment_pattern[i] == "*":
                        i += 1
                    out.append("[^/]*")
                    continue
                out.append("[^/]*")
                i += 1
            elif ch == "?":
                out.append("[^/]")
                i += 1
            elif ch == "[":
                regex, i = _class_to_regex(segment_pattern, i, negations="!^", allow_slash=False)
                out.append(regex)
            elif ch == "{":
                alternatives: list[str] = []
                i += 1
                while True:
                    alt, i = translate(segment_pattern, i, ",}")
                    alternatives.append(alt)
                    if i >= len(segment_pattern):
                        raise GlobError("unterminated {")
                    if segment_pattern[i] == "}":
                        i += 1
                        break
                    i += 1
                out.append("(?:" + "|".join(alternatives) + ")")
            elif ch == "\\":
                if i + 1 >= len(segment_pattern):
                    raise GlobError("trailing backslash")
                out.append(re2.escape(segment_pattern[i + 1]))
                i += 2
            elif ch == "/":
                out.append("/")
                i += 1
            else:
                out.append(re2.escape(ch))
                i += 1
        return "".join(out), i

    regex, end = translate(pattern, 0, "")
    if end != len(pattern):
        raise GlobError(f"unexpected {pattern[end]!r}")
    return _compile(regex)


def doublestar_match(pattern: str, name: str) -> bool:
    """bmatcuk/doublestar ``Match``: ``*`` one segment, ``**`` any depth, ``{a,b}``."""
    return _doublestar_regex(pattern).fullmatch(name) is not None


# --------------------------------------------------------------------------- generator


def visible_directories(tree: RepoTree) -> list[str]:
    """The directories Argo CD's repo server reports: no hidden ones, walk order."""
    keep = [d for d in tree.directories if d and not any(s.startswith(".") for s in d.split("/"))]
    return sorted(set(keep), key=lambda d: d.split("/"))


class GitGenerator:
    key = "git"

    def __init__(self, reader: RepoReader | None, *, new_git_file_globbing: bool = False) -> None:
        self._reader = reader
        self._doublestar = new_git_file_globbing
        # A matrix runs this generator once per first-child set, usually over the same
        # tree: remember which directories the same items selected from the same tree.
        self._selected: dict[tuple[int, tuple[GitPathItem, ...]], tuple[RepoTree, list[str]]] = {}
        self._path_cache: dict[tuple[str, str, bool], Params] = {}

    def template(self, entry: GeneratorSpec) -> AppTemplate:
        assert entry.git is not None
        return entry.git.template

    def generate(self, entry: GeneratorSpec, ctx: GenerateContext) -> list[Params]:
        spec = entry.git
        assert spec is not None
        if self._reader is None:
            raise GeneratorError(
                f"{spec.path}: no Git access for {spec.repo_url} "
                "(with `hub appset generate`, pass --repo URL=PATH or --repo PATH)"
            )
        try:
            tree = self._reader.list_tree(spec.repo_url, spec.revision)
        except RepoReadError as exc:
            raise GeneratorError(f"{spec.path}: {exc}") from None
        if spec.directories:
            return self._directories(spec, tree, ctx)
        return self._files(spec, tree, ctx)

    def _directories(
        self, spec: GitGeneratorSpec, tree: RepoTree, ctx: GenerateContext
    ) -> list[Params]:
        out = []
        for directory in self._select_directories(spec, tree):
            key = (directory, spec.path_param_prefix, ctx.mode.go)
            base = self._path_cache.get(key)
            if base is None:
                base = self._path_cache[key] = _path_params(
                    directory, spec.path_param_prefix, ctx, filename=None
                )
            params = copy_params(base) if ctx.mode.go else dict(base)
            append_values(params, spec.values, ctx, spec.path)
            out.append(params)
        return out

    def _select_directories(self, spec: GitGeneratorSpec, tree: RepoTree) -> list[str]:
        key = (id(tree), spec.directories)
        cached = self._selected.get(key)
        if cached is not None and cached[0] is tree:
            return cached[1]
        items = []
        for i, item in enumerate(spec.directories):
            try:
                items.append((path_match_regex(item.path), item.exclude))
            except GlobError as exc:
                raise GeneratorError(
                    f"{spec.path}.directories[{i}].path: bad glob {item.path!r}: {exc}"
                ) from None
        selected = []
        for directory in visible_directories(tree):
            include = exclude = False
            for regex, is_exclude in items:
                if regex.fullmatch(directory):
                    if is_exclude:
                        exclude = True
                    else:
                        include = True
            if include and not exclude:
                selected.append(directory)
        self._selected[key] = (tree, selected)
        return selected

    def _files(self, spec: GitGeneratorSpec, tree: RepoTree, ctx: GenerateContext) -> list[Params]:
        matcher = doublestar_match if self._doublestar else pathspec_match
        selected: set[str] = set()
        for i, item in enumerate(spec.files):
            try:
                hits = {f for f in tree.files if matcher(item.path, f)}
            except GlobError as exc:
                raise GeneratorError(
                    f"{spec.path}.files[{i}].path: bad glob {item.path!r}: {exc}"
                ) from None
            if not item.exclude:
                selected |= hits
        for item in spec.files:
            if item.exclude:
                selected -= {f for f in selected if matcher(item.path, f)}
        assert self._reader is not None
        out: list[Params] = []
        for path in sorted(selected):
            try:
                content = self._reader.read_file(spec.repo_url, spec.revision, path)
            except RepoReadError as exc:
                raise GeneratorError(f"{spec.path}: {exc}") from None
            objects = _parse_file(content, path, spec.repo_url, spec.path)
            for obj in objects:
                params = json_numbers(copy_params(obj)) if ctx.mode.go else flatten_to_strings(obj)
                params.update(
                    _path_params(
                        posixpath.dirname(path) or ".",
                        spec.path_param_prefix,
                        ctx,
                        filename=posixpath.basename(path),
                    )
                )
                append_values(params, spec.values, ctx, spec.path)
                out.append(params)
        return out


def _parse_file(content: bytes, path: str, repo_url: str, where: str) -> list[Mapping[str, Any]]:
    try:
        # Like sigs.k8s.io/yaml, only the first document counts (the rest is not parsed).
        data = load_first_yaml_document(content)
    except (YamlError, UnicodeDecodeError) as exc:
        raise GeneratorError(
            f"{where}: unable to parse file {path!r} of {repo_url}: {exc}"
        ) from None
    if data is None:
        return [{}]
    if isinstance(data, Mapping):
        return [data]
    if isinstance(data, list) and all(item is None or isinstance(item, Mapping) for item in data):
        # Go decodes `null` items as empty maps, and an empty list like an empty file.
        return [item or {} for item in data] or [{}]
    raise GeneratorError(
        f"{where}: unable to parse file {path!r} of {repo_url}: "
        "expected a YAML/JSON object or a list of objects"
    )


def _path_params(path: str, prefix: str, ctx: GenerateContext, *, filename: str | None) -> Params:
    basename = posixpath.basename(path) or path
    if ctx.mode.go:
        info: Params = {
            "path": path,
            "basename": basename,
            "basenameNormalized": sanitize_name(basename),
        }
        if filename is not None:
            info["filename"] = filename
            info["filenameNormalized"] = sanitize_name(filename)
        info["segments"] = path.split("/")
        return {prefix: {"path": info}} if prefix else {"path": info}
    name = f"{prefix}.path" if prefix else "path"
    params: Params = {
        name: path,
        f"{name}.basename": basename,
        f"{name}.basenameNormalized": sanitize_name(basename),
    }
    if filename is not None:
        params[f"{name}.filename"] = filename
        params[f"{name}.filenameNormalized"] = sanitize_name(filename)
    for i, segment in enumerate(path.split("/")):
        if segment:
            params[f"{name}[{i}]"] = segment
    return params
