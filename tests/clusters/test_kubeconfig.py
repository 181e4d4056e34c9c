"""Reading a kubeconfig context: every credential form, and one clear error per bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clusters.errors import ClusterUsageError
from clusters.kubeconfig import (
    BearerToken,
    ClientCertificate,
    ExecPlugin,
    credential_from_bytes,
    credential_to_bytes,
    read_context,
)
from tests.clusters.conftest import WriteKubeconfig, b64, make_cert

SERVER = "https://127.0.0.1:6443"


def test_a_token_context_gives_server_ca_and_token(write_kubeconfig: WriteKubeconfig) -> None:
    ca, _ = make_cert("ca")
    path = write_kubeconfig(
        cluster={"server": SERVER + "/", "certificate-authority-data": b64(ca)},
        user={"token": "tok-abcdef"},
    )
    ctx = read_context(path)
    assert ctx.context == "ctx"
    assert ctx.server == SERVER
    assert ctx.tls.ca_data == ca
    assert not ctx.tls.insecure
    assert ctx.credential == BearerToken(token="tok-abcdef")


def test_files_are_resolved_relative_to_the_kubeconfig(
    write_kubeconfig: WriteKubeconfig, tmp_path: Path
) -> None:
    ca, _ = make_cert("ca")
    cert, key = make_cert("client")
    (tmp_path / "ca.crt").write_bytes(ca)
    (tmp_path / "c.crt").write_bytes(cert)
    (tmp_path / "c.key").write_bytes(key)
    path = write_kubeconfig(
        cluster={"server": SERVER, "certificate-authority": "ca.crt", "tls-server-name": "api"},
        user={"client-certificate": "c.crt", "client-key": str(tmp_path / "c.key")},
    )
    ctx = read_context(path)
    assert ctx.tls.ca_data == ca and ctx.tls.server_name == "api"
    assert ctx.credential == ClientCertificate(cert_pem=cert, key_pem=key)


def test_embedded_client_certificate_data_is_read(write_kubeconfig: WriteKubeconfig) -> None:
    cert, key = make_cert("client")
    path = write_kubeconfig(
        cluster={"server": SERVER, "insecure-skip-tls-verify": True},
        user={"client-certificate-data": b64(cert), "client-key-data": b64(key)},
    )
    ctx = read_context(path)
    assert ctx.tls.insecure
    assert isinstance(ctx.credential, ClientCertificate)


def test_a_token_file_is_read_and_stripped(
    write_kubeconfig: WriteKubeconfig, tmp_path: Path
) -> None:
    (tmp_path / "tok").write_text("tok-from-file\n")
    ctx = read_context(write_kubeconfig(user={"tokenFile": "tok"}))
    assert ctx.credential == BearerToken(token="tok-from-file")


def test_an_exec_plugin_is_kept_as_configuration(write_kubeconfig: WriteKubeconfig) -> None:
    path = write_kubeconfig(
        user={
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": "./bin/get-token",
                "args": ["--cluster", "x"],
                "env": [{"name": "SECRET_ENV", "value": "shh-123456"}],
                "provideClusterInfo": True,
            }
        }
    )
    cred = read_context(path).credential
    assert isinstance(cred, ExecPlugin)
    assert cred.command == str(path.parent / "bin" / "get-token")
    assert cred.args == ("--cluster", "x")
    assert cred.env == (("SECRET_ENV", "shh-123456"),)
    assert cred.provide_cluster_info
    assert "shh-123456" not in repr(cred)


def test_an_explicit_context_wins_over_the_current_one(tmp_path: Path) -> None:
    path = tmp_path / "kc"
    path.write_text(
        """
current-context: a
clusters:
- {name: ca, cluster: {server: "https://a:1"}}
- {name: cb, cluster: {server: "https://b:2"}}
users:
- {name: u, user: {token: tok-xyz123}}
contexts:
- {name: a, context: {cluster: ca, user: u}}
- {name: b, context: {cluster: cb, user: u}}
"""
    )
    assert read_context(path).server == "https://a:1"
    assert read_context(path, "b").server == "https://b:2"


@pytest.mark.parametrize(
    "credential",
    [
        BearerToken(token="t-123456"),
        ClientCertificate(cert_pem=b"-----CERT-----\n", key_pem=b"-----KEY-----\n"),
        ExecPlugin(
            api_version="client.authentication.k8s.io/v1",
            command="/bin/true",
            args=("a",),
            env=(("K", "V"),),
            provide_cluster_info=True,
            install_hint="install it",
        ),
    ],
)
def test_credentials_survive_serialisation(credential: object) -> None:
    assert credential_from_bytes(credential_to_bytes(credential)) == credential  # type: ignore[arg-type]


def test_secrets_do_not_show_in_credential_reprs() -> None:
    assert "t-123456" not in repr(BearerToken(token="t-123456"))
    assert "KEYDATA" not in repr(ClientCertificate(cert_pem=b"C", key_pem=b"KEYDATA"))


# ---------------------------------------------------------------- bad input


def test_a_missing_kubeconfig_is_named(tmp_path: Path) -> None:
    with pytest.raises(ClusterUsageError, match=f"kubeconfig {tmp_path / 'nope'}: no such file"):
        read_context(tmp_path / "nope")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_kubeconfig_is_named(write_kubeconfig: WriteKubeconfig) -> None:
    path = write_kubeconfig()
    path.chmod(0)
    with pytest.raises(ClusterUsageError, match="permission denied"):
        read_context(path)


def test_an_unknown_context_lists_the_known_ones(write_kubeconfig: WriteKubeconfig) -> None:
    with pytest.raises(ClusterUsageError, match=r"context 'other' not found \(contexts: ctx\)"):
        read_context(write_kubeconfig(), "other")


def test_no_current_context_asks_for_one(write_kubeconfig: WriteKubeconfig) -> None:
    with pytest.raises(
        ClusterUsageError, match="no current-context is set; choose one with --context"
    ):
        read_context(write_kubeconfig(current=None))


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ({}, "context 'ctx' has no credential"),
        ({"username": "a", "password": "b"}, "basic auth is not supported"),
        ({"auth-provider": {"name": "oidc"}}, "auth-provider plugins are not supported"),
        ({"client-certificate-data": "Zm9v"}, "no client-key"),
        ({"client-key-data": "Zm9v"}, "no client-certificate"),
        ({"client-certificate-data": "%%%", "client-key-data": "Zm9v"}, "not valid base64"),
        ({"client-certificate-data": "Zm9v", "client-key-data": "Zm9v"}, "not a PEM certificate"),
        ({"tokenFile": "missing-token"}, "missing-token does not exist"),
        ({"exec": {"command": "x"}}, "exec.apiVersion: expected"),
        (
            {"exec": {"apiVersion": "client.authentication.k8s.io/v1"}},
            "exec.command: missing",
        ),
    ],
)
def test_bad_credentials_are_refused_with_the_entry_named(
    write_kubeconfig: WriteKubeconfig, user: dict[str, object], message: str
) -> None:
    path = write_kubeconfig(user=user)
    with pytest.raises(ClusterUsageError, match=message) as info:
        read_context(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_a_client_key_that_does_not_match_its_certificate_is_refused(
    write_kubeconfig: WriteKubeconfig,
) -> None:
    cert, _ = make_cert("a")
    _, other_key = make_cert("b")
    path = write_kubeconfig(
        user={"client-certificate-data": b64(cert), "client-key-data": b64(other_key)}
    )
    with pytest.raises(ClusterUsageError, match="does not match") as info:
        read_context(path)
    assert b64(other_key) not in str(info.value)


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        ({}, "has no server URL"),
        ({"server": "ftp://x"}, "is not an http\\(s\\) URL"),
        ({"server": SERVER, "certificate-authority-data": b64(b"junk")}, "not a PEM or DER"),
        ({"server": SERVER, "certificate-authority": "/nonexistent/ca"}, "does not exist"),
        ({"server": SERVER, "insecure-skip-tls-verify": "yes"}, "expected true or false"),
    ],
)
def test_bad_cluster_entries_are_refused(
    write_kubeconfig: WriteKubeconfig, cluster: dict[str, object], message: str
) -> None:
    with pytest.raises(ClusterUsageError, match=message):
        read_context(write_kubeconfig(cluster=cluster))


@pytest.mark.parametrize("text", ["{ unclosed", "- just\n- a list\n", "42"])
def test_a_kubeconfig_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "kc"
    path.write_text(text)
    with pytest.raises(ClusterUsageError, match=f"kubeconfig {path}"):
        read_context(path)


def test_a_kubeconfig_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ClusterUsageError, match=f"kubeconfig {tmp_path}: is a directory"):
        read_context(tmp_path)
