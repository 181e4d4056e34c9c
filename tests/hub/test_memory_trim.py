"""``hub.memory``: freed heap memory goes back to the system (glibc's ``malloc_trim``).
Pure process-level checks, no cluster."""

from __future__ import annotations

import platform

import pytest

from hub.memory import malloc_trim

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")


def rss_mb() -> float:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


@glibc
def test_trimming_returns_freed_heap_chunks_that_free_alone_keeps() -> None:
    trim = malloc_trim()
    assert trim is not None
    trim()
    # 48 KB blocks come from malloc's heap (below its mmap threshold); every other one is
    # kept, so the freed ones are holes between live blocks, never the heap's top: free()
    # keeps them mapped, as a fleet's burst of answers and manifests leaves the heap.
    blocks = [bytearray(48 * 1024) for _ in range(3000)]
    for b in blocks:
        b[::4096] = b"\x01" * len(b[::4096])  # touch every page: resident
    kept = blocks[::2]
    del blocks
    before = rss_mb()
    assert trim() is True
    after = rss_mb()
    assert before - after > 30, f"RSS {before:.0f} MB -> {after:.0f} MB"
    assert len(kept) == 1500  # the live half stays (and stays alive until here)


def test_the_trim_is_looked_up_once() -> None:
    assert malloc_trim() is malloc_trim()
