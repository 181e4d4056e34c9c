"""The one YAML loader for text from Git or from a user: hostile input is a ``YamlError``.

Every YAML read by gitops-hub (ApplicationSets, ``elementsYaml``, templatePatch, Git
generator files, sprig's ``fromYaml``, manifests and Applications in ``hub.sync``) goes
through these loaders, because one bad file in Git must be an error of that file, never of
the process:

- a safe loader (no Python objects);
- explicit tags that do not fit their value (``!!int zz``, ``!!float clu``,
  ``!!timestamp "zz"``, an empty ``!!float``) fail with the line and column instead of a
  ``ValueError``/``AttributeError`` from PyYAML's constructors; ``!!set``, ``!!omap`` and
  ``!!pairs`` (no JSON form, Kubernetes has no such values) are refused; an explicit
  ``!!timestamp`` stays the string it is, as implicit ones do (sigs.k8s.io/yaml);
- nesting is capped at ``MAX_DEPTH`` levels (PyYAML composes recursively: 5,000 levels were
  a ``RecursionError``), aliases included (an alias counts as deep as what it names);
- alias expansion is capped at ``MAX_NODES`` nodes per document ("billion laughs" and merge
  key bombs build tiny files that expand exponentially), and an alias may not name a node
  that encloses it (a cycle no JSON value can hold).

``YamlError`` is a ``GeneratorError`` (exit code 2, bad input) and a ``yaml.YAMLError``, so
code that caught PyYAML's errors keeps working; its message is one line, ``line L, column
C: what``, and callers put the file name in front. This module imports nothing of ours but
``generators.errors``, so ``hub`` and ``clusters`` import it too.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from typing import Any

import yaml

from generators.errors import GeneratorError

#: Deepest nesting of mappings and sequences, aliases expanded. Go's yaml allows 10,000;
#: Kubernetes objects stay far below 100, and Python's own recursion limit (1,000 frames,
#: about 3 per level while composing) must stay out of reach from any caller's depth.
MAX_DEPTH = 100
#: Nodes one document may hold once aliases are expanded (a 1,000,000-node document
#: without aliases is a file of many megabytes; with aliases it is an attack).
MAX_NODES = 1_000_000

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_BINARY_TAG = "tag:yaml.org,2002:binary"
_UNSUPPORTED_TAGS = ("set", "omap", "pairs")


class YamlError(GeneratorError, yaml.YAMLError):
    """A YAML text cannot be read; the message is one line: ``line L, column C: what``."""

    exit_code = 2


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _at(mark: Any, message: str) -> YamlError:
    where = _where(mark)
    return YamlError(f"{where}: {message}" if where else message)


def _short_tag(tag: str) -> str:
    return "!!" + tag.rsplit(":", 1)[1] if tag.startswith("tag:yaml.org,2002:") else tag


class HardenedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the caps above; subclass it to change how scalars resolve."""

    def __init__(self, stream: str | bytes) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0  # in this document, aliases expanded
        self._open: set[str] = set()  # anchors of the collections being composed
        # id(node) -> (nodes once aliases are expanded, height), measured for alias
        # targets only; ids stay valid while the document's node tree lives.
        self._sizes: dict[int, tuple[int, int]] = {}

    def compose_document(self) -> Any:
        self._depth = self._nodes = 0
        self._sizes = {}
        try:
            return super().compose_document()
        finally:
            self._sizes = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            if event.anchor in self._open:
                raise _at(
                    event.start_mark,
                    f"alias *{event.anchor} names a node that contains it (a cycle is not a value)",
                )
            target = self.anchors.get(event.anchor)
            if target is not None:
                nodes, height = self._measure(target)
                if self._depth + height > MAX_DEPTH:
                    raise _at(
                        event.start_mark,
                        f"alias *{event.anchor} nests deeper than {MAX_DEPTH} levels",
                    )
                self._count(nodes, event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise _at(event.start_mark, f"nesting is deeper than {MAX_DEPTH} levels")
        node: Any = super().compose_node(parent, index)
        self._depth -= 1
        self._count(1, node.start_mark)
        return node

    def compose_sequence_node(self, anchor: Any) -> Any:
        if anchor is not None:
            self._open.add(anchor)
        try:
            return super().compose_sequence_node(anchor)
        finally:
            self._open.discard(anchor)

    def compose_mapping_node(self, anchor: Any) -> Any:
        if anchor is not None:
            self._open.add(anchor)
        try:
            return super().compose_mapping_node(anchor)
        finally:
            self._open.discard(anchor)

    def _count(self, nodes: int, mark: Any) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise _at(
                mark,
                f"the document expands to more than {MAX_NODES:,} nodes (aliases expanded); "
                "split the file or use fewer aliases",
            )

    def _measure(self, node: Any) -> tuple[int, int]:
        """Nodes and height of a complete node, aliases inside it expanded (memoised, so
        each node is measured once however often it is named)."""
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        if isinstance(node, yaml.ScalarNode):
            size = (1, 1)
        else:
            children = (
                [n for pair in node.value for n in pair]
                if isinstance(node, yaml.MappingNode)
                else node.value
            )
            measured = [self._measure(child) for child in children]
            size = (
                1 + sum(m[0] for m in measured),
                1 + max((m[1] for m in measured), default=0),
            )
        self._sizes[id(node)] = size
        return size

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError):
            # PyYAML's constructors trust the tag: `!!int zz` is int("zz").
            tag = _short_tag(str(node.tag))
            if isinstance(node, yaml.ScalarNode):
                # the value is not echoed: it may be a Secret's data
                what = f"the value tagged {tag} is not a valid {tag[2:] or 'value'}"
            else:
                what = f"cannot build a {tag} from this node"
            raise _at(node.start_mark, what) from None


def _construct_timestamp(loader: HardenedLoader, node: yaml.ScalarNode) -> str:
    value = str(loader.construct_scalar(node))
    if loader.timestamp_regexp.match(value) is None:
        raise _at(node.start_mark, "the value tagged !!timestamp is not a valid timestamp")
    return value


def _refuse(loader: HardenedLoader, node: yaml.Node) -> Any:
    raise _at(
        node.start_mark,
        f"tag {_short_tag(str(node.tag))} is not supported (Kubernetes YAML has no such value)",
    )


HardenedLoader.add_constructor(_TIMESTAMP_TAG, _construct_timestamp)
for _name in _UNSUPPORTED_TAGS:
    HardenedLoader.add_constructor(f"tag:yaml.org,2002:{_name}", _refuse)


class KubeLoader(HardenedLoader):
    """YAML as Kubernetes reads it (sigs.k8s.io/yaml): timestamps stay strings and
    ``!!binary`` decodes to text, so every value has a JSON form."""


KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in HardenedLoader.yaml_implicit_resolvers.items()
}


def _construct_binary_text(loader: HardenedLoader, node: yaml.ScalarNode) -> str:
    value = str(loader.construct_scalar(node))
    try:
        data = binascii.a2b_base64(value.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise _at(node.start_mark, f"!!binary is not base64: {exc}") from None
    # Go keeps the bytes in a string; JSON then writes invalid UTF-8 as U+FFFD
    return data.decode("utf-8", errors="replace")


KubeLoader.add_constructor(_BINARY_TAG, _construct_binary_text)


# --------------------------------------------------------------------------- loading


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _as_yaml_error(exc: yaml.YAMLError) -> YamlError:
    if isinstance(exc, YamlError):
        return exc
    if isinstance(exc, yaml.MarkedYAMLError):
        problem = exc.problem or exc.context or "invalid YAML"
        context = (
            f" ({exc.context} at {_where(exc.context_mark)})"
            if exc.context and exc.problem and exc.context_mark is not None
            else ""
        )
        return _at(exc.problem_mark or exc.context_mark, _one_line(problem + context))
    return YamlError(_one_line(str(exc)))


def _read(text: str | bytes, loader: type[HardenedLoader], read: Callable[[Any], Any]) -> Any:
    parser = None
    try:
        parser = loader(text)  # the reader checks the characters here already
        return read(parser)
    except yaml.YAMLError as exc:
        raise _as_yaml_error(exc) from None
    finally:
        if parser is not None:
            parser.dispose()


def _all_documents(parser: HardenedLoader) -> list[Any]:
    docs = []
    while parser.check_data():  # type: ignore[no-untyped-call]
        docs.append(parser.get_data())
    return docs


def load(text: str | bytes, *, loader: type[HardenedLoader] = KubeLoader) -> Any:
    """The single document of ``text`` (None when empty); several documents are an error."""
    return _read(text, loader, lambda parser: parser.get_single_data())


def load_first(text: str | bytes, *, loader: type[HardenedLoader] = KubeLoader) -> Any:
    """The first document of a stream, or None; like go-yaml, later ones are not parsed."""
    return _read(text, loader, lambda parser: parser.get_data() if parser.check_data() else None)


def load_all(text: str | bytes, *, loader: type[HardenedLoader] = KubeLoader) -> list[Any]:
    """Every document of a stream, empty ones included as None."""
    docs: list[Any] = _read(text, loader, _all_documents)
    return docs


def load_json(text: str | bytes) -> Any:
    """A JSON text, under the same nesting cap (``json`` recurses too: 100,000 ``[`` were a
    ``RecursionError``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise YamlError(f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except ValueError:  # an integer of more than 4,300 digits (Python's own guard)
        raise YamlError("a number is too long (over 4,300 digits)") from None
    except RecursionError:
        raise YamlError(f"nesting is deeper than {MAX_DEPTH} levels") from None
    _check_depth(value)
    return value


def _check_depth(value: Any) -> None:
    level = [value]
    for _ in range(MAX_DEPTH):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return
    if level:
        raise YamlError(f"nesting is deeper than {MAX_DEPTH} levels")
