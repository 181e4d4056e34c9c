"""A subset of Go's fmt.Sprintf, exact for the verbs templates use.

Supported: %v %+v %#v %T %s %q %d %b %o %O %x %X %c %U %e %E %f %F %g %G %t %%, flags
``+ - # 0 space``, width and precision (also ``*``). Go's error forms are reproduced:
``%!d(string=x)``, ``%!s(MISSING)``, ``%!(EXTRA int=1)``, ``%!(NOVERB)``.
Unsupported (raise): explicit argument indexes ``%[1]d``, %p, %x on floats.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from generators.gotemplate.errors import FuncError
from generators.gotemplate.limits import check_tree
from generators.gotemplate.values import (
    MISSING,
    Int64,
    _fmt_e_digits,
    _fmt_f_digits,
    can_backquote,
    format_float_g,
    format_v,
    go_quote,
    sorted_keys,
    type_name,
)


class _Spec:
    __slots__ = ("minus", "plus", "prec", "sharp", "space", "verb", "width", "zero")

    def __init__(self) -> None:
        self.plus = self.minus = self.sharp = self.space = self.zero = False
        self.width: int | None = None
        self.prec: int | None = None
        self.verb = "v"


@lru_cache(maxsize=1024)
def _simple_format(fmt: str) -> tuple[tuple[str, ...], str] | None:
    """Literal pieces and verbs of a format whose directives are all bare %s, %v or %d
    (what ApplicationSets use); None for anything needing the full parser."""
    pieces: list[str] = []
    verbs: list[str] = []
    i = 0
    literal: list[str] = []
    while True:
        j = fmt.find("%", i)
        if j < 0:
            literal.append(fmt[i:])
            break
        literal.append(fmt[i:j])
        verb = fmt[j + 1 : j + 2]
        if verb == "%":
            literal.append("%")
        elif verb in ("s", "v", "d"):
            pieces.append("".join(literal))
            literal = []
            verbs.append(verb)
        else:
            return None
        i = j + 2
    pieces.append("".join(literal))
    return tuple(pieces), "".join(verbs)


def sprintf(fmt: str, args: list[Any]) -> str:
    for a in args:
        if isinstance(a, list | dict):
            check_tree(a)  # format_arg walks lists and maps itself
    simple = _simple_format(fmt)
    if simple is not None and len(simple[1]) == len(args):
        pieces, verbs = simple
        out = [pieces[0]]
        for k, verb in enumerate(verbs):
            a = args[k]
            t = type(a)
            if t is str and verb != "d":
                out.append(a)
            elif (t is int or t is Int64) and verb != "s":
                out.append(str(int(a)))
            else:
                sp = _Spec()
                sp.verb = verb
                out.append(format_arg(a, sp))
            out.append(pieces[k + 1])
        return "".join(out)
    return _sprintf(fmt, args)


def _sprintf(fmt: str, args: list[Any]) -> str:
    out: list[str] = []
    n = len(fmt)
    i = 0
    argi = 0
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        sp = _Spec()
        while i < n and fmt[i] in "+-# 0":
            c = fmt[i]
            if c == "+":
                sp.plus = True
            elif c == "-":
                sp.minus = True
            elif c == "#":
                sp.sharp = True
            elif c == " ":
                sp.space = True
            else:
                sp.zero = True
            i += 1
        if i < n and fmt[i] == "[":
            raise FuncError("explicit argument indexes (%[n]) are not supported")
        if i < n and fmt[i] == "*":
            i += 1
            if argi >= len(args) or type(args[argi]) not in (int, Int64) or _too_large(args[argi]):
                out.append("%!(BADWIDTH)")
            else:
                w = int(args[argi])
                if w < 0:
                    sp.minus, w = True, -w
                sp.width = w
            argi += 1
        else:
            sp.width, i = _parse_num(fmt, i)
        if i < n and fmt[i] == ".":
            i += 1
            if i < n and fmt[i] == "*":
                i += 1
                if (
                    argi >= len(args)
                    or type(args[argi]) not in (int, Int64)
                    or _too_large(args[argi])
                ):
                    out.append("%!(BADPREC)")
                else:
                    sp.prec = max(int(args[argi]), 0)
                argi += 1
            else:
                prec, i = _parse_num(fmt, i)
                sp.prec = prec or 0
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        sp.verb = verb
        if verb == "v":
            # %+v only matters for structs; Go clears the plus flag for everything else
            sp.plus = False
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        out.append(format_arg(arg, sp))
    if argi < len(args):
        extra = ", ".join(
            "<nil>" if a is None or a is MISSING else f"{type_name(a)}={format_v(a)}"
            for a in args[argi:]
        )
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


#: Go's fmt refuses widths and precisions beyond a million (``tooLarge``): a template
#: cannot ask for a string of a billion spaces.
_MAX_WIDTH = 1_000_000


def _too_large(v: int) -> bool:
    return not -_MAX_WIDTH <= int(v) <= _MAX_WIDTH


def _parse_num(fmt: str, i: int) -> tuple[int | None, int]:
    """Go's parsenum: the number at ``i`` and the index after it; a crazy long number
    consumes the rest of the format (Go then prints %!(NOVERB))."""
    num: int | None = None
    n = len(fmt)
    while i < n and "0" <= fmt[i] <= "9":
        if num is not None and _too_large(num):
            return None, n
        num = (num or 0) * 10 + ord(fmt[i]) - 48
        i += 1
    return num, i


def _pad(s: str, sp: _Spec, numeric: bool = False) -> str:
    w = sp.width
    if w is None or len(s) >= w:
        return s
    if sp.minus:
        return s + " " * (w - len(s))
    if sp.zero and numeric:
        sign = s[0] if s[:1] in "+- " else ""
        return sign + "0" * (w - len(s)) + s[len(sign) :]
    return " " * (w - len(s)) + s


def _bad(arg: Any, sp: _Spec) -> str:
    if arg is None or arg is MISSING:
        return f"%!{sp.verb}(<nil>)"
    return f"%!{sp.verb}({type_name(arg)}={format_v(arg)})"


def format_arg(arg: Any, sp: _Spec) -> str:
    verb = sp.verb
    if verb == "T":
        return _pad(type_name(None if arg is MISSING else arg), sp)
    if verb == "p":
        raise FuncError("%p is not supported")
    if arg is None or arg is MISSING:
        if verb == "v":
            return _pad("<nil>", sp)
        return _bad(None, sp)
    if verb == "v" and sp.sharp:
        return _pad(_sharp_v(arg, True), sp)
    t = type(arg)
    if t is bool:
        if verb in "tv":
            return _pad("true" if arg else "false", sp)
        return _bad(arg, sp)
    if t is int or t is Int64:
        return _fmt_int(int(arg), sp, arg)
    if t is float:
        return _fmt_float(arg, sp)
    if t is str:
        return _fmt_str(arg, sp)
    if isinstance(arg, list):
        return "[" + " ".join(format_arg(x, sp) for x in arg) + "]"
    if isinstance(arg, dict):
        parts = [f"{format_arg(k, sp)}:{format_arg(arg[k], sp)}" for k in sorted_keys(arg)]
        return "map[" + " ".join(parts) + "]"
    return _pad(format_v(arg), sp)


def _sharp_v(v: Any, top: bool) -> str:
    if v is None or v is MISSING:
        return "<nil>" if top else "interface {}(nil)"
    t = type(v)
    if t is str:
        return go_quote(v)
    if t is bool:
        return "true" if v else "false"
    if t is int or t is Int64:
        return str(int(v))
    if t is float:
        return format_float_g(v)
    if isinstance(v, list):
        return type_name(v) + "{" + ", ".join(_sharp_v(x, False) for x in v) + "}"
    if isinstance(v, dict):
        inner = ", ".join(f"{go_quote(k)}:{_sharp_v(v[k], False)}" for k in sorted_keys(v))
        return type_name(v) + "{" + inner + "}"
    return format_v(v)


def _special_float(f: float) -> str | None:
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    return None


def _sign(neg: bool, sp: _Spec) -> str:
    if neg:
        return "-"
    if sp.plus:
        return "+"
    if sp.space:
        return " "
    return ""


def _fmt_int(v: int, sp: _Spec, orig: Any) -> str:
    verb = sp.verb
    neg = v < 0
    a = -v if neg else v
    prefix = ""
    if verb in "vd":
        digits = str(a)
    elif verb == "b":
        digits = format(a, "b")
        if sp.sharp:
            prefix = "0b"
    elif verb == "o":
        digits = format(a, "o")
        if sp.sharp and digits != "0":
            digits = "0" + digits
    elif verb == "O":
        digits = format(a, "o")
        prefix = "0o"
    elif verb == "x":
        digits = format(a, "x")
        if sp.sharp:
            prefix = "0x"
    elif verb == "X":
        digits = format(a, "X")
        if sp.sharp:
            prefix = "0X"
    elif verb == "c":
        return _pad(_rune(v), sp)
    elif verb == "q":
        r = _rune(v)
        q = "'" + go_quote(r, sp.plus)[1:-1].replace("'", "\\'").replace('\\"', '"') + "'"
        return _pad(q, sp)
    elif verb == "U":
        s = f"U+{v:04X}"
        if sp.sharp and 0 <= v <= 0x10FFFF:
            s += f" '{chr(v)}'"
        return _pad(s, sp)
    else:
        return _bad(orig, sp)
    if sp.prec is not None:
        if sp.prec == 0 and a == 0:
            digits = ""
        digits = digits.rjust(sp.prec, "0")
        s = _sign(neg, sp) + prefix + digits
        return _pad(s, sp)
    s = _sign(neg, sp) + prefix + digits
    if sp.zero and not sp.minus and sp.width is not None and len(s) < sp.width:
        head = _sign(neg, sp) + prefix
        return head + "0" * (sp.width - len(s)) + digits
    return _pad(s, sp)


def _rune(v: int) -> str:
    if 0 <= v <= 0x10FFFF and not 0xD800 <= v <= 0xDFFF:
        return chr(v)
    return "\ufffd"


def _fmt_float(f: float, sp: _Spec) -> str:
    verb = sp.verb
    special = _special_float(f)
    if verb not in "vgGeEfFxXb":
        return _bad(f, sp)
    neg = f < 0 or (f == 0 and math.copysign(1.0, f) < 0)
    if special:
        s = special
        if special == "NaN":
            s = ("+" if sp.plus else " " if sp.space else "") + "NaN"
        elif special == "+Inf" and sp.space and not sp.plus:
            s = " Inf"
        return _pad(s, sp)
    a = abs(f)
    if verb in "xXb":
        body = _hex_float(a, sp.prec) if verb != "b" else _bin_float(a)
        if verb == "X":
            body = body.upper()
    elif verb in "vgG":
        if sp.prec is None:
            body = format_float_g(a, upper=verb == "G")
        else:
            p = sp.prec if sp.prec > 0 else 1
            digits, dp = _round_digits(a, p)
            exp = dp - 1
            eprec = p
            if eprec > len(digits) and len(digits) >= dp:
                eprec = len(digits)
            if exp < -4 or exp >= eprec:
                body = _fmt_e_digits(digits, exp, verb == "G")
            else:
                body = _fmt_f_digits(digits, dp)
        if sp.sharp and "." not in body:
            body = body.replace("e", ".e") if "e" in body else body + "."
    elif verb in "eE":
        p = 6 if sp.prec is None else sp.prec
        body = f"{a:.{p}e}"
        if verb == "E":
            body = body.upper()
    else:
        p = 6 if sp.prec is None else sp.prec
        body = f"{a:.{p}f}"
    s = _sign(neg, sp) + body
    if sp.zero and not sp.minus and sp.width is not None and len(s) < sp.width:
        head = _sign(neg, sp)
        return head + "0" * (sp.width - len(s)) + body
    return _pad(s, sp)


def _hex_float(a: float, prec: int | None) -> str:
    """strconv's 'x' format: 0x1.cp+01 (normalized mantissa, 2-digit exponent)."""
    if a == 0:
        ip, fp, exp = "0", "", 0
    else:
        m, e = math.frexp(a)  # a = m * 2**e, 0.5 <= m < 1; also normalizes subnormals
        exp = e - 1
        frac = int((m * 2 - 1) * (1 << 52))  # 52 fraction bits = 13 hex digits
        ip, fp = "1", format(frac, "013x").rstrip("0")
    if prec is not None:
        if prec < len(fp):
            # round the mantissa to prec hex digits, half to even like strconv
            scaled = int(ip + fp, 16)
            shift = 4 * (len(fp) - prec)
            q, r = divmod(scaled, 1 << shift)
            half = 1 << (shift - 1)
            if r > half or (r == half and q & 1):
                q += 1
            if q >> (4 * prec) >= 2:
                q >>= 1
                exp += 1
            digits = format(q, "x").rjust(prec + 1, "0")
            ip, fp = digits[0], digits[1:]
        else:
            fp = fp.ljust(prec, "0")
    mant = ip + ("." + fp if fp else "")
    sign = "-" if exp < 0 else "+"
    return f"0x{mant}p{sign}{abs(exp):02d}"


def _bin_float(a: float) -> str:
    """strconv's 'b' format: decimal mantissa and binary exponent (4503599627370496p-52)."""
    if a == 0:
        return "0p-1074"
    m, e = math.frexp(a)
    mant = int(m * (1 << 53))
    exp = e - 53
    if exp < -1074:
        mant >>= -1074 - exp
        exp = -1074
    return f"{mant}p{'-' if exp < 0 else '+'}{abs(exp)}"


def _round_digits(a: float, p: int) -> tuple[str, int]:
    """Digits of a rounded to p significant digits (trailing zeros stripped) and the point."""
    if a == 0:
        return "0", 1
    s = f"{a:.{p - 1}e}"
    mant, e = s.split("e")
    digits = mant.replace(".", "").rstrip("0") or "0"
    return digits, int(e) + 1


def _fmt_str(s: str, sp: _Spec) -> str:
    verb = sp.verb
    if verb in "sv":
        if sp.prec is not None:
            s = s[: sp.prec]
        return _pad(s, sp)
    if verb == "q":
        if sp.prec is not None:
            s = s[: sp.prec]
        if sp.sharp and can_backquote(s):
            return _pad("`" + s + "`", sp)
        return _pad(go_quote(s, sp.plus), sp)
    if verb in "xX":
        data = s.encode("utf-8", "surrogatepass")
        if sp.prec is not None:
            data = data[: sp.prec]
        fmt = "{:02x}" if verb == "x" else "{:02X}"
        parts = [fmt.format(b) for b in data]
        pre = ("0x" if verb == "x" else "0X") if sp.sharp else ""
        out = " ".join(pre + p for p in parts) if sp.space else pre + "".join(parts)
        return _pad(out, sp)
    return _bad(s, sp)
