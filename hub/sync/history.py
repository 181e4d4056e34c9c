"""Sync history per Application, and the operation in flight.

Every finished sync is recorded (``SyncHistory.record``): a per-app id counting up as Argo
CD's history ids do, the revision and source, who or what started it (a user, automated
sync, self-heal, rollback), start and finish times, the result phase and message, the
per-resource results, and the rendered manifests of that revision, which is what a rollback
re-applies. Only the newest ``revisionHistoryLimit`` entries (default 10, as Argo CD) are
kept.

Secrets: rendered manifests may hold Secret values. They are never stored in clear: the
manifests of an entry are sealed with the registry's envelope encryption
(``clusters.crypto.seal``: a fresh AES-256-GCM data key wrapped by the hub's master key,
with ``sync-history/<app>/<id>`` as associated data, so an entry's ciphertext cannot be
swapped into another). Reading them back (rollback) needs the master key; listing history
does not. Per-resource results carry names and messages only, never object bodies.

The operation in flight is written when a sync starts and removed when it is recorded, so
one cut short by a crash is found by ``interrupted()`` and can be recorded as ``Error``.

The store behind this is the ``HistoryStorage`` protocol (``hub.store.Store`` implements it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from clusters import crypto
from clusters.crypto import Envelope, Keyring
from hub.errors import HubError
from hub.sync.model import DEFAULT_REVISION_HISTORY_LIMIT


class HistoryError(HubError):
    """A history entry is missing or cannot be read."""


class Trigger(StrEnum):
    USER = "user"
    AUTOMATED = "automated"
    SELF_HEAL = "self-heal"
    ROLLBACK = "rollback"


class OperationPhase(StrEnum):
    RUNNING = "Running"
    TERMINATING = "Terminating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ERROR = "Error"

    @property
    def completed(self) -> bool:
        return self in (OperationPhase.SUCCEEDED, OperationPhase.FAILED, OperationPhase.ERROR)


@dataclass(frozen=True, kw_only=True)
class ResourceResult:
    """What happened to one resource in a sync (Argo's ``ResourceResult``)."""

    group: str
    kind: str
    namespace: str
    name: str
    phase: str  # PreSync, Sync, PostSync, SyncFail
    wave: int
    action: str  # apply, prune, delete
    status: str  # Synced, SyncFailed, Pruned, PruneSkipped, Running, Skipped
    message: str = ""
    health: str | None = None
    hook: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "phase": self.phase,
            "wave": self.wave,
            "action": self.action,
            "status": self.status,
            "message": self.message,
            "health": self.health,
            "hook": self.hook,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResourceResult:
        return cls(
            group=str(data.get("group") or ""),
            kind=str(data.get("kind") or ""),
            namespace=str(data.get("namespace") or ""),
            name=str(data.get("name") or ""),
            phase=str(data.get("phase") or ""),
            wave=int(data.get("wave") or 0),
            action=str(data.get("action") or ""),
            status=str(data.get("status") or ""),
            message=str(data.get("message") or ""),
            health=None if data.get("health") is None else str(data["health"]),
            hook=bool(data.get("hook")),
        )


@dataclass(frozen=True, kw_only=True)
class Operation:
    """A sync operation: in flight (phase Running) or finished."""

    app: str
    operation_id: str
    cluster: str
    revision: str
    source: Mapping[str, Any] = field(default_factory=dict)
    initiated_by: str = ""
    trigger: Trigger = Trigger.USER
    started_at: datetime
    phase: OperationPhase = OperationPhase.RUNNING
    message: str = ""
    resources: tuple[ResourceResult, ...] = ()
    updated_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class HistoryEntry:
    app: str
    id: int
    operation_id: str
    cluster: str
    revision: str
    source: Mapping[str, Any]
    initiated_by: str
    trigger: Trigger
    started_at: datetime
    finished_at: datetime
    phase: OperationPhase
    message: str
    resources: tuple[ResourceResult, ...] = ()
    has_manifests: bool = False


# ---------------------------------------------------------------- storage protocol


@dataclass(frozen=True, kw_only=True)
class HistoryRow:
    """One ``sync_history`` row as the storage keeps it (JSON text, sealed manifests)."""

    app: str
    id: int
    operation_id: str
    cluster: str
    revision: str
    source: str
    initiated_by: str
    trigger: str
    started_at: str
    finished_at: str
    phase: str
    message: str
    resources: str
    manifests: Envelope | None


@dataclass(frozen=True, kw_only=True)
class OperationRow:
    app: str
    operation_id: str
    cluster: str
    revision: str
    source: str
    initiated_by: str
    trigger: str
    started_at: str
    updated_at: str
    phase: str
    message: str
    resources: str


class HistoryTransaction(Protocol):
    def next_history_id(self, app: str) -> int: ...

    def insert_history(self, row: HistoryRow) -> None: ...

    def trim_history(self, app: str, keep: int) -> int:
        """Delete all but the ``keep`` newest entries of ``app``; returns how many went."""
        ...

    def list_history(self, app: str) -> list[HistoryRow]:
        """Oldest first."""
        ...

    def get_history(self, app: str, entry_id: int) -> HistoryRow | None: ...

    def list_history_resources(self, app: str) -> list[str]:
        """The distinct ``resources`` JSON texts of ``app``'s entries, in no particular order
        (no manifests read)."""
        ...

    def put_operation(self, row: OperationRow) -> None: ...

    def get_operation(self, app: str) -> OperationRow | None: ...

    def delete_operation(self, app: str, operation_id: str) -> None: ...

    def list_operations(self) -> list[OperationRow]: ...

    def get_master_key_id(self) -> str | None: ...

    def sealed_history(self) -> list[tuple[str, int, Envelope]]:
        """(app, id, sealed manifests) of every entry that has manifests."""
        ...

    def set_history_envelope(self, app: str, entry_id: int, env: Envelope) -> None: ...


class HistoryStorage(Protocol):
    def history_transaction(self) -> AbstractContextManager[HistoryTransaction]:
        """A write transaction."""
        ...

    def history_reader(self) -> HistoryTransaction:
        """Reads outside a transaction."""
        ...


# ---------------------------------------------------------------- the history


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _aad_name(app: str, entry_id: int) -> str:
    return f"sync-history/{app}/{entry_id}"


def _resources_json(resources: Sequence[ResourceResult]) -> str:
    return json.dumps([r.to_json() for r in resources], sort_keys=True)


def _resources_of(text: str) -> tuple[ResourceResult, ...]:
    return tuple(ResourceResult.from_json(r) for r in json.loads(text or "[]"))


class SyncHistory:
    """Sync history and in-flight operations of every Application, over one storage.

    ``keys`` loads the master keyring (only needed to seal and open manifests).
    """

    def __init__(self, storage: HistoryStorage, keys: Callable[[], Keyring]) -> None:
        self._storage = storage
        self._load_keys = keys
        self._keyring: Keyring | None = None

    def _keys(self) -> Keyring:
        if self._keyring is None:
            self._keyring = self._load_keys()
        return self._keyring

    # -- operations in flight

    def begin(self, op: Operation, *, also: Callable[[], None] | None = None) -> None:
        """Record ``op`` as the app's operation in flight (replacing a stale one).
        ``also``: the caller's own writes, in the same transaction (the storage's
        transaction must let them join it, as ``hub.store.Store``'s does)."""
        self._put_operation(op, also)

    def update(self, op: Operation) -> None:
        self._put_operation(op)

    def _put_operation(self, op: Operation, also: Callable[[], None] | None = None) -> None:
        row = OperationRow(
            app=op.app,
            operation_id=op.operation_id,
            cluster=op.cluster,
            revision=op.revision,
            source=json.dumps(dict(op.source), sort_keys=True),
            initiated_by=op.initiated_by,
            trigger=op.trigger.value,
            started_at=_ts(op.started_at),
            updated_at=_ts(op.updated_at or datetime.now(UTC)),
            phase=op.phase.value,
            message=op.message,
            resources=_resources_json(op.resources),
        )
        with self._storage.history_transaction() as txn:
            txn.put_operation(row)
            if also is not None:
                also()

    def in_flight(self, app: str) -> Operation | None:
        row = self._storage.history_reader().get_operation(app)
        return None if row is None else _operation(row)

    def interrupted(self) -> list[Operation]:
        """Operations still marked in flight (after a restart: cut short by a crash)."""
        return [_operation(r) for r in self._storage.history_reader().list_operations()]

    # -- finished syncs

    def record(
        self,
        op: Operation,
        *,
        finished_at: datetime,
        manifests: Sequence[Mapping[str, Any]] | None,
        limit: int = DEFAULT_REVISION_HISTORY_LIMIT,
        also: Callable[[HistoryEntry], None] | None = None,
    ) -> HistoryEntry:
        """Add a finished operation to the app's history (sealing ``manifests``), clear it
        as the operation in flight, and keep only the newest ``limit`` entries. ``also``:
        the caller's own writes, given the new entry, in the same transaction (as for
        ``begin``)."""
        if not op.phase.completed:
            raise ValueError(f"operation {op.operation_id} is still {op.phase}")
        with self._storage.history_transaction() as txn:
            entry_id = txn.next_history_id(op.app)
            sealed: Envelope | None = None
            if manifests is not None:
                sealed = crypto.seal(
                    self._sealing_key(txn),
                    _aad_name(op.app, entry_id),
                    json.dumps(list(manifests), sort_keys=True).encode(),
                )
            row = HistoryRow(
                app=op.app,
                id=entry_id,
                operation_id=op.operation_id,
                cluster=op.cluster,
                revision=op.revision,
                source=json.dumps(dict(op.source), sort_keys=True),
                initiated_by=op.initiated_by,
                trigger=op.trigger.value,
                started_at=_ts(op.started_at),
                finished_at=_ts(finished_at),
                phase=op.phase.value,
                message=op.message,
                resources=_resources_json(op.resources),
                manifests=sealed,
            )
            txn.insert_history(row)
            txn.delete_operation(op.app, op.operation_id)
            # Argo CD keeps at least one entry whatever the limit says (rollback needs it).
            txn.trim_history(op.app, max(1, limit))
            entry = _entry(row, op.resources)
            if also is not None:
                also(entry)
        return entry

    def record_interrupted(self, op: Operation) -> HistoryEntry:
        """Record an operation ``interrupted()`` returned (the process running it stopped)
        as Error; its manifests are unknown, so the entry cannot be rolled back to."""
        return self.record(
            replace(
                op,
                phase=OperationPhase.ERROR,
                message=f"interrupted while {op.phase.value.lower()}: {op.message}".rstrip(": "),
            ),
            finished_at=op.updated_at or datetime.now(UTC),
            manifests=None,
        )

    def _sealing_key(self, txn: HistoryTransaction) -> crypto.MasterKey:
        keyring = self._keys()
        current = txn.get_master_key_id()
        key = keyring.primary if current is None else keyring.find(current)
        if key is None:
            self._keyring = None
            key = self._keys().find(current or "")
        if key is None:
            raise HistoryError(
                f"the master key at hand is not the hub's current key ({current}); cannot "
                "seal the manifests of a sync history entry. Check HUB_MASTER_KEY"
            )
        return key

    def rewrap_all(self, keyring: Keyring, target: crypto.MasterKey) -> int:
        """Re-wrap every entry's data key with ``target`` (a master key rotation; call it
        with the clusters' ``Registry.rewrap_all``). Returns how many entries changed."""
        changed = 0
        with self._storage.history_transaction() as txn:
            for app, entry_id, env in txn.sealed_history():
                if env.key_id == target.key_id:
                    continue
                txn.set_history_envelope(
                    app, entry_id, crypto.rewrap(keyring, target, _aad_name(app, entry_id), env)
                )
                changed += 1
        self._keyring = None
        return changed

    def entries(self, app: str) -> list[HistoryEntry]:
        """The app's history, oldest first."""
        return [_entry(r) for r in self._storage.history_reader().list_history(app)]

    def resource_kinds(self, app: str) -> set[tuple[str, str]]:
        """(group, kind) of every resource the app's history names: what a sync must also
        look at to prune. Reads the resource lists only (every sync asks; the entries'
        sealed manifests are large), and of those only the two fields it needs."""
        return {
            (str(r.get("group") or ""), str(r.get("kind") or ""))
            for text in self._storage.history_reader().list_history_resources(app)
            for r in json.loads(text or "[]")
        }

    def get(self, app: str, entry_id: int) -> HistoryEntry:
        return _entry(self._row(app, entry_id))

    def _row(self, app: str, entry_id: int) -> HistoryRow:
        row = self._storage.history_reader().get_history(app, entry_id)
        if row is None:
            known = ", ".join(str(e.id) for e in self.entries(app)) or "none"
            raise HistoryError(f"app {app}: no history entry {entry_id} (known ids: {known})")
        return row

    def manifests(self, app: str, entry_id: int) -> list[dict[str, Any]]:
        """The rendered manifests of entry ``entry_id`` (decrypted, in memory only)."""
        row = self._row(app, entry_id)
        if row.manifests is None:
            raise HistoryError(
                f"app {app}: history entry {entry_id} has no manifests (the sync failed before "
                "rendering); choose another id"
            )
        keyring = self._keys()
        if row.manifests.key_id not in keyring.key_ids:
            self._keyring = None
            keyring = self._keys()
        try:
            plaintext = crypto.open_envelope(keyring, _aad_name(app, entry_id), row.manifests)
        except crypto.DecryptError:
            raise HistoryError(
                f"app {app}: cannot decrypt the manifests of history entry {entry_id}: "
                "wrong master key?"
            ) from None
        data = json.loads(plaintext)
        if not isinstance(data, list):
            raise HistoryError(f"app {app}: history entry {entry_id} is corrupt")
        return [dict(m) for m in data]


def _operation(row: OperationRow) -> Operation:
    return Operation(
        app=row.app,
        operation_id=row.operation_id,
        cluster=row.cluster,
        revision=row.revision,
        source=json.loads(row.source or "{}"),
        initiated_by=row.initiated_by,
        trigger=Trigger(row.trigger),
        started_at=_parse_ts(row.started_at),
        updated_at=_parse_ts(row.updated_at),
        phase=OperationPhase(row.phase),
        message=row.message,
        resources=_resources_of(row.resources),
    )


def _entry(row: HistoryRow, resources: Sequence[ResourceResult] | None = None) -> HistoryEntry:
    """``row`` as an entry; ``resources``: its resources when the caller holds them (the
    row's JSON of them is then not parsed back)."""
    return HistoryEntry(
        app=row.app,
        id=row.id,
        operation_id=row.operation_id,
        cluster=row.cluster,
        revision=row.revision,
        source=json.loads(row.source or "{}"),
        initiated_by=row.initiated_by,
        trigger=Trigger(row.trigger),
        started_at=_parse_ts(row.started_at),
        finished_at=_parse_ts(row.finished_at),
        phase=OperationPhase(row.phase),
        message=row.message,
        resources=_resources_of(row.resources) if resources is None else tuple(resources),
        has_manifests=row.manifests is not None,
    )


def short_revision(revision: str) -> str:
    """A revision for tables: commit SHAs cut to 10 characters, chart versions whole, one
    per source for a multi-source app (``sha1,sha2``)."""
    return ",".join(
        part[:10] if re.fullmatch(r"[0-9a-f]{40}", part) else part for part in revision.split(",")
    )


def iter_history_lines(entries: Sequence[HistoryEntry]) -> Iterator[str]:
    """``hub app history`` table rows (like ``argocd app history``)."""
    yield f"{'ID':<4} {'DATE':<25} {'REVISION':<12} {'TRIGGER':<10} {'PHASE':<10} MESSAGE"
    for e in entries:
        yield (
            f"{e.id:<4} {e.finished_at.isoformat(timespec='seconds'):<25} "
            f"{short_revision(e.revision):<12} "
            f"{e.trigger.value:<10} {e.phase.value:<10} {e.message}"
        )
