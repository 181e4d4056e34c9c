"""Which asyncio event loop the long-running processes run on: ``hub serve`` (through
anyio) and ``hub sim serve`` with its shards.

Each is one busy event loop. uvloop runs the same asyncio programs on libuv. At 100
clusters x 10 Applications it took about 5% off both processes' CPU and a third off the
simulator's loop lag (docs/benchmarks.md, round 9). Each process has its own default,
and ``HUB_EVENT_LOOP`` (``uvloop``, ``asyncio``, or ``auto`` for the default) overrides it:

- ``hub serve`` (and ``--once``) defaults to the standard loop, for memory. Its TLS
  connections read through a 16 KiB buffer instead of asyncio's 256 KiB
  (``clusters.kube._shrink_tls_buffer``; one connection per cluster, so 240 KiB per
  cluster). uvloop's TLS layer is compiled and keeps its 256 KiB buffer: at 1,000
  clusters the hub's peak RSS rose by about 100 MB (target 1 GiB) for 4-7% less CPU,
  and an HTTP/1.1 fleet (a connection per watched kind) would pay several times that.
- ``hub sim serve`` defaults to uvloop where it is installed (a dependency on Linux and
  macOS): a test fixture, whose loop lag shows in every figure of the benchmarks.

One-shot commands (``hub sync``, the CLI's reads) run on the standard loop.

uvloop differs from the standard loop in ways this code base has met:
- its transports are not subclasses of ``asyncio.Transport`` (protocols must not assert
  the class), and its TLS transport has none of asyncio's internals;
- ``loop.time()`` has millisecond resolution, so durations that are reported (request
  latency) are measured with ``time.perf_counter``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Literal, TypeVar

from clusters.errors import ClusterUsageError

ENV = "HUB_EVENT_LOOP"
LoopName = Literal["uvloop", "asyncio"]
T = TypeVar("T")

HUB_DEFAULT: LoopName = "asyncio"  # TLS read buffers of 16 KiB, not 256 (see above)
SIM_DEFAULT: LoopName = "uvloop"


class EventLoopChoiceError(ClusterUsageError):
    """``HUB_EVENT_LOOP`` names a loop that is unknown or not installed."""


def chosen_loop(default: LoopName, environ: Mapping[str, str] | None = None) -> LoopName:
    """The loop ``HUB_EVENT_LOOP`` asks for; unset or ``auto``: ``default``, or the
    standard loop when the default is uvloop and it is not installed."""
    env = os.environ if environ is None else environ
    wanted = env.get(ENV, "").strip().lower()
    installed = importlib.util.find_spec("uvloop") is not None
    if wanted in ("", "auto"):
        return "uvloop" if default == "uvloop" and installed else "asyncio"
    if wanted == "asyncio":
        return "asyncio"
    if wanted == "uvloop":
        if not installed:
            raise EventLoopChoiceError(
                f"{ENV}=uvloop, but uvloop is not installed; install it "
                f"(pip install uvloop) or set {ENV}=asyncio"
            )
        return "uvloop"
    raise EventLoopChoiceError(
        f"{ENV}={env.get(ENV)!r} is not a loop this hub knows; use uvloop, asyncio or auto"
    )


def _loop_factory(name: LoopName) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], *, default: LoopName) -> T:
    """``asyncio.run(main)`` on the chosen loop."""
    try:
        factory = _loop_factory(chosen_loop(default))
    except BaseException:
        main.close()  # never awaited: no "coroutine was never awaited" warning on top
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def running_loop() -> LoopName:
    """Which loop the calling coroutine runs on (reported by the simulator's stats)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".")[0] == "uvloop" else "asyncio"


def anyio_backend_options(default: LoopName) -> dict[str, Any]:
    """``backend_options`` for ``anyio.run`` (and blocking portals) on the chosen loop."""
    return {"use_uvloop": chosen_loop(default) == "uvloop"}
