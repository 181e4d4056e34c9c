"""Properties: any source gives output or TemplateError, never another exception; and
rendering is deterministic."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generators.gotemplate import FUNCTIONS, Template, TemplateError

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "name", "x-y", ""]), inner, max_size=4)
    ),
    max_leaves=12,
)
params = st.dictionaries(st.sampled_from(["a", "b", "name", "l", "m"]), json_values, max_size=5)

# Fragments that make random sources reach deep into the grammar instead of failing in the lexer.
_FRAGMENTS = [
    "{{",
    "}}",
    "{{-",
    " -}}",
    ".",
    ".a",
    ".b.c",
    "$",
    "$x",
    ":=",
    "=",
    "|",
    "(",
    ")",
    " ",
    '"s"',
    "`r`",
    "'c'",
    "1",
    "-2",
    "1.5",
    "1e3",
    "0x1F",
    "nil",
    "true",
    ",",
    "\n",
    "if",
    "else",
    "end",
    "range",
    "with",
    "break",
    "continue",
    "define",
    "template",
    "block",
    '"t"',
    "/*",
    "*/",
    "$i, $v :=",
    *sorted(FUNCTIONS)[:: max(1, len(FUNCTIONS) // 40)],
    "and",
    "or",
    "printf",
    "index",
    "eq",
    "lt",
    "len",
    "slice",
    "default",
    "toJson",
    "toYaml",
]
sources = st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=3), max_size=25).map("".join)


def _render(source: str, data: Any, mode: str) -> str | TemplateError:
    try:
        return Template.parse(source, name="p").execute(data, missing_key=mode)  # type: ignore[arg-type]
    except TemplateError as e:
        return e


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=sources, data=params, mode=st.sampled_from(["default", "zero", "error"]))
def test_any_source_renders_or_raises_template_error(source: str, data: Any, mode: str) -> None:
    first = _render(source, copy.deepcopy(data), mode)
    second = _render(source, copy.deepcopy(data), mode)
    if isinstance(first, TemplateError):
        assert isinstance(second, TemplateError)
        assert str(first) == str(second)
        assert str(first).startswith("template: p")
    else:
        assert first == second


@settings(max_examples=300, deadline=None)
@given(source=st.text(max_size=40), data=params)
def test_arbitrary_text_never_crashes_the_engine(source: str, data: Any) -> None:
    _render(source, data, "default")


CALLS = sorted(n for n in FUNCTIONS if n not in ("fail",))


@settings(max_examples=600, deadline=None)
@given(
    name=st.sampled_from(CALLS),
    args=st.lists(
        st.sampled_from(
            [
                ".a",
                ".b",
                ".l",
                ".m",
                "1",
                "-1",
                "2.5",
                '"x"',
                '"a,b"',
                "true",
                "nil",
                "(list 1 2)",
                '(dict "k" "v")',
            ]
        ),
        max_size=4,
    ),
    data=params,
)
def test_every_function_with_any_arguments_returns_or_raises_template_error(
    name: str, args: list[str], data: Any
) -> None:
    source = "{{ " + " ".join([name, *args]) + " }}"
    first = _render(source, copy.deepcopy(data), "default")
    second = _render(source, copy.deepcopy(data), "default")
    assert type(first) is type(second)
    if isinstance(first, str):
        assert first == second
