"""Go value printing: fmt's %v of JSON-decoded data, Sprint/Sprintln and Sprintf verbs."""

from __future__ import annotations

from typing import Any

import pytest

from generators.gotemplate import render

V_CASES: list[tuple[Any, str]] = [
    ("s", "s"),
    (3.0, "3"),
    (-3.0, "-3"),
    (0.5, "0.5"),
    (1e6, "1e+06"),
    (123456.0, "123456"),
    (1234567.0, "1.234567e+06"),
    (100000.0, "100000"),
    (1e21, "1e+21"),
    (1e-5, "1e-05"),
    (0.0001, "0.0001"),
    (0.1 + 0.2, "0.30000000000000004"),
    (-0.0, "-0"),
    (float("inf"), "+Inf"),
    (float("-inf"), "-Inf"),
    (float("nan"), "NaN"),
    (1.5e300, "1.5e+300"),
    (7, "7"),
    (-(2**63), "-9223372036854775808"),
    (True, "true"),
    (False, "false"),
    ([], "[]"),
    (["a", "b"], "[a b]"),
    ([1.0, None, "x", [2.0]], "[1 <nil> x [2]]"),
    ({}, "map[]"),
    ({"b": 2.0, "a": "x", "c": None}, "map[a:x b:2 c:<nil>]"),
    ({"z": {"y": [1.0]}}, "map[z:map[y:[1]]]"),
    ({"B": 1.0, "a": 2.0, "_": 3.0}, "map[B:1 _:3 a:2]"),
]


@pytest.mark.parametrize(("value", "expected"), V_CASES, ids=[c[1] for c in V_CASES])
def test_values_print_like_go_fmt_v(value: Any, expected: str) -> None:
    assert render("{{ .v }}", {"v": value}) == expected
    if value is not None:
        assert render("{{ printf `%v` .v }}", {"v": value}) == expected


def test_nil_and_missing_print_as_no_value_in_an_action() -> None:
    assert render("{{ .v }}|{{ .missing }}", {"v": None}) == "<no value>|<no value>"


PRINT_CASES = [
    ("{{ print `hello, print` }}", "hello, print"),
    ("{{ print 1 2 3 }}", "1 2 3"),
    ('{{ print "a" 1 2 "b" }}', "a1 2b"),
    ("{{ print nil }}", "<nil>"),
    ("{{ print .missing }}", "<nil>"),
    ("{{ println 1 2 3 }}", "1 2 3\n"),
    ('{{ println "a" "b" }}', "a b\n"),
    ("{{ print .l }}", "[1 a]"),
]


@pytest.mark.parametrize(("source", "expected"), PRINT_CASES)
def test_print_and_println_space_operands_like_go(source: str, expected: str) -> None:
    assert render(source, {"l": [1.0, "a"]}) == expected


PRINTF_CASES = [
    ("%04x", [127], "007f"),
    ("%g", [3.5], "3.5"),
    ("%s", ["hello"], "hello"),
    ("%d %s %g", [127, "hello", 7.25], "127 hello 7.25"),
    ("%5.2f|", [3.14159], " 3.14|"),
    ("%-5d|", [3], "3    |"),
    ("%+d", [5], "+5"),
    ("% d", [5], " 5"),
    ("%05d", [-42], "-0042"),
    ("%08.3f", [-3.14159], "-003.142"),
    ("%.3d", [7], "007"),
    ("%x", ["hi"], "6869"),
    ("% x", ["hi"], "68 69"),
    ("%X", [255], "FF"),
    ("%#x", [255], "0xff"),
    ("%x", [-255], "-ff"),
    ("%o", [8], "10"),
    ("%#o", [8], "010"),
    ("%O", [8], "0o10"),
    ("%b", [5], "101"),
    ("%c", [65], "A"),
    ("%q", [65], "'A'"),
    ("%U", [0x1F600], "U+1F600"),
    ("%q", ['a"b'], '"a\\"b"'),
    ("%q", ["tab\there"], '"tab\\there"'),
    ("%q", ["é"], '"é"'),
    ("%+q", ["é"], '"\\u00e9"'),
    ("%#q", ["ab"], "`ab`"),
    ("%e", [1234.5678], "1.234568e+03"),
    ("%E", [1234.5678], "1.234568E+03"),
    ("%.3g", [1234.5678], "1.23e+03"),
    ("%.3g", [2.0], "2"),
    ("%g", [1e6], "1e+06"),
    ("%g", [100000.0], "100000"),
    ("%G", [1e-7], "1E-07"),
    ("%f", [1.0], "1.000000"),
    ("%.0f", [2.5], "2"),
    ("%.1f", [0.05], "0.1"),
    ("%+.1e", [12345.0], "+1.2e+04"),
    ("%6.2f%%", [99.5], " 99.50%"),
    ("%t", [True], "true"),
    ("%5s|", ["ab"], "   ab|"),
    ("%-5s|", ["ab"], "ab   |"),
    ("%.2s", ["abcdef"], "ab"),
    ("%5t", [False], "false"),
    ("%v", [None], "<nil>"),
    ("%s", [None], "%!s(<nil>)"),
    ("%d", [1.5], "%!d(float64=1.5)"),
    ("%d", ["x"], "%!d(string=x)"),
    ("%s", [1], "%!s(int=1)"),
    ("%t", [1], "%!t(int=1)"),
    ("%f", [1], "%!f(int=1)"),
    ("%z", [1], "%!z(int=1)"),
    ("%s", [], "%!s(MISSING)"),
    ("%s", ["a", 1, "b"], "a%!(EXTRA int=1, string=b)"),
    ("100%", [], "100%!(NOVERB)"),
    ("%%", [], "%"),
    ("%s", [["a", "b"]], "[a b]"),
    ("%d", [[1, 2]], "[1 2]"),
    ("%s", [["a", 1]], "[a %!s(int=1)]"),
    ("%q", [["a", "b"]], '["a" "b"]'),
    ("%v", [{"b": 1.0, "a": [2.0]}], "map[a:[2] b:1]"),
    ("%+v", [{"a": 1.0}], "map[a:1]"),
    ("%#v", ["a"], '"a"'),
    ("%#v", [1.0], "1"),
    ("%#v", [1e6], "1e+06"),
    ("%#v", [1e20], "1e+20"),
    ("%#v", [[1, "a", None]], '[]interface {}{1, "a", interface {}(nil)}'),
    ("%#v", [{"a": 1.0}], 'map[string]interface {}{"a":1}'),
    ("%T", ["s"], "string"),
    ("%T", [1.0], "float64"),
    ("%T", [1], "int"),
    ("%T", [[1]], "[]interface {}"),
    ("%T", [{"a": 1}], "map[string]interface {}"),
    ("%T", [None], "<nil>"),
    ("%*d", [5, 42], "   42"),
    ("%-*d|", [4, 7], "7   |"),
    ("%.*f", [2, 3.14159], "3.14"),
    ("%x", [3.5], "0x1.cp+01"),
    ("%X", [1.0], "0X1P+00"),
    ("%.0x", [3.5], "0x1p+02"),
    ("%x", [5e-324], "0x1p-1074"),
    ("%b", [1.0], "4503599627370496p-52"),
    ("%v", [float("inf")], "+Inf"),
    ("%f", [float("-inf")], "-Inf"),
    ("%5.1f|", [float("nan")], "  NaN|"),
]


@pytest.mark.parametrize(
    ("fmt", "args", "expected"), PRINTF_CASES, ids=[c[0] for c in PRINTF_CASES]
)
def test_printf_matches_go_fmt(fmt: str, args: list[Any], expected: str) -> None:
    data = {"f": fmt, "a": args}
    src = "{{ printf .f" + "".join(f" (index .a {i})" for i in range(len(args))) + " }}"
    assert render(src, data) == expected


def test_printf_types_of_sprig_results() -> None:
    assert render("{{ printf `%T %T %T` (add 1 2) (len `ab`) (splitList `,` `a`) }}", {}) == (
        "int64 int []string"
    )
