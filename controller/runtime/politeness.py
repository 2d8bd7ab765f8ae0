"""Politeness towards FOGIS: per host, a cap on exchanges in flight and on new logins a second.

10,000 watchers may share one slot; unchecked, they would open 10,000 sessions at FOGIS at once.
Here a run waits for its turn instead, in order of arrival. The wait is not part of the run's
FOGIS budget (controller/runtime/detection.py), so a long queue delays runs without failing them.

Only asyncio: the clock and the sleep are injectable, so the token bucket is tested without
sleeping. One entry per FOGIS host ever used (as many as the hosts of all baseUrls, which
MLCD_FOGIS_ALLOWED_HOSTS bounds).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
# Called with the kind of wait ("exchange" or "login") and its seconds, once the turn came.
Observer = Callable[[str, float], None]

EXCHANGE, LOGIN = "exchange", "login"


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up. A taker that finds none reserves the
    next one (the balance goes below zero): takers are served in order of arrival, and each
    sleeps only until its own token is due."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst
        self._stamp = clock()

    def reserve(self) -> float:
        """Take a token: the seconds until it is due (0 when it is there now)."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate) - 1
        self._stamp = now
        return max(0.0, -self._tokens / self._rate)

    async def take(self) -> None:
        wait = self.reserve()
        if wait <= 0:
            return
        try:
            await self._sleep(wait)
        except asyncio.CancelledError:
            # Given back, so a cancelled waiter (shutdown, a deleted watcher) does not push every
            # later taker back; the one who arrives next may use it.
            self._tokens += 1
            raise


@dataclass(frozen=True)
class _Host:
    slots: asyncio.Semaphore
    logins: TokenBucket


class Politeness:
    """Turns at FOGIS, per host (the lower-cased host of spec.fogis.baseUrl): at most
    `max_concurrent_per_host` exchanges in flight and `logins_per_second` new logins (burst of as
    many). `max_concurrent` caps exchanges over all hosts: at most as many in flight as the
    shared pool has connections, since with more, 1,000 watchers firing together make httpcore's
    pool re-scan its queue on every change (the event loop starves, requests time out)."""

    def __init__(
        self,
        *,
        max_concurrent_per_host: int,
        logins_per_second: float,
        max_concurrent: int,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        observe: Observer = lambda kind, seconds: None,
    ) -> None:
        self._per_host = max_concurrent_per_host
        self._rate = logins_per_second
        self._pool = asyncio.Semaphore(max_concurrent)
        self._clock = clock
        self._sleep = sleep
        self._observe = observe
        self._hosts: dict[str, _Host] = {}
        self._waiting: Counter[str] = Counter()

    def waiting(self, kind: str) -> int:
        """Exchanges (EXCHANGE) or logins (LOGIN) waiting for their turn now."""
        return self._waiting[kind]

    def _host(self, host: str) -> _Host:
        key = host.lower()
        limits = self._hosts.get(key)
        if limits is None:
            bucket = TokenBucket(
                self._rate, max(1.0, self._rate), clock=self._clock, sleep=self._sleep
            )
            limits = self._hosts[key] = _Host(asyncio.Semaphore(self._per_host), bucket)
        return limits

    @contextmanager
    def _queue(self, kind: str) -> Iterator[None]:
        started = self._clock()
        self._waiting[kind] += 1
        try:
            yield
        finally:
            self._waiting[kind] -= 1
        self._observe(kind, self._clock() - started)

    @asynccontextmanager
    async def exchange(self, host: str) -> AsyncIterator[None]:
        """Holds one of the host's turns (and one of the pool's) for the body."""
        limits = self._host(host)
        async with AsyncExitStack() as held:
            with self._queue(EXCHANGE):
                # The host's turn first: a crowded host must not queue for pool turns it could
                # not use anyway, ahead of other hosts' runs.
                await held.enter_async_context(limits.slots)
                await held.enter_async_context(self._pool)
            yield

    async def login(self, host: str) -> None:
        """Waits until the host may see one more login (the step that posts credentials)."""
        with self._queue(LOGIN):
            await self._host(host).logins.take()
