"""End to end: a private Git repository over HTTP(S) read with ``hub repo add`` credentials
(served on loopback with Git's dumb HTTP protocol behind basic auth)."""

from __future__ import annotations

import base64
import functools
import http.server
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import KubeEnv
from tests.sync.e2e_helpers import GitRepo, application, hub_app

Kubectl = Callable[..., subprocess.CompletedProcess[str]]

USER, PASSWORD = "deployer", "git-pass-9f2c"


class _AuthGit(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {token}":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture
def private_git(tmp_path: Path) -> Iterator[tuple[str, Callable[[GitRepo], None]]]:
    """``(url, publish)``: ``publish(repo)`` mirrors a work repository to the server."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_AuthGit, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def publish(repo: GitRepo) -> None:
        bare = served / "team.git"
        if bare.exists():
            shutil.rmtree(bare)
        subprocess.run(
            ["git", "clone", "-q", "--bare", str(repo.path), str(bare)],
            check=True,
            capture_output=True,
        )
        subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)

    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/team.git", publish
    finally:
        server.shutdown()
        server.server_close()


def test_a_private_git_repository_is_read_with_stored_credentials(
    kube: KubeEnv,
    tmp_path: Path,
    kubectl: Kubectl,
    namespace: str,
    private_git: tuple[str, Callable[[GitRepo], None]],
) -> None:
    url, publish = private_git
    work = GitRepo(tmp_path / "work")
    work.write(
        {
            "app/cm.yaml": """
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: private-settings}
                data: {level: one}
                """
        }
    )
    publish(work)
    h = hub_app(kube, tmp_path)
    app = application("private-git", work, namespace=namespace)
    app["spec"]["source"]["repoURL"] = url
    h.write_app(app)
    run = h.sync("--timeout", "60")
    assert run.exit_code == 1
    assert "clone failed" in run.output

    host = url.rsplit("/", 1)[0]  # a credential for the host covers the repositories below
    added = h.hub("repo", "add", host, "--username", USER, "--password-stdin",
                  input=PASSWORD + "\n")  # fmt: skip
    assert added.exit_code == 0, added.output
    run = h.sync("--timeout", "60")
    assert run.exit_code == 0, run.output
    got = kubectl("get", "configmap", "private-settings", "-n", namespace, "-o",
                  "jsonpath={.data.level}")  # fmt: skip
    assert got.stdout == "one"

    # a new commit is fetched with the same credentials
    work.write(
        {
            "app/cm.yaml": """
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: private-settings}
                data: {level: two}
                """
        }
    )
    publish(work)
    run = h.sync("--timeout", "60")
    assert run.exit_code == 0, run.output
    got = kubectl("get", "configmap", "private-settings", "-n", namespace, "-o",
                  "jsonpath={.data.level}")  # fmt: skip
    assert got.stdout == "two"
    for out in (added.output, run.output):
        assert PASSWORD not in out
    # nowhere in the hub home: not in the state database, not in the clone's config
    for path in h.hub.home.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
