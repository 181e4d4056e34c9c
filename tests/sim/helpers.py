"""Small helpers the simulator's end-to-end tests share (no fixtures here: see conftest)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes import client

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class RawResponse:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(
    api: client.ApiClient,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    auth: bool = True,
) -> RawResponse:
    """Send exactly these bytes (the typed client would re-encode them) with the client's TLS."""
    cfg = api.configuration
    all_headers = {"Content-Type": content_type, "Accept": "application/json"}
    token = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    if auth and token:
        prefix = (cfg.api_key_prefix or {}).get("authorization")
        all_headers["Authorization"] = (
            f"{prefix} {token}" if prefix and not token.startswith(prefix) else token
        )
    all_headers.update(headers or {})
    resp = api.rest_client.pool_manager.request(
        method, cfg.host + path, body=body, headers=all_headers, preload_content=True, timeout=30
    )
    return RawResponse(status=resp.status, body=resp.data, headers=dict(resp.headers))


# What kube-controller-manager puts in every namespace: a fresh namespace is never empty.
ROOT_CA = "kube-root-ca.crt"


def without_published(names: list[str]) -> list[str]:
    """``names`` without the ConfigMap every namespace gets (it may or may not be there yet)."""
    return [n for n in names if n != ROOT_CA]


def eventually(
    check: Callable[[], T | None], *, timeout: float = 15.0, interval: float = 0.05
) -> T:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def configmap(
    name: str, data: dict[str, str] | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {}}


def deployment(name: str, replicas: int = 1, image: str = "nginx:1.27") -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }
