"""Go text/template with sprig, as Argo CD renders ApplicationSets with ``goTemplate: true``.

    t = Template.parse("{{ .name | upper }}", name="spec.template.metadata.name")
    t.execute({"name": "a"})            # "A"
    render("{{ .x }}", {"x": 1.0})       # "1" (parsed once, cached by source)

Parse errors are raised at parse time as Go does (unknown functions, undefined variables,
syntax); execution errors carry Go's wording, the template name, line, column and node.

Language: text, actions, ``{{-``/``-}}`` trimming, comments, pipelines, parenthesised
pipelines, variables (``:=``, ``=``, ``$``), field chains on maps, ``if``/``else if``/
``with``/``else with``/``range`` (lists, maps in key order, integers) with ``else``,
``break``/``continue``, ``define``/``template``/``block``, all Go builtins (``call`` always
errors: data holds no functions). Not supported: complex numbers, custom delimiters, method
calls (data has none); ``template`` calls nest at most 100 deep (Go: 100000); one
execution runs at most ``limits.MAX_STEPS`` range iterations and template calls and
writes at most ``limits.MAX_OUTPUT`` characters (Go has no such bounds).
Functions: see ``FUNCTIONS`` (Go builtins + ``sprig.SPRIG_FUNCTIONS``, listed by family in
``sprig.FAMILIES``), ``tpl`` (Argo CD, compiled by the engine) and
``sprig.UNAVAILABLE`` (sprig functions refused with a reason).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from generators.gotemplate import compile as C
from generators.gotemplate import lexer, limits, parser
from generators.gotemplate.builtins import BUILTINS, SPECIAL
from generators.gotemplate.errors import FuncError, TemplateError, line_col
from generators.gotemplate.funcs import Func
from generators.gotemplate.sprig import SPRIG_FUNCTIONS, UNAVAILABLE
from generators.gotemplate.values import MISSING

__all__ = ["FUNCTIONS", "UNAVAILABLE", "Template", "TemplateError", "render"]

# sprig entries override Go builtins of the same name, as with text/template's Funcs
# (this matters for ``slice``).
FUNCTIONS: dict[str, Func] = {**BUILTINS, **SPRIG_FUNCTIONS}
_KNOWN = frozenset(FUNCTIONS) | SPECIAL

MissingKey = Literal["default", "zero", "error"]
_MODES = {"default": C.MODE_DEFAULT, "invalid": C.MODE_DEFAULT, "zero": C.MODE_ZERO}
_MODES["error"] = C.MODE_ERROR


def _has_func(name: str) -> bool:
    return name in _KNOWN


class Template:
    """A parsed and compiled template set: the main template plus its ``define``s."""

    __slots__ = ("_bodies", "_main", "_static", "name", "source")
    source: str
    name: str
    _static: str | None
    _bodies: dict[str, C.Stmt]
    _main: C.Stmt

    def __init__(self) -> None:
        raise TypeError("use Template.parse(source)")

    @classmethod
    def parse(cls, source: str, *, name: str = "template") -> Template:
        self = object.__new__(cls)
        self.source = source
        self.name = name
        self._static = source if "{{" not in source else None
        self._bodies = {}
        if self._static is not None:
            self._main = _no_op
            return self
        try:
            tree = parser.parse(source, _has_func)
        except lexer.LexError as e:
            raise _parse_error(source, name, e.pos, e.msg) from None
        except parser.ParseError as e:
            msg = e.msg
            if msg.startswith("function ") and msg.endswith(" not defined"):
                fname = msg.split('"')[1]
                if fname in UNAVAILABLE:
                    msg = f'function "{fname}" not defined: {UNAVAILABLE[fname]}'
            raise _parse_error(source, name, e.pos, msg) from None
        except RecursionError:
            raise TemplateError(
                f"template: {name}: template nests too deeply to parse", name=name
            ) from None
        comp = C.Compiler(source, name, FUNCTIONS)
        try:
            if name in tree.defines and any(
                not (isinstance(n, parser.TextNode) and not n.text.strip()) for n in tree.root
            ):
                raise TemplateError(
                    f'template: {name}: multiple definition of template "{name}"', name=name
                )
            self._main = comp.body(tree.root, name)
            for dname, body in tree.defines.items():
                self._bodies[dname] = comp.body(body, dname)
        except RecursionError:
            raise TemplateError(
                f"template: {name}: template nests too deeply to compile", name=name
            ) from None
        if name in self._bodies:
            # Go keeps a non-empty define over an empty main template of the same name
            self._main = self._bodies[name]
        else:
            self._bodies[name] = self._main
        return self

    def execute(self, data: Any, *, missing_key: MissingKey = "default") -> str:
        """Render with ``data`` as dot and ``$``; ``missing_key`` is Go's missingkey option."""
        if self._static is not None:
            return self._static
        mode = _MODES.get(missing_key)
        if mode is None:
            raise TemplateError(f"template: {self.name}: unknown missingkey option {missing_key!r}")
        if data is None:
            # Go's reflect.ValueOf(nil) is the invalid value, not a nil interface
            data = MISSING
        st = C.State(mode, self._bodies, data)
        out: list[str] = []
        try:
            self._main(st, data, out)
        except (C._Break, C._Continue):  # pragma: no cover - the parser forbids this
            raise TemplateError(f"template: {self.name}: break/continue outside range") from None
        except RecursionError:
            raise TemplateError(
                f"template: {self.name}: value or template nests too deeply", name=self.name
            ) from None
        except FuncError as e:  # a limit hit while printing a value outside any function
            raise TemplateError(f"template: {self.name}: {e}", name=self.name) from None
        text = "".join(out)
        if len(text) > limits.MAX_OUTPUT:
            raise TemplateError(
                f"template: {self.name}: output longer than {limits.MAX_OUTPUT:,} characters: "
                "over gitops-hub's execution limit",
                name=self.name,
            )
        return text

    def __repr__(self) -> str:
        return f"Template(name={self.name!r})"


def parse_for_tpl(source: str, name: str) -> tuple[C.Stmt, dict[str, C.Stmt]]:
    """The compiled body and defines of a ``tpl`` argument (parsed once per source)."""
    t = _cached(source, name)
    if t._static is not None:
        text = t._static
        return (lambda st, dot, out: out.append(text)), {}
    return t._main, t._bodies


def _no_op(st: C.State, dot: Any, out: list[str]) -> None:
    return None


def _parse_error(source: str, name: str, pos: int, msg: str) -> TemplateError:
    line, col = line_col(source, pos)
    return TemplateError(f"template: {name}:{line}:{col}: {msg}", name=name, line=line, col=col)


@lru_cache(maxsize=4096)
def _cached(source: str, name: str) -> Template:
    return Template.parse(source, name=name)


def render(
    source: str, data: Any, *, missing_key: MissingKey = "default", name: str = "template"
) -> str:
    """Parse (cached by source and name) and execute."""
    if "{{" not in source:
        return source
    return _cached(source, name).execute(data, missing_key=missing_key)
