"""The hub's error base.

Every error a user can cause or fix is a ``HubError``: its message says what went
wrong, where (file, field, object) and what to do. The CLI prints it as one line
and exits with ``exit_code``. Anything else that escapes is a bug and keeps its
traceback.
"""

from __future__ import annotations


class HubError(Exception):
    """A failure the user can act on; printed without a traceback."""

    exit_code: int = 1


class HubUsageError(HubError):
    """Bad input on the command line or in a file the user named (exit 2)."""

    exit_code = 2
