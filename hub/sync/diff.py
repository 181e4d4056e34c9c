"""Compare desired manifests with live objects: per-resource and app sync status, and a
human-readable diff like ``argocd app diff``.

The comparison is a 2-way diff over the fields that matter to us (DESIGN.md):

- every field Git declares, and
- every field our field manager (``gitops-hub``) owns in the live object's
  ``metadata.managedFields`` — so a field Git stopped declaring, which server-side apply still
  attributes to us, is drift until the next apply removes it.

Everything else in the live object (server defaults, fields other controllers own, status) is
dropped before comparing, so it is never drift. Lists are compared item by item: associative
lists by the keys managedFields records (``k:{"name":"app"}``), other lists of objects by
position, scalar sets (``v:``) as sets, atomic lists whole. Then equivalent scalars are
aligned: quantities by value (``1000m`` == ``1``), numbers with their string form (``1`` ==
``"1"``, which the API server coerces), and ``ignoreDifferences`` is applied to both sides
(``jsonPointers``, ``jqPathExpressions`` in a child process with a timeout,
``managedFieldsManagers``).

Pure: no cluster access. The only side effect is the optional jq child process, owned by a
``JqRunner`` the caller controls.
"""

from __future__ import annotations

import base64
import copy
import difflib
import json
import multiprocessing
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from multiprocessing.connection import Connection
from typing import Any

import yaml

from hub.sync.model import DiffError, IgnoreDifference
from hub.sync.resources import (
    FIELD_MANAGER,
    TRACKING_ANNOTATION,
    ResourceKey,
    argo_glob_match,
    ignores_extraneous,
    is_hook,
    is_skip,
    owning_app,
)

DEFAULT_JQ_TIMEOUT_S = 1.0  # Argo CD's default for jqPathExpressions
_JQ_STARTUP_TIMEOUT_S = 60.0

_METADATA_NOISE = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_NOISE_ANNOTATIONS = (TRACKING_ANNOTATION, "kubectl.kubernetes.io/last-applied-configuration")


class SyncStatus(StrEnum):
    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    UNKNOWN = "Unknown"


class DiffReason(StrEnum):
    DIFFERS = "differs"
    MISSING = "missing live"
    EXTRANEOUS = "extraneous (requires pruning)"


# --------------------------------------------------------------------------- managedFields


PathElement = tuple[str, Any]


@dataclass
class FieldNode:
    """A node of a managedFields ``fieldsV1`` set. ``children`` keyed by path element:
    ``("f", name)``, ``("k", ((key, json), ...))``, ``("v", json)``, ``("i", index)``."""

    children: dict[PathElement, FieldNode] = field(default_factory=dict)

    def child(self, element: PathElement) -> FieldNode | None:
        return self.children.get(element)

    def merge(self, other: FieldNode) -> None:
        for k, v in other.children.items():
            if k in self.children:
                self.children[k].merge(v)
            else:
                self.children[k] = copy.deepcopy(v)

    def list_elements(self) -> list[tuple[PathElement, FieldNode]]:
        return [(k, v) for k, v in self.children.items() if k[0] in ("k", "v", "i")]


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def parse_fields_v1(raw: Mapping[str, Any]) -> FieldNode:
    """Parse the ``fieldsV1`` encoding (``f:``, ``k:{...}``, ``v:``, ``i:``, ``.``)."""
    node = FieldNode()
    for key, sub in raw.items():
        if key == ".":
            continue
        prefix, _, rest = key.partition(":")
        child = parse_fields_v1(sub) if isinstance(sub, Mapping) else FieldNode()
        if prefix == "f":
            node.children[("f", rest)] = child
        elif prefix == "k":
            try:
                keyed = json.loads(rest)
            except ValueError:
                continue
            if isinstance(keyed, dict):
                node.children[("k", tuple(sorted((k, _canon(v)) for k, v in keyed.items())))] = (
                    child
                )
        elif prefix == "v":
            try:
                node.children[("v", _canon(json.loads(rest)))] = child
            except ValueError:
                continue
        elif prefix == "i":
            try:
                node.children[("i", int(rest))] = child
            except ValueError:
                continue
    return node


class _ParsedFieldSets:
    """``parse_fields_v1`` of the ``fieldsV1`` mappings seen last, by identity: every
    refresh and every sync compares the live cache's objects again, and the cache keeps
    one copy of identical field sets, so the same mapping is parsed over and over. Each
    entry holds its mapping, so no other object can take its id while it is here; the
    mappings are never changed once decoded. Shared nodes: callers must not change them."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, tuple[Mapping[str, Any], FieldNode]] = OrderedDict()

    def parse(self, raw: Mapping[str, Any]) -> FieldNode:
        key = id(raw)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] is raw:
                self._entries.move_to_end(key)
                return hit[1]
        node = parse_fields_v1(raw)
        with self._lock:
            self._entries[key] = (raw, node)
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return node


_FIELD_SETS = _ParsedFieldSets()


def managed_fields_of(obj: Mapping[str, Any], manager: str) -> FieldNode | None:
    """The union of the field sets ``manager`` owns in ``obj`` (main resource, not status)."""
    entries = (obj.get("metadata") or {}).get("managedFields")
    if not isinstance(entries, list):
        return None
    found: FieldNode | None = None
    merged = False
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("manager") != manager:
            continue
        if entry.get("subresource"):
            continue
        fields_v1 = entry.get("fieldsV1")
        if not isinstance(fields_v1, Mapping):
            continue
        parsed = _FIELD_SETS.parse(fields_v1)
        if found is None:
            found = parsed
        else:
            if not merged:  # the first one is shared: merge into a copy of it
                found, merged = copy.deepcopy(found), True
            found.merge(parsed)
    return found


def _element_matches(element: PathElement, item: Any, index: int) -> bool:
    kind, value = element
    if kind == "k":
        return isinstance(item, Mapping) and all(
            k in item and _canon(item[k]) == v for k, v in value
        )
    if kind == "v":
        return bool(_canon(item) == value)
    if kind == "i":
        return bool(value == index)
    return False


def _owned_item(owned: FieldNode | None, item: Any, index: int) -> FieldNode | None:
    if owned is None:
        return None
    for element, node in owned.list_elements():
        if _element_matches(element, item, index):
            return node
    return None


# --------------------------------------------------------------------------- normalisation


def _drop_nulls(value: Any) -> Any:
    """Without nulls, empty maps and empty lists as field values.

    Kubernetes' Go types drop them (``omitempty``), so ``resources: {}`` or ``env: []`` in Git
    never comes back from the server; keeping them would be drift that never heals. List
    items are kept even when empty, their positions matter."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if v is None:
                continue
            cleaned = _drop_nulls(v)
            if cleaned == {} or cleaned == []:
                continue
            out[k] = cleaned
        return out
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _has_value(fields: Mapping[str, Any]) -> bool:
    """Would ``_drop_nulls`` keep any of these fields?"""
    return any(v is not None and _drop_nulls(v) not in ({}, []) for v in fields.values())


def normalize(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy without server bookkeeping: metadata noise, status, our tracking annotation,
    ``last-applied-configuration``, nulls and empty maps/lists; Secret ``stringData`` folded
    into ``data``."""
    # Status and the metadata noise go before the deep clean-up: a live object's
    # managedFields and status are most of its nodes, and the compare of every refresh
    # copied them only to throw them away.
    top = dict(obj)
    top.pop("status", None)
    original_meta = top.get("metadata")
    if isinstance(original_meta, dict):
        top["metadata"] = {k: v for k, v in original_meta.items() if k not in _METADATA_NOISE}
    # _drop_nulls builds new containers all the way down, so this is already a copy
    out: dict[str, Any] = _drop_nulls(top)
    if (
        isinstance(original_meta, dict)
        and "metadata" not in out
        and _has_value({k: v for k, v in original_meta.items() if k in _METADATA_NOISE})
    ):
        out["metadata"] = {}  # noise alone made it non-empty: an empty map, as before
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for k in ("annotations", "labels"):
            values = meta.get(k)
            if isinstance(values, dict):
                for noise in _NOISE_ANNOTATIONS if k == "annotations" else ():
                    values.pop(noise, None)
                if not values:
                    meta.pop(k)
    if out.get("kind") == "Secret" and str(out.get("apiVersion")) == "v1":
        string_data = out.pop("stringData", None)
        if isinstance(string_data, dict) and string_data:
            data = dict(out.get("data") or {})
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            out["data"] = data
    return out


def _project(live: Any, desired: Any, owned: FieldNode | None) -> Any:
    """The part of ``live`` covered by ``desired``'s fields and the ``owned`` field set."""
    if isinstance(live, dict):
        if not isinstance(desired, dict) and (
            desired is not None or owned is None or not owned.children
        ):
            return live  # a scalar declared where a map lives, or an atomic owned map
        d = desired if isinstance(desired, dict) else {}
        out: dict[str, Any] = {}
        for k, lv in live.items():
            o = owned.child(("f", k)) if owned is not None else None
            if k in d:
                out[k] = _project(lv, d[k], o)
            elif o is not None:
                value = _project(lv, None, o)
                # an owned map whose owned entries are all gone (ours removed elsewhere, or
                # noise like our tracking id stripped) is nothing to compare
                if value not in ({}, []):
                    out[k] = value
        return out
    if isinstance(live, list):
        return _project_list(live, desired, owned)
    return live


def _key_fields(owned: FieldNode | None) -> tuple[str, ...]:
    if owned is None:
        return ()
    names: list[str] = []
    for (kind, value), _ in owned.list_elements():
        if kind == "k":
            for k, _v in value:
                if k not in names:
                    names.append(k)
    return tuple(names)


def _project_list(live: list[Any], desired: Any, owned: FieldNode | None) -> list[Any]:
    d = desired if isinstance(desired, list) else []
    elements = owned.list_elements() if owned is not None else []
    keys = _key_fields(owned)
    if keys and all(isinstance(x, dict) for x in live):
        # Associative list: match desired items to live items by the merge keys.
        used: set[int] = set()
        out: list[Any] = []
        for ditem in d:
            if not isinstance(ditem, dict):
                continue
            for i, litem in enumerate(live):
                if i in used:
                    continue
                if all(ditem.get(k) == litem.get(k) for k in keys if k in ditem):
                    used.add(i)
                    out.append(_project(litem, ditem, _owned_item(owned, litem, i)))
                    break
        for i, litem in enumerate(live):
            if i not in used:
                node = _owned_item(owned, litem, i)
                if node is not None:
                    out.append(_project(litem, None, node))
        return out
    if any(e[0] == "v" for e, _ in elements):
        # A set of scalars: items we declare, in our order, then items we still own.
        present = [x for x in d if x in live]
        extra = [
            x for i, x in enumerate(live) if x not in d and _owned_item(owned, x, i) is not None
        ]
        return present + extra
    if d and all(isinstance(x, dict) for x in d) and all(isinstance(x, dict) for x in live):
        # Objects without recorded keys: compare position by position.
        n = min(len(d), len(live))
        return [_project(live[i], d[i], _owned_item(owned, live[i], i)) for i in range(n)] + live[
            n:
        ]
    return live


_QUANTITY = re.compile(
    r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
)
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY_PARENTS = frozenset(
    {
        "limits",
        "requests",
        "hard",
        "capacity",
        "allocatable",
        "overhead",
        "max",
        "min",
        "default",
        "defaultRequest",
        "maxLimitRequestRatio",
    }
)


def parse_quantity(value: Any) -> Decimal | None:
    """A Kubernetes resource quantity's value, or None if ``value`` is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if not isinstance(value, str):
        return None
    m = _QUANTITY.match(value.strip())
    if m is None:
        return None
    sign, number, exponent, suffix = m.groups()
    try:
        amount = Decimal(number) * _SUFFIX[suffix or ""]
        if exponent:
            amount *= Decimal(10) ** int(exponent)
    except InvalidOperation:
        return None
    return -amount if sign == "-" else amount


def _equivalent(desired: Any, live: Any, parent: str, key: str) -> bool:
    if desired == live and type(desired) is type(live):
        return True
    if parent in _QUANTITY_PARENTS or key == "sizeLimit":
        a, b = parse_quantity(desired), parse_quantity(live)
        if a is not None and b is not None:
            return a == b
    numbers = (int, float)
    if isinstance(desired, bool) or isinstance(live, bool):
        return False
    if isinstance(desired, numbers) and isinstance(live, numbers):
        return bool(desired == live)
    if isinstance(desired, numbers) and isinstance(live, str):
        return _num_text(desired) == live
    if isinstance(live, numbers) and isinstance(desired, str):
        return _num_text(live) == desired
    return False


def _num_text(n: int | float) -> str:
    return str(int(n)) if isinstance(n, float) and n.is_integer() else str(n)


def _is_zero(value: Any) -> bool:
    return value is False or value == "" or (type(value) in (int, float) and value == 0)


def _align(desired: Any, live: Any, parent: str = "", key: str = "") -> Any:
    """``desired`` with scalars replaced by live's spelling where they mean the same value,
    and zero values (``false``, ``0``, ``""``) dropped where live has no such field: the Go
    types omit them (``readOnly: false`` never comes back), so they are not drift."""
    if isinstance(desired, dict) and isinstance(live, dict):
        out = {}
        for k, v in desired.items():
            if k in live:
                out[k] = _align(v, live[k], key, k)
            elif not _is_zero(v):
                out[k] = v
        return out
    if isinstance(desired, list) and isinstance(live, list):
        return [
            _align(d, live[i], parent, key) if i < len(live) else d for i, d in enumerate(desired)
        ]
    if isinstance(desired, dict | list) or isinstance(live, dict | list):
        return desired
    return live if _equivalent(desired, live, parent, key) else desired


# --------------------------------------------------------------------------- ignoreDifferences


def _ignore_applies(rule: IgnoreDifference, key: ResourceKey) -> bool:
    """Argo's matching: group and kind are globs (``""`` is the core group), name and
    namespace exact when set."""
    try:
        return (
            argo_glob_match(rule.group, key.group)
            and argo_glob_match(rule.kind, key.kind)
            and rule.name in ("", key.name)
            and rule.namespace in ("", key.namespace)
        )
    except ValueError as exc:
        raise DiffError(
            f"ignoreDifferences group/kind pattern {rule.group!r}/{rule.kind!r} is invalid: {exc}"
        ) from exc


def _pointer_tokens(pointer: str) -> list[str]:
    if pointer in ("", "/"):
        return []
    if not pointer.startswith("/"):
        raise DiffError(f"ignoreDifferences jsonPointer {pointer!r} must start with '/'")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def remove_pointer(obj: Any, pointer: str) -> None:
    """Remove the RFC 6901 ``pointer`` from ``obj`` in place; a missing path is no error."""
    tokens = _pointer_tokens(pointer)
    if not tokens:
        return
    cur = obj
    for token in tokens[:-1]:
        if isinstance(cur, dict):
            cur = cur.get(token)
        elif isinstance(cur, list) and token.isdigit() and int(token) < len(cur):
            cur = cur[int(token)]
        else:
            return
    last = tokens[-1]
    if isinstance(cur, dict):
        cur.pop(last, None)
    elif isinstance(cur, list) and last.isdigit() and int(last) < len(cur):
        del cur[int(last)]


def remove_owned(value: Any, owned: FieldNode) -> Any:
    """``value`` without the fields in ``owned`` (a manager's field set)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            node = owned.child(("f", k))
            if node is None:
                out[k] = v
            elif node.children:
                out[k] = remove_owned(v, node)
            # a leaf: the whole field belongs to that manager
        return out
    if isinstance(value, list):
        kept = []
        for i, item in enumerate(value):
            node = _owned_item(owned, item, i)
            if node is None:
                kept.append(item)
            elif node.children:
                kept.append(remove_owned(item, node))
        return kept
    return value


def _jq_worker(conn: Connection) -> None:  # pragma: no cover - runs in the child process
    import jq

    conn.send(("ready", None))
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        obj, expressions = request
        try:
            for expr in expressions:
                obj = jq.compile(f"del({expr})").input_value(obj).first()
            conn.send(("ok", obj))
        except Exception as exc:
            conn.send(("error", str(exc)))


class JqRunner:
    """Evaluates ``jqPathExpressions`` in a child process so a runaway expression can be
    stopped: the jq library holds the GIL, so a thread cannot be timed out. Use as a context
    manager (or call ``close``); the process starts on first use and restarts after a
    timeout."""

    def __init__(self, *, timeout_s: float = DEFAULT_JQ_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def __enter__(self) -> JqRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> Connection:
        if self._conn is not None and self._proc is not None and self._proc.is_alive():
            return self._conn
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_jq_worker, args=(child,), daemon=True, name="gitops-hub-jq")
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        # Start-up (a fresh interpreter importing jq) must not eat the per-expression budget.
        if not parent.poll(_JQ_STARTUP_TIMEOUT_S) or parent.recv()[0] != "ready":
            self.close()
            raise DiffError("could not start the jq evaluator process")
        return parent

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            self._proc.join(timeout=2)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
        self._proc = self._conn = None

    def delete_paths(self, obj: Any, expressions: Sequence[str]) -> Any:
        """``obj`` after ``del(expr)`` for each expression."""
        if not expressions:
            return obj
        check_jq_expressions(expressions)
        conn = self._start()
        conn.send((obj, list(expressions)))
        if not conn.poll(self.timeout_s):
            assert self._proc is not None
            self._proc.kill()
            self._proc.join()
            self._proc = None
            self._conn = None
            raise DiffError(
                f"ignoreDifferences jqPathExpressions {list(expressions)!r} took longer than "
                f"{self.timeout_s:g}s; simplify the expression"
            )
        status, result = conn.recv()
        if status != "ok":
            detail = " ".join(str(result).split())
            raise DiffError(f"ignoreDifferences jqPathExpressions {list(expressions)!r}: {detail}")
        return result


def check_jq_expressions(expressions: Iterable[str]) -> None:
    """Fail fast, in-process, on expressions that do not compile (compiling cannot hang)."""
    import jq

    for expr in expressions:
        try:
            jq.compile(f"del({expr})")
        except ValueError as exc:
            raise DiffError(
                f"ignoreDifferences jqPathExpression {expr!r} is invalid: {exc}"
            ) from exc


def _apply_ignores(
    obj: dict[str, Any] | None,
    rules: Sequence[IgnoreDifference],
    live_raw: Mapping[str, Any] | None,
    jq_runner: JqRunner | None,
) -> dict[str, Any] | None:
    if obj is None:
        return None
    out: Any = obj
    for rule in rules:
        for pointer in rule.json_pointers:
            remove_pointer(out, pointer)
        if rule.jq_path_expressions:
            if jq_runner is None:
                raise DiffError("jqPathExpressions need a JqRunner")
            out = jq_runner.delete_paths(out, rule.jq_path_expressions)
        if live_raw is not None:
            for manager in rule.managed_fields_managers:
                owned = managed_fields_of(live_raw, manager)
                if owned is not None:
                    out = remove_owned(out, owned)
    return out if isinstance(out, dict) else {}


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, kw_only=True)
class ResourceDiff:
    key: ResourceKey
    status: SyncStatus
    reason: DiffReason | None = None
    desired: dict[str, Any] | None = None  # normalised, as compared
    live: dict[str, Any] | None = None  # normalised and projected, as compared
    # False for extraneous resources marked IgnoreExtraneous: they stay visible but do not
    # make the app OutOfSync.
    counts_for_app: bool = True
    # An ignoreDifferences rule applied to this resource: Synced then does not mean that
    # an apply of the desired object would change nothing (the ignored fields may differ).
    ignored: bool = False

    @property
    def requires_pruning(self) -> bool:
        return self.reason is DiffReason.EXTRANEOUS

    def diff_text(self) -> str:
        """``===== group/kind namespace/name ======`` and a unified diff, live -> desired."""
        header = (
            f"===== {self.key.group}/{self.key.kind} {self.key.namespace}/{self.key.name} ======\n"
        )
        live, desired = self.live, self.desired
        if self.key.group == "" and self.key.kind == "Secret":
            live, desired = mask_secret_data(live, desired)
        before = _to_yaml(live)
        after = _to_yaml(desired)
        body = "".join(
            difflib.unified_diff(
                before.splitlines(keepends=True),
                after.splitlines(keepends=True),
                fromfile="live",
                tofile="desired",
            )
        )
        return header + body


_MASK = "++++++++"


def mask_secret_data(
    live: dict[str, Any] | None, desired: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Secret values replaced by ``+`` runs, as ``argocd app diff`` does: equal values get the
    same mask, changed ones different lengths, so the diff shows which keys changed and never
    what they contain."""

    def data(obj: dict[str, Any] | None) -> dict[str, Any]:
        value = (obj or {}).get("data")
        return value if isinstance(value, dict) else {}

    live_data, desired_data = data(live), data(desired)
    live_masked: dict[str, str] = {}
    desired_masked: dict[str, str] = {}
    for k in sorted(set(live_data) | set(desired_data)):
        same = k in live_data and k in desired_data and live_data[k] == desired_data[k]
        if k in live_data:
            live_masked[k] = _MASK
        if k in desired_data:
            desired_masked[k] = _MASK if same else _MASK + "+"

    def masked(obj: dict[str, Any] | None, values: dict[str, str]) -> dict[str, Any] | None:
        if obj is None or "data" not in obj:
            return obj
        return {**obj, "data": values}

    return masked(live, live_masked), masked(desired, desired_masked)


def _to_yaml(obj: Mapping[str, Any] | None) -> str:
    if obj is None:
        return ""
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, allow_unicode=True)


@dataclass(frozen=True, kw_only=True)
class AppComparison:
    status: SyncStatus
    resources: tuple[ResourceDiff, ...]

    @property
    def out_of_sync(self) -> tuple[ResourceDiff, ...]:
        return tuple(r for r in self.resources if r.status is SyncStatus.OUT_OF_SYNC)

    @property
    def synced_keys(self) -> frozenset[ResourceKey]:
        return frozenset(r.key for r in self.resources if r.status is SyncStatus.SYNCED)

    @property
    def alike_keys(self) -> frozenset[ResourceKey]:
        """Resources found Synced with no ignoreDifferences rule in the way: the live object
        holds every value the desired one declares. What else an apply could still change
        (our tracking id, a status) is the plan's to check (``plan_sync``'s ``alike``)."""
        return frozenset(
            r.key for r in self.resources if r.status is SyncStatus.SYNCED and not r.ignored
        )

    def diff_text(self) -> str:
        """Every OutOfSync resource's diff, in resource order (empty when in sync)."""
        return "".join(r.diff_text() for r in self.out_of_sync)


# --------------------------------------------------------------------------- comparison


def compare_resource(
    desired: Mapping[str, Any] | None,
    live: Mapping[str, Any] | None,
    *,
    ignore_differences: Sequence[IgnoreDifference] = (),
    manager: str = FIELD_MANAGER,
    jq_runner: JqRunner | None = None,
) -> ResourceDiff:
    """Compare one resource; at least one side must be given."""
    obj = desired if desired is not None else live
    if obj is None:
        raise ValueError("compare_resource needs a desired or a live object")
    key = ResourceKey.of(obj)
    rules = [r for r in ignore_differences if _ignore_applies(r, key)]
    if live is None:
        d = _apply_ignores(normalize(obj), rules, None, jq_runner)
        return ResourceDiff(
            key=key, status=SyncStatus.OUT_OF_SYNC, reason=DiffReason.MISSING, desired=d
        )
    if desired is None:
        lv = _apply_ignores(normalize(live), rules, live, jq_runner)
        return ResourceDiff(
            key=key,
            status=SyncStatus.OUT_OF_SYNC,
            reason=DiffReason.EXTRANEOUS,
            live=lv,
            counts_for_app=not ignores_extraneous(live),
        )
    d_norm = normalize(desired)
    owned = managed_fields_of(live, manager)
    projected = _project(normalize(live), d_norm, owned)
    aligned = _align(d_norm, projected)
    d_final = _apply_ignores(aligned, rules, live, jq_runner)
    l_final = _apply_ignores(projected, rules, live, jq_runner)
    same = _canon(d_final) == _canon(l_final)
    return ResourceDiff(
        key=key,
        status=SyncStatus.SYNCED if same else SyncStatus.OUT_OF_SYNC,
        reason=None if same else DiffReason.DIFFERS,
        desired=d_final,
        live=l_final,
        ignored=bool(rules),
    )


def _live_key(obj: Mapping[str, Any]) -> ResourceKey:
    return ResourceKey.of(obj)


# What a compare never reads of a live object's metadata: the version, and managedFields
# (of which it reads only the hub's own entries, compared on their own).
_UNREAD_METADATA = frozenset({"resourceVersion", "managedFields"})


def _own_entries(meta: Mapping[str, Any], manager: str) -> list[Any]:
    entries = meta.get("managedFields")
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, Mapping) and e.get("manager") == manager]


def same_to_compare(before: Mapping[str, Any], after: Mapping[str, Any], manager: str) -> bool:
    """Would ``compare_resource`` see ``after`` exactly as it saw ``before``?

    True when they differ only where a compare does not look: ``status``, the
    resourceVersion, and managedFields entries of other managers (a controller's status
    writes). Plain equality of everything else, in C: much cheaper than a compare."""
    for k in before.keys() | after.keys():
        if k == "status":
            continue
        old, new = before.get(k), after.get(k)
        if k != "metadata" or not (isinstance(old, Mapping) and isinstance(new, Mapping)):
            if old != new:
                return False
            continue
        for mk in old.keys() | new.keys():
            if mk not in _UNREAD_METADATA and old.get(mk) != new.get(mk):
                return False
        if _own_entries(old, manager) != _own_entries(new, manager):
            return False
    return True


def reads_other_managers(ignore_differences: Sequence[IgnoreDifference]) -> bool:
    """Whether ignore rules read other managers' field sets (``managedFieldsManagers``),
    which ``same_to_compare`` does not look at (a controller's status write changes them)."""
    return any(rule.managed_fields_managers for rule in ignore_differences)


def compares_alike(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    ignore_differences: Sequence[IgnoreDifference],
    manager: str = FIELD_MANAGER,
) -> bool:
    """Would a compare under ``ignore_differences`` see ``after`` exactly as ``before``?"""
    return not reads_other_managers(ignore_differences) and same_to_compare(before, after, manager)


@dataclass
class Verdicts:
    """The last compare of each resource of one app, for the next compare against the same
    desired manifests to reuse (keep one per rendered desired state: ``Desired`` does).

    A resource's verdict is reused when its live object changed only where a compare does
    not look (``same_to_compare``): a Deployment's rollout rewrites its status five to ten
    times, and each event refreshed the app with a full compare of every resource. Reused
    verdicts carry no normalised objects (``desired`` and ``live`` are None): they answer
    what a refresh asks (status, reason, counts_for_app), not what a diff shows. Not
    used when an ignore rule reads other managers' fields (managedFieldsManagers), which
    a status write can change."""

    entries: dict[ResourceKey, tuple[Mapping[str, Any] | None, ResourceDiff]] = field(
        default_factory=dict
    )
    reused: int = 0  # verdicts reused so far (tests and benchmarks read it)

    def reuse(
        self, key: ResourceKey, live: Mapping[str, Any] | None, manager: str
    ) -> ResourceDiff | None:
        """The verdict for ``key`` if ``live`` looks as it did to the last compare."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        before, verdict = entry
        if before is live or (
            before is not None and live is not None and same_to_compare(before, live, manager)
        ):
            self.entries[key] = (live, verdict)  # the next event is checked against this one
            self.reused += 1
            return verdict
        return None

    def keep(self, live: Mapping[str, Any] | None, diff: ResourceDiff) -> None:
        self.entries[diff.key] = (live, replace(diff, desired=None, live=None))


def compare_app(
    desired: Iterable[Mapping[str, Any]],
    live: Iterable[Mapping[str, Any]],
    *,
    app: str,
    ignore_differences: Sequence[IgnoreDifference] = (),
    manager: str = FIELD_MANAGER,
    jq_runner: JqRunner | None = None,
    jq_timeout_s: float = DEFAULT_JQ_TIMEOUT_S,
    verdicts: Verdicts | None = None,
) -> AppComparison:
    """Compare an app's validated desired manifests with its live objects.

    ``live`` may hold more than the app's objects: only those tracked by ``app`` or declared
    in Git are compared, so nothing else can ever show up as "requires pruning".

    Hooks and ``Skip`` objects on either side are not compared (Argo: they are run, not
    synced). The app is OutOfSync when any counted resource is. When jqPathExpressions are
    configured and no ``jq_runner`` is given, a temporary one is started and stopped here.
    ``verdicts``: the previous compare against these same ``desired`` manifests, reused and
    updated (see ``Verdicts``: its reused results carry no normalised objects).
    """
    if jq_runner is None and any(r.jq_path_expressions for r in ignore_differences):
        with JqRunner(timeout_s=jq_timeout_s) as runner:
            return compare_app(
                desired,
                live,
                app=app,
                ignore_differences=ignore_differences,
                manager=manager,
                jq_runner=runner,
                verdicts=verdicts,
            )
    wanted: dict[ResourceKey, Mapping[str, Any]] = {}
    for obj in desired:
        if is_hook(obj) or is_skip(obj):
            continue
        wanted[ResourceKey.of(obj)] = obj
    actual: dict[ResourceKey, Mapping[str, Any]] = {}
    for obj in live:
        if is_hook(obj):
            continue
        key = _live_key(obj)
        # a live object this app does not track is compared only when Git declares it (the
        # apply will adopt it); it is never "extraneous"
        if key in wanted or owning_app(obj) == app:
            actual[key] = obj
    if verdicts is not None and reads_other_managers(ignore_differences):
        verdicts = None
    results: list[ResourceDiff] = []
    for key in sorted(set(wanted) | set(actual)):
        d = wanted.get(key)
        lv = actual.get(key)
        if d is None and lv is not None and is_skip(lv):
            continue
        reused = verdicts.reuse(key, lv, manager) if verdicts is not None else None
        if reused is not None:
            results.append(reused)
            continue
        diff = compare_resource(
            d, lv, ignore_differences=ignore_differences, manager=manager, jq_runner=jq_runner
        )
        if verdicts is not None:
            verdicts.keep(lv, diff)
        results.append(diff)
    out_of_sync = any(r.status is SyncStatus.OUT_OF_SYNC and r.counts_for_app for r in results)
    return AppComparison(
        status=SyncStatus.OUT_OF_SYNC if out_of_sync else SyncStatus.SYNCED,
        resources=tuple(results),
    )
