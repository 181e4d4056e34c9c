"""Execution semantics, cases modelled on Go's text/template exec_test.go (map data)."""

from __future__ import annotations

from typing import Any

import pytest

from generators.gotemplate import Template, TemplateError, render

DATA: dict[str, Any] = {
    "X": "x",
    "I": 17.0,
    "True": True,
    "FloatZero": 0.0,
    "SI": [3.0, 4.0, 5.0],
    "SIEmpty": [],
    "SB": [True, False],
    "MSI": {"one": 1.0, "two": 2.0, "three": 3.0},
    "MSIone": {"one": 1.0},
    "MSIEmpty": {},
    "SMSI": [{"one": 1.0, "two": 2.0}, {"eleven": 11.0, "twelve": 12.0}],
    "U": {"V": "v"},
    "Nil": None,
    "S": ["a", "b"],
    "dash-key": "dashed",
}

CASES = [
    # text, fields, variables
    ("empty", "", ""),
    ("text", "some text", "some text"),
    ("dot", "{{ .X }}", "x"),
    ("nested", "{{ .U.V }}", "v"),
    ("dollar", "{{ $.U.V }}", "v"),
    ("dollar alone", "{{ $.X }}{{ with .U }}{{ $.X }}{{ end }}", "xx"),
    ("declare", "{{ $x := .X }}{{ $x }}", "x"),
    ("declare prints nothing", "a{{ $x := 1 }}b", "ab"),
    ("assign", "{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", "2"),
    ("assign in if survives", "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", "2"),
    ("shadow in with", "{{ $x := 1 }}{{ with $x := 2 }}{{ $x }}{{ end }}{{ $x }}", "21"),
    ("var field", "{{ $u := .U }}{{ $u.V }}", "v"),
    ("paren field", "{{ ( .U ).V }}", "v"),
    ("paren dollar", "{{ ($).X }}", "x"),
    ("chain on function", '{{ (dict "a" (dict "b" "c")).a.b }}', "c"),
    ("index dashed key", '{{ index . "dash-key" }}', "dashed"),
    ("index nested", '{{ index .SMSI 1 "eleven" }}', "11"),
    ("index map missing", '{{ index .MSI "XXX" }}', "<no value>"),
    # constants
    ("int", "{{ 17 }}", "17"),
    ("neg", "{{ -3 }}", "-3"),
    ("float", "{{ 1.5 }}", "1.5"),
    ("float integral", "{{ 3.0 }}", "3"),
    ("float exp", "{{ 1e6 }}", "1e+06"),
    ("hex", "{{ 0x1F }}", "31"),
    ("octal", "{{ 017 }}", "15"),
    ("leading zero decimal", "{{ 08 }} {{ printf `%T` 09 }}", "8 int"),
    ("binary", "{{ 0b101 }}", "5"),
    ("underscore", "{{ 1_000 }}", "1000"),
    ("char", "{{ 'a' }}", "97"),
    ("char escape", "{{ '\\n' }}", "10"),
    ("string", '{{ "a\\tb" }}', "a\tb"),
    ("raw", "{{ `a\\tb` }}", "a\\tb"),
    ("bool", "{{ true }} {{ false }}", "true false"),
    ("printf %T int constant", "{{ printf `%T` 0xef }}", "int"),
    # if / else
    ("if true", "{{ if true }}T{{ end }}", "T"),
    ("if false", "{{ if false }}T{{ else }}F{{ end }}", "F"),
    ("if 1", "{{ if 1 }}NZ{{ else }}Z{{ end }}", "NZ"),
    ("if 0", "{{ if 0 }}NZ{{ else }}Z{{ end }}", "Z"),
    ("if 0.0", "{{ if .FloatZero }}NZ{{ else }}Z{{ end }}", "Z"),
    ("if empty string", "{{ if `` }}NE{{ else }}E{{ end }}", "E"),
    ("if empty slice", "{{ if .SIEmpty }}NE{{ else }}E{{ end }}", "E"),
    ("if slice", "{{ if .SI }}NE{{ else }}E{{ end }}", "NE"),
    ("if empty map", "{{ if .MSIEmpty }}NE{{ else }}E{{ end }}", "E"),
    ("if missing", "{{ if .Nope }}NZ{{ else }}Z{{ end }}", "Z"),
    ("if nil value", "{{ if .Nil }}NZ{{ else }}Z{{ end }}", "Z"),
    ("if not missing", "{{ if not .Nope }}Z{{ else }}NZ{{ end }}", "Z"),
    ("else if", "{{ if false }}F{{ else if true }}T{{ end }}", "T"),
    ("else chain", "{{ if eq 1 3 }}1{{ else if eq 2 3 }}2{{ else if eq 3 3 }}3{{ end }}", "3"),
    (
        "if decl scope",
        "{{ if $x := true }}{{ with $y := .I }}{{ $x }},{{ $y }}{{ end }}{{ end }}",
        "true,17",
    ),
    # with
    ("with true", "{{ with true }}{{ . }}{{ end }}", "true"),
    ("with 0", "{{ with 0 }}{{ . }}{{ else }}ZERO{{ end }}", "ZERO"),
    ("with 1.5", "{{ with 1.5 }}{{ . }}{{ end }}", "1.5"),
    ("with slice", "{{ with .SI }}{{ . }}{{ end }}", "[3 4 5]"),
    ("with map", "{{ with .MSIone }}{{ . }}{{ end }}", "map[one:1]"),
    ("with else with", "{{ with .Nope }}A{{ else with .X }}{{ . }}{{ end }}", "x"),
    ("with else with else", "{{ with .Nope }}A{{ else with .Nil }}B{{ else }}C{{ end }}", "C"),
    # range
    ("range slice", "{{ range .SI }}-{{ . }}-{{ end }}", "-3--4--5-"),
    ("range empty", "{{ range .SIEmpty }}-{{ . }}-{{ end }}", ""),
    ("range else", "{{ range .SIEmpty }}-{{ . }}-{{ else }}EMPTY{{ end }}", "EMPTY"),
    ("range bool", "{{ range .SB }}-{{ . }}-{{ end }}", "-true--false-"),
    ("range map sorted", "{{ range .MSI }}-{{ . }}-{{ end }}", "-1--3--2-"),
    (
        "range map kv",
        "{{ range $k, $v := .MSI }}{{ $k }}={{ $v }};{{ end }}",
        "one=1;three=3;two=2;",
    ),
    ("range $x", "{{ range $x := .SI }}<{{ $x }}>{{ end }}", "<3><4><5>"),
    ("range $i $x", "{{ range $x, $y := .SI }}<{{ $x }}={{ $y }}>{{ end }}", "<0=3><1=4><2=5>"),
    ("range missing", "{{ range .Nope }}x{{ else }}none{{ end }}", "none"),
    ("range nil", "{{ range .Nil }}x{{ else }}none{{ end }}", "none"),
    ("range int", "{{ range 3 }}{{ . }}{{ end }}", "012"),
    ("range int var", "{{ range $i := 2 }}[{{ $i }}]{{ end }}", "[0][1]"),
    ("range int zero", "{{ range 0 }}x{{ else }}none{{ end }}", "none"),
    ("range decl in body", "{{ range $x := .SI }}<{{ $foo := $x }}{{ $x }}>{{ end }}", "<3><4><5>"),
    ("range dollar", "{{ range .SI }}{{ $.X }}{{ end }}", "xxx"),
    ("range break", "{{ range .SI }}{{ if eq . 4.0 }}{{ break }}{{ end }}{{ . }}{{ end }}", "3"),
    (
        "range continue",
        "{{ range .SI }}{{ if eq . 4.0 }}{{ continue }}{{ end }}{{ . }}{{ end }}",
        "35",
    ),
    (
        "range assign",
        "{{ $i := 0 }}{{ $v := 0 }}{{ range $i, $v = .S }}{{ end }}{{ $i }}{{ $v }}",
        "1b",
    ),
    (
        "range nested break",
        "{{ range .S }}{{ range $.SI }}{{ break }}{{ end }}{{ . }}{{ end }}",
        "ab",
    ),
    ("range nil elems", "{{ range .L }}[{{ . }}]{{ end }}", "[<no value>][1]"),
    # and/or/not
    ("not", "{{ not true }} {{ not false }}", "false true"),
    ("and", "{{ and false 0 }} {{ and 1 0 }} {{ and 0 true }} {{ and 1 1 }}", "false 0 0 1"),
    ("or", "{{ or 0 0 }} {{ or 1 0 }} {{ or 0 true }} {{ or 1 1 }}", "0 1 true 1"),
    ("or as default", '{{ or .SIEmpty "slice is empty" }}', "slice is empty"),
    ("or keeps value", '{{ or .SI "slice is empty" }}', "[3 4 5]"),
    ("and short-circuits", "{{ and false (index .SI 10) }}", "false"),
    ("or short-circuits", "{{ or true (index .SI 10) }}", "true"),
    (
        "eq nil and missing",
        "{{ eq .Nil .Nope }} {{ eq .SI .Nope }} {{ eq .X .Nil }}",
        "true false false",
    ),
    ("ne", "{{ ne 1 2 }} {{ ne `a` `a` }} {{ ne .SI .Nil }}", "true false true"),
    ("eq many", "{{ eq 3 4 5 6 3 }} {{ eq 3 4 5 6 7 }}", "true false"),
    ("eq rune", "{{ eq (index `x` 0) 'x' }}", "true"),
    (
        "string order",
        "{{ lt `xy` `xyz` }} {{ le `xyz` `xy` }} {{ gt `b` `a` }} {{ ge `a` `a` }}",
        "true false true true",
    ),
    ("and in pipeline", "{{ 0 | and 1 }}", "0"),
    ("if and not", "{{ if and true 1 `hi` | not }}T{{ else }}F{{ end }}", "F"),
    # html, js, urlquery (Go's exec_test and escaping tests)
    (
        "html",
        '{{ html "<script>alert(\\"XSS\\");</script>" }}',
        "&lt;script&gt;alert(&#34;XSS&#34;);&lt;/script&gt;",
    ),
    ("html pipeline", '{{ printf "<b>%s</b>" "x" | html }}', "&lt;b&gt;x&lt;/b&gt;"),
    ("html nil", "{{ html .Nope }}", "&lt;no value&gt;"),
    ("html many", "{{ html 1 2 }}", "1 2"),
    ("js", "{{ js `It'd be nice.` }}", "It\\'d be nice."),
    ("js escapes", '{{ js `Go "jump" \\ <html>` }}', 'Go \\"jump\\" \\\\ \\u003Chtml\\u003E'),
    ("urlquery", '{{ "http://www.example.org/" | urlquery }}', "http%3A%2F%2Fwww.example.org%2F"),
    ("urlquery space", '{{ urlquery "a b&c=d" }}', "a+b%26c%3Dd"),
    # pipelines
    ("pipe", '{{ "x" | printf "%s-%s" "a" }}', "a-x"),
    ("pipe chain", '{{ "ab" | upper | printf "<%s>" }}', "<AB>"),
    ("parens", "{{ printf `%d %d %d` (1) (2 | add 3) (add 4 (add 5 6)) }}", "1 5 15"),
    # trimming and comments
    ("trim left", "a  \n {{- 1 }}", "a1"),
    ("trim right", "{{ 1 -}} \n b", "1b"),
    ("trim both", "a \t{{- 1 -}}\n\nb", "a1b"),
    ("trim comment", "a {{- /* c */ -}} b", "ab"),
    ("comment", "a{{/* c */}}b", "ab"),
    ("negative not trim", "{{-3}}", "-3"),
    ("newlines in action", "{{\n.X\n}}", "x"),
    # define / template / block
    ("define+template", '{{ define "t" }}<{{ . }}>{{ end }}{{ template "t" .X }}', "<x>"),
    ("template no dot", '{{ define "t" }}[{{ . }}]{{ end }}{{ template "t" }}', "[<no value>]"),
    ("template new $", '{{ define "t" }}{{ $ }}{{ end }}{{ template "t" 5 }}', "5"),
    ("block", 'a({{ block "inner" .X }}bar({{ . }})baz{{ end }})b', "a(bar(x)baz)b"),
    (
        "recursion",
        '{{ define "r" }}{{ if . }}{{ index . 0 }}{{ template "r" (rest .) }}{{ end }}{{ end }}{{ template "r" .S }}',
        "ab",
    ),
    ("define after use", '{{ template "late" }}{{ define "late" }}L{{ end }}', "L"),
    ("only defines", '{{ define "x" }}X{{ end }}', ""),
]


@pytest.mark.parametrize(("name", "source", "expected"), CASES, ids=[c[0] for c in CASES])
def test_templates_execute_like_go(name: str, source: str, expected: str) -> None:
    data = dict(DATA, L=[None, 1.0])
    assert render(source, data) == expected


ERRORS = [
    ("nil command", "{{ nil }}", "nil is not a command"),
    ("nil pipe", "{{ nil | print }}", "nil is not a command"),
    ("arg to non-function", "{{ 3 2 }}", "can't give argument to non-function 3"),
    ("arg to variable", "{{ $x := 1 }}{{ $x 2 }}", "can't give argument to non-function $x"),
    ("pipe to variable", "{{ $x := 1 }}{{ 3 | $x }}", "can't give argument to non-function $x"),
    ("field with args", "{{ .U.V 1 }}", "V is not a method but has arguments"),
    ("field on string", "{{ .X.Y }}", "can't evaluate field Y in type interface {}"),
    (
        "field on root string",
        "{{ with .X }}{{ .Y }}{{ end }}",
        "can't evaluate field Y in type string",
    ),
    ("field on nil", "{{ .Nil.Y }}", "nil pointer evaluating interface {}.Y"),
    ("nil chain", "{{ (nil).True }}", "nil is not a command"),
    (
        "field of literal var",
        "{{ $x := 1.0 }}{{ $x.anything }}",
        "can't evaluate field anything in type float64",
    ),
    ("index out of range", "{{ index .SI 10 }}", "error calling index: index out of range: 10"),
    ("index len", "{{ index .SI 3 }}", "error calling index: index out of range: 3"),
    (
        "index with string",
        "{{ index .SI `hello` }}",
        "error calling index: cannot index slice/array with type string",
    ),
    (
        "index with float",
        "{{ index .SI 1.5 }}",
        "error calling index: cannot index slice/array with type float64",
    ),
    (
        "index with nil",
        "{{ index .SI nil }}",
        "error calling index: cannot index slice/array with nil",
    ),
    (
        "index map with int",
        "{{ index .MSI 10 }}",
        "error calling index: value has type int; should be string",
    ),
    ("index nil", "{{ index nil 1 }}", "error calling index: index of untyped nil"),
    ("index scalar", "{{ index 3 1 }}", "error calling index: can't index item of type int"),
    ("len of int", "{{ len 3 }}", "error calling len: len of type int"),
    (
        "len of nothing",
        "{{ len .Nope }}",
        "error calling len: reflect: call of reflect.Value.Type on zero Value",
    ),
    ("len of nil", "{{ len .Nil }}", "error calling len: len of nil pointer"),
    ("eq list string", "{{ eq .SI `x` }}", "error calling eq: incompatible types for comparison"),
    (
        "eq maps",
        "{{ eq .MSI .MSI }}",
        "error calling eq: non-comparable type map[one:1 three:3 two:2]: map[string]interface {}",
    ),
    ("too few args", "{{ printf }}", "wrong number of args for printf: want at least 1 got 0"),
    ("wrong arg count", "{{ upper }}", "wrong number of args for upper: want 1 got 0"),
    ("wrong arg count pipe", "{{ 1 | upper 2 }}", "wrong number of args for upper: want 1 got 2"),
    (
        "string param with bool",
        "{{ true | printf }}",
        "wrong type for value; expected string; got bool",
    ),
    ("string param with number constant", "{{ upper 3 }}", "expected string; found 3"),
    ("int param with float constant", '{{ trunc 1.5 "abc" }}', "expected integer; found 1.5"),
    (
        "int param with float64 data",
        '{{ trunc .I "abc" }}',
        "wrong type for value; expected int; got float64",
    ),
    (
        "int param with int64",
        '{{ trunc (add 1 1) "abc" }}',
        "wrong type for value; expected int; got int64",
    ),
    ("string param with missing", "{{ .Nope | upper }}", "invalid value; expected string"),
    ("nil to string", "{{ upper nil }}", "cannot assign nil to string"),
    ("compare int float", "{{ eq 2 2.0 }}", "error calling eq: incompatible types for comparison"),
    (
        "compare string int",
        "{{ eq `xy` 1 }}",
        "error calling eq: incompatible types for comparison",
    ),
    (
        "compare data number with int",
        "{{ eq .I 17 }}",
        "error calling eq: incompatible types for comparison",
    ),
    ("lt bool", "{{ lt true true }}", "error calling lt: invalid type for comparison"),
    ("lt missing", "{{ lt .Nope 1 }}", "error calling lt: invalid type for comparison"),
    ("eq one arg", "{{ eq 1 }}", "error calling eq: missing argument for comparison"),
    (
        "eq slices",
        "{{ eq .SI .SI }}",
        "error calling eq: non-comparable type [3 4 5]: []interface {}",
    ),
    ("range over string", "{{ range .X }}{{ end }}", "range can't iterate over x"),
    (
        "range int two vars",
        "{{ range $i, $v := 3 }}{{ end }}",
        "can't use 3 to iterate over more than one variable",
    ),
    ("undefined template", '{{ template "nope" }}', 'template "nope" not defined'),
    ("call", "{{ call .X }}", "error calling call: non-function of type string"),
    ("call nil", "{{ call nil }}", "error calling call: call of nil"),
    ("fail", '{{ fail "boom" }}', "error calling fail: boom"),
    ("assign undeclared", "{{ $x = 1 }}", "undefined variable: $x"),
]


@pytest.mark.parametrize(("name", "source", "fragment"), ERRORS, ids=[e[0] for e in ERRORS])
def test_execution_errors_use_go_wording(name: str, source: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(source, DATA, name="t")
    msg = str(info.value)
    assert msg.startswith("template: t:")
    assert msg.endswith(fragment), msg


def test_nested_template_errors_name_the_executing_template_and_the_node() -> None:
    src = (
        'line 1\nline 2\nline 3\n{{template "one" .}}\n'
        '{{define "one"}}{{template "two" .}}{{end}}\n'
        '{{define "two"}}{{template "three" .}}{{end}}\n'
        '{{define "three"}}{{index "hi" $}}{{end}}'
    )
    with pytest.raises(TemplateError) as info:
        Template.parse(src, name="top").execute(5)
    assert str(info.value) == (
        'template: top:7:20: executing "three" at <index "hi" $>: '
        "error calling index: index out of range: 5"
    )


def test_a_define_named_like_the_template_replaces_an_empty_main_template() -> None:
    assert Template.parse('  {{ define "t" }}T{{ end }}\n', name="t").execute({}) == "T"
    with pytest.raises(TemplateError, match='multiple definition of template "t"'):
        Template.parse('x{{ define "t" }}T{{ end }}', name="t")


def test_runaway_recursion_is_a_template_error() -> None:
    t = Template.parse('{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}')
    with pytest.raises(TemplateError, match="exceeded maximum template depth"):
        t.execute({})


def test_variables_do_not_leak_between_executions() -> None:
    t = Template.parse("{{ $x := .a }}{{ $x }}")
    assert t.execute({"a": "1"}) == "1"
    assert t.execute({"a": "2"}) == "2"


def test_text_without_actions_is_returned_unchanged() -> None:
    assert render("no {braces} here", {}) == "no {braces} here"
    assert Template.parse("plain").execute(None) == "plain"


def test_data_can_be_a_scalar_or_a_list() -> None:
    assert render("{{ . }}", "s") == "s"
    assert render("{{ index . 1 }}", ["a", "b"]) == "b"
    assert render("{{ .x }}", None) == "<no value>"


def test_unknown_missing_key_option_is_refused() -> None:
    with pytest.raises(TemplateError, match="unknown missingkey option"):
        Template.parse("{{ .a }}").execute({}, missing_key="bogus")  # type: ignore[arg-type]
