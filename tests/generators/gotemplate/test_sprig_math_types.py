"""sprig arithmetic (int64 via spf13/cast), float functions, conversions and reflection."""

from __future__ import annotations

import pytest

from generators.gotemplate import TemplateError, render

CASES = [
    ("{{ add 1 2 3 }} {{ add1 5 }} {{ sub 10 3 }} {{ mul 2 3 4 }}", "6 6 7 24"),
    ("{{ div 7 2 }} {{ div -7 2 }} {{ mod 7 3 }} {{ mod -7 3 }}", "3 -3 1 -1"),
    ("{{ max 1 5 3 }} {{ min 4 2 }} {{ biggest 1 9 }}", "5 2 9"),
    ('{{ add .n 1 }} {{ add "2" 1 }} {{ add 1.9 1 }} {{ add true 1 }}', "4 3 2 2"),
    ("{{ floor 1.5 }} {{ ceil 1.2 }} {{ floor -1.5 }}", "1 2 -2"),
    (
        "{{ round 123.555555 3 }} {{ round 2.5 0 }} {{ round -2.5 0 }} {{ round 1.5 0 0.6 }}",
        "123.556 3 -3 1",
    ),
    (
        "{{ addf 1.1 2.2 }} {{ subf 3.3 1.1 }} {{ mulf 1.1 3 }} {{ divf 1 3 }}",
        "3.3 2.2 3.3 0.3333333333333333",
    ),
    ("{{ maxf 1 2.5 }} {{ minf 1 2.5 }} {{ add1f 1.5 }}", "2.5 1 2.5"),
    (
        '{{ int "42" }} {{ int "0x1F" }} {{ int "abc" }} {{ int 3.7 }} {{ int "010" }}',
        "42 31 0 3 8",
    ),
    ('{{ int64 "10.0" }} {{ float64 "1.5" }} {{ float64 "x" }}', "10 1.5 0"),
    ('{{ atoi "12" }} {{ atoi "1.5" }} {{ atoi "-3" }}', "12 0 -3"),
    ('{{ toDecimal "0777" }}', "511"),
    (
        "{{ typeOf 1 }} {{ typeOf 1.5 }} {{ typeOf `a` }} {{ typeOf true }}",
        "int float64 string bool",
    ),
    (
        "{{ typeOf (list) }} {{ typeOf (dict) }} {{ typeOf nil }} {{ typeOf (add 1 1) }}",
        "[]interface {} map[string]interface {} <nil> int64",
    ),
    (
        "{{ kindOf (list) }} {{ kindOf (dict) }} {{ kindOf 1.5 }} {{ kindOf nil }}",
        "slice map float64 invalid",
    ),
    (
        '{{ kindIs "string" "a" }} {{ typeIs "float64" .n }} {{ typeIsLike "int" 1 }}',
        "true true true",
    ),
    (
        "{{ deepEqual (list 1 2) (list 1 2) }} {{ deepEqual 1 1.0 }} {{ deepEqual (dict) (dict) }}",
        "true false true",
    ),
]


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_math_and_type_functions_match_sprig(source: str, expected: str) -> None:
    assert render(source, {"n": 3.0}) == expected


def test_integer_division_by_zero_is_an_error_like_go() -> None:
    with pytest.raises(
        TemplateError, match="error calling div: runtime error: integer divide by zero"
    ):
        render("{{ div 1 0 }}", {})
    with pytest.raises(
        TemplateError, match="error calling mod: runtime error: integer divide by zero"
    ):
        render("{{ mod 1 0 }}", {})
