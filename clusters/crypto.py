"""Envelope encryption of cluster credentials (AES-256-GCM).

Every record gets its own random 256-bit data key and nonce. The data key is
wrapped (AES-256-GCM again) by the master key, so rotating the master key only
re-wraps 60-byte data keys and never touches the credential ciphertext. Both
layers bind the cluster name as associated data: a record copied onto another
cluster's row fails to decrypt instead of handing out the wrong credential.

Each master key has a key id derived from the key by a one-way hash; the id is
stored next to every wrapped data key so a rotation, or a hub holding two keys
after an interrupted rotation, knows which key unwraps which record.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clusters.errors import ClusterError

KEY_BYTES = 32
NONCE_BYTES = 12
_KEY_ID_CONTEXT = b"gitops-hub master key id v1\x00"
_DATA_AAD = b"gitops-hub cluster credential v1\x00"
_WRAP_AAD = b"gitops-hub data key v1\x00"


class DecryptError(ClusterError):
    """A record cannot be opened with any key at hand (wrong key, or tampered data)."""

    def __init__(self, cluster: str) -> None:
        super().__init__(f"cannot decrypt credentials for cluster {cluster}: wrong master key?")
        self.cluster = cluster


@dataclass(frozen=True, kw_only=True)
class MasterKey:
    """A 256-bit master key and where it came from (for messages, never the key)."""

    key: bytes = field(repr=False)
    source: str

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise ValueError("a master key is exactly 32 bytes")

    @property
    def key_id(self) -> str:
        """A stable public name of the key: 16 hex digits of a keyed hash, not the key."""
        return hmac.new(self.key, _KEY_ID_CONTEXT, hashlib.sha256).hexdigest()[:16]

    @staticmethod
    def generate(source: str) -> MasterKey:
        return MasterKey(key=os.urandom(KEY_BYTES), source=source)

    @staticmethod
    def from_base64(text: str, source: str) -> MasterKey:
        """Parse the base64 form used by key files and ``HUB_MASTER_KEY``."""
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ClusterError(
                f"{source}: not valid base64; a master key is 32 random bytes in base64 "
                "(e.g. `head -c 32 /dev/urandom | base64`)"
            ) from None
        if len(raw) != KEY_BYTES:
            raise ClusterError(
                f"{source}: decodes to {len(raw)} bytes; a master key is exactly 32 bytes "
                "(e.g. `head -c 32 /dev/urandom | base64`)"
            )
        return MasterKey(key=raw, source=source)

    def to_base64(self) -> str:
        return base64.b64encode(self.key).decode("ascii")


@dataclass(frozen=True, kw_only=True)
class Keyring:
    """The key that seals new records, plus older keys that may still open some."""

    primary: MasterKey
    others: tuple[MasterKey, ...] = ()

    def find(self, key_id: str) -> MasterKey | None:
        for key in (self.primary, *self.others):
            if key.key_id == key_id:
                return key
        return None

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(key.key_id for key in (self.primary, *self.others))


@dataclass(frozen=True, kw_only=True)
class Envelope:
    """What is stored for one credential: all of it is safe to keep on disk."""

    key_id: str
    wrapped_key: bytes = field(repr=False)  # wrap nonce + AES-GCM(data key)
    nonce: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)


def _aad(prefix: bytes, cluster: str) -> bytes:
    return prefix + cluster.encode("utf-8")


def _wrap(master: MasterKey, cluster: str, data_key: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(master.key).encrypt(nonce, data_key, _aad(_WRAP_AAD, cluster))


def _unwrap(keyring: Keyring, cluster: str, envelope: Envelope) -> bytes:
    master = keyring.find(envelope.key_id)
    if master is None or len(envelope.wrapped_key) <= NONCE_BYTES:
        raise DecryptError(cluster)
    nonce, body = envelope.wrapped_key[:NONCE_BYTES], envelope.wrapped_key[NONCE_BYTES:]
    try:
        return AESGCM(master.key).decrypt(nonce, body, _aad(_WRAP_AAD, cluster))
    except InvalidTag:
        raise DecryptError(cluster) from None


def seal(master: MasterKey, cluster: str, plaintext: bytes) -> Envelope:
    """Encrypt ``plaintext`` for ``cluster`` under a fresh data key wrapped by ``master``."""
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, _aad(_DATA_AAD, cluster))
    return Envelope(
        key_id=master.key_id,
        wrapped_key=_wrap(master, cluster, data_key),
        nonce=nonce,
        ciphertext=ciphertext,
    )


def open_envelope(keyring: Keyring, cluster: str, envelope: Envelope) -> bytes:
    """Decrypt a record; ``DecryptError`` when no key at hand opens it or it was altered."""
    data_key = _unwrap(keyring, cluster, envelope)
    try:
        return AESGCM(data_key).decrypt(
            envelope.nonce, envelope.ciphertext, _aad(_DATA_AAD, cluster)
        )
    except InvalidTag:
        raise DecryptError(cluster) from None


def rewrap(keyring: Keyring, target: MasterKey, cluster: str, envelope: Envelope) -> Envelope:
    """The same record with its data key wrapped by ``target`` (ciphertext unchanged).

    The data key is unwrapped and the ciphertext authenticated first, so a rotation
    never re-wraps something it could not read back.
    """
    data_key = _unwrap(keyring, cluster, envelope)
    try:
        AESGCM(data_key).decrypt(envelope.nonce, envelope.ciphertext, _aad(_DATA_AAD, cluster))
    except InvalidTag:
        raise DecryptError(cluster) from None
    return Envelope(
        key_id=target.key_id,
        wrapped_key=_wrap(target, cluster, data_key),
        nonce=envelope.nonce,
        ciphertext=envelope.ciphertext,
    )
