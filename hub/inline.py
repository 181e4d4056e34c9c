"""Work the event loop may do itself, and a guard for the blocking work it must not.

A worker's render of an Application is usually cheap once its revision is known: the
tree is exported, the files were parsed for another cluster, nothing runs a tool. Run
in a thread, such a render cost more in hand-offs and interpreter-lock switches than in
work. So the worker first tries it on the loop inside ``forbid_blocking()``; any step
that would block (a Git fetch or export, a chart download, helm or kustomize, parsing a
file not seen before, walking a large directory) calls ``check_blocking`` first, which
raises ``WouldBlock`` there, before doing anything, and the whole call is redone in a
thread. The guarded calls have no side effects but caches, so a retry is safe.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

_FORBIDDEN: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "hub_blocking_forbidden", default=False
)


class WouldBlock(Exception):
    """Raised inside ``forbid_blocking()`` by a step that would block; nothing was done.
    Not a ``HubError``: no user caused it and no handler of user errors may swallow it."""


@contextmanager
def forbid_blocking() -> Iterator[None]:
    """Within this block, ``check_blocking`` raises ``WouldBlock`` (this context only:
    threads and other tasks are not affected)."""
    token = _FORBIDDEN.set(True)
    try:
        yield
    finally:
        _FORBIDDEN.reset(token)


def check_blocking(what: str) -> None:
    """Call before work that may block; raises ``WouldBlock(what)`` inside
    ``forbid_blocking()``."""
    if _FORBIDDEN.get():
        raise WouldBlock(what)
