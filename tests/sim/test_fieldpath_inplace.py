"""The in-place set operations of the write path agree with the copying ones, and say
truly whether they changed the set (a write reuses an unchanged set's stored encoding);
the operations on the wire form give exactly the encoding of the decoded operation."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusters.sim import fieldpath as fp

ELEMENTS = st.sampled_from(["f:a", "f:b", "f:c", 'k:{"name":"x"}', "v:1", "i:0"])


def _normal(tree: fp.Tree) -> fp.Tree:
    """As decoding and ``insert`` make them: every node below the top holds a member."""
    out: fp.Tree = {}
    for k, v in tree.items():
        if k == fp.SELF:
            out[k] = {}
        else:
            child = _normal(v)
            if child:
                out[k] = child
    return out


TREES = st.recursive(
    st.just({}),
    lambda children: st.dictionaries(st.one_of(ELEMENTS, st.just(fp.SELF)), children, max_size=4),
    max_leaves=20,
).map(_normal)


@given(TREES, TREES)
def test_subtract_into_is_difference(a: fp.Tree, b: fp.Tree) -> None:
    expected = fp.difference(a, b)
    mine = fp.copy(a)
    changed = fp.subtract_into(mine, b)
    assert mine == expected
    assert changed == (mine != a)


@given(TREES, TREES)
def test_union_into_is_union_and_leaves_the_other_alone(a: fp.Tree, b: fp.Tree) -> None:
    expected = fp.union(a, b)
    before = fp.copy(b)
    mine = fp.copy(a)
    changed = fp.union_into(mine, b)
    assert mine == expected
    assert b == before
    assert changed == (mine != a)


def _set(tree: fp.Tree) -> fp.Tree:
    """A set as decoding gives it: no member at the top (the empty path)."""
    return {k: v for k, v in tree.items() if k != fp.SELF}


def _text(encoded: dict[str, object]) -> str:
    return json.dumps(encoded)  # key order included: it is the wire form's


# Each wire-form operation against its decoded counterpart (which changes a tree in place
# and says whether it did).
OPERATIONS = [
    pytest.param(fp.encoded_difference, fp.subtract_into, id="difference"),
    pytest.param(fp.encoded_union, fp.union_into, id="union"),
]


@pytest.mark.parametrize(("on_wire", "decoded_op"), OPERATIONS)
@given(TREES, TREES)
def test_a_wire_form_operation_is_the_encoding_of_the_decoded_one(
    on_wire: Callable[[dict[str, Any], fp.Tree], dict[str, Any]],
    decoded_op: Callable[[fp.Tree, fp.Tree], bool],
    a: fp.Tree,
    b: fp.Tree,
) -> None:
    a, b = _set(a), _set(b)
    encoded = fp.to_fields_v1(a)
    stored = copy.deepcopy(encoded)
    decoded = fp.from_fields_v1(encoded)
    changed = decoded_op(decoded, b)
    out = on_wire(encoded, b)
    assert _text(out) == _text(fp.to_fields_v1(decoded))
    assert _text(encoded) == _text(stored)  # the stored encoding is left as it was
    assert (out is encoded) == (not changed)
    for element, child in out.items():
        if element not in b:
            assert child is encoded[element]  # what it does not touch is shared


def test_the_wire_form_operations_refuse_what_is_no_encoded_set() -> None:
    for operation in (fp.encoded_difference, fp.encoded_union):
        with pytest.raises(fp.FieldsV1Error):
            operation({"f:a": ["not", "a", "set"]}, {"f:a": {"f:b": {fp.SELF: {}}}})
