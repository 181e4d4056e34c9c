"""Server-side apply and managedFields tracking, with structured-merge-diff semantics.

``server_side_apply`` is what a kube-apiserver does for ``application/apply-patch+yaml``:
merge the applied configuration into the live object by the kind's list types, make the
configuration's fields exactly the manager's Apply-owned set, remove what the manager
applied before and no longer applies unless someone else owns it, and refuse (409) to
change a field another manager owns unless forced.

``track_update`` is what every other write does to ``metadata.managedFields``: the writer's
Update entry gains the fields it added or changed, and loses nothing; those fields leave
the other managers' sets.

Both are pure: plain manifests in, manifest out, no I/O. The server sets uid,
resourceVersion, generation and creationTimestamp; these functions never do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mypy_extensions import mypyc_attr

from clusters.errors import ClusterError
from clusters.sim import fieldpath as fp
from clusters.sim import schema
from clusters.sim.patch import PatchError, clone
from clusters.sim.schema import ListNode, MapNode

Obj = dict[str, Any]
Tree = fp.Tree
Path = fp.Path

MAX_UPDATE_MANAGERS = 10
ANCIENT_CHANGES = "ancient-changes"
BEFORE_FIRST_APPLY = "before-first-apply"

_STRIPPED_META = frozenset(
    {
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    }
)

_MISSING: Any = object()


@mypyc_attr(native_class=False)  # its base is a Python class
class ApplyConflict(ClusterError):
    """An apply that would change fields other managers own (HTTP 409, reason Conflict).

    ``conflicts`` holds (field path, manager name) pairs, e.g. (".spec.replicas", "kubectl");
    ``causes`` the Status ``details.causes`` a real server sends, naming each manager as
    the server prints it ("kubectl" with subresource "scale" using apps/v1).
    """

    reason = "Conflict"
    code = 409

    def __init__(
        self, conflicts: list[tuple[str, str]], message: str, described: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.conflicts = conflicts
        self.message = message
        self._described = described or [f'"{who}"' for _, who in conflicts]

    @property
    def causes(self) -> list[dict[str, str]]:
        return [
            {"reason": "FieldManagerConflict", "message": f"conflict with {who}", "field": path}
            for (path, _), who in zip(self.conflicts, self._described, strict=True)
        ]


@mypyc_attr(native_class=False)  # its base is dict
class _Undecoded(dict[str, Any]):
    """The fields of a stored entry, left in their wire form.

    A status write by a controller decoded and re-encoded every entry of the object, the
    applier's large spec entry included, though it changes a few fields of a few sets:
    ``track_update`` changes them on the wire form (``fieldpath.encoded_difference`` and
    ``encoded_union``), sharing what it leaves, and decodes them only to fold Update
    managers. Truthy exactly when the set is not empty."""

    __slots__ = ("raw",)

    def __init__(self, raw: dict[str, Any]) -> None:
        super().__init__(raw)
        self.raw = raw


@dataclass(slots=True)
class _Entry:
    manager: str
    operation: str
    api_version: str
    subresource: str
    time: str | None
    fields: Tree
    # The stored encoding ``fields`` was decoded from, while they still equal it: a status
    # write mostly leaves its writer's set as it was, and encoding it again was the
    # largest cost of the write's tracking.
    raw: dict[str, Any] | None = None
    # The stored entry this one was read from: a write leaves most entries as they were,
    # and the new version shares those with the stored one (each kept copy lived as long
    # as its version, for the garbage collector to walk).
    source: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        # Appliers are one manager whatever version they apply at (BuildManagerIdentifier).
        version = "" if self.operation == "Apply" else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def describe(self) -> str:
        text = f'"{self.manager}"'
        if self.subresource:
            text += f' with subresource "{self.subresource}"'
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text

    def encode(self) -> Obj:
        out: Obj = {"manager": self.manager, "operation": self.operation}
        out["apiVersion"] = self.api_version
        if self.time is not None:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        if isinstance(self.fields, _Undecoded):
            # the stored version's own set: stored objects are never changed in place
            # (readonly.py), so the new version shares it instead of copying it
            out["fieldsV1"] = self.fields.raw
        elif self.raw is not None:
            out["fieldsV1"] = self.raw  # decoded for this write, and left unchanged
        else:
            out["fieldsV1"] = fp.to_fields_v1(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        source = self.source
        if source is not None and out == source and list(out) == list(source):
            return source  # (stored objects are never changed in place: readonly.py)
        return out


# --- managedFields codec -------------------------------------------------------------


class _DecodeError(ValueError):
    pass


def _decode_entries(raw: Any, *, lazily: bool = False, stored: bool = False) -> list[_Entry]:
    """Entries of a managedFields list; ``lazily`` leaves each fieldsV1 undecoded (only for
    stored entries, written by this server: a client's are checked at once). ``stored``:
    the entries are the stored object's (implied by ``lazily``), whose encoding a write
    that leaves a set unchanged keeps (``_Entry.raw``); a client's are encoded anew."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _DecodeError("metadata.managedFields must be a list")
    entries: list[_Entry] = []
    for n, item in enumerate(raw):
        if not isinstance(item, dict):
            raise _DecodeError(f"metadata.managedFields[{n}] must be an object")
        operation = item.get("operation")
        if operation not in ("Apply", "Update"):
            raise _DecodeError(f"metadata.managedFields[{n}].operation must be Apply or Update")
        if item.get("fieldsType", "FieldsV1") != "FieldsV1":
            raise _DecodeError(f"metadata.managedFields[{n}].fieldsType must be FieldsV1")
        encoded = item.get("fieldsV1") or {}
        fields: Tree
        kept: dict[str, Any] | None = None
        if lazily and isinstance(encoded, dict):
            fields = _Undecoded(encoded)
        else:
            try:
                fields = fp.from_fields_v1(encoded)
            except fp.FieldsV1Error as exc:
                raise _DecodeError(f"metadata.managedFields[{n}].fieldsV1: {exc}") from exc
            if stored and encoded:
                kept = encoded
        entries.append(
            _Entry(
                manager=str(item.get("manager", "")),
                operation=operation,
                api_version=str(item.get("apiVersion", "")),
                subresource=str(item.get("subresource", "")),
                time=item.get("time") if isinstance(item.get("time"), str) else None,
                fields=fields,
                raw=kept,
                source=item if lazily or stored else None,
            )
        )
    return entries


def _sort_key(entry: _Entry) -> tuple[str, str, str, str, str]:
    # The server orders entries: Apply before Update, then by time (seconds), manager,
    # apiVersion and subresource. RFC 3339 times of one format sort as strings.
    return (
        entry.operation,
        (entry.time or "")[:19],
        entry.manager,
        entry.api_version,
        entry.subresource,
    )


def _encode_entries(meta: Obj, entries: Iterable[_Entry]) -> None:
    kept = sorted((e for e in entries if e.fields), key=_sort_key)
    if kept:
        meta["managedFields"] = [e.encode() for e in kept]
    else:
        meta.pop("managedFields", None)


def _is_reset(raw: Any) -> bool:
    """``managedFields: []`` or ``[{}]`` asks the server to drop all ownership."""
    return isinstance(raw, list) and (raw == [] or raw == [{}])


# --- views: what the field manager looks at -----------------------------------------------


def _status_reset(obj: Obj, status_subresource: bool | None) -> bool:
    return schema.has_status_subresource(obj) if status_subresource is None else status_subresource


def _view(obj: Obj | None, *, subresource: str, reset_status: bool) -> Obj:
    """The part of an object whose fields are tracked: no type/identity metadata, and
    only what the (sub)resource being written may change."""
    if not obj:
        return {}
    if subresource == "status":
        status = obj.get("status")
        return {} if status is None else {"status": status}
    out: Obj = {}
    for k, v in obj.items():
        if k in ("apiVersion", "kind") or (k == "status" and reset_status):
            continue
        if k == "metadata" and isinstance(v, dict):
            out[k] = {mk: mv for mk, mv in v.items() if mk not in _STRIPPED_META}
        else:
            out[k] = v
    return out


def _strip_metadata_self(tree: Tree) -> None:
    meta = tree.get("f:metadata")
    if meta is not None:
        meta.pop(fp.SELF, None)
        if not meta:
            del tree["f:metadata"]


# --- list elements -------------------------------------------------------------------------


def _element(item: Any, ln: ListNode, position: int) -> str:
    if ln.relation == "map" and isinstance(item, dict):
        keys: dict[str, Any] = {}
        for name in ln.keys:
            if name in item and item[name] is not None:
                keys[name] = item[name]
            elif name == "protocol":
                # Ports' protocol carries an OpenAPI default of TCP, which the server uses
                # for the key of an item that leaves it out.
                keys[name] = "TCP"
        return fp.key(keys)
    if ln.relation == "set":
        return fp.value(item)
    return fp.index(position)


def _index_elements(items: list[Any], ln: ListNode) -> tuple[list[str], dict[str, Any]]:
    pes = [_element(item, ln, i) for i, item in enumerate(items)]
    first: dict[str, Any] = {}
    for pe, item in zip(pes, items, strict=True):
        first.setdefault(pe, item)
    return pes, first


def _list_node(node: MapNode | ListNode | None) -> ListNode:
    return node if isinstance(node, ListNode) else schema.ATOMIC_LIST


def _map_node(node: MapNode | ListNode | None) -> MapNode:
    return node if isinstance(node, MapNode) else schema.DEDUCED


# --- ToFieldSet ----------------------------------------------------------------------------


def _to_set(value: Obj, node: MapNode, path: Path, out: Tree, *, strict: bool) -> None:
    for name, child in value.items():
        sub = node.child(name)
        p = (*path, fp.field(name))
        if isinstance(child, dict):
            m = _map_node(sub)
            if m.atomic or not child:
                fp.insert(out, p)
            else:
                _to_set(child, m, p, out, strict=strict)
        elif isinstance(child, list):
            _list_to_set(child, _list_node(sub), p, out, strict=strict)
        else:
            fp.insert(out, p)


def _list_to_set(items: list[Any], ln: ListNode, path: Path, out: Tree, *, strict: bool) -> None:
    if ln.relation == "atomic":
        fp.insert(out, path)
        return
    seen: set[str] = set()
    for i, item in enumerate(items):
        if strict and ln.relation == "map":
            _check_keys(item, ln, path, i)
        pe = _element(item, ln, i)
        if pe in seen and strict:
            raise PatchError(
                f"{fp.path_string(path)}: duplicate entries for key {fp.element_string(pe)}",
                reason="Invalid",
                code=422,
            )
        seen.add(pe)
        p = (*path, pe)
        fp.insert(out, p)
        if ln.relation == "map" and isinstance(item, dict):
            _to_set(item, ln.elem or schema.DEDUCED, p, out, strict=strict)


def _check_keys(item: Any, ln: ListNode, path: Path, position: int) -> None:
    where = f"{fp.path_string(path)}: element {position}"
    if not isinstance(item, dict):
        raise PatchError(
            f"{where}: expected map, got {type(item).__name__}", reason="Invalid", code=422
        )
    for name in ln.keys:
        if item.get(name) is None and name != "protocol":
            raise PatchError(
                f'{where}: associative list with keys has an element that omits key field "{name}"'
                " (and doesn't have default value)",
                reason="Invalid",
                code=422,
            )


def field_set(obj: Obj) -> Tree:
    """The fields an applied configuration sets (what its manager will own)."""
    out: Tree = {}
    _to_set(obj, schema.root_for(obj) or schema.UNKNOWN_ROOT, (), out, strict=True)
    return out


# --- Compare -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Comparison:
    added: Tree
    modified: Tree
    removed: Tree


def _compare_value(
    lhs: Any, rhs: Any, node: MapNode | ListNode | None, path: Path, c: _Comparison
) -> None:
    if lhs is None:
        lhs = _MISSING
    if rhs is None:
        rhs = _MISSING
    if lhs is _MISSING and rhs is _MISSING:
        return
    if isinstance(lhs, dict) or isinstance(rhs, dict):
        m = _map_node(node)
        ld = lhs if isinstance(lhs, dict) else None
        rd = rhs if isinstance(rhs, dict) else None
        mismatched = (lhs is not _MISSING and ld is None) or (rhs is not _MISSING and rd is None)
        if m.atomic or mismatched or (not ld and not rd):
            _leaf(lhs, rhs, path, c)
            return
        _compare_map(ld or {}, rd or {}, m, path, c)
        _mark_presence(lhs, rhs, path, c)
        return
    if isinstance(lhs, list) or isinstance(rhs, list):
        ln = _list_node(node)
        ll = lhs if isinstance(lhs, list) else None
        rl = rhs if isinstance(rhs, list) else None
        mismatched = (lhs is not _MISSING and ll is None) or (rhs is not _MISSING and rl is None)
        if ln.relation == "atomic" or mismatched or (not ll and not rl):
            _leaf(lhs, rhs, path, c)
            return
        _compare_list(ll or [], rl or [], ln, path, c)
        _mark_presence(lhs, rhs, path, c)
        return
    _leaf(lhs, rhs, path, c)


def _mark_presence(lhs: Any, rhs: Any, path: Path, c: _Comparison) -> None:
    if lhs is _MISSING:
        fp.insert(c.added, path)
    elif rhs is _MISSING:
        fp.insert(c.removed, path)


def _leaf(lhs: Any, rhs: Any, path: Path, c: _Comparison) -> None:
    if lhs is _MISSING:
        fp.insert(c.added, path)
    elif rhs is _MISSING:
        fp.insert(c.removed, path)
    elif not _equal(lhs, rhs):
        fp.insert(c.modified, path)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _compare_map(lhs: Obj, rhs: Obj, node: MapNode, path: Path, c: _Comparison) -> None:
    for name, lv in lhs.items():
        rv = rhs.get(name, _MISSING)
        if _same_scalar(lv, rv):
            # Most fields of a write are unchanged strings and numbers: what
            # _compare_value would find (nothing) without building their paths.
            continue
        _compare_value(lv, rv, node.child(name), (*path, fp.field(name)), c)
    for name, rv in rhs.items():
        if name not in lhs:
            _compare_value(_MISSING, rv, node.child(name), (*path, fp.field(name)), c)


def _same_scalar(lv: Any, rv: Any) -> bool:
    """Whether both are the same string, integer or boolean (None and _MISSING are not:
    a field that appears or goes is a change)."""
    kind = type(lv)
    return kind is type(rv) and (kind is str or kind is int or kind is bool) and lv == rv


def _compare_list(lhs: list[Any], rhs: list[Any], ln: ListNode, path: Path, c: _Comparison) -> None:
    _, lmap = _index_elements(lhs, ln)
    rpes, rmap = _index_elements(rhs, ln)
    elem = ln.elem or schema.DEDUCED
    for pe, litem in lmap.items():
        p = (*path, pe)
        ritem = rmap.get(pe, _MISSING)
        if ln.relation == "set":
            if ritem is _MISSING:
                fp.insert(c.removed, p)
            continue
        _compare_value(litem, ritem, elem, p, c)
    for pe in dict.fromkeys(rpes):
        if pe in lmap:
            continue
        p = (*path, pe)
        if ln.relation == "set":
            fp.insert(c.added, p)
        else:
            _compare_value(_MISSING, rmap[pe], elem, p, c)


def _compare(lhs: Obj, rhs: Obj, root: MapNode) -> _Comparison:
    c = _Comparison(added={}, modified={}, removed={})
    _compare_map(lhs, rhs, root, (), c)
    return c


# --- Merge ---------------------------------------------------------------------------------


def _merge_value(lhs: Any, rhs: Any, node: MapNode | ListNode | None) -> Any:
    if isinstance(rhs, dict):
        m = _map_node(node)
        if m.atomic or not isinstance(lhs, dict):
            return clone(rhs)
        return _merge_map(lhs, rhs, m)
    if isinstance(rhs, list):
        ln = _list_node(node)
        if ln.relation == "atomic" or not isinstance(lhs, list):
            return clone(rhs)
        return _merge_list(lhs, rhs, ln)
    return rhs


def _merge_map(lhs: Obj, rhs: Obj, node: MapNode) -> Obj:
    out: Obj = {}
    for name, lv in lhs.items():
        if name not in rhs:
            out[name] = clone(lv)
        elif rhs[name] is not None:
            # (An explicit null unsets the field; the applier still owns it.)
            out[name] = _merge_value(lv, rhs[name], node.child(name))
    for name, rv in rhs.items():
        if name not in lhs and rv is not None:
            out[name] = _merge_value(None, rv, node.child(name))
    return out


def _merge_list(lhs: list[Any], rhs: list[Any], ln: ListNode) -> list[Any]:
    """Merge two list-maps or sets keeping a stable order: structured-merge-diff's
    interleaving, where applied items keep their relative order and live-only items stay
    where they were relative to the shared ones."""
    lpes, lmap = _index_elements(lhs, ln)
    rpes, rmap = _index_elements(rhs, ln)
    elem = ln.elem or schema.DEDUCED

    def merged_item(pe: str) -> Any:
        litem = lmap.get(pe)
        ritem = rmap[pe]
        if ln.relation == "map" and isinstance(ritem, dict) and isinstance(litem, dict):
            return _merge_map(litem, ritem, elem)
        return clone(ritem)

    shared = [pe for pe in rpes if pe in lmap]
    shared_pos = 0
    next_shared = shared[0] if shared else None
    done: set[str] = set()
    out: list[Any] = []
    li = ri = 0
    while li < len(lpes) or ri < len(rpes):
        if li < len(lpes) and ri < len(rpes):
            pe = lpes[li]
            if pe == rpes[ri]:
                done.add(pe)
                out.append(merged_item(pe))
                li += 1
                ri += 1
                shared_pos += 1
                next_shared = shared[shared_pos] if shared_pos < len(shared) else None
                continue
            if pe in rmap and next_shared is not None and next_shared != pe:
                li += 1
                continue
        if li < len(lpes):
            pe = lpes[li]
            if pe not in rmap:
                out.append(clone(lhs[li]))
                li += 1
                continue
            if pe in done:
                li += 1
                continue
        if ri < len(rpes):
            pe = rpes[ri]
            ri += 1
            if pe in done:
                continue
            done.add(pe)
            out.append(merged_item(pe))
            if next_shared is not None and next_shared == pe:
                shared_pos += 1
                next_shared = shared[shared_pos] if shared_pos < len(shared) else None
    return out


# --- removal -------------------------------------------------------------------------------


def _remove(value: Obj, tree: Tree, node: MapNode) -> None:
    """Remove every member of ``tree`` (with its subtree) from ``value``, in place."""
    for element, sub in tree.items():
        if element == fp.SELF or not element.startswith("f:"):
            continue
        name = element[2:]
        if name not in value:
            continue
        if fp.SELF in sub:
            del value[name]
            continue
        child = value[name]
        child_node = node.child(name)
        if isinstance(child, dict):
            _remove(child, sub, _map_node(child_node))
            if not child and name in schema.GO_MAP_FIELDS:
                del value[name]
        elif isinstance(child, list):
            ln = _list_node(child_node)
            kept = _remove_from_list(child, sub, ln)
            if kept:
                value[name] = kept
            else:
                # An emptied slice is omitted (omitempty) after the server's round trip.
                del value[name]


def _remove_from_list(items: list[Any], tree: Tree, ln: ListNode) -> list[Any]:
    kept: list[Any] = []
    for i, item in enumerate(items):
        pe = _element(item, ln, i)
        sub = tree.get(pe)
        if sub is None:
            kept.append(item)
        elif fp.SELF in sub:
            continue
        else:
            if isinstance(item, dict):
                _remove(item, sub, ln.elem or schema.DEDUCED)
            kept.append(item)
    return kept


def _prune_set(last: Tree, owned: Tree) -> Tree:
    """Members of ``last`` nobody owns any more. A struct field (``f:``) stays while any
    of its descendants is owned; list elements and set values do not get that grace, as
    structured-merge-diff only makes named fields members when adding back owned items."""
    out: Tree = {}
    for element, sub in last.items():
        if element == fp.SELF:
            continue
        other = owned.get(element)
        child_out: Tree
        if fp.SELF in sub:
            owned_here = other is not None and fp.SELF in other
            has_owned_below = other is not None and any(k != fp.SELF for k in other)
            keep = owned_here or (element.startswith("f:") and has_owned_below)
            if not keep:
                out[element] = {fp.SELF: {}}
                continue
        child_out = _prune_set(sub, other or {})
        if child_out:
            out[element] = child_out
    return out


# --- the zero object ------------------------------------------------------------------------


def _zero_object(obj: Obj) -> Obj:
    """The empty object of ``obj``'s kind as the Go types serialise it: the paths that a
    create does not make "added" because the empty object already has them."""
    zero: Obj = {"metadata": {}}
    for dotted in schema.ZERO_PATHS.get(schema.group_kind(obj), ()):
        parts = dotted.split(".")
        target: Any = obj
        for part in parts:
            target = target.get(part) if isinstance(target, dict) else None
        node = zero
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node.setdefault(parts[-1], [] if isinstance(target, list) else {})
    return zero


# --- server-side apply -----------------------------------------------------------------------


def _conflict_message(conflicts: list[tuple[str, str]]) -> str:
    if len(conflicts) == 1:
        path, who = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {who}: {path}"
    by_manager: dict[str, list[str]] = {}
    for path, who in conflicts:
        by_manager.setdefault(who, []).append(path)
    lines: list[str] = []
    for who in sorted(by_manager):
        lines.append(f"conflicts with {who}:")
        lines.extend(f"- {path}" for path in by_manager[who])
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


def server_side_apply(
    live: Obj | None,
    applied: Obj,
    *,
    manager: str,
    force: bool,
    now: str,
    subresource: str = "",
    status_subresource: bool | None = None,
) -> Obj:
    """Apply ``applied`` as ``manager`` to ``live`` (None on create); returns the new object
    with ``metadata.managedFields`` updated. Raises ``ApplyConflict`` (409) when the apply
    would change fields other managers own and ``force`` is false, and ``PatchError`` for
    configurations a server rejects (managedFields set, duplicate list keys).

    ``status_subresource`` says whether the kind's status is written only through the
    status subresource (then a main-resource apply neither changes nor owns ``status``);
    None looks it up for built-in kinds and means no for custom resources.
    """
    if not isinstance(applied, dict):
        raise PatchError("apply patch must be a JSON or YAML object")
    applied_meta = applied.get("metadata")
    if isinstance(applied_meta, dict) and applied_meta.get("managedFields") is not None:
        raise PatchError("metadata.managedFields must be nil")
    if not manager:
        raise PatchError("PATCH requests with an apply patch must set a field manager")
    reset_status = _status_reset(applied, status_subresource)
    root = schema.root_for(applied) or schema.UNKNOWN_ROOT
    api_version = str(applied.get("apiVersion", ""))

    live_obj: Obj = live if live is not None else {}
    live_meta = live_obj.get("metadata") if isinstance(live_obj.get("metadata"), dict) else {}
    try:
        entries = _decode_entries((live_meta or {}).get("managedFields"), stored=True)
    except _DecodeError as exc:
        raise PatchError(
            f"failed to decode managed fields: {exc}", reason="InternalError", code=500
        ) from exc

    live_view = _view(live_obj, subresource=subresource, reset_status=reset_status)
    if live is not None and not entries:
        # Objects nobody tracked yet: everything they hold belongs to a synthetic Update
        # manager, so an apply cannot silently take fields over.
        owned = _compare(
            _view(_zero_object(live_obj), subresource="", reset_status=reset_status),
            _view(live_obj, subresource="", reset_status=reset_status),
            root,
        )
        first = fp.union(owned.added, owned.modified)
        _strip_metadata_self(first)
        if first:
            entries.append(_Entry(BEFORE_FIRST_APPLY, "Update", api_version, "", now, first))

    # What the applier may change: through the status subresource only status; through
    # the main resource everything but status when the kind has a status subresource.
    if subresource == "status":
        status = applied.get("status")
        effective: Obj = {} if status is None else {"status": status}
    else:
        effective = {k: v for k, v in applied.items() if not (k == "status" and reset_status)}
        meta = effective.get("metadata")
        if isinstance(meta, dict) and any(meta.get(k, 0) is None for k in _STRIPPED_META):
            # `creationTimestamp: null` (kubectl's dry-run output has it) must not unset
            # what the server owns.
            effective["metadata"] = {
                k: v for k, v in meta.items() if not (k in _STRIPPED_META and v is None)
            }
    applied_set: Tree = {}
    _to_set(
        _view(effective, subresource=subresource, reset_status=reset_status),
        root,
        (),
        applied_set,
        strict=True,
    )
    _strip_metadata_self(applied_set)

    base = dict(live_obj)
    if live_meta:
        base["metadata"] = {k: v for k, v in live_meta.items() if k != "managedFields"}
    merged = _merge_map(base, effective, root)
    if reset_status and subresource != "status":
        if "status" in live_obj:
            merged["status"] = clone(live_obj["status"])
        else:
            merged.pop("status", None)

    me = next(
        (e for e in entries if e.key == (manager, "Apply", "", subresource)),
        None,
    )
    last = me.fields if me is not None else {}
    others = [e for e in entries if e is not me]
    doomed: Tree = {}
    if last:
        owned_now = applied_set
        for e in others:
            owned_now = fp.union(owned_now, e.fields)
        doomed = _prune_set(last, owned_now)
    if doomed:
        _remove(merged, doomed, root)

    merged_view = _view(merged, subresource=subresource, reset_status=reset_status)
    comparison = _compare(live_view, merged_view, root)
    changed = fp.union(comparison.added, comparison.modified)
    found: list[tuple[str, str, str]] = []  # (described manager, path, manager)
    conflicting: list[tuple[_Entry, Tree]] = []
    for e in others:
        clash = fp.intersection(e.fields, changed)
        if clash:
            conflicting.append((e, clash))
            found.extend((e.describe(), fp.path_string(p), e.manager) for p in fp.members(clash))
    if found and not force:
        found.sort(key=lambda c: c[0])  # stable: paths stay in set order per manager
        raise ApplyConflict(
            [(path, name) for _, path, name in found],
            _conflict_message([(path, who) for who, path, _ in found]),
            [who for who, _, _ in found],
        )
    for e, clash in conflicting:
        e.fields = fp.difference(e.fields, clash)
        e.raw = None
    if comparison.removed:
        for e in others:
            # decoded for this call: its own tree, changed in place
            if fp.subtract_into(e.fields, comparison.removed):
                e.raw = None

    object_changed = not _equal_objects(live_view, merged_view, live_obj, merged)
    if me is None:
        me = _Entry(manager, "Apply", api_version, subresource, now, applied_set)
        entries.append(me)
    else:
        if me.fields != applied_set:
            me.raw = None
        me.fields = applied_set
        me.api_version = api_version
        if object_changed or me.time is None:
            me.time = now
    result_meta = merged.setdefault("metadata", {})
    _encode_entries(result_meta, [e for e in entries if e is me or e in others])
    return merged


def _equal_objects(lv: Obj, mv: Obj, live: Obj, merged: Obj) -> bool:
    if lv != mv:
        return False
    # Type and identity fields are not tracked but still make an apply a change.
    return all(live.get(k) == merged.get(k) for k in ("apiVersion", "kind"))


# --- Update tracking -------------------------------------------------------------------------


def track_update(
    old: Obj | None,
    new: Obj,
    *,
    manager: str,
    subresource: str = "",
    now: str,
    status_subresource: bool | None = None,
    api_version: str | None = None,
) -> None:
    """Record a non-apply write by ``manager`` in ``new["metadata"]["managedFields"]``.

    ``old`` is the stored object (None on create), ``new`` the object about to be stored
    (after defaulting, before the server's own allocations). ``managedFields`` the client
    sent in ``new`` replace the stored ones (``[]`` or ``[{}]`` drops them all), except on
    subresources, as on a real server.
    """
    meta = new.get("metadata")
    if not isinstance(meta, dict):
        meta = new["metadata"] = {}
    reset_status = _status_reset(new, status_subresource)
    root = schema.root_for(new) or schema.UNKNOWN_ROOT
    version = api_version or str(new.get("apiVersion", ""))
    old_meta = (old or {}).get("metadata") or {}

    sent = meta.get("managedFields")
    entries: list[_Entry]
    if subresource:
        entries = _decode_or_empty(old_meta.get("managedFields"), lazily=True)
    elif _is_reset(sent):
        entries = []
    elif sent is not None and sent == old_meta.get("managedFields"):
        # A read-modify-write (a controller's update, a patch) sends back the stored
        # entries: they are this server's own encoding, so decoding and re-encoding all of
        # them (a client's are checked and normalised) gives them back unchanged. Only
        # those the write touches are decoded, and the others' stored sets are shared.
        entries = _decode_or_empty(old_meta.get("managedFields"), lazily=True)
    else:
        try:
            entries = _decode_entries(sent)
        except _DecodeError:
            entries = []
        if not entries:
            entries = _decode_or_empty(old_meta.get("managedFields"), lazily=True)
    meta.pop("managedFields", None)

    if not entries and old is not None:
        # Untracked objects stay untracked until someone applies (skipNonAppliedManager).
        return

    before = old if old is not None else _zero_object(new)
    comparison = _compare(
        _view(before, subresource=subresource, reset_status=reset_status),
        _view(new, subresource=subresource, reset_status=reset_status),
        root,
    )
    # Every tree here is this call's own (decoded or compared just now), so the set
    # operations work in place.
    current = comparison.added
    fp.union_into(current, comparison.modified)
    _strip_metadata_self(current)
    removed = comparison.removed
    mine_key = (manager, "Update", version, subresource)
    try:
        _decode_if_capping(entries, current, removed)
        for e in entries:
            fields = e.fields
            if isinstance(fields, _Undecoded):
                kept = fields.raw
                if current:
                    kept = fp.encoded_difference(kept, current)
                if removed:
                    kept = fp.encoded_difference(kept, removed)
                if kept is not fields.raw:
                    e.fields = _Undecoded(kept)
                continue
            if current and fp.subtract_into(fields, current):
                e.raw = None
            if removed and fp.subtract_into(fields, removed):
                e.raw = None
        if current:
            mine = next((e for e in entries if e.key == mine_key), None)
            if mine is None:
                entries.append(_Entry(manager, "Update", version, subresource, now, current))
            else:
                fields = mine.fields
                if isinstance(fields, _Undecoded):
                    grown = fp.encoded_union(fields.raw, current)
                    if grown is not fields.raw:
                        mine.fields = _Undecoded(grown)
                elif fp.union_into(fields, current):
                    mine.raw = None
                mine.time = now
    except fp.FieldsV1Error:
        return  # an unreadable stored entry: as if untracked, like a failed decode
    entries = _cap_update_managers([e for e in entries if e.fields])
    _encode_entries(meta, entries)


def _decode_or_empty(raw: Any, *, lazily: bool = False) -> list[_Entry]:
    try:
        return _decode_entries(raw, lazily=lazily)
    except _DecodeError:
        return []


def _decode_if_capping(entries: list[_Entry], current: Tree, removed: Tree) -> None:
    """Decode every entry when the Update managers are about to be capped (that merges
    their sets), or when the write touches the empty path, which only the decoded sets
    hold; otherwise the sets are changed on their wire form."""
    updates = sum(1 for e in entries if e.operation == "Update")
    if updates < MAX_UPDATE_MANAGERS and fp.SELF not in current and fp.SELF not in removed:
        return
    for e in entries:
        fields = e.fields
        if isinstance(fields, _Undecoded):
            e.fields = fp.from_fields_v1(fields.raw)
            e.raw = fields.raw


def _cap_update_managers(entries: list[_Entry]) -> list[_Entry]:
    """At most ten Update entries: the oldest fold into one ``ancient-changes`` entry per
    apiVersion, as the server's capManagersManager does."""
    updates = sorted((e for e in entries if e.operation == "Update"), key=lambda e: e.time or "")
    count = len(updates)
    if count <= MAX_UPDATE_MANAGERS:
        return entries
    buckets = {e.api_version: e for e in updates if e.manager == ANCIENT_CHANGES}
    first_seen: dict[str, _Entry] = {}
    dropped: set[int] = set()
    for e in updates:
        if count <= MAX_UPDATE_MANAGERS:
            break
        if e.manager == ANCIENT_CHANGES:
            continue
        bucket = buckets.get(e.api_version)
        if bucket is None:
            first = first_seen.get(e.api_version)
            if first is None:
                first_seen[e.api_version] = e
                continue
            # The first entry of a version becomes the bucket once a second one joins it.
            first.manager, first.subresource = ANCIENT_CHANGES, ""
            bucket = buckets[e.api_version] = first
        bucket.fields = fp.union(bucket.fields, e.fields)
        bucket.raw = None
        if (bucket.time or "") < (e.time or ""):
            bucket.time = e.time
        dropped.add(id(e))
        count -= 1
    return [e for e in entries if id(e) not in dropped]
