"""A small, safe evaluator for the expr-lang subset Argo CD's trigger conditions use.

Supported: member access (``a.b``, ``a?.b``, ``a['b']``), literals (strings, numbers,
``true``/``false``/``nil``, lists), ``==`` ``!=`` ``<`` ``<=`` ``>`` ``>=``, ``in`` /
``not in``, ``and``/``&&``, ``or``/``||``, ``not``/``!`` and parentheses. Anything else
(function calls such as ``time.Now()``, arithmetic) is refused at parse time with an
``ExprError`` saying where, so a bad trigger is a configuration error, never a crash.
Missing fields read as ``nil`` (expr-lang's optional chaining; Argo writes ``?.`` too).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hub.errors import HubError

MAX_LENGTH = 4096
MAX_DEPTH = 64


class ExprError(HubError):
    """An expression outside the supported subset (the message says where)."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>\d+(?:\.\d+)?)
      | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<op>\?\.|==|!=|<=|>=|&&|\|\||[<>!.,()\[\]])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)

_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}


@dataclass(frozen=True)
class _Tok:
    kind: str  # num | str | op | name | end
    text: str
    pos: int


def _tokens(source: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        m = _TOKEN.match(source, pos)
        if m is None or m.lastgroup is None:
            start = pos + len(source[pos:]) - len(source[pos:].lstrip())
            raise ExprError(f"unexpected character {source[start]!r} at offset {start}")
        out.append(_Tok(m.lastgroup, m.group(m.lastgroup), m.start(m.lastgroup)))
        pos = m.end()
    out.append(_Tok("end", "", len(source)))
    return out


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


# The parsed tree: tuples, evaluated by ``_eval``.
Node = tuple[Any, ...]


class _Parser:
    def __init__(self, source: str) -> None:
        self.toks = _tokens(source)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text or tok.kind not in ("op",):
            raise ExprError(f"expected {text!r} at offset {tok.pos}, found {tok.text or 'end'!r}")

    def at(self, *texts: str) -> bool:
        tok = self.peek()
        return tok.kind in ("op", "name") and tok.text in texts

    def parse(self) -> Node:
        node = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            raise ExprError(f"unexpected {tok.text!r} at offset {tok.pos}")
        return node

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"expression nested deeper than {MAX_DEPTH}")

    def or_(self) -> Node:
        node = self.and_()
        while self.at("or", "||"):
            self.take()
            node = ("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.at("and", "&&"):
            self.take()
            node = ("and", node, self.not_())
        return node

    def not_(self) -> Node:
        if self.at("not", "!"):
            self.take()
            self.nest()
            try:
                return ("not", self.not_())
            finally:
                self.depth -= 1
        return self.compare()

    def compare(self) -> Node:
        node = self.postfix()
        if self.at("==", "!=", "<", "<=", ">", ">="):
            op = self.take().text
            return ("cmp", op, node, self.postfix())
        if self.at("in"):
            self.take()
            return ("in", node, self.postfix())
        if self.at("not") and self.toks[self.i + 1].text == "in":
            self.i += 2
            return ("not", ("in", node, self.postfix()))
        return node

    def postfix(self) -> Node:
        node = self.primary()
        while True:
            if self.at(".", "?."):
                self.take()
                tok = self.take()
                if tok.kind != "name":
                    raise ExprError(f"expected a field name at offset {tok.pos}")
                node = ("get", node, ("lit", tok.text))
            elif self.at("["):
                self.take()
                key = self.or_()
                self.expect("]")
                node = ("get", node, key)
            elif self.at("("):
                tok = self.peek()
                raise ExprError(
                    f"function calls are not supported (offset {tok.pos}); the hub evaluates "
                    "member access, comparisons, in [...], and/or/not"
                )
            else:
                return node

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "num":
            return ("lit", float(tok.text) if "." in tok.text else int(tok.text))
        if tok.kind == "str":
            return ("lit", _unquote(tok.text))
        if tok.kind == "name":
            if tok.text in ("true", "false"):
                return ("lit", tok.text == "true")
            if tok.text in ("nil", "null"):
                return ("lit", None)
            if tok.text in ("and", "or", "not", "in"):
                raise ExprError(f"unexpected {tok.text!r} at offset {tok.pos}")
            return ("var", tok.text)
        if tok.text == "(":
            self.nest()
            node = self.or_()
            self.depth -= 1
            self.expect(")")
            return node
        if tok.text == "[":
            items: list[Node] = []
            while not self.at("]"):
                items.append(self.or_())
                if not self.at(","):
                    break
                self.take()
            self.expect("]")
            return ("list", tuple(items))
        raise ExprError(f"unexpected {tok.text or 'end of expression'!r} at offset {tok.pos}")


@dataclass(frozen=True)
class Expr:
    """A parsed condition; ``evaluate`` never raises for any data."""

    source: str
    tree: Node

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        return _eval(self.tree, env)


def parse(source: str) -> Expr:
    """Parse ``source``; raise ``ExprError`` for anything outside the subset."""
    if len(source) > MAX_LENGTH:
        raise ExprError(f"expression longer than {MAX_LENGTH} characters")
    if not source.strip():
        raise ExprError("empty expression")
    try:
        return Expr(source, _Parser(source).parse())
    except RecursionError:
        raise ExprError(f"expression nested deeper than {MAX_DEPTH}") from None


def truthy(value: Any) -> bool:
    return value is True


def _eval(node: Node, env: Mapping[str, Any]) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "var":
        return env.get(node[1])
    if kind == "get":
        base = _eval(node[1], env)
        key = _eval(node[2], env)
        if isinstance(base, Mapping) and isinstance(key, str):
            return base.get(key)
        if isinstance(base, list) and isinstance(key, int) and not isinstance(key, bool):
            return base[key] if -len(base) <= key < len(base) else None
        return None
    if kind == "list":
        return [_eval(n, env) for n in node[1]]
    if kind == "not":
        return not truthy(_eval(node[1], env))
    if kind == "and":
        return truthy(_eval(node[1], env)) and truthy(_eval(node[2], env))
    if kind == "or":
        return truthy(_eval(node[1], env)) or truthy(_eval(node[2], env))
    if kind == "in":
        item, seq = _eval(node[1], env), _eval(node[2], env)
        if isinstance(seq, list):
            return any(_equal(item, x) for x in seq)
        if isinstance(seq, Mapping):
            return isinstance(item, str) and item in seq
        return False
    if kind == "cmp":
        op, a, b = node[1], _eval(node[2], env), _eval(node[3], env)
        if op == "==":
            return _equal(a, b)
        if op == "!=":
            return not _equal(a, b)
        return _order(op, a, b)
    raise AssertionError(f"unknown node {kind}")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(type(a) is type(b) and a == b) or (
        isinstance(a, int | float) and isinstance(b, int | float) and a == b
    )


def _order(op: str, a: Any, b: Any) -> bool:
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))
    if not (numbers or (isinstance(a, str) and isinstance(b, str))):
        return False
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)
