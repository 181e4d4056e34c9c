"""Helpers for the cluster-registry unit tests: certificates and kubeconfig files."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_cert(common_name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate and its unencrypted private key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


WriteKubeconfig = Callable[..., Path]


@pytest.fixture
def write_kubeconfig(tmp_path: Path) -> WriteKubeconfig:
    """Write a one-context kubeconfig; keyword arguments override the user/cluster entries."""

    def write(
        *,
        user: dict[str, Any] | None = None,
        cluster: dict[str, Any] | None = None,
        context: str = "ctx",
        current: str | None = "ctx",
        name: str = "kubeconfig",
    ) -> Path:
        doc: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "c1",
                    "cluster": cluster
                    if cluster is not None
                    else {"server": "https://127.0.0.1:6443"},
                }
            ],
            "users": [
                {"name": "u1", "user": user if user is not None else {"token": "tok-123456"}}
            ],
            "contexts": [{"name": context, "context": {"cluster": "c1", "user": "u1"}}],
        }
        if current is not None:
            doc["current-context"] = current
        path = tmp_path / name
        path.write_text(yaml.safe_dump(doc))
        return path

    return write
