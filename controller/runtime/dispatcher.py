"""One queue for every watcher's next step; steps work in tasks of their own, a few at a time.

The shape of the Kubernetes CronJob controller: watch events feed `observe`, each watcher's next
step waits in a heap keyed by its due time, and whatever is due is stepped. A poked watcher (a
trigger, a spec change, a new watcher) goes to a queue that is served before the heap, so a
`kubectl annotate` is answered ahead of a storm of scheduled slots. An idle watcher costs one
entry (a trimmed copy of its object and its scheduler's memory), never a task: measured at
10,000 watchers, one kopf daemon per watcher cost ~80 KiB and a task each.

A step (a slot claim, a run, a status write) is a task holding one of `workers` permits
(MLCD_MAX_CONCURRENT_RUNS, controller/runtime/permits.py); the next due step is taken only once
a permit is free, so a storm of 10,000 due slots never has more than that many steps working (or
claimed ahead of their runs). A run waiting on its webhook receiver (an attempt, a backoff, a
Retry-After) gives its permit back and is taken up again in its namespace's turn: receivers in
maintenance cannot starve other watchers. Such a run's entry stays busy meanwhile: it keeps
Reconciling=True, and a trigger for it queues one more run.

A watcher is stepped by one task at a time; a poke that lands during its step makes it step
again right after. Kept free of kopf: handlers.py feeds it the objects kopf's watch delivers.

A deleted watcher's state is freed at once, by reference counting: the collector's full passes
skip what controller/runtime/heap.py froze, so a deleted watcher left to them would stay until the
next thaw (hours). Its entry's reference to its scheduler (which reads the entry back) is cut, and
the heap names watchers by uid, so a deleted one's due time holds nothing but itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from controller.core.logfields import about
from controller.core.model import TRIGGER_ANNOTATION, WatcherRef
from controller.runtime.bugs import unexpected
from controller.runtime.permits import Permit, Permits

log = logging.getLogger(__name__)
_BROKEN_RETRY_SECONDS = 60.0

# What a scheduler reads from its object: the rest (managedFields, other annotations, labels)
# is dropped, since kept for 10,000 watchers it would be most of the operator's memory.
_KEPT_METADATA = (
    "name",
    "namespace",
    "uid",
    "generation",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
)


def trimmed(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a MatchWatcher object a scheduler reads."""
    meta = body.get("metadata") or {}
    kept: dict[str, Any] = {key: meta[key] for key in _KEPT_METADATA if key in meta}
    trigger = (meta.get("annotations") or {}).get(TRIGGER_ANNOTATION)
    if trigger is not None:
        kept["annotations"] = {TRIGGER_ANNOTATION: trigger}
    return {"metadata": kept, "spec": body.get("spec") or {}, "status": body.get("status") or {}}


def ref_of(body: Mapping[str, Any]) -> WatcherRef:
    meta = body.get("metadata") or {}
    return WatcherRef(
        namespace=meta.get("namespace") or "",
        name=meta.get("name") or "",
        uid=meta.get("uid") or "",
    )


class Stepper(Protocol):
    """One watcher's scheduler (controller/runtime/scheduler.py's WatcherScheduler)."""

    @property
    def last_success(self) -> datetime | None: ...

    @property
    def gone(self) -> bool:
        """The API server has no such object any more (a status write found it deleted)."""
        ...

    def poke(self, body: Mapping[str, Any]) -> bool: ...

    async def step(self, stopped: Callable[[], bool]) -> float | None: ...


# Builds a watcher's scheduler from its ref and a live view of its latest object.
SchedulerFactory = Callable[[WatcherRef, Callable[[], Mapping[str, Any]]], Stepper]


@dataclass(eq=False, slots=True)
class _Entry:
    ref: WatcherRef
    body: Mapping[str, Any]  # the latest object the watch delivered, trimmed
    scheduler: Stepper | None = None  # built at its first step while serving
    due: float | None = None  # loop time of its next step in the heap; None: only when poked
    queued: bool = False  # in the poked queue
    busy: bool = False  # a step of it is under way (working, or waiting on its receiver)
    again: bool = False  # poked while busy: step again right after
    gone: bool = False  # deleted: never stepped again


@dataclass
class Dispatcher:
    """Steps every watcher this process serves. While not `serving` (another replica leads, see
    controller/runtime/leadership.py) it still follows the watch, so taking over needs no listing;
    schedulers are then rebuilt from the latest objects, since the leader wrote their status."""

    make: SchedulerFactory
    workers: int  # steps working at once (permits; a step waiting on its receiver holds none)
    # A watcher is no longer served here: (ref, deleted). Deleted: drop its session and series;
    # else (leadership lost, or shutting down) only the series this process exports.
    release: Callable[[WatcherRef, bool], Awaitable[None]]
    serving: bool = True
    # Called when nothing is due and no step is under way (controller/runtime/heap.py).
    quiet: Callable[[], None] = lambda: None
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _poked: deque[_Entry] = field(default_factory=deque)
    # (due, order, uid): an item whose entry is gone, busy or due at another time is stale.
    _heap: list[tuple[float, int, str]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _permits: Permits = field(init=False)
    _feeder: asyncio.Task[None] | None = None
    _steps: set[asyncio.Task[None]] = field(default_factory=set)  # steps under way
    _stopping: bool = False

    def __post_init__(self) -> None:
        self._permits = Permits(self.workers)

    @property
    def served(self) -> int:
        """Watchers this process serves now (0 while another replica leads)."""
        return len(self._entries) if self.serving else 0

    def schedulers(self) -> list[Stepper]:
        return [e.scheduler for e in self._entries.values() if e.scheduler is not None]

    def holds(self, uid: str) -> bool:
        return uid in self._entries

    def watchers(self) -> dict[str, WatcherRef]:
        """Every watcher this process follows (served or not), by uid."""
        return {uid: entry.ref for uid, entry in self._entries.items()}

    async def vanished(self, uid: str) -> None:
        """The watcher no longer exists, though its watch never said so."""
        entry = self._entries.get(uid)
        if entry is not None:
            await self._drop(entry)

    async def observe(self, body: Mapping[str, Any], *, deleted: bool = False) -> None:
        """A watch event of a watcher this process serves."""
        meta = body.get("metadata") or {}
        uid = meta.get("uid") or ""
        if deleted or meta.get("deletionTimestamp"):
            entry = self._entries.get(uid)
            if entry is not None:
                await self._drop(entry)
            return
        entry = self._entries.get(uid)
        if entry is None:
            body = trimmed(body)
            entry = self._entries[uid] = _Entry(ref_of(body), body)
            self._poke(entry)
            return
        entry.body = trimmed(body)
        if entry.scheduler is None or entry.scheduler.poke(entry.body):
            self._poke(entry)

    def start(self) -> None:
        self._feeder = asyncio.create_task(self._feed(), name="dispatcher")

    async def stop(self, grace: float) -> None:
        """Take no new step; steps under way end as they would (a claimed slot is run, and its
        status and Event written) until `grace` seconds from now, the one shutdown deadline;
        then what is left is cut (its changes stay pending: the snapshot did not advance)."""
        self._stopping = True
        if self._feeder is not None:
            self._feeder.cancel()  # it only hands out permits: no claim is ever cut there
            await asyncio.gather(self._feeder, return_exceptions=True)
        if self._steps:
            await asyncio.wait(self._steps, timeout=grace)
        steps = list(self._steps)
        for task in steps:
            task.cancel()
        await asyncio.gather(*steps, return_exceptions=True)
        await self._release_all()

    async def lead(self, serving: bool) -> None:
        """Start or stop serving (leadership won or lost)."""
        if serving == self.serving:
            return
        self.serving = serving
        if serving:
            for entry in self._entries.values():
                entry.scheduler = None  # rebuilt from the latest object: the leader wrote status
                self._poke(entry)
        else:
            self._heap.clear()
            self._poked.clear()
            await self._release_all()

    async def _release_all(self) -> None:
        for entry in self._entries.values():
            entry.queued, entry.due = False, None
            if not entry.busy:
                entry.scheduler = None
                await self.release(entry.ref, False)

    async def _drop(self, entry: _Entry) -> None:
        """A deleted watcher: never stepped again, released now (or when its step ends)."""
        if self._entries.get(entry.ref.uid) is entry:
            del self._entries[entry.ref.uid]
        entry.gone = True
        self._compact()
        if not entry.busy:
            entry.scheduler = None
            await self.release(entry.ref, True)

    def _compact(self) -> None:
        """Drop stale heap items once they are most of it (amortised O(1) per item): a deleted
        or re-poked watcher's item would otherwise wait until it reaches the top, up to a year
        for `@yearly`."""
        if len(self._heap) > 2 * len(self._entries) + 64:
            self._heap = [item for item in self._heap if self._live(item) is not None]
            heapq.heapify(self._heap)

    def _live(self, item: tuple[float, int, str]) -> _Entry | None:
        """The entry a heap item is for, unless the item is stale."""
        entry = self._entries.get(item[2])
        if entry is None or entry.due != item[0] or entry.busy:
            return None
        return entry

    def _poke(self, entry: _Entry) -> None:
        if not self.serving:
            return
        if entry.busy:
            entry.again = True
        elif not entry.queued:
            entry.queued = True
            self._poked.append(entry)
            self._changed.set()

    def _schedule(self, entry: _Entry, seconds: float) -> None:
        entry.due = asyncio.get_running_loop().time() + max(0.0, seconds)
        heapq.heappush(self._heap, (entry.due, next(self._order), entry.ref.uid))
        self._compact()
        self._changed.set()

    def _next(self) -> tuple[_Entry | None, float | None]:
        """The next entry to step, left where it is, else how long until one is due (None:
        until something changes)."""
        if not self.serving or self._stopping:
            return None, None
        while self._poked:
            entry = self._poked[0]
            if not entry.gone and not entry.busy:
                return entry, None
            self._poked.popleft()
            entry.queued = False
        now = asyncio.get_running_loop().time()
        while self._heap:
            due = self._heap[0][0]
            live = self._live(self._heap[0])
            if live is None:  # superseded or deleted since it was pushed
                heapq.heappop(self._heap)
                continue
            return (live, None) if due <= now else (None, due - now)
        return None, None

    def _take(self) -> _Entry | None:
        entry, _ = self._next()
        if entry is None:
            return None
        if entry.queued:
            self._poked.popleft()
            entry.queued = False
        else:
            heapq.heappop(self._heap)
        return entry

    async def _feed(self) -> None:
        while True:
            entry, delay = self._next()
            if entry is None:
                if not self._steps:
                    try:
                        self.quiet()
                    except Exception as exc:  # a bug there must not stop every watcher
                        unexpected(exc, "dispatcher (quiet)", log)
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._changed.wait()
                continue
            # Asked in the namespace of what is next: the permit's round-robin is over the
            # namespaces with work due (their next steps, and runs back from waiting).
            permit = await self._permits.acquire(entry.ref.namespace)
            entry = self._take()  # what is next may have changed meanwhile (a trigger)
            if entry is None:
                permit.release()
                continue
            permit.key = entry.ref.namespace
            entry.busy, entry.due, entry.again = True, None, False
            task = asyncio.create_task(self._step(entry, permit), name="dispatcher step")
            self._steps.add(task)
            task.add_done_callback(self._ended)
            # Steps with nothing to do (no slot due, no status to write) end without ever
            # suspending: without this, thousands of them (after `kubectl apply` of every
            # schedule) would run in one loop turn, and no trigger or watch event get the loop.
            await asyncio.sleep(0)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._steps.discard(task)
        if not self._steps:
            self._changed.set()  # the feeder may now find the process quiet

    async def _step(self, entry: _Entry, permit: Permit) -> None:
        try:
            with self._permits.holding(permit):
                if entry.scheduler is None:
                    entry.scheduler = self.make(entry.ref, lambda: entry.body)
                    entry.scheduler.poke(entry.body)  # what it starts from needs no second step
                pause = await entry.scheduler.step(
                    lambda: entry.gone or not self.serving or self._stopping
                )
        except Exception as exc:  # building the scheduler failed (a bug): never lose the entry
            unexpected(exc, f"{entry.ref.namespace}/{entry.ref.name}", log, entry.ref)
            pause = _BROKEN_RETRY_SECONDS
        finally:
            entry.busy = False
        if entry.scheduler is not None and entry.scheduler.gone and not entry.gone:
            log.info(
                "%s/%s: deleted (the API server no longer has it); no longer served",
                entry.ref.namespace,
                entry.ref.name,
                extra=about(entry.ref),
            )
            await self._drop(entry)
            return
        if entry.gone or not self.serving:
            entry.scheduler = None
            await self.release(entry.ref, entry.gone)
        elif entry.again:
            self._poke(entry)
        elif pause is not None:
            self._schedule(entry, pause)
