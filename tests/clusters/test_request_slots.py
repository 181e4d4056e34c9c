"""The per-cluster request slots (``clusters.kube._Slots``): never more holders than
slots, first come first served, a free slot taken without a turn of the event loop, and a
cancelled waiter neither keeps nor loses a slot. Pure asyncio, no cluster."""

from __future__ import annotations

import random

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusters.kube import _Slots


def test_a_free_slot_is_taken_without_yielding_to_the_loop() -> None:
    async def main() -> None:
        slots = _Slots(2)
        ran: list[str] = []

        async def other() -> None:
            ran.append("other")

        async with anyio.create_task_group() as tg:
            tg.start_soon(other)
            async with slots:  # the other task has not run: no checkpoint was taken
                assert ran == []
                assert slots.in_use == 1
        assert ran == ["other"] and slots.in_use == 0

    anyio.run(main)


async def hold(slots: _Slots, release: anyio.Event) -> None:
    async with slots:
        await release.wait()


async def take(slots: _Slots, seen: list[object], item: object) -> None:
    async with slots:
        seen.append(item)


def test_waiters_get_released_slots_in_arrival_order() -> None:
    async def main() -> None:
        slots = _Slots(1)
        order: list[object] = []
        release = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold, slots, release)
            await anyio.wait_all_tasks_blocked()
            for i in range(5):
                tg.start_soon(take, slots, order, i)
                await anyio.wait_all_tasks_blocked()
            release.set()
        assert order == [0, 1, 2, 3, 4]
        assert slots.in_use == 0

    anyio.run(main)


def test_a_waiter_cancelled_while_queued_leaves_the_queue() -> None:
    """(A slot handed to a waiter just as it is cancelled: the hypothesis test below.)"""

    async def main() -> None:
        slots = _Slots(1)
        got: list[object] = []
        release = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold, slots, release)
            await anyio.wait_all_tasks_blocked()
            with anyio.CancelScope() as first:
                first.cancel()
                with pytest.raises(anyio.get_cancelled_exc_class()):
                    await slots.__aenter__()
            assert not slots._waiters
            tg.start_soon(take, slots, got, "second")
            await anyio.wait_all_tasks_blocked()
            release.set()
        assert got == ["second"] and slots.in_use == 0

    anyio.run(main)


@settings(max_examples=60, deadline=None)
@given(
    total=st.integers(min_value=1, max_value=4),
    plan=st.lists(
        st.tuples(st.integers(min_value=0, max_value=3), st.booleans()), min_size=1, max_size=25
    ),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_never_more_holders_than_slots_whatever_is_cancelled(
    total: int, plan: list[tuple[int, bool]], seed: int
) -> None:
    """Tasks hold a slot for a few loop turns; some are cancelled at a random moment
    (queued, just handed a slot, or holding it). Nothing exceeds the limit, and at the
    end every slot is free and nobody waits."""
    rng = random.Random(seed)

    async def main() -> None:
        slots = _Slots(total)
        holding = [0]
        peak = [0]
        # a slot lost to a cancellation leaves a waiter waiting forever: fail, not hang
        with anyio.fail_after(2):
            await tasks(slots, holding, peak)
        assert peak[0] <= total
        assert slots.in_use == 0 and not slots._waiters

    async def tasks(slots: _Slots, holding: list[int], peak: list[int]) -> None:
        async def user(turns: int) -> None:
            async with slots:
                holding[0] += 1
                peak[0] = max(peak[0], holding[0])
                try:
                    for _ in range(turns):
                        await anyio.sleep(0)
                finally:
                    holding[0] -= 1

        async with anyio.create_task_group() as tg:
            scopes: list[anyio.CancelScope] = []
            for turns, cancel in plan:
                scope = anyio.CancelScope()

                async def run(scope: anyio.CancelScope = scope, turns: int = turns) -> None:
                    with scope:
                        await user(turns)

                tg.start_soon(run)
                if cancel:
                    scopes.append(scope)
            for _ in range(rng.randint(0, 6)):
                await anyio.sleep(0)
            for scope in scopes:
                scope.cancel()
                for _ in range(rng.randint(0, 2)):
                    await anyio.sleep(0)

    anyio.run(main)
