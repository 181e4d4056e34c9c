"""Tokenizer for Go's text/template syntax (default ``{{ }}`` delimiters)."""

from __future__ import annotations

from dataclasses import dataclass

TEXT = "text"
LDELIM = "{{"
RDELIM = "}}"
FIELD = "field"
VAR = "variable"
IDENT = "identifier"
KEYWORD = "keyword"
BOOL = "bool"
NUMBER = "number"
CHAR = "char constant"
STRING = "string"
RAWSTRING = "raw string"
DOT = "."
NIL = "nil"
LPAREN = "("
RPAREN = ")"
PIPE = "|"
DECLARE = ":="
ASSIGN = "="
COMMA = ","
EOF = "EOF"

KEYWORDS = frozenset(
    {"block", "break", "continue", "define", "else", "end", "if", "range", "template", "with"}
)
_SPACE = " \t\r\n"


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    val: str
    pos: int
    space_before: bool = False

    def describe(self) -> str:
        if self.kind == EOF:
            return "EOF"
        if self.kind == KEYWORD:
            return f"<{self.val}>"
        if self.kind in (LDELIM, RDELIM):
            return f'"{self.val}"'
        return f"<{self.val}>" if self.kind != TEXT else repr(self.val)


class LexError(Exception):
    def __init__(self, pos: int, msg: str) -> None:
        super().__init__(msg)
        self.pos = pos
        self.msg = msg


def _is_alnum(ch: str) -> bool:
    return ch == "_" or ch.isalnum()


def lex(src: str) -> list[Token]:
    toks: list[Token] = []
    n = len(src)
    pos = 0
    trim_next = False
    while True:
        start = src.find("{{", pos)
        text_end = n if start < 0 else start
        text = src[pos:text_end]
        left_trim = False
        if start >= 0 and start + 3 < n + 1 and src[start + 2 : start + 3] == "-":
            after = src[start + 3 : start + 4]
            if after != "" and after in _SPACE:
                left_trim = True
        if trim_next:
            stripped = text.lstrip(_SPACE)
            text_pos = pos + (len(text) - len(stripped))
            text = stripped
        else:
            text_pos = pos
        if left_trim:
            text = text.rstrip(_SPACE)
        if text:
            toks.append(Token(TEXT, text, text_pos))
        if start < 0:
            toks.append(Token(EOF, "", n))
            return toks
        pos = start + 2
        if left_trim:
            pos += 2
        # comments: "{{/*" (after an optional trim marker), closed right before the delimiter
        if src.startswith("/*", pos):
            close = src.find("*/", pos + 2)
            if close < 0:
                raise LexError(start, "unclosed comment")
            p = close + 2
            if src.startswith("}}", p):
                pos, trim_next = p + 2, False
            elif p + 1 < n and src[p] in _SPACE and src.startswith("-}}", p + 1):
                pos, trim_next = p + 4, True
            else:
                raise LexError(start, "comment ends before closing delimiter")
            continue
        toks.append(Token(LDELIM, "{{", start))
        pos, trim_next = _lex_action(src, pos, toks)


def _lex_action(src: str, pos: int, toks: list[Token]) -> tuple[int, bool]:
    n = len(src)
    paren = 0
    space = False
    while True:
        if pos >= n:
            raise LexError(pos, "unclosed action")
        ch = src[pos]
        # right delimiter, optionally with a trim marker " -}}"
        if ch in _SPACE and src.startswith("-}}", pos + 1):
            if paren:
                raise LexError(pos, "unclosed left paren")
            toks.append(Token(RDELIM, "}}", pos + 2, True))
            return pos + 4, True
        if src.startswith("}}", pos):
            if paren:
                raise LexError(pos, "unclosed left paren")
            toks.append(Token(RDELIM, "}}", pos, space))
            return pos + 2, False
        if ch in _SPACE:
            space = True
            pos += 1
            continue
        start = pos
        if ch == "=":
            toks.append(Token(ASSIGN, "=", pos, space))
            pos += 1
        elif ch == ":":
            if not src.startswith(":=", pos):
                raise LexError(pos, "expected :=")
            toks.append(Token(DECLARE, ":=", pos, space))
            pos += 2
        elif ch == "|":
            toks.append(Token(PIPE, "|", pos, space))
            pos += 1
        elif ch == ",":
            toks.append(Token(COMMA, ",", pos, space))
            pos += 1
        elif ch == "(":
            paren += 1
            toks.append(Token(LPAREN, "(", pos, space))
            pos += 1
        elif ch == ")":
            paren -= 1
            if paren < 0:
                raise LexError(pos, "unexpected right paren")
            toks.append(Token(RPAREN, ")", pos, space))
            pos += 1
        elif ch == '"':
            pos = _scan_quoted(src, start, "unterminated quoted string")
            toks.append(Token(STRING, src[start:pos], start, space))
        elif ch == "`":
            end = src.find("`", pos + 1)
            if end < 0:
                raise LexError(start, "unterminated raw quoted string")
            pos = end + 1
            toks.append(Token(RAWSTRING, src[start:pos], start, space))
        elif ch == "'":
            pos = _scan_quoted(src, start, "unterminated character constant")
            toks.append(Token(CHAR, src[start:pos], start, space))
        elif ch == "$":
            pos += 1
            while pos < n and _is_alnum(src[pos]):
                pos += 1
            toks.append(Token(VAR, src[start:pos], start, space))
        elif ch == "." and not (pos + 1 < n and src[pos + 1].isdigit()):
            pos += 1
            if pos < n and _is_alnum(src[pos]):
                while pos < n and _is_alnum(src[pos]):
                    pos += 1
                toks.append(Token(FIELD, src[start:pos], start, space))
            else:
                toks.append(Token(DOT, ".", start, space))
        elif ch in "+-." or ch.isdigit():
            pos = _scan_number(src, pos)
            if pos < n and _is_alnum(src[pos]):
                raise LexError(start, f"bad number syntax: {src[start : pos + 1]!r}")
            toks.append(Token(NUMBER, src[start:pos], start, space))
        elif _is_alnum(ch):
            while pos < n and _is_alnum(src[pos]):
                pos += 1
            word = src[start:pos]
            if pos < n and not (
                src[pos] in _SPACE or src[pos] in ".,|:()" or src.startswith("}}", pos)
            ):
                raise LexError(pos, f"bad character {_char_repr(src[pos])}")
            if word in KEYWORDS:
                toks.append(Token(KEYWORD, word, start, space))
            elif word in ("true", "false"):
                toks.append(Token(BOOL, word, start, space))
            elif word == "nil":
                toks.append(Token(NIL, word, start, space))
            else:
                toks.append(Token(IDENT, word, start, space))
        else:
            raise LexError(pos, f"unrecognized character in action: {_char_repr(ch)}")
        space = False


def _scan_quoted(src: str, start: int, unterminated: str) -> int:
    """The end of the quoted literal opening at ``start`` (its quote char ends it)."""
    quote, n, pos = src[start], len(src), start + 1
    while True:
        if pos >= n or src[pos] == "\n":
            raise LexError(start, unterminated)
        c = src[pos]
        if c == "\\":
            pos += 2
            continue
        pos += 1
        if c == quote:
            return pos


def _char_repr(ch: str) -> str:
    return f"U+{ord(ch):04X} {ch!r}"


def _scan_number(src: str, pos: int) -> int:
    n = len(src)
    if pos < n and src[pos] in "+-":
        pos += 1
    digits = "0123456789_"
    if src.startswith(("0x", "0X"), pos):
        pos += 2
        digits = "0123456789abcdefABCDEF_"
    elif src.startswith(("0o", "0O"), pos):
        pos += 2
        digits = "01234567_"
    elif src.startswith(("0b", "0B"), pos):
        pos += 2
        digits = "01_"
    while pos < n and src[pos] in digits:
        pos += 1
    if pos < n and src[pos] == ".":
        pos += 1
        while pos < n and src[pos] in digits:
            pos += 1
    exp_chars = "pP" if digits.startswith("0123456789a") else "eE"
    if (digits == "0123456789_" or digits.startswith("0123456789a")) and (
        pos < n and src[pos] in exp_chars
    ):
        pos += 1
        if pos < n and src[pos] in "+-":
            pos += 1
        while pos < n and src[pos] in "0123456789_":
            pos += 1
    if pos < n and src[pos] == "i":
        pos += 1
    return pos
