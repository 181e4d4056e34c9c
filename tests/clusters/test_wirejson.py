"""clusters.wirejson: orjson's speed, the json module's answers."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusters import wirejson

_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_SCALARS = (
    st.none()
    | st.booleans()
    | _INT64
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=30,
)
_STDLIB = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@given(JSON_VALUES)
def test_dumps_says_what_the_json_module_says(value: object) -> None:
    out = wirejson.dumps(value)
    assert isinstance(out, bytes)
    assert wirejson.typed(json.loads(out)) == wirejson.typed(json.loads(_STDLIB(value)))


@given(JSON_VALUES)
def test_loads_reads_what_the_json_module_reads(value: object) -> None:
    for text in (_STDLIB(value), json.dumps(value), json.dumps(value, indent=2)):
        assert wirejson.typed(wirejson.loads(text.encode())) == wirejson.typed(json.loads(text))
        assert wirejson.typed(wirejson.loads(text)) == wirejson.typed(json.loads(text))


class _Constant(Exception):
    pass


def _constant(name: str) -> object:
    raise _Constant(name)


@given(st.binary(max_size=40) | st.text(max_size=40).map(str.encode))
def test_loads_accepts_and_refuses_what_the_json_module_does(raw: bytes) -> None:
    try:
        expected = json.loads(raw, parse_constant=_constant)
    except _Constant:
        return  # NaN and Infinity: refused on purpose, below
    except ValueError as exc:
        with pytest.raises(ValueError) as err:
            wirejson.loads(raw)
        assert str(err.value) == str(exc)  # the json module's own message
        return
    if any(isinstance(v, int) and not -(2**63) <= v < 2**63 for v in _scalars(expected)):
        return  # beyond 64 bits: a float, below
    assert wirejson.typed(wirejson.loads(raw)) == wirejson.typed(expected)


def _scalars(value: object) -> list[object]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _scalars(v)]
    if isinstance(value, list):
        return [s for v in value for s in _scalars(v)]
    return [value]


def test_what_orjson_refuses_falls_back_to_the_json_module() -> None:
    assert wirejson.loads(b'\xef\xbb\xbf{"a": 1}') == json.loads(b'\xef\xbb\xbf{"a": 1}')
    assert wirejson.loads(b'["\\ud800"]') == ["\ud800"]
    assert wirejson.loads(memoryview(b'{"a": [1]}')) == {"a": [1]}
    with pytest.raises(UnicodeDecodeError):
        wirejson.loads(b'"\xff"')


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}'])
def test_nan_and_infinity_are_refused_as_an_api_server_refuses_them(text: str) -> None:
    with pytest.raises(ValueError, match="is not valid JSON"):
        wirejson.loads(text)


def test_an_integer_beyond_64_bits_decodes_as_a_float_as_on_an_api_server() -> None:
    assert wirejson.loads(b"[18446744073709551616]") == [float(2**64)]


def test_what_orjson_cannot_encode_goes_through_the_json_module() -> None:
    assert wirejson.dumps({"big": 2**70}) == b'{"big":1180591620717411303424}'
    assert wirejson.dumps({1: "a"}) == b'{"1":"a"}'
    assert wirejson.dumps({"s": "é\u2028"}) == _STDLIB({"s": "é\u2028"}).encode()


def test_refuse_non_finite_finds_a_nan_anywhere() -> None:
    wirejson.refuse_non_finite({"a": [1, 2.5, {"b": "nan"}]})
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="unsupported value"):
            wirejson.refuse_non_finite({"spec": {"x": [1, {"y": bad}]}})


def test_typed_tells_apart_what_python_s_equality_does_not() -> None:
    assert {"a": True} == {"a": 1} and wirejson.typed({"a": True}) != wirejson.typed({"a": 1})
    assert wirejson.typed([1.0]) != wirejson.typed([1])
    assert wirejson.typed({"a": [1, "x"]}) == wirejson.typed({"a": [1, "x"]})
