"""missingkey=default|zero|error, matched against Go's behaviour for map[string]interface {}."""

from __future__ import annotations

from typing import Any

import pytest

from generators.gotemplate import Template, TemplateError

DATA: dict[str, Any] = {"a": {"b": "B"}, "nil": None, "zero": 0.0, "empty": ""}

# (source, default, zero, error); "ERR:<fragment>" marks an expected error
CASES = [
    ("{{ .a.b }}", "B", "B", "B"),
    ("{{ .x }}", "<no value>", "<no value>", 'ERR:map has no entry for key "x"'),
    ("{{ .a.x }}", "<no value>", "<no value>", 'ERR:map has no entry for key "x"'),
    (
        "{{ .x.y }}",
        "<no value>",
        "ERR:nil pointer evaluating interface {}.y",
        'ERR:map has no entry for key "x"',
    ),
    ("{{ .nil }}", "<no value>", "<no value>", "<no value>"),
    (
        "{{ .nil.y }}",
        "ERR:nil pointer evaluating interface {}.y",
        "ERR:nil pointer evaluating interface {}.y",
        "ERR:nil pointer evaluating interface {}.y",
    ),
    ('{{ .x | default "d" }}', "d", "d", 'ERR:map has no entry for key "x"'),
    ('{{ index . "x" }}', "<no value>", "<no value>", "<no value>"),
    ('{{ hasKey . "x" }}', "false", "false", "false"),
    ('{{ dig "a" "x" "d" . }}', "d", "d", "d"),
    ('{{ eq .x "v" }}', "false", "false", 'ERR:map has no entry for key "x"'),
    ("{{ if .x }}y{{ else }}n{{ end }}", "n", "n", 'ERR:map has no entry for key "x"'),
    ("{{ $v := .x }}{{ $v.y }}", "<no value>", "<no value>", 'ERR:map has no entry for key "x"'),
    (
        "{{ with .a }}{{ .x }}{{ end }}",
        "<no value>",
        "<no value>",
        'ERR:map has no entry for key "x"',
    ),
    ("{{ .zero }}{{ .empty }}", "0", "0", "0"),
]


@pytest.mark.parametrize("mode", ["default", "zero", "error"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_missing_keys_follow_go_for_each_mode(case: tuple[str, str, str, str], mode: str) -> None:
    source = case[0]
    expected = case[{"default": 1, "zero": 2, "error": 3}[mode]]
    t = Template.parse(source, name="t")
    if expected.startswith("ERR:"):
        with pytest.raises(TemplateError) as info:
            t.execute(DATA, missing_key=mode)  # type: ignore[arg-type]
        assert str(info.value).endswith(expected[4:])
    else:
        assert t.execute(DATA, missing_key=mode) == expected  # type: ignore[arg-type]


def test_nil_data_with_missingkey_error_names_the_key() -> None:
    with pytest.raises(TemplateError, match='nil data; no entry for key "x"'):
        Template.parse("{{ .x }}").execute(None, missing_key="error")


def test_error_mode_message_has_position_and_node() -> None:
    with pytest.raises(TemplateError) as info:
        Template.parse("a\n  {{ .app.name }}", name="spec.project").execute(
            {"app": {}}, missing_key="error"
        )
    assert str(info.value) == (
        'template: spec.project:2:5: executing "spec.project" at <.app.name>: '
        'map has no entry for key "name"'
    )
