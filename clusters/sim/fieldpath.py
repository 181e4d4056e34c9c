"""Field sets as structured-merge-diff keeps them, and their ``FieldsV1`` encoding.

A set is a tree of path elements. An element is stored in its encoded form:

- ``f:name``            a field of a map or struct,
- ``k:{"name":"app"}``  an element of a list-map, by its keys (JSON, keys sorted by name),
- ``v:"value"``         an element of a set list, by its value,
- ``i:3``               an element by index (only for lists that have neither).

Each tree node is a plain dict from element to child node; the key ``"."`` in a node marks
the path that leads to it as a member of the set. This is close to the wire form
(``FieldsV1``), where a member without children is ``{}`` and a member with children carries
``".": {}`` first, then its children in structured-merge-diff's element order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

Tree = dict[str, Any]
Path = tuple[str, ...]

SELF = "."


# --- path elements --------------------------------------------------------------------


def json_compact(value: Any) -> str:
    """JSON as Go's encoder writes it: compact, map keys sorted, UTF-8 kept."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def field(name: str) -> str:
    return "f:" + name


def key(fields: Mapping[str, Any]) -> str:
    items = tuple(sorted(fields.items()))
    try:
        return _key(items)
    except TypeError:  # unhashable key values (lists, maps): rare, not cached
        return "k:" + json_compact(dict(fields))


@lru_cache(maxsize=65536)
def _key(items: tuple[tuple[str, Any], ...]) -> str:
    # Keys repeat across every write of an object (container names, ports): cache them.
    return "k:" + json_compact(dict(items))


def value(v: Any) -> str:
    if isinstance(v, str):
        return _string_value(v)
    return "v:" + json_compact(v)


@lru_cache(maxsize=65536)
def _string_value(v: str) -> str:
    return "v:" + json_compact(v)


def index(i: int) -> str:
    return f"i:{i}"


def _value_rank(v: Any) -> tuple[Any, ...]:
    # structured-merge-diff's value.Compare: numbers < strings < booleans < lists < maps < null.
    if isinstance(v, bool):
        return (2, v)
    if isinstance(v, int | float):
        return (0, v)
    if isinstance(v, str):
        return (1, v)
    if isinstance(v, list):
        return (3, tuple(_value_rank(x) for x in v))
    if isinstance(v, dict):
        return (4, tuple((k, _value_rank(v[k])) for k in sorted(v)))
    return (5,)


_KIND_RANK = {"f": 0, "k": 1, "v": 2, "i": 3}


@lru_cache(maxsize=65536)
def element_sort_key(element: str) -> tuple[Any, ...]:
    """Order of path elements in a set: fields by name, then keys, values, indexes."""
    kind, _, body = element.partition(":")
    rank = _KIND_RANK.get(kind, 4)
    if kind == "f":
        return (rank, body.encode())
    if kind == "k":
        fields = json.loads(body)
        return (rank, tuple((name.encode(), _value_rank(fields[name])) for name in sorted(fields)))
    if kind == "v":
        return (rank, _value_rank(json.loads(body)))
    if kind == "i":
        return (rank, int(body))
    return (rank, body)


def element_string(element: str) -> str:
    """How structured-merge-diff prints an element in a path (conflict messages)."""
    kind, _, body = element.partition(":")
    if kind == "f":
        return "." + body
    if kind == "k":
        fields = json.loads(body)
        inner = ",".join(f"{name}={json_compact(fields[name])}" for name in sorted(fields))
        return f"[{inner}]"
    if kind == "v":
        return f"[={body}]"
    if kind == "i":
        return f"[{body}]"
    return element


def path_string(path: Path) -> str:
    return "".join(element_string(e) for e in path)


# --- set operations ---------------------------------------------------------------------


def insert(tree: Tree, path: Path) -> None:
    node = tree
    for element in path:
        child = node.get(element)
        if child is None:
            child = node[element] = {}
        node = child
    node[SELF] = {}


def has(tree: Tree, path: Path) -> bool:
    node = node_at(tree, path)
    return node is not None and SELF in node


def node_at(tree: Tree, path: Path) -> Tree | None:
    node: Tree | None = tree
    for element in path:
        if node is None:
            return None
        node = node.get(element)
    return node


def is_empty(tree: Tree) -> bool:
    return not tree


def copy(tree: Tree) -> Tree:
    return {k: copy(v) for k, v in tree.items()}


def union(a: Tree, b: Tree) -> Tree:
    out = copy(a)
    _union_into(out, b)
    return out


def _union_into(out: Tree, b: Tree) -> bool:
    changed = False
    for element, child in b.items():
        if element == SELF:
            if SELF not in out:
                out[SELF] = {}
                changed = True
            continue
        mine = out.get(element)
        if mine is None:
            out[element] = copy(child)
            changed = True
        elif _union_into(mine, child):
            changed = True
    return changed


def union_into(out: Tree, b: Tree) -> bool:
    """``union(out, b)`` in place, for a tree the caller owns (no copy of ``out``); whether
    ``out`` changed."""
    return _union_into(out, b)


def subtract_into(a: Tree, b: Tree) -> bool:
    """``difference(a, b)`` in place, for a tree the caller owns: the write path decodes
    fresh trees per request, and copying them for every entry was most of its cost.
    Whether ``a`` changed."""
    changed = False
    if SELF in b and SELF in a:
        del a[SELF]
        changed = True
    for element, other in b.items():
        if element == SELF:
            continue
        child = a.get(element)
        if child is None:
            continue
        if subtract_into(child, other):
            changed = True
        if not child:
            del a[element]
            changed = True
    return changed


def difference(a: Tree, b: Tree) -> Tree:
    """Members of ``a`` that are not members of ``b`` (not recursive: a member of ``b``
    does not remove the members below it in ``a``)."""
    out: Tree = {}
    for element, child in a.items():
        if element == SELF:
            if SELF not in b:
                out[SELF] = {}
            continue
        other = b.get(element)
        sub = copy(child) if other is None else difference(child, other)
        if sub:
            out[element] = sub
    return out


def intersection(a: Tree, b: Tree) -> Tree:
    out: Tree = {}
    for element, child in a.items():
        if element == SELF:
            if SELF in b:
                out[SELF] = {}
            continue
        other = b.get(element)
        if other is not None:
            sub = intersection(child, other)
            if sub:
                out[element] = sub
    return out


def members(tree: Tree, prefix: Path = ()) -> Iterator[Path]:
    """Every member path, in set order (a member before its descendants)."""
    if SELF in tree:
        yield prefix
    for element in sorted((e for e in tree if e != SELF), key=element_sort_key):
        yield from members(tree[element], (*prefix, element))


# --- FieldsV1 ---------------------------------------------------------------------------


def to_fields_v1(tree: Tree) -> dict[str, Any]:
    """The wire form of a set (the value of ``fieldsV1``)."""
    return _encode(tree, top=True)


def _encode(node: Tree, *, top: bool = False) -> dict[str, Any]:
    if not top and len(node) == 1 and SELF in node:
        return {}  # a member without children, as most nodes of a set are
    children = [e for e in node if e != SELF]
    out: dict[str, Any] = {}
    if SELF in node and children and not top:
        out[SELF] = {}
    if len(children) > 1:
        children.sort(key=element_sort_key)
    for element in children:
        out[element] = _encode(node[element])
    return out


class FieldsV1Error(ValueError):
    """A ``fieldsV1`` value that is not a valid encoded set."""


def from_fields_v1(encoded: Any) -> Tree:
    if not isinstance(encoded, dict):
        raise FieldsV1Error("fieldsV1 must be an object")
    tree: Tree = {}
    for element, child in encoded.items():
        if element == SELF:
            raise FieldsV1Error('"." is not allowed at the top of fieldsV1')
        tree[_check_element(element)] = _decode(child)
    return tree


def _decode(encoded: Any) -> Tree:
    if not isinstance(encoded, dict):
        raise FieldsV1Error(f"fieldsV1 entries must be objects, got {encoded!r}")
    node: Tree = {}
    if not encoded:
        node[SELF] = {}
        return node
    for element, child in encoded.items():
        if element == SELF:
            node[SELF] = {}
        else:
            node[_check_element(element)] = _decode(child)
    return node


@lru_cache(maxsize=65536)
def _check_element(element: str) -> str:
    kind, sep, body = element.partition(":")
    if not sep or kind not in _KIND_RANK:
        raise FieldsV1Error(f"unknown path element {element!r} in fieldsV1")
    if kind in ("k", "v"):
        try:
            parsed = json.loads(body)
        except json.JSONDecodeError as exc:
            raise FieldsV1Error(f"invalid JSON in path element {element!r}") from exc
        if kind == "k" and not isinstance(parsed, dict):
            raise FieldsV1Error(f"key element {element!r} must hold a JSON object")
        # Normalise so that equal keys compare equal however the client wrote them.
        return kind + ":" + json_compact(parsed)
    return element


# --- set operations on the wire form ----------------------------------------------------
#
# A write changes a few fields of its managers' sets, and decoding a whole stored set to
# change them, then encoding it again, was most of a status write's tracking. These work
# on the stored encoding itself (as ``to_fields_v1`` writes it: children in element
# order, "." first), copying only the nodes on the way to a change and sharing the rest;
# the result is exactly ``to_fields_v1`` of the decoded set after the operation.


def encoded_difference(encoded: dict[str, Any], tree: Tree) -> dict[str, Any]:
    """``to_fields_v1`` of ``from_fields_v1(encoded)`` after ``subtract_into(…, tree)``;
    ``encoded`` itself when that removes nothing."""
    out = _encoded_minus(encoded, tree, top=True)
    return {} if out is None else out


def encoded_union(encoded: dict[str, Any], tree: Tree) -> dict[str, Any]:
    """``to_fields_v1`` of ``from_fields_v1(encoded)`` after ``union_into(…, tree)``;
    ``encoded`` itself when that adds nothing."""
    return _encoded_plus(encoded, tree, top=True)


def _encoded_node(node: Any) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise FieldsV1Error(f"fieldsV1 entries must be objects, got {node!r}")
    return node


def _encoded_minus(node: dict[str, Any], tree: Tree, *, top: bool) -> dict[str, Any] | None:
    """The node without ``tree``'s members, None when nothing is left of it."""
    member = not top and (not node or SELF in node)
    drop_self = member and SELF in tree
    changed: dict[str, dict[str, Any] | None] = {}
    for element, sub in tree.items():
        if element == SELF:
            continue
        child = node.get(element)
        if child is None:
            continue
        kept = _encoded_minus(_encoded_node(child), sub, top=False)
        if kept is not child:
            changed[element] = kept
    if not drop_self and not changed:
        return node
    out: dict[str, Any] = {}
    if member and not drop_self:
        out[SELF] = {}
    for element, child in node.items():
        if element == SELF:
            continue
        kept = changed.get(element, child)
        if kept is not None:
            out[element] = kept
    if len(out) == 1 and SELF in out:
        return {}  # a member without children
    return out if out else None


def _encoded_plus(node: dict[str, Any], tree: Tree, *, top: bool) -> dict[str, Any]:
    """The node with ``tree``'s members added."""
    member = not top and (not node or SELF in node)
    add_self = not top and not member and SELF in tree
    changed: dict[str, dict[str, Any]] = {}
    added = False
    for element, sub in tree.items():
        if element == SELF:
            continue
        child = node.get(element)
        if child is None:
            changed[element] = _encode(sub)
            added = True
            continue
        grown = _encoded_plus(_encoded_node(child), sub, top=False)
        if grown is not child:
            changed[element] = grown
    if not add_self and not changed:
        return node
    children = [e for e in node if e != SELF]
    if added:
        children.extend(e for e in changed if e not in node)
        children.sort(key=element_sort_key)
    out: dict[str, Any] = {}
    if (member or add_self) and children:
        out[SELF] = {}
    for element in children:
        out[element] = changed[element] if element in changed else node[element]
    return out
