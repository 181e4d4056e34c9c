"""Argo CD declarative cluster Secrets: parse them, register them, write them.

A cluster Secret is a ``v1/Secret`` labelled ``argocd.argoproj.io/secret-type:
cluster`` whose keys (in ``stringData``, or base64 in ``data``) are ``name``,
``server``, ``config`` (JSON: ``bearerToken``, ``tlsClientConfig``,
``execProviderConfig``, ...), ``namespaces`` (comma-separated),
``clusterResources`` and ``project``; the Secret's own labels and annotations
are the cluster's. ``load_cluster_secrets`` parses a multi-document YAML file
into frozen dataclasses with errors naming the file and the document.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusters.errors import ClusterUsageError
from clusters.kubeconfig import (
    BearerToken,
    ClientCertificate,
    Credential,
    ExecPlugin,
    TLSSettings,
)
from clusters.registry import ClusterCredentials, ClusterRecord, NewCluster
from clusters.yamlload import YAML_READ_ERRORS, load_all_yaml, yaml_error_at
from hub.logs import redact

SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"
SECRET_TYPE_CLUSTER = "cluster"
DEFAULT_NAMESPACE = "argocd"
# kubectl copies the whole applied object, credentials included, into this annotation.
_DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})


@dataclass(frozen=True, kw_only=True)
class ArgoTLSClientConfig:
    insecure: bool = False
    server_name: str | None = None
    ca_data: bytes | None = None  # PEM
    cert_data: bytes | None = field(default=None, repr=False)  # PEM
    key_data: bytes | None = field(default=None, repr=False)  # PEM


@dataclass(frozen=True, kw_only=True)
class ArgoExecProviderConfig:
    command: str
    api_version: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    install_hint: str | None = None


@dataclass(frozen=True, kw_only=True)
class ArgoAWSAuthConfig:
    cluster_name: str | None = None
    role_arn: str | None = None
    profile: str | None = None


@dataclass(frozen=True, kw_only=True)
class ArgoClusterConfig:
    """The ``config`` key of a cluster Secret."""

    bearer_token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_client_config: ArgoTLSClientConfig = field(default_factory=ArgoTLSClientConfig)
    exec_provider_config: ArgoExecProviderConfig | None = None
    aws_auth_config: ArgoAWSAuthConfig | None = None

    @property
    def has_credential(self) -> bool:
        tls = self.tls_client_config
        return bool(
            self.bearer_token
            or (tls.cert_data and tls.key_data)
            or self.exec_provider_config
            or self.aws_auth_config
            or self.username
        )


@dataclass(frozen=True, kw_only=True)
class ArgoClusterSecret:
    """One cluster Secret. ``labels`` are the Secret's labels as written, including
    ``argocd.argoproj.io/secret-type`` (Argo CD's cluster generator sees them so)."""

    name: str
    server: str
    project: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    namespaces: tuple[str, ...] = ()
    cluster_resources: bool = False
    config: ArgoClusterConfig = field(default_factory=ArgoClusterConfig)
    secret_name: str | None = None
    secret_namespace: str | None = None


# ---------------------------------------------------------------- parsing


class _Doc:
    def __init__(self, path: Path, index: int, secret_name: str | None) -> None:
        self.path, self.index, self.secret_name = path, index, secret_name

    def fail(self, where: str, what: str) -> ClusterUsageError:
        named = f" (Secret {self.secret_name})" if self.secret_name else ""
        at = f": {where}" if where else ""
        return ClusterUsageError(f"{self.path} document {self.index}{named}{at}: {what}")


def _str(doc: _Doc, where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise doc.fail(where, "expected a string")
    return value


def _b64(doc: _Doc, where: str, value: Any) -> bytes:
    text = _str(doc, where, value)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise doc.fail(where, "not valid base64") from None


def _string_map(doc: _Doc, where: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise doc.fail(where, "expected a mapping")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise doc.fail(f"{where}.{key}", "expected a string value")
        out[key] = item
    return out


def _secret_values(doc: _Doc, secret: Mapping[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    data = secret.get("data")
    if data is not None:
        if not isinstance(data, dict):
            raise doc.fail("data", "expected a mapping")
        for key, raw in data.items():
            try:
                values[str(key)] = _b64(doc, f"data.{key}", raw).decode("utf-8")
            except UnicodeDecodeError:
                raise doc.fail(f"data.{key}", "not UTF-8 text") from None
    # As in the API server, stringData is written over data.
    values.update(_string_map(doc, "stringData", secret.get("stringData")))
    return values


def _parse_config(doc: _Doc, text: str | None) -> ArgoClusterConfig:
    if text is None or not text.strip():
        return ArgoClusterConfig()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise doc.fail("config", f"not valid JSON (line {exc.lineno} column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise doc.fail("config", "expected a JSON object")
    token = raw.get("bearerToken")
    if token is not None:
        token = _str(doc, "config.bearerToken", token)
        redact(token)
    password = raw.get("password")
    if password is not None:
        redact(_str(doc, "config.password", password))
    tls_raw = raw.get("tlsClientConfig") or {}
    if not isinstance(tls_raw, dict):
        raise doc.fail("config.tlsClientConfig", "expected an object")
    insecure = tls_raw.get("insecure", False)
    if not isinstance(insecure, bool):
        raise doc.fail("config.tlsClientConfig.insecure", "expected true or false")
    server_name = tls_raw.get("serverName") or None
    if server_name is not None:
        server_name = _str(doc, "config.tlsClientConfig.serverName", server_name)

    def data(key: str) -> bytes | None:
        value = tls_raw.get(key)
        return None if not value else _b64(doc, f"config.tlsClientConfig.{key}", value)

    key_data = data("keyData")
    if key_data:
        redact(key_data)
    tls = ArgoTLSClientConfig(
        insecure=insecure,
        server_name=server_name,
        ca_data=data("caData"),
        cert_data=data("certData"),
        key_data=key_data,
    )
    exec_cfg: ArgoExecProviderConfig | None = None
    exec_raw = raw.get("execProviderConfig")
    if exec_raw is not None:
        where = "config.execProviderConfig"
        if not isinstance(exec_raw, dict):
            raise doc.fail(where, "expected an object")
        args = exec_raw.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise doc.fail(f"{where}.args", "expected a list of strings")
        env = _string_map(doc, f"{where}.env", exec_raw.get("env"))
        for value in env.values():
            redact(value)
        hint = exec_raw.get("installHint")
        exec_cfg = ArgoExecProviderConfig(
            command=_str(doc, f"{where}.command", exec_raw.get("command")),
            api_version=_str(doc, f"{where}.apiVersion", exec_raw.get("apiVersion")),
            args=tuple(args),
            env=env,
            install_hint=hint if isinstance(hint, str) else None,
        )
    aws: ArgoAWSAuthConfig | None = None
    aws_raw = raw.get("awsAuthConfig")
    if aws_raw is not None:
        if not isinstance(aws_raw, dict):
            raise doc.fail("config.awsAuthConfig", "expected an object")
        aws = ArgoAWSAuthConfig(
            cluster_name=aws_raw.get("clusterName"),
            role_arn=aws_raw.get("roleARN"),
            profile=aws_raw.get("profile"),
        )
    username = raw.get("username")
    return ArgoClusterConfig(
        bearer_token=token or None,
        username=_str(doc, "config.username", username) if username is not None else None,
        password=password,
        tls_client_config=tls,
        exec_provider_config=exec_cfg,
        aws_auth_config=aws,
    )


def _parse_secret(path: Path, index: int, obj: Any) -> ArgoClusterSecret:
    doc = _Doc(path, index, None)
    if not isinstance(obj, dict):
        raise doc.fail("", "expected a Kubernetes object (a mapping)")
    meta = obj.get("metadata") or {}
    if not isinstance(meta, dict):
        raise doc.fail("metadata", "expected a mapping")
    secret_name = meta.get("name") if isinstance(meta.get("name"), str) else None
    doc = _Doc(path, index, secret_name)
    if obj.get("apiVersion") != "v1" or obj.get("kind") != "Secret":
        raise doc.fail(
            "",
            f"expected apiVersion v1, kind Secret (got {obj.get('apiVersion')}/{obj.get('kind')})",
        )
    labels = _string_map(doc, "metadata.labels", meta.get("labels"))
    if labels.get(SECRET_TYPE_LABEL) != SECRET_TYPE_CLUSTER:
        raise doc.fail(
            "metadata.labels", f"not an Argo CD cluster Secret (needs {SECRET_TYPE_LABEL}: cluster)"
        )
    annotations = _string_map(doc, "metadata.annotations", meta.get("annotations"))
    values = _secret_values(doc, obj)
    server = values.get("server", "").strip()
    if not server:
        raise doc.fail("server", "missing")
    if not server.startswith(("https://", "http://")):
        raise doc.fail("server", f"{server!r} is not an http(s) URL")
    name = values.get("name", "").strip()
    if not name:
        raise doc.fail("name", "missing")
    namespaces = tuple(ns.strip() for ns in values.get("namespaces", "").split(",") if ns.strip())
    cres_text = values.get("clusterResources", "false").strip().lower()
    if cres_text not in ("true", "false", ""):
        raise doc.fail("clusterResources", f"expected true or false, got {cres_text!r}")
    namespace = meta.get("namespace")
    return ArgoClusterSecret(
        name=name,
        server=server.rstrip("/"),
        project=values.get("project") or None,
        labels=labels,
        annotations={k: v for k, v in annotations.items() if k not in _DROPPED_ANNOTATIONS},
        namespaces=namespaces,
        cluster_resources=cres_text == "true",
        config=_parse_config(doc, values.get("config")),
        secret_name=secret_name,
        secret_namespace=namespace if isinstance(namespace, str) else None,
    )


def parse_cluster_secrets(text: str, path: Path) -> list[ArgoClusterSecret]:
    """Parse YAML text (one or more documents); ``path`` is only used in messages."""
    try:
        docs = load_all_yaml(text)
    except YAML_READ_ERRORS as exc:
        raise ClusterUsageError(f"{path}: not valid YAML{yaml_error_at(exc)}") from None
    secrets: list[ArgoClusterSecret] = []
    names: dict[str, int] = {}
    for index, obj in enumerate(docs, start=1):
        if obj is None:  # empty documents between `---` separators
            continue
        secret = _parse_secret(path, index, obj)
        if secret.name in names:
            raise _Doc(path, index, secret.secret_name).fail(
                "name", f"cluster {secret.name!r} is also defined in document {names[secret.name]}"
            )
        names[secret.name] = index
        secrets.append(secret)
    return secrets


def load_cluster_secrets(path: Path) -> list[ArgoClusterSecret]:
    """Every cluster Secret in the YAML file at ``path``, in file order."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClusterUsageError(f"{path}: no such file") from None
    except PermissionError:
        raise ClusterUsageError(f"{path}: permission denied") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClusterUsageError(f"{path}: cannot read: {type(exc).__name__}") from None
    return parse_cluster_secrets(text, Path(path))


# ---------------------------------------------------------------- to and from the registry


def to_new_cluster(secret: ArgoClusterSecret, source: str = "") -> NewCluster:
    """What ``hub cluster import`` registers for one Secret."""
    where = f"{source}: " if source else ""
    cfg = secret.config
    tls = cfg.tls_client_config
    credential: Credential
    if cfg.bearer_token:
        credential = BearerToken(token=cfg.bearer_token)
    elif tls.cert_data and tls.key_data:
        credential = ClientCertificate(cert_pem=tls.cert_data, key_pem=tls.key_data)
    elif cfg.exec_provider_config is not None:
        e = cfg.exec_provider_config
        credential = ExecPlugin(
            api_version=e.api_version,
            command=e.command,
            args=e.args,
            env=tuple(sorted(e.env.items())),
            install_hint=e.install_hint,
        )
    elif cfg.aws_auth_config is not None:
        raise ClusterUsageError(
            f"{where}cluster {secret.name!r}: awsAuthConfig is not supported; "
            "use an execProviderConfig running `aws eks get-token` instead"
        )
    elif cfg.username:
        raise ClusterUsageError(
            f"{where}cluster {secret.name!r}: basic auth (username/password) is not supported"
        )
    else:
        raise ClusterUsageError(
            f"{where}cluster {secret.name!r}: config has no credential (bearerToken, "
            "tlsClientConfig certData/keyData, or execProviderConfig)"
        )
    return NewCluster(
        name=secret.name,
        server=secret.server,
        tls=TLSSettings(ca_data=tls.ca_data, insecure=tls.insecure, server_name=tls.server_name),
        credential=credential,
        labels={k: v for k, v in secret.labels.items() if k != SECRET_TYPE_LABEL},
        annotations=dict(secret.annotations),
        namespaces=secret.namespaces,
        cluster_resources=secret.cluster_resources,
        project=secret.project,
    )


def to_secret_manifest(
    record: ClusterRecord,
    tls: TLSSettings,
    credentials: ClusterCredentials | None = None,
    *,
    namespace: str = DEFAULT_NAMESPACE,
) -> dict[str, Any]:
    """An Argo CD cluster Secret for ``record``; credentials only when given."""
    tls_cfg: dict[str, Any] = {"insecure": tls.insecure}
    if tls.server_name:
        tls_cfg["serverName"] = tls.server_name
    if tls.ca_data:
        tls_cfg["caData"] = base64.b64encode(tls.ca_data).decode("ascii")
    config: dict[str, Any] = {}
    if credentials is not None:
        cred = credentials.credential
        if isinstance(cred, BearerToken):
            config["bearerToken"] = cred.token
        elif isinstance(cred, ClientCertificate):
            tls_cfg["certData"] = base64.b64encode(cred.cert_pem).decode("ascii")
            tls_cfg["keyData"] = base64.b64encode(cred.key_pem).decode("ascii")
        else:
            exec_cfg: dict[str, Any] = {
                "command": cred.command,
                "args": list(cred.args),
                "env": dict(cred.env),
                "apiVersion": cred.api_version,
            }
            if cred.install_hint:
                exec_cfg["installHint"] = cred.install_hint
            config["execProviderConfig"] = exec_cfg
    config["tlsClientConfig"] = tls_cfg
    string_data: dict[str, str] = {
        "name": record.name,
        "server": record.server,
        "config": json.dumps(config, sort_keys=True),
    }
    if record.namespaces:
        string_data["namespaces"] = ",".join(record.namespaces)
        string_data["clusterResources"] = "true" if record.cluster_resources else "false"
    if record.project:
        string_data["project"] = record.project
    metadata: dict[str, Any] = {
        "name": f"cluster-{record.name}",
        "namespace": namespace,
        "labels": {**dict(record.labels), SECRET_TYPE_LABEL: SECRET_TYPE_CLUSTER},
    }
    if record.annotations:
        metadata["annotations"] = dict(record.annotations)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "stringData": string_data,
    }
