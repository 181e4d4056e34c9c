"""sprig list and dict functions, defaults and flow control."""

from __future__ import annotations

from typing import Any

import pytest

from generators.gotemplate import TemplateError, render

DATA: dict[str, Any] = {
    "l": [1.0, 2.0, 3.0],
    "e": [],
    "m": {"a": 1.0, "b": {"c": "deep"}},
    "s": "",
    "z": 0.0,
    "nil": None,
    "labels": {"env": "prod"},
}

CASES = [
    # defaults and flow
    ('{{ .missing | default "d" }}', "d"),
    ('{{ .s | default "d" }}', "d"),
    ('{{ .z | default "d" }}', "d"),
    ('{{ .e | default "d" }}', "d"),
    ('{{ .nil | default "d" }}', "d"),
    ('{{ .labels.env | default "d" }}', "prod"),
    ('{{ default "d" false }}', "d"),
    ('{{ default "d" }}', "d"),
    (
        "{{ empty .s }} {{ empty .l }} {{ empty .missing }} {{ empty 0 }} {{ empty .m }}",
        "true false true true false",
    ),
    ('{{ coalesce .s .z "x" }}', "x"),
    ("{{ coalesce .s .z }}", "<no value>"),
    ('{{ all 1 "a" true }} {{ all 1 "" }} {{ any 0 "" "x" }} {{ any 0 }}', "true false true false"),
    ('{{ ternary "yes" "no" true }} {{ ternary "yes" "no" false }}', "yes no"),
    ('{{ true | ternary "yes" "no" }}', "yes"),
    # lists
    ("{{ list 1 2 3 }}", "[1 2 3]"),
    ("{{ first .l }} {{ last .l }} {{ rest .l }} {{ initial .l }}", "1 3 [2 3] [1 2]"),
    ("{{ first .e }}", "<no value>"),
    ("{{ append .l 4 }} {{ prepend .l 0 }} {{ .l }}", "[1 2 3 4] [0 1 2 3] [1 2 3]"),
    ("{{ concat .l (list 4 5) .e }}", "[1 2 3 4 5]"),
    ("{{ uniq (list 1 1 2 1.0 1.0) }}", "[1 2 1]"),
    ("{{ without .l 2.0 }}", "[1 3]"),
    ("{{ has 2.0 .l }} {{ has 2 .l }} {{ has 1 nil }}", "true false false"),
    ('{{ compact (list 1 "" 0 "a" nil) }}', "[1 a]"),
    ("{{ reverse .l }}", "[3 2 1]"),
    (
        "{{ slice .l 1 }} {{ slice .l 1 2 }} {{ slice .l }} {{ slice .e }}",
        "[2 3] [2] [1 2 3] <no value>",
    ),
    ("{{ until 3 }} {{ untilStep 3 9 2 }}", "[0 1 2] [3 5 7]"),
    ("{{ chunk 2 (list 1 2 3 4 5) }} {{ chunk 3 .e }}", "[[1 2] [3 4] [5]] []"),
    ("{{ seq 3 }}|{{ seq 0 2 }}|{{ seq 0 2 6 }}|{{ seq -3 }}", "1 2 3|0 1 2|0 2 4 6|1 0 -1 -2 -3"),
    # dicts
    ('{{ dict "b" 2 "a" 1 }}', "map[a:1 b:2]"),
    ('{{ dict "a" }}', "map[a:]"),
    ('{{ get .m "a" }} {{ get .m "zz" }}', "1 "),
    ('{{ hasKey .m "a" }} {{ hasKey .m "zz" }}', "true false"),
    ('{{ $d := dict "a" 1 }}{{ $_ := set $d "b" 2 }}{{ $d }}', "map[a:1 b:2]"),
    ('{{ $d := dict "a" 1 "b" 2 }}{{ $_ := unset $d "a" }}{{ $d }}', "map[b:2]"),
    ("{{ keys .m }}", "[a b]"),
    ('{{ keys (dict "b" 1) (dict "a" 2) }}', "[a b]"),
    ('{{ values (dict "b" 1 "a" 2) }}', "[2 1]"),
    ('{{ pick .m "a" "zz" }} {{ omit .m "a" }}', "map[a:1] map[b:map[c:deep]]"),
    ('{{ pluck "a" .m (dict "a" 9) (dict) }}', "[1 9]"),
    (
        '{{ merge (dict "a" 1 "n" (dict "x" 1)) (dict "a" 2 "b" 3 "n" (dict "x" 2 "y" 3)) }}',
        "map[a:1 b:3 n:map[x:1 y:3]]",
    ),
    (
        '{{ mergeOverwrite (dict "a" 1 "n" (dict "x" 1)) (dict "a" 2 "n" (dict "y" 3)) }}',
        "map[a:2 n:map[x:1 y:3]]",
    ),
    ('{{ merge (dict "a" "") (dict "a" "filled") }}', "map[a:filled]"),
    # sprig's documented mergeOverwrite example: false and "" from the source win too
    (
        '{{ mergeOverwrite (dict "default" "default" "overwrite" "me" "key" true) '
        '(dict "overwrite" "overwritten" "key" false) }}',
        "map[default:default key:false overwrite:overwritten]",
    ),
    ('{{ mergeOverwrite (dict "l" (list 1)) (dict "l" (list 2 3)) }}', "map[l:[2 3]]"),
    ('{{ merge (dict "l" (list 1)) (dict "l" (list 2 3)) }}', "map[l:[1]]"),
    ('{{ mergeOverwrite (dict "a" "x") (dict "a" (dict "b" 1)) }}', "map[a:x]"),
    ('{{ dig "b" "c" "none" .m }}', "deep"),
    ('{{ dig "b" "x" "none" .m }}', "none"),
    ('{{ dig "a" "none" .m }}', "1"),
    ('{{ .m | dig "b" "c" "none" }}', "deep"),
    ("{{ deepCopy .m }}", "map[a:1 b:map[c:deep]]"),
]


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_collection_functions_match_sprig(source: str, expected: str) -> None:
    assert render(source, DATA) == expected


ERRORS = [
    ('{{ first "abc" }}', "error calling first: Cannot find first on type string"),
    (
        '{{ slice "abc" 1 }}',
        "error calling slice: list should be type of slice or array but string",
    ),
    ("{{ slice .l 2 9 }}", "error calling slice: reflect: slice index out of range"),
    ('{{ append "s" 1 }}', "error calling append: Cannot push on type string"),
    ("{{ concat (list 1) 2 }}", "error calling concat: Cannot concat type int as list"),
    (
        "{{ first .nil }}",
        "error calling first: runtime error: invalid memory address or nil pointer dereference",
    ),
    (
        '{{ dig "a" "b" "d" .m }}',
        "error calling dig: interface conversion: interface {} is float64, not map[string]interface {}",
    ),
    ('{{ dig "a" "d" }}', "error calling dig: dig needs at least three arguments"),
    (
        '{{ hasKey .l "a" }}',
        "wrong type for value; expected map[string]interface {}; got []interface {}",
    ),
    ('{{ ternary "a" "b" "yes" }}', 'expected bool; found "yes"'),
]


@pytest.mark.parametrize(("source", "fragment"), ERRORS)
def test_collection_function_misuse_is_an_error(source: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(source, DATA)
    assert str(info.value).endswith(fragment)


def test_set_mutates_the_map_it_is_given_like_sprig() -> None:
    data: dict[str, Any] = {"m": {}}
    assert render('{{ $_ := set .m "k" "v" }}{{ .m.k }}', data) == "v"
    assert data["m"] == {"k": "v"}


def test_the_documented_function_families_are_exactly_the_registry() -> None:
    from generators.gotemplate import FUNCTIONS, UNAVAILABLE
    from generators.gotemplate.sprig import FAMILIES, SPRIG_FUNCTIONS

    listed = [name for names in FAMILIES.values() for name in names]
    assert len(listed) == len(set(listed))
    assert set(listed) == set(SPRIG_FUNCTIONS)
    assert not set(UNAVAILABLE) & set(FUNCTIONS)
