"""Read one context of a kubeconfig into typed connection settings and a credential.

Everything a context refers to (CA file, token file, client certificate and key
files) is read here, once, so the registry stores self-contained settings and
never depends on files that may move or change later. Exec plugins are the one
exception by nature: their command runs each time a connection needs a token.

Errors name the kubeconfig file and the context, cluster or user entry, never
the secret they were reading.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from clusters.errors import ClusterUsageError
from clusters.yamlload import YAML_READ_ERRORS, load_yaml, yaml_error_at
from hub.logs import redact

CredentialKind = Literal["token", "client-certificate", "exec"]


@dataclass(frozen=True, kw_only=True)
class TLSSettings:
    """How to trust the API server; nothing here is secret."""

    ca_data: bytes | None = None  # PEM, as in certificate-authority-data
    insecure: bool = False  # insecure-skip-tls-verify
    server_name: str | None = None  # tls-server-name (SNI and verification name)


@dataclass(frozen=True, kw_only=True)
class BearerToken:
    token: str = field(repr=False)

    kind: CredentialKind = field(default="token", init=False)


@dataclass(frozen=True, kw_only=True)
class ClientCertificate:
    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)

    kind: CredentialKind = field(default="client-certificate", init=False)


@dataclass(frozen=True, kw_only=True)
class ExecPlugin:
    """A client-go credential plugin (``users[].user.exec``); env values may be secret."""

    api_version: str
    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    provide_cluster_info: bool = False
    install_hint: str | None = None

    kind: CredentialKind = field(default="exec", init=False)


Credential = BearerToken | ClientCertificate | ExecPlugin


@dataclass(frozen=True, kw_only=True)
class KubeconfigContext:
    """One resolved context: where the server is, how to trust it, how to authenticate."""

    path: Path
    context: str
    server: str
    tls: TLSSettings
    credential: Credential


def credential_to_bytes(credential: Credential) -> bytes:
    """The plaintext that gets encrypted; JSON so it outlives Python object layouts."""
    body: dict[str, Any]
    if isinstance(credential, BearerToken):
        body = {"kind": "token", "token": credential.token}
    elif isinstance(credential, ClientCertificate):
        body = {
            "kind": "client-certificate",
            "certPem": credential.cert_pem.decode("ascii"),
            "keyPem": credential.key_pem.decode("ascii"),
        }
    else:
        body = {
            "kind": "exec",
            "apiVersion": credential.api_version,
            "command": credential.command,
            "args": list(credential.args),
            "env": [{"name": k, "value": v} for k, v in credential.env],
            "provideClusterInfo": credential.provide_cluster_info,
            "installHint": credential.install_hint,
        }
    return json.dumps(body, sort_keys=True).encode("utf-8")


def credential_from_bytes(data: bytes) -> Credential:
    """Inverse of ``credential_to_bytes``; registers the secret parts for log redaction."""
    body = json.loads(data)
    kind = body["kind"]
    credential: Credential
    if kind == "token":
        credential = BearerToken(token=body["token"])
        redact(credential.token)
    elif kind == "client-certificate":
        credential = ClientCertificate(
            cert_pem=body["certPem"].encode("ascii"), key_pem=body["keyPem"].encode("ascii")
        )
        redact(credential.key_pem)
    elif kind == "exec":
        credential = ExecPlugin(
            api_version=body["apiVersion"],
            command=body["command"],
            args=tuple(body["args"]),
            env=tuple((e["name"], e["value"]) for e in body["env"]),
            provide_cluster_info=bool(body["provideClusterInfo"]),
            install_hint=body.get("installHint"),
        )
        for _, value in credential.env:
            redact(value)
    else:
        raise ValueError(f"unknown credential kind {kind!r}")
    return credential


def default_kubeconfig_path() -> Path:
    """``$KUBECONFIG`` (one file) else ``~/.kube/config``, as kubectl would pick."""
    env = os.environ.get("KUBECONFIG", "")
    if env:
        paths = [p for p in env.split(os.pathsep) if p]
        if len(paths) > 1:
            raise ClusterUsageError(
                f"KUBECONFIG lists {len(paths)} files; name the one to read with --kubeconfig FILE"
            )
        if paths:
            return Path(paths[0]).expanduser()
    return Path.home() / ".kube" / "config"


class _Reader:
    """Reads entries of one kubeconfig, with error messages that say where."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent

    def fail(self, where: str, what: str) -> ClusterUsageError:
        return ClusterUsageError(f"kubeconfig {self.path}: {where}: {what}")

    def load(self) -> Mapping[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ClusterUsageError(
                f"kubeconfig {self.path}: no such file; pass an existing file with --kubeconfig"
            ) from None
        except IsADirectoryError:
            raise ClusterUsageError(f"kubeconfig {self.path}: is a directory, not a file") from None
        except PermissionError:
            raise ClusterUsageError(
                f"kubeconfig {self.path}: permission denied; make it readable by this user"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ClusterUsageError(
                f"kubeconfig {self.path}: cannot read: {type(exc).__name__}"
            ) from None
        try:
            doc = load_yaml(text)
        except YAML_READ_ERRORS as exc:
            raise ClusterUsageError(
                f"kubeconfig {self.path}: not valid YAML{yaml_error_at(exc)}"
            ) from None
        if not isinstance(doc, dict):
            raise ClusterUsageError(
                f"kubeconfig {self.path}: not a kubeconfig (expected a mapping)"
            )
        return doc

    def named(self, doc: Mapping[str, Any], section: str, name: str, ref: str) -> Mapping[str, Any]:
        entries = doc.get(section) or []
        if not isinstance(entries, list):
            raise self.fail(section, "expected a list")
        singular = section[:-1]
        for i, entry in enumerate(entries):
            if isinstance(entry, dict) and entry.get("name") == name:
                body = entry.get(singular)
                if body is None:
                    return {}
                if not isinstance(body, dict):
                    raise self.fail(f"{section}[{i}] ({name})", f"{singular} must be a mapping")
                return body
        raise self.fail(ref, f"refers to {singular} {name!r}, which is not in {section}")

    def file_or_data(
        self, where: str, entry: Mapping[str, Any], file_key: str, data_key: str
    ) -> bytes | None:
        """``X-data`` (base64) wins over ``X`` (a file), as in client-go."""
        data = entry.get(data_key)
        if data:
            if not isinstance(data, str):
                raise self.fail(f"{where}.{data_key}", "expected a base64 string")
            try:
                return base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise self.fail(f"{where}.{data_key}", "not valid base64") from None
        name = entry.get(file_key)
        if name:
            if not isinstance(name, str):
                raise self.fail(f"{where}.{file_key}", "expected a file path")
            return self.read_file(f"{where}.{file_key}", name)
        return None

    def read_file(self, where: str, name: str) -> bytes:
        path = self.resolve(name)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise self.fail(where, f"file {path} does not exist") from None
        except PermissionError:
            raise self.fail(where, f"file {path} is not readable (permission denied)") from None
        except OSError as exc:
            raise self.fail(where, f"cannot read file {path}: {type(exc).__name__}") from None

    def resolve(self, name: str) -> Path:
        # Relative paths in a kubeconfig are relative to the kubeconfig's directory.
        path = Path(name).expanduser()
        return path if path.is_absolute() else self.base / path


def read_context(path: Path, context: str | None = None) -> KubeconfigContext:
    """Resolve ``context`` (default: ``current-context``) of the kubeconfig at ``path``."""
    reader = _Reader(path)
    doc = reader.load()
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise ClusterUsageError(
            f"kubeconfig {path}: no current-context is set; choose one with --context"
        )
    if not isinstance(ctx_name, str):
        raise reader.fail("current-context", "expected a string")
    contexts = doc.get("contexts") or []
    if not isinstance(contexts, list):
        raise reader.fail("contexts", "expected a list")
    ctx_entry = next(
        (c for c in contexts if isinstance(c, dict) and c.get("name") == ctx_name), None
    )
    if ctx_entry is None:
        known = sorted(str(c.get("name")) for c in contexts if isinstance(c, dict))
        hint = f" (contexts: {', '.join(known)})" if known else " (it has no contexts)"
        raise ClusterUsageError(f"kubeconfig {path}: context {ctx_name!r} not found{hint}")
    ctx = ctx_entry.get("context")
    if not isinstance(ctx, dict):
        raise reader.fail(f"context {ctx_name!r}", "has no context body")
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if not isinstance(cluster_name, str) or not cluster_name:
        raise reader.fail(f"context {ctx_name!r}", "names no cluster")
    cluster = reader.named(doc, "clusters", cluster_name, f"context {ctx_name!r}")
    where = f"cluster {cluster_name!r}"
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise reader.fail(where, "has no server URL")
    if not server.startswith(("https://", "http://")):
        raise reader.fail(where, f"server {server!r} is not an http(s) URL")
    insecure = cluster.get("insecure-skip-tls-verify", False)
    if not isinstance(insecure, bool):
        raise reader.fail(f"{where}.insecure-skip-tls-verify", "expected true or false")
    ca = reader.file_or_data(where, cluster, "certificate-authority", "certificate-authority-data")
    if ca is not None:
        ca = _check_ca(reader, where, ca)
    server_name = cluster.get("tls-server-name")
    if server_name is not None and not isinstance(server_name, str):
        raise reader.fail(f"{where}.tls-server-name", "expected a host name")
    if not isinstance(user_name, str) or not user_name:
        raise ClusterUsageError(
            f"kubeconfig {path}: context {ctx_name!r} has no credential (it names no user)"
        )
    user = reader.named(doc, "users", user_name, f"context {ctx_name!r}")
    credential = _read_credential(reader, ctx_name, user_name, user)
    return KubeconfigContext(
        path=path,
        context=ctx_name,
        server=server.rstrip("/"),
        tls=TLSSettings(ca_data=ca, insecure=insecure, server_name=server_name or None),
        credential=credential,
    )


def _check_ca(reader: _Reader, where: str, data: bytes) -> bytes:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        try:
            cert = x509.load_der_x509_certificate(data)
        except ValueError:
            raise reader.fail(
                where, "certificate authority is not a PEM or DER certificate"
            ) from None
        return cert.public_bytes(serialization.Encoding.PEM)
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _read_credential(
    reader: _Reader, ctx_name: str, user_name: str, user: Mapping[str, Any]
) -> Credential:
    where = f"user {user_name!r}"
    token = user.get("token")
    if token:
        if not isinstance(token, str):
            raise reader.fail(f"{where}.token", "expected a string")
        redact(token)
        return BearerToken(token=token)
    token_file = user.get("tokenFile")
    if token_file:
        if not isinstance(token_file, str):
            raise reader.fail(f"{where}.tokenFile", "expected a file path")
        raw = reader.read_file(f"{where}.tokenFile", token_file)
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise reader.fail(f"{where}.tokenFile", "token file is not UTF-8 text") from None
        if not text:
            raise reader.fail(f"{where}.tokenFile", "token file is empty")
        redact(text)
        return BearerToken(token=text)
    cert = reader.file_or_data(where, user, "client-certificate", "client-certificate-data")
    key = reader.file_or_data(where, user, "client-key", "client-key-data")
    if cert is not None or key is not None:
        if cert is None or key is None:
            missing = "client-key" if key is None else "client-certificate"
            raise reader.fail(where, f"has a client certificate or key but no {missing}")
        if key:
            redact(key)
        return _check_client_pair(reader, where, cert, key)
    exec_cfg = user.get("exec")
    if exec_cfg:
        return _read_exec(reader, f"{where}.exec", exec_cfg)
    if user.get("auth-provider"):
        raise reader.fail(
            where,
            "auth-provider plugins are not supported; use a token, client certificate or exec plugin",
        )
    if user.get("username") or user.get("password"):
        raise reader.fail(
            where, "basic auth is not supported; use a token, client certificate or exec plugin"
        )
    raise ClusterUsageError(
        f"kubeconfig {reader.path}: context {ctx_name!r} has no credential "
        f"(user {user_name!r} has no token, tokenFile, client certificate or exec plugin)"
    )


def _check_client_pair(reader: _Reader, where: str, cert: bytes, key: bytes) -> ClientCertificate:
    try:
        parsed = x509.load_pem_x509_certificate(cert)
    except ValueError:
        raise reader.fail(where, "client certificate is not a PEM certificate") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise reader.fail(where, "client key is not an unencrypted PEM private key") from None
    pub = parsed.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    mine = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if pub != mine:
        raise reader.fail(where, "client key does not match the client certificate")
    return ClientCertificate(cert_pem=cert, key_pem=key)


def _read_exec(reader: _Reader, where: str, cfg: Any) -> ExecPlugin:
    if not isinstance(cfg, dict):
        raise reader.fail(where, "expected a mapping")
    api_version = cfg.get("apiVersion")
    if not isinstance(api_version, str) or not api_version.startswith(
        "client.authentication.k8s.io/"
    ):
        raise reader.fail(
            f"{where}.apiVersion", "expected client.authentication.k8s.io/v1 or v1beta1"
        )
    command = cfg.get("command")
    if not isinstance(command, str) or not command:
        raise reader.fail(f"{where}.command", "missing")
    if os.sep in command and not os.path.isabs(command):
        # client-go resolves a relative command path against the kubeconfig's directory.
        command = str(reader.resolve(command))
    args = cfg.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise reader.fail(f"{where}.args", "expected a list of strings")
    env_items = cfg.get("env") or []
    env: list[tuple[str, str]] = []
    if not isinstance(env_items, list):
        raise reader.fail(f"{where}.env", "expected a list of {name, value}")
    for i, item in enumerate(env_items):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("value"), str)
        ):
            raise reader.fail(f"{where}.env[{i}]", "expected {name: string, value: string}")
        redact(item["value"])
        env.append((item["name"], item["value"]))
    hint = cfg.get("installHint")
    return ExecPlugin(
        api_version=api_version,
        command=command,
        args=tuple(args),
        env=tuple(env),
        provide_cluster_info=bool(cfg.get("provideClusterInfo", False)),
        install_hint=hint if isinstance(hint, str) else None,
    )
