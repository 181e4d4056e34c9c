"""The cluster registry: which clusters the hub manages, their labels, and their credentials.

``Registry`` is the library API every other part of the hub uses. It knows
nothing about SQLite: it persists through ``ClusterStorage`` (implemented by
``hub.store.Store``), and it gets its master keys from a loader called only
when a credential is sealed or opened, so reading the fleet (``list``/``get``)
needs neither the key nor any decryption.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from clusters import crypto
from clusters.crypto import DecryptError, Envelope, Keyring, MasterKey
from clusters.errors import ClusterError, ClusterUsageError
from clusters.kubeconfig import (
    Credential,
    CredentialKind,
    TLSSettings,
    credential_from_bytes,
    credential_to_bytes,
)

if TYPE_CHECKING:
    from clusters.connect import ConnectionCache

log = logging.getLogger(__name__)

DEFAULT_CHECK_TIMEOUT = 10.0
# Where `--allow-same-server REASON` records why two names share one API server.
SAME_SERVER_ANNOTATION = "gitops-hub/same-server-reason"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


# ---------------------------------------------------------------- validation


def validate_name(name: str, what: str = "cluster name") -> str:
    """A DNS-1123 label: what Kubernetes accepts as a namespace or label-safe name."""
    if len(name) > 63 or not _DNS1123_LABEL.match(name):
        raise ClusterUsageError(
            f"{what} {name!r} is not a DNS-1123 label "
            "(lowercase letters, digits and '-', starting and ending with a letter or digit, "
            "at most 63 characters)"
        )
    return name


def validate_key(key: str, what: str = "label") -> str:
    """A Kubernetes label/annotation key: optional DNS subdomain prefix, '/', a name."""
    prefix, slash, name = key.rpartition("/")
    ok = bool(_QUALIFIED_NAME.match(name)) and len(name) <= 63
    if slash:
        ok = ok and 0 < len(prefix) <= 253 and bool(_DNS1123_SUBDOMAIN.match(prefix))
    if not ok:
        raise ClusterUsageError(
            f"{what} key {key!r} is invalid: expected [prefix/]name, name at most 63 "
            "alphanumerics, '-', '_' or '.', prefix a DNS subdomain"
        )
    return key


def validate_label_value(key: str, value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ClusterUsageError(
            f"label {key}={value!r}: value must be empty or at most 63 alphanumerics, "
            "'-', '_' or '.', starting and ending with an alphanumeric"
        )
    return value


def parse_assignment(text: str, what: str = "label") -> tuple[str, str]:
    """``k=v`` as given on the command line."""
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise ClusterUsageError(f"{what} {text!r} is invalid: expected KEY=VALUE")
    validate_key(key, what)
    if what == "label":
        validate_label_value(key, value)
    return key, value


def parse_label_changes(args: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """``k=v`` sets and ``k-`` removals, as ``kubectl label`` takes them."""
    sets: dict[str, str] = {}
    removes: list[str] = []
    for arg in args:
        if "=" not in arg and arg.endswith("-"):
            removes.append(validate_key(arg[:-1]))
        elif "=" in arg:
            key, value = parse_assignment(arg)
            sets[key] = value
        else:
            raise ClusterUsageError(
                f"label {arg!r} is invalid: expected KEY=VALUE to set or KEY- to remove"
            )
    clash = set(sets) & set(removes)
    if clash:
        raise ClusterUsageError(f"label {sorted(clash)[0]!r} is both set and removed")
    return sets, removes


def normalize_server(url: str) -> str:
    """``url`` in one spelling per API server: lowercase scheme and host, explicit port,
    no trailing slash, so ``https://K8S:443/`` and ``https://k8s`` compare equal."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
    except ValueError:  # e.g. an unclosed IPv6 bracket: compare it as written
        return url.strip().lower().rstrip("/")
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"https": 443, "http": 80}.get(scheme)
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def endpoint_binding(server: str, tls: TLSSettings) -> bytes:
    """What a credential is sealed to (``clusters.crypto`` version 2): where it may be
    sent and how that server is trusted. Changing any of it outside ``add`` makes the
    credential fail to open instead of going to the new place."""
    doc = {
        "server": normalize_server(server),
        "insecure": tls.insecure,
        "caSha256": None if tls.ca_data is None else hashlib.sha256(tls.ca_data).hexdigest(),
        "serverName": tls.server_name,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


# ---------------------------------------------------------------- records


@dataclass(frozen=True, kw_only=True)
class LastCheck:
    """The outcome of the latest connectivity check."""

    time: datetime
    ok: bool
    message: str


@dataclass(frozen=True, kw_only=True)
class ClusterRecord:
    """Everything about a cluster that is stored in clear. No secret lives here."""

    name: str
    server: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    namespaces: tuple[str, ...] = ()
    cluster_resources: bool = False
    project: str | None = None
    server_version: str | None = None
    last_check: LastCheck | None = None
    credential_kind: CredentialKind = "token"
    # Changes (to a fresh random value) whenever the credential, the server or the TLS
    # settings change or the credential is re-wrapped; connection caches compare it.
    credential_rev: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view for ``-o json|yaml`` and the HTTP API."""
        check = self.last_check
        return {
            "name": self.name,
            "server": self.server,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "namespaces": list(self.namespaces),
            "clusterResources": self.cluster_resources,
            "project": self.project,
            "serverVersion": self.server_version,
            "credentialKind": self.credential_kind,
            "lastCheck": None
            if check is None
            else {
                "time": check.time.isoformat().replace("+00:00", "Z"),
                "ok": check.ok,
                "message": check.message,
            },
        }


@dataclass(frozen=True, kw_only=True)
class StoredCluster:
    """One row as persisted: the clear record, TLS settings, and the sealed credential."""

    record: ClusterRecord
    tls: TLSSettings
    envelope: Envelope


@dataclass(frozen=True, kw_only=True)
class ClusterCredentials:
    """A decrypted credential, for building a connection in memory. Never persist it."""

    name: str
    server: str
    tls: TLSSettings
    credential: Credential
    credential_rev: str


@dataclass(frozen=True, kw_only=True)
class NewCluster:
    """What ``add`` needs: from a kubeconfig context or an Argo CD cluster Secret."""

    name: str
    server: str
    tls: TLSSettings
    credential: Credential
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    namespaces: tuple[str, ...] = ()
    cluster_resources: bool = False
    project: str | None = None

    def validate(self) -> NewCluster:
        validate_name(self.name)
        for key, value in self.labels.items():
            validate_key(key)
            validate_label_value(key, value)
        for key in self.annotations:
            validate_key(key, "annotation")
        for ns in self.namespaces:
            validate_name(ns, "namespace")
        if self.project is not None and not self.project:
            raise ClusterUsageError("project must not be empty")
        return self


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    name: str
    ok: bool
    message: str
    server_version: str | None


# ---------------------------------------------------------------- storage protocol


class ClusterTransaction(Protocol):
    """Reads and writes inside one atomic, isolated transaction."""

    def get_cluster(self, name: str) -> StoredCluster | None: ...

    def list_clusters(self) -> list[StoredCluster]: ...

    def put_cluster(self, cluster: StoredCluster) -> None:
        """Insert, or replace the row with the same name."""
        ...

    def delete_cluster(self, name: str) -> bool:
        """True when a row was deleted."""
        ...

    def get_master_key_id(self) -> str | None:
        """The id of the master key new credentials must be sealed with (None: not yet set)."""
        ...

    def set_master_key_id(self, key_id: str) -> None: ...


class ClusterStorage(Protocol):
    """What the registry needs from a database (``hub.store.Store`` implements it)."""

    def list_records(self) -> list[ClusterRecord]:
        """Clear records only, sorted by name; never reads sealed credentials."""
        ...

    def get_record(self, name: str) -> ClusterRecord | None: ...

    def get_cluster(self, name: str) -> StoredCluster | None: ...

    def cluster_transaction(self) -> AbstractContextManager[ClusterTransaction]:
        """Commit on normal exit, roll back on exception; writers are serialised."""
        ...

    def close(self) -> None: ...


class ClusterNotFound(ClusterUsageError):
    def __init__(self, name: str) -> None:
        super().__init__(f"cluster {name!r} is not registered (see `hub cluster list`)")
        self.name = name


class WrongMasterKey(ClusterError):
    def __init__(self, key: MasterKey, expected_id: str) -> None:
        super().__init__(
            f"the master key from {key.source} (key id {key.key_id}) is not this hub's "
            f"master key (key id {expected_id}): wrong master key? nothing was changed"
        )


class ClusterExists(ClusterUsageError):
    def __init__(self, name: str) -> None:
        super().__init__(f"cluster {name!r} is already registered; use --upsert to replace it")
        self.name = name


class SameServer(ClusterUsageError):
    def __init__(self, name: str, other: str, server: str) -> None:
        super().__init__(
            f"cluster {name!r}: its server {server} is already registered as cluster "
            f"{other!r}; two names for one API server make two Applications claim the same "
            "objects. Use that cluster, or pass --allow-same-server REASON to register it "
            "anyway (the reason is kept in the annotation "
            f"{SAME_SERVER_ANNOTATION})"
        )
        self.name = name


def _check_same_server(
    existing: Iterable[ClusterRecord], clusters: Sequence[NewCluster], reason: str | None
) -> list[NewCluster]:
    """Refuse a cluster whose API server another name already has, unless it says why:
    ``reason``, recorded in its annotations, or that annotation already there (an
    exported cluster Secret re-imported)."""
    replaced = {c.name for c in clusters}
    taken = {normalize_server(r.server): r.name for r in existing if r.name not in replaced}
    out: list[NewCluster] = []
    for cluster in clusters:
        key = normalize_server(cluster.server)
        other = taken.get(key)
        if other is not None and not cluster.annotations.get(SAME_SERVER_ANNOTATION, "").strip():
            if not reason or not reason.strip():
                raise SameServer(cluster.name, other, cluster.server)
            annotations = {**cluster.annotations, SAME_SERVER_ANNOTATION: reason.strip()}
            cluster = replace(cluster, annotations=annotations)
        taken.setdefault(key, cluster.name)
        out.append(cluster)
    return out


Prober = Callable[[ClusterCredentials, float], str]
"""Reads ``/version`` through a real connection; returns gitVersion or raises ClusterError."""


_Records = list[ClusterRecord]
_Results = list[CheckResult]
_Stored = list[StoredCluster]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _new_rev() -> str:
    return secrets.token_hex(8)


# ---------------------------------------------------------------- registry


class Registry:
    """The fleet. Thread-safe as far as the storage is; one instance per process is enough."""

    def __init__(
        self,
        storage: ClusterStorage,
        keys: Callable[[], Keyring],
        *,
        prober: Prober | None = None,
    ) -> None:
        self._storage = storage
        self._load_keys = keys
        self._keyring: Keyring | None = None
        self._prober = prober
        self._cache: ConnectionCache | None = None
        self._cache_lock = threading.Lock()

    def close(self) -> None:
        """Close cached connections and the storage."""
        if self._cache is not None:
            self._cache.close()
        self._storage.close()

    # -- reading (no key, no decryption)

    def list(self) -> _Records:
        """Every cluster, sorted by name. Cheap: one query, nothing decrypted."""
        return self._storage.list_records()

    def get(self, name: str) -> ClusterRecord:
        record = self._storage.get_record(name)
        if record is None:
            raise ClusterNotFound(name)
        return record

    def find(self, name: str) -> ClusterRecord | None:
        return self._storage.get_record(name)

    def tls_settings(self, name: str) -> TLSSettings:
        """How to trust the cluster's API server (stored in clear; no key needed)."""
        stored = self._storage.get_cluster(name)
        if stored is None:
            raise ClusterNotFound(name)
        return stored.tls

    # -- keys

    @property
    def keyring(self) -> Keyring:
        if self._keyring is None:
            self._keyring = self._load_keys()
        return self._keyring

    def _sealing_key(self, txn: ClusterTransaction) -> MasterKey:
        """The master key to seal with, checked inside the write transaction.

        The database names the current master key. A key that does not match is refused,
        so a wrong HUB_MASTER_KEY cannot quietly split the store between two keys; a
        process that still holds the key from before a rotation reloads its keys once.
        """
        current = txn.get_master_key_id()
        if current is None:
            txn.set_master_key_id(self.keyring.primary.key_id)
            return self.keyring.primary
        key = self.keyring.find(current)
        if key is None:
            self._keyring = None
            key = self.keyring.find(current)
        if key is None:
            raise WrongMasterKey(self.keyring.primary, current)
        return key

    # -- credentials and connections

    def credentials(self, name: str) -> ClusterCredentials:
        """Decrypt the credential of ``name`` (in memory only)."""
        stored = self._storage.get_cluster(name)
        if stored is None:
            raise ClusterNotFound(name)
        return self._open(stored)

    def _open(self, stored: StoredCluster) -> ClusterCredentials:
        name = stored.record.name
        if stored.envelope.key_id not in self.keyring.key_ids:
            self._keyring = None  # rotated by another process since we loaded the keys
        plaintext = crypto.open_envelope(
            self.keyring,
            name,
            stored.envelope,
            binding=endpoint_binding(stored.record.server, stored.tls),
        )
        try:
            credential = credential_from_bytes(plaintext)
        except (ValueError, KeyError, TypeError):
            raise DecryptError(name) from None
        return ClusterCredentials(
            name=name,
            server=stored.record.server,
            tls=stored.tls,
            credential=credential,
            credential_rev=stored.record.credential_rev,
        )

    @property
    def connections(self) -> ConnectionCache:
        """This registry's connection cache (see ``clusters.connect.connect``)."""
        with self._cache_lock:
            if self._cache is None:
                from clusters.connect import ConnectionCache

                self._cache = ConnectionCache()
            return self._cache

    def _probe(self, creds: ClusterCredentials, timeout: float) -> str:
        if self._prober is not None:
            return self._prober(creds, timeout)
        from clusters.connect import probe_version

        return probe_version(creds, timeout)

    # -- writing

    def add(
        self,
        cluster: NewCluster,
        *,
        upsert: bool = False,
        check: bool = True,
        timeout: float = DEFAULT_CHECK_TIMEOUT,
        same_server: str | None = None,
    ) -> ClusterRecord:
        """Register (or with ``upsert`` replace) a cluster; see ``add_many``."""
        return self.add_many(
            [cluster], upsert=upsert, check=check, timeout=timeout, same_server=same_server
        )[0]

    def add_many(
        self,
        clusters: Sequence[NewCluster],
        *,
        upsert: bool = False,
        check: bool = True,
        timeout: float = DEFAULT_CHECK_TIMEOUT,
        same_server: str | None = None,
    ) -> _Records:
        """Register clusters all together or not at all.

        A cluster whose API server (normalised URL) another name already has is refused
        (``SameServer``) unless ``same_server`` gives a reason, which is recorded in its
        ``gitops-hub/same-server-reason`` annotation.

        Unless ``check`` is false, each cluster must answer ``/version`` with the given
        credential first; an unreachable or unauthorised one is refused (ClusterError)
        and nothing is written.
        """
        seen: set[str] = set()
        for cluster in clusters:
            cluster.validate()
            if cluster.name in seen:
                raise ClusterUsageError(f"cluster {cluster.name!r} is given twice")
            seen.add(cluster.name)
            if not upsert and self._storage.get_record(cluster.name) is not None:
                raise ClusterExists(cluster.name)
        clusters = _check_same_server(self._storage.list_records(), clusters, same_server)
        self.keyring  # noqa: B018 - load (and check) the master key before probing anything
        results: dict[str, CheckResult] = {}
        if check:
            for probed in self._probe_all(
                [
                    ClusterCredentials(
                        name=c.name,
                        server=c.server,
                        tls=c.tls,
                        credential=c.credential,
                        credential_rev="",
                    )
                    for c in clusters
                ],
                timeout,
            ):
                if not probed.ok:
                    raise ClusterError(
                        f"cluster {probed.name!r}: {probed.message}; not registered "
                        "(fix the credential or server, or pass --skip-check)"
                    )
                results[probed.name] = probed
        records: list[ClusterRecord] = []
        with self._storage.cluster_transaction() as txn:
            sealing_key = self._sealing_key(txn)
            # Again inside the transaction: another process may have added one meanwhile.
            clusters = _check_same_server(
                (row.record for row in txn.list_clusters()), clusters, same_server
            )
            for cluster in clusters:
                old = txn.get_cluster(cluster.name)
                if old is not None and not upsert:
                    raise ClusterExists(cluster.name)
                result = results.get(cluster.name)
                if result is not None:
                    version = result.server_version
                    last: LastCheck | None = LastCheck(time=_now(), ok=True, message=result.message)
                elif old is not None and old.record.server == cluster.server:
                    version, last = old.record.server_version, None
                else:
                    version, last = None, None
                record = ClusterRecord(
                    name=cluster.name,
                    server=cluster.server,
                    labels=dict(cluster.labels),
                    annotations=dict(cluster.annotations),
                    namespaces=tuple(cluster.namespaces),
                    cluster_resources=cluster.cluster_resources,
                    project=cluster.project,
                    server_version=version,
                    last_check=last,
                    credential_kind=cluster.credential.kind,
                    credential_rev=_new_rev(),
                )
                envelope = crypto.seal(
                    sealing_key,
                    cluster.name,
                    credential_to_bytes(cluster.credential),
                    binding=endpoint_binding(cluster.server, cluster.tls),
                )
                txn.put_cluster(StoredCluster(record=record, tls=cluster.tls, envelope=envelope))
                records.append(record)
        for record in records:
            log.info("registered cluster %s at %s", record.name, record.server)
        return records

    def set_labels(
        self, name: str, set_labels: Mapping[str, str], remove: Iterable[str] = ()
    ) -> ClusterRecord:
        """Add/overwrite ``set_labels`` and drop ``remove`` (absent keys are fine)."""
        for key, value in set_labels.items():
            validate_key(key)
            validate_label_value(key, value)
        removals = [validate_key(k) for k in remove]
        with self._storage.cluster_transaction() as txn:
            stored = txn.get_cluster(name)
            if stored is None:
                raise ClusterNotFound(name)
            labels = {k: v for k, v in stored.record.labels.items() if k not in removals}
            labels.update(set_labels)
            record = replace(stored.record, labels=labels)
            txn.put_cluster(replace(stored, record=record))
        return record

    def remove(self, name: str) -> ClusterRecord:
        """Forget a cluster and its credential; returns what was removed.

        Building block for ``hub cluster rm`` (and, later, its ``--cascade``): callers
        that must act on the cluster first do so before calling this.
        """
        with self._storage.cluster_transaction() as txn:
            stored = txn.get_cluster(name)
            if stored is None:
                raise ClusterNotFound(name)
            txn.delete_cluster(name)
        if self._cache is not None:
            self._cache.forget(name)
        log.info("removed cluster %s", name)
        return stored.record

    def check(
        self, names: Sequence[str] | None = None, *, timeout: float = DEFAULT_CHECK_TIMEOUT
    ) -> _Results:
        """Re-test connectivity of ``names`` (default: all) and store each result.

        Every record is tried: one whose credential cannot be opened (wrong master key,
        corrupt row, edited server) is reported as failed, with nothing stored for it and
        nothing sent anywhere, and the others are still checked. A record still sealed
        in the old envelope version is re-sealed (bound to its server) on the way.
        """
        wanted = list(dict.fromkeys(names)) if names else [r.name for r in self.list()]
        stored: _Stored = []
        for name in wanted:
            row = self._storage.get_cluster(name)
            if row is None:
                raise ClusterNotFound(name)
            stored.append(row)
        creds: list[ClusterCredentials] = []
        unreadable: dict[str, CheckResult] = {}
        for row in stored:
            try:
                creds.append(self._open(row))
            except DecryptError as exc:
                unreadable[row.record.name] = CheckResult(
                    name=row.record.name, ok=False, message=str(exc), server_version=None
                )
        probed = {r.name: r for r in self._probe_all(creds, timeout)}
        now = _now()
        with self._storage.cluster_transaction() as txn:
            for cred in creds:
                result = probed[cred.name]
                current = txn.get_cluster(cred.name)
                # A credential replaced while we probed makes this result stale.
                if current is None or current.record.credential_rev != cred.credential_rev:
                    continue
                record = replace(
                    current.record,
                    last_check=LastCheck(time=now, ok=result.ok, message=result.message),
                    server_version=result.server_version or current.record.server_version,
                )
                envelope = current.envelope
                if envelope.version == 1:
                    envelope = self._seal(self._sealing_key(txn), cred)
                txn.put_cluster(replace(current, record=record, envelope=envelope))
        return [probed.get(name) or unreadable[name] for name in wanted]

    @staticmethod
    def _seal(key: MasterKey, creds: ClusterCredentials) -> Envelope:
        return crypto.seal(
            key,
            creds.name,
            credential_to_bytes(creds.credential),
            binding=endpoint_binding(creds.server, creds.tls),
        )

    def _probe_all(self, creds: Sequence[ClusterCredentials], timeout: float) -> _Results:
        def one(c: ClusterCredentials) -> CheckResult:
            try:
                version = self._probe(c, timeout)
            except ClusterError as exc:
                return CheckResult(name=c.name, ok=False, message=str(exc), server_version=None)
            return CheckResult(
                name=c.name, ok=True, message=f"reachable, {version}", server_version=version
            )

        if len(creds) <= 1:
            return [one(c) for c in creds]
        with ThreadPoolExecutor(max_workers=min(8, len(creds))) as pool:
            return list(pool.map(one, creds))

    # -- master key rotation

    def rewrap_all(self, keyring: Keyring, target: MasterKey) -> int:
        """Re-wrap every data key under ``target``, in one transaction.

        Records already under ``target`` are left alone, so re-running an interrupted
        rotation is safe. Records still in envelope version 1 are re-sealed as version 2
        (bound to their server). Nothing is written unless every record could be re-wrapped.
        """
        count = 0
        with self._storage.cluster_transaction() as txn:
            for row in txn.list_clusters():
                if row.envelope.key_id == target.key_id and row.envelope.version == 2:
                    continue
                binding = endpoint_binding(row.record.server, row.tls)
                if row.envelope.version == 1:
                    plaintext = crypto.open_envelope(keyring, row.record.name, row.envelope)
                    envelope = crypto.seal(target, row.record.name, plaintext, binding=binding)
                else:
                    envelope = crypto.rewrap(
                        keyring, target, row.record.name, row.envelope, binding=binding
                    )
                record = replace(row.record, credential_rev=_new_rev())
                txn.put_cluster(replace(row, record=record, envelope=envelope))
                count += 1
            txn.set_master_key_id(target.key_id)
        self._keyring = Keyring(
            primary=target,
            others=tuple(
                k for k in (keyring.primary, *keyring.others) if k.key_id != target.key_id
            ),
        )
        return count

    def key_id_of(self, name: str) -> str:
        """The id of the master key that wraps ``name``'s data key."""
        stored = self._storage.get_cluster(name)
        if stored is None:
            raise ClusterNotFound(name)
        return stored.envelope.key_id

    def key_ids_in_use(self) -> dict[str, int]:
        """How many records each master key id wraps (for rotation bookkeeping)."""
        counts: dict[str, int] = {}
        for record in self._storage.list_records():
            key_id = self.key_id_of(record.name)
            counts[key_id] = counts.get(key_id, 0) + 1
        return counts


def iter_label_pairs(labels: Mapping[str, str]) -> Iterator[str]:
    for key in sorted(labels):
        yield f"{key}={labels[key]}"
