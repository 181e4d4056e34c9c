"""Compile the AST once into Python closures; executing a template only calls closures.

Each expression becomes ``f(st, dot) -> value`` and each statement ``f(st, dot, out)``.
Values follow values.py: ``None`` is a nil interface, ``MISSING`` Go's invalid value. As in Go,
the result of every pipeline stage is unwrapped, so a nil interface becomes ``MISSING``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from generators.gotemplate import parser as P
from generators.gotemplate.errors import FuncError, TemplateError, line_col
from generators.gotemplate.funcs import ANY, BOOL, FLOAT, INT, STRING, ArgError, Func, convert
from generators.gotemplate.limits import MAX_OUTPUT, MAX_STEPS, check_length, check_result
from generators.gotemplate.values import (
    MISSING,
    Int64,
    go_quote,
    is_true,
    sorted_keys,
    to_output,
    type_name,
)

MAX_DEPTH = 100
MODE_DEFAULT, MODE_ZERO, MODE_ERROR = 0, 1, 2

Expr = Callable[["State", Any], Any]
Stmt = Callable[["State", Any, list[str]], None]
Cmd = Callable[["State", Any, Any], Any]

_NOFINAL: Any = object()


class State:
    __slots__ = ("bodies", "counted", "depth", "mode", "size", "steps", "vars")

    def __init__(self, mode: int, bodies: dict[str, Stmt], root: Any) -> None:
        self.mode = mode
        self.bodies = bodies
        self.vars: list[tuple[str, Any]] = [("$", root)]
        self.depth = 0
        # limits.py: range iterations and template calls so far; characters of the
        # output pieces out[:counted]
        self.steps = 0
        self.counted = 0
        self.size = 0

    def over_output(self, out: list[str]) -> bool:
        """Has the output passed MAX_OUTPUT? Sums only the pieces added since last time."""
        if len(out) != self.counted:
            self.size += sum(map(len, out[self.counted :]))
            self.counted = len(out)
        return self.size > MAX_OUTPUT


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


# --- Go's String() of nodes, for "executing ... at <node>" --------------------------------


def node_str(n: P.Node) -> str:
    if isinstance(n, P.FieldNode):
        return "." + ".".join(n.idents)
    if isinstance(n, P.VariableNode):
        return n.name + "".join("." + i for i in n.idents)
    if isinstance(n, P.DotNode):
        return "."
    if isinstance(n, P.NilNode):
        return "nil"
    if isinstance(n, P.BoolNode):
        return "true" if n.value else "false"
    if isinstance(n, P.NumberNode):
        return n.text
    if isinstance(n, P.StringNode):
        return go_quote(n.value)
    if isinstance(n, P.IdentifierNode):
        return n.name
    if isinstance(n, P.ChainNode):
        inner = node_str(n.node)
        if isinstance(n.node, P.PipeNode):
            inner = "(" + inner + ")"
        return inner + "".join("." + i for i in n.idents)
    if isinstance(n, P.CommandNode):
        return " ".join(
            "(" + node_str(a) + ")" if isinstance(a, P.PipeNode) else node_str(a) for a in n.args
        )
    if isinstance(n, P.PipeNode):
        s = ""
        if n.decl:
            s = ", ".join(n.decl) + (" = " if n.is_assign else " := ")
        return s + " | ".join(node_str(c) for c in n.cmds)
    return ""


class Compiler:
    def __init__(self, src: str, name: str, funcs: dict[str, Func]) -> None:
        self.src = src
        self.name = name
        self.funcs = funcs
        self.tname = name

    # errors ------------------------------------------------------------------------------
    def error(self, node: P.Node, msg: str, tname: str | None = None) -> TemplateError:
        line, col = line_col(self.src, node.pos)
        where = node_str(node)
        return TemplateError(
            f'template: {self.name}:{line}:{col}: executing "{tname or self.tname}" '
            f"at <{where}>: {msg}",
            name=self.name,
            line=line,
            col=col,
        )

    def failing(self, node: P.Node, msg: str) -> Callable[..., Any]:
        tname = self.tname

        def fail(*_: Any) -> Any:
            raise self.error(node, msg, tname)

        return fail

    # bodies ------------------------------------------------------------------------------
    def body(self, nodes: list[P.Node], tname: str) -> Stmt:
        saved = self.tname
        self.tname = tname
        try:
            return self.stmts(nodes)
        finally:
            self.tname = saved

    def stmts(self, nodes: list[P.Node]) -> Stmt:
        parts: list[str | Expr] = []
        general: list[Stmt] = []
        simple = True
        for n in nodes:
            if isinstance(n, P.TextNode):
                parts.append(n.text)
            elif isinstance(n, P.ActionNode) and not n.pipe.decl:
                parts.append(self.output_expr(n.pipe))
            else:
                simple = False
        if simple:
            return _simple_body(_merge_text(parts))
        for n in nodes:
            general.append(self.stmt(n))
        if len(general) == 1:
            return general[0]
        seq = tuple(general)

        def run(st: State, dot: Any, out: list[str]) -> None:
            for s in seq:
                s(st, dot, out)

        return run

    def stmt(self, n: P.Node) -> Stmt:
        if isinstance(n, P.TextNode):
            text = n.text

            def emit(st: State, dot: Any, out: list[str]) -> None:
                out.append(text)

            return emit
        if isinstance(n, P.ActionNode):
            pipe = self.pipe(n.pipe)
            if n.pipe.decl:

                def declare(st: State, dot: Any, out: list[str]) -> None:
                    pipe(st, dot)

                return declare

            out_pipe = self.output_expr(n.pipe)

            def action(st: State, dot: Any, out: list[str]) -> None:
                out.append(to_output(out_pipe(st, dot)))

            return action
        if isinstance(n, P.BranchNode):
            if n.kind == "range":
                return self.range_(n)
            return self.if_with(n)
        if isinstance(n, P.TemplateNode):
            return self.template(n)
        if isinstance(n, P.BreakNode):

            def brk(st: State, dot: Any, out: list[str]) -> None:
                raise _Break

            return brk
        if isinstance(n, P.ContinueNode):

            def cont(st: State, dot: Any, out: list[str]) -> None:
                raise _Continue

            return cont
        raise AssertionError(f"unknown node {n!r}")

    def if_with(self, n: P.BranchNode) -> Stmt:
        pipe = self.pipe(n.pipe)
        body = self.stmts(n.body)
        els = self.stmts(n.else_body) if n.else_body is not None else None
        is_with = n.kind == "with"

        def run(st: State, dot: Any, out: list[str]) -> None:
            mark = len(st.vars)
            v = pipe(st, dot)
            if is_true(v):
                body(st, v if is_with else dot, out)
            elif els is not None:
                els(st, dot, out)
            del st.vars[mark:]

        return run

    def range_(self, n: P.BranchNode) -> Stmt:
        decl = n.pipe.decl
        is_assign = n.pipe.is_assign
        pipe = self.pipe(n.pipe)
        body = self.stmts(n.body)
        els = self.stmts(n.else_body) if n.else_body is not None else None
        fail = self.error
        tname = self.tname
        ndecl = len(decl)
        names = tuple(decl)
        where = "range " + node_str(n.pipe)

        def run(st: State, dot: Any, out: list[str]) -> None:
            mark0 = len(st.vars)
            v = pipe(st, dot)
            items: Any
            if isinstance(v, list):
                items = enumerate(v)
            elif isinstance(v, dict):
                items = ((k, v[k]) for k in sorted_keys(v))
            elif type(v) is int or type(v) is Int64:
                if ndecl > 1:
                    raise fail(n, f"can't use {v} to iterate over more than one variable", tname)
                items = ((i, i) for i in range(int(v)))
            elif v is None or v is MISSING:
                items = ()
            else:
                raise fail(n, f"range can't iterate over {to_output(v)}", tname)
            vs = st.vars
            mark = len(vs)
            ran = False
            try:
                for idx, elem in items:
                    ran = True
                    st.steps += 1
                    if st.steps > MAX_STEPS or (len(out) != st.counted and st.over_output(out)):
                        raise TemplateError(_limit_msg(self, n, tname, st, where))
                    if ndecl:
                        if is_assign:
                            ok = _set_var(vs, names[0], idx if ndecl > 1 else elem)
                            if ndecl > 1:
                                ok = _set_var(vs, names[1], elem) and ok
                            if not ok:
                                raise fail(n, f"undefined variable: {', '.join(names)}", tname)
                        else:
                            vs[mark - 1] = (vs[mark - 1][0], elem)
                            if ndecl > 1:
                                vs[mark - 2] = (vs[mark - 2][0], idx)
                    # a bare try is cheaper than contextlib.suppress on this hot path
                    try:  # noqa: SIM105
                        body(st, elem, out)
                    except _Continue:
                        pass
                    del vs[mark:]
            except _Break:
                del vs[mark:]
            if not ran and els is not None:
                els(st, dot, out)
            del vs[mark0:]

        return run

    def template(self, n: P.TemplateNode) -> Stmt:
        pipe = self.pipe(n.pipe) if n.pipe is not None else None
        name = n.name
        tname = self.tname
        node = n
        where = f'{{{{template "{name}"' + (f" {node_str(n.pipe)}" if n.pipe else "") + "}}"

        def run(st: State, dot: Any, out: list[str]) -> None:
            body = st.bodies.get(name)
            if body is None:
                raise TemplateError(
                    _msg(self, node, tname, f'template "{name}" not defined', where)
                )
            new_dot = pipe(st, dot) if pipe is not None else MISSING
            if st.depth >= MAX_DEPTH:
                raise TemplateError(
                    _msg(
                        self,
                        node,
                        tname,
                        f"exceeded maximum template depth ({MAX_DEPTH})",
                        where,
                    )
                )
            st.steps += 1
            if st.steps > MAX_STEPS or st.over_output(out):
                raise TemplateError(_limit_msg(self, node, tname, st, where))
            saved = st.vars
            st.vars = [("$", new_dot)]
            st.depth += 1
            try:
                body(st, new_dot, out)
            finally:
                st.depth -= 1
                st.vars = saved

        return run

    # pipelines ---------------------------------------------------------------------------
    def output_expr(self, p: P.PipeNode) -> Expr:
        """A pipeline whose value is only printed: nil and missing print alike, so the
        None -> MISSING unwrapping and the command layer can be skipped."""
        if not p.decl and len(p.cmds) == 1 and len(p.cmds[0].args) == 1:
            first = p.cmds[0].args[0]
            if isinstance(first, P.FieldNode | P.VariableNode | P.ChainNode | P.DotNode):
                return self.expr(first)
        return self.pipe(p)

    def pipe(self, p: P.PipeNode) -> Expr:
        cmds = [self.command(c, i > 0) for i, c in enumerate(p.cmds)]
        decl = p.decl
        first = cmds[0]
        rest = tuple(cmds[1:])
        if not rest:
            evaluate: Expr = lambda st, dot: first(st, dot, _NOFINAL)  # noqa: E731
        else:

            def evaluate(st: State, dot: Any) -> Any:
                v = first(st, dot, _NOFINAL)
                for c in rest:
                    v = c(st, dot, v)
                return v

        if not decl:
            return evaluate
        name = decl[0]
        if p.is_assign:
            fail = self.error
            tname = self.tname

            def assign(st: State, dot: Any) -> Any:
                v = evaluate(st, dot)
                for nm in decl:
                    if not _set_var(st.vars, nm, v):
                        raise fail(p, f"undefined variable: {nm}", tname)
                return v

            return assign

        def declare(st: State, dot: Any) -> Any:
            v = evaluate(st, dot)
            for nm in decl:
                st.vars.append((nm, v))
            return v

        _ = name
        return declare

    def command(self, c: P.CommandNode, has_final: bool) -> Cmd:
        first = c.args[0]
        args = c.args
        if isinstance(first, P.IdentifierNode):
            return self.call(c, first.name, args[1:], has_final)
        extra = len(args) > 1 or has_final
        if isinstance(first, P.FieldNode):
            if extra:
                return self.field_with_args(first, self.dot_expr(), first.idents)
            f = self.field(first)
            return lambda st, dot, final: _unwrap(f(st, dot))
        if isinstance(first, P.VariableNode):
            if extra:
                if not first.idents:
                    return self.failing(
                        first, f"can't give argument to non-function {node_str(first)}"
                    )
                return self.field_with_args(first, self.var(first.name, first), first.idents)
            f = self.expr(first)
            return lambda st, dot, final: _unwrap(f(st, dot))
        if isinstance(first, P.ChainNode):
            if extra:
                return self.field_with_args(first, self.chain_base(first), first.idents)
            f = self.expr(first)
            return lambda st, dot, final: _unwrap(f(st, dot))
        if extra:
            return self.failing(first, f"can't give argument to non-function {node_str(first)}")
        if isinstance(first, P.NilNode):
            return self.failing(first, "nil is not a command")
        f = self.expr(first)
        return lambda st, dot, final: _unwrap(f(st, dot))

    def field_with_args(self, node: P.Node, base: Expr, idents: tuple[str, ...]) -> Cmd:
        recv = self.chain(node, base, idents[:-1]) if len(idents) > 1 else base
        last = idents[-1]
        fail = self.error
        tname = self.tname

        def run(st: State, dot: Any, final: Any) -> Any:
            r = recv(st, dot)
            if isinstance(r, dict):
                raise fail(node, f"{last} is not a method but has arguments", tname)
            if r is None:
                raise fail(node, f"nil pointer evaluating interface {{}}.{last}", tname)
            if r is MISSING:
                if st.mode == MODE_ERROR:
                    raise fail(node, f'nil data; no entry for key "{last}"', tname)
                return MISSING
            raise fail(node, f"can't evaluate field {last} in type {type_name(r)}", tname)

        return run

    # expressions -------------------------------------------------------------------------
    def expr(self, n: P.Node) -> Expr:
        if isinstance(n, P.FieldNode):
            return self.field(n)
        if isinstance(n, P.DotNode):
            return self.dot_expr()
        if isinstance(n, P.VariableNode):
            base = self.var(n.name, n)
            return self.chain(n, base, n.idents) if n.idents else base
        if isinstance(n, P.ChainNode):
            return self.chain(n, self.chain_base(n), n.idents)
        if isinstance(n, P.PipeNode):
            return self.pipe(n)
        if isinstance(n, P.IdentifierNode):
            cmd = self.call(P.CommandNode(n.pos, [n]), n.name, [], False)
            return lambda st, dot: cmd(st, dot, _NOFINAL)
        if isinstance(n, P.StringNode):
            sv = n.value
            return lambda st, dot: sv
        if isinstance(n, P.BoolNode):
            bv = n.value
            return lambda st, dot: bv
        if isinstance(n, P.NumberNode):
            nv = n.value
            return lambda st, dot: nv
        if isinstance(n, P.NilNode):
            return lambda st, dot: None
        raise AssertionError(f"unknown node {n!r}")

    def dot_expr(self) -> Expr:
        return lambda st, dot: dot

    def chain_base(self, n: P.ChainNode) -> Expr:
        if isinstance(n.node, P.NilNode):
            return self.failing(n, f"indirection through explicit nil in {node_str(n)}")
        return self.expr(n.node)

    def var(self, name: str, node: P.Node) -> Expr:
        fail = self.error
        tname = self.tname

        def lookup(st: State, dot: Any) -> Any:
            vs = st.vars
            for i in range(len(vs) - 1, -1, -1):
                if vs[i][0] == name:
                    return vs[i][1]
            raise fail(node, f"undefined variable: {name}", tname)

        return lookup

    def field(self, n: P.FieldNode) -> Expr:
        idents = n.idents
        if len(idents) == 1:
            key = idents[0]
            slow1 = self.chain(n, self.dot_expr(), idents)

            def field1(st: State, dot: Any) -> Any:
                if type(dot) is dict:
                    v = dot.get(key, MISSING)
                    if v is not MISSING:
                        return v
                return slow1(st, dot)

            return field1
        slow = self.chain(n, self.dot_expr(), idents)

        def field_n(st: State, dot: Any) -> Any:
            r = dot
            for k in idents:
                if type(r) is not dict:
                    return slow(st, dot)
                r = r.get(k, MISSING)
                if r is MISSING:
                    return slow(st, dot)
            return r

        return field_n

    def chain(self, node: P.Node, base: Expr, idents: tuple[str, ...]) -> Expr:
        fail = self.error
        tname = self.tname

        def walk(st: State, dot: Any) -> Any:
            r = base(st, dot)
            # Go names the static type in errors: values read from a map are interface {}
            iface = False
            for k in idents:
                if isinstance(r, dict):
                    v = r.get(k, MISSING)
                    if v is MISSING:
                        mode = st.mode
                        if mode == MODE_ERROR:
                            raise fail(node, f'map has no entry for key "{k}"', tname)
                        if mode == MODE_ZERO:
                            # the zero value of the map's element type, interface {} -> nil
                            v = "" if type(r).__name__ == "StrMap" else None
                    r = v
                    iface = True
                elif r is MISSING:
                    if st.mode == MODE_ERROR:
                        raise fail(node, f'nil data; no entry for key "{k}"', tname)
                    return MISSING
                elif r is None:
                    raise fail(node, f"nil pointer evaluating interface {{}}.{k}", tname)
                else:
                    tn = "interface {}" if iface else type_name(r)
                    raise fail(node, f"can't evaluate field {k} in type {tn}", tname)
            return r

        return walk

    # function calls ----------------------------------------------------------------------
    def call(self, c: P.CommandNode, name: str, arg_nodes: list[P.Node], has_final: bool) -> Cmd:
        if name in ("and", "or"):
            return self.and_or(c, name, arg_nodes, has_final)
        if name == "tpl":
            return self.tpl(c, arg_nodes, has_final)
        f = self.funcs[name]
        nfixed = len(f.params)
        nargs = len(arg_nodes) + (1 if has_final else 0)
        if f.variadic is None and nargs != nfixed:
            return self.failing(c, f"wrong number of args for {name}: want {nfixed} got {nargs}")
        if f.variadic is not None and nargs < nfixed:
            return self.failing(
                c, f"wrong number of args for {name}: want at least {nfixed} got {len(arg_nodes)}"
            )
        kinds = [f.params[i] if i < nfixed else f.variadic for i in range(nargs)]
        arg_fns = [self.arg(a, k) for a, k in zip(arg_nodes, kinds, strict=False)]  # type: ignore[arg-type]
        final_kind = kinds[-1] if has_final else None
        fn = f.fn
        fail = self.error
        tname = self.tname
        consts = _constant_args(arg_nodes, arg_fns)
        if consts is not None and final_kind in (None, ANY):
            # the common `.x | default "d"` and `printf "%s" "a"` shapes: no per-call
            # argument evaluation at all
            with_final = final_kind is not None

            def invoke_const(st: State, dot: Any, final: Any) -> Any:
                try:
                    if with_final:
                        v = fn(*consts, None if final is MISSING else final)
                    else:
                        v = fn(*consts)
                    check_result(v)
                except TemplateError:
                    raise
                except FuncError as e:
                    raise fail(c, f"error calling {name}: {e}", tname) from None
                except RecursionError:
                    raise fail(c, f"error calling {name}: value nested too deeply", tname) from None
                except Exception as e:  # Go recovers panics in functions the same way
                    raise fail(c, f"error calling {name}: {_describe(e)}", tname) from None
                return MISSING if v is None else v

            return invoke_const

        def failure(e: Exception) -> TemplateError:
            if isinstance(e, RecursionError):
                return fail(c, f"error calling {name}: value nested too deeply", tname)
            if isinstance(e, FuncError):
                return fail(c, f"error calling {name}: {e}", tname)
            # Go recovers panics in functions and reports them the same way
            return fail(c, f"error calling {name}: {_describe(e)}", tname)

        # Argument closures raise TemplateError themselves; fixed arities skip the list.
        if final_kind is None and len(arg_fns) == 1:
            (a0,) = arg_fns

            def invoke1(st: State, dot: Any, final: Any) -> Any:
                try:
                    v = fn(a0(st, dot))
                    check_result(v)
                except TemplateError:
                    raise
                except Exception as e:
                    raise failure(e) from None
                return MISSING if v is None else v

            return invoke1
        if final_kind is None and len(arg_fns) == 2:
            a0, a1 = arg_fns

            def invoke2(st: State, dot: Any, final: Any) -> Any:
                try:
                    v = fn(a0(st, dot), a1(st, dot))
                    check_result(v)
                except TemplateError:
                    raise
                except Exception as e:
                    raise failure(e) from None
                return MISSING if v is None else v

            return invoke2

        def invoke(st: State, dot: Any, final: Any) -> Any:
            argv = [a(st, dot) for a in arg_fns]
            if final_kind is not None:
                try:
                    argv.append(convert(final_kind, final))
                except ArgError as e:
                    raise fail(c, str(e), tname) from None
            try:
                v = fn(*argv)
                check_result(v)
            except TemplateError:
                raise
            except Exception as e:
                raise failure(e) from None
            return MISSING if v is None else v

        return invoke

    def arg(self, n: P.Node, kind: str) -> Expr:
        """Go's evalArg: constants are checked against the parameter type when compiled."""
        if isinstance(n, P.NilNode):
            if kind in (ANY, "reflect.Value", "map[string]interface {}"):
                return lambda st, dot: None
            return self.failing(n, f"cannot assign nil to {kind}")
        if isinstance(n, P.NumberNode):
            if kind == INT:
                if n.int_value is None or (isinstance(n.value, float) and not n.value.is_integer()):
                    return self.failing(n, f"expected integer; found {n.text}")
                iv = n.int_value
                return lambda st, dot: iv
            if kind == FLOAT:
                fv = float(n.value)
                return lambda st, dot: fv
            if kind in (STRING, BOOL, "map[string]interface {}"):
                return self.failing(n, f"expected {_expect_word(kind)}; found {n.text}")
            return self.expr(n)
        if isinstance(n, P.StringNode | P.BoolNode):
            lit = n.value
            ok = (
                kind in (ANY, "reflect.Value")
                or (kind == STRING and isinstance(n, P.StringNode))
                or (kind == BOOL and isinstance(n, P.BoolNode))
            )
            if not ok:
                return self.failing(n, f"expected {_expect_word(kind)}; found {node_str(n)}")
            return lambda st, dot: lit
        ev = self.expr(n)
        if isinstance(n, P.PipeNode | P.IdentifierNode):
            inner = ev
            ev = lambda st, dot: _unwrap(inner(st, dot))  # noqa: E731
        fail = self.error
        tname = self.tname

        def checked(st: State, dot: Any) -> Any:
            try:
                return convert(kind, ev(st, dot))
            except ArgError as e:
                raise fail(n, str(e), tname) from None

        if kind == ANY:

            def anyarg(st: State, dot: Any) -> Any:
                v = ev(st, dot)
                return None if v is MISSING else v

            return anyarg
        if kind == "reflect.Value":
            return ev
        return checked

    def tpl(self, c: P.CommandNode, arg_nodes: list[P.Node], has_final: bool) -> Cmd:
        """Argo CD's ``tpl TEXT VALUES``: TEXT is parsed as a template of the same set (it sees
        the caller's ``define``s and missingkey option), executed with VALUES as dot, and
        ``<no value>`` is removed from its output."""
        nargs = len(arg_nodes) + (1 if has_final else 0)
        if nargs != 2:
            return self.failing(c, f"wrong number of args for tpl: want 2 got {nargs}")
        kinds = [STRING, ANY]
        arg_fns = [self.arg(a, k) for a, k in zip(arg_nodes, kinds, strict=False)]
        fail = self.error
        tname = self.tname
        parse_name = self.name

        def run(st: State, dot: Any, final: Any) -> Any:
            from generators.gotemplate import parse_for_tpl

            try:
                argv = [a(st, dot) for a in arg_fns]
                if has_final:
                    argv.append(convert(ANY, final))
            except ArgError as e:
                raise fail(c, str(e), tname) from None
            src, vals = argv
            quoted = go_quote(src)
            try:
                main, bodies = parse_for_tpl(src, parse_name)
            except TemplateError as e:
                raise fail(
                    c, f"error calling tpl: cannot parse template {quoted}: {e}", tname
                ) from None
            if st.depth >= MAX_DEPTH:
                raise fail(c, f"exceeded maximum template depth ({MAX_DEPTH})", tname)
            root = MISSING if vals is None else vals
            sub = State(st.mode, {**st.bodies, **bodies}, root)
            sub.depth = st.depth + 1
            sub.steps = st.steps + 1
            out: list[str] = []
            try:
                main(sub, root, out)
                text = "".join(out).replace("<no value>", "")
                check_length(len(text))
            except TemplateError as e:
                raise fail(
                    c,
                    f"error calling tpl: error during tpl function execution for {quoted}: {e}",
                    tname,
                ) from None
            except FuncError as e:
                raise fail(c, f"error calling tpl: {e}", tname) from None
            finally:
                st.steps = sub.steps
            return text

        return run

    def and_or(self, c: P.CommandNode, name: str, arg_nodes: list[P.Node], has_final: bool) -> Cmd:
        nargs = len(arg_nodes) + (1 if has_final else 0)
        if nargs < 1:
            return self.failing(c, f"wrong number of args for {name}: want at least 1 got 0")
        fns = [self.arg(a, "reflect.Value") for a in arg_nodes]
        want = name == "or"

        def run(st: State, dot: Any, final: Any) -> Any:
            v: Any = MISSING
            for a in fns:
                v = a(st, dot)
                if is_true(v) == want:
                    return MISSING if v is None else v
            if final is not _NOFINAL:
                v = final
            return MISSING if v is None else v

        return run


def _constant_args(nodes: list[P.Node], fns: list[Expr]) -> tuple[Any, ...] | None:
    """The argument values when every argument is a literal that fits its parameter."""
    values = []
    for n, f in zip(nodes, fns, strict=True):
        if not isinstance(n, P.StringNode | P.BoolNode | P.NumberNode | P.NilNode):
            return None
        try:
            values.append(f(None, None))  # type: ignore[arg-type]
        except TemplateError:
            return None  # a literal of the wrong type: keep the error for execution time
    return tuple(values)


def _msg(comp: Compiler, node: P.Node, tname: str, msg: str, where: str) -> str:
    line, col = line_col(comp.src, node.pos)
    return f'template: {comp.name}:{line}:{col}: executing "{tname}" at <{where}>: {msg}'


def _limit_msg(comp: Compiler, node: P.Node, tname: str, st: State, where: str) -> str:
    if st.steps > MAX_STEPS:
        what = f"more than {MAX_STEPS:,} range iterations and template calls"
    else:
        what = f"output longer than {MAX_OUTPUT:,} characters"
    return _msg(comp, node, tname, f"{what}: over gitops-hub's execution limit", where)


def _expect_word(kind: str) -> str:
    return {INT: "integer", BOOL: "bool", STRING: "string", FLOAT: "float"}.get(kind, kind)


def _describe(e: Exception) -> str:
    if isinstance(e, ZeroDivisionError):
        return "runtime error: integer divide by zero"
    msg = str(e)
    return msg or type(e).__name__


def _unwrap(v: Any) -> Any:
    return MISSING if v is None else v


def _set_var(vs: list[tuple[str, Any]], name: str, value: Any) -> bool:
    for i in range(len(vs) - 1, -1, -1):
        if vs[i][0] == name:
            vs[i] = (name, value)
            return True
    return False


def _merge_text(parts: list[str | Expr]) -> list[str | Expr]:
    merged: list[str | Expr] = []
    for p in parts:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] = merged[-1] + p
        else:
            merged.append(p)
    return merged


def _simple_body(parts: list[str | Expr]) -> Stmt:
    """Bodies of only text and plain actions: no per-node dispatch at all."""
    if not parts:
        return lambda st, dot, out: None
    if len(parts) == 1:
        p0 = parts[0]
        if isinstance(p0, str):
            return lambda st, dot, out: out.append(p0)
        e0 = p0

        def one(st: State, dot: Any, out: list[str]) -> None:
            v = e0(st, dot)
            out.append(v if type(v) is str else to_output(v))

        return one
    seq = tuple(parts)

    def many(st: State, dot: Any, out: list[str]) -> None:
        for p in seq:
            if type(p) is str:
                out.append(p)
            else:
                v = p(st, dot)  # type: ignore[operator]
                out.append(v if type(v) is str else to_output(v))

    return many
