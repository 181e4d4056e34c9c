"""Go value semantics over JSON-like Python data.

Mapping: ``dict`` is ``map[string]interface {}``, ``list`` is ``[]interface {}``, ``str`` is
``string``, ``float`` is ``float64``, ``int`` is ``int`` (``Int64`` for sprig's int64 results),
``bool`` is ``bool``, ``None`` is a nil interface. ``MISSING`` is Go's invalid
``reflect.Value`` (a missing map key, a nil interface after a pipeline stage): it prints as
``<no value>``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

from generators.gotemplate.limits import check_tree


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<no value>"

    def __bool__(self) -> bool:
        return False


MISSING: Final[Any] = _Missing()


class Int64(int):
    """An int that Go would type as int64 (sprig arithmetic results); prints like int."""

    __slots__ = ()


class StrSlice(list[Any]):
    """A Go ``[]string`` (sprig's splitList, toStrings, keys, ...)."""

    __slots__ = ()


class StrMap(dict[str, Any]):
    """A Go ``map[string]string`` (sprig's split, splitn)."""

    __slots__ = ()


def type_name(v: Any) -> str:
    """Go's ``%T`` of a value."""
    t = type(v)
    if t is str:
        return "string"
    if t is bool:
        return "bool"
    if t is Int64:
        return "int64"
    if t is int:
        return "int"
    if t is float:
        return "float64"
    if t is StrSlice:
        return "[]string"
    if isinstance(v, list):
        return "[]interface {}"
    if t is StrMap:
        return "map[string]string"
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, bytes):
        return "[]uint8"
    return "<nil>"


def kind_name(v: Any) -> str:
    """Go's ``reflect.Kind`` name of a value (sprig kindOf)."""
    t = type(v)
    if t is str:
        return "string"
    if t is bool:
        return "bool"
    if t is Int64:
        return "int64"
    if t is int:
        return "int"
    if t is float:
        return "float64"
    if isinstance(v, (list, bytes)):
        return "slice"
    if isinstance(v, dict):
        return "map"
    return "invalid"


def is_true(v: Any) -> bool:
    """Go's template truth: zero values and empty containers are false."""
    if v is None or v is MISSING:
        return False
    t = type(v)
    if t is str or t is list or t is dict or isinstance(v, (list, dict, str, bytes)):
        return len(v) > 0
    return bool(v)


# --- floats -------------------------------------------------------------------------------


def _shortest_digits(f: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of abs(f) and the decimal point position."""
    r = repr(abs(f))
    exp = 0
    if "e" in r:
        r, e = r.split("e")
        exp = int(e)
    if "." in r:
        ip, fp = r.split(".")
    else:
        ip, fp = r, ""
    digits = ip + fp
    dp = len(ip) + exp
    stripped = digits.lstrip("0")
    dp -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    if not digits:
        return "0", 1
    return digits, dp


def _exp_suffix(exp: int, upper: bool = False) -> str:
    sign = "-" if exp < 0 else "+"
    e = abs(exp)
    return ("E" if upper else "e") + sign + (f"{e:02d}")


def _special(f: float) -> str | None:
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    return None


def format_float_g(f: float, upper: bool = False) -> str:
    """``strconv.FormatFloat(f, 'g', -1, 64)``: what ``%v`` prints for a float64."""
    sp = _special(f)
    if sp is not None:
        return sp
    digits, dp = _shortest_digits(f)
    neg = "-" if (f < 0 or (f == 0 and math.copysign(1.0, f) < 0)) else ""
    exp = dp - 1
    # strconv uses %e when exp < -4 or exp >= eprec, and eprec is 6 for the shortest form
    # (so 1e6 prints 1e+06 and 123456789 prints 1.23456789e+08, like Go).
    if exp < -4 or exp >= 6:
        return neg + _fmt_e_digits(digits, exp, upper)
    return neg + _fmt_f_digits(digits, dp)


def _fmt_e_digits(digits: str, exp: int, upper: bool = False) -> str:
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return mant + _exp_suffix(exp, upper)


def _fmt_f_digits(digits: str, dp: int) -> str:
    if dp <= 0:
        return "0." + "0" * (-dp) + digits
    if dp >= len(digits):
        return digits + "0" * (dp - len(digits))
    return digits[:dp] + "." + digits[dp:]


def format_float_json(f: float) -> str:
    """encoding/json's float64 formatting (ES6-like: exponent below 1e-6 or from 1e21)."""
    if math.isnan(f) or math.isinf(f):
        raise ValueError(f"json: unsupported value: {format_float_g(f)}")
    a = abs(f)
    digits, dp = _shortest_digits(f)
    neg = "-" if f < 0 else ""
    if a != 0 and (a < 1e-6 or a >= 1e21):
        exp = dp - 1
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        sign = "-" if exp < 0 else "+"
        return neg + mant + "e" + sign + str(abs(exp))
    if a == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    return neg + _fmt_f_digits(digits, dp)


# --- printing (fmt %v) --------------------------------------------------------------------


def format_v(v: Any, plus: bool = False, top: bool = True) -> str:
    """fmt's ``%v`` of a value (``Sprint`` of one operand)."""
    t = type(v)
    if t is str:
        return v  # type: ignore[no-any-return]
    if t is bool:
        return "true" if v else "false"
    if t is int or t is Int64:
        return str(int(v))
    if t is float:
        return format_float_g(v)
    if v is None:
        return "<nil>"
    if v is MISSING:
        return "<no value>" if top else "<nil>"
    if top and isinstance(v, list | dict):
        check_tree(v)
    if isinstance(v, list):
        return "[" + " ".join(format_v(x, plus, False) for x in v) + "]"
    if isinstance(v, dict):
        return (
            "map["
            + " ".join(f"{k}:{format_v(v[k], plus, False)}" for k in sorted(v, key=_go_key))
            + "]"
        )
    if isinstance(v, bytes):
        return "[" + " ".join(str(b) for b in v) + "]"
    return str(v)


def _go_key(k: str) -> bytes:
    # Go sorts string keys bytewise (UTF-8), which differs from code point order only for
    # surrogates, but be exact.
    return k.encode("utf-8", "surrogatepass")


def sorted_keys(d: dict[str, Any]) -> list[str]:
    return sorted(d, key=_go_key)


def to_output(v: Any) -> str:
    """What an action ``{{ pipeline }}`` writes for its final value."""
    if type(v) is str:
        return v
    if v is None or v is MISSING:
        return "<no value>"
    return format_v(v)


def sprint(args: list[Any]) -> str:
    """fmt.Sprint: spaces between operands when neither side is a string."""
    out: list[str] = []
    prev_string = False
    for i, a in enumerate(args):
        is_string = type(a) is str
        if i > 0 and not is_string and not prev_string:
            out.append(" ")
        out.append(format_v(a if a is not MISSING else None))
        prev_string = is_string
    return "".join(out)


def sprintln(args: list[Any]) -> str:
    return " ".join(format_v(a if a is not MISSING else None) for a in args) + "\n"


# --- quoting ------------------------------------------------------------------------------


def _is_print(ch: str) -> bool:
    return ch.isprintable() or ch == " "


def go_quote(s: str, ascii_only: bool = False) -> str:
    """strconv.Quote (and QuoteToASCII)."""
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return '"' + s + '"'
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif (o < 0x80 and _is_print(ch)) or (
            o >= 0x80 and not ascii_only and _is_print(ch) and not 0xD800 <= o <= 0xDFFF
        ):
            out.append(ch)
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\v":
            out.append("\\v")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\\ufffd")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def can_backquote(s: str) -> bool:
    return all(ch == "\t" or (ch != "`" and _is_print(ch) and ch != "\ufeff") for ch in s)


# --- equality -----------------------------------------------------------------------------


def deep_equal(a: Any, b: Any) -> bool:
    """reflect.DeepEqual over our value model: types must match (int 1 != float64 1)."""
    if a is MISSING:
        a = None
    if b is MISSING:
        b = None
    if type_name(a) != type_name(b):
        return False
    if a is b and isinstance(a, list | dict):
        # Go's DeepEqual: the same slice or map is equal without a walk (and lists built
        # by doubling in a loop share their halves: walking them is exponential)
        return True
    if isinstance(a, list):
        return len(a) == len(b) and all(deep_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(deep_equal(a[k], b[k]) for k in a)
    return bool(a == b)


# --- JSON (encoding/json) -----------------------------------------------------------------


_JSON_PLAIN = re.compile(r'[^"\\\x00-\x1f<>&\u2028\u2029\ud800-\udfff]*')
_JSON_PLAIN_RAW = re.compile(r'[^"\\\x00-\x1f\u2028\u2029\ud800-\udfff]*')


def _json_str(s: str, escape_html: bool) -> str:
    if (_JSON_PLAIN if escape_html else _JSON_PLAIN_RAW).fullmatch(s):
        return '"' + s + '"'
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif o < 0x20:
            if ch == "\n":
                out.append("\\n")
            elif ch == "\r":
                out.append("\\r")
            elif ch == "\t":
                out.append("\\t")
            elif ch == "\b":
                out.append("\\b")
            elif ch == "\f":
                out.append("\\f")
            else:
                out.append(f"\\u{o:04x}")
        elif (escape_html and ch in "<>&") or o in (0x2028, 0x2029):
            out.append(f"\\u{o:04x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def to_json(v: Any, *, escape_html: bool = True, indent: str = "", _level: int = 0) -> str:
    """encoding/json Marshal (sorted keys, Go float format); MarshalIndent when indent."""
    if v is None or v is MISSING:
        return "null"
    t = type(v)
    if t is str:
        return _json_str(v, escape_html)
    if t is bool:
        return "true" if v else "false"
    if t is int or t is Int64:
        return str(int(v))
    if t is float:
        return format_float_json(v)
    if _level == 0 and isinstance(v, list | dict):
        check_tree(v)
    if isinstance(v, bytes):
        import base64

        return '"' + base64.b64encode(v).decode() + '"'
    if isinstance(v, list):
        if not v:
            return "[]"
        if indent:
            pad = "\n" + indent * (_level + 1)
            inner = ("," + pad).join(
                to_json(x, escape_html=escape_html, indent=indent, _level=_level + 1) for x in v
            )
            return "[" + pad + inner + "\n" + indent * _level + "]"
        return "[" + ",".join(to_json(x, escape_html=escape_html) for x in v) + "]"
    if isinstance(v, dict):
        if not v:
            return "{}"
        keys = sorted_keys(v)
        if indent:
            pad = "\n" + indent * (_level + 1)
            inner = ("," + pad).join(
                _json_str(k, escape_html)
                + ": "
                + to_json(v[k], escape_html=escape_html, indent=indent, _level=_level + 1)
                for k in keys
            )
            return "{" + pad + inner + "\n" + indent * _level + "}"
        return (
            "{"
            + ",".join(
                _json_str(k, escape_html) + ":" + to_json(v[k], escape_html=escape_html)
                for k in keys
            )
            + "}"
        )
    raise ValueError(f"json: unsupported type: {type_name(v)}")
