"""The one queue of every watcher's next step: order, exclusivity, deletion, leadership and
permits, with stand-in schedulers that record their steps (real time, pauses of a few
milliseconds)."""

from __future__ import annotations

import asyncio
import functools
import gc
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from controller.core.model import TRIGGER_ANNOTATION, WatcherRef
from controller.runtime import permits
from controller.runtime.dispatcher import Dispatcher, trimmed
from tests.support.waiting import wait_for_async


def body(
    name: str, generation: int = 1, trigger: str | None = None, namespace: str = "ns"
) -> dict[str, Any]:
    annotations = {TRIGGER_ANNOTATION: trigger} if trigger else {}
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": f"uid-{name}",
            "generation": generation,
            "annotations": {**annotations, "kubectl.kubernetes.io/last-applied": "x" * 500},
            "managedFields": [{"manager": "kubectl"}],
            "labels": {"team": "a"},
        },
        "spec": {"schedule": "H * * * *"},
        "status": {"executionCount": 1},
    }


class World:
    """Stand-in schedulers: each step is recorded, may be held, and returns `pause`."""

    def __init__(self, pause: float | None = None) -> None:
        self.pause = pause
        self.steps: list[str] = []
        self.built: list[tuple[str, Mapping[str, Any]]] = []
        self.released: list[tuple[str, bool]] = []
        self.running: set[str] = set()
        self.overlaps = 0
        self.most_at_once = 0
        self.hold: asyncio.Event | None = None
        self.suspend = True  # False: a step returns without suspending (nothing was due)
        self.deleted: set[str] = set()  # the API server has none of these (a write said so)
        # Steps of these watchers wait on their receiver (without their permit) until it is set.
        self.receivers: dict[str, asyncio.Event] = {}
        self.waiting: set[str] = set()
        self.resumed: list[str] = []  # watchers back at work after their wait, in that order
        self.resumed_before: dict[str, int] = {}  # by watcher: how many were, when it started

    def make(self, ref: WatcherRef, view: Callable[[], Mapping[str, Any]]) -> Stub:
        self.built.append((ref.name, view()))
        return Stub(self, ref.name, view)

    async def release(self, ref: WatcherRef, deleted: bool) -> None:
        self.released.append((ref.name, deleted))


class Stub:
    def __init__(self, world: World, name: str, view: Callable[[], Mapping[str, Any]]) -> None:
        self.world, self.name, self.view = world, name, view
        self.seen: object = None

    @property
    def last_success(self) -> datetime | None:
        return None

    @property
    def gone(self) -> bool:
        return self.name in self.world.deleted

    def poke(self, body: Mapping[str, Any]) -> bool:
        meta = body["metadata"]
        seen = (meta.get("generation"), (meta.get("annotations") or {}).get(TRIGGER_ANNOTATION))
        changed, self.seen = seen != self.seen, seen
        return changed

    async def step(self, stopped: Callable[[], bool]) -> float | None:
        world = self.world
        world.overlaps += self.name in world.running
        world.running.add(self.name)
        world.most_at_once = max(world.most_at_once, len(world.running))
        world.steps.append(self.name)
        world.resumed_before[self.name] = len(world.resumed)
        try:
            receiver = world.receivers.get(self.name)
            if receiver is not None:
                world.waiting.add(self.name)
                async with permits.given_back():
                    await receiver.wait()
                world.waiting.discard(self.name)
                world.resumed.append(self.name)
            if world.hold is not None:
                await world.hold.wait()
            if world.suspend:
                await asyncio.sleep(0)
        finally:
            world.running.discard(self.name)
        return world.pause


@asynccontextmanager
async def dispatching(
    world: World, workers: int = 2, serving: bool = True
) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher(
        make=world.make, workers=workers, release=world.release, serving=serving
    )
    dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop(grace=5)


def test_only_what_a_scheduler_reads_is_kept() -> None:
    kept = trimmed(body("a", trigger="now"))
    assert kept["metadata"] == {
        "namespace": "ns",
        "name": "a",
        "uid": "uid-a",
        "generation": 1,
        "annotations": {TRIGGER_ANNOTATION: "now"},
    }
    assert kept["spec"] == {"schedule": "H * * * *"}
    assert kept["status"] == {"executionCount": 1}


async def test_a_new_watcher_steps_at_once_then_when_its_pause_is_over() -> None:
    world = World(pause=0.05)
    async with dispatching(world) as dispatcher:
        await dispatcher.observe(body("a"))
        await wait_for_async("three steps", lambda: world.steps.count("a") >= 3, 5)
    assert world.built[0][1] == trimmed(body("a"))  # built from the trimmed object


async def test_a_watcher_waiting_until_poked_is_not_stepped_for_other_events() -> None:
    world = World(pause=None)
    async with dispatching(world) as dispatcher:
        await dispatcher.observe(body("a"))
        await wait_for_async("the first step", lambda: world.steps == ["a"], 5)
        await dispatcher.observe(body("a"))  # e.g. its own status write coming back
        await asyncio.sleep(0.05)
        assert world.steps == ["a"]
        await dispatcher.observe(body("a", trigger="go"))
        await wait_for_async("the triggered step", lambda: world.steps == ["a", "a"], 5)


async def test_poked_watchers_go_before_due_ones() -> None:
    world = World(pause=0.0)  # every watcher is due again at once: a storm
    async with dispatching(world, workers=1) as dispatcher:
        for n in range(50):
            await dispatcher.observe(body(f"w{n}"))
        await wait_for_async("the storm", lambda: len(world.steps) >= 100, 5)
        await dispatcher.observe(body("w7", trigger="now"))
        mark = len(world.steps)
        await wait_for_async("the trigger", lambda: "w7" in world.steps[mark:], 5)
        assert world.steps[mark:].index("w7") <= 1  # at most the step in flight first


async def test_one_step_at_a_time_per_watcher_and_a_poke_during_it_steps_again() -> None:
    world = World(pause=None)
    world.hold = asyncio.Event()
    async with dispatching(world, workers=4) as dispatcher:
        await dispatcher.observe(body("a"))
        await wait_for_async("the held step", lambda: world.running == {"a"}, 5)
        await dispatcher.observe(body("a", trigger="1"))
        await dispatcher.observe(body("a", trigger="2"))
        await asyncio.sleep(0.05)
        assert world.steps == ["a"]  # the other workers did not take it
        world.hold.set()
        await wait_for_async("one more step", lambda: world.steps == ["a", "a"], 5)
        await asyncio.sleep(0.05)
    assert world.steps == ["a", "a"]
    assert world.overlaps == 0


async def test_no_more_steps_at_once_than_workers() -> None:
    world = World(pause=None)
    world.hold = asyncio.Event()
    async with dispatching(world, workers=3) as dispatcher:
        for n in range(10):
            await dispatcher.observe(body(f"w{n}"))
        await wait_for_async("three held", lambda: len(world.running) == 3, 5)
        await asyncio.sleep(0.05)
        assert world.most_at_once == 3
        assert _step_tasks() == 3  # the other seven wait as entries, not as tasks
        world.hold.set()
        await wait_for_async("all stepped", lambda: len(world.steps) == 10, 5)


async def test_a_watcher_deleted_mid_step_is_released_after_it_and_never_stepped_again() -> None:
    world = World(pause=0.0)
    world.hold = asyncio.Event()
    async with dispatching(world) as dispatcher:
        await dispatcher.observe(body("a"))
        await wait_for_async("the held step", lambda: world.running == {"a"}, 5)
        await dispatcher.observe(body("a"), deleted=True)
        assert world.released == []  # its step is still running
        world.hold.set()
        await wait_for_async("the release", lambda: world.released == [("a", True)], 5)
        await asyncio.sleep(0.05)
        assert world.steps == ["a"]
        assert dispatcher.served == 0


class Spec(dict[str, Any]):
    """A spec that can be watched dying (a plain dict takes no weak reference)."""


async def test_a_deleted_watchers_state_is_freed_without_the_garbage_collector() -> None:
    """Frozen by controller/runtime/heap.py, garbage left to the collector stays until the next
    thaw: hours of churn, each deleted watcher's entry, scheduler and object kept."""
    world = World(pause=3600.0)  # waiting in the heap, an hour away
    async with dispatching(world) as dispatcher:
        watched = body("a")
        watched["spec"] = spec = Spec(schedule="@yearly")
        await dispatcher.observe(watched)
        await wait_for_async("its first step", lambda: world.steps == ["a"], 5)
        await asyncio.sleep(0.01)  # back in the heap
        gc.disable()
        try:
            scheduler = weakref.ref(dispatcher.schedulers()[0])
            kept = weakref.ref(spec)
            del watched, spec
            world.built.clear()  # the stand-in's own record of the object
            await dispatcher.observe(body("a"), deleted=True)
            assert world.released == [("a", True)]
            assert scheduler() is None
            assert kept() is None
        finally:
            gc.enable()


def stepped_last(world: World, name: str) -> bool:
    return world.steps[-1:] == [name]


async def test_heap_items_of_deleted_watchers_do_not_pile_up() -> None:
    """Stale items are dropped when they reach the top, but a live watcher due first (an hour
    away here, up to a year for `@yearly`) keeps every later one of a deleted watcher."""
    world = World(pause=3600.0)
    async with dispatching(world) as dispatcher:
        await dispatcher.observe(body("kept"))
        await wait_for_async("its step", lambda: world.steps == ["kept"], 5)
        for round_ in range(20):
            names = [f"r{round_}-{i}" for i in range(50)]
            for name in names:
                await dispatcher.observe(body(name))
            await wait_for_async(
                "their steps", functools.partial(stepped_last, world, names[-1]), 5
            )
            await asyncio.sleep(0.01)
            for name in names:
                await dispatcher.observe(body(name), deleted=True)
        assert dispatcher.served == 1
        assert len(dispatcher._heap) <= 2 + 64  # 1,000 deleted, each pushed once


async def test_a_watcher_the_api_server_no_longer_has_is_dropped_and_released() -> None:
    """Deleted while the watch was down: no DELETED event comes, its status write found it
    gone (404)."""
    world = World(pause=0.01)
    world.deleted.add("a")
    async with dispatching(world) as dispatcher:
        await dispatcher.observe(body("a"))
        await dispatcher.observe(body("b"))
        await wait_for_async("the release", lambda: world.released == [("a", True)], 5)
        await wait_for_async("b's steps", lambda: world.steps.count("b") > 3, 5)
        assert world.steps.count("a") == 1
        assert dispatcher.served == 1


async def test_a_watcher_found_missing_from_a_listing_is_dropped_and_released() -> None:
    world = World(pause=None)
    async with dispatching(world) as dispatcher:
        await dispatcher.observe(body("a"))
        await dispatcher.observe(body("b"))
        await wait_for_async("both steps", lambda: len(world.steps) == 2, 5)
        assert set(dispatcher.watchers()) == {"uid-a", "uid-b"}
        await dispatcher.vanished("uid-a")
        await dispatcher.vanished("uid-unknown")
        assert world.released == [("a", True)]
        assert set(dispatcher.watchers()) == {"uid-b"}


async def test_a_standby_follows_the_watch_and_takes_over_from_the_latest_objects() -> None:
    world = World(pause=None)
    async with dispatching(world, serving=False) as dispatcher:
        await dispatcher.observe(body("a"))
        await dispatcher.observe(body("a", generation=2))  # the leader changed it meanwhile
        await asyncio.sleep(0.05)
        assert (world.steps, dispatcher.served) == ([], 0)
        await dispatcher.lead(True)
        await wait_for_async("the take-over", lambda: world.steps == ["a"], 5)
        assert world.built[0][1]["metadata"]["generation"] == 2
        assert dispatcher.served == 1
        await dispatcher.lead(False)  # lost: stops, and drops what it exported
        assert world.released == [("a", False)]
        assert dispatcher.served == 0
        await dispatcher.observe(body("a", trigger="now"))
        await asyncio.sleep(0.05)
        assert world.steps == ["a"]
        await dispatcher.lead(True)  # the scheduler is built again, not reused
        await wait_for_async("the second take-over", lambda: len(world.built) == 2, 5)


async def test_stopping_lets_a_step_under_way_end_and_starts_none() -> None:
    """SIGTERM between a slot's claim and its run must not lose the slot: the step ends as it
    would (its run, status and Event), only no new step starts."""
    world = World(pause=0.0)
    world.hold = asyncio.Event()
    dispatcher = Dispatcher(make=world.make, workers=2, release=world.release)
    dispatcher.start()
    await dispatcher.observe(body("a"))
    await dispatcher.observe(body("b"))
    await wait_for_async("two held steps", lambda: world.running == {"a", "b"}, 5)
    stopping = asyncio.create_task(dispatcher.stop(grace=5))
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waits for the steps, does not cut them
    world.hold.set()
    await stopping
    assert sorted(world.steps) == ["a", "b"]  # both ended; neither stepped again
    assert world.overlaps == 0
    assert sorted(world.released) == [("a", False), ("b", False)]


async def test_quiet_is_called_only_while_no_step_is_under_way() -> None:
    world = World(pause=None)
    world.hold = asyncio.Event()
    busy_when_quiet: list[int] = []
    dispatcher = Dispatcher(
        make=world.make,
        workers=3,
        release=world.release,
        quiet=lambda: busy_when_quiet.append(len(world.running)),
    )
    dispatcher.start()
    try:
        await wait_for_async("idle workers report quiet", lambda: len(busy_when_quiet) > 0, 5)
        await dispatcher.observe(body("a"))
        await wait_for_async("the held step", lambda: world.running == {"a"}, 5)
        quiet_before = len(busy_when_quiet)
        await dispatcher.observe(body("b", trigger="1"))  # wakes a worker, which finds "b"
        await wait_for_async("both held", lambda: world.running == {"a", "b"}, 5)
        await dispatcher.observe(body("c"))
        await wait_for_async("three held", lambda: len(world.running) == 3, 5)
        assert len(busy_when_quiet) == quiet_before  # never while a step is held
        world.hold.set()
        await wait_for_async("quiet again", lambda: len(busy_when_quiet) > quiet_before, 5)
    finally:
        await dispatcher.stop(grace=5)
    assert set(busy_when_quiet) == {0}


async def test_steps_that_never_suspend_still_let_the_loop_run_between_them() -> None:
    world = World(pause=None)
    world.suspend = False
    async with dispatching(world, workers=2) as dispatcher:
        for n in range(200):
            await dispatcher.observe(body(f"w{n}"))
        for _ in range(3):
            await asyncio.sleep(0)
        assert 0 < len(world.steps) < 20  # a few steps per loop turn, not all 200 in one
        await wait_for_async("all stepped", lambda: len(world.steps) == 200, 5)


def _step_tasks() -> int:
    return sum(1 for task in asyncio.all_tasks() if task.get_name() == "dispatcher step")


async def test_a_step_waiting_on_its_receiver_holds_no_permit() -> None:
    """Issue: 4 receivers answering 503 Retry-After: 120 held all 4 workers, and a healthy
    watcher's trigger waited for them. A run waiting on its receiver gives its permit back; its
    entry stays busy, so a trigger for it queues one more step instead of a second one at once."""
    world = World(pause=None)
    world.receivers = {f"maint{n}": asyncio.Event() for n in range(3)}
    async with dispatching(world, workers=1) as dispatcher:
        for name in world.receivers:
            await dispatcher.observe(body(name))
        await wait_for_async("every receiver waited on", lambda: len(world.waiting) == 3, 5)
        await dispatcher.observe(body("healthy", trigger="now"))
        await wait_for_async("the healthy step", lambda: "healthy" in world.steps, 5)
        await dispatcher.observe(body("maint0", trigger="again"))
        await asyncio.sleep(0.05)
        assert world.steps.count("maint0") == 1  # queued behind its own step, not beside it
        assert world.overlaps == 0
        for receiver in world.receivers.values():
            receiver.set()
        await wait_for_async("the queued step", lambda: world.steps.count("maint0") == 2, 5)
    assert world.overlaps == 0
    assert world.most_at_once <= 4  # three waiting (no permit) and one working


async def test_runs_back_from_waiting_and_new_work_take_turns_by_namespace() -> None:
    world = World(pause=None)
    world.receivers = {f"busy{n}": asyncio.Event() for n in range(4)}
    world.hold = asyncio.Event()  # back at work, every run holds its permit until released
    async with dispatching(world, workers=1) as dispatcher:
        for name in world.receivers:
            await dispatcher.observe(body(name, namespace="busy"))
        await wait_for_async("every receiver waited on", lambda: len(world.waiting) == 4, 5)
        for receiver in world.receivers.values():
            receiver.set()  # four runs of one namespace want their permit back at once
        await wait_for_async("one back at work", lambda: len(world.resumed) == 1, 5)
        await dispatcher.observe(body("lone", namespace="quiet"))
        await asyncio.sleep(0.01)
        world.hold.set()
        await wait_for_async("all done", lambda: "lone" in world.steps and not world.running, 5)
    # Turns alternate: "busy" waited first, so one more of its runs went first, then "quiet"'s
    # step, not after all four (first come, first served would make that 4).
    assert world.resumed_before["lone"] == 2
    assert len(world.resumed) == 4
