"""YAML that users and servers hand us, read safely and fast: one loader for the package.

PyYAML's safe constructors on libyaml's parser where PyYAML was built with it (its wheels
are): the same objects as ``yaml.safe_load``, about ten times faster. A kubeconfig of 100
contexts took 66 ms with the pure-Python parser, on every ``hub cluster add`` of a fleet
registered one by one (7 ms with libyaml). Files whose input may be hostile and must be
capped (ApplicationSets, manifests) go through ``generators.yamlio`` instead.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["SAFE_LOADER", "YAML_READ_ERRORS", "load_all_yaml", "load_yaml", "yaml_error_at"]

SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """One YAML document, as ``yaml.safe_load`` reads it (raises YAML_READ_ERRORS)."""
    return yaml.load(text, Loader=SAFE_LOADER)


def load_all_yaml(text: str) -> list[Any]:
    """Every YAML document, as ``yaml.safe_load_all`` reads them (raises YAML_READ_ERRORS)."""
    return list(yaml.load_all(text, Loader=SAFE_LOADER))


#: What ``yaml.safe_load`` raises on a bad file: PyYAML's constructors trust explicit tags
#: (``!!int zz`` is a ValueError, ``!!timestamp "zz"`` an AttributeError) and compose
#: recursively (deep nesting is a RecursionError).
YAML_READ_ERRORS = (
    yaml.YAMLError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    RecursionError,
)


def yaml_error_at(exc: BaseException) -> str:
    """`` at line N`` when the error knows it, else nothing (values are never echoed)."""
    mark = getattr(exc, "problem_mark", None)
    return f" at line {mark.line + 1}" if mark is not None else ""
