"""The bootstrap API token: it acts as ``role:admin`` (``Authorization: Bearer <token>``).

Users' and project roles' tokens (``hub token create``) are in ``hub.auth.tokens``; this
one is the hub's own, for administration and for the CLI on the hub's machine.

It lives in ``$HUB_HOME/api-token`` (mode 0600, created on the first ``hub serve``) unless
``hub serve`` is given one (``--token-file``, ``$HUB_API_TOKEN``, or ``--token``, which
other local users can see in the process list). The CLI on the same machine and user
reads the file (or ``$HUB_API_TOKEN``), so ``hub app sync NAME`` works without typing it;
the dashboard asks for a token once per tab.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from hub.errors import HubError, HubUsageError
from hub.logs import redact

TOKEN_FILENAME = "api-token"
ENV_TOKEN = "HUB_API_TOKEN"
ENV_WEBHOOK_SECRET = "HUB_WEBHOOK_SECRET"
MIN_TOKEN_LENGTH = 16
MAX_SECRET_FILE = 64 * 1024


def token_path(home: Path) -> Path:
    return home / TOKEN_FILENAME


def read_token(home: Path) -> str | None:
    """The token in ``home``, or None when there is none yet; refuses a file others can read."""
    path = token_path(home)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HubError(f"API token file {path}: cannot open: {exc.strerror}") from None
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            raise HubError(
                f"API token file {path} has permissions {mode:04o}, wider than 0600; delete it "
                "and restart `hub serve` to make a new one"
            )
        token = os.read(fd, 4096).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    if len(token) < MIN_TOKEN_LENGTH:
        raise HubError(f"API token file {path} holds no usable token; delete it and restart")
    redact(token)
    return token


def load_or_create_token(home: Path, explicit: str | None = None) -> str:
    """``explicit`` (``--token``) if given, else the home's token, made on first use."""
    if explicit is not None:
        check_token(explicit)
        redact(explicit)
        return explicit
    existing = read_token(home)
    if existing is not None:
        return existing
    token = secrets.token_urlsafe(32)
    path = token_path(home)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:  # another process made it meanwhile: use theirs
        again = read_token(home)
        assert again is not None
        return again
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    redact(token)
    return token


def check_token(token: str, source: str = "API token") -> None:
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise HubUsageError(
            f"{source}: an API token must be at least {MIN_TOKEN_LENGTH} characters without "
            f"spaces (this one has {len(token)}; e.g. `openssl rand -base64 32`)"
        )


def read_secret_file(path: str, option: str) -> str:
    """A secret kept in a file (``--token-file``, ``--webhook-secret-file``), stripped."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise HubUsageError(f"{option} {path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_SECRET_FILE:
        raise HubUsageError(f"{option} {path}: larger than {MAX_SECRET_FILE} bytes")
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise HubUsageError(f"{option} {path}: not UTF-8 text") from None
    if not text:
        raise HubUsageError(f"{option} {path}: the file is empty")
    redact(text)
    return text


def token_matches(expected: str, header: str | None) -> bool:
    """Whether an ``Authorization`` header carries ``expected`` (constant-time compare)."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), expected.encode())
