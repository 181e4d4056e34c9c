"""fasttemplate substitution as Argo CD's default mode does it."""

from __future__ import annotations

import pytest

from generators.fasttemplate import FastTemplateError, render_fast

PARAMS = {"name": "prod", "path.basename": "app", "values.x": "1", "n": 3.0, "empty": ""}


@pytest.mark.parametrize(
    ("template", "output"),
    [
        ("{{name}}-{{path.basename}}", "prod-app"),
        ("{{ name }}", "prod"),
        ("{{  values.x\t}}", "1"),
        ("{{ unknown }}", "{{ unknown }}"),
        ("{{n}}", "{{n}}"),
        ("{{}}", "{{}}"),
        ("{{ }}", "{{ }}"),
        ("{{empty}}x", "x"),
        ("no tags", "no tags"),
        ("a {{ b", "a {{ b"),
        ("{{name}}{{name}}", "prodprod"),
        ("{{ {{name}} }}", "{{ {{name}} }}"),
        ("line1 {{\n}} {{name}}", "line1 {{\n}} prod"),
    ],
)
def test_tags_are_replaced_by_exact_flat_keys_and_unknown_ones_kept(
    template: str, output: str
) -> None:
    assert render_fast(template, PARAMS) == output


def test_substituted_text_is_not_rendered_again() -> None:
    assert render_fast("{{a}}", {"a": "{{b}}", "b": "no"}) == "{{b}}"


def test_an_unclosed_tag_after_a_closed_one_is_an_error() -> None:
    with pytest.raises(FastTemplateError, match="end tag"):
        render_fast("{{name}} {{oops", PARAMS)


@pytest.mark.timeout(20)
def test_long_hostile_strings_are_parsed_in_linear_time() -> None:
    # a regex took about 3 minutes to decide the first one has no tag
    assert render_fast("{{" * 250_000, {}) == "{{" * 250_000
    assert render_fast("{{a}}" * 100_000, {"a": "x"}) == "x" * 100_000
