"""Kubeconfig files for the simulated clusters: one context per cluster, named after it."""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterEntry:
    name: str
    server: str
    token: str


def build_kubeconfig(entries: Sequence[ClusterEntry], ca_pem: bytes) -> dict[str, Any]:
    """A kubeconfig with a cluster, user and context per entry; the first is current."""
    ca_data = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {"name": e.name, "cluster": {"server": e.server, "certificate-authority-data": ca_data}}
            for e in entries
        ],
        "users": [{"name": f"{e.name}-admin", "user": {"token": e.token}} for e in entries],
        "contexts": [
            {"name": e.name, "context": {"cluster": e.name, "user": f"{e.name}-admin"}}
            for e in entries
        ],
        "current-context": entries[0].name if entries else "",
    }


def write_kubeconfig(path: Path, entries: Sequence[ClusterEntry], ca_pem: bytes) -> Path:
    """Write the kubeconfig atomically with mode 0600 (it holds bearer tokens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(build_kubeconfig(entries, ca_pem), fh, sort_keys=False)
    os.replace(tmp, path)
    return path
