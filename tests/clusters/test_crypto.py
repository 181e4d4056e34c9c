"""Envelope encryption: fresh keys per record, name binding, key ids, re-wrapping."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from clusters import crypto
from clusters.crypto import DecryptError, Keyring, MasterKey
from clusters.errors import ClusterError

SECRET = b'{"kind": "token", "token": "very-secret-token"}'


@pytest.fixture
def key() -> MasterKey:
    return MasterKey.generate("test")


def test_a_sealed_record_opens_with_the_same_key_and_name(key: MasterKey) -> None:
    env = crypto.seal(key, "prod", SECRET)
    assert crypto.open_envelope(Keyring(primary=key), "prod", env) == SECRET


def test_the_ciphertext_does_not_contain_the_plaintext(key: MasterKey) -> None:
    env = crypto.seal(key, "prod", SECRET)
    stored = env.wrapped_key + env.nonce + env.ciphertext + env.key_id.encode()
    assert b"very-secret-token" not in stored
    assert key.key not in stored


def test_every_record_gets_a_fresh_data_key_and_nonce(key: MasterKey) -> None:
    a, b = crypto.seal(key, "prod", SECRET), crypto.seal(key, "prod", SECRET)
    assert a.nonce != b.nonce
    assert a.wrapped_key != b.wrapped_key
    assert a.ciphertext != b.ciphertext


def test_a_record_moved_to_another_cluster_name_does_not_decrypt(key: MasterKey) -> None:
    env = crypto.seal(key, "prod", SECRET)
    with pytest.raises(DecryptError, match="cannot decrypt credentials for cluster staging"):
        crypto.open_envelope(Keyring(primary=key), "staging", env)


def test_a_wrong_master_key_gives_the_documented_message(key: MasterKey) -> None:
    env = crypto.seal(key, "prod", SECRET)
    other = MasterKey.generate("other")
    with pytest.raises(DecryptError) as info:
        crypto.open_envelope(Keyring(primary=other), "prod", env)
    assert str(info.value) == "cannot decrypt credentials for cluster prod: wrong master key?"


def test_a_wrong_key_with_a_forged_key_id_still_fails(key: MasterKey) -> None:
    env = crypto.seal(key, "prod", SECRET)
    forged = MasterKey.generate("forged")
    with pytest.raises(DecryptError):
        crypto.open_envelope(Keyring(primary=forged), "prod", replace(env, key_id=forged.key_id))


@pytest.mark.parametrize("part", ["wrapped_key", "nonce", "ciphertext"])
def test_a_tampered_record_does_not_decrypt(key: MasterKey, part: str) -> None:
    env = crypto.seal(key, "prod", SECRET)
    value = bytearray(getattr(env, part))
    value[-1] ^= 0x01
    tampered = replace(env, **{part: bytes(value)})  # type: ignore[arg-type]
    with pytest.raises(DecryptError):
        crypto.open_envelope(Keyring(primary=key), "prod", tampered)


def test_key_ids_are_stable_distinct_and_do_not_reveal_the_key(key: MasterKey) -> None:
    same = MasterKey(key=key.key, source="elsewhere")
    assert same.key_id == key.key_id
    assert MasterKey.generate("x").key_id != key.key_id
    assert len(key.key_id) == 16
    assert key.key.hex()[:16] != key.key_id


def test_rewrapping_changes_only_the_wrapping_and_the_new_key_opens_it(key: MasterKey) -> None:
    env = crypto.seal(key, "prod", SECRET)
    new = MasterKey.generate("new")
    moved = crypto.rewrap(Keyring(primary=key), new, "prod", env)
    assert moved.key_id == new.key_id
    assert moved.ciphertext == env.ciphertext and moved.nonce == env.nonce
    assert crypto.open_envelope(Keyring(primary=new), "prod", moved) == SECRET
    with pytest.raises(DecryptError):
        crypto.open_envelope(Keyring(primary=key), "prod", moved)


def test_a_keyring_with_both_keys_opens_records_under_either(key: MasterKey) -> None:
    new = MasterKey.generate("new")
    old_rec = crypto.seal(key, "a", SECRET)
    new_rec = crypto.seal(new, "b", SECRET)
    ring = Keyring(primary=new, others=(key,))
    assert crypto.open_envelope(ring, "a", old_rec) == SECRET
    assert crypto.open_envelope(ring, "b", new_rec) == SECRET


def test_rewrap_refuses_a_record_whose_ciphertext_was_altered(key: MasterKey) -> None:
    env = crypto.seal(key, "prod", SECRET)
    bad = replace(env, ciphertext=env.ciphertext[:-1] + bytes([env.ciphertext[-1] ^ 1]))
    with pytest.raises(DecryptError):
        crypto.rewrap(Keyring(primary=key), MasterKey.generate("n"), "prod", bad)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not base64!!", "not valid base64"),
        (base64.b64encode(b"short").decode(), "decodes to 5 bytes"),
        (base64.b64encode(bytes(33)).decode(), "decodes to 33 bytes"),
    ],
)
def test_bad_master_key_text_is_refused_with_its_source_named(text: str, reason: str) -> None:
    with pytest.raises(ClusterError, match=f"HUB_MASTER_KEY: {reason}") as info:
        MasterKey.from_base64(text, "HUB_MASTER_KEY")
    assert text not in str(info.value)


def test_the_master_key_never_shows_in_its_repr(key: MasterKey) -> None:
    assert key.to_base64() not in repr(key)
    assert repr(key.key) not in repr(key)
