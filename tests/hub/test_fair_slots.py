"""The hub-wide sync slots (hub.worker.slots.FairSlots): a freed slot goes to the waiting
cluster that holds the fewest, so slow clusters cannot hold the fleet's slots. Pure: no
cluster, tasks on one event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.worker.slots import FairSlots, limiter_slot


async def wait_all_tasks_blocked() -> None:
    """anyio's own, without its 0.1 s sleeps: loop turns until every other task waits."""
    this = asyncio.current_task()
    while any(
        task is not this and (task._fut_waiter is None or task._fut_waiter.done())  # type: ignore[attr-defined]
        for task in asyncio.all_tasks()
    ):
        await asyncio.sleep(0)


@dataclass(eq=False)
class Holder:
    """One sync: waits for a slot, then holds it until told to finish."""

    key: str
    granted: bool = False
    done: bool = False
    finish: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)


def start(tg: anyio.abc.TaskGroup, slots: FairSlots, key: str, order: list[str]) -> Holder:
    holder = Holder(key)

    async def run() -> None:
        with holder.scope:
            async with slots.slot(key):
                holder.granted = True
                order.append(key)
                await holder.finish.wait()
        holder.done = True

    tg.start_soon(run)
    return holder


def test_free_slots_are_taken_at_once_and_given_back() -> None:
    async def main() -> None:
        slots = FairSlots(2)
        async with slots.slot("a"):
            async with slots.slot("a"):
                assert (slots.borrowed, slots.held_by("a"), slots.waiting) == (2, 2, 0)
            assert (slots.borrowed, slots.held_by("a")) == (1, 1)
        assert (slots.borrowed, slots.held_by("a")) == (0, 0)

    anyio.run(main)


def test_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FairSlots(0)


def test_a_freed_slot_goes_to_the_waiting_cluster_that_holds_fewest() -> None:
    async def main() -> None:
        slots = FairSlots(3)
        order: list[str] = []
        async with anyio.create_task_group() as tg:
            first = [start(tg, slots, key, order) for key in ("slow", "slow", "fast")]
            await wait_all_tasks_blocked()
            # Queued in this order; "slow" holds two slots, "fast" one, "new" none.
            waiting = [start(tg, slots, key, order) for key in ("slow", "fast", "new")]
            await wait_all_tasks_blocked()
            assert slots.waiting == 3 and order == ["slow", "slow", "fast"]

            first[0].finish.set()  # a slow sync ends: "new" holds none, so it is next
            await wait_all_tasks_blocked()
            assert order[3:] == ["new"]
            first[2].finish.set()  # "fast" gives one back: fast 0, slow 1 -> fast
            await wait_all_tasks_blocked()
            assert order[4:] == ["fast"]
            first[1].finish.set()  # only "slow" waits now: it gets the slot
            await wait_all_tasks_blocked()
            assert order[5:] == ["slow"]
            assert slots.waiting == 0 and slots.borrowed == 3
            for holder in waiting:
                holder.finish.set()
        assert slots.borrowed == 0

    anyio.run(main)


def test_clusters_holding_as_many_take_turns_in_the_order_they_asked() -> None:
    async def main() -> None:
        slots = FairSlots(1)
        order: list[str] = []
        async with anyio.create_task_group() as tg:
            gate = start(tg, slots, "gate", order)
            await wait_all_tasks_blocked()
            later = [start(tg, slots, key, order) for key in ("b", "a", "c", "a")]
            await wait_all_tasks_blocked()
            gate.finish.set()
            for _ in later:
                await wait_all_tasks_blocked()
                next(h for h in later if h.granted and not h.finish.is_set()).finish.set()
            await wait_all_tasks_blocked()
        # "a" queued twice: its second sync waits until b and c (holding none) were served
        assert order == ["gate", "b", "a", "c", "a"]

    anyio.run(main)


async def herd(limiter: Callable[[str], AbstractAsyncContextManager[object]]) -> int:
    """Three slots, all held by a first cluster; two slow clusters queue 4 syncs each, then
    six fast clusters 3 each. The first cluster's syncs end; the slow syncs never do.
    Returns how many of the 18 fast syncs completed."""
    fast_done = 0
    never = anyio.Event()
    release_gate = anyio.Event()

    async def sync(key: str) -> None:
        nonlocal fast_done
        async with limiter(key):
            if key.startswith("slow"):
                await never.wait()
            fast_done += 1

    async def gate() -> None:
        async with limiter("gate"):
            await release_gate.wait()

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(gate)
        await wait_all_tasks_blocked()
        for key in ("slow-1", "slow-2"):
            for _ in range(4):
                tg.start_soon(sync, key)
        for n in range(6):
            for _ in range(3):
                tg.start_soon(sync, f"fast-{n}")
        await wait_all_tasks_blocked()
        release_gate.set()
        await wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    return fast_done


def test_slow_clusters_cannot_hold_every_slot() -> None:
    async def main() -> tuple[int, int]:
        fair = FairSlots(3)
        fifo = anyio.CapacityLimiter(3)

        @asynccontextmanager
        async def fifo_slot(key: str) -> AsyncIterator[None]:
            async with fifo:
                yield

        return await herd(fair.slot), await herd(fifo_slot)

    fair_done, fifo_done = anyio.run(main)
    # First come first served, the slow clusters' syncs take the three slots for good.
    assert fifo_done == 0
    # Shared out, each slow cluster gets one slot (it held none when it was served) and
    # never a second while a fast cluster waits: the fast ones share the third.
    assert fair_done == 18


def test_a_cancelled_waiter_leaves_the_queue() -> None:
    async def main() -> None:
        slots = FairSlots(1)
        order: list[str] = []
        async with anyio.create_task_group() as tg:
            gate = start(tg, slots, "gate", order)
            await wait_all_tasks_blocked()
            gone = start(tg, slots, "a", order)
            kept = start(tg, slots, "b", order)
            await wait_all_tasks_blocked()
            gone.scope.cancel()
            await wait_all_tasks_blocked()
            assert slots.waiting == 1 and gone.done and not gone.granted
            gate.finish.set()
            await wait_all_tasks_blocked()
            assert kept.granted and slots.held_by("b") == 1 and slots.held_by("a") == 0
            kept.finish.set()
        assert slots.borrowed == 0 and order == ["gate", "b"]

    anyio.run(main)


def test_a_waiter_cancelled_as_it_is_granted_passes_the_slot_on() -> None:
    async def main() -> None:
        slots = FairSlots(1)
        order: list[str] = []
        async with anyio.create_task_group() as tg:
            async with slots.slot("gate"):
                first = start(tg, slots, "a", order)
                second = start(tg, slots, "b", order)
                await wait_all_tasks_blocked()
                first.scope.cancel()  # delivered at "a"'s next loop turn
            # leaving the block grants the slot to "a" (queued first) in the same turn
            await wait_all_tasks_blocked()
            assert not first.granted and first.done
            assert second.granted and slots.held_by("b") == 1 and slots.held_by("a") == 0
            second.finish.set()
        assert slots.borrowed == 0 and slots.waiting == 0

    anyio.run(main)


Op = tuple[str, int]


@settings(max_examples=400, deadline=None)
@given(
    total=st.integers(1, 3),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["acquire", "acquire", "finish", "finish", "cancel", "race"]),
            st.integers(0, 30),
        ),
        max_size=40,
    ),
)
def test_invariants_under_any_interleaving(total: int, ops: list[Op]) -> None:
    """Any sequence of syncs asking, finishing and being cancelled (also in the loop turn
    that grants them a slot): every slot is counted once, nobody waits while a slot is
    free, and each grant goes to a waiting cluster that held the fewest slots."""
    keys = ["a", "b", "c"]

    async def main() -> None:
        slots = FairSlots(total)
        order: list[str] = []
        holders: list[Holder] = []
        async with anyio.create_task_group() as tg:
            for op, n in ops:
                before = {h.key: slots.held_by(h.key) for h in holders}
                waiting_before = [h for h in holders if not h.granted and not h.done]
                releasing: str | None = None
                if op == "acquire":
                    holders.append(start(tg, slots, keys[n % len(keys)], order))
                elif op == "race":  # a slot freed and a waiter cancelled in one loop turn
                    holding = [h for h in holders if h.granted and not h.done]
                    waiting = [h for h in holders if not h.granted and not h.done]
                    if holding and waiting:
                        holding[n % len(holding)].finish.set()
                        waiting[n % len(waiting)].scope.cancel()
                else:
                    live = [h for h in holders if not h.done and (h.granted or op == "cancel")]
                    if not live:
                        continue
                    target = live[n % len(live)]
                    if target.granted:
                        releasing = target.key
                    if op == "finish":
                        target.finish.set()
                    else:
                        target.scope.cancel()
                await wait_all_tasks_blocked()

                holding = [h for h in holders if h.granted and not h.done]
                waiting = [h for h in holders if not h.granted and not h.done]
                assert slots.borrowed == len(holding) <= total
                assert slots.waiting == len(waiting)
                for key in keys:
                    assert slots.held_by(key) == sum(h.key == key for h in holding)
                if waiting:
                    assert slots.borrowed == total
                served = [h for h in waiting_before if h.granted]
                if releasing is not None and served:
                    assert len(served) == 1
                    counts = dict(before)
                    counts[releasing] -= 1
                    candidates = {h.key for h in waiting_before}
                    fewest = min(counts.get(k, 0) for k in candidates)
                    assert counts.get(served[0].key, 0) == fewest
            for h in holders:
                h.finish.set()
        assert slots.borrowed == 0 and slots.waiting == 0
        # nothing kept for clusters that hold and wait for nothing (a fleet's churn)
        assert not slots._held and not slots._queues and not slots._buckets

    anyio.run(main)


def test_a_lent_slot_serves_a_waiter_and_is_queued_for_again() -> None:
    async def main() -> None:
        slots = FairSlots(1)
        order: list[str] = []

        async def finish_once_blocked(holder: Holder) -> None:
            await wait_all_tasks_blocked()  # the lender waits for its slot again by now
            assert not holder.done and slots.waiting == 1
            holder.finish.set()

        async with anyio.create_task_group() as tg, slots.slot("failing") as hold:
            other = start(tg, slots, "other", order)
            await wait_all_tasks_blocked()
            assert not other.granted
            async with hold.lent():  # e.g. a retry's backoff
                await wait_all_tasks_blocked()
                assert other.granted and not hold.holding
                tg.start_soon(finish_once_blocked, other)
            assert other.done and hold.holding and slots.held_by("failing") == 1
        assert slots.borrowed == 0 and slots.waiting == 0

    anyio.run(main)


def test_cancelled_while_queueing_after_a_loan_frees_nothing_twice() -> None:
    async def main() -> None:
        slots = FairSlots(1)
        order: list[str] = []
        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as scope:
                async with slots.slot("failing") as hold, hold.lent():
                    keeper = start(tg, slots, "other", order)  # takes the lent slot
                    await wait_all_tasks_blocked()
                    scope.cancel()  # the wait for the slot again is cancelled
                raise AssertionError("not reached")  # pragma: no cover
            assert not hold.holding and keeper.granted
            assert slots.borrowed == 1 and slots.held_by("failing") == 0
            keeper.finish.set()
        assert slots.borrowed == 0 and slots.waiting == 0

    anyio.run(main)


def test_a_slot_given_back_early_serves_a_waiter_and_is_freed_once() -> None:
    async def main() -> None:
        slots = FairSlots(1)
        order: list[str] = []
        async with anyio.create_task_group() as tg:
            async with slots.slot("done") as hold:
                other = start(tg, slots, "other", order)
                await wait_all_tasks_blocked()
                assert not other.granted
                hold.release()  # e.g. a sync whose cluster work is over, before its record
                hold.release()  # idempotent
                await wait_all_tasks_blocked()
                assert other.granted and not hold.holding and slots.held_by("done") == 0
            assert slots.borrowed == 1 and slots.held_by("other") == 1  # the block freed none
            other.finish.set()
        assert slots.borrowed == 0 and slots.waiting == 0
        async with slots.slot("done") as hold:
            hold.release()
            async with hold.lent():  # nothing to lend: it only queues for a slot after
                assert slots.borrowed == 0
            assert hold.holding and slots.held_by("done") == 1
        assert slots.borrowed == 0 and slots.waiting == 0

    anyio.run(main)


def test_a_clusters_own_slot_given_back_early_serves_the_next_sync_and_is_freed_once() -> None:
    async def main() -> None:
        limiter = anyio.CapacityLimiter(1)
        order: list[str] = []

        async def sync(name: str, finish: anyio.Event) -> None:
            async with limiter_slot(limiter) as done:
                order.append(f"{name} started")
                done()
                done()  # idempotent
                await finish.wait()  # e.g. its record, waiting its turn
            order.append(f"{name} ended")

        first, second = anyio.Event(), anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sync, "first", first)
            await wait_all_tasks_blocked()
            tg.start_soon(sync, "second", second)
            await wait_all_tasks_blocked()
            # the second started while the first still waits, and neither holds a token
            assert order == ["first started", "second started"]
            assert limiter.borrowed_tokens == 0
            first.set()
            second.set()
        assert limiter.borrowed_tokens == 0 and order[2:] == ["first ended", "second ended"]

    anyio.run(main)
