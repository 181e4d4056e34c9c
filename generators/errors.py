"""The error base of the ``generators`` package."""

from __future__ import annotations


class GeneratorError(Exception):
    """An ApplicationSet cannot be parsed, expanded or rendered; the message names where."""

    exit_code: int = 1
