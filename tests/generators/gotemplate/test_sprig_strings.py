"""sprig string functions; expectations from sprig's documentation and strings_test.go."""

from __future__ import annotations

import pytest

from generators.gotemplate import TemplateError, render

CASES = [
    ('{{ lower "HELLO" }}', "hello"),
    ('{{ upper "hello" }}', "HELLO"),
    ('{{ title "hello world" }}', "Hello World"),
    ('{{ title "hello-world foo_bar" }}', "Hello-World Foo_bar"),
    ('{{ untitle "Hello World" }}', "hello world"),
    ('{{ repeat 3 "hello" }}', "hellohellohello"),
    ('{{ substr 0 5 "hello world" }}', "hello"),
    ('{{ substr 6 -1 "hello world" }}', "world"),
    ('{{ substr -1 5 "hello world" }}', "hello"),
    ('{{ trunc 5 "hello world" }}', "hello"),
    ('{{ trunc -5 "hello world" }}', "world"),
    ('{{ trunc 50 "short" }}', "short"),
    ('{{ trunc -50 "short" }}', "short"),
    ('{{ trim "   hello    " }}', "hello"),
    ('{{ trimAll "$" "$5.00$" }}', "5.00"),
    ('{{ trimall "$" "$5.00$" }}', "5.00"),
    ('{{ trimPrefix "-" "-hello" }}', "hello"),
    ('{{ trimSuffix "-" "hello-" }}', "hello"),
    ('{{ nospace "hello w o r l d" }}', "helloworld"),
    ('{{ abbrev 5 "hello world" }}', "he..."),
    ('{{ abbrev 3 "hello world" }}', "hello world"),
    ('{{ abbrevboth 5 10 "1234 5678 9123" }}', "...5678..."),
    ('{{ initials "First Try" }}', "FT"),
    ('{{ "I Am Henry VIII" | replace " " "-" }}', "I-Am-Henry-VIII"),
    ('{{ plural "one anchovy" "many anchovies" 1 }}', "one anchovy"),
    ('{{ plural "one anchovy" "many anchovies" 2 }}', "many anchovies"),
    ('{{ contains "cat" "catch" }}', "true"),
    ('{{ hasPrefix "cat" "catch" }}', "true"),
    ('{{ hasSuffix "cat" "catch" }}', "false"),
    ('{{ quote "a" "b" }}', '"a" "b"'),
    ('{{ quote "say \\"hi\\"" }}', '"say \\"hi\\""'),
    ("{{ quote 1 nil .n }}", '"1" "3"'),
    ('{{ squote "a" }}', "'a'"),
    ('{{ cat "hello" "beautiful" "world" }}', "hello beautiful world"),
    ('{{ cat "a" nil "b" 1 }}', "a b 1"),
    ('{{ indent 4 "a\\nb" }}', "    a\n    b"),
    ('{{ nindent 2 "a\\nb" }}', "\n  a\n  b"),
    ('{{ split "$" "foo$bar$baz" }}', "map[_0:foo _1:bar _2:baz]"),
    ('{{ (split "$" "foo$bar$baz")._1 }}', "bar"),
    ('{{ splitList "$" "foo$bar$baz" }}', "[foo bar baz]"),
    ('{{ splitList "," "" }}', "[]"),
    ('{{ splitn "$" 2 "foo$bar$baz" }}', "map[_0:foo _1:bar$baz]"),
    ('{{ splitList "" "abc" }}', "[a b c]"),
    ('{{ join "-" (list "a" "b" 1) }}', "a-b-1"),
    ('{{ list "a" nil "b" | join "," }}', "a,b"),
    ('{{ join "," "single" }}', "single"),
    ('{{ sortAlpha (list "b" "a" "C") }}', "[C a b]"),
    ('{{ toStrings (list 1 "a" true) }}', "[1 a true]"),
    ("{{ toString 1.5 }}|{{ toString nil }}|{{ toString .n }}", "1.5|<nil>|3"),
    ('{{ "abc" | len }}', "3"),
    ('{{ "é" | len }}', "2"),
]


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_string_functions_match_sprig(source: str, expected: str) -> None:
    assert render(source, {"n": 3.0}) == expected


def test_string_functions_reject_non_strings_like_go() -> None:
    with pytest.raises(TemplateError, match="wrong type for value; expected string; got float64"):
        render("{{ .n | lower }}", {"n": 3.0})


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ('{{ substr -1 10 "abc" }}', "slice bounds out of range [:10] with length 3"),
        ('{{ substr 5 -1 "abc" }}', "slice bounds out of range [5:3]"),
        ('{{ substr 2 1 "abc" }}', "slice bounds out of range [2:1]"),
    ],
)
def test_substr_out_of_bounds_fails_like_go_slicing(source: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(source, {})
    assert str(info.value).endswith(fragment)


def test_repeat_with_a_negative_count_is_an_error() -> None:
    with pytest.raises(TemplateError, match="error calling repeat: strings: negative Repeat count"):
        render('{{ repeat -1 "x" }}', {})
