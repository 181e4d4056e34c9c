"""The trigger condition evaluator: the catalog's expressions, refusals, and any string
gives a parsed expression or a clear ExprError (never another exception)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.notifications.config import CATALOG_TRIGGERS
from hub.notifications.expr import ExprError, parse

FAILED: dict[str, Any] = {
    "app": {
        "metadata": {"name": "shop"},
        "status": {
            "operationState": {"phase": "Failed", "syncResult": {"revision": "abc"}},
            "health": {"status": "Degraded"},
        },
    }
}
FRESH: dict[str, Any] = {"app": {"status": {"health": {"status": "Healthy"}}}}


@pytest.mark.parametrize(
    ("source", "env", "expected"),
    [
        ("app.status.operationState.phase in ['Error', 'Failed']", FAILED, True),
        ("app.status.operationState.phase in ['Error', 'Failed']", FRESH, False),
        (
            "app.status.operationState != nil and app.status.operationState.phase == 'x'",
            FRESH,
            False,
        ),
        ("app.status.health.status == 'Degraded'", FAILED, True),
        ("app.status.health.status != 'Degraded'", FAILED, False),
        ("app.status.operationState?.syncResult?.revision", FAILED, "abc"),
        ("app.status.operationState?.syncResult?.revision", FRESH, None),
        ("app['metadata']['name'] == \"shop\"", FAILED, True),
        ("not (app.metadata.name == 'shop') || true && false", FAILED, False),
        ("!(app.metadata.name == 'x')", FAILED, True),
        ("app.metadata.name not in ['a', 'b']", FAILED, True),
        ("1 < 2 and 2.5 >= 2", FRESH, True),
        ("'a' < 1", FRESH, False),
        ("app.status.health.status", FRESH, "Healthy"),
    ],
)
def test_evaluates_the_subset_triggers_use(source: str, env: dict[str, Any], expected: Any) -> None:
    assert parse(source).evaluate(env) == expected


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("time.Now() > app.status.operationState.finishedAt", "function calls are not supported"),
        ("app.a + 1", "unexpected character '+'"),
        ("", "empty expression"),
        ("app.a ==", "end of expression"),
        ("app.a in [1, 2", "expected ']'"),
        ("app.", "expected a field name"),
        ("(" * 200 + "1" + ")" * 200, "nested deeper"),
    ],
)
def test_refuses_what_it_does_not_support_with_a_clear_error(source: str, says: str) -> None:
    with pytest.raises(ExprError, match=None) as info:
        parse(source)
    assert says in str(info.value)


def test_every_catalog_condition_parses() -> None:
    for conditions in CATALOG_TRIGGERS.values():
        for cond in conditions:
            parse(cond["when"])
            if "oncePer" in cond:
                parse(cond["oncePer"])


_DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
_PIECES = st.sampled_from(
    ["app", ".", "?.", "status", "phase", "==", "!=", "in", "not", "and", "or", "&&", "||", "!",
     "(", ")", "[", "]", ",", "'Failed'", '"x"', "nil", "true", "1", "2.5", "<", ">=", " "]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), _DATA)
def test_any_string_is_an_expression_or_an_expr_error(source: str, data: Any) -> None:
    try:
        expr = parse(source)
    except ExprError as exc:
        assert str(exc)
        return
    expr.evaluate({"app": data})


@settings(max_examples=500, deadline=None)
@given(st.lists(_PIECES, max_size=25), _DATA)
def test_token_soup_is_an_expression_or_an_expr_error(pieces: list[str], data: Any) -> None:
    try:
        expr = parse(" ".join(pieces))
    except ExprError:
        return
    expr.evaluate({"app": {"status": data}})
