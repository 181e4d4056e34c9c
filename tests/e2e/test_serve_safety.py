"""``hub serve`` as a subprocess: one hub per home, clean start-up failures, secrets kept
off the command line, and the hardened API (issue 11 items 6, 10, 13 and 14)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.clusters.cli_support import CLEAN_ENV, Hub
from tests.conftest import KubeEnv
from tests.e2e.serve_support import served_url, wait_for

TOKEN = "file-token-0123456789abcdef"


@dataclass
class Served:
    proc: subprocess.Popen[str]
    log: Path
    home: Path

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    @property
    def port(self) -> int:
        """The port this hub bound (``--port 0``: the kernel's pick), from its serve.json;
        only once ``started`` returned."""
        doc = serve_doc(self.home)
        assert doc is not None and doc.get("pid") == self.proc.pid, (doc, self.text())
        return int(str(doc["url"]).rsplit(":", 1)[1])


def serve(home: Path, log: Path, *args: str, env: dict[str, str] | None = None) -> Served:
    full_env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    full_env.update(env or {})
    with log.open("a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "--home", str(home), "serve", "--port", "0", *args],
            stdout=out, stderr=subprocess.STDOUT, text=True, env=full_env,
        )  # fmt: skip
    return Served(proc, log, home)


def run_hub(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hub", "--home", str(home), *args],
        capture_output=True, text=True, env=full_env, timeout=120,
    )  # fmt: skip


def serve_doc(home: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((home / "serve.json").read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def started(home: Path, served: Served) -> dict[str, Any]:
    served_url(home, served.proc, served.log)  # serve.json, written by this hub
    wait_for("hub serving", lambda: "hub serving" in served.text())
    doc = serve_doc(home)
    assert doc is not None
    return doc


def request(
    port: int, method: str, path: str, *, host: str | None = None, body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        all_headers = dict(headers or {})
        if host is not None:
            all_headers["Host"] = host
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    return response.status, json.loads(raw) if raw else None


def stop(served: Served) -> int:
    served.proc.send_signal(signal.SIGTERM)
    try:
        return served.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        raise


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    Hub(path).ok("init")
    return path


# ---------------------------------------------------------------- item 6: one hub per home


def test_a_second_hub_on_the_same_home_exits_2_and_touches_nothing(
    home: Path, tmp_path: Path
) -> None:
    first = serve(home, tmp_path / "first.log")
    try:
        doc = started(home, first)
        before = (home / "serve.json").read_bytes()
        for args in (["--port", "0"], ["--once"]):
            second = run_hub(home, "serve", *args)
            assert second.returncode == 2, second.stderr
            assert f"PID {first.proc.pid}" in second.stderr
            assert doc["url"] in second.stderr
            assert "hub serving" not in second.stderr
            assert "Traceback" not in second.stderr
        assert (home / "serve.json").read_bytes() == before
        assert first.proc.poll() is None
        assert request(first.port, "GET", "/healthz") == (200, {"status": "ok"})
        # The CLI still finds the first hub through serve.json and the lock.
        status = run_hub(home, "status")
        assert status.returncode == 0 and "from the running hub" in status.stdout, status.stderr
    finally:
        first.proc.kill()
        first.proc.wait()
    # SIGKILL: no clean-up ran, serve.json is stale, the kernel released the lock.
    assert serve_doc(home) is not None
    assert "from the store" in run_hub(home, "status").stdout
    third = serve(home, tmp_path / "third.log")
    try:
        started(home, third)
    finally:
        assert stop(third) == 0, third.text()
    assert serve_doc(home) is None


# ---------------------------------------------------------------- item 10: start-up failures


def test_a_port_in_use_is_one_line_and_exit_2(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = run_hub(home, "serve", "--port", str(port))
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is in use (Address already in use); stop what "
        "listens there or choose another --port"
    ]
    assert "hub serving" not in run.stdout + run.stderr
    assert not (home / "serve.json").exists()


def test_a_short_token_is_a_usage_error_stating_the_minimum(home: Path, tmp_path: Path) -> None:
    run = run_hub(home, "serve", "--token", "short")
    assert run.returncode == 2
    assert "at least 16 characters" in run.stderr and "Traceback" not in run.stderr
    assert "short" not in run.stderr.replace("--token", "")
    (tmp_path / "t").write_text("tiny\n")
    run = run_hub(home, "serve", "--token-file", str(tmp_path / "t"))
    assert run.returncode == 2 and "--token-file" in run.stderr and "at least 16" in run.stderr
    run = run_hub(home, "serve", env={"HUB_API_TOKEN": "tiny"})
    assert run.returncode == 2 and "HUB_API_TOKEN" in run.stderr


@pytest.mark.parametrize("once", [False, True])
def test_an_unknown_event_loop_is_one_line_and_exit_2(home: Path, once: bool) -> None:
    run = run_hub(home, "serve", *(["--once"] if once else ["--port", "0"]),
                  env={"HUB_EVENT_LOOP": "trio"})  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        "error: HUB_EVENT_LOOP='trio' is not a loop this hub knows; use uvloop, asyncio or auto"
    ]
    assert not (home / "serve.json").exists()


# ---------------------------------------------------------------- items 10, 13, 14 on a hub


@pytest.fixture
def hardened(home: Path, tmp_path: Path) -> Iterator[Served]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    served = serve(
        home, tmp_path / "hub.log", "--token-file", str(token_file),
        "--allowed-host", "hub.internal", "--body-timeout", "1",
    )  # fmt: skip
    try:
        started(home, served)
        yield served
    finally:
        assert stop(served) == 0, served.text()


def test_the_token_comes_from_the_file_and_never_shows(hardened: Served) -> None:
    assert request(hardened.port, "POST", "/api/v1/refresh")[0] == 401
    status, body = request(
        hardened.port, "POST", "/api/v1/refresh", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 202 and body["queued"] is True
    assert "visible to other local users" not in hardened.text()
    assert TOKEN not in hardened.text()


def test_a_foreign_host_is_refused_and_an_allowed_one_served(hardened: Served) -> None:
    status, body = request(hardened.port, "GET", "/api/v1/clusters", host="attacker.example")
    assert status == 421 and "--allowed-host" in body["error"]["message"]
    assert request(hardened.port, "GET", "/api/v1/clusters", host="hub.internal:80")[0] == 200
    assert request(hardened.port, "GET", "/api/v1/clusters")[0] == 200


def test_nested_json_and_stalled_bodies_are_4xx_and_the_hub_lives_on(hardened: Served) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    status, body = request(
        hardened.port, "POST", "/api/v1/applications/x/sync", body=deep,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 400 and "nested too deeply" in body["error"]["message"]
    status, body = request(
        hardened.port, "POST", "/api/webhook/git", body=deep,
        headers={"X-GitHub-Event": "push", "Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 400 and "nested too deeply" in body["error"]["message"]
    with socket.create_connection(("127.0.0.1", hardened.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/webhook/git HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b'X-GitHub-Event: push\r\nContent-Length: 1000\r\n\r\n{"ref": '
        )
        answer = sock.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 408"), answer
    assert "did not arrive within 1 seconds" in answer
    assert request(hardened.port, "GET", "/healthz")[0] == 200
    assert "Traceback" not in hardened.text()


def test_a_token_on_the_command_line_is_warned_about_and_the_secret_read_from_env(
    home: Path, tmp_path: Path
) -> None:
    import hashlib
    import hmac

    secret = "webhook-secret-from-the-environment"
    served = serve(home, tmp_path / "argv.log", "--token", TOKEN,
                   env={"HUB_WEBHOOK_SECRET": secret})  # fmt: skip
    push = json.dumps({"repository": {"clone_url": "https://git.example/r.git"}}).encode()
    headers = {"X-GitHub-Event": "push", "Content-Type": "application/json"}
    try:
        started(home, served)
        assert "--token on the command line is visible to other local users" in served.text()
        assert (
            request(served.port, "POST", "/api/webhook/git", body=push, headers=headers)[0] == 401
        )
        signature = "sha256=" + hmac.new(secret.encode(), push, hashlib.sha256).hexdigest()
        status, body = request(
            served.port, "POST", "/api/webhook/git", body=push,
            headers={**headers, "X-Hub-Signature-256": signature},
        )  # fmt: skip
        assert status == 200 and body["matched"] == 0
    finally:
        assert stop(served) == 0
    assert TOKEN not in served.text() and secret not in served.text()


# ---------------------------------------------------------------- item 12 on a running hub


def test_a_hub_never_sends_a_credential_to_an_edited_server(
    home: Path, tmp_path: Path, kube: KubeEnv
) -> None:
    import sqlite3

    from tests.cli.test_cluster_integrity import Listener

    Hub(home).ok("cluster", "add", "prod", "--kubeconfig", str(kube.kubeconfig),
                 "--context", kube.context)  # fmt: skip
    listener = Listener()
    try:
        db = sqlite3.connect(home / "hub.db")
        db.execute(
            "UPDATE clusters SET server = ? WHERE name = 'prod'",
            (f"http://127.0.0.1:{listener.port}",),
        )
        db.commit()
        db.close()
        served = serve(home, tmp_path / "hub.log")
        try:
            started(home, served)

            def refused() -> dict[str, Any] | None:
                doc = request(served.port, "GET", "/api/v1/clusters/prod")[1]
                connection = doc.get("connection") or {}
                return doc if connection.get("state") == "Unreachable" else None

            doc = wait_for("the worker to report the mismatch", refused)
            assert "does not match this cluster's server" in doc["connection"]["message"]
            assert "re-add the cluster" in doc["connection"]["message"]
        finally:
            assert stop(served) == 0, served.text()
        assert "Traceback" not in served.text()
    finally:
        listener.close()
    assert listener.connections == 0 and listener.received == b""
