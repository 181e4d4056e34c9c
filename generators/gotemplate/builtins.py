"""Go text/template's predefined functions (``and``/``or`` are compiled, they short-circuit)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_plus

from generators.gotemplate.errors import FuncError
from generators.gotemplate.funcs import ANY, STRING, VALUE, Func, func
from generators.gotemplate.gofmt import sprintf
from generators.gotemplate.values import (
    MISSING,
    Int64,
    StrMap,
    format_v,
    is_true,
    sprint,
    sprintln,
    type_name,
)

_INVALID = "invalid"


_KINDS = {bool: "bool", int: "int", Int64: "int", float: "float", str: "string"}


def _basic_kind(v: Any) -> str:
    k = _KINDS.get(type(v))
    if k is not None:
        return k
    if v is None or v is MISSING:
        return _INVALID
    return "other"


_BAD_CMP = "incompatible types for comparison"
_BAD_TYPE = "invalid type for comparison"


def _eq2(a: Any, ka: str, b: Any) -> bool:
    """One comparison of Go's eq: basic kinds compare by value; anything else (nil,
    lists, maps) shares Go's "invalid kind" and only compares against nil."""
    kb = _basic_kind(b)
    if ka == kb and ka is not _INVALID and ka != "other":
        return bool(a == b)
    if ka != kb:
        if ka in (_INVALID, "other") and kb in (_INVALID, "other"):
            pass  # both outside the basic kinds: Go's default branch below
        elif ka == _INVALID or kb == _INVALID:
            return False
        else:
            raise FuncError(_BAD_CMP)
    elif ka not in (_INVALID, "other"):
        return bool(a == b)
    a_nil = ka == _INVALID
    b_nil = kb == _INVALID
    if a_nil or b_nil:
        return a_nil == b_nil
    if type(a) is not type(b) and not (isinstance(a, list) and isinstance(b, list)):
        raise FuncError(
            f"non-comparable types {format_v(a)}: {type_name(a)}, {type_name(b)}: reflect.Value"
        )
    raise FuncError(f"non-comparable type {format_v(b)}: {type_name(b)}")


@func("eq", VALUE, variadic=VALUE)
def _eq(a: Any, *rest: Any) -> bool:
    if not rest:
        raise FuncError("missing argument for comparison")
    ka = _basic_kind(a)
    if len(rest) == 1:
        return _eq2(a, ka, rest[0])
    return any(_eq2(a, ka, b) for b in rest)


@func("ne", VALUE, VALUE)
def _ne(a: Any, b: Any) -> bool:
    return not _eq2(a, _basic_kind(a), b)


def _lt(a: Any, b: Any) -> bool:
    ka, kb = _basic_kind(a), _basic_kind(b)
    if ka in (_INVALID, "other") or kb in (_INVALID, "other"):
        raise FuncError(_BAD_TYPE)
    if ka != kb:
        raise FuncError(_BAD_CMP)
    if ka == "bool":
        raise FuncError(_BAD_TYPE)
    if ka == "string":
        return bool(a.encode("utf-8", "surrogatepass") < b.encode("utf-8", "surrogatepass"))
    return bool(a < b)


@func("lt", VALUE, VALUE)
def _lt_f(a: Any, b: Any) -> bool:
    return _lt(a, b)


@func("le", VALUE, VALUE)
def _le_f(a: Any, b: Any) -> bool:
    return _lt(a, b) or _eq2(a, _basic_kind(a), b)


@func("gt", VALUE, VALUE)
def _gt_f(a: Any, b: Any) -> bool:
    return not (_lt(a, b) or _eq2(a, _basic_kind(a), b))


@func("ge", VALUE, VALUE)
def _ge_f(a: Any, b: Any) -> bool:
    return not _lt(a, b)


@func("not", VALUE)
def _not(a: Any) -> bool:
    return not is_true(a)


@func("len", VALUE)
def _len(v: Any) -> int:
    if v is None:
        raise FuncError("len of nil pointer")
    if v is MISSING:
        # Go panics inside len here and reports the recovered panic
        raise FuncError("reflect: call of reflect.Value.Type on zero Value")
    if type(v) is str:
        return len(v.encode("utf-8", "surrogatepass"))
    if isinstance(v, (list, dict, bytes)):
        return len(v)
    raise FuncError(f"len of type {type_name(v)}")


def _index_arg(i: Any, cap: int) -> int:
    if i is None or i is MISSING:
        raise FuncError("cannot index slice/array with nil")
    if type(i) not in (int, Int64):
        raise FuncError(f"cannot index slice/array with type {type_name(i)}")
    x = int(i)
    if x < 0 or x > cap:
        raise FuncError(f"index out of range: {x}")
    return x


@func("index", VALUE, variadic=VALUE)
def _index(item: Any, *idx: Any) -> Any:
    if item is None or item is MISSING:
        raise FuncError("index of untyped nil")
    for i in idx:
        if item is None:
            raise FuncError("index of nil pointer")
        if isinstance(item, (list, str, bytes)):
            seq: Any = item.encode("utf-8", "surrogatepass") if type(item) is str else item
            x = _index_arg(i, len(seq))
            if x == len(seq):
                raise FuncError(f"index out of range: {x}")
            item = seq[x]
        elif isinstance(item, dict):
            if i is None or i is MISSING:
                raise FuncError("value is nil; should be of type string")
            if type(i) is not str:
                raise FuncError(f"value has type {type_name(i)}; should be string")
            # a missing key gives the zero value of the element type
            item = item.get(i, "" if type(item) is StrMap else None)
        else:
            raise FuncError(f"can't index item of type {type_name(item)}")
    return item


@func("print", variadic=ANY)
def _print(*args: Any) -> str:
    return sprint(list(args))


@func("println", variadic=ANY)
def _println(*args: Any) -> str:
    return sprintln(list(args))


@func("printf", STRING, variadic=ANY)
def _printf(fmt: str, *args: Any) -> str:
    return sprintf(fmt, list(args))


def _eval_args(args: tuple[Any, ...]) -> str:
    if len(args) == 1 and type(args[0]) is str:
        return args[0]
    # Go passes each operand through printableValue first: nil becomes "<no value>"
    return sprint(["<no value>" if a is None or a is MISSING else a for a in args])


@func("html", variadic=ANY)
def _html(*args: Any) -> str:
    s = _eval_args(args)
    out = []
    for ch in s:
        if ch == "<":
            out.append("&lt;")
        elif ch == ">":
            out.append("&gt;")
        elif ch == "&":
            out.append("&amp;")
        elif ch == '"':
            out.append("&#34;")
        elif ch == "'":
            out.append("&#39;")
        elif ch == "\0":
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)


_JS = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "<": "\\u003C",
    ">": "\\u003E",
    "&": "\\u0026",
    "=": "\\u003D",
}


@func("js", variadic=ANY)
def _js(*args: Any) -> str:
    s = _eval_args(args)
    out = []
    for ch in s:
        o = ord(ch)
        if ch in _JS:
            out.append(_JS[ch])
        elif o < 0x20:
            out.append(f"\\u{o:04X}")
        elif o < 0x80 or ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{o:04X}")
    return "".join(out)


@func("urlquery", variadic=ANY)
def _urlquery(*args: Any) -> str:
    return quote_plus(_eval_args(args), safe="")


@func("call", VALUE, variadic=VALUE)
def _call(fn: Any, *args: Any) -> Any:
    if fn is None or fn is MISSING:
        raise FuncError("call of nil")
    raise FuncError(f"non-function of type {type_name(fn)}")


BUILTINS: dict[str, Func] = {
    f.name: f
    for f in (
        _eq,
        _ne,
        _lt_f,
        _le_f,
        _gt_f,
        _ge_f,
        _not,
        _len,
        _index,
        _print,
        _println,
        _printf,
        _html,
        _js,
        _urlquery,
        _call,
    )
}

# and/or need the unevaluated arguments to short-circuit; the compiler implements them.
# tpl needs the executing template set; the compiler implements it too.
SPECIAL = frozenset({"and", "or", "tpl"})
_ = STRING
