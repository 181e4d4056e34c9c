"""Envelope encryption of cluster credentials (AES-256-GCM).

Every record gets its own random 256-bit data key and nonce. The data key is
wrapped (AES-256-GCM again) by the master key, so rotating the master key only
re-wraps 60-byte data keys and never touches the credential ciphertext. Both
layers bind the cluster name as associated data: a record copied onto another
cluster's row fails to decrypt instead of handing out the wrong credential.

Envelope versions. Version 1 binds only the name. Version 2 (every cluster
credential sealed since) also binds an *endpoint binding* into the credential
layer: the caller's digest of where the credential may be sent (for clusters:
the normalised server URL and the TLS settings, ``clusters.registry``). Editing
the clear ``server`` column then makes the record fail to open, instead of
sending the token to whatever the column names. A version-2 wrapped data key
starts with the byte ``0x02`` (61 bytes); a version-1 one is the bare 60 bytes,
so records written before version 2 keep opening and are re-sealed as version 2
on their next write or key rotation. The wrap layer of version 2 uses its own
associated data, so stripping the version byte cannot downgrade a record.

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
_DATA_AAD_V2 = b"gitops-hub cluster credential v2\x00"
_WRAP_AAD_V2 = b"gitops-hub data key v2\x00"
_V2_MARK = b"\x02"
_WRAPPED_V1_BYTES = NONCE_BYTES + KEY_BYTES + 16  # nonce, data key, GCM tag


class DecryptError(ClusterError):
    """A record cannot be opened with any key at hand (wrong key, or tampered data)."""

    def __init__(self, cluster: str, message: str | None = None) -> None:
        super().__init__(
            message or f"cannot decrypt credentials for cluster {cluster}: wrong master key?"
        )
        self.cluster = cluster


class CorruptEnvelope(DecryptError):
    """The stored record is malformed (e.g. a truncated nonce): no key could open it."""

    def __init__(self, cluster: str, what: str) -> None:
        super().__init__(
            cluster,
            f"the stored credential of cluster {cluster} is corrupt ({what}); "
            f"re-add the cluster: `hub cluster add {cluster} --upsert ...`",
        )


class BindingMismatch(DecryptError):
    """The master key opens the record, but it was sealed for another server or TLS setup."""

    def __init__(self, cluster: str) -> None:
        super().__init__(
            cluster,
            f"the stored credential of cluster {cluster} does not match this cluster's server "
            "or TLS settings (the record was changed outside the hub?); nothing was sent; "
            f"re-add the cluster: `hub cluster add {cluster} --upsert ...`",
        )


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

    @property
    def version(self) -> int:
        """1: binds the name only; 2: binds the name and an endpoint binding."""
        w = self.wrapped_key
        return 2 if len(w) == _WRAPPED_V1_BYTES + 1 and w[:1] == _V2_MARK else 1


def _aad(prefix: bytes, cluster: str, binding: bytes = b"") -> bytes:
    name = cluster.encode("utf-8")
    if not binding:
        return prefix + name
    return prefix + name + b"\x00" + binding


def _check_shape(cluster: str, envelope: Envelope) -> None:
    if len(envelope.nonce) != NONCE_BYTES:
        raise CorruptEnvelope(
            cluster, f"nonce is {len(envelope.nonce)} bytes, expected {NONCE_BYTES}"
        )
    if len(envelope.wrapped_key) not in (_WRAPPED_V1_BYTES, _WRAPPED_V1_BYTES + 1):
        raise CorruptEnvelope(cluster, f"wrapped data key is {len(envelope.wrapped_key)} bytes")
    if len(envelope.ciphertext) < 16:
        raise CorruptEnvelope(cluster, "ciphertext is shorter than its tag")


def _wrap(master: MasterKey, cluster: str, data_key: bytes, version: int) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    if version == 1:
        return nonce + AESGCM(master.key).encrypt(nonce, data_key, _aad(_WRAP_AAD, cluster))
    body = AESGCM(master.key).encrypt(nonce, data_key, _aad(_WRAP_AAD_V2, cluster))
    return _V2_MARK + nonce + body


def _unwrap(keyring: Keyring, cluster: str, envelope: Envelope) -> bytes:
    _check_shape(cluster, envelope)
    master = keyring.find(envelope.key_id)
    if master is None:
        raise DecryptError(cluster)
    wrapped, prefix = envelope.wrapped_key, _WRAP_AAD
    if envelope.version == 2:
        wrapped, prefix = wrapped[1:], _WRAP_AAD_V2
    nonce, body = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
    try:
        return AESGCM(master.key).decrypt(nonce, body, _aad(prefix, cluster))
    except InvalidTag:
        raise DecryptError(cluster) from None


def _open_data(cluster: str, envelope: Envelope, data_key: bytes, binding: bytes | None) -> bytes:
    if envelope.version == 1:
        aad = _aad(_DATA_AAD, cluster)
    elif binding is None:  # a bound record opened without saying where it is going
        raise BindingMismatch(cluster)
    else:
        aad = _aad(_DATA_AAD_V2, cluster, binding)
    try:
        return AESGCM(data_key).decrypt(envelope.nonce, envelope.ciphertext, aad)
    except InvalidTag:
        # The master key unwrapped the data key, so the key is right: the record was
        # sealed for another endpoint, or its ciphertext was altered.
        raise (
            BindingMismatch(cluster) if envelope.version == 2 else DecryptError(cluster)
        ) from None


def seal(
    master: MasterKey, cluster: str, plaintext: bytes, *, binding: bytes | None = None
) -> Envelope:
    """Encrypt ``plaintext`` for ``cluster`` under a fresh data key wrapped by ``master``.

    With ``binding`` (non-empty) the envelope is version 2 and opens only with the same
    binding; without, version 1.
    """
    version = 2 if binding else 1
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    aad = _aad(_DATA_AAD_V2, cluster, binding) if binding else _aad(_DATA_AAD, cluster)
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, aad)
    return Envelope(
        key_id=master.key_id,
        wrapped_key=_wrap(master, cluster, data_key, version),
        nonce=nonce,
        ciphertext=ciphertext,
    )


def open_envelope(
    keyring: Keyring, cluster: str, envelope: Envelope, *, binding: bytes | None = None
) -> bytes:
    """Decrypt a record; ``DecryptError`` when no key at hand opens it or it was altered.

    ``BindingMismatch`` (a ``DecryptError``) when a version-2 record was sealed for
    another ``binding``; ``CorruptEnvelope`` when its stored parts are malformed.
    """
    data_key = _unwrap(keyring, cluster, envelope)
    return _open_data(cluster, envelope, data_key, binding)


def rewrap(
    keyring: Keyring,
    target: MasterKey,
    cluster: str,
    envelope: Envelope,
    *,
    binding: bytes | None = None,
) -> Envelope:
    """The same record with its data key wrapped by ``target`` (ciphertext and version
    unchanged).

    The data key is unwrapped and the ciphertext authenticated first, so a rotation
    never re-wraps something it could not read back.
    """
    data_key = _unwrap(keyring, cluster, envelope)
    _open_data(cluster, envelope, data_key, binding)
    return Envelope(
        key_id=target.key_id,
        wrapped_key=_wrap(target, cluster, data_key, envelope.version),
        nonce=envelope.nonce,
        ciphertext=envelope.ciphertext,
    )
