"""Argo CD's additions: normalize, slugify, toYaml, fromYaml, fromYamlArray."""

from __future__ import annotations

import re

import pytest

from generators.gotemplate import TemplateError, render

CASES = [
    ('{{ normalize "Hello_World.Foo" }}', "hello-world.foo"),
    ('{{ normalize "--a--" }} {{ normalize "..x.." }}', "a x"),
    ('{{ normalize "A/B:C d" }}', "a-b-c-d"),
    ('{{ normalize "Ünïcode" }}', "n-code"),
    ('{{ len (normalize (repeat 300 "a")) }}', "253"),
    ('{{ "feature/JIRA-123" | normalize }}', "feature-jira-123"),
    ('{{ slugify "Hello World" }}', "hello-world"),
    ('{{ slugify "a.b_c" }}', "a-b-c"),
    ('{{ slugify "--Hello--World--" }}', "hello-world"),
    ('{{ slugify 20 true "The quick brown fox jumps over the lazy dog" }}', "the-quick-brown-fox"),
    ('{{ slugify 20 false "The quick brown fox jumps over the lazy dog" }}', "the-quick-brown-fox"),
    ('{{ slugify 12 false "The quick brown fox" }}', "the-quick-br"),
    ('{{ slugify 12 true "The quick brown fox" }}', "the-quick"),
    ('{{ slugify 5 "abcdefghij" }}', "abcde"),
    ('{{ len (slugify (repeat 60 "a")) }}', "50"),
    ("{{ toYaml .m }}", 'a: 1\nb:\n- x\n- "true"\nc:\n  d: null'),
    ('{{ toYaml "" }} {{ toYaml "yes" }} {{ toYaml "plain" }}', '"" "yes" plain'),
    ('{{ toYaml "x: y" }}', "'x: y'"),
    ('{{ toYaml "multi\\nline" }}', "|-\n  multi\n  line"),
    ("{{ toYaml 1.5 }} {{ toYaml 3.0 }} {{ toYaml 1e21 }} {{ toYaml nil }}", "1.5 3 1e+21 null"),
    ("{{ toYaml (list) }} {{ toYaml (dict) }}", "[] {}"),
    ('{{ toYaml (list "a" (dict "k" "v")) }}', "- a\n- k: v"),
    ('{{ (fromYaml "a: 1\\nb: [x, z]") }}', "map[a:1 b:[x z]]"),
    # go-yaml v2 typing: y/n/on/off are booleans, 1:20 is text, 0o17 and 1_000 are numbers
    (
        '{{ fromYaml "a: y\\nb: Off\\nc: 1:20\\nd: 0o17\\ne: 1_000\\nf: ~\\ng: .5" }}',
        "map[a:true b:false c:1:20 d:15 e:1000 f:<nil> g:0.5]",
    ),
    (
        '{{ toYaml (list "y" "n" "=" "1:20" "0o17" "1e3" "2024-01-01" "on" "x y") }}',
        '- "y"\n- "n"\n- =\n- "1:20"\n- "0o17"\n- "1e3"\n- "2024-01-01"\n- "on"\n- x y',
    ),
    # JSON prints 1e20 as digits, go-yaml reads those as a float (beyond uint64) again
    ("{{ toYaml 1e20 }} {{ toYaml 1e19 }} {{ toYaml -0.0 }}", "1e+20 10000000000000000000 0"),
    ('{{ typeOf (fromYaml "a: 1").a }}', "float64"),
    ('{{ (fromYaml "d: 2024-01-01").d }} {{ (fromYaml "b: yes").b }}', "2024-01-01 true"),
    ('{{ fromYaml "" }}', "map[]"),
    ('{{ fromYaml "1: a" }}', "map[1:a]"),
    ('{{ fromYamlArray "- a\\n- b: c" }}', "[a map[b:c]]"),
    ('{{ fromYamlArray "" }}', "[]"),
    ('{{ range fromYamlArray "[1, 2]" }}<{{ . }}>{{ end }}', "<1><2>"),
]


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_argo_functions_match_argo_cd(source: str, expected: str) -> None:
    data = {"m": {"b": ["x", "true"], "a": 1.0, "c": {"d": None}}}
    assert render(source, data) == expected


ERRORS = [
    (
        '{{ fromYaml "- a" }}',
        "cannot unmarshal array into Go value of type map[string]interface {}",
    ),
    ('{{ fromYamlArray "a: 1" }}', "cannot unmarshal object into Go value of type []interface {}"),
    ('{{ fromYaml "a: [" }}', "error calling fromYaml: error converting YAML to JSON"),
    (
        "{{ slugify 1.5 `x` }}",
        "error calling slugify: interface conversion: interface {} is float64, not int",
    ),
    ("{{ normalize 3 }}", "expected string; found 3"),
]


@pytest.mark.parametrize(("source", "fragment"), ERRORS)
def test_argo_function_misuse_is_an_error(source: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(source, {})
    assert fragment in str(info.value)


def test_rendering_json_elements_for_elements_yaml() -> None:
    # the documented matrix + elementsYaml idiom
    data = {"key": {"components": [{"name": "a", "replicas": 2.0}]}}
    assert render("{{ .key.components | toJson }}", data) == '[{"name":"a","replicas":2}]'


TPL_CASES = [
    ("{{ tpl .t .v }}", "x-"),
    ('{{ tpl "plain" . }}', "plain"),
    ('{{ .v | tpl "{{ .name }}" }}', "x"),
    ('{{ define "d" }}D{{ . }}{{ end }}{{ tpl "{{ template `d` .name }}" .v }}', "Dx"),
]


@pytest.mark.parametrize(("source", "expected"), TPL_CASES)
def test_tpl_renders_text_as_a_template_of_the_same_set(source: str, expected: str) -> None:
    data = {"v": {"name": "x"}, "t": "{{ .name }}-{{ .nope }}"}
    assert render(source, data) == expected


def test_tpl_errors_say_whether_parsing_or_execution_failed() -> None:
    with pytest.raises(TemplateError, match=re.escape('cannot parse template "{{ foo }}"')):
        render('{{ tpl "{{ foo }}" . }}', {})
    with pytest.raises(
        TemplateError, match=re.escape('error during tpl function execution for "{{ .a.b }}"')
    ):
        render('{{ tpl "{{ .a.b }}" . }}', {"a": "s"})
    with pytest.raises(TemplateError, match='map has no entry for key "nope"'):
        render('{{ tpl "{{ .nope }}" . }}', {}, missing_key="error")


def test_load_yaml_reads_only_the_first_document_with_go_typing() -> None:
    from generators.gotemplate.sprig import load_yaml

    assert load_yaml("- a: 1\n  b: yes\n---\n: [bad") == [{"a": 1.0, "b": True}]
    assert load_yaml("") is None
    with pytest.raises(ValueError, match="error converting YAML to JSON"):
        load_yaml("a: [")
