"""The in-place set operations of the write path agree with the copying ones, and say
truly whether they changed the set (a write reuses an unchanged set's stored encoding)."""

from __future__ import annotations

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
