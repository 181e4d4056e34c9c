"""Function registry shared by the builtins and sprig: Go-like signatures and argument checks."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from generators.gotemplate.errors import FuncError
from generators.gotemplate.values import MISSING, Int64, StrMap, type_name

# Parameter kinds, named after the Go parameter types they stand for.
ANY = "interface {}"  # nil allowed; a missing value arrives as None
VALUE = "reflect.Value"  # raw: a missing value arrives as MISSING (eq, len, index, ...)
STRING = "string"
INT = "int"
FLOAT = "float64"
BOOL = "bool"
MAP = "map[string]interface {}"


class ArgError(Exception):
    """An argument does not fit the parameter type (Go's validateType), not a call error."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Func:
    name: str
    fn: Callable[..., Any]
    params: tuple[str, ...]
    variadic: str | None = None


def convert(kind: str, v: Any) -> Any:
    """Go's validateType for a runtime value passed to a parameter of the given kind."""
    if kind is ANY:
        return None if v is MISSING else v
    if kind is VALUE:
        return v
    t = type(v)
    if kind is STRING:
        if t is str:
            return v
    elif kind is INT:
        if t is int:
            return v
    elif kind is BOOL:
        if t is bool:
            return v
    elif kind is FLOAT:
        if t is float:
            return v
    elif kind is MAP:
        if isinstance(v, dict) and t is not StrMap:
            return v
        if v is MISSING:
            return None  # Go passes a nil map for an invalid value
    if v is MISSING:
        raise ArgError(f"invalid value; expected {kind}")
    if v is None:
        # a nil read from a map or list is a nil interface {}, which Go cannot assign
        raise ArgError(f"wrong type for value; expected {kind}; got interface {{}}")
    raise ArgError(f"wrong type for value; expected {kind}; got {type_name(v)}")


def func(
    name: str, *params: str, variadic: str | None = None
) -> Callable[[Callable[..., Any]], Func]:
    def deco(fn: Callable[..., Any]) -> Func:
        return Func(name=name, fn=fn, params=params, variadic=variadic)

    return deco


# --- shared conversions (spf13/cast and sprig's strval) -----------------------------------


def strval(v: Any) -> str:
    from generators.gotemplate.values import format_v

    if type(v) is str:
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return format_v(None if v is MISSING else v)


def _parse_go_int(s: str) -> int:
    """strconv.ParseInt(s, 0, 64): base prefixes, underscores only with a prefix."""
    body = s
    neg = False
    if body[:1] in "+-":
        neg = body[0] == "-"
        body = body[1:]
    if not body:
        raise ValueError(s)
    low = body.lower()
    if low.startswith(("0x", "0o", "0b")):
        v = int(body, 0)
    elif len(body) > 1 and body[0] == "0":
        if "_" in body:
            v = int(body, 0) if body[1] == "_" else int(body.replace("_", ""), 8)
        else:
            v = int(body, 8)
    else:
        if "_" in body or not body.isdigit() or not body.isascii():
            raise ValueError(s)
        v = int(body)
    v = -v if neg else v
    if not -(2**63) <= v < 2**63:
        raise ValueError(s)
    return v


def _trim_zero_decimal(s: str) -> str:
    # cast trims a ".000" suffix so "10.0" converts to 10
    if "." in s:
        ip, fp = s.split(".", 1)
        if fp and set(fp) == {"0"} and ip:
            return ip
    return s


def to_int64(v: Any) -> int:
    """cast.ToInt64 (errors become 0, as sprig ignores them)."""
    t = type(v)
    if t is int or t is Int64:
        return int(v)
    if t is bool:
        return 1 if v else 0
    if t is float:
        if math.isnan(v) or math.isinf(v):
            return -(2**63)
        return int(v)
    if t is str:
        try:
            return _parse_go_int(_trim_zero_decimal(v))
        except ValueError:
            return 0
    return 0


def to_float64(v: Any) -> float:
    """cast.ToFloat64 (errors become 0)."""
    t = type(v)
    if t is float:
        return v  # type: ignore[no-any-return]
    if t is int or t is Int64:
        return float(v)
    if t is bool:
        return 1.0 if v else 0.0
    if t is str:
        return _parse_go_float(v)
    return 0.0


_FLOAT_SYNTAX = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_HEX_FLOAT_SYNTAX = re.compile(
    r"[+-]?0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?\d+"
)


def _parse_go_float(s: str) -> float:
    """strconv.ParseFloat(s, 64), with errors as 0 (what cast hands sprig)."""
    low = s.lower().lstrip("+-")
    if low in ("inf", "infinity", "nan"):
        return float(s)
    try:
        if _FLOAT_SYNTAX.fullmatch(s):
            f = float(s)
        elif _HEX_FLOAT_SYNTAX.fullmatch(s):
            f = float.fromhex(s)
        else:
            return 0.0
    except (ValueError, OverflowError):
        return 0.0
    return 0.0 if math.isinf(f) else f  # out of range is an error in Go


def fail(msg: str) -> FuncError:
    return FuncError(msg)
