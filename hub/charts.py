"""Helm chart repositories: ``index.yaml`` with ETag revalidation, archives cached by digest.

A chart source (``repoURL`` + ``chart`` + ``targetRevision``) is resolved against the
repository's ``index.yaml``: ``targetRevision`` is an exact version or a semver constraint
(``hub.semver``), the highest allowed version wins and is what status and history record.
The archive of that version is downloaded once, checked against the index's ``digest``
(sha256) when it has one, kept under its digest and unpacked once; ``chart_dir`` returns the
unpacked chart.

The index is cached on disk with its ``ETag`` / ``Last-Modified``; every resolve revalidates
it (``If-None-Match`` / ``If-Modified-Since``: a 304 costs no body) unless it was checked
less than ``revalidate_s`` ago (0 by default); fetching the archive of a version the last
resolve returned uses the index in memory. Credentials
(``hub repo add``) are sent as HTTP basic auth to the repository's host; to an archive on
another host only with ``helm.passCredentials`` (Helm's rule).

All HTTP goes through ``_http_get`` (urllib; no session state).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import yaml

from clusters.yamlload import SAFE_LOADER
from hub.errors import HubError
from hub.semver import VersionError, best_match

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_REVALIDATE_S = 0.0
MAX_INDEX_BYTES = 64 << 20
MAX_ARCHIVE_BYTES = 256 << 20


class ChartError(HubError):
    """A chart repository, chart or version that cannot be read or resolved."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient  # unreachable or 5xx: a cached index may stand in


@dataclass(frozen=True, kw_only=True)
class RepoCredentials:
    username: str
    password: str
    pass_credentials: bool = False  # also to archive URLs on other hosts

    def __repr__(self) -> str:  # never the password
        return f"RepoCredentials(username={self.username!r}, password=***)"


CredentialLookup = Callable[[str], RepoCredentials | None]


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "gitops-hub" / "charts"


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password or parts.username:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    headers: Mapping[str, str]


def _http_get(
    url: str,
    *,
    headers: Mapping[str, str],
    creds: RepoCredentials | None,
    timeout_s: float,
    limit: int,
) -> _Response:
    request = urllib.request.Request(url, headers=dict(headers), method="GET")
    if creds is not None:
        token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            body = resp.read(limit + 1)
            if len(body) > limit:
                raise ChartError(f"{_redact(url)}: answer larger than {limit >> 20} MiB")
            return _Response(resp.status, body, {k.lower(): v for k, v in resp.headers.items()})
    except urllib.error.HTTPError as exc:
        exc.close()  # its socket: else left to the GC (a ResourceWarning in another thread)
        if exc.code == 304:
            return _Response(304, b"", {k.lower(): v for k, v in exc.headers.items()})
        hint = " (check `hub repo add` credentials)" if exc.code in (401, 403) else ""
        raise ChartError(
            f"{_redact(url)}: HTTP {exc.code} {exc.reason}{hint}", transient=exc.code >= 500
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ChartError(f"{_redact(url)}: cannot connect: {reason}", transient=True) from None


def _read_cached_index(path: Path) -> tuple[dict[str, str], bytes | None]:
    """(validators, body) of a cached index; nothing usable when absent or unreadable."""
    try:
        head, _, body = path.read_bytes().partition(b"\n")
        meta = json.loads(head)
    except (OSError, ValueError):
        return {}, None
    if not isinstance(meta, dict):
        return {}, None
    return {str(k): str(v) for k, v in meta.items()}, body


def _usable_last_modified(resp: _Response) -> str:
    """``Last-Modified`` when it can validate: RFC 9110 8.8.2.2 calls it weak unless the
    response's ``Date`` is at least a second later (an index rewritten within the same
    second would otherwise be answered 304 for ever)."""
    modified, date = resp.headers.get("last-modified", ""), resp.headers.get("date", "")
    try:
        if (parsedate_to_datetime(date) - parsedate_to_datetime(modified)).total_seconds() >= 1:
            return modified
    except (TypeError, ValueError):
        pass
    return ""


@dataclass(frozen=True, kw_only=True)
class ChartVersion:
    name: str
    version: str
    urls: tuple[str, ...]
    digest: str


class ChartRepos:
    """Chart repositories shared by every sync of a process (thread safe)."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        credentials: CredentialLookup | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        revalidate_s: float = DEFAULT_REVALIDATE_S,
    ) -> None:
        self.cache_dir = cache_dir or default_cache_dir()
        self.credentials = credentials or (lambda _url: None)
        self.timeout_s = timeout_s
        self.revalidate_s = revalidate_s
        self._lock = threading.Lock()
        self._download_lock = threading.Lock()
        self._checked: dict[str, float] = {}
        self._indexes: dict[str, tuple[str, dict[str, list[ChartVersion]]]] = {}
        self.index_fetches = 0  # bodies downloaded (a 304 does not count)
        self._resolved: dict[tuple[str, str, str], str] = {}

    # -- index

    @staticmethod
    def index_url(repo_url: str) -> str:
        return repo_url.rstrip("/") + "/index.yaml"

    def _check_url(self, repo_url: str) -> None:
        scheme = urllib.parse.urlsplit(repo_url).scheme
        if scheme not in ("http", "https"):
            raise ChartError(
                f"{_redact(repo_url)}: chart repositories are read over http(s); "
                "OCI registries are not supported yet"
            )

    def index(self, repo_url: str, *, revalidate: bool = True) -> dict[str, list[ChartVersion]]:
        """Chart name -> its versions, from the (revalidated) cached ``index.yaml``."""
        self._check_url(repo_url)
        url = self.index_url(repo_url)
        key = _key(url)
        with self._lock:
            fresh = time.monotonic() - self._checked.get(key, -1e9) < self.revalidate_s
            if (fresh or not revalidate) and key in self._indexes:
                return self._indexes[key][1]
            folder = self.cache_dir / "index"
            folder.mkdir(parents=True, exist_ok=True)
            # one file per index: a JSON line of validators, then the body, replaced
            # atomically, so processes sharing the cache never pair one's ETag with
            # another's body
            cache_file = folder / f"{key}.idx"
            meta, cached_body = _read_cached_index(cache_file)
            headers = {"Accept": "application/x-yaml, text/yaml, */*"}
            if meta.get("etag"):
                headers["If-None-Match"] = meta["etag"]
            if meta.get("last-modified"):
                headers["If-Modified-Since"] = meta["last-modified"]
            try:
                resp = _http_get(
                    url,
                    headers=headers,
                    creds=self.credentials(repo_url),
                    timeout_s=self.timeout_s,
                    limit=MAX_INDEX_BYTES,
                )
            except ChartError as exc:
                if not exc.transient or cached_body is None:
                    raise
                # as the hub keeps the last good commit of an unreachable Git repository
                log.warning("%s; using the cached index.yaml", exc)
                resp = _Response(304, b"", {})
            if resp.status == 304 and cached_body is not None:
                validator = json.dumps(meta, sort_keys=True)
                if key in self._indexes and self._indexes[key][0] == validator:
                    self._checked[key] = time.monotonic()
                    return self._indexes[key][1]
                body = cached_body
            else:
                self.index_fetches += 1
                body = resp.body
                meta = {
                    "etag": resp.headers.get("etag", ""),
                    "last-modified": _usable_last_modified(resp),
                }
                validator = json.dumps(meta, sort_keys=True)
                fd, name = tempfile.mkstemp(dir=folder, suffix=".part")
                with os.fdopen(fd, "wb") as part:
                    part.write(validator.encode() + b"\n" + body)
                Path(name).replace(cache_file)
            parsed = _parse_index(body, url)
            self._indexes[key] = (validator, parsed)
            self._checked[key] = time.monotonic()
            return parsed

    def resolve_chart(self, repo_url: str, chart: str, constraint: str) -> str:
        """The version of ``chart`` that ``constraint`` selects (exact or a semver range)."""
        entries = self.index(repo_url).get(chart)
        if not entries:
            raise ChartError(f"{_redact(repo_url)}: no chart named {chart!r} in index.yaml")
        wanted = "*" if constraint in ("", "HEAD") else constraint
        try:
            version = best_match(wanted, [e.version for e in entries])
        except VersionError as exc:
            raise ChartError(f"{_redact(repo_url)} chart {chart}: targetRevision: {exc}") from None
        if version is not None:
            with self._lock:
                self._resolved[(repo_url, chart, constraint)] = version
        if version is None:
            shown = ", ".join(e.version for e in entries[:10])
            raise ChartError(
                f"{_redact(repo_url)} chart {chart}: no version matches {constraint!r} "
                f"(available: {shown})"
            )
        return version

    def resolved_snapshot(self) -> dict[tuple[str, str, str], str]:
        """(repo, chart, targetRevision) -> the version last resolved (to notice new ones)."""
        with self._lock:
            return dict(self._resolved)

    # -- archives

    def chart_dir(
        self, repo_url: str, chart: str, version: str, *, pass_credentials: bool = False
    ) -> Path:
        """The unpacked chart ``chart`` at ``version`` (downloaded and unpacked once).
        ``pass_credentials``: the app's ``helm.passCredentials``."""
        entries = self.index(repo_url, revalidate=False).get(chart) or []
        entry = next((e for e in entries if e.version == version), None)
        if entry is None:
            # not in the index we hold (another process resolved it, or the index moved
            # on): revalidate once
            entries = self.index(repo_url).get(chart) or []
            entry = next((e for e in entries if e.version == version), None)
        if entry is None or not entry.urls:
            raise ChartError(f"{_redact(repo_url)}: chart {chart} {version} is not in index.yaml")
        url = urllib.parse.urljoin(repo_url.rstrip("/") + "/", entry.urls[0])
        ident = entry.digest or _key(f"{url}@{version}")
        unpacked = self.cache_dir / "unpacked" / ident
        if (unpacked / ".complete").is_file():
            return self._chart_root(unpacked, chart)
        archive = self.cache_dir / "archives" / f"{ident}.tgz"
        # one download and unpack at a time: rare, and two syncs of one chart must not race
        with self._download_lock:
            if not archive.is_file():
                self._download(repo_url, url, entry, archive, pass_credentials=pass_credentials)
            if not (unpacked / ".complete").is_file():
                _unpack(archive, unpacked)
        return self._chart_root(unpacked, chart)

    def _download(
        self,
        repo_url: str,
        url: str,
        entry: ChartVersion,
        archive: Path,
        *,
        pass_credentials: bool,
    ) -> None:
        same_host = urllib.parse.urlsplit(url).netloc == urllib.parse.urlsplit(repo_url).netloc
        creds = self.credentials(repo_url)
        passing = pass_credentials or (creds is not None and creds.pass_credentials)
        if creds is not None and not same_host and not passing:
            creds = None
        resp = _http_get(
            url, headers={}, creds=creds, timeout_s=self.timeout_s, limit=MAX_ARCHIVE_BYTES
        )
        if entry.digest and hashlib.sha256(resp.body).hexdigest() != entry.digest:
            raise ChartError(
                f"{_redact(url)}: the archive's sha256 does not match the index's digest "
                f"for {entry.name} {entry.version}; refusing it"
            )
        archive.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=archive.parent, suffix=".part")  # one per process
        with os.fdopen(fd, "wb") as part:
            part.write(resp.body)
        Path(name).replace(archive)

    @staticmethod
    def _chart_root(unpacked: Path, chart: str) -> Path:
        if (unpacked / chart / "Chart.yaml").is_file():
            return unpacked / chart
        dirs = [p for p in unpacked.iterdir() if p.is_dir()]
        if len(dirs) == 1 and (dirs[0] / "Chart.yaml").is_file():
            return dirs[0]
        raise ChartError(f"chart archive of {chart}: no {chart}/Chart.yaml inside")


def _unpack(archive: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".unpack-"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(tmp, filter="data")  # refuses links and paths leaving tmp
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        archive.unlink(missing_ok=True)
        raise ChartError(f"{archive.name}: not a readable chart archive: {exc}") from None
    (tmp / ".complete").write_text("")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)


def _parse_index(body: bytes, url: str) -> dict[str, list[ChartVersion]]:
    try:
        doc: Any = yaml.load(body, Loader=SAFE_LOADER)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        # The C loader for speed (indexes run to megabytes), so the hardened
        # generators.yamlio caps do not apply: a bad tag or absurd nesting is still only an
        # error of this repository.
        raise ChartError(f"{_redact(url)}: invalid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict):
        raise ChartError(f"{_redact(url)}: not a chart repository index (no `entries` mapping)")
    out: dict[str, list[ChartVersion]] = {}
    for name, items in doc["entries"].items():
        if not isinstance(items, list):
            continue
        versions = []
        for item in items:
            if not isinstance(item, dict) or item.get("version") is None:
                continue
            urls = item.get("urls") or []
            versions.append(
                ChartVersion(
                    name=str(name),
                    version=str(item["version"]),
                    urls=tuple(str(u) for u in urls if isinstance(u, str)),
                    digest=str(item.get("digest") or ""),
                )
            )
        out[str(name)] = versions
    return out


_shared: ChartRepos | None = None
_shared_lock = threading.Lock()


def shared_chart_repos() -> ChartRepos:
    """The process's chart repositories at the default cache (no credentials)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ChartRepos()
        return _shared
