"""Chart repository credentials: sealed at rest, matched by URL prefix, re-wrapped on key
rotation, never opened under another URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clusters.crypto import Keyring, MasterKey
from hub.errors import HubUsageError
from hub.repo_credentials import RepoCredentialError, RepoCredentialStore, normalize_url
from hub.store import Store


@pytest.fixture
def store(db_location: Path | str) -> Iterator[Store]:
    s = Store.open(db_location, create=True)
    try:
        yield s
    finally:
        s.close()


def test_lookup_takes_the_longest_prefix_on_a_path_boundary(store: Store) -> None:
    key = MasterKey.generate("test")
    creds = RepoCredentialStore(store, lambda: Keyring(primary=key))
    creds.add("https://Charts.Example.com/", "org", "p1", pass_credentials=False)
    creds.add("https://charts.example.com/team", "team", "p2", pass_credentials=True)
    team = creds.lookup("https://charts.example.com/team/stable")
    assert team is not None and (team.username, team.password) == ("team", "p2")
    assert team.pass_credentials and "p2" not in repr(team)
    other = creds.lookup("https://charts.example.com/teamwork")  # not below /team
    assert other is not None and other.username == "org"
    assert creds.lookup("https://elsewhere.example.com/x") is None
    assert [i.url for i in creds.list()] == [
        "https://charts.example.com",
        "https://charts.example.com/team",
    ]
    with pytest.raises(HubUsageError, match="already has a credential"):
        creds.add("https://charts.example.com", "x", "y", pass_credentials=False)
    assert creds.remove("https://charts.example.com/team/")
    assert not creds.remove("https://charts.example.com/team")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://user:pw@charts.example.com", "not in the URL"),
        ("oci://registry.example.com/charts", "expected an http"),
        ("charts.example.com", "expected an http"),
    ],
)
def test_urls_that_carry_secrets_or_no_scheme_are_refused(url: str, message: str) -> None:
    with pytest.raises(HubUsageError, match=message):
        normalize_url(url)


def test_rotation_rewraps_and_a_row_cannot_be_moved_to_another_url(store: Store) -> None:
    old, new = MasterKey.generate("old"), MasterKey.generate("new")
    creds = RepoCredentialStore(store, lambda: Keyring(primary=old))
    creds.add("https://a.example.com", "u", "secret-a", pass_credentials=False)
    creds.add("https://b.example.com", "u", "secret-b", pass_credentials=False)
    assert creds.rewrap_all(Keyring(primary=old), new) == 2
    rotated = RepoCredentialStore(store, lambda: Keyring(primary=new))
    found = rotated.lookup("https://a.example.com/charts")
    assert found is not None and found.password == "secret-a"
    with pytest.raises(RepoCredentialError, match="cannot be opened"):
        RepoCredentialStore(store, lambda: Keyring(primary=old)).lookup("https://a.example.com")
    # swap b's sealed password into a's row: the associated data (the URL) refuses it
    with store.write() as db:
        row = db.execute(
            "SELECT wrapped_key, nonce, ciphertext FROM repo_credentials WHERE url = ?",
            ("https://b.example.com",),
        ).fetchone()
        db.execute(
            "UPDATE repo_credentials SET wrapped_key = ?, nonce = ?, ciphertext = ? WHERE url = ?",
            (*row, "https://a.example.com"),
        )
    with pytest.raises(RepoCredentialError, match="cannot be opened"):
        rotated.lookup("https://a.example.com")


def test_hub_key_rotate_rewraps_repository_credentials(tmp_path: Path) -> None:
    from clusters.crypto import DecryptError
    from hub.home import load_keyring, open_store
    from tests.clusters.cli_support import Hub

    hub = Hub(tmp_path / "home")
    hub.ok("init")
    hub.ok("repo", "add", "https://charts.example.com", "--username", "u", "--password-stdin",
           input="pw-1\n")  # fmt: skip
    old_key = (hub.home / "master.key").read_text()
    hub.ok("key", "rotate")
    with open_store(hub.home) as s:
        found = RepoCredentialStore(s, lambda: load_keyring(hub.home)).lookup(
            "https://charts.example.com/stable"
        )
        assert found is not None and found.password == "pw-1"
        old = Keyring(primary=MasterKey.from_base64(old_key.strip(), "old"))
        with pytest.raises((RepoCredentialError, DecryptError)):
            RepoCredentialStore(s, lambda: old).lookup("https://charts.example.com")
    assert hub("repo", "add", "https://x.example.com", "--username", "u").exit_code == 2
