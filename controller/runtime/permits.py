"""Permits to work (MLCD_MAX_CONCURRENT_RUNS of them), handed out round-robin over namespaces.

A watcher's step (a slot claim, a run, a status write) holds one while it works; while it waits on
a receiver (a webhook attempt in flight, a backoff, a Retry-After, a people's notification send)
it gives it back, so receivers in maintenance cannot hold up other watchers. What it waits for
there has its own bounds (the shared pool's connections, the send turns, the timeouts). Waiting
for a FOGIS turn keeps the permit: every due run needs FOGIS, and giving it back there would let
a storm claim thousands of slots ahead of their runs (cut by a shutdown, each would be a slot
claimed but never run).

When a permit is free, the waiters of the namespace whose turn it is get it next, in order of
arrival within a namespace: one namespace with thousands of due watchers does not hold back
another's one. The permit a task holds travels in a context variable, so the waits deep inside
a run (controller/adapters/webhook.py's sleep and gate are injected) need no handle on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any


@dataclass(eq=False, slots=True)
class Permit:
    """One permit, granted to a namespace's work; `held` is False while it is given back."""

    owner: Permits
    key: str
    held: bool = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.owner._release()


_current: ContextVar[Permit | None] = ContextVar("permit", default=None)


class Permits:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = limit
        # Waiters by namespace; the first key is the namespace whose turn comes next.
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    @property
    def in_use(self) -> int:
        return self.limit - self._free

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())

    @property
    def free(self) -> bool:
        """A permit could be had now without waiting."""
        return self._free > 0 and not self._waiting

    async def acquire(self, key: str) -> Permit:
        await self._take(key)
        return Permit(self, key)

    async def _take(self, key: str) -> None:
        if self.free:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted as it was cancelled: pass on
                self._release()
            else:
                queue = self._waiting.get(key)
                if queue is not None and waiter in queue:
                    queue.remove(waiter)
                    if not queue:
                        del self._waiting[key]
            raise

    def _release(self) -> None:
        while self._waiting:
            key = next(iter(self._waiting))
            queue = self._waiting.pop(key)
            waiter = queue.popleft()
            if queue:
                self._waiting[key] = queue  # to the back of the rotation
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    @contextlib.contextmanager
    def holding(self, permit: Permit) -> Iterator[None]:
        """The body (a task's work) holds `permit`, and gives it back at the end."""
        token = _current.set(permit)
        try:
            yield
        finally:
            _current.reset(token)
            permit.release()


@asynccontextmanager
async def given_back() -> AsyncIterator[None]:
    """The current task's permit (if it holds one) is given back for the body, then taken again
    in its namespace's turn."""
    permit = _current.get()
    if permit is None or not permit.held:
        yield
        return
    permit.release()
    cut = False
    try:
        yield
    except asyncio.CancelledError:
        cut = True  # the task is being cut (shutdown): it must not queue for a permit first
        raise
    finally:
        if not cut:
            await permit.owner._take(permit.key)
            permit.held = True


@asynccontextmanager
async def turn(gate: asyncio.Semaphore) -> AsyncIterator[None]:
    """Holds `gate` for the body, with the current task's permit; only waiting for it goes
    without the permit (a queue of turns holds no worker)."""
    acquired = False
    try:
        async with given_back():
            await gate.acquire()
            acquired = True
        yield
    finally:
        if acquired:
            gate.release()


async def sleep(seconds: float) -> None:
    """asyncio.sleep without holding the current task's permit meanwhile."""
    async with given_back():
        await asyncio.sleep(seconds)


class WithoutPermit:
    """Holds `gate` (the webhook pool's turn, held for one attempt; the people's send turn)
    without the current task's permit: waiting for the turn and for the receiver's answer is not
    this process's work. Reusable, and shared by tasks at once (the people's sends of every
    watcher), one body per task: each leaves through its own exit, taking back its own permit."""

    def __init__(self, gate: AbstractAsyncContextManager[object]) -> None:
        self._gate = gate
        self._exits: dict[asyncio.Task[Any] | None, contextlib.AsyncExitStack] = {}

    async def __aenter__(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(given_back())
            await stack.enter_async_context(self._gate)
            self._exits[asyncio.current_task()] = stack.pop_all()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        # The body's exception goes through: a cut attempt must not queue for a permit first.
        return await self._exits.pop(asyncio.current_task()).__aexit__(exc_type, exc, tb)
