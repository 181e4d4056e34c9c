"""Read-only JSON values: what the simulated controllers get when their reads are checked.

The controllers read the store's own objects without copying them (a deep copy per read
was the largest single cost of the simulator under load). That is safe only while no
controller changes what it read: a change would alter the stored object under every
watcher and every later reader. ``freeze`` makes a deep copy whose dicts and lists refuse
every in-place change; ``StoreObjectAPI`` hands those out instead of the shared objects
when reads are checked (the tests run that way), so a mutating controller fails loudly
there instead of corrupting state silently in production.

Frozen values stay ``dict``/``list`` instances (JSON encoding, ``==`` and ``isinstance``
work as before); ``copy.copy``/``copy.deepcopy``, ``dict(x)``, ``list(x)`` and ``{**x}``
give ordinary mutable copies, which is how a controller builds the object it writes.
"""

from __future__ import annotations

from typing import Any, NoReturn


class ReadOnlyError(RuntimeError):
    """An in-place change of an object read from the store (copy it first).

    Not a TypeError on purpose: the store turns TypeErrors of defaulting code into 400
    responses, and this is a bug, never bad input."""


def _refuse(self: object, *_args: Any, **_kwargs: Any) -> NoReturn:
    raise ReadOnlyError(
        f"a {type(self).__name__} read from the store cannot be changed in place: "
        "copy it first (copy.deepcopy, dict(...), {**obj})"
    )


class FrozenDict(dict[str, Any]):
    """A dict that refuses in-place changes (its values are frozen too)."""

    __slots__ = ()
    __setitem__ = _refuse
    __delitem__ = _refuse
    __ior__ = _refuse
    clear = _refuse
    pop = _refuse
    popitem = _refuse
    setdefault = _refuse
    update = _refuse

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, _memo: dict[int, Any]) -> dict[str, Any]:
        return thaw(self)  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))


class FrozenList(list[Any]):
    """A list that refuses in-place changes (its items are frozen too)."""

    __slots__ = ()
    __setitem__ = _refuse
    __delitem__ = _refuse
    __iadd__ = _refuse
    __imul__ = _refuse
    append = _refuse
    extend = _refuse
    insert = _refuse
    pop = _refuse
    remove = _refuse
    clear = _refuse
    sort = _refuse
    reverse = _refuse

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, _memo: dict[int, Any]) -> list[Any]:
        return thaw(self)  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))


def freeze(value: Any) -> Any:
    """A deep copy of JSON data whose dicts and lists cannot be changed in place."""
    if isinstance(value, dict):
        out = FrozenDict()
        for k, v in value.items():
            dict.__setitem__(out, k, freeze(v))
        return out
    if isinstance(value, list):
        return FrozenList(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """An ordinary mutable deep copy (of frozen or plain JSON data)."""
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [thaw(v) for v in value]
    return value
