"""The running operation's progress writer (hub.worker.SettledProgress): a wave's message
is written once it stood ``settle_s``; newer ones replace it; writes never overlap and
keep their order; the operation's end drops one still settling (its final state is
written next). No test here waits on a clock to decide a result: each waits for the
outcome it expects."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from hub.worker import PROGRESS_SETTLE_S, SettledProgress

Body = Callable[[SettledProgress, list[str], anyio.Event], Awaitable[None]]


def run(body: Body, *, settle_s: float, write_s: float = 0.0) -> tuple[list[str], int]:
    """What was written, and the most writes ever in flight at once."""
    written: list[str] = []
    in_flight = 0
    most = 0

    async def main() -> None:
        wrote = anyio.Event()

        async def write(message: str) -> None:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            await anyio.sleep(write_s)
            written.append(message)
            in_flight -= 1
            wrote.set()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                progress = SettledProgress(tg, write, settle_s=settle_s)
                try:
                    await body(progress, written, wrote)
                finally:
                    progress.close()

    anyio.run(main)
    return written, most


async def _until(check: Callable[[], bool]) -> None:
    while not check():
        await anyio.sleep(0.01)


def test_a_message_that_stands_is_written_and_a_burst_writes_only_its_latest() -> None:
    async def body(progress: SettledProgress, written: list[str], _: anyio.Event) -> None:
        for n in range(5):  # no await between them: one burst
            progress.offer(f"wave {n}")
        await _until(lambda: bool(written))
        progress.offer("wave 5")
        await _until(lambda: len(written) == 2)

    assert run(body, settle_s=0.05)[0] == ["wave 4", "wave 5"]


def test_a_message_still_settling_when_the_operation_ends_is_dropped() -> None:
    # The fast sync: its wave message never reaches the store (the end writes the state).
    async def body(progress: SettledProgress, _w: list[str], _e: anyio.Event) -> None:
        progress.offer("wave 0")
        await anyio.sleep(0)

    assert run(body, settle_s=30.0) == ([], 0)


def test_the_end_mid_burst_drops_the_rest_quietly() -> None:
    # The engine's last events and the end arrive together.
    async def body(progress: SettledProgress, _w: list[str], wrote: anyio.Event) -> None:
        progress.offer("wave 0")
        await wrote.wait()
        for n in range(1, 4):
            progress.offer(f"wave {n}")

    assert run(body, settle_s=0.01)[0] == ["wave 0"]


def test_writes_never_overlap_and_a_message_settled_meanwhile_is_written_next() -> None:
    # A slow store: "b" and "c" come while "a" is being written, "c" settles then.
    async def body(progress: SettledProgress, written: list[str], wrote: anyio.Event) -> None:
        progress.offer("a")
        await anyio.sleep(0.05)  # "a" settled and its write started (it takes 0.3 s)
        progress.offer("b")
        progress.offer("c")
        await _until(lambda: len(written) == 2)

    written, most = run(body, settle_s=0.01, write_s=0.3)
    assert written == ["a", "c"]
    assert most == 1


def test_a_write_in_flight_when_the_operation_ends_completes_before_it_returns() -> None:
    # The final state is written after this: a progress write must not land after it.
    async def body(progress: SettledProgress, written: list[str], _: anyio.Event) -> None:
        progress.offer("wave 0")
        await anyio.sleep(0.05)  # settled; its write takes 0.2 s

    assert run(body, settle_s=0.01, write_s=0.2)[0] == ["wave 0"]


def test_the_default_lets_a_short_sync_end_before_its_wave_is_written() -> None:
    assert 0.5 <= PROGRESS_SETTLE_S <= 5.0
