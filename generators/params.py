"""Parameter sets: what generators produce and templates consume.

Argo CD has one rule that every generator follows, and most surprises come from it:

- fasttemplate mode (the default): a param set is **flat**. Keys are dotted strings
  (``path.basename``, ``metadata.labels.env``, ``values.x``) and values are strings.
  The only exception is ``elementsYaml`` of the list generator, whose items are passed
  through typed and unflattened.
- goTemplate mode: a param set is **nested**. Values keep their JSON types, and numbers
  are floating point (Argo CD decodes through ``encoding/json``, so ``3`` is ``float64``).

Param sets are plain dicts on purpose: their keys come from user data. This module
holds the helpers that convert between the two shapes the way Go does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

#: One parameter set. Flat ``{str: str}`` in fast mode, nested JSON-like in go mode.
Params = dict[str, Any]

MissingKey = Literal["default", "zero", "error"]

_MISSING_KEY_VALUES: dict[str, MissingKey] = {
    "default": "default",
    "invalid": "default",
    "zero": "zero",
    "error": "error",
}


@dataclass(frozen=True, kw_only=True)
class TemplateMode:
    """How strings are rendered: fasttemplate, or Go text/template with its options."""

    go: bool = False
    missing_key: MissingKey = "default"

    @staticmethod
    def from_options(go: bool, options: Iterable[str]) -> TemplateMode:
        """Build from ``goTemplateOptions``; unknown options raise ``ValueError``.

        Go's ``template.Option`` panics on an unknown option (argo-cd #20935 took the
        controller down); we reject it with a message instead.
        """
        missing: MissingKey = "default"
        for option in options:
            key, sep, value = option.partition("=")
            if key != "missingkey" or not sep or value not in _MISSING_KEY_VALUES:
                raise ValueError(
                    f"unsupported goTemplateOptions entry {option!r}: the only option is "
                    "missingkey=default|invalid|zero|error"
                )
            missing = _MISSING_KEY_VALUES[value]
        return TemplateMode(go=go, missing_key=missing)


_INVALID_DNS_CHARS = re.compile(r"[^-a-z0-9.]")


def sanitize_name(name: str) -> str:
    """Argo CD's ``SanitizeName`` (the ``normalize`` function and ``*Normalized`` params).

    Lower-case, every character outside ``[-a-z0-9.]`` becomes ``-``, cut to 253
    characters, then ``-`` and ``.`` trimmed from both ends (in that order, as Go does).
    """
    name = _INVALID_DNS_CHARS.sub("-", name.lower())
    return name[:253].strip("-.")


def go_format_float(value: float) -> str:
    """``fmt.Sprintf("%v", float64)``: Go's ``%g`` with the shortest precision.

    Go switches to exponent form when the decimal exponent is < -4 or >= 6 (the
    shortest format always uses 6 for this decision), which is why ``1000000`` from a
    YAML file becomes ``1e+06`` in Argo CD's fast-mode params.
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(str(d) for d in digit_tuple).rstrip("0") or "0"
    # Decimal exponent of the first digit, as in d.ddd x 10^exp.
    exp = len(digit_tuple) + exponent - 1
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{prefix}0.{'0' * (-exp - 1)}{digits}"
    integer = digits[: exp + 1].ljust(exp + 1, "0")
    fraction = digits[exp + 1 :]
    return f"{prefix}{integer}.{fraction}" if fraction else f"{prefix}{integer}"


def _as_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def go_format(value: Any) -> str:
    """``fmt.Sprintf("%v", v)`` for the JSON-like values that param sets hold."""
    if isinstance(value, str):
        return value
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # JSON numbers are float64 in Go; an int here came from our own YAML loader.
        return go_format_float(_as_float(value))
    if isinstance(value, float):
        return go_format_float(value)
    if isinstance(value, Mapping):
        inner = " ".join(f"{go_format(k)}:{go_format(v)}" for k, v in sorted(value.items()))
        return f"map[{inner}]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_format(v) for v in value) + "]"
    return str(value)


def flatten(params: Mapping[str, Any]) -> dict[str, Any]:
    """``jeremywohl/flatten`` DotStyle: nested maps and lists become dotted keys.

    Lists are indexed (``a.0``); empty maps and lists vanish; leaves keep their type.
    """
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                walk(f"{prefix}.{i}" if prefix else str(i), v)
        else:
            out[prefix] = value

    for key, value in params.items():
        walk(key, value)
    return out


def flatten_to_strings(params: Mapping[str, Any]) -> dict[str, str]:
    """Flatten and stringify with Go's ``%v``: the fast-mode form of a nested object."""
    return {k: go_format(v) for k, v in flatten(params).items()}


def json_numbers(value: Any) -> Any:
    """Make numbers what Go's ``encoding/json`` makes them: ``float64``.

    Applied to data that Argo CD decodes from JSON/YAML before templating in go mode,
    so ``{{ .replicas }}`` prints ``3`` and ``1000000`` prints ``1e+06``, as there.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return _as_float(value)
    if isinstance(value, Mapping):
        return {str(k): json_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_numbers(v) for v in value]
    return value


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """mergo ``WithOverride`` on ``map[string]any``: maps merge key-wise, the rest is replaced.

    Returns a new dict; neither input is modified.
    """
    out = dict(base)
    for key, value in override.items():
        current = out.get(key)
        if (value.__class__ is dict or isinstance(value, Mapping)) and (
            current.__class__ is dict or isinstance(current, Mapping)
        ):
            out[key] = deep_merge(current, value)
        else:
            out[key] = value
    return out


def _copy(value: Any) -> Any:
    cls = value.__class__
    if cls is str or cls is float or cls is bool or cls is int or value is None:
        return value
    if cls is dict or isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if cls is list:
        return [_copy(v) for v in value]
    return value


def copy_params(params: Mapping[str, Any]) -> Params:
    """A deep copy of the containers of a param set (leaves are immutable)."""
    return {k: _copy(v) for k, v in params.items()}
