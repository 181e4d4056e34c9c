"""The error base of the ``clusters`` package (registry, credentials, connections, sim)."""

from __future__ import annotations


class ClusterError(Exception):
    """A failure about a cluster the user can act on; printed without a traceback."""

    exit_code: int = 1


class ClusterUsageError(ClusterError):
    """Bad input: a kubeconfig, a label, a name (exit 2)."""

    exit_code = 2
