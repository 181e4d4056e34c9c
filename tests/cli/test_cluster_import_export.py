"""``hub cluster import -f`` and ``hub cluster export`` (Argo CD cluster Secrets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from clusters.argo import load_cluster_secrets
from clusters.sim import SimServer
from tests.clusters.cli_support import Hub, token_of
from tests.conftest import KubeEnv


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    h = Hub(tmp_path / "home")
    h.ok("init")
    return h


def argo_secret(name: str, server: str, token: str, ca_b64: str, **extra: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"{name}-secret",
            "namespace": "argocd",
            "labels": {"argocd.argoproj.io/secret-type": "cluster", "env": "staging"},
            "annotations": {"team": "platform"},
        },
        "type": "Opaque",
        "stringData": {
            "name": name,
            "server": server,
            "config": json.dumps(
                {"bearerToken": token, "tlsClientConfig": {"insecure": False, "caData": ca_b64}}
            ),
            **extra,
        },
    }


def sim_secret_file(sim: SimServer, kube: KubeEnv, path: Path, **tokens: str) -> Path:
    import base64

    ca = base64.b64encode(sim.ca_pem).decode()
    docs = [
        argo_secret(
            name,
            sim.server_url(context),
            token or token_of(kube.kubeconfig, context),
            ca,
            namespaces="web,api",
            project="team-a",
        )
        for name, (context, token) in {
            "imp-a": (kube.contexts[0], tokens.get("a", "")),
            "imp-b": (kube.contexts[1], tokens.get("b", "")),
        }.items()
    ]
    path.write_text(yaml.safe_dump_all(docs))
    return path


def test_import_registers_every_secret_after_checking_it(
    hub: Hub, sim: SimServer, kube: KubeEnv, tmp_path: Path
) -> None:
    path = sim_secret_file(sim, kube, tmp_path / "secrets.yaml")
    run = hub.ok("cluster", "import", "-f", str(path))
    assert "cluster imp-a imported" in run.stdout and "cluster imp-b imported" in run.stdout
    records = {c["name"]: c for c in json.loads(hub.ok("cluster", "list", "-o", "json").stdout)}
    assert records["imp-a"]["labels"] == {"env": "staging"}
    assert records["imp-a"]["annotations"] == {"team": "platform"}
    assert records["imp-a"]["namespaces"] == ["web", "api"]
    assert records["imp-a"]["project"] == "team-a"
    assert records["imp-a"]["lastCheck"]["ok"] is True
    hub.ok("cluster", "check")


def test_import_is_all_or_nothing(hub: Hub, sim: SimServer, kube: KubeEnv, tmp_path: Path) -> None:
    path = sim_secret_file(sim, kube, tmp_path / "s.yaml", b="wrong-token-abcdef")
    run = hub("cluster", "import", "-f", str(path))
    assert run.exit_code == 1
    assert "cluster 'imp-b': unauthorised" in run.stderr
    assert "wrong-token-abcdef" not in run.output
    assert hub.names() == []
    hub.ok("cluster", "import", "-f", str(path), "--skip-check")
    assert hub.names() == ["imp-a", "imp-b"]
    run = hub("cluster", "import", "-f", str(path), "--skip-check")
    assert run.exit_code == 2 and "use --upsert" in run.stderr
    hub.ok("cluster", "import", "-f", str(path), "--skip-check", "--upsert")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kind: ConfigMap\napiVersion: v1\n", "document 1: expected apiVersion v1, kind Secret"),
        ("a: [", "not valid YAML"),
        (
            yaml.safe_dump(argo_secret("Bad_Name", "https://x", "t", "")),
            "cluster name 'Bad_Name' is not a DNS-1123 label",
        ),
    ],
)
def test_import_of_a_bad_file_exits_2_naming_it(
    hub: Hub, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    run = hub("cluster", "import", "-f", str(path), "--skip-check")
    assert run.exit_code == 2
    assert message in run.stderr
    assert hub.names() == []


def test_export_omits_credentials_unless_asked_and_round_trips(
    hub: Hub, sim: SimServer, kube: KubeEnv, tmp_path: Path
) -> None:
    token = token_of(kube.kubeconfig, kube.context)
    hub.ok(
        "cluster",
        "add",
        "orig",
        "--kubeconfig",
        str(kube.kubeconfig),
        "--context",
        kube.context,
        "--label",
        "env=prod",
        "--namespace",
        "web",
        "--project",
        "p",
    )
    plain = hub.ok("cluster", "export", "orig")
    assert token not in plain.output
    assert "--show-secrets" in plain.stderr
    (doc,) = yaml.safe_load_all(plain.stdout)
    assert doc["metadata"]["labels"] == {"env": "prod", "argocd.argoproj.io/secret-type": "cluster"}
    assert "bearerToken" not in json.loads(doc["stringData"]["config"])

    shown = hub.ok("cluster", "export", "orig", "--show-secrets")
    exported = tmp_path / "exported.yaml"
    exported.write_text(shown.stdout.replace("name: orig", "name: copy"))
    (secret,) = load_cluster_secrets(exported)
    assert secret.config.bearer_token == token
    other = Hub(tmp_path / "other")
    other.ok("init")
    other.ok("cluster", "import", "-f", str(exported))
    copy = json.loads(other.ok("cluster", "get", "copy", "-o", "json").stdout)
    orig = json.loads(hub.ok("cluster", "get", "orig", "-o", "json").stdout)
    for key in ("server", "labels", "namespaces", "project", "credentialKind", "serverVersion"):
        assert copy[key] == orig[key], key
    other.ok("cluster", "check", "copy")


def test_export_of_an_unknown_cluster_is_bad_input(hub: Hub) -> None:
    run = hub("cluster", "export", "ghost")
    assert run.exit_code == 2 and "'ghost' is not registered" in run.stderr
