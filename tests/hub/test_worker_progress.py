"""The running operation's progress writer (hub.worker.write_latest_of_each_burst)."""

from __future__ import annotations

import anyio
import pytest

from hub.worker import write_latest_of_each_burst


@pytest.mark.parametrize("burst", [1, 2, 5])
def test_a_burst_closed_by_its_sender_writes_the_latest_and_ends(burst: int) -> None:
    # The engine sends its last waves and ends the operation (closing the stream) while
    # the writer is still on an earlier message: the writer must write the latest and
    # stop quietly, not raise EndOfStream into the worker.
    written: list[str] = []

    async def main() -> None:
        send, receive = anyio.create_memory_object_stream[str](max_buffer_size=100)
        first_written = anyio.Event()

        async def write(message: str) -> None:
            written.append(message)
            first_written.set()
            await anyio.sleep(0.01)  # the store is slower than the engine

        async with anyio.create_task_group() as tg:
            tg.start_soon(write_latest_of_each_burst, receive, write)
            async with send:
                send.send_nowait("wave 0")
                await first_written.wait()
                for n in range(1, burst + 1):
                    send.send_nowait(f"wave {n}")

    anyio.run(main)
    assert written == ["wave 0", f"wave {burst}"]


def test_messages_apart_are_each_written() -> None:
    written: list[str] = []

    async def main() -> None:
        send, receive = anyio.create_memory_object_stream[str](max_buffer_size=100)

        async def write(message: str) -> None:
            written.append(message)

        async with anyio.create_task_group() as tg:
            tg.start_soon(write_latest_of_each_burst, receive, write)
            async with send:
                for n in range(3):
                    send.send_nowait(f"wave {n}")
                    await anyio.sleep(0.01)

    anyio.run(main)
    assert written == ["wave 0", "wave 1", "wave 2"]
