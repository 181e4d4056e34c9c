"""How the CLI finds a running hub and talks to its JSON API.

One hub per home. ``hub serve`` (also ``--once``) first takes an exclusive ``flock`` on
``$HUB_HOME/serve.lock`` and holds it for its whole life; the kernel releases it when the
process ends, however it ends (SIGKILL included). A second ``hub serve`` on the same home
fails at once (exit 2) naming the running hub's PID and address, and touches nothing.

Once the lock is held and the API listens, the hub records where in
``$HUB_HOME/serve.json`` (``write_serve_file``; ``remove_serve_file`` on exit)::

    {"url": "http://127.0.0.1:8080", "pid": 4242, "startedAt": "2026-01-01T00:00:00Z"}

``find_running_hub`` trusts it only when the lock is held (a serve.json left by a killed
hub, or a PID reused by another program, sends the CLI to the store instead) and
``/healthz`` answers.

The client is plain ``urllib`` (the CLI is synchronous) and never uses a proxy: the API
is on this machine, and a proxy must not see the API token.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.errors import HubError, HubUsageError

SERVE_FILENAME = "serve.json"
LOCK_FILENAME = "serve.lock"
PROBE_TIMEOUT_S = 1.0
# A CLI probing the lock holds it (shared) for microseconds; a starting hub retries this long.
LOCK_RETRY_S = 1.0
# How long the CLI waits for a hub that holds the lock to publish its address.
STARTUP_WAIT_S = 3.0


class ApiError(HubError):
    """The API answered with an error; ``status`` is its HTTP status."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status
        if status in (400, 404):
            self.exit_code = 2 if status == 400 else 1


def serve_path(home: Path) -> Path:
    return home / SERVE_FILENAME


def write_serve_file(home: Path, *, url: str, pid: int | None = None) -> None:
    """Record the API address of the hub serving ``home`` (atomically, mode 0600)."""
    doc = {
        "url": url.rstrip("/"),
        "pid": os.getpid() if pid is None else pid,
        "startedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    tmp = serve_path(home).with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, serve_path(home))


def remove_serve_file(home: Path, *, pid: int | None = None) -> None:
    """Remove the record if it is ours (another hub may have started meanwhile)."""
    path = serve_path(home)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if doc.get("pid") == (os.getpid() if pid is None else pid):
        path.unlink(missing_ok=True)


def lock_path(home: Path) -> Path:
    return home / LOCK_FILENAME


class HubAlreadyRunning(HubUsageError):
    """Another ``hub serve`` holds the home's lock."""


def hold_serve_lock(home: Path, *, api: bool = True) -> int:
    """Take the home's serve lock for the rest of this process's life; returns its fd.

    ``api``: whether this process will publish an API in ``serve.json`` (not with
    ``--once``), so that the CLI knows whether to wait for it.

    The fd is close-on-exec, so child processes (git, exec credential plugins) never
    inherit the lock. Raises ``HubAlreadyRunning`` when another process holds it.
    """
    try:
        fd = os.open(lock_path(home), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise HubError(
            f"cannot open the serve lock {lock_path(home)}: {exc.strerror}; the hub needs "
            "to write in its home"
        ) from None
    deadline = time.monotonic() + LOCK_RETRY_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise HubAlreadyRunning(_running_message(home)) from None
            time.sleep(0.05)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "api": api}).encode() + b"\n", 0)
    return fd


def _running_message(home: Path) -> str:
    pid = _lock_holder(home)
    where = "its address is not published yet (still starting)"
    doc = _serve_doc(home)
    if doc is not None and doc.get("pid") == pid and isinstance(doc.get("url"), str):
        where = f"API at {doc['url']}"
    who = f"PID {pid}" if pid is not None else "another process"
    return (
        f"a hub is already serving {home} ({who}, {where}); one hub per home: stop it first, "
        "or use another --home"
    )


def serve_lock_held(home: Path) -> bool | None:
    """Whether a hub holds the home's serve lock; None when no hub ever took it here."""
    try:
        fd = os.open(lock_path(home), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the shared lock at once
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _serve_doc(home: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(serve_path(home).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _lock_doc(home: Path) -> dict[str, Any]:
    try:
        doc = json.loads(lock_path(home).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _lock_holder(home: Path) -> int | None:
    pid = _lock_doc(home).get("pid")
    return pid if isinstance(pid, int) else None


def find_running_hub(
    home: Path, *, timeout: float = PROBE_TIMEOUT_S, startup_wait: float = STARTUP_WAIT_S
) -> str | None:
    """The API URL of the hub serving ``home``, or None when none answers.

    While a hub holds the serve lock but has not yet published its address (it is
    starting), waits up to ``startup_wait`` seconds for it rather than trusting an older
    ``serve.json``.
    """
    held = serve_lock_held(home)
    if held is False:
        return None  # whatever serve.json says, the hub that wrote it is gone
    deadline = time.monotonic() + startup_wait
    while True:
        doc = _serve_doc(home)
        if held is None:  # no hub ever took the lock here: serve.json and its PID only
            if doc is None:
                return None
            pid = doc.get("pid")
            if isinstance(pid, int) and not _alive(pid):
                return None
            break
        lock = _lock_doc(home)
        if lock.get("api") is False:
            return None  # `hub serve --once`: no API to talk to
        holder = lock.get("pid")
        if doc is not None and (not isinstance(holder, int) or doc.get("pid") == holder):
            break
        if time.monotonic() >= deadline or not serve_lock_held(home):
            return None
        time.sleep(0.1)
    url = doc.get("url")
    if not isinstance(url, str) or not url:
        return None
    try:
        ApiClient(url, timeout=timeout).get("/healthz")
    except HubError:
        return None
    return url


class ApiClient:
    """JSON over HTTP to one hub. Errors become ``ApiError`` with the API's message."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise HubUsageError(f"--server {url!r}: expected http://HOST:PORT")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(self, path: str, query: dict[str, str | None] | None = None) -> Any:
        params = {k: v for k, v in (query or {}).items() if v is not None}
        suffix = ("?" + urllib.parse.urlencode(params)) if params else ""
        return self._call("GET", path + suffix, None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call("POST", path, body or {})

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:  # reads too: a hub beyond loopback (or --require-auth) needs it
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(self._message(exc), status=exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise HubError(f"hub API at {self.url}: {reason}") from None
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise HubError(f"hub API at {self.url}{path}: answer is not JSON") from None

    def _message(self, exc: urllib.error.HTTPError) -> str:
        try:
            doc = json.loads(exc.read())
            message = str(doc["error"]["message"])
        except (ValueError, KeyError, TypeError, OSError):
            message = exc.reason if isinstance(exc.reason, str) else str(exc.code)
        if exc.code == 401:
            return (
                f"{message} (the token is read from $HUB_HOME/api-token, --token or HUB_API_TOKEN)"
            )
        return message
