"""Writes first (hub.sync.priority.WritesFirst): other work waits while syncs make their
way to their first write, and goes on when none is left, when they stall, or at the cap.
Pure: no cluster, tasks on one event loop; orders of events are asserted, never times."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest

from hub.sync.priority import WritesFirst
from tests.hub.test_fair_slots import wait_all_tasks_blocked

pytestmark = pytest.mark.timeout(30)


def test_nothing_on_the_way_means_no_wait() -> None:
    async def main() -> None:
        gate = WritesFirst(quiet_s=60, cap_s=60)
        with anyio.fail_after(5):
            await gate.wait_turn()
        with gate.on_the_way() as arrived:
            arrived()
            assert gate.pending == 0
            with anyio.fail_after(5):
                await gate.wait_turn()  # it arrived: nothing holds
        assert gate.pending == 0  # leaving after arriving counts once

    anyio.run(main)


def test_waiting_work_goes_once_the_last_sync_arrives() -> None:
    async def main() -> None:
        gate = WritesFirst(quiet_s=60, cap_s=60)  # neither stall nor cap can end the wait
        order: list[str] = []

        async def other_work(name: str) -> None:
            await gate.wait_turn()
            order.append(name)

        with gate.on_the_way() as first, gate.on_the_way() as second:
            async with anyio.create_task_group() as tg:
                tg.start_soon(other_work, "refresh")
                tg.start_soon(other_work, "record")
                await wait_all_tasks_blocked()
                assert order == []
                first()
                order.append("first wrote")
                await wait_all_tasks_blocked()
                assert order == ["first wrote"]
                second()
                order.append("second wrote")
        assert order[:2] == ["first wrote", "second wrote"]
        assert sorted(order[2:]) == ["record", "refresh"]

    anyio.run(main)


def test_a_stalled_sync_holds_nothing_up() -> None:
    async def main() -> None:
        # A sync waiting on a slow cluster: nothing starts or arrives for quiet_s.
        gate = WritesFirst(quiet_s=0.05, cap_s=60)
        with gate.on_the_way():
            with anyio.fail_after(10):
                await gate.wait_turn()
            assert gate.pending == 1  # it went on while the sync was still on its way
            with anyio.fail_after(10):
                await gate.wait_turn()  # still stalled: no wait at all

    anyio.run(main)


def test_the_cap_ends_a_wait_while_syncs_keep_coming() -> None:
    async def main() -> None:
        gate = WritesFirst(quiet_s=0.2, cap_s=0.5)
        released = anyio.Event()
        arrivals = 0

        async def one_sync() -> None:
            with gate.on_the_way():
                await anyio.sleep(0.02)

        async def fleet(tg: anyio.abc.TaskGroup) -> None:
            # a sync every 10 ms, each on its way for 20 ms: never quiet, never none
            nonlocal arrivals
            while not released.is_set():
                tg.start_soon(one_sync)
                arrivals += 1
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as tg:
            tg.start_soon(fleet, tg)
            await anyio.sleep(0.02)
            with anyio.fail_after(10):
                await gate.wait_turn()
            assert gate.pending >= 1  # released by the cap, not by the syncs
            released.set()
        assert arrivals > 5

    anyio.run(main)


def test_a_cancelled_time_keeper_lets_the_others_go() -> None:
    async def main() -> None:
        gate = WritesFirst(quiet_s=60, cap_s=60)
        order: list[str] = []
        with gate.on_the_way():
            async with anyio.create_task_group() as tg:
                keeper = anyio.CancelScope()

                async def first() -> None:
                    with keeper:
                        await gate.wait_turn()
                    order.append("keeper left")

                async def second() -> None:
                    await gate.wait_turn()
                    order.append("second")

                tg.start_soon(first)
                await wait_all_tasks_blocked()
                tg.start_soon(second)
                await wait_all_tasks_blocked()
                assert order == []
                keeper.cancel()
        assert order == ["keeper left", "second"]

    anyio.run(main)
