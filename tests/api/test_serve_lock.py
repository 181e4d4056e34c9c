"""How the CLI finds a running hub: the serve lock decides, not a PID (issue 11 item 6)."""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.api import client
from hub.api.client import find_running_hub, write_serve_file


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    """Something answering /healthz, as a hub's API does."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    return path


def test_a_live_pid_without_the_lock_is_not_a_hub(home: Path, api: str) -> None:
    """A hub was SIGKILLed and its PID reused (here: by this very process)."""
    fd = client.hold_serve_lock(home)
    write_serve_file(home, url=api)
    assert find_running_hub(home) == api
    os.close(fd)  # the kernel releases the lock when the hub dies
    assert json.loads((home / "serve.json").read_text())["pid"] == os.getpid()  # alive
    assert find_running_hub(home) is None


def test_a_stale_serve_json_is_not_trusted_while_a_new_hub_starts(home: Path, api: str) -> None:
    write_serve_file(home, url=api, pid=os.getpid() + 1)  # left by the previous hub
    fd = client.hold_serve_lock(home)
    try:
        assert find_running_hub(home, startup_wait=0.3) is None
        write_serve_file(home, url=api)  # the new hub publishes its own address
        assert find_running_hub(home) == api
    finally:
        os.close(fd)


def test_a_hub_running_once_publishes_no_api(home: Path, api: str) -> None:
    fd = client.hold_serve_lock(home, api=False)
    try:
        assert find_running_hub(home, startup_wait=60) is None  # and does not wait
    finally:
        os.close(fd)


def test_a_second_lock_is_refused_naming_the_holder(home: Path, api: str) -> None:
    fd = client.hold_serve_lock(home)
    try:
        write_serve_file(home, url=api)
        with pytest.raises(client.HubAlreadyRunning) as caught:
            client.hold_serve_lock(home)
        assert caught.value.exit_code == 2
        assert f"(PID {os.getpid()}, API at {api})" in str(caught.value)
        assert json.loads((home / "serve.json").read_text())["url"] == api
    finally:
        os.close(fd)
    os.close(client.hold_serve_lock(home))  # free again
