"""Parse-time errors: Go's wording, with the template name, line and column (0-based, as Go)."""

from __future__ import annotations

import pytest

from generators.errors import GeneratorError
from generators.gotemplate import Template, TemplateError

CASES = [
    # (source, expected message after "template: t:")
    ("{{ foo }}", '1:3: function "foo" not defined'),
    ("a\nb {{ .x | nosuch }}", '2:10: function "nosuch" not defined'),
    ("{{ .a", "1:5: unclosed action"),
    ("{{ $x }}", '1:3: undefined variable "$x"'),
    ("{{ if }}x{{ end }}", "1:6: missing value for if"),
    ("{{ }}", "1:3: missing value for command"),
    ("{{ end }}", "1:3: unexpected {{end}}"),
    ("{{ else }}", "1:3: unexpected {{else}}"),
    ("{{ if .a }}x", "1:12: unexpected EOF"),
    ("{{ break }}", "1:3: {{break}} outside {{range}}"),
    ("{{ continue }}", "1:3: {{continue}} outside {{range}}"),
    ("{{ range .a }}{{ else }}{{ break }}{{ end }}", "1:27: {{break}} outside {{range}}"),
    ("{{ 3 | 4 }}", "1:7: non executable command in pipeline stage 2"),
    ('{{ .a | "x" }}', "1:8: non executable command in pipeline stage 2"),
    ('{{ "abc }}', "1:3: unterminated quoted string"),
    ("{{ `abc }}", "1:3: unterminated raw quoted string"),
    ("{{ 'ab }}", "1:3: unterminated character constant"),
    ("{{ 'ab' }}", "1:3: malformed character constant: 'ab'"),
    ("{{ 1.2.3 }}", None),
    ("{{ 3i }}", "1:3: complex number constant 3i is not supported"),
    ("{{ (1 }}", "1:6: unclosed left paren"),
    ("{{ 1) }}", "1:4: unexpected right paren"),
    ("{{ # }}", "1:3: unrecognized character in action: U+0023 '#'"),
    ("{{ : }}", "1:3: expected :="),
    ("{{/* x */ }}", "1:0: comment ends before closing delimiter"),
    ("{{/* x", "1:0: unclosed comment"),
    ("{{ template .x }}", "1:12: unexpected <.x> in template clause"),
    ('{{ block "b" }}x{{ end }}', "1:13: missing value for block clause"),
    ("{{ $a, $b := .x }}", "1:3: too many declarations in command"),
    ("{{ if $a, $b := .x }}{{ end }}", "1:6: too many declarations in if"),
    ("{{ range $a, 3 }}{{ end }}", "1:13: range can only initialize variables"),
    (
        '{{ define "a" }}1{{ end }}{{ define "a" }}2{{ end }}',
        '1:36: template: multiple definition of template "a"',
    ),
    ('{{ if 1 }}{{ define "a" }}{{ end }}{{ end }}', "1:13: unexpected <define> in command"),
    ('{{ "a".b }}', "1:3: unexpected . after term"),
    ("{{ .a.b c }}", None),
    (
        '{{ env "HOME" }}',
        '1:3: function "env" not defined: not available in ApplicationSet templates (removed by Argo CD)',
    ),
    (
        '{{ expandenv "$HOME" }}',
        '1:3: function "expandenv" not defined: not available in ApplicationSet templates (removed by Argo CD)',
    ),
    (
        '{{ getHostByName "x" }}',
        '1:3: function "getHostByName" not defined: not available in ApplicationSet templates (removed by Argo CD)',
    ),
    (
        "{{ now }}",
        '1:3: function "now" not defined: non-deterministic, so not available in gitops-hub templates',
    ),
    (
        "{{ uuidv4 }}",
        '1:3: function "uuidv4" not defined: non-deterministic, so not available in gitops-hub templates',
    ),
    (
        '{{ semverCompare "1" "1" }}',
        '1:3: function "semverCompare" not defined: not supported by gitops-hub',
    ),
]


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_parse_errors_name_the_position_and_the_problem(source: str, expected: str | None) -> None:
    with pytest.raises(TemplateError) as info:
        Template.parse(source, name="t")
    if expected is not None:
        assert str(info.value) == f"template: t:{expected}"
    assert str(info.value).startswith("template: t:")


def test_a_template_error_is_a_generator_error_with_its_position() -> None:
    with pytest.raises(GeneratorError) as info:
        Template.parse("x\n  {{ nope }}", name="spec.template.metadata.name")
    err = info.value
    assert isinstance(err, TemplateError)
    assert (err.name, err.line, err.col) == ("spec.template.metadata.name", 2, 5)


VALID = [
    "plain text, no actions",
    "{{/* a comment */}}",
    "{{- /* trimmed comment */ -}}",
    "{{ .a }}{{ .b.c }}{{ $.d }}{{ . }}",
    "{{ $x := 1 }}{{ $x = 2 }}{{ $x }}",
    "{{ range $i, $v := .l }}{{ $i }}{{ $v }}{{ end }}",
    "{{ range $v := .l }}{{ $v }}{{ break }}{{ continue }}{{ end }}",
    "{{ if .a }}{{ else if .b }}{{ else }}{{ end }}",
    "{{ with .a }}{{ else with .b }}{{ else }}{{ end }}",
    '{{ define "x" }}{{ end }}{{ template "x" }}{{ template "x" . }}',
    '{{ block "b" . }}{{ . }}{{ end }}',
    "{{ (1) }}{{ (.a).b }}{{ (print 1).x }}",
    "{{ 0x1F }}{{ 0o17 }}{{ 0b101 }}{{ 1_000 }}{{ 1e3 }}{{ -1.5 }}{{ +2 }}{{ .5 }}{{ 'a' }}{{ '\\n' }}",
    '{{ "\\t\\u00e9\\x41" }}{{ `raw\\n` }}',
    "{{ and 1 2 }}{{ or 1 2 }}{{ not 1 }}",
    "{{\n.a\n|\nprint\n}}",
]


@pytest.mark.parametrize("source", VALID)
def test_valid_go_syntax_parses(source: str) -> None:
    Template.parse(source)
