"""Chart repositories over real HTTP on loopback: index caching with ETag revalidation,
archives checked against the index digest and cached by it, bad indexes and archives."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hub.charts import ChartError, ChartRepos


class _Repo:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, int]] = []


def _archive(name: str, version: str, *, evil: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        members = {f"{name}/Chart.yaml": f"apiVersion: v2\nname: {name}\nversion: {version}\n"}
        if evil:
            members["../escape.txt"] = "outside"
        for path, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def repo() -> Iterator[tuple[str, _Repo]]:
    state = _Repo()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = state.files.get(self.path)
            if body is None:
                state.requests.append((self.path, 404))
                self.send_response(404)
                self.end_headers()
                return
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            if self.headers.get("If-None-Match") == etag:
                state.requests.append((self.path, 304))
                self.send_response(304)
                self.end_headers()
                return
            state.requests.append((self.path, 200))
            self.send_response(200)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/charts", state
    finally:
        server.shutdown()
        server.server_close()


def publish(state: _Repo, name: str, versions: dict[str, bytes], *, digest: str = "") -> None:
    entries = []
    for version, data in versions.items():
        path = f"/charts/{name}-{version}.tgz"
        state.files[path] = data
        entries.append(
            {
                "name": name,
                "version": version,
                "urls": [f"{name}-{version}.tgz"],  # relative to the repository URL
                "digest": digest or hashlib.sha256(data).hexdigest(),
            }
        )
    state.files["/charts/index.yaml"] = yaml.safe_dump(
        {"apiVersion": "v1", "entries": {name: entries}}
    ).encode()


def test_the_index_is_revalidated_with_its_etag_and_archives_cached_by_digest(
    tmp_path: Path, repo: tuple[str, _Repo]
) -> None:
    url, state = repo
    publish(state, "web", {"1.0.0": _archive("web", "1.0.0"), "1.1.0": _archive("web", "1.1.0")})
    charts = ChartRepos(tmp_path / "cache")
    assert charts.resolve_chart(url, "web", "~1.0") == "1.0.0"
    chart = charts.chart_dir(url, "web", "1.0.0")
    assert (chart / "Chart.yaml").read_text().startswith("apiVersion: v2")
    # a second process (a fresh ChartRepos on the same cache) revalidates: 304, no body
    again = ChartRepos(tmp_path / "cache")
    assert again.resolve_chart(url, "web", "^1.0") == "1.1.0"
    assert again.index_fetches == 0
    assert again.chart_dir(url, "web", "1.0.0") == chart  # unpacked once, reused
    assert state.requests.count(("/charts/index.yaml", 304)) == 1
    assert state.requests.count(("/charts/web-1.0.0.tgz", 200)) == 1
    # a changed index is fetched again
    publish(state, "web", {"2.0.0": _archive("web", "2.0.0")})
    assert again.resolve_chart(url, "web", "*") == "2.0.0"
    assert again.index_fetches == 1


def test_an_archive_not_matching_the_index_digest_is_refused(
    tmp_path: Path, repo: tuple[str, _Repo]
) -> None:
    url, state = repo
    publish(state, "web", {"1.0.0": _archive("web", "1.0.0")}, digest="0" * 64)
    charts = ChartRepos(tmp_path / "cache")
    with pytest.raises(ChartError, match="does not match the index's digest"):
        charts.chart_dir(url, "web", "1.0.0")
    assert not list((tmp_path / "cache").glob("archives/*.tgz"))


def test_an_archive_with_paths_leaving_it_is_refused(
    tmp_path: Path, repo: tuple[str, _Repo]
) -> None:
    url, state = repo
    publish(state, "web", {"1.0.0": _archive("web", "1.0.0", evil=True)})
    with pytest.raises(ChartError, match="not a readable chart archive"):
        ChartRepos(tmp_path / "cache").chart_dir(url, "web", "1.0.0")
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize(
    ("index", "chart", "constraint", "message"),
    [
        (b"not: [yaml", "web", "*", "invalid YAML"),
        (b"apiVersion: v1\n", "web", "*", "no `entries` mapping"),
        (b"entries: {web: [{version: 1.0.0, urls: [a.tgz]}]}", "api", "*", "no chart named 'api'"),
        (b"entries: {web: [{version: 1.0.0, urls: [a.tgz]}]}", "web", "^2", "no version matches"),
        (b"entries: {web: [{version: 1.0.0, urls: [a.tgz]}]}", "web", ">=banana", "targetRevision"),
    ],
)
def test_bad_indexes_and_ranges_are_clear_errors(
    tmp_path: Path,
    repo: tuple[str, _Repo],
    index: bytes,
    chart: str,
    constraint: str,
    message: str,
) -> None:
    url, state = repo
    state.files["/charts/index.yaml"] = index
    with pytest.raises(ChartError, match=message):
        ChartRepos(tmp_path / "cache").resolve_chart(url, chart, constraint)


def test_unreachable_and_non_http_repositories_say_so(tmp_path: Path) -> None:
    charts = ChartRepos(tmp_path / "cache", timeout_s=2)
    with pytest.raises(ChartError, match="OCI registries are not supported yet"):
        charts.resolve_chart("oci://registry.example.com/charts", "web", "1.0.0")
    with pytest.raises(ChartError, match="cannot connect"):
        charts.resolve_chart("http://127.0.0.1:9/charts", "web", "1.0.0")


def test_an_unreachable_repository_falls_back_to_the_cached_index(tmp_path: Path) -> None:
    # serve once, cache, then stop the server: the cached index answers
    state = _Repo()
    publish(state, "web", {"1.0.0": _archive("web", "1.0.0")})

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = state.files[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/charts"
    assert ChartRepos(tmp_path / "cache").resolve_chart(url, "web", "*") == "1.0.0"
    server.shutdown()
    server.server_close()
    assert ChartRepos(tmp_path / "cache").resolve_chart(url, "web", "*") == "1.0.0"
    with pytest.raises(ChartError, match="cannot connect"):
        ChartRepos(tmp_path / "other-cache").resolve_chart(url, "web", "*")
