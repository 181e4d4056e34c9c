"""Giving freed heap memory back to the system, so a fleet-sized hub's RSS follows what it
holds rather than its highest burst.

A rollout across the fleet allocates in bursts (answers, rendered manifests, diffs) and
frees most of it when the syncs end. CPython's small objects live in its own arenas, but
everything over 512 bytes (JSON bodies, dict tables, strings of a manifest) comes from
glibc's malloc, which keeps freed chunks in the middle of its heaps mapped: they are
reused by the next burst, but RSS stays at the peak of the last one. ``malloc_trim(0)``
releases the free pages of every arena (glibc >= 2.8 also returns pages inside the heap
with ``madvise``). It runs in a worker thread; its CPU cost was within the noise of a
300 x 10 fleet run (docs/benchmarks.md, "Round 6"). Elsewhere (musl, macOS) there is nothing to call and the
hub simply does not trim."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import cache


@cache
def malloc_trim() -> Callable[[], bool] | None:
    """glibc's ``malloc_trim(0)`` as a callable returning whether memory was released, or
    None where the C library has none. Called through ``ctypes.CDLL``, so it runs without
    the GIL: call it from a worker thread and the event loop keeps going."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def call() -> bool:
        return bool(trim(0))

    return call
