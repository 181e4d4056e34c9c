"""The registry over the real SQLite store, without contacting any cluster (--skip-check)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clusters.connect import connect
from clusters.crypto import DecryptError, Keyring, MasterKey
from clusters.errors import ClusterUsageError
from clusters.kubeconfig import BearerToken, ClientCertificate, TLSSettings
from clusters.registry import (
    ClusterExists,
    ClusterNotFound,
    NewCluster,
    Registry,
    WrongMasterKey,
    parse_label_changes,
)
from hub.store import Store
from tests.clusters.conftest import make_cert

TOKEN = "tok-registry-0123456789"


@pytest.fixture
def key() -> MasterKey:
    return MasterKey.generate("test key")


@pytest.fixture
def store(db_location: Path | str) -> Iterator[Store]:
    with Store.open(db_location, create=True) as s:
        yield s


@pytest.fixture
def registry(store: Store, key: MasterKey) -> Iterator[Registry]:
    reg = Registry(store, lambda: Keyring(primary=key))
    yield reg
    reg.close()


def new(name: str = "prod", token: str = TOKEN, **kw: object) -> NewCluster:
    return NewCluster(
        name=name,
        server=f"https://{name}.example:6443",
        tls=TLSSettings(insecure=True),
        credential=BearerToken(token=token),
        **kw,  # type: ignore[arg-type]
    )


def test_add_stores_clear_fields_and_list_returns_them(registry: Registry) -> None:
    registry.add(
        new(labels={"env": "prod"}, annotations={"a/b": "c"}, namespaces=("web",), project="p"),
        check=False,
    )
    registry.add(new("dev"), check=False)
    records = registry.list()
    assert [r.name for r in records] == ["dev", "prod"]
    prod = registry.get("prod")
    assert prod.labels == {"env": "prod"}
    assert prod.annotations == {"a/b": "c"}
    assert prod.namespaces == ("web",)
    assert prod.project == "p"
    assert prod.credential_kind == "token"
    assert prod.last_check is None
    assert registry.credentials("prod").credential == BearerToken(token=TOKEN)


def test_list_and_get_need_no_master_key(store: Store, registry: Registry) -> None:
    registry.add(new(), check=False)

    def no_key() -> Keyring:
        raise AssertionError("list/get must not load the master key")

    keyless = Registry(store, no_key)
    assert [r.name for r in keyless.list()] == ["prod"]
    assert keyless.get("prod").server == "https://prod.example:6443"


def test_a_duplicate_needs_upsert_which_replaces_the_credential(registry: Registry) -> None:
    first = registry.add(new(), check=False)
    with pytest.raises(ClusterExists, match="'prod' is already registered; use --upsert"):
        registry.add(new(token="tok-other-99999"), check=False)
    assert registry.credentials("prod").credential == BearerToken(token=TOKEN)
    second = registry.add(new(token="tok-other-99999"), check=False, upsert=True)
    assert second.credential_rev != first.credential_rev
    assert registry.credentials("prod").credential == BearerToken(token="tok-other-99999")


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        (new("Prod"), "cluster name 'Prod' is not a DNS-1123 label"),
        (new("a" * 64), "is not a DNS-1123 label"),
        (new("-x"), "is not a DNS-1123 label"),
        (new(labels={"bad key!": "v"}), "label key 'bad key!' is invalid"),
        (new(labels={"k": "v v"}), "value must be empty or"),
        (new(annotations={"/x": "v"}), "annotation key '/x' is invalid"),
        (new(namespaces=("Web",)), "namespace 'Web' is not a DNS-1123 label"),
    ],
)
def test_invalid_input_is_refused_and_nothing_is_written(
    registry: Registry, cluster: NewCluster, message: str
) -> None:
    with pytest.raises(ClusterUsageError, match=message):
        registry.add(cluster, check=False)
    assert registry.list() == []


@pytest.mark.parametrize(
    ("args", "sets", "removes"),
    [
        (["a=1", "b-"], {"a": "1"}, ["b"]),
        (["example.com/tier=gold"], {"example.com/tier": "gold"}, []),
        (["a="], {"a": ""}, []),
    ],
)
def test_label_changes_parse_like_kubectl(
    args: list[str], sets: dict[str, str], removes: list[str]
) -> None:
    assert parse_label_changes(args) == (sets, removes)


@pytest.mark.parametrize("arg", ["novalue", "=v", "a b=c", "a=b=c d", "x-=1-"])
def test_bad_label_changes_are_refused(arg: str) -> None:
    with pytest.raises(ClusterUsageError, match="label"):
        parse_label_changes([arg])


def test_set_labels_adds_overwrites_and_removes(registry: Registry) -> None:
    registry.add(new(labels={"a": "1", "b": "2"}), check=False)
    record = registry.set_labels("prod", {"a": "9", "c": "3"}, ["b", "absent"])
    assert record.labels == {"a": "9", "c": "3"}
    assert registry.get("prod").labels == {"a": "9", "c": "3"}


def test_remove_forgets_the_cluster(registry: Registry) -> None:
    registry.add(new(), check=False)
    assert registry.remove("prod").name == "prod"
    with pytest.raises(ClusterNotFound):
        registry.get("prod")
    with pytest.raises(ClusterNotFound, match="'prod' is not registered"):
        registry.remove("prod")


def test_the_database_files_never_contain_the_token(store: Store, registry: Registry) -> None:
    cert, keypem = make_cert("client")
    registry.add(new(), check=False)
    registry.add(
        NewCluster(
            name="mtls",
            server="https://m:1",
            tls=TLSSettings(),
            credential=ClientCertificate(cert_pem=cert, key_pem=keypem),
        ),
        check=False,
    )
    registry.set_labels("prod", {"x": "y"})
    key_body = b"".join(keypem.splitlines()[1:-1])
    for path in store.path.parent.glob("hub.db*"):
        data = path.read_bytes()
        assert TOKEN.encode() not in data, path
        assert key_body[:40] not in data, path


def test_a_wrong_master_key_cannot_read_or_write(store: Store, registry: Registry) -> None:
    registry.add(new(), check=False)
    before = registry.get("prod")
    wrong = Registry(store, lambda: Keyring(primary=MasterKey.generate("wrong")))
    with pytest.raises(
        DecryptError, match="cannot decrypt credentials for cluster prod: wrong master key\\?"
    ):
        wrong.credentials("prod")
    with pytest.raises(WrongMasterKey, match="wrong master key\\? nothing was changed"):
        wrong.add(new("dev"), check=False)
    [result] = wrong.check(["prod"])  # reported, not raised, and nothing stored
    assert not result.ok and "wrong master key" in result.message
    assert registry.list() == [before]


def test_connect_caches_and_rebuilds_when_the_credential_changes(registry: Registry) -> None:
    registry.add(new(), check=False)
    first = connect(registry, "prod")
    assert connect(registry, "prod") is first
    assert first.configuration.host == "https://prod.example:6443"
    assert first.configuration.get_api_key_with_prefix("authorization") == f"Bearer {TOKEN}"
    registry.set_labels("prod", {"a": "b"})  # labels do not touch the credential
    assert connect(registry, "prod") is first
    registry.add(new(token="tok-new-0987654321"), check=False, upsert=True)
    second = connect(registry, "prod")
    assert second is not first
    assert second.configuration.get_api_key_with_prefix("authorization") == (
        "Bearer tok-new-0987654321"
    )


def test_connect_rebuilds_after_the_master_key_is_rotated(
    registry: Registry, key: MasterKey
) -> None:
    registry.add(new(), check=False)
    first = connect(registry, "prod")
    target = MasterKey.generate("next")
    assert registry.rewrap_all(Keyring(primary=key), target) == 1
    assert connect(registry, "prod") is not first


def test_client_certificates_reach_the_client_through_memory_files_only(
    registry: Registry, tmp_path: Path
) -> None:
    cert, keypem = make_cert("client")
    registry.add(
        NewCluster(
            name="mtls",
            server="https://m:1",
            tls=TLSSettings(insecure=True),
            credential=ClientCertificate(cert_pem=cert, key_pem=keypem),
        ),
        check=False,
    )
    conn = connect(registry, "mtls")
    cert_file, key_file = str(conn.configuration.cert_file), str(conn.configuration.key_file)
    assert cert_file.startswith("/proc/self/fd/") and key_file.startswith("/proc/self/fd/")
    assert Path(key_file).read_bytes() == keypem
    assert "memfd:" in str(Path(key_file).readlink())
    conn.close()
    assert conn.closed


def test_rewrap_all_is_one_transaction(
    registry: Registry, key: MasterKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b", "c"):
        registry.add(new(name), check=False)
    import clusters.crypto as crypto_mod

    real = crypto_mod.rewrap
    calls = 0

    def crash_on_second(*args: object, **kw: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("crash")
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(crypto_mod, "rewrap", crash_on_second)
    with pytest.raises(RuntimeError):
        registry.rewrap_all(Keyring(primary=key), MasterKey.generate("n"))
    assert registry.key_ids_in_use() == {key.key_id: 3}
