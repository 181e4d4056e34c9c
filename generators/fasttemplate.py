"""fasttemplate ``{{ key }}`` substitution, exactly as Argo CD's default template mode does it.

- A tag is the text between ``{{`` and the next ``}}``; surrounding spaces are trimmed
  and the result is looked up as a whole flat key (``path.basename``, ``values.x``).
- A key that is missing, empty, or not a string is written back verbatim, spacing
  included (``{{ nope }}`` stays ``{{ nope }}``). There are no functions and no
  recursion into substituted text.
- Argo CD only runs fasttemplate on strings matching ``.*{{.*}}.*`` (``.`` does not cross
  a newline); other strings are returned as they are, even with a lone ``{{``. A
  string that does match but has a ``{{`` without a closing ``}}`` is an error.

Templates are compiled once and cached, so rendering thousands of Applications costs a
dict lookup per tag.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from generators.errors import GeneratorError


def _is_templated(source: str) -> bool:
    """Is there a ``{{`` with a ``}}`` after it on the same line? (A regex answered this
    in quadratic time: a long line of ``{{`` took minutes.)"""
    start = source.find("{{")
    while start >= 0:
        eol = source.find("\n", start)
        end = len(source) if eol < 0 else eol
        if source.find("}}", start + 2, end) >= 0:
            return True
        if eol < 0:
            return False
        start = source.find("{{", eol)
    return False


class FastTemplateError(GeneratorError):
    """A string has an opening ``{{`` without a matching ``}}``."""


class FastTemplate:
    """A parsed template: literal texts interleaved with tags."""

    __slots__ = ("_tags", "_texts", "is_static", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        texts: list[str] = []
        tags: list[tuple[str, str]] = []
        self.is_static = not _is_templated(source)
        if not self.is_static:
            pos = 0  # indices, not slices of the rest: many tags were quadratic
            while True:
                start = source.find("{{", pos)
                if start < 0:
                    texts.append(source[pos:])
                    break
                texts.append(source[pos:start])
                end = source.find("}}", start + 2)
                if end < 0:
                    rest = source[start + 2 :]
                    raise FastTemplateError(
                        f"cannot find end tag '}}}}' in template {source!r} starting from {rest!r}"
                    )
                raw = source[start + 2 : end]
                tags.append((raw, raw.strip()))
                pos = end + 2
        self._texts = tuple(texts)
        self._tags = tuple(tags)

    def render(self, params: Mapping[str, Any]) -> str:
        if self.is_static:
            return self.source
        texts = self._texts
        parts = [texts[0]]
        for i, (raw, key) in enumerate(self._tags):
            value = params.get(key) if key else None
            parts.append(value if value.__class__ is str else "{{" + raw + "}}")
            parts.append(texts[i + 1])
        return "".join(parts)

    def renderer(self) -> Callable[[Mapping[str, Any]], str]:
        """A function rendering this template, specialised for the common shapes."""
        if self.is_static:
            source = self.source
            return lambda params: source
        if len(self._tags) == 1 and self._tags[0][1]:
            (raw, key), (head, tail) = self._tags[0], self._texts
            literal = "{{" + raw + "}}"

            def one(params: Mapping[str, Any]) -> str:
                value = params.get(key)
                return head + (value if value.__class__ is str else literal) + tail

            return one
        if len(self._tags) == 2 and self._tags[0][1] and self._tags[1][1]:
            (raw1, key1), (raw2, key2) = self._tags
            head, mid, tail = self._texts
            lit1, lit2 = "{{" + raw1 + "}}", "{{" + raw2 + "}}"

            def two(params: Mapping[str, Any]) -> str:
                v1, v2 = params.get(key1), params.get(key2)
                return (
                    head
                    + (v1 if v1.__class__ is str else lit1)
                    + mid
                    + (v2 if v2.__class__ is str else lit2)
                    + tail
                )

            return two
        return self.render

    def keys(self) -> tuple[str, ...]:
        """The trimmed tag names, in order (for error messages and tooling)."""
        return tuple(key for _, key in self._tags)


@lru_cache(maxsize=4096)
def compile_fast(source: str) -> FastTemplate:
    """A cached ``FastTemplate`` for ``source``."""
    return FastTemplate(source)


def render_fast(source: str, params: Mapping[str, Any]) -> str:
    """Render one string in fasttemplate mode."""
    if "{{" not in source:
        return source
    return compile_fast(source).render(params)
