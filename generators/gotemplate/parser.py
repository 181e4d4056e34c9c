"""Parser for Go's text/template: tokens to an AST, with Go's parse-time checks.

Checks done here as Go does them: unknown functions, undefined variables, ``break`` and
``continue`` outside ``range``, misplaced ``else``/``end``, empty pipelines, non-executable
pipeline stages, duplicate ``define``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from generators.gotemplate import lexer as L
from generators.gotemplate.lexer import Token

# --- AST ----------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Node:
    pos: int


@dataclass(slots=True, eq=False)
class TextNode(Node):
    text: str


@dataclass(slots=True, eq=False)
class DotNode(Node):
    pass


@dataclass(slots=True, eq=False)
class NilNode(Node):
    pass


@dataclass(slots=True, eq=False)
class BoolNode(Node):
    value: bool


@dataclass(slots=True, eq=False)
class NumberNode(Node):
    text: str
    value: int | float  # what the constant evaluates to as a command (int or float64)
    int_value: int | None  # the value when an int parameter receives it (Go's IsInt)


@dataclass(slots=True, eq=False)
class StringNode(Node):
    value: str


@dataclass(slots=True, eq=False)
class FieldNode(Node):
    idents: tuple[str, ...]


@dataclass(slots=True, eq=False)
class VariableNode(Node):
    name: str
    idents: tuple[str, ...]


@dataclass(slots=True, eq=False)
class IdentifierNode(Node):
    name: str


@dataclass(slots=True, eq=False)
class ChainNode(Node):
    node: Node
    idents: tuple[str, ...]


@dataclass(slots=True, eq=False)
class CommandNode(Node):
    args: list[Node]
    src: str = ""


@dataclass(slots=True, eq=False)
class PipeNode(Node):
    decl: list[str]
    is_assign: bool
    cmds: list[CommandNode]
    src: str = ""


@dataclass(slots=True, eq=False)
class ActionNode(Node):
    pipe: PipeNode


@dataclass(slots=True, eq=False)
class BranchNode(Node):
    kind: str  # "if", "with", "range"
    pipe: PipeNode
    body: list[Node]
    else_body: list[Node] | None


@dataclass(slots=True, eq=False)
class TemplateNode(Node):
    name: str
    pipe: PipeNode | None
    src: str = ""


@dataclass(slots=True, eq=False)
class BreakNode(Node):
    pass


@dataclass(slots=True, eq=False)
class ContinueNode(Node):
    pass


@dataclass(slots=True, eq=False)
class _End(Node):
    pass


@dataclass(slots=True, eq=False)
class _Else(Node):
    pass


@dataclass(slots=True)
class ParsedSet:
    """A main template and the templates it defines (``define``/``block``)."""

    root: list[Node]
    defines: dict[str, list[Node]] = field(default_factory=dict)


class ParseError(Exception):
    def __init__(self, pos: int, msg: str) -> None:
        super().__init__(msg)
        self.pos = pos
        self.msg = msg


# --- number and string literals -----------------------------------------------------------

_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
}


def unquote(tok: Token) -> str:
    """strconv.Unquote of a Go string, raw string or char literal body."""
    s = tok.val
    if s[0] == "`":
        return s[1:-1].replace("\r", "")
    quote = s[0]
    body = s[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            if c == quote:
                raise ParseError(tok.pos, f"invalid syntax: {s}")
            out.append(c)
            i += 1
            continue
        i += 1
        if i >= len(body):
            raise ParseError(tok.pos, f"invalid syntax: {s}")
        e = body[i]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 1
        elif e == quote:
            out.append(e)
            i += 1
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            hexs = body[i + 1 : i + 1 + width]
            if len(hexs) != width or not all(h in "0123456789abcdefABCDEF" for h in hexs):
                raise ParseError(tok.pos, f"invalid syntax: {s}")
            code = int(hexs, 16)
            if e == "x":
                # \xHH is a byte; for ASCII it is the same character.
                if code >= 0x80:
                    raise ParseError(tok.pos, f"unsupported non-ASCII \\x escape in {s}")
            elif code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise ParseError(tok.pos, f"invalid syntax: {s}")
            out.append(chr(code))
            i += 1 + width
        elif e in "01234567":
            octs = body[i : i + 3]
            if len(octs) != 3 or not all(o in "01234567" for o in octs):
                raise ParseError(tok.pos, f"invalid syntax: {s}")
            code = int(octs, 8)
            if code >= 0x80:
                raise ParseError(tok.pos, f"unsupported non-ASCII octal escape in {s}")
            out.append(chr(code))
            i += 3
        else:
            raise ParseError(tok.pos, f"invalid syntax: {s}")
    return "".join(out)


_INT_RE = re.compile(r"[+-]?(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|0[0-7_]*|[1-9][0-9_]*)")
_FLOAT_RE = re.compile(
    r"[+-]?(\d[\d_]*\.?[\d_]*([eE][+-]?\d[\d_]*)?|\.\d[\d_]*([eE][+-]?\d[\d_]*)?)"
)


def parse_number(tok: Token) -> NumberNode:
    text = tok.val
    if tok.kind == L.CHAR:
        ch = unquote(tok)
        if len(ch) != 1:
            raise ParseError(tok.pos, f"malformed character constant: {text}")
        return NumberNode(tok.pos, text, ord(ch), ord(ch))
    if text.endswith("i"):
        raise ParseError(tok.pos, f"complex number constant {text} is not supported")
    if _INT_RE.fullmatch(text) and "__" not in text and not text.endswith("_"):
        body = text.lstrip("+-")
        neg = text.startswith("-")
        if len(body) > 1 and body[0] == "0" and body[1] in "0123456789_":
            value = int(body.replace("_", ""), 8)
        else:
            value = int(body.replace("_", ""), 0)
        if neg:
            value = -value
        if not -(2**63) <= value < 2**63:
            raise ParseError(tok.pos, f"integer constant {text} overflows int")
        return NumberNode(tok.pos, text, value, value)
    if text.lower().startswith(("0x", "+0x", "-0x")):
        try:
            f = float.fromhex(text.replace("_", ""))
        except ValueError:
            raise ParseError(tok.pos, f'illegal number syntax: "{text}"') from None
    else:
        if not _FLOAT_RE.fullmatch(text):
            raise ParseError(tok.pos, f'illegal number syntax: "{text}"')
        try:
            f = float(text.replace("_", ""))
        except ValueError:
            raise ParseError(tok.pos, f'illegal number syntax: "{text}"') from None
    iv = int(f) if f.is_integer() and abs(f) < 2**63 else None
    if iv is not None and not any(c in text for c in ".eEpP"):
        # Go: "08" is no valid int literal but parses as a float, and without a
        # point or exponent the constant is used as an int
        return NumberNode(tok.pos, text, iv, iv)
    return NumberNode(tok.pos, text, f, iv)


# --- parser -------------------------------------------------------------------------------


class Parser:
    def __init__(self, src: str, toks: list[Token], has_func: Callable[[str], bool]) -> None:
        self.src = src
        self.toks = toks
        self.i = 0
        self.has_func = has_func
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.defines: dict[str, list[Node]] = {}

    # token helpers
    def peek(self) -> Token:
        return self.toks[self.i]

    def next(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def err(self, pos: int, msg: str) -> ParseError:
        return ParseError(pos, msg)

    def unexpected(self, tok: Token, context: str) -> ParseError:
        if tok.kind == L.EOF:
            return self.err(tok.pos, f"unexpected EOF in {context}")
        if tok.kind == L.RDELIM:
            return self.err(tok.pos, f'unexpected "}}}}" in {context}')
        return self.err(tok.pos, f"unexpected {tok.describe()} in {context}")

    # top level
    def parse(self) -> ParsedSet:
        root: list[Node] = []
        while self.peek().kind != L.EOF:
            tok = self.peek()
            if (
                tok.kind == L.LDELIM
                and self.toks[self.i + 1].kind == L.KEYWORD
                and self.toks[self.i + 1].val == "define"
            ):
                self.i += 2
                self.parse_define()
                continue
            n = self.text_or_action()
            if isinstance(n, _End):
                raise self.err(n.pos, "unexpected {{end}}")
            if isinstance(n, _Else):
                raise self.err(n.pos, "unexpected {{else}}")
            root.append(n)
        return ParsedSet(root, self.defines)

    def template_name(self, tok: Token, context: str) -> str:
        if tok.kind not in (L.STRING, L.RAWSTRING):
            raise self.unexpected(tok, context)
        return unquote(tok)

    def add_define(self, pos: int, name: str, body: list[Node]) -> None:
        old = self.defines.get(name)
        if old is not None and _non_empty(old) and _non_empty(body):
            raise self.err(pos, f'template: multiple definition of template "{name}"')
        if old is None or not _non_empty(old):
            self.defines[name] = body

    def sub_tree(self) -> tuple[list[Node], Node]:
        saved_vars, saved_depth = self.vars, self.range_depth
        self.vars, self.range_depth = ["$"], 0
        try:
            return self.item_list()
        finally:
            self.vars, self.range_depth = saved_vars, saved_depth

    def parse_define(self) -> None:
        tok = self.next()
        name = self.template_name(tok, "define clause")
        end = self.next()
        if end.kind != L.RDELIM:
            raise self.unexpected(end, "define clause")
        body, last = self.sub_tree()
        if not isinstance(last, _End):
            raise self.err(last.pos, "unexpected {{else}} in define clause")
        self.add_define(tok.pos, name, body)

    def item_list(self) -> tuple[list[Node], Node]:
        items: list[Node] = []
        while self.peek().kind != L.EOF:
            n = self.text_or_action()
            if isinstance(n, (_End, _Else)):
                return items, n
            items.append(n)
        raise self.err(self.peek().pos, "unexpected EOF")

    def text_or_action(self) -> Node:
        tok = self.next()
        if tok.kind == L.TEXT:
            return TextNode(tok.pos, tok.val)
        if tok.kind == L.LDELIM:
            return self.action()
        raise self.unexpected(tok, "input")

    def action(self) -> Node:
        tok = self.peek()
        if tok.kind == L.KEYWORD:
            self.i += 1
            kw = tok.val
            if kw in ("if", "with", "range"):
                return self.control(kw, tok)
            if kw == "end":
                self.expect_rdelim("end")
                return _End(tok.pos)
            if kw == "else":
                nxt = self.peek()
                if nxt.kind == L.KEYWORD and nxt.val in ("if", "with"):
                    return _Else(tok.pos)
                self.expect_rdelim("else")
                return _Else(tok.pos)
            if kw in ("break", "continue"):
                self.expect_rdelim("{{" + kw + "}}")
                if self.range_depth == 0:
                    raise self.err(tok.pos, f"{{{{{kw}}}}} outside {{{{range}}}}")
                return BreakNode(tok.pos) if kw == "break" else ContinueNode(tok.pos)
            if kw == "template":
                return self.template_control(tok)
            if kw == "block":
                return self.block_control(tok)
            raise self.unexpected(tok, "command")
        return ActionNode(tok.pos, self.pipeline("command", L.RDELIM))

    def expect_rdelim(self, context: str) -> None:
        t = self.next()
        if t.kind != L.RDELIM:
            raise self.unexpected(t, context)

    def control(self, kind: str, tok: Token) -> BranchNode:
        nvars = len(self.vars)
        try:
            pipe = self.pipeline(kind, L.RDELIM)
            if kind == "range":
                self.range_depth += 1
            body, nxt = self.item_list()
            if kind == "range":
                self.range_depth -= 1
            else_body: list[Node] | None = None
            if isinstance(nxt, _Else):
                p = self.peek()
                if kind in ("if", "with") and p.kind == L.KEYWORD and p.val == kind:
                    self.i += 1
                    else_body = [self.control(kind, p)]
                else:
                    else_body, nxt2 = self.item_list()
                    if not isinstance(nxt2, _End):
                        raise self.err(nxt2.pos, "expected end; found {{else}}")
            return BranchNode(tok.pos, kind, pipe, body, else_body)
        finally:
            del self.vars[nvars:]

    def template_control(self, tok: Token) -> TemplateNode:
        ctx = "template clause"
        name_tok = self.next()
        name = self.template_name(name_tok, ctx)
        pipe = None
        if self.peek().kind == L.RDELIM:
            self.i += 1
        else:
            pipe = self.pipeline(ctx, L.RDELIM)
        return TemplateNode(tok.pos, name, pipe, self._slice(tok.pos))

    def block_control(self, tok: Token) -> TemplateNode:
        ctx = "block clause"
        name_tok = self.next()
        name = self.template_name(name_tok, ctx)
        pipe = self.pipeline(ctx, L.RDELIM)
        body, end = self.sub_tree()
        if not isinstance(end, _End):
            raise self.err(end.pos, f"unexpected {{{{else}}}} in {ctx}")
        self.add_define(name_tok.pos, name, body)
        return TemplateNode(tok.pos, name, pipe, f'template "{name}" {pipe.src}')

    def _slice(self, start: int) -> str:
        end = self.toks[self.i - 1].pos if self.i > 0 else start
        return " ".join(self.src[start:end].split())

    def pipeline(self, context: str, end: str) -> PipeNode:
        start_tok = self.peek()
        decl: list[str] = []
        is_assign = False
        while True:
            v = self.peek()
            if v.kind != L.VAR:
                break
            nxt = self.toks[self.i + 1]
            if nxt.kind in (L.DECLARE, L.ASSIGN):
                self.i += 2
                is_assign = nxt.kind == L.ASSIGN
                # Go checks an assigned variable only when it executes
                decl.append(v.val)
                self.vars.append(v.val)
                break
            if nxt.kind == L.COMMA:
                self.i += 2
                decl.append(v.val)
                self.vars.append(v.val)
                if context == "range" and len(decl) < 2:
                    p = self.peek()
                    if p.kind in (L.VAR, L.RDELIM, L.RPAREN):
                        continue
                    raise self.err(p.pos, "range can only initialize variables")
                raise self.err(v.pos, f"too many declarations in {context}")
            break
        cmds: list[CommandNode] = []
        while True:
            tok = self.peek()
            if tok.kind == end:
                self.i += 1
                src = " ".join(self.src[start_tok.pos : tok.pos].split())
                if not cmds:
                    raise self.err(tok.pos, f"missing value for {context}")
                for idx, c in enumerate(cmds[1:]):
                    if isinstance(c.args[0], (BoolNode, DotNode, NilNode, NumberNode, StringNode)):
                        raise self.err(c.pos, f"non executable command in pipeline stage {idx + 2}")
                return PipeNode(start_tok.pos, decl, is_assign, cmds, src)
            if tok.kind in (
                L.BOOL,
                L.CHAR,
                L.DOT,
                L.FIELD,
                L.IDENT,
                L.NUMBER,
                L.NIL,
                L.RAWSTRING,
                L.STRING,
                L.VAR,
                L.LPAREN,
            ):
                cmds.append(self.command())
            elif tok.kind == L.DECLARE or tok.kind == L.ASSIGN:
                raise self.err(tok.pos, f"unexpected {tok.val!r} in {context}")
            else:
                raise self.unexpected(tok, context)

    def command(self) -> CommandNode:
        start = self.peek().pos
        args: list[Node] = []
        while True:
            operand = self.operand()
            if operand is not None:
                args.append(operand)
            tok = self.peek()
            if tok.kind in (L.RDELIM, L.RPAREN):
                break
            if tok.kind == L.PIPE:
                self.i += 1
                break
            if operand is None or not tok.space_before:
                raise self.unexpected(tok, "operand")
        if not args:
            raise self.err(start, "empty command")
        end = self.peek().pos
        return CommandNode(start, args, " ".join(self.src[start:end].split()))

    def operand(self) -> Node | None:
        node = self.term()
        if node is None:
            return None
        idents: list[str] = []
        while self.peek().kind == L.FIELD and not self.peek().space_before:
            idents.append(self.next().val[1:])
        if idents:
            if isinstance(node, FieldNode):
                return FieldNode(node.pos, node.idents + tuple(idents))
            if isinstance(node, VariableNode):
                return VariableNode(node.pos, node.name, node.idents + tuple(idents))
            if isinstance(node, (BoolNode, StringNode, NumberNode, NilNode, DotNode)):
                raise self.err(node.pos, "unexpected . after term")
            return ChainNode(node.pos, node, tuple(idents))
        return node

    def term(self) -> Node | None:
        tok = self.peek()
        k = tok.kind
        if k == L.IDENT:
            self.i += 1
            if not self.has_func(tok.val):
                raise self.err(tok.pos, f'function "{tok.val}" not defined')
            return IdentifierNode(tok.pos, tok.val)
        if k == L.DOT:
            self.i += 1
            return DotNode(tok.pos)
        if k == L.NIL:
            self.i += 1
            return NilNode(tok.pos)
        if k == L.VAR:
            self.i += 1
            if tok.val not in self.vars:
                raise self.err(tok.pos, f'undefined variable "{tok.val}"')
            return VariableNode(tok.pos, tok.val, ())
        if k == L.FIELD:
            self.i += 1
            return FieldNode(tok.pos, (tok.val[1:],))
        if k == L.BOOL:
            self.i += 1
            return BoolNode(tok.pos, tok.val == "true")
        if k in (L.NUMBER, L.CHAR):
            self.i += 1
            return parse_number(tok)
        if k in (L.STRING, L.RAWSTRING):
            self.i += 1
            return StringNode(tok.pos, unquote(tok))
        if k == L.LPAREN:
            self.i += 1
            return self.pipeline("parenthesized pipeline", L.RPAREN)
        return None


def _non_empty(body: list[Node]) -> bool:
    return any(not (isinstance(n, TextNode) and not n.text.strip()) for n in body)


def parse(src: str, has_func: Callable[[str], bool]) -> ParsedSet:
    """Parse a template source; raises LexError or ParseError with a source offset."""
    toks = L.lex(src)
    return Parser(src, toks, has_func).parse()
