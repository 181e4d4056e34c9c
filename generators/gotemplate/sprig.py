"""The sprig (v3) functions ApplicationSets use, plus Argo CD's own additions.

``SPRIG_FUNCTIONS`` lists what is implemented; ``UNAVAILABLE`` lists sprig functions that are
deliberately absent, each with the reason that the parse error shows.

Deviations from sprig, chosen for determinism: ``keys`` returns its keys sorted and
``values`` returns values in sorted key order (sprig: Go's random map order). ``addf``,
``subf``, ``mulf``, ``divf`` use Python's decimal module where sprig uses shopspring/decimal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import zlib
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, TypeVar

import re2
import yaml

from generators import yamlio
from generators.gotemplate.errors import FuncError
from generators.gotemplate.funcs import (
    ANY,
    BOOL,
    FLOAT,
    INT,
    MAP,
    STRING,
    Func,
    func,
    strval,
    to_float64,
    to_int64,
)
from generators.gotemplate.limits import check_items, check_length, check_tree
from generators.gotemplate.values import (
    MISSING,
    Int64,
    StrMap,
    StrSlice,
    deep_equal,
    format_float_g,
    go_quote,
    is_true,
    kind_name,
    sorted_keys,
    to_json,
    type_name,
)

_FUNCS: list[Func] = []


_F = TypeVar("_F", bound=Callable[..., Any])


def reg(name: str, *params: str, variadic: str | None = None) -> Callable[[_F], _F]:
    def deco(fn: _F) -> _F:
        _FUNCS.append(func(name, *params, variadic=variadic)(fn))
        return fn

    return deco


def alias(name: str, of: str) -> None:
    f = next(x for x in _FUNCS if x.name == of)
    _FUNCS.append(Func(name=name, fn=f.fn, params=f.params, variadic=f.variadic))


def _b(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")


def _s(b: bytes) -> str:
    return b.decode("utf-8", "replace")


# --- defaults and flow --------------------------------------------------------------------


def empty(v: Any) -> bool:
    """sprig's empty: nil, zero numbers, false, and empty strings/lists/maps."""
    if v is None or v is MISSING:
        return True
    return not is_true(v)


@reg("default", ANY, variadic=ANY)
def _default(d: Any, *given: Any) -> Any:
    if not given or empty(given[0]):
        return d
    return given[0]


@reg("empty", ANY)
def _empty(v: Any) -> bool:
    return empty(v)


@reg("coalesce", variadic=ANY)
def _coalesce(*v: Any) -> Any:
    for x in v:
        if not empty(x):
            return x
    return None


@reg("all", variadic=ANY)
def _all(*v: Any) -> bool:
    return all(not empty(x) for x in v)


@reg("any", variadic=ANY)
def _any(*v: Any) -> bool:
    return any(not empty(x) for x in v)


@reg("ternary", ANY, ANY, BOOL)
def _ternary(vt: Any, vf: Any, v: bool) -> Any:
    return vt if v else vf


@reg("fail", STRING)
def _fail(msg: str) -> Any:
    raise FuncError(msg)


# --- strings ------------------------------------------------------------------------------


@reg("lower", STRING)
def _lower(s: str) -> str:
    return s.lower()


@reg("upper", STRING)
def _upper(s: str) -> str:
    return s.upper()


def _is_separator(ch: str) -> bool:
    # strings.Title's word boundary test
    if ch.isascii():
        return not (ch.isalnum() or ch == "_")
    if ch.isalpha() or ch.isdigit():
        return False
    return ch.isspace()


@reg("title", STRING)
def _title(s: str) -> str:
    out = []
    prev = " "
    for ch in s:
        out.append(ch.title() if _is_separator(prev) else ch)
        prev = ch
    return "".join(out)


@reg("untitle", STRING)
def _untitle(s: str) -> str:
    out = []
    prev_space = True
    for ch in s:
        out.append(ch.lower() if prev_space and ch.isupper() else ch)
        prev_space = ch.isspace()
    return "".join(out)


@reg("repeat", INT, STRING)
def _repeat(count: int, s: str) -> str:
    if count < 0:
        raise FuncError("strings: negative Repeat count")
    check_length(count * len(s))
    return s * count


@reg("substr", INT, INT, STRING)
def _substr(start: int, end: int, s: str) -> str:
    b = _b(s)
    n = len(b)
    # Go slicing panics where Python would clamp; report it like the recovered panic
    if start < 0:
        if not 0 <= end <= n:
            raise FuncError(f"runtime error: slice bounds out of range [:{end}] with length {n}")
        return _s(b[:end])
    if end < 0 or end > n:
        if start > n:
            raise FuncError(f"runtime error: slice bounds out of range [{start}:{n}]")
        return _s(b[start:])
    if start > end:
        raise FuncError(f"runtime error: slice bounds out of range [{start}:{end}]")
    return _s(b[start:end])


@reg("trunc", INT, STRING)
def _trunc(c: int, s: str) -> str:
    b = _b(s)
    if c < 0 and len(b) + c > 0:
        return _s(b[len(b) + c :])
    if c >= 0 and len(b) > c:
        return _s(b[:c])
    return s


_GO_SPACE = " \t\n\v\f\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


@reg("trim", STRING)
def _trim(s: str) -> str:
    return s.strip(_GO_SPACE)


@reg("trimAll", STRING, STRING)
def _trim_all(cutset: str, s: str) -> str:
    return s.strip(cutset) if cutset else s


alias("trimall", "trimAll")  # sprig's deprecated spelling


@reg("trimPrefix", STRING, STRING)
def _trim_prefix(prefix: str, s: str) -> str:
    return s.removeprefix(prefix)


@reg("trimSuffix", STRING, STRING)
def _trim_suffix(suffix: str, s: str) -> str:
    return s.removesuffix(suffix)


@reg("nospace", STRING)
def _nospace(s: str) -> str:
    return "".join(ch for ch in s if ch not in _GO_SPACE)


@reg("abbrev", INT, STRING)
def _abbrev(width: int, s: str) -> str:
    if width < 4:
        return s
    if len(s) <= width:
        return s
    return s[: width - 3] + "..."


@reg("abbrevboth", INT, INT, STRING)
def _abbrevboth(left: int, right: int, s: str) -> str:
    if right < 4 or (left > 0 and right < 7):
        return s
    if len(s) <= right:
        return s
    offset = min(max(left, 0), len(s))
    if len(s) - offset < right - 3:
        offset = len(s) - (right - 3)
    if offset <= 4:
        return s[: right - 3] + "..."
    if right < 7:
        raise FuncError("minimum abbreviation width with offset is 7")
    if offset + right - 3 < len(s):
        return "..." + _abbrev(right - 3, s[offset:])
    return "..." + s[len(s) - (right - 3) :]


@reg("initials", STRING)
def _initials(s: str) -> str:
    return "".join(w[0] for w in s.split() if w)


@reg("replace", STRING, STRING, STRING)
def _replace(old: str, new: str, src: str) -> str:
    if old == "":
        # strings.Replace with an empty old inserts new around every rune
        return new + new.join(src) + new if src else new
    return src.replace(old, new)


@reg("plural", STRING, STRING, INT)
def _plural(one: str, many: str, count: int) -> str:
    return one if count == 1 else many


@reg("contains", STRING, STRING)
def _contains(substr: str, s: str) -> bool:
    return substr in s


@reg("hasPrefix", STRING, STRING)
def _has_prefix(prefix: str, s: str) -> bool:
    return s.startswith(prefix)


@reg("hasSuffix", STRING, STRING)
def _has_suffix(suffix: str, s: str) -> bool:
    return s.endswith(suffix)


@reg("quote", variadic=ANY)
def _quote(*v: Any) -> str:
    return " ".join(go_quote(strval(x)) for x in v if x is not None)


@reg("squote", variadic=ANY)
def _squote(*v: Any) -> str:
    return " ".join(f"'{strval(x)}'" for x in v if x is not None)


@reg("cat", variadic=ANY)
def _cat(*v: Any) -> str:
    from generators.gotemplate.values import format_v

    return " ".join(format_v(x) for x in v if x is not None)


@reg("indent", INT, STRING)
def _indent(spaces: int, s: str) -> str:
    check_length(len(s) + max(spaces, 0) * (s.count("\n") + 1))
    pad = " " * spaces
    return pad + s.replace("\n", "\n" + pad)


@reg("nindent", INT, STRING)
def _nindent(spaces: int, s: str) -> str:
    return "\n" + _indent(spaces, s)


@reg("split", STRING, STRING)
def _split(sep: str, s: str) -> StrMap:
    return StrMap((f"_{i}", p) for i, p in enumerate(_go_split(s, sep, -1)))


@reg("splitList", STRING, STRING)
def _split_list(sep: str, s: str) -> StrSlice:
    return StrSlice(_go_split(s, sep, -1))


@reg("splitn", STRING, INT, STRING)
def _splitn(sep: str, n: int, s: str) -> StrMap:
    return StrMap((f"_{i}", p) for i, p in enumerate(_go_split(s, sep, n)))


def _go_split(s: str, sep: str, n: int) -> list[str]:
    """strings.SplitN (n < 0: all; n == 0: nothing)."""
    if n == 0:
        return []
    if sep == "":
        chars = list(s)
        if n > 0 and len(chars) > n:
            return [*chars[: n - 1], "".join(chars[n - 1 :])]
        return chars
    if n < 0:
        return s.split(sep)
    return s.split(sep, n - 1)


def strslice(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, list):
        return [strval(x) for x in v if x is not None]
    return [strval(v)]


@reg("join", STRING, ANY)
def _join(sep: str, v: Any) -> str:
    return sep.join(strslice(v))


@reg("toStrings", ANY)
def _to_strings(v: Any) -> StrSlice:
    if isinstance(v, list):
        return StrSlice(strval(x) for x in v)
    return StrSlice(strslice(v))


@reg("sortAlpha", ANY)
def _sort_alpha(v: Any) -> StrSlice:
    if isinstance(v, list):
        return StrSlice(sorted(strslice(v), key=_b))
    return StrSlice([strval(v)])


@reg("toString", ANY)
def _to_string(v: Any) -> str:
    return strval(v)


# --- regular expressions: RE2, the engine behind Go's regexp ------------------------------
#
# Python's ``re`` backtracks: ``regexMatch "(a+)+$" "aaaa…!"`` ran for minutes and froze the
# process. RE2 (google-re2) is the C++ engine Go's regexp was ported from: same syntax (no
# backreferences, no lookaround), leftmost-first matching, and time linear in the input.

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # errors become template errors, not stderr lines
_NOT_RE2 = "gitops-hub uses RE2 like Argo CD's Go regexp: no backreferences or lookaround"


@lru_cache(maxsize=512)
def go_regexp(pattern: str) -> Any:
    """Compile a Go (RE2) pattern; errors are worded like Go's ``error parsing regexp``."""
    _refuse_byte_escape(pattern)
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as e:
        reason = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        hint = f" ({_NOT_RE2})" if "perl operator" in reason or "escape" in reason else ""
        raise FuncError(f"error parsing regexp: {reason}: `{pattern}`{hint}") from None
    except UnicodeEncodeError:
        raise FuncError("error parsing regexp: invalid UTF-8 in the pattern") from None


def _refuse_byte_escape(pattern: str) -> None:
    # RE2 C++ accepts \C (one byte, which can split a UTF-8 character); Go refuses it.
    i = pattern.find("\\")
    while i >= 0:
        if pattern[i + 1 : i + 2] == "C":
            raise FuncError(f"error parsing regexp: invalid escape sequence: `\\C`: `{pattern}`")
        i = pattern.find("\\", i + 2)


def _find_all(r: Any, s: str, n: int) -> list[Any]:
    """Go's FindAll: an empty match right after the previous match is skipped."""
    out: list[Any] = []
    prev_end = -1
    for m in r.finditer(s):
        if n >= 0 and len(out) >= n:
            break
        if m.start() == m.end() and m.start() == prev_end:
            continue
        out.append(m)
        prev_end = m.end()
    return out


@reg("regexMatch", STRING, STRING)
def _regex_match(regex: str, s: str) -> bool:
    try:
        return go_regexp(regex).search(s) is not None
    except FuncError:
        return False


@reg("mustRegexMatch", STRING, STRING)
def _must_regex_match(regex: str, s: str) -> bool:
    return go_regexp(regex).search(s) is not None


@reg("regexFind", STRING, STRING)
def _regex_find(regex: str, s: str) -> str:
    m = go_regexp(regex).search(s)
    return m.group(0) if m else ""


alias("mustRegexFind", "regexFind")


@reg("regexFindAll", STRING, STRING, INT)
def _regex_find_all(regex: str, s: str, n: int) -> StrSlice:
    return StrSlice(m.group(0) for m in _find_all(go_regexp(regex), s, n))


alias("mustRegexFindAll", "regexFindAll")


def _expand(template: str, m: Any) -> str:
    """Regexp.Expand: $1, ${1}, $name, ${name}, $$; the longest name wins ($1x is ${1x})."""
    out = []
    i = 0
    n = len(template)
    while i < n:
        c = template[i]
        if c != "$" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        if template[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        if template[i + 1] == "{":
            end = template.find("}", i + 2)
            name = template[i + 2 : end] if end > 0 else ""
            if end < 0 or not name or not all(ch.isalnum() or ch == "_" for ch in name):
                out.append(c)
                i += 1
                continue
            i = end + 1
        else:
            j = i + 1
            while j < n and (template[j].isalnum() or template[j] == "_"):
                j += 1
            name = template[i + 1 : j]
            if not name:
                out.append(c)
                i += 1
                continue
            i = j
        out.append(_group(m, name))
    return "".join(out)


def _group(m: Any, name: str) -> str:
    try:
        if name.isdigit():
            idx = int(name)
            if idx > (m.re.groups or 0):
                return ""
            return m.group(idx) or ""
        return m.group(name) or ""
    except IndexError:
        return ""


@reg("regexReplaceAll", STRING, STRING, STRING)
def _regex_replace_all(regex: str, s: str, repl: str) -> str:
    r = go_regexp(regex)
    return _replace_matches(r, s, lambda m: _expand(repl, m))


@reg("regexReplaceAllLiteral", STRING, STRING, STRING)
def _regex_replace_all_literal(regex: str, s: str, repl: str) -> str:
    return _replace_matches(go_regexp(regex), s, lambda m: repl)


alias("mustRegexReplaceAll", "regexReplaceAll")
alias("mustRegexReplaceAllLiteral", "regexReplaceAllLiteral")


def _replace_matches(r: Any, s: str, fn: Any) -> str:
    out = []
    last = 0
    for m in _find_all(r, s, -1):
        out.append(s[last : m.start()])
        out.append(fn(m))
        last = m.end()
    out.append(s[last:])
    return "".join(out)


@reg("regexSplit", STRING, STRING, INT)
def _regex_split(regex: str, s: str, n: int) -> StrSlice:
    r = go_regexp(regex)
    if n == 0:
        return StrSlice()
    if regex and s == "":
        return StrSlice([""])
    parts: list[str] = []
    beg = end = 0
    for m in _find_all(r, s, n):
        if n > 0 and len(parts) == n - 1:
            break
        end = m.start()
        if m.end() != 0:
            parts.append(s[beg:end])
        beg = m.end()
    if end != len(s):
        parts.append(s[beg:])
    return StrSlice(parts)


alias("mustRegexSplit", "regexSplit")


@reg("regexQuoteMeta", STRING)
def _regex_quote_meta(s: str) -> str:
    return "".join("\\" + c if c in "\\.+*?()|[]{}^$" else c for c in s)


# --- lists --------------------------------------------------------------------------------


_NIL_DEREF = "runtime error: invalid memory address or nil pointer dereference"


def _need_list(v: Any, what: str) -> list[Any]:
    """The list argument of a sprig list function; ``what`` completes sprig's message."""
    if isinstance(v, list):
        return v
    if v is None:
        raise FuncError(_NIL_DEREF)  # reflect.TypeOf(nil).Kind() in sprig
    raise FuncError(what.format(kind_name(v)))


@reg("list", variadic=ANY)
def _list(*v: Any) -> list[Any]:
    return list(v)


alias("tuple", "list")


@reg("first", ANY)
def _first(v: Any) -> Any:
    lst = _need_list(v, "Cannot find first on type {}")
    return lst[0] if lst else None


@reg("last", ANY)
def _last(v: Any) -> Any:
    lst = _need_list(v, "Cannot find last on type {}")
    return lst[-1] if lst else None


@reg("rest", ANY)
def _rest(v: Any) -> Any:
    lst = _need_list(v, "Cannot find rest on type {}")
    return list(lst[1:]) if lst else None


@reg("initial", ANY)
def _initial(v: Any) -> Any:
    lst = _need_list(v, "Cannot find initial on type {}")
    return list(lst[:-1]) if lst else None


@reg("append", ANY, ANY)
def _append(v: Any, x: Any) -> list[Any]:
    return [*_need_list(v, "Cannot push on type {}"), x]


alias("push", "append")


@reg("prepend", ANY, ANY)
def _prepend(v: Any, x: Any) -> list[Any]:
    return [x, *_need_list(v, "Cannot prepend on type {}")]


@reg("concat", variadic=ANY)
def _concat(*lists: Any) -> list[Any]:
    out: list[Any] = []
    for lst in lists:
        out.extend(_need_list(lst, "Cannot concat type {} as list"))
    return out


@reg("uniq", ANY)
def _uniq(v: Any) -> list[Any]:
    out: list[Any] = []
    for x in _need_list(v, "Cannot find uniq on type {}"):
        if not any(deep_equal(x, y) for y in out):
            out.append(x)
    return out


@reg("without", ANY, variadic=ANY)
def _without(v: Any, *omit: Any) -> list[Any]:
    return [
        x
        for x in _need_list(v, "Cannot find without on type {}")
        if not any(deep_equal(x, o) for o in omit)
    ]


@reg("has", ANY, ANY)
def _has(needle: Any, haystack: Any) -> bool:
    if haystack is None:
        return False
    return any(deep_equal(needle, x) for x in _need_list(haystack, "Cannot find has on type {}"))


@reg("compact", ANY)
def _compact(v: Any) -> list[Any]:
    return [x for x in _need_list(v, "Cannot compact on type {}") if not empty(x)]


@reg("reverse", ANY)
def _reverse(v: Any) -> list[Any]:
    return list(reversed(_need_list(v, "Cannot find reverse on type {}")))


@reg("slice", ANY, variadic=ANY)
def _slice(v: Any, *idx: Any) -> Any:
    if v is None:
        raise FuncError(_NIL_DEREF)
    if not isinstance(v, list):
        raise FuncError(f"list should be type of slice or array but {kind_name(v)}")
    n = len(v)
    if n == 0:
        return None
    start = to_int64(idx[0]) if len(idx) > 0 else 0
    end = to_int64(idx[1]) if len(idx) > 1 else n
    if not 0 <= start <= end <= n:
        raise FuncError("reflect: slice index out of range")
    return type(v)(v[start:end]) if type(v) is StrSlice else v[start:end]


@reg("chunk", INT, ANY)
def _chunk(size: int, v: Any) -> list[Any]:
    lst = _need_list(v, "Cannot chunk type {}")
    if size < 1:
        raise FuncError("runtime error: integer divide by zero")
    return [lst[i : i + size] for i in range(0, len(lst), size)]


alias("mustChunk", "chunk")


@reg("until", INT)
def _until(count: int) -> list[Any]:
    step = 1 if count >= 0 else -1
    check_items(abs(count))
    return list(range(0, count, step))


@reg("untilStep", INT, INT, INT)
def _until_step(start: int, stop: int, step: int) -> list[Any]:
    if step == 0 or (step > 0 and start >= stop) or (step < 0 and start <= stop):
        return []
    numbers = range(start, stop, step)
    check_items(len(numbers))
    return list(numbers)


@reg("seq", variadic=INT)
def _seq(*p: int) -> str:
    if len(p) == 0:
        return ""
    if len(p) == 1:
        start, end, step = 1, p[0], 1 if p[0] >= 1 else -1
    elif len(p) == 2:
        start, end = p
        step = 1 if end >= start else -1
    elif len(p) == 3:
        start, step, end = p
        if step == 0 or (end < start and step > 0) or (end > start and step < 0):
            return ""
    else:
        return ""
    numbers = range(start, end + (1 if step > 0 else -1), step)
    check_items(len(numbers))
    return " ".join(str(i) for i in numbers)


# --- dicts --------------------------------------------------------------------------------


def _need_map(d: Any, fname: str) -> dict[str, Any]:
    if d is None:
        raise FuncError("assignment to entry in nil map")
    return d  # type: ignore[no-any-return]


@reg("dict", variadic=ANY)
def _dict(*v: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    items = list(v)
    if len(items) % 2:
        items.append("")
    for i in range(0, len(items), 2):
        out[strval(items[i])] = items[i + 1]
    return out


@reg("get", MAP, STRING)
def _get(d: Any, key: str) -> Any:
    if d is None:
        return ""
    return d.get(key, "")


@reg("set", MAP, STRING, ANY)
def _set(d: Any, key: str, value: Any) -> Any:
    d = _need_map(d, "set")
    d[key] = value
    return d


@reg("unset", MAP, STRING)
def _unset(d: Any, key: str) -> Any:
    if d is None:
        return d
    d.pop(key, None)
    return d


@reg("hasKey", MAP, STRING)
def _has_key(d: Any, key: str) -> bool:
    return d is not None and key in d


@reg("pluck", STRING, variadic=MAP)
def _pluck(key: str, *ds: Any) -> list[Any]:
    return [d[key] for d in ds if d is not None and key in d]


@reg("keys", variadic=MAP)
def _keys(*ds: Any) -> StrSlice:
    out: list[str] = []
    for d in ds:
        if d is not None:
            out.extend(d)
    return StrSlice(sorted(out, key=_b))


@reg("values", MAP)
def _values(d: Any) -> list[Any]:
    if d is None:
        return []
    return [d[k] for k in sorted_keys(d)]


@reg("pick", MAP, variadic=STRING)
def _pick(d: Any, *keys: str) -> dict[str, Any]:
    if d is None:
        return {}
    return {k: d[k] for k in keys if k in d}


@reg("omit", MAP, variadic=STRING)
def _omit(d: Any, *keys: str) -> dict[str, Any]:
    if d is None:
        return {}
    drop = set(keys)
    return {k: v for k, v in d.items() if k not in drop}


def _deep_merge(dst: dict[str, Any], src: dict[str, Any], overwrite: bool) -> None:
    """mergo.Merge as sprig calls it (WithOverride for mergeOverwrite), over JSON-like maps.

    Nested maps merge key-wise; without override only missing or empty destination
    values are filled; with override source values win, even empty ones (false, ""),
    except that a non-empty destination keeps its place against a source map.
    """
    for k, sv in src.items():
        if sv is None:
            if overwrite:
                dst[k] = None
            continue
        dv = dst.get(k, MISSING)
        dst_set = dv is not MISSING and not empty(dv)
        if isinstance(sv, dict):
            if isinstance(dv, dict):
                _deep_merge(dv, sv, overwrite)
            if dst_set:
                continue
        elif isinstance(sv, list):
            if overwrite or not dst_set:
                dst[k] = sv
            continue
        if overwrite or not dst_set:
            dst[k] = sv


@reg("merge", MAP, variadic=MAP)
def _merge(dst: Any, *srcs: Any) -> Any:
    dst = _need_map(dst, "merge")
    for s in srcs:
        if s is not None:
            _deep_merge(dst, s, overwrite=False)
    return dst


@reg("mergeOverwrite", MAP, variadic=MAP)
def _merge_overwrite(dst: Any, *srcs: Any) -> Any:
    dst = _need_map(dst, "mergeOverwrite")
    for s in srcs:
        if s is not None:
            _deep_merge(dst, s, overwrite=True)
    return dst


alias("mustMerge", "merge")
alias("mustMergeOverwrite", "mergeOverwrite")


@reg("dig", variadic=ANY)
def _dig(*ps: Any) -> Any:
    if len(ps) < 3:
        raise FuncError("dig needs at least three arguments")
    d = ps[-1]
    default = ps[-2]
    keys = ps[:-2]
    for k in keys:
        if type(k) is not str:
            raise FuncError(f"interface conversion: interface {{}} is {type_name(k)}, not string")
    for i, k in enumerate(keys):
        if not isinstance(d, dict) or type(d) is StrMap:
            raise FuncError(
                f"interface conversion: interface {{}} is {type_name(d)}, "
                "not map[string]interface {}"
            )
        if k not in d:
            return default
        d = d[k]
        if i == len(keys) - 1:
            return d
    return default


@reg("deepCopy", ANY)
def _deep_copy(v: Any) -> Any:
    import copy

    return copy.deepcopy(v)


alias("mustDeepCopy", "deepCopy")


# --- type conversion and reflection -------------------------------------------------------


@reg("atoi", STRING)
def _atoi(s: str) -> int:
    body = s[1:] if s[:1] in "+-" else s
    if not body or not body.isascii() or not body.isdigit():
        return 0
    v = int(s)
    return v if -(2**63) <= v < 2**63 else 0


@reg("int", ANY)
def _int(v: Any) -> int:
    return to_int64(v)


@reg("int64", ANY)
def _int64(v: Any) -> Int64:
    return Int64(to_int64(v))


@reg("float64", ANY)
def _float64(v: Any) -> float:
    return to_float64(v)


@reg("toDecimal", ANY)
def _to_decimal(v: Any) -> Int64:
    try:
        return Int64(int(strval(v), 8))
    except ValueError:
        return Int64(0)


@reg("typeOf", ANY)
def _type_of(v: Any) -> str:
    return type_name(v)


@reg("typeIs", STRING, ANY)
def _type_is(target: str, v: Any) -> bool:
    return target == type_name(v)


@reg("typeIsLike", STRING, ANY)
def _type_is_like(target: str, v: Any) -> bool:
    t = type_name(v)
    return target == t or target == "*" + t


@reg("kindOf", ANY)
def _kind_of(v: Any) -> str:
    return kind_name(v)


@reg("kindIs", STRING, ANY)
def _kind_is(target: str, v: Any) -> bool:
    return target == kind_name(v)


@reg("deepEqual", ANY, ANY)
def _deep_equal(a: Any, b: Any) -> bool:
    return deep_equal(a, b)


# --- math ---------------------------------------------------------------------------------


@reg("add1", ANY)
def _add1(v: Any) -> Int64:
    return Int64(_wrap64(to_int64(v) + 1))


@reg("add", variadic=ANY)
def _add(*v: Any) -> Int64:
    return Int64(_wrap64(sum(to_int64(x) for x in v)))


@reg("sub", ANY, ANY)
def _sub(a: Any, b: Any) -> Int64:
    return Int64(_wrap64(to_int64(a) - to_int64(b)))


@reg("mul", ANY, variadic=ANY)
def _mul(a: Any, *v: Any) -> Int64:
    r = to_int64(a)
    for x in v:
        r = _wrap64(r * to_int64(x))
    return Int64(r)


def _go_div(a: int, b: int) -> int:
    if b == 0:
        raise FuncError("runtime error: integer divide by zero")
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


@reg("div", ANY, ANY)
def _div(a: Any, b: Any) -> Int64:
    return Int64(_wrap64(_go_div(to_int64(a), to_int64(b))))


@reg("mod", ANY, ANY)
def _mod(a: Any, b: Any) -> Int64:
    x, y = to_int64(a), to_int64(b)
    return Int64(x - _go_div(x, y) * y)


@reg("max", ANY, variadic=ANY)
def _max(a: Any, *v: Any) -> Int64:
    return Int64(max([to_int64(a), *(to_int64(x) for x in v)]))


alias("biggest", "max")


@reg("min", ANY, variadic=ANY)
def _min(a: Any, *v: Any) -> Int64:
    return Int64(min([to_int64(a), *(to_int64(x) for x in v)]))


def _wrap64(v: int) -> int:
    return (v + 2**63) % 2**64 - 2**63


@reg("floor", ANY)
def _floor(v: Any) -> float:
    return float(math.floor(to_float64(v))) if math.isfinite(to_float64(v)) else to_float64(v)


@reg("ceil", ANY)
def _ceil(v: Any) -> float:
    return float(math.ceil(to_float64(v))) if math.isfinite(to_float64(v)) else to_float64(v)


@reg("round", ANY, INT, variadic=FLOAT)
def _round(a: Any, p: int, *r_opt: float) -> float:
    round_on = r_opt[0] if r_opt else 0.5
    val = to_float64(a)
    pow_ = math.pow(10, p)
    digit = pow_ * val
    frac = math.modf(digit)[0]
    rounded = math.ceil(digit) if frac >= round_on else math.floor(digit)
    return rounded / pow_


def _dec(v: Any) -> Decimal:
    f = to_float64(v)
    return Decimal(format_float_g(f)) if math.isfinite(f) else Decimal(0)


@reg("addf", variadic=ANY)
def _addf(*v: Any) -> float:
    return float(sum((_dec(x) for x in v), Decimal(0)))


@reg("add1f", ANY)
def _add1f(v: Any) -> float:
    return float(_dec(v) + 1)


@reg("subf", ANY, variadic=ANY)
def _subf(a: Any, *v: Any) -> float:
    r = _dec(a)
    for x in v:
        r -= _dec(x)
    return float(r)


@reg("mulf", ANY, variadic=ANY)
def _mulf(a: Any, *v: Any) -> float:
    r = _dec(a)
    for x in v:
        r *= _dec(x)
    return float(r)


@reg("divf", ANY, variadic=ANY)
def _divf(a: Any, *v: Any) -> float:
    r = _dec(a)
    try:
        for x in v:
            r /= _dec(x)
    except (InvalidOperation, ZeroDivisionError):
        raise FuncError("decimal division by 0") from None
    return float(r)


@reg("maxf", ANY, variadic=ANY)
def _maxf(a: Any, *v: Any) -> float:
    return max([to_float64(a), *(to_float64(x) for x in v)])


@reg("minf", ANY, variadic=ANY)
def _minf(a: Any, *v: Any) -> float:
    return min([to_float64(a), *(to_float64(x) for x in v)])


# --- encoding and hashes ------------------------------------------------------------------


@reg("b64enc", STRING)
def _b64enc(s: str) -> str:
    return base64.b64encode(_b(s)).decode()


@reg("b64dec", STRING)
def _b64dec(s: str) -> str:
    try:
        return _s(base64.b64decode(_b(s), validate=True))
    except (binascii.Error, ValueError) as e:
        return f"illegal base64 data: {e}"


@reg("b32enc", STRING)
def _b32enc(s: str) -> str:
    return base64.b32encode(_b(s)).decode()


@reg("b32dec", STRING)
def _b32dec(s: str) -> str:
    try:
        return _s(base64.b32decode(_b(s)))
    except (binascii.Error, ValueError) as e:
        return f"illegal base32 data: {e}"


@reg("sha1sum", STRING)
def _sha1sum(s: str) -> str:
    return hashlib.sha1(_b(s)).hexdigest()


@reg("sha256sum", STRING)
def _sha256sum(s: str) -> str:
    return hashlib.sha256(_b(s)).hexdigest()


@reg("sha512sum", STRING)
def _sha512sum(s: str) -> str:
    return hashlib.sha512(_b(s)).hexdigest()


@reg("adler32sum", STRING)
def _adler32sum(s: str) -> str:
    return str(zlib.adler32(_b(s)))


# --- JSON ---------------------------------------------------------------------------------


def _json_value(v: Any) -> Any:
    """encoding/json into interface{}: numbers become float64."""
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_value(x) for x in v]
    if type(v) is int:
        return float(v)
    return v


def from_json(s: str) -> Any:
    try:
        v = json.loads(s, parse_int=float, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise FuncError(str(e)) from None
    return v


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


@reg("fromJson", STRING)
def _from_json(s: str) -> Any:
    try:
        return from_json(s)
    except FuncError:
        return None


@reg("mustFromJson", STRING)
def _must_from_json(s: str) -> Any:
    return from_json(s)


@reg("toJson", ANY)
def _to_json(v: Any) -> str:
    try:
        return to_json(v)
    except ValueError:
        return ""


@reg("mustToJson", ANY)
def _must_to_json(v: Any) -> str:
    try:
        return to_json(v)
    except ValueError as e:
        raise FuncError(str(e)) from None


@reg("toPrettyJson", ANY)
def _to_pretty_json(v: Any) -> str:
    try:
        return to_json(v, indent="  ")
    except ValueError:
        return ""


@reg("mustToPrettyJson", ANY)
def _must_to_pretty_json(v: Any) -> str:
    try:
        return to_json(v, indent="  ")
    except ValueError as e:
        raise FuncError(str(e)) from None


@reg("toRawJson", ANY)
def _to_raw_json(v: Any) -> str:
    try:
        return to_json(v, escape_html=False)
    except ValueError:
        return ""


@reg("mustToRawJson", ANY)
def _must_to_raw_json(v: Any) -> str:
    try:
        return to_json(v, escape_html=False)
    except ValueError as e:
        raise FuncError(str(e)) from None


# --- paths (Go's path package, slash-separated) -------------------------------------------


def go_clean(p: str) -> str:
    if p == "":
        return "."
    rooted = p.startswith("/")
    parts: list[str] = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(seg)
    out = "/".join(parts)
    if rooted:
        return "/" + out
    return out or "."


@reg("base", STRING)
def _base(p: str) -> str:
    if p == "":
        return "."
    p = p.rstrip("/")
    if p == "":
        return "/"
    return p.rsplit("/", 1)[-1]


@reg("dir", STRING)
def _dir(p: str) -> str:
    i = p.rfind("/")
    return go_clean(p[: i + 1])


@reg("clean", STRING)
def _clean(p: str) -> str:
    return go_clean(p)


@reg("ext", STRING)
def _ext(p: str) -> str:
    for i in range(len(p) - 1, -1, -1):
        if p[i] == "/":
            break
        if p[i] == ".":
            return p[i:]
    return ""


@reg("isAbs", STRING)
def _is_abs(p: str) -> bool:
    return p.startswith("/")


# --- Argo CD additions ---------------------------------------------------------------------

_INVALID_DNS = re.compile(r"[^-a-z0-9.]")


@reg("normalize", STRING)
def normalize(name: str) -> str:
    """Argo CD's SanitizeName: lowercase, [^-a-z0-9.] -> '-', max 253, trim '-' and '.'."""
    name = _INVALID_DNS.sub("-", name.lower())
    b = _b(name)
    if len(b) > 253:
        name = _s(b[:253])
    return name.strip("-.")


_NON_AUTH = re.compile(r"[^a-zA-Z0-9\-_]")
_MULTI_DASH = re.compile(r"-+")


def slugify(name: str, max_len: int = 50, smart: bool = True) -> str:
    """Argo CD's SlugifyName: normalize, then gosimple/slug Make with its globals set."""
    s = normalize(name).strip(_GO_SPACE)
    if not smart and len(s) >= max_len:
        s = s[:max_len]
    s = _MULTI_DASH.sub("-", _NON_AUTH.sub("-", s)).strip("-_")
    if max_len > 0 and smart and len(s) > max_len:
        for i in range(max_len, -1, -1):
            if s[i] == "-":
                return s[:i]
        return s[:max_len]
    return s


@reg("slugify", variadic=ANY)
def _slugify(*args: Any) -> str:
    if not args:
        return slugify("")
    max_len, smart, name = 50, True, ""
    for i, a in enumerate(args):
        if i == len(args) - 1:
            if type(a) is not str:
                raise FuncError(
                    f"interface conversion: interface {{}} is {type_name(a)}, not string"
                )
            name = a
        elif i == 0:
            if type(a) is not int:
                raise FuncError(f"interface conversion: interface {{}} is {type_name(a)}, not int")
            max_len = a
        elif i == 1:
            if type(a) is not bool:
                raise FuncError(f"interface conversion: interface {{}} is {type_name(a)}, not bool")
            smart = a
    return slugify(name, max_len, smart)


# go-yaml v2's implicit typing of plain scalars (resolve.go), which Argo CD's YAML
# functions use through sigs.k8s.io/yaml; PyYAML's YAML 1.1 resolver differs in details
# (y/n are booleans there, 1:20 is no number, 0o17 is one).
_YAML_WORDS: dict[str, tuple[str, Any]] = {
    **{w: ("bool", True) for w in ("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE")},
    **{w: ("bool", True) for w in ("on", "On", "ON")},
    **{w: ("bool", False) for w in ("n", "N", "no", "No", "NO", "false", "False", "FALSE")},
    **{w: ("bool", False) for w in ("off", "Off", "OFF")},
    **{w: ("null", None) for w in ("", "~", "null", "Null", "NULL")},
    **{w: ("float", math.nan) for w in (".nan", ".NaN", ".NAN")},
    **{w: ("float", math.inf) for w in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")},
    **{w: ("float", -math.inf) for w in ("-.inf", "-.Inf", "-.INF")},
}
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_YAML_BASE60 = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
_YAML_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    r"(?:(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]*)?"
    r"(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{1,2})?))?)?"
)
_YAML_TAGS = {
    "str": "tag:yaml.org,2002:str",
    "bool": "tag:gitops-hub:go-bool",
    "null": "tag:yaml.org,2002:null",
    "int": "tag:gitops-hub:go-int",
    "float": "tag:gitops-hub:go-float",
    "timestamp": "tag:gitops-hub:go-timestamp",
}


def go_yaml_resolve(s: str) -> tuple[str, Any]:
    """The kind and value go-yaml v2 gives the plain scalar ``s``."""
    word = _YAML_WORDS.get(s)
    if word is not None:
        return word
    c = s[0]
    if c == ".":
        try:
            if _YAML_FLOAT.fullmatch(s):
                return "float", float(s)
        except ValueError:
            pass
    elif c in "+-0123456789":
        if _YAML_TIMESTAMP.fullmatch(s):
            return "timestamp", s
        plain = s.replace("_", "")
        try:
            v = _go_parse_int(plain)
            if v < 2**63 or plain[0] not in "+-":  # ParseUint takes no sign
                return "int", v
        except ValueError:
            pass
        if _YAML_FLOAT.fullmatch(plain):
            return "float", float(plain)
    return "str", s


def _go_parse_int(plain: str) -> int:
    """strconv.ParseInt / ParseUint with base 0 (prefixes 0x, 0o, 0b and leading-0 octal)."""
    body = plain.lstrip("+-") if plain[:1] in "+-" else plain
    if plain[:2] in ("++", "--", "+-", "-+") or not body:
        raise ValueError(plain)
    neg = plain.startswith("-")
    low = body.lower()
    if low.startswith("0x"):
        v = int(body[2:], 16)
    elif low.startswith("0o"):
        v = int(body[2:], 8)
    elif low.startswith("0b"):
        v = int(body[2:], 2)
    elif len(body) > 1 and body[0] == "0":
        v = int(body, 8)
    elif body.isdigit() and body.isascii():
        v = int(body)
    else:
        raise ValueError(plain)
    v = -v if neg else v
    if not -(2**63) <= v < 2**64:
        raise ValueError(plain)
    return v


class _GoYamlLoader(yamlio.HardenedLoader):
    """Plain scalars typed as go-yaml v2 types them; timestamps stay strings, as go-yaml v2
    keeps them for interface{} targets."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            return _YAML_TAGS[go_yaml_resolve(value)[0]]
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]


def _construct_go_scalar(loader: yamlio.HardenedLoader, node: yaml.ScalarNode) -> Any:
    kind, value = go_yaml_resolve(node.value)
    return node.value if kind == "timestamp" else value


for _tag in ("bool", "int", "float", "timestamp"):
    _GoYamlLoader.add_constructor(_YAML_TAGS[_tag], _construct_go_scalar)


def _yaml_to_json_value(v: Any) -> Any:
    """sigs.k8s.io/yaml: YAML -> JSON -> interface{}: numbers float64, keys strings."""
    if isinstance(v, dict):
        return {_yaml_key(k): _yaml_to_json_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_yaml_to_json_value(x) for x in v]
    if type(v) is int:
        return float(v)
    if isinstance(v, float) and not math.isfinite(v):
        raise FuncError(f"json: unsupported value: {format_float_g(v)}")
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    return v


def _yaml_key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if k is None:
        return "null"
    if isinstance(k, bool):
        return "true" if k else "false"
    if isinstance(k, int):
        return str(k)
    if isinstance(k, float):
        return format_float_g(k)
    raise FuncError(f"unsupported YAML map key {k!r}")


def _load_yaml(s: str) -> Any:
    try:
        # go-yaml decodes only the first document; later ones are not even parsed
        first = yamlio.load_first(s, loader=_GoYamlLoader)
    except yamlio.YamlError as e:
        raise FuncError(f"error converting YAML to JSON: {e}") from None
    return _yaml_to_json_value(first)


def load_yaml(text: str) -> Any:
    """YAML as Argo CD reads it with sigs.k8s.io/yaml (e.g. ``elementsYaml``): go-yaml v2
    typing of plain scalars, then JSON: numbers float64, map keys strings. Raises
    ValueError naming the problem."""
    try:
        return _load_yaml(text)
    except FuncError as e:
        raise ValueError(str(e)) from None


@reg("fromYaml", STRING)
def _from_yaml(s: str) -> Any:
    v = _load_yaml(s)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise FuncError(
            f"error unmarshaling JSON: json: cannot unmarshal {_json_kind(v)} "
            "into Go value of type map[string]interface {}"
        )
    return v


@reg("fromYamlArray", STRING)
def _from_yaml_array(s: str) -> Any:
    v = _load_yaml(s)
    if v is None:
        return []
    if not isinstance(v, list):
        raise FuncError(
            f"error unmarshaling JSON: json: cannot unmarshal {_json_kind(v)} "
            "into Go value of type []interface {}"
        )
    return v


def _json_kind(v: Any) -> str:
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    if isinstance(v, str):
        return "string"
    if isinstance(v, bool):
        return "bool"
    return "number"


class _GoYamlDumper(yaml.SafeDumper):
    """Decides plain vs quoted with go-yaml's view of which scalars are strings."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            k = go_yaml_resolve(value)[0]
            return {
                "str": "tag:yaml.org,2002:str",
                "bool": "tag:yaml.org,2002:bool",
                "int": "tag:yaml.org,2002:int",
                "float": "tag:yaml.org,2002:float",
            }.get(k, _YAML_TAGS[k])
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]


def _represent_str(dumper: yaml.SafeDumper, s: str) -> yaml.ScalarNode:
    tag = "tag:yaml.org,2002:str"
    if "\n" in s:
        return dumper.represent_scalar(tag, s, style="|")
    if go_yaml_resolve(s)[0] != "str" or _YAML_BASE60.fullmatch(s):
        # go-yaml double-quotes strings that would read back as another type
        return dumper.represent_scalar(tag, s, style='"')
    return dumper.represent_scalar(tag, s)


def _represent_float(dumper: yaml.SafeDumper, f: float) -> yaml.ScalarNode:
    if not math.isfinite(f):
        # toYaml goes through encoding/json, which refuses these
        raise FuncError(f"json: unsupported value: {format_float_g(f)}")
    if f.is_integer() and -(2**63) <= f < 2**64:
        # JSON prints it as an integer and go-yaml reads that back as an int (or uint)
        return dumper.represent_scalar("tag:yaml.org,2002:int", str(int(f)))
    return dumper.represent_scalar("tag:yaml.org,2002:float", format_float_g(f))


_GoYamlDumper.add_representer(str, _represent_str)
_GoYamlDumper.add_representer(StrMap, _GoYamlDumper.represent_dict)
_GoYamlDumper.add_representer(StrSlice, _GoYamlDumper.represent_list)
_GoYamlDumper.add_representer(Int64, _GoYamlDumper.represent_int)
_GoYamlDumper.add_representer(float, _represent_float)


@reg("toYaml", ANY)
def _to_yaml(v: Any) -> str:
    check_tree(v)
    try:
        out = yaml.dump(
            v, Dumper=_GoYamlDumper, default_flow_style=False, sort_keys=True, allow_unicode=True
        )
    except yaml.YAMLError as e:
        raise FuncError(str(e)) from None
    if out.endswith("\n...\n"):
        out = out[: -len("...\n")]
    return out.removesuffix("\n")


# --- registry -----------------------------------------------------------------------------

for _n in (
    "first",
    "last",
    "rest",
    "initial",
    "append",
    "push",
    "prepend",
    "uniq",
    "without",
    "has",
    "compact",
    "reverse",
    "slice",
):
    # sprig's plain list functions panic where the must* ones return the error; both end
    # the template with that error here.
    alias("must" + _n[0].upper() + _n[1:], _n)

SPRIG_FUNCTIONS: dict[str, Func] = {f.name: f for f in _FUNCS}

_ND = "non-deterministic, so not available in gitops-hub templates"
_NS = "not supported by gitops-hub"
UNAVAILABLE: dict[str, str] = {
    # removed by Argo CD itself
    "env": "not available in ApplicationSet templates (removed by Argo CD)",
    "expandenv": "not available in ApplicationSet templates (removed by Argo CD)",
    "getHostByName": "not available in ApplicationSet templates (removed by Argo CD)",
    # time, randomness, crypto material: results would change at every render
    **{
        n: _ND
        for n in (
            "now",
            "date",
            "dateInZone",
            "date_in_zone",
            "dateModify",
            "date_modify",
            "mustDateModify",
            "ago",
            "duration",
            "durationRound",
            "htmlDate",
            "htmlDateInZone",
            "toDate",
            "mustToDate",
            "unixEpoch",
            "uuidv4",
            "randAlpha",
            "randAlphaNum",
            "randAscii",
            "randNumeric",
            "randBytes",
            "randInt",
            "shuffle",
            "genPrivateKey",
            "genCA",
            "genCAWithKey",
            "genSelfSignedCert",
            "genSelfSignedCertWithKey",
            "genSignedCert",
            "genSignedCertWithKey",
            "derivePassword",
            "buildCustomCert",
            "encryptAES",
            "decryptAES",
            "bcrypt",
            "htpasswd",
        )
    },
    **{
        n: _NS
        for n in (
            "semver",
            "randSeededNumeric",
            "semverCompare",
            "wrap",
            "wrapWith",
            "snakecase",
            "camelcase",
            "kebabcase",
            "swapcase",
            "urlParse",
            "urlJoin",
            "osBase",
            "osClean",
            "osDir",
            "osExt",
            "osIsAbs",
        )
    },
}

#: The functions provided, by family, as documentation; a test keeps it equal to the
#: registry. ``tpl`` (Argo CD) is compiled by the engine itself.
FAMILIES: dict[str, tuple[str, ...]] = {
    "defaults and flow": ("default", "empty", "coalesce", "all", "any", "ternary", "fail"),
    "strings": (
        "lower", "upper", "title", "untitle", "repeat", "substr", "trunc", "trim", "trimAll",
        "trimall", "trimPrefix", "trimSuffix", "nospace", "abbrev", "abbrevboth", "initials",
        "replace", "plural", "contains", "hasPrefix", "hasSuffix", "quote", "squote", "cat",
        "indent", "nindent", "split", "splitList", "splitn", "join", "sortAlpha", "toString",
        "toStrings",
    ),
    "regular expressions": (
        "regexMatch", "mustRegexMatch", "regexFind", "mustRegexFind", "regexFindAll",
        "mustRegexFindAll", "regexReplaceAll", "mustRegexReplaceAll", "regexReplaceAllLiteral",
        "mustRegexReplaceAllLiteral", "regexSplit", "mustRegexSplit", "regexQuoteMeta",
    ),
    "lists": (
        "list", "tuple", "first", "mustFirst", "last", "mustLast", "rest", "mustRest",
        "initial", "mustInitial", "append", "mustAppend", "push", "mustPush", "prepend",
        "mustPrepend", "concat", "uniq", "mustUniq", "without", "mustWithout", "has", "mustHas",
        "compact", "mustCompact", "reverse", "mustReverse", "slice", "mustSlice", "chunk",
        "mustChunk", "until", "untilStep", "seq",
    ),
    "dicts": (
        "dict", "get", "set", "unset", "hasKey", "pluck", "keys", "values", "pick", "omit",
        "merge", "mustMerge", "mergeOverwrite", "mustMergeOverwrite", "dig", "deepCopy",
        "mustDeepCopy",
    ),
    "conversion and reflection": (
        "atoi", "int", "int64", "float64", "toDecimal", "typeOf", "typeIs", "typeIsLike",
        "kindOf", "kindIs", "deepEqual",
    ),
    "math": (
        "add", "add1", "sub", "mul", "div", "mod", "max", "biggest", "min", "floor", "ceil",
        "round", "addf", "add1f", "subf", "mulf", "divf", "maxf", "minf",
    ),
    "encoding": (
        "b64enc", "b64dec", "b32enc", "b32dec", "sha1sum", "sha256sum", "sha512sum",
        "adler32sum", "toJson", "mustToJson", "toPrettyJson", "mustToPrettyJson", "toRawJson",
        "mustToRawJson", "fromJson", "mustFromJson",
    ),
    "paths": ("base", "dir", "clean", "ext", "isAbs"),
    "argo cd": ("normalize", "slugify", "toYaml", "fromYaml", "fromYamlArray"),
}  # fmt: skip
