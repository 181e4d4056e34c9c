"""The one logging setup of every ``hub`` command and the hub process.

Secrets must never reach a log line. Code that handles a secret registers it with
``redact()``; the filter installed here replaces it wherever it appears, at every
verbosity, in the message and in formatted arguments and tracebacks. Credentials in
URLs (``https://user:password@host/...``, ``https://TOKEN@host/...``) are replaced too,
without being registered: ``scrub`` (used by the log formatter, the CLI's error line and
the API's error bodies) turns them into ``https://***@host/...``.
"""

from __future__ import annotations

import logging
import re
import sys
import threading

_REDACTED = "[REDACTED]"
# scheme://USERINFO@ ; the userinfo runs to the last '@' before the path (RFC 3986).
_URL_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^/?#\s'\"<>]+)@")
_HARMLESS_USERS = frozenset({"git"})  # ssh://git@host/...: no secret, and telling
_secrets: set[str] = set()
_lock = threading.Lock()


def redact(secret: str | bytes | None) -> None:
    """Remember a secret so that no log record ever shows it."""
    if not secret:
        return
    text = secret.decode(errors="replace") if isinstance(secret, bytes) else secret
    if len(text) < 6:  # too short to redact without mangling ordinary words
        return
    with _lock:
        _secrets.add(text)


def redact_url_credentials(text: str) -> str:
    """``text`` with the user-info of every URL in it replaced by ``***``."""

    def hide(match: re.Match[str]) -> str:
        user = match.group(2)
        return match.group(1) + (user if user in _HARMLESS_USERS else "***") + "@"

    return _URL_USERINFO.sub(hide, text) if "@" in text else text


def scrub(text: str) -> str:
    """Return ``text`` with every registered secret and URL credential replaced."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return redact_url_credentials(text)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def setup_logging(verbosity: int = 0) -> None:
    """Configure the root logger: warnings by default, ``-v`` info, ``-vv`` debug."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party clients are chatty at debug and may print request headers.
    for noisy in ("urllib3", "kubernetes", "aiohttp.access", "git"):
        logging.getLogger(noisy).setLevel(
            max(level, logging.WARNING if verbosity < 3 else logging.DEBUG)
        )
