"""Execution limits: a template from Git cannot hang the hub or fill its memory."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generators.expand import generate
from generators.gotemplate import TemplateError, render
from generators.gotemplate.limits import MAX_ITEMS, MAX_OUTPUT, MAX_STEPS
from tests.generators.conftest import appset

FIELD = "spec.template.spec.source.path"
STEPS = f"more than {MAX_STEPS:,} range iterations and template calls"
OUTPUT = f"output longer than {MAX_OUTPUT:,} characters"


def error(source: str) -> str:
    with pytest.raises(TemplateError) as info:
        render(source, {"xs": list(range(10))}, name=FIELD)
    return str(info.value)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        # a billion iterations in three lines
        (
            "{{range until 1000}}{{range until 1000}}{{range until 1000}}x{{end}}{{end}}{{end}}",
            STEPS,
        ),
        # 2**60 template calls
        (
            '{{define "t"}}{{if lt . 60}}{{template "t" (add . 1)}}{{template "t" (add . 1)}}'
            '{{end}}{{end}}{{template "t" 0}}',
            STEPS,
        ),
        # tpl bodies count towards their caller
        (
            '{{range until 50}}{{tpl "{{range until 5000}}x{{end}}" .}}{{end}}',
            STEPS,
        ),
        ('{{range until 2000}}{{repeat 1000 "x"}}{{end}}', OUTPUT),
        ("{{range until 5000}}" + "y" * 1000 + "{{end}}", OUTPUT),
        ('{{ $s := "ab" }}{{range until 64}}{{ $s = cat $s $s }}{{end}}', "error calling cat"),
        ("{{ $l := list 1 }}{{range until 64}}{{ $l = concat $l $l }}{{end}}", "elements"),
        ('{{ repeat 1000000000000 "x" }}', "error calling repeat: result would be"),
        ("{{ until 1000000000000 }}", "error calling until: result would have"),
        ("{{ untilStep 0 1000000000000 1 }}", "error calling untilStep: result would have"),
        ("{{ seq 1000000000000 }}", "error calling seq: result would have"),
        ('{{ indent 1000000000000 "a" }}', "error calling indent: result would be"),
        (
            '{{ nindent 100000 "a\\nb\\nc\\nd\\ne\\nf\\ng\\nh\\ni\\nj\\nk\\nl\\nm\\nn\\no\\np" }}',
            "nindent",
        ),
    ],
    ids=[
        "nested-range",
        "recursive-template",
        "tpl",
        "range-output",
        "range-text",
        "doubling-string",
        "doubling-list",
        "repeat",
        "until",
        "untilStep",
        "seq",
        "indent",
        "nindent",
    ],
)
def test_bombs_stop_with_a_clear_error_naming_the_field(source: str, fragment: str) -> None:
    message = error(source)
    assert message.startswith(f"template: {FIELD}:") and fragment in message


def test_work_up_to_the_limits_is_fine() -> None:
    assert render(f"{{{{range until {MAX_STEPS}}}}}{{{{end}}}}x", {}) == "x"
    assert len(render(f'{{{{repeat {MAX_OUTPUT} "x"}}}}', {})) == MAX_OUTPUT
    assert render(f"{{{{len (until {MAX_ITEMS})}}}}", {}) == str(MAX_ITEMS)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('{{ printf "%99999999d" 1 }}', "%!(NOVERB)%!(EXTRA int=1)"),
        ('{{ printf "%*d" 2000000 1 }}', "%!(BADWIDTH)1"),
        ('{{ printf "%.*f" 2000000 1.5 }}', "%!(BADPREC)1.500000"),
        ('{{ printf "%5d|%-3s|%.1f" 1 "a" 2.25 }}', "    1|a  |2.2"),
    ],
)
def test_printf_refuses_huge_widths_as_go_does(source: str, expected: str) -> None:
    assert render(source, {}) == expected


def test_a_bomb_in_an_appset_is_a_render_error_of_that_appset_naming_the_field() -> None:
    template = {
        "metadata": {"name": "app"},
        "spec": {
            "project": "default",
            "source": {
                "repoURL": "r",
                "path": "{{range until 1000}}{{range until 1000}}x{{end}}{{end}}",
            },
        },
    }
    result = generate(appset([{"list": {"elements": [{"a": "b"}]}}], template=template, go=True))
    assert result.failed
    message = result.conditions[0].message
    assert "spec.source.path" in message and STEPS in message


DOUBLED = "{{ $l := list 1 }}{{range until 40}}{{ $l = list $l $l }}{{end}}"
TREE = "once nested lists and maps are expanded"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "use",
    [
        "{{ $l }}",
        "{{ toJson $l }}",
        "{{ toPrettyJson $l }}",
        "{{ toYaml $l }}",
        '{{ printf "%v" $l }}',
        '{{ printf "%#v" $l }}',
        "{{ toString $l }}",
        "{{ print $l }}",
        '{{ tpl "{{ . }}" $l }}',
    ],
)
def test_printing_a_list_doubled_in_a_loop_is_refused_not_expanded(use: str) -> None:
    # 40 list calls build 2**40 leaves sharing their halves
    message = error(DOUBLED + use)
    assert message.startswith(f"template: {FIELD}:") and TREE in message


@pytest.mark.timeout(60)
def test_comparing_shared_halves_does_not_walk_them_as_go_does() -> None:
    assert render(DOUBLED + "{{ uniq $l | len }} {{ has $l $l }}", {}) == "1 false"


_BOMB_PIECES = st.sampled_from(
    [
        "{{range until 1000}}",
        "{{range until 100}}",
        "{{end}}",
        '{{ $s := "ab" }}',
        "{{ $s = cat $s $s }}",
        "{{ $l := list 1 }}",
        "{{ $l = list $l $l }}",
        "{{ toJson $l }}",
        "{{ $l }}",
        '{{ repeat 100000 "xy" }}',
        '{{ regexMatch "(a+)+$" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!" }}',
        '{{ tpl "{{range until 1000}}x{{end}}" . }}',
        "x",
    ]
)


@pytest.mark.timeout(120)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(_BOMB_PIECES, max_size=12))
def test_any_mix_of_bombs_ends_with_output_or_a_template_error(pieces: list[str]) -> None:
    source = "".join(pieces)
    try:
        out = render(source, {}, name=FIELD)
    except TemplateError:
        return
    assert len(out) <= MAX_OUTPUT
