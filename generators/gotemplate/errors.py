"""Errors of the Go template engine, worded like Go's text/template so people can search them."""

from __future__ import annotations

from generators.errors import GeneratorError


class TemplateError(GeneratorError):
    """A template failed to parse or execute.

    The message follows Go: ``template: NAME:LINE:COL: what`` for parse errors and
    ``template: NAME:LINE:COL: executing "NAME" at <node>: what`` for execution errors.
    LINE is 1-based, COL is the 0-based offset within the line, as Go reports it.
    """

    def __init__(self, message: str, *, name: str = "", line: int = 0, col: int = 0) -> None:
        super().__init__(message)
        self.name = name
        self.line = line
        self.col = col


class FuncError(Exception):
    """Raised by template functions; the engine wraps it as ``error calling NAME: msg``."""


def line_col(source: str, pos: int) -> tuple[int, int]:
    """Go's position convention: 1-based line, 0-based byte-ish column."""
    before = source[:pos]
    line = before.count("\n") + 1
    col = pos - (before.rfind("\n") + 1)
    return line, col
