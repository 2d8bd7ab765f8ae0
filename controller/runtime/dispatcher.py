"""One queue for every watcher's next step, served by a few worker tasks.

The shape of the Kubernetes CronJob controller: watch events feed `observe`, each watcher's next
step waits in a heap keyed by its due time, and a fixed pool of workers takes whatever is due.
A poked watcher (a trigger, a spec change, a new watcher) goes to a queue that is served before
the heap, so a `kubectl annotate` is answered ahead of a storm of scheduled slots. An idle
watcher costs one entry (a trimmed copy of its object and its scheduler's memory), never a task:
measured at 10,000 watchers, one kopf daemon per watcher cost ~80 KiB and a task each.

A watcher is stepped by one worker at a time; a poke that lands during its step makes it step
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
    busy: bool = False  # a worker is stepping it
    again: bool = False  # poked while busy: step again right after
    gone: bool = False  # deleted: never stepped again


@dataclass
class Dispatcher:
    """Steps every watcher this process serves. While not `serving` (another replica leads, see
    controller/runtime/leadership.py) it still follows the watch, so taking over needs no listing;
    schedulers are then rebuilt from the latest objects, since the leader wrote their status."""

    make: SchedulerFactory
    workers: int
    # A watcher is no longer served here: (ref, deleted). Deleted: drop its session and series;
    # else (leadership lost, or shutting down) only the series this process exports.
    release: Callable[[WatcherRef, bool], Awaitable[None]]
    serving: bool = True
    # Called when a worker finds nothing to do and no step is under way
    # (controller/runtime/heap.py).
    quiet: Callable[[], None] = lambda: None
    _busy: int = 0  # steps under way
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _poked: deque[_Entry] = field(default_factory=deque)
    # (due, order, uid): an item whose entry is gone, busy or due at another time is stale.
    _heap: list[tuple[float, int, str]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopping: bool = False

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
        self._tasks = [
            asyncio.create_task(self._work(), name=f"dispatcher worker {n}")
            for n in range(self.workers)
        ]

    async def stop(self, grace: float) -> None:
        """Take no new step; a step under way ends as it would (a claimed slot is run, and its
        status and Event written), within `grace` seconds; then the workers are cancelled (a run
        still going gets the shutdown timeout once more, see controller/runtime/scheduler.py)."""
        self._stopping = True
        self._changed.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
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

    def _take(self) -> tuple[_Entry | None, float | None]:
        """The next entry to step, else how long until one is due (None: until something
        changes)."""
        if not self.serving or self._stopping:
            return None, None
        while self._poked:
            entry = self._poked.popleft()
            entry.queued = False
            if not entry.gone and not entry.busy:
                return entry, None
        now = asyncio.get_running_loop().time()
        while self._heap:
            due = self._heap[0][0]
            live = self._live(self._heap[0])
            if live is None:  # superseded or deleted since it was pushed
                heapq.heappop(self._heap)
                continue
            if due > now:
                return None, due - now
            heapq.heappop(self._heap)
            return live, None
        return None, None

    async def _work(self) -> None:
        while not self._stopping:
            entry, delay = self._take()
            if entry is None:
                if not self._busy:
                    self.quiet()
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._changed.wait()
                continue
            await self._step(entry)
            # A step with nothing to do (no slot due, no status to write) returns without ever
            # suspending: without this, one worker could step thousands of poked watchers in one
            # go (seconds at 10,000, all of them after `kubectl apply` of every schedule), and no
            # trigger, watch event or other worker would get the loop meanwhile.
            await asyncio.sleep(0)

    async def _step(self, entry: _Entry) -> None:
        entry.busy, entry.due, entry.again = True, None, False
        self._busy += 1
        try:
            if entry.scheduler is None:
                entry.scheduler = self.make(entry.ref, lambda: entry.body)
                entry.scheduler.poke(entry.body)  # what it starts from needs no second step
            pause = await entry.scheduler.step(
                lambda: entry.gone or not self.serving or self._stopping
            )
        except Exception as exc:  # building the scheduler failed (a bug): never lose the worker
            unexpected(exc, f"{entry.ref.namespace}/{entry.ref.name}", log, entry.ref)
            pause = _BROKEN_RETRY_SECONDS
        finally:
            entry.busy = False
            self._busy -= 1
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
