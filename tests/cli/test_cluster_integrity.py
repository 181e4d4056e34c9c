"""Cluster records that were tampered with, corrupted or duplicated fail cleanly.

Issue 11 items 7, 10 (corrupt row), 11 and 12: one API server under two names is refused
unless a reason is given; a credential is sealed to its server and TLS settings, so editing
the clear ``server`` column sends nothing anywhere; ``hub cluster check`` reports every
record it cannot open instead of stopping at the first.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from clusters.crypto import Keyring, MasterKey
from clusters.kubeconfig import credential_to_bytes, read_context
from clusters.registry import Registry
from hub.home import load_keyring
from hub.store import Store
from tests.clusters.cli_support import Hub
from tests.conftest import KubeEnv


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    h = Hub(tmp_path / "home")
    h.ok("init")
    return h


def add(hub: Hub, kube: KubeEnv, name: str, context: str, *extra: str) -> None:
    hub.ok("cluster", "add", name, "--kubeconfig", str(kube.kubeconfig), "--context", context,
           *extra)  # fmt: skip


def sql(hub: Hub, statement: str, *params: object) -> None:
    """What someone with write access to the database file could do."""
    db = sqlite3.connect(hub.home / "hub.db")
    try:
        db.execute(statement, params)
        db.commit()
    finally:
        db.close()


class Listener:
    """A plain TCP listener on loopback that counts connections and bytes received."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.settimeout(1)
            with contextlib.suppress(OSError):
                self.received += conn.recv(65536)
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    one = Listener()
    yield one
    one.close()


# ---------------------------------------------------------------- item 12: bound credentials


def test_editing_the_server_column_sends_the_credential_nowhere(
    hub: Hub, kube: KubeEnv, listener: Listener
) -> None:
    add(hub, kube, "prod", kube.context)
    sql(
        hub,
        "UPDATE clusters SET server = ? WHERE name = 'prod'",
        f"http://127.0.0.1:{listener.port}",
    )
    run = hub("cluster", "check", "prod")
    assert run.exit_code == 1, run.output
    assert "credential of cluster prod does not match this cluster's server" in run.stdout
    assert "re-add the cluster" in run.stdout
    assert "Traceback" not in run.output
    export = hub("cluster", "export", "prod", "--show-secrets")
    assert export.exit_code == 1 and "does not match this cluster's server" in export.stderr
    assert listener.connections == 0 and listener.received == b""


def test_editing_the_tls_columns_breaks_the_seal_too(hub: Hub, kube: KubeEnv) -> None:
    add(hub, kube, "prod", kube.context)
    sql(hub, "UPDATE clusters SET tls_insecure = 1 - tls_insecure WHERE name = 'prod'")
    run = hub("cluster", "check", "prod")
    assert run.exit_code == 1 and "does not match this cluster's server or TLS" in run.stdout


def test_an_old_unbound_record_still_opens_and_is_resealed_bound(
    hub: Hub, kube: KubeEnv, tmp_path: Path
) -> None:
    """Records sealed before envelope version 2 keep working; their next write binds them."""
    from clusters import crypto

    add(hub, kube, "prod", kube.context)
    ctx = read_context(kube.kubeconfig, kube.context)
    keyring = load_keyring(hub.home, env={})
    old = crypto.seal(keyring.primary, "prod", credential_to_bytes(ctx.credential))
    assert old.version == 1
    sql(hub, "UPDATE clusters SET wrapped_key = ?, nonce = ?, ciphertext = ? WHERE name = 'prod'",
        old.wrapped_key, old.nonce, old.ciphertext)  # fmt: skip
    hub.ok("cluster", "check", "prod")
    with Store.open(hub.home / "hub.db") as store:
        stored = store.get_cluster("prod")
    assert stored is not None and stored.envelope.version == 2


def test_key_rotation_reseals_old_records_bound(hub: Hub, kube: KubeEnv) -> None:
    from clusters import crypto

    add(hub, kube, "prod", kube.context)
    ctx = read_context(kube.kubeconfig, kube.context)
    old = crypto.seal(
        load_keyring(hub.home, env={}).primary, "prod", credential_to_bytes(ctx.credential)
    )
    sql(hub, "UPDATE clusters SET wrapped_key = ?, nonce = ?, ciphertext = ? WHERE name = 'prod'",
        old.wrapped_key, old.nonce, old.ciphertext)  # fmt: skip
    hub.ok("key", "rotate")
    with Store.open(hub.home / "hub.db") as store:
        stored = store.get_cluster("prod")
    assert stored is not None and stored.envelope.version == 2
    hub.ok("cluster", "check", "prod")


def test_stripping_the_version_byte_does_not_downgrade_a_record(hub: Hub, kube: KubeEnv) -> None:
    add(hub, kube, "prod", kube.context)
    sql(hub, "UPDATE clusters SET wrapped_key = substr(wrapped_key, 2) WHERE name = 'prod'")
    run = hub("cluster", "check", "prod")
    assert run.exit_code == 1 and "cannot decrypt credentials for cluster prod" in run.stdout


# ---------------------------------------------------------------- items 10 and 11


def test_check_reports_every_unreadable_record_and_still_checks_the_rest(
    hub: Hub, kube: KubeEnv
) -> None:
    contexts = kube.contexts[:3]
    for name, context in zip(("a", "b", "c"), contexts, strict=True):
        add(hub, kube, name, context)
    sql(hub, "UPDATE clusters SET nonce = x'0102' WHERE name = 'a'")  # a corrupt row
    sql(hub, "UPDATE clusters SET key_id = '0000000000000000' WHERE name = 'b'")  # other key
    run = hub("cluster", "check", "-o", "json")
    assert run.exit_code == 1, run.output
    assert "Traceback" not in run.output
    results = {r["name"]: r for r in json.loads(run.stdout)}
    assert set(results) == {"a", "b", "c"}
    assert not results["a"]["ok"]
    assert (
        "credential of cluster a is corrupt (nonce is 2 bytes, expected 12)"
        in (results["a"]["message"])
    )
    assert not results["b"]["ok"] and "wrong master key" in results["b"]["message"]
    assert results["c"]["ok"] is True
    assert "2 cluster(s) failed the check: a, b" in run.stderr
    records = {c["name"]: c for c in yaml.safe_load(hub.ok("cluster", "list", "-o", "yaml").stdout)}
    assert records["c"]["lastCheck"]["ok"] is True


def test_a_corrupt_row_is_a_clear_error_when_connecting(hub: Hub, kube: KubeEnv) -> None:
    add(hub, kube, "a", kube.context)
    sql(hub, "UPDATE clusters SET nonce = x'01' WHERE name = 'a'")
    run = hub("cluster", "export", "a", "--show-secrets")
    assert run.exit_code == 1
    assert run.stderr.strip().splitlines() == [
        "error: the stored credential of cluster a is corrupt (nonce is 1 bytes, expected 12); "
        "re-add the cluster: `hub cluster add a --upsert ...`"
    ]


# ---------------------------------------------------------------- item 7: one server, one name


def test_the_same_server_under_a_second_name_is_refused(hub: Hub, kube: KubeEnv) -> None:
    add(hub, kube, "dev", kube.context)
    run = hub("cluster", "add", "dev2", "--kubeconfig", str(kube.kubeconfig),
              "--context", kube.context)  # fmt: skip
    assert run.exit_code == 2, run.output
    assert "already registered as cluster 'dev'" in run.stderr
    assert "--allow-same-server REASON" in run.stderr
    assert hub.names() == ["dev"]
    # --upsert of the same name is not a second name.
    add(hub, kube, "dev", kube.context, "--upsert")
    add(hub, kube, "dev2", kube.context, "--allow-same-server", "blue/green cut-over")
    record = yaml.safe_load(hub.ok("cluster", "get", "dev2", "-o", "yaml").stdout)
    assert record["annotations"]["gitops-hub/same-server-reason"] == "blue/green cut-over"


def test_import_refuses_a_second_name_for_one_server(
    hub: Hub, kube: KubeEnv, tmp_path: Path
) -> None:
    add(hub, kube, "dev", kube.context)
    exported = hub.ok("cluster", "export", "dev", "--show-secrets").stdout
    doc = yaml.safe_load(exported)
    doc["metadata"]["name"] = "cluster-dev2"
    doc["stringData"]["name"] = "dev2"
    doc["stringData"]["server"] += "/"  # another spelling of the same URL
    path = tmp_path / "secrets.yaml"
    path.write_text(yaml.safe_dump(doc))
    run = hub("cluster", "import", "-f", str(path))
    assert run.exit_code == 2 and "already registered as cluster 'dev'" in run.stderr
    hub.ok("cluster", "import", "-f", str(path), "--allow-same-server", "migration")
    assert hub.names() == ["dev", "dev2"]
    # An exported Secret that already says why is accepted as it is.
    again = yaml.safe_load(hub.ok("cluster", "export", "dev2", "--show-secrets").stdout)
    again["metadata"]["name"] = "cluster-dev3"
    again["stringData"]["name"] = "dev3"
    path.write_text(yaml.safe_dump(again))
    hub.ok("cluster", "import", "-f", str(path))


def test_server_urls_are_compared_normalised() -> None:
    from clusters.registry import normalize_server

    same = ["https://K8S.example", "https://k8s.example:443/", "HTTPS://k8s.example:443"]
    assert len({normalize_server(u) for u in same}) == 1
    assert normalize_server("https://k8s.example/a/") == "https://k8s.example:443/a"
    assert normalize_server("http://[::1]:8080") == "http://[::1]:8080"
    assert normalize_server("https://k8s.example/a") != normalize_server("https://k8s.example/b")


# ---------------------------------------------------------------- item 18: rotation is atomic


def test_a_rotation_failing_at_any_record_leaves_everything_under_the_old_key(
    tmp_path: Path,
) -> None:
    """Sync history and clusters are re-wrapped in one transaction: when the last cluster
    record cannot be re-wrapped, the history entries re-wrapped before it roll back too."""
    from hub.sync.history import SyncHistory
    from tests.api.fleet import populate

    home = tmp_path / "home"
    populate(home)  # clusters east and west, and a sync history with sealed manifests
    hub = Hub(home)
    old_key = (home / "master.key").read_text().strip()
    sql(hub, "UPDATE clusters SET ciphertext = zeroblob(length(ciphertext)) WHERE name = 'west'")
    run = hub("key", "rotate")
    assert run.exit_code == 1 and "cluster west" in run.stderr, run.output
    only_old = Keyring(primary=MasterKey.from_base64(old_key, "old key"))
    with Store.open(home / "hub.db") as store:
        sealed = store.history_reader().sealed_history()
        assert sealed, "the fleet has sync history with manifests"
        history = SyncHistory(store, lambda: only_old)
        for app, entry_id, _ in sealed:
            assert history.manifests(app, entry_id)
        assert store.get_meta("master_key_id") == only_old.primary.key_id
        registry = Registry(store, lambda: only_old)
        assert registry.credentials("east").name == "east"


@given(st.text(max_size=80))
def test_normalize_server_takes_any_text(url: str) -> None:
    from clusters.kubeconfig import TLSSettings
    from clusters.registry import endpoint_binding, normalize_server

    assert isinstance(normalize_server(url), str)
    assert endpoint_binding(url, TLSSettings(insecure=True)) != endpoint_binding(url, TLSSettings())


@given(
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True),
    st.sampled_from(["", ":443", ":6443"]),
    st.from_regex(r"(/[a-z0-9]{1,8}){0,3}", fullmatch=True),
)
def test_spellings_of_one_server_normalise_alike(host: str, port: str, path: str) -> None:
    from clusters.registry import normalize_server

    url = f"https://{host}{port}{path}"
    same = normalize_server(url)
    assert normalize_server(url + "/") == same
    assert normalize_server(f"HTTPS://{host.upper()}{port}{path}") == same
    if port in ("", ":443"):
        assert normalize_server(f"https://{host}:443{path}") == same
