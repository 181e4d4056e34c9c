"""sprig JSON, base64/base32, hashes, regular expressions (RE2 semantics) and paths."""

from __future__ import annotations

import pytest

from generators.gotemplate import TemplateError, render

DATA = {"m": {"b": 1.0, "a": "x<y&z"}, "big": 1e21, "tiny": 1e-7, "l": [1.0, None, True]}

CASES = [
    # JSON
    ("{{ toJson .m }}", '{"a":"x\\u003cy\\u0026z","b":1}'),
    ("{{ toRawJson .m }}", '{"a":"x<y&z","b":1}'),
    ("{{ toPrettyJson .m }}", '{\n  "a": "x\\u003cy\\u0026z",\n  "b": 1\n}'),
    ("{{ toJson .l }}", "[1,null,true]"),
    (
        "{{ toJson .big }} {{ toJson .tiny }} {{ toJson 1e20 }} {{ toJson 0.5 }}",
        "1e+21 1e-7 100000000000000000000 0.5",
    ),
    ('{{ toJson "a\\nb\\t\\"c\\"" }}', '"a\\nb\\t\\"c\\""'),
    ("{{ toJson (dict) }} {{ toJson (list) }} {{ toJson nil }}", "{} [] null"),
    ("{{ toPrettyJson (dict) }} {{ toPrettyJson (list) }}", "{} []"),
    ('{{ (fromJson "{\\"a\\":1}").a }}', "1"),
    ('{{ printf "%T" (fromJson "{\\"a\\":1}").a }}', "float64"),
    ('{{ fromJson "[1, \\"x\\", null]" }}', "[1 x <nil>]"),
    ('{{ fromJson "{bad" }}', "<no value>"),
    ("{{ mustToJson .m }}", '{"a":"x\\u003cy\\u0026z","b":1}'),
    # base64 / base32 / hashes
    ('{{ b64enc "hello" }} {{ b64dec "aGVsbG8=" }}', "aGVsbG8= hello"),
    ('{{ b32enc "hello" }} {{ b32dec "NBSWY3DP" }}', "NBSWY3DP hello"),
    ('{{ sha256sum "abc" }}', "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    ('{{ sha1sum "abc" }}', "a9993e364706816aba3e25717850c26c9cd0d89d"),
    ('{{ adler32sum "abc" }}', "38600999"),
    # regular expressions
    ('{{ regexMatch "^[a-z]+$" "abc" }} {{ regexMatch "^[a-z]+$" "ab1" }}', "true false"),
    ('{{ regexMatch "a$" "a\\n" }}', "false"),
    ('{{ regexMatch "(?m)a$" "a\\nb" }}', "true"),
    ('{{ regexMatch "a\\\\z" "a" }}', "true"),
    ('{{ regexMatch "[" "x" }}', "false"),
    ('{{ regexFind "[a-zA-Z][1-9]" "abcd1234" }}', "d1"),
    ('{{ regexFind "z" "abc" }}', ""),
    ('{{ regexFindAll "[2,4,6,8]" "123456789" -1 }}', "[2 4 6 8]"),
    ('{{ regexFindAll "[2,4,6,8]" "123456789" 3 }}', "[2 4 6]"),
    ('{{ regexReplaceAll "a(x*)b" "-ab-axxb-" "${1}W" }}', "-W-xxW-"),
    ('{{ regexReplaceAll "a(x*)b" "-ab-axxb-" "$1W" }}', "---"),
    (
        '{{ regexReplaceAll "(?P<first>\\\\w+) (?P<last>\\\\w+)" "Ada Lovelace" "$last, $first" }}',
        "Lovelace, Ada",
    ),
    ('{{ regexReplaceAll "a" "banana" "$$" }}', "b$n$n$"),
    ('{{ regexReplaceAllLiteral "a(x*)b" "-ab-axxb-" "${1}" }}', "-${1}-${1}-"),
    ('{{ regexReplaceAll "a*" "baaac" "-" }}', "-b-c-"),
    ('{{ regexReplaceAll "[[:digit:]]+" "a12b3" "#" }}', "a#b#"),
    ('{{ regexSplit "z+" "pizza" -1 }}', "[pi a]"),
    ('{{ regexSplit "z+" "pizza" 1 }}', "[pizza]"),
    ('{{ regexSplit "" "abc" -1 }}', "[a b c]"),
    ('{{ regexSplit "," "" -1 }}', "[]"),
    ('{{ regexQuoteMeta "1.5+x" }}', "1\\.5\\+x"),
    ('{{ regexReplaceAll "\\\\s+" "a \\vb" "_" }}', "a_\vb"),
    ('{{ regexReplaceAll "[\\\\s]" "a b" "_" }}', "a_b"),
    ('{{ regexMatch "^a{,2}$" "a{,2}" }}', "true"),
    ('{{ regexFind "\\\\pL+" "1éa2" }}', "éa"),
    ('{{ regexFind "(?U)a+" "aaa" }}', "a"),
    ('{{ regexFind "\\\\Qa.b\\\\E" "xaxb a.b" }}', "a.b"),
    ('{{ regexFind "[[:alpha:]]+" "12ab3" }}', "ab"),
    ('{{ regexFindAll "." "héé" -1 }}', "[h é é]"),
    ('{{ regexReplaceAll "é*" "aéb" "-" }}', "-a-b-"),
    # paths
    ('{{ base "a/b/c.yaml" }} {{ base "" }} {{ base "/" }} {{ base "a/b/" }}', "c.yaml . / b"),
    ('{{ dir "a/b/c" }} {{ dir "file" }} {{ dir "/x" }}', "a/b . /"),
    ('{{ clean "a//b/../c/." }} {{ clean "" }} {{ clean "/../a" }}', "a/c . /a"),
    ('{{ ext "x.tar.gz" }} {{ ext "a.b/c" }} {{ isAbs "/a" }}', ".gz  true"),
]


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_encoding_regex_and_path_functions_match_sprig(source: str, expected: str) -> None:
    assert render(source, DATA) == expected


ERRORS = [
    ('{{ mustFromJson "{bad" }}', "error calling mustFromJson:"),
    ('{{ mustRegexMatch "[" "x" }}', "error calling mustRegexMatch: error parsing regexp:"),
    ('{{ regexFind "(" "x" }}', "error calling regexFind: error parsing regexp:"),
    (
        '{{ mustRegexMatch "(?=a)" "a" }}',
        "invalid perl operator: (?=: `(?=a)` (gitops-hub uses RE2",
    ),
    ('{{ mustRegexMatch "(?<!a)b" "b" }}', "no backreferences or lookaround"),
    ('{{ mustRegexMatch "(a)\\\\1" "aa" }}', "invalid escape sequence: \\1: `(a)\\1` (gitops-hub"),
    ('{{ mustRegexMatch "(?P<x>a)(?P=x)" "aa" }}', "error parsing regexp: "),
    ('{{ mustRegexMatch "\\\\C" "a" }}', "invalid escape sequence: `\\C`"),
    ('{{ mustRegexMatch "a{1001}" "a" }}', "error parsing regexp: invalid repetition size"),
    ('{{ toJson (dict "a" (float64 "NaN")) | mustFromJson }}', "error calling mustFromJson:"),
]


@pytest.mark.parametrize(("source", "fragment"), ERRORS)
def test_bad_patterns_and_documents_are_errors(source: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(source, DATA)
    assert fragment in str(info.value)


def test_b64dec_of_garbage_returns_the_error_text_like_sprig() -> None:
    assert render('{{ b64dec "!!" }}', {}).startswith("illegal base64 data")


REDOS = "(a+)+$"
SLOW_INPUT = "a" * 5000 + "!"


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "source",
    [
        "{{ regexMatch .p .s }}",
        "{{ mustRegexMatch .p .s }}",
        "{{ regexFind .p .s }}",
        "{{ regexFindAll .p .s -1 }}",
        '{{ regexReplaceAll .p .s "x" }}',
        '{{ regexReplaceAllLiteral .p .s "x" }}',
        "{{ regexSplit .p .s -1 }}",
    ],
)
def test_catastrophic_backtracking_patterns_run_in_linear_time_as_in_go(source: str) -> None:
    # Python's re needs about 2**5000 steps here (42 "a"s already froze the process)
    out = render(source, {"p": REDOS, "s": SLOW_INPUT})
    assert out in ("false", "", "[]", SLOW_INPUT, f"[{SLOW_INPUT}]")
