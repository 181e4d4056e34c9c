"""Argo CD declarative cluster Secrets: parsing, errors naming file and document, round trip."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from clusters.argo import (
    SECRET_TYPE_LABEL,
    ArgoClusterSecret,
    load_cluster_secrets,
    parse_cluster_secrets,
    to_new_cluster,
    to_secret_manifest,
)
from clusters.errors import ClusterUsageError
from clusters.kubeconfig import BearerToken, ClientCertificate, ExecPlugin
from clusters.registry import ClusterCredentials, ClusterRecord
from tests.clusters.conftest import b64, make_cert

PATH = Path("clusters.yaml")

TWO_SECRETS = """\
apiVersion: v1
kind: Secret
metadata:
  name: prod-secret
  namespace: argocd
  labels:
    argocd.argoproj.io/secret-type: cluster
    env: prod
  annotations:
    team: platform
    kubectl.kubernetes.io/last-applied-configuration: '{"stringData": {"config": "tok"}}'
type: Opaque
stringData:
  name: prod
  server: https://prod.example.com:6443/
  namespaces: web, api
  clusterResources: "true"
  project: team-a
  config: |
    {"bearerToken": "tok-prod-123456",
     "tlsClientConfig": {"insecure": false, "caData": "%(ca)s", "serverName": "api.prod"}}
---
---
apiVersion: v1
kind: Secret
metadata:
  name: dev-secret
  labels: {argocd.argoproj.io/secret-type: cluster}
data:
  name: %(dev)s
  server: %(devserver)s
  config: %(devconfig)s
"""


def _two() -> str:
    ca, _ = make_cert("ca")
    return TWO_SECRETS % {
        "ca": b64(ca),
        "dev": b64(b"dev"),
        "devserver": b64(b"https://dev:6443"),
        "devconfig": b64(b'{"tlsClientConfig": {"insecure": true}}'),
    }


def test_a_multi_document_file_becomes_one_dataclass_per_secret() -> None:
    prod, dev = parse_cluster_secrets(_two(), PATH)
    assert prod.name == "prod" and prod.secret_name == "prod-secret"
    assert prod.server == "https://prod.example.com:6443"
    assert prod.namespaces == ("web", "api")
    assert prod.cluster_resources is True
    assert prod.project == "team-a"
    assert prod.labels == {SECRET_TYPE_LABEL: "cluster", "env": "prod"}
    assert prod.annotations == {"team": "platform"}  # kubectl's copy of the Secret is dropped
    assert prod.config.bearer_token == "tok-prod-123456"
    assert prod.config.tls_client_config.server_name == "api.prod"
    assert dev.name == "dev" and dev.server == "https://dev:6443"
    assert dev.config.tls_client_config.insecure is True
    assert not dev.config.has_credential
    assert "tok-prod-123456" not in repr(prod)


def test_load_cluster_secrets_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(_two())
    assert [s.name for s in load_cluster_secrets(path)] == ["prod", "dev"]


def _secret(**string_data: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "labels": {SECRET_TYPE_LABEL: "cluster"}},
            "stringData": string_data,
        }
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [", "clusters.yaml: not valid YAML at line"),
        ("- 1\n", "document 1: expected a Kubernetes object"),
        ("apiVersion: v1\nkind: ConfigMap\n", "document 1: expected apiVersion v1, kind Secret"),
        (
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n",
            r"document 1 \(Secret x\): metadata.labels: not an Argo CD cluster Secret",
        ),
        (_secret(name="a"), r"document 1 \(Secret s\): server: missing"),
        (_secret(server="https://a"), "name: missing"),
        (_secret(name="a", server="a.example.com"), "is not an http"),
        (_secret(name="a", server="https://a", config="{nope"), "config: not valid JSON"),
        (_secret(name="a", server="https://a", config="[]"), "config: expected a JSON object"),
        (
            _secret(name="a", server="https://a", clusterResources="maybe"),
            "clusterResources: expected true or false",
        ),
        (
            _secret(name="a", server="https://a", config='{"tlsClientConfig": {"caData": "%"}}'),
            "config.tlsClientConfig.caData: not valid base64",
        ),
        (
            _secret(name="a", server="https://a", config='{"execProviderConfig": {"command": 1}}'),
            "config.execProviderConfig.command: expected a string",
        ),
        (
            _secret(name="a", server="https://a") + "---\n" + _secret(name="a", server="https://b"),
            "document 2 .*cluster 'a' is also defined in document 1",
        ),
    ],
)
def test_bad_documents_are_refused_naming_file_and_document(text: str, message: str) -> None:
    with pytest.raises(ClusterUsageError, match=message) as info:
        parse_cluster_secrets(text, PATH)
    assert str(info.value).startswith("clusters.yaml")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ClusterUsageError, match=r"nope\.yaml: no such file"):
        load_cluster_secrets(tmp_path / "nope.yaml")


def test_credentials_convert_to_registry_credentials() -> None:
    cert, key = make_cert("client")
    config = {"tlsClientConfig": {"certData": b64(cert), "keyData": b64(key)}}
    (s,) = parse_cluster_secrets(
        _secret(name="a", server="https://a", config=json.dumps(config)), PATH
    )
    new = to_new_cluster(s)
    assert new.credential == ClientCertificate(cert_pem=cert, key_pem=key)
    assert SECRET_TYPE_LABEL not in new.labels

    exec_cfg = {
        "execProviderConfig": {
            "command": "aws",
            "args": ["eks"],
            "env": {"A": "b"},
            "apiVersion": "client.authentication.k8s.io/v1beta1",
        }
    }
    (e,) = parse_cluster_secrets(
        _secret(name="e", server="https://e", config=json.dumps(exec_cfg)), PATH
    )
    assert to_new_cluster(e).credential == ExecPlugin(
        api_version="client.authentication.k8s.io/v1beta1",
        command="aws",
        args=("eks",),
        env=(("A", "b"),),
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "config has no credential"),
        ({"awsAuthConfig": {"clusterName": "x"}}, "awsAuthConfig is not supported"),
        ({"username": "u", "password": "p"}, "basic auth"),
    ],
)
def test_secrets_without_a_usable_credential_cannot_be_imported(
    config: dict[str, object], message: str
) -> None:
    (s,) = parse_cluster_secrets(
        _secret(name="a", server="https://a", config=json.dumps(config)), PATH
    )
    with pytest.raises(ClusterUsageError, match=message):
        to_new_cluster(s, "f.yaml")


def test_export_then_parse_round_trips_and_hides_credentials_unless_asked() -> None:
    (prod, _dev) = parse_cluster_secrets(_two(), PATH)
    new = to_new_cluster(prod)
    record = ClusterRecord(
        name=new.name,
        server=new.server,
        labels=new.labels,
        annotations=new.annotations,
        namespaces=new.namespaces,
        cluster_resources=new.cluster_resources,
        project=new.project,
    )
    hidden = to_secret_manifest(record, new.tls)
    assert "tok-prod-123456" not in json.dumps(hidden)
    shown = to_secret_manifest(
        record,
        new.tls,
        ClusterCredentials(
            name="prod",
            server=new.server,
            tls=new.tls,
            credential=BearerToken(token="tok-prod-123456"),
            credential_rev="r",
        ),
    )
    (back,) = parse_cluster_secrets(yaml.safe_dump(shown), PATH)
    expected = ArgoClusterSecret(
        name="prod",
        server=prod.server,
        project="team-a",
        labels=prod.labels,
        annotations=prod.annotations,
        namespaces=("web", "api"),
        cluster_resources=True,
        config=prod.config,
        secret_name="cluster-prod",
        secret_namespace="argocd",
    )
    assert back == expected
    assert (
        base64.b64decode(json.loads(shown["stringData"]["config"])["tlsClientConfig"]["caData"])
        == new.tls.ca_data
    )
