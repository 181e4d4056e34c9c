"""The running operation's progress writer (hub.worker.write_settled_progress): a wave's
message is written once it stood ``settle_s``; newer ones replace it; the operation's end
drops one still settling (its final state is written next). No test here waits on a
clock to decide a result: each waits for the outcome it expects."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from hub.worker import PROGRESS_SETTLE_S, write_settled_progress

Body = Callable[[anyio.abc.ObjectSendStream[str], list[str], anyio.Event], Awaitable[None]]


def run(body: Body, *, settle_s: float) -> list[str]:
    written: list[str] = []

    async def main() -> None:
        send, receive = anyio.create_memory_object_stream[str](max_buffer_size=100)
        wrote = anyio.Event()

        async def write(message: str) -> None:
            written.append(message)
            wrote.set()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: write_settled_progress(receive, write, settle_s=settle_s))
                async with send:
                    await body(send, written, wrote)

    anyio.run(main)
    return written


def test_a_message_that_stands_is_written_and_a_burst_writes_only_its_latest() -> None:
    async def body(
        send: anyio.abc.ObjectSendStream[str], written: list[str], _: anyio.Event
    ) -> None:
        for n in range(5):  # no await between them: one burst
            send.send_nowait(f"wave {n}")
        while not written:
            await anyio.sleep(0.01)
        send.send_nowait("wave 5")
        while len(written) < 2:
            await anyio.sleep(0.01)

    assert run(body, settle_s=0.05) == ["wave 4", "wave 5"]


def test_a_message_still_settling_when_the_operation_ends_is_dropped() -> None:
    # The fast sync: its wave message never reaches the store (the end writes the state).
    async def body(send: anyio.abc.ObjectSendStream[str], _w: list[str], _e: anyio.Event) -> None:
        send.send_nowait("wave 0")
        await anyio.sleep(0)  # the writer takes it and starts waiting

    assert run(body, settle_s=30.0) == []


def test_the_stream_closing_mid_burst_ends_the_writer_quietly() -> None:
    # The engine's last events and the end arrive together (the stream's end was a crash
    # of the whole worker here once).
    async def body(
        send: anyio.abc.ObjectSendStream[str], written: list[str], wrote: anyio.Event
    ) -> None:
        send.send_nowait("wave 0")
        await wrote.wait()
        for n in range(1, 4):
            send.send_nowait(f"wave {n}")

    assert run(body, settle_s=0.01) == ["wave 0"]


def test_the_default_lets_a_short_sync_end_before_its_wave_is_written() -> None:
    assert 0.5 <= PROGRESS_SETTLE_S <= 5.0
