"""Per-host politeness towards FOGIS: the token bucket for logins and the exchange limits."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from controller.runtime.politeness import EXCHANGE, LOGIN, Politeness, TokenBucket
from tests.support.clock import FakeTime


@pytest.mark.parametrize(
    ("rate", "burst", "takes", "waits"),
    [
        # (time of each take) -> seconds until its token is due
        (5, 5, [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]),  # a full burst goes at once
        (5, 5, [0] * 7, [0, 0, 0, 0, 0, 0.2, 0.4]),  # then one every 1/rate, in order
        (2, 2, [0, 0, 0, 1.0], [0, 0, 0.5, 0]),  # the third's debt is paid off by 1.0
        (2, 2, [0, 0, 10, 10, 10], [0, 0, 0, 0, 0.5]),  # refills up to the burst, no more
        (0.5, 1, [0, 0, 1, 4], [0, 2, 3, 2]),  # slower than one a second
        (1, 1, [0, 0.25, 0.5], [0, 0.75, 1.5]),
    ],
)
def test_token_bucket_reservations(
    rate: float, burst: float, takes: list[float], waits: list[float]
) -> None:
    clock = FakeTime()
    bucket = TokenBucket(rate, burst, clock=clock, sleep=clock.sleep)
    seen = []
    for at in takes:
        clock.now = at
        seen.append(bucket.reserve())
    assert seen == pytest.approx(waits)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_token_bucket_refuses_nonsense(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate > 0 and burst >= 1"):
        TokenBucket(rate, burst)


async def test_take_sleeps_only_when_the_bucket_is_empty() -> None:
    clock = FakeTime()
    bucket = TokenBucket(4, 2, clock=clock, sleep=clock.sleep)
    for _ in range(4):
        await bucket.take()
    assert clock.slept == [0.25, 0.25]  # the third and fourth, each after the one before


async def test_a_cancelled_taker_gives_its_token_back() -> None:
    clock = FakeTime()
    asleep = asyncio.Event()

    async def sleep_until_cancelled(seconds: float) -> None:
        asleep.set()
        await asyncio.Event().wait()

    bucket = TokenBucket(1, 1, clock=clock, sleep=sleep_until_cancelled)
    bucket.reserve()  # the burst is gone
    taker = asyncio.create_task(bucket.take())
    await asleep.wait()
    taker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taker
    assert bucket.reserve() == pytest.approx(1.0)  # not 2.0: the cancelled one is not owed


def politeness(per_host: int, overall: int, clock: FakeTime | None = None) -> Politeness:
    clock = clock or FakeTime()
    return Politeness(
        max_concurrent_per_host=per_host,
        logins_per_second=1,
        max_concurrent=overall,
        clock=clock,
        sleep=clock.sleep,
    )


@pytest.mark.parametrize(
    ("per_host", "overall", "hosts", "inside"),
    [
        # exchanges started at once, by host -> how many are in flight per host
        (2, 10, ["a"] * 5, {"a": 2}),
        (2, 10, ["a"] * 3 + ["b"] * 3, {"a": 2, "b": 2}),  # a crowded host holds no one else up
        (2, 3, ["a"] * 3 + ["b"] * 3, {"a": 2, "b": 1}),  # the pool caps the sum
        (16, 64, ["A.example", "a.example"], {"a.example": 2}),  # hosts are case-insensitive
        (1, 1, ["a", "b"], {"a": 1}),
    ],
)
async def test_exchanges_in_flight_per_host(
    per_host: int, overall: int, hosts: list[str], inside: dict[str, int]
) -> None:
    limits = politeness(per_host, overall)
    entered: Counter[str] = Counter()
    release = asyncio.Event()

    async def exchange(host: str) -> None:
        async with limits.exchange(host):
            entered[host.lower()] += 1
            await release.wait()

    tasks = [asyncio.create_task(exchange(host)) for host in hosts]
    for _ in range(5):
        await asyncio.sleep(0)
    assert dict(entered) == inside
    assert limits.waiting(EXCHANGE) == len(hosts) - sum(inside.values())
    release.set()
    await asyncio.gather(*tasks)
    assert sum(entered.values()) == len(hosts)  # everyone had a turn in the end
    assert limits.waiting(EXCHANGE) == 0


async def test_turns_come_in_order_of_arrival_and_waits_are_observed() -> None:
    clock = FakeTime()
    observed: list[tuple[str, float]] = []
    limits = Politeness(
        max_concurrent_per_host=1,
        logins_per_second=2,
        max_concurrent=8,
        clock=clock,
        sleep=clock.sleep,
        observe=lambda kind, seconds: observed.append((kind, seconds)),
    )
    order: list[int] = []

    async def exchange(number: int) -> None:
        async with limits.exchange("fogis"):
            order.append(number)
            await limits.login("fogis")
            await asyncio.sleep(0)  # the others arrive meanwhile
            await clock.sleep(1.0)  # the exchange itself

    await asyncio.gather(*(exchange(n) for n in range(4)))
    assert order == [0, 1, 2, 3]
    queued = [seconds for kind, seconds in observed if kind == EXCHANGE]
    assert queued == pytest.approx([0, 1, 2, 3])
    # Burst 2 at t=0 and 1; by t=2 and t=3 the bucket has refilled: no login waits.
    assert [seconds for kind, seconds in observed if kind == LOGIN] == [0, 0, 0, 0]
    assert limits.waiting(LOGIN) == 0


async def test_logins_wait_for_their_tokens_per_host() -> None:
    clock = FakeTime()
    limits = politeness(16, 64, clock)
    for host in ("a", "b", "a", "b", "a"):
        await limits.login(host)
    # a's second and third waited a second each; b never waited for a's bucket.
    assert clock.slept == pytest.approx([1.0, 1.0])
