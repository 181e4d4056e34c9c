"""``clusters.connect`` end to end against hub sim: real requests through the cached clients."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from clusters.connect import connect
from clusters.kubeconfig import ClientCertificate, read_context
from clusters.registry import NewCluster, Registry
from hub.home import init_home, open_registry
from tests.clusters.conftest import make_cert
from tests.conftest import KubeEnv


@pytest.fixture
def registry(tmp_path: Path, kube: KubeEnv) -> Iterator[Registry]:
    init_home(tmp_path / "home", env={})
    reg = open_registry(tmp_path / "home")
    for context in kube.contexts[:2]:
        ctx = read_context(kube.kubeconfig, context)
        reg.add(NewCluster(name=context, server=ctx.server, tls=ctx.tls, credential=ctx.credential))
    yield reg
    reg.close()


def test_a_connection_serves_typed_apis(registry: Registry, kube: KubeEnv) -> None:
    conn = connect(registry, kube.contexts[0])
    namespaces = client.CoreV1Api(conn.api_client).list_namespace().items
    names = [ns.metadata.name for ns in namespaces if ns.metadata is not None]
    assert "default" in names
    assert conn.version().startswith("v1.")


def test_each_cluster_gets_its_own_client(registry: Registry, kube: KubeEnv) -> None:
    if len(kube.contexts) < 2:
        pytest.skip("needs two clusters (HUB_E2E_CONTEXTS=a,b)")
    a, b = (connect(registry, name) for name in kube.contexts[:2])
    assert a is not b
    assert a.configuration.host != b.configuration.host


def test_threads_share_one_cached_connection(registry: Registry, kube: KubeEnv) -> None:
    got: list[object] = []
    lock = threading.Lock()

    def work() -> None:
        conn = connect(registry, kube.contexts[0])
        conn.version()
        with lock:
            got.append(conn)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 6
    assert all(c is connect(registry, kube.contexts[0]) for c in got)


def test_an_upserted_credential_takes_effect_on_the_next_connect(
    registry: Registry, kube: KubeEnv
) -> None:
    name = kube.contexts[0]
    first = connect(registry, name)
    first.version()
    ctx = read_context(kube.kubeconfig, name)
    cert, key = make_cert("someone")
    registry.add(
        NewCluster(
            name=name,
            server=ctx.server,
            tls=ctx.tls,
            credential=ClientCertificate(cert_pem=cert, key_pem=key),
        ),
        upsert=True,
        check=False,
    )
    second = connect(registry, name)
    assert second is not first
    # The TLS handshake loads the client certificate from the in-memory files. A real
    # cluster refuses a certificate its CA did not sign (401); the simulator accepts only
    # bearer tokens, so the request is system:anonymous, whom kubeadm's RBAC lets read
    # /version but nothing else (403). Either way the first connection's token is gone.
    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(second.api_client).list_namespace()
    assert err.value.status in (401, 403)
