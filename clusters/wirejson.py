"""JSON as it crosses the wire between the hub and an API server (real or simulated).

Decoding a watch event and encoding one were the largest single costs of JSON in a
rollout: the json module's encoder takes about 16 us for a Deployment, orjson 1 us;
decoding takes 10 us against 4 us. orjson is used where its answer is the json
module's, and the json module everywhere else:

- ``loads`` tries orjson, and on anything orjson refuses (a byte-order mark, a lone
  surrogate escape, invalid UTF-8, numbers too large for a double) the json module
  decides, so what decodes and the error text of what does not are the json module's.
  Two differences remain, both the way an API server decodes: ``NaN`` and ``Infinity``
  are refused (they are not JSON; Go's decoder refuses them too), and an integer beyond
  64 bits becomes a float (as in the API server's unstructured decoding).
- ``dumps`` is compact UTF-8, as ``json.dumps(..., separators=(",", ":"),
  ensure_ascii=False)``. orjson refuses what JSON cannot hold exactly (integers beyond
  64 bits, non-string keys): those go through the json module. It writes ``null`` for a
  NaN where the json module writes ``NaN``; callers encode only what ``loads`` (or YAML
  checked by ``refuse_non_finite``) produced, so no NaN reaches it.

Request bodies the hub builds from manifests stay with the json module (``NaN`` from a
YAML ``.nan`` must reach the server and be refused there, not become ``null``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(raw: bytes | bytearray | memoryview | str) -> Any:
    """Decode one JSON document; raises ``ValueError`` (or ``UnicodeDecodeError``, a
    subclass) on what is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    return json.loads(raw if not isinstance(raw, memoryview) else bytes(raw),
                      parse_constant=_refuse_constant)  # fmt: skip


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON of ``obj``."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return _ENCODE(obj).encode()


def refuse_non_finite(value: Any) -> None:
    """Raise ``ValueError`` if ``value`` holds a NaN or an infinity anywhere: what a YAML
    body can say (``.nan``, ``.inf``) and JSON cannot."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(f"unsupported value: {item!r}")
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def typed(value: Any) -> Any:
    """``value`` with each scalar's type beside it, for comparing JSON values where Python's
    ``==`` is too kind: ``True == 1`` and ``1 == 1.0``, which JSON tells apart."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)
