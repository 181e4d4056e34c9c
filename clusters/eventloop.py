"""Which asyncio event loop the long-running processes run on: ``hub serve`` (through
anyio) and ``hub sim serve`` with its shards.

Both processes are one busy event loop each. At 100 clusters x 10 Applications a sixth
of the hub's loop thread went to the loop itself, anyio and the like (docs/benchmarks.md,
round 8). uvloop runs the same asyncio programs on libuv. In that benchmark it took about
5% off both processes' CPU and a third off the simulator's loop lag (round 9). It is the
default where it is installed (a dependency on Linux and macOS). ``HUB_EVENT_LOOP=asyncio``
picks the standard loop, to rule uvloop out when something misbehaves or to measure the
difference.

One-shot commands (``hub sync``, the CLI's reads) keep the standard loop: they live
for a few requests, where the loop's speed does not show.

uvloop differs from the standard loop in ways this code base has met:
- its transports are not subclasses of ``asyncio.Transport`` (protocols must not assert
  the class);
- ``loop.time()`` has millisecond resolution, so durations that are reported (request
  latency) are measured with ``time.perf_counter``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from clusters.errors import ClusterUsageError

ENV = "HUB_EVENT_LOOP"
LoopName = Literal["uvloop", "asyncio"]
T = TypeVar("T")


class EventLoopChoiceError(ClusterUsageError):
    """``HUB_EVENT_LOOP`` names a loop that is unknown or not installed."""


def chosen_loop(environ: dict[str, str] | None = None) -> LoopName:
    """The loop ``HUB_EVENT_LOOP`` asks for; uvloop when unset and installed."""
    env = os.environ if environ is None else environ
    wanted = env.get(ENV, "").strip().lower()
    installed = importlib.util.find_spec("uvloop") is not None
    if wanted in ("", "auto"):
        return "uvloop" if installed else "asyncio"
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


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the chosen loop."""
    try:
        factory = _loop_factory(chosen_loop())
    except BaseException:
        main.close()  # never awaited: no "coroutine was never awaited" warning on top
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def running_loop() -> LoopName:
    """Which loop the calling coroutine runs on (reported by the simulator's stats)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".")[0] == "uvloop" else "asyncio"


def anyio_backend_options() -> dict[str, Any]:
    """``backend_options`` for ``anyio.run`` (and blocking portals) on the chosen loop."""
    return {"use_uvloop": chosen_loop() == "uvloop"}
