"""The permits a step works under: round-robin over namespaces, given back while waiting."""

from __future__ import annotations

import asyncio

import pytest

from controller.runtime import permits
from controller.runtime.permits import Permits, WithoutPermit
from tests.support.waiting import wait_for_async


async def test_a_free_permit_goes_round_robin_over_the_namespaces_waiting() -> None:
    pool = Permits(1)
    first = await pool.acquire("busy")
    order: list[str] = []

    async def want(key: str) -> None:
        (await pool.acquire(key)).release()
        order.append(key)

    # Five of one namespace arrive before the other's one: it still gets the second turn.
    waiters = [asyncio.create_task(want("busy")) for _ in range(5)]
    waiters.append(asyncio.create_task(want("quiet")))
    await wait_for_async("all waiting", lambda: pool.waiting == 6, 5)
    first.release()
    await asyncio.gather(*waiters)
    assert order == ["busy", "quiet", "busy", "busy", "busy", "busy"]
    assert pool.in_use == 0


async def test_a_wait_gives_the_permit_back_and_takes_it_again_after() -> None:
    pool = Permits(1)
    woken = asyncio.Event()
    seen: list[int] = []

    async def waiting_run() -> None:
        with pool.holding(await pool.acquire("a")):
            async with permits.given_back():
                seen.append(pool.in_use)
                await woken.wait()
            seen.append(pool.in_use)

    run = asyncio.create_task(waiting_run())
    await wait_for_async("the wait", lambda: seen == [0], 5)
    other = await pool.acquire("b")  # not held up by the waiting run
    woken.set()
    await asyncio.sleep(0.01)
    assert seen == [0]  # back from waiting, it queues for a permit again
    other.release()
    await run
    assert seen == [0, 1]
    assert pool.in_use == 0


async def test_a_gate_is_waited_for_and_held_without_the_permit() -> None:
    pool = Permits(1)
    gate = asyncio.Semaphore(1)
    without = WithoutPermit(gate)
    inside: list[tuple[int, bool]] = []
    with pool.holding(await pool.acquire("a")):
        for _ in range(2):  # reused, one attempt after the other
            async with without:
                inside.append((pool.in_use, gate.locked()))
        assert pool.in_use == 1
    assert inside == [(0, True), (0, True)]
    assert (pool.in_use, gate.locked()) == (0, False)


async def test_a_task_cut_while_waiting_does_not_queue_for_its_permit_again() -> None:
    pool = Permits(1)
    entered = asyncio.Event()

    async def cut() -> None:
        with pool.holding(await pool.acquire("a")):
            async with permits.given_back():
                entered.set()
                await asyncio.Event().wait()

    task = asyncio.create_task(cut())
    await entered.wait()
    taker = await pool.acquire("b")  # the permit is elsewhere when the cut comes
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.waiting == 0
    taker.release()
    assert pool.in_use == 0


async def test_a_waiter_cancelled_as_it_was_granted_passes_the_permit_on() -> None:
    pool = Permits(1)
    held = await pool.acquire("a")
    cancelled = asyncio.create_task(pool.acquire("b"))
    after = asyncio.create_task(pool.acquire("c"))
    await wait_for_async("both waiting", lambda: pool.waiting == 2, 5)
    held.release()  # granted to "b" ...
    cancelled.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    (await after).release()
    assert pool.in_use == 0


async def test_sleep_outside_a_permit_just_sleeps() -> None:
    await permits.sleep(0)


async def test_an_attempt_cut_inside_the_gate_does_not_queue_for_its_permit() -> None:
    pool = Permits(1)
    gate = asyncio.Semaphore(1)
    entered = asyncio.Event()

    async def attempt() -> None:
        with pool.holding(await pool.acquire("a")):
            async with WithoutPermit(gate):
                entered.set()
                await asyncio.Event().wait()

    task = asyncio.create_task(attempt())
    await entered.wait()
    taker = await pool.acquire("b")  # the permit is elsewhere when the cut comes
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (pool.waiting, gate.locked()) == (0, False)
    taker.release()
    assert pool.in_use == 0


async def test_one_gate_shared_by_several_tasks_gives_each_its_own_permit_back() -> None:
    """The people's send gate is one WithoutPermit for every watcher: a task leaving it must
    take back its own permit, not that of the task that entered last (which leaked one
    permit per crossing, until no step could start: found by tests/bench/digests.py)."""
    pool = Permits(2)
    without = WithoutPermit(asyncio.Semaphore(2))
    first_in, second_in, first_out = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def step(entered: asyncio.Event, leave: asyncio.Event | None) -> None:
        with pool.holding(await pool.acquire("a")):
            async with without:
                entered.set()
                if leave is not None:
                    await leave.wait()
                else:
                    await second_in.wait()  # the first in leaves while the second is inside

    first = asyncio.create_task(step(first_in, None))
    await first_in.wait()
    second = asyncio.create_task(step(second_in, first_out))
    await first
    first_out.set()
    await second
    assert pool.in_use == 0


async def test_a_turn_is_waited_for_without_the_permit_and_held_with_it() -> None:
    pool = Permits(1)
    turns = asyncio.Semaphore(1)
    seen: list[tuple[str, int]] = []
    other_in = asyncio.Event()

    async def step(name: str, hold: asyncio.Event | None) -> None:
        with pool.holding(await pool.acquire(name)):
            async with permits.turn(turns):
                seen.append((name, pool.in_use))
                if hold is not None:
                    await hold.wait()

    # The first holds the turn but gives its permit back meanwhile (it waits on something
    # else, as a send does): the second, waiting for the turn, holds no permit either.
    release = asyncio.Event()

    async def first() -> None:
        with pool.holding(await pool.acquire("a")):
            async with permits.turn(turns):
                seen.append(("a", pool.in_use))
                async with permits.given_back():
                    other_in.set()
                    await release.wait()

    one = asyncio.create_task(first())
    await other_in.wait()
    two = asyncio.create_task(step("b", None))
    await wait_for_async("b waits for the turn", lambda: pool.in_use == 0, 5)
    extra = await pool.acquire("c")  # no permit is held while b waits for its turn
    extra.release()
    release.set()
    await asyncio.gather(one, two)
    assert seen == [("a", 1), ("b", 1)]  # each holds its permit inside the turn
    assert pool.in_use == 0
    assert turns._value == 1  # the turn is given back


async def test_a_task_cut_while_waiting_for_a_turn_leaves_it_free() -> None:
    turns = asyncio.Semaphore(1)
    await turns.acquire()

    async def waiting() -> None:
        async with permits.turn(turns):
            pass

    task = asyncio.create_task(waiting())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    turns.release()
    assert turns._value == 1  # nothing taken by the cut waiter
