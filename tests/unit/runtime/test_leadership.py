"""Leader election against an in-memory Lease (the pure rule: tests/unit/core/test_lease.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from controller.core.errors import KubernetesError, LeaseConflict
from controller.core.lease import LeaseRecord
from controller.runtime.leadership import RENEW_DEADLINE, Leadership

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ME, OTHER = "pod-a", "pod-b"


class LeaseStore:
    """One Lease with a version, answering like the API server (409 on a stale version)."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.version = 0
        self.failing = False
        # Called as a write starts, e.g. to hang it (the API server or its connection stalls).
        self.on_write: Callable[[], object] | None = None

    async def read_lease(self, namespace: str, name: str) -> tuple[LeaseRecord, str] | None:
        if self.failing:
            raise KubernetesError("reading Lease: 503")
        return None if self.record is None else (self.record, str(self.version))

    async def write_lease(
        self, namespace: str, name: str, record: LeaseRecord, version: str | None
    ) -> str:
        if self.on_write is not None:
            hang = self.on_write()
            if isinstance(hang, asyncio.Event):
                await hang.wait()
        if (version is None) != (self.record is None) or (
            version is not None and version != str(self.version)
        ):
            raise LeaseConflict("changed meanwhile")
        self.record, self.version = record, self.version + 1
        return str(self.version)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def replica(
    store: LeaseStore, clock: Clock, name: str, changes: list[tuple[str, bool]]
) -> Leadership:
    async def on_change(leading: bool) -> None:
        changes.append((name, leading))

    return Leadership(
        store, namespace="ops", name="mlcd", identity=name, on_change=on_change, clock=clock
    )


async def test_one_leads_the_other_waits_for_expiry_then_takes_over() -> None:
    store, clock, changes = LeaseStore(), Clock(), list[tuple[str, bool]]()
    a, b = replica(store, clock, ME, changes), replica(store, clock, OTHER, changes)
    await a._round()
    await b._round()
    assert changes == [(ME, True)]
    clock.now += timedelta(seconds=14)
    await b._round()  # a stopped renewing, but its lease still runs
    assert not b.leading
    clock.now += timedelta(seconds=1)
    await b._round()
    assert changes == [(ME, True), (OTHER, True)]
    await a._round()  # a wakes: someone else holds it now
    assert changes[-1] == (ME, False)
    assert store.record is not None
    assert store.record.holder == OTHER


async def test_a_leader_that_cannot_renew_steps_down_at_its_deadline() -> None:
    store, clock, changes = LeaseStore(), Clock(), list[tuple[str, bool]]()
    a = replica(store, clock, ME, changes)
    await a._round()
    store.failing = True
    clock.now += timedelta(seconds=9)
    await a._round()
    assert a.leading  # within the renew deadline
    clock.now += timedelta(seconds=1)
    await a._round()
    assert changes == [(ME, True), (ME, False)]


async def test_release_lets_a_standby_take_over_at_its_next_round() -> None:
    store, clock, changes = LeaseStore(), Clock(), list[tuple[str, bool]]()
    a, b = replica(store, clock, ME, changes), replica(store, clock, OTHER, changes)
    await a._round()
    await b._round()
    await a.release()
    clock.now += timedelta(seconds=2)
    await b._round()
    assert b.leading


async def test_a_leader_whose_lease_call_hangs_steps_down_at_its_deadline() -> None:
    """Issue: the deadline was checked only after a call failed, so a renewal that hung (30 s
    read timeout, or every kube thread busy) kept the old leader serving while a standby took
    over. Here the renewal hangs for good, sent at the very deadline: the round gives it none."""
    store, clock, changes = LeaseStore(), Clock(), list[tuple[str, bool]]()
    a = replica(store, clock, ME, changes)
    await a._round()
    never = asyncio.Event()
    store.on_write = lambda: never
    clock.now += RENEW_DEADLINE
    async with asyncio.timeout(30):  # only a guard: the round must not wait for the call
        await a._round()
    assert changes == [(ME, True), (ME, False)]


async def test_a_renewal_that_fails_after_the_deadline_steps_down() -> None:
    """A call sent well within the deadline that answers only after it (a 30 s read timeout):
    judged when it failed, not when it was sent."""
    store, clock, changes = LeaseStore(), Clock(), list[tuple[str, bool]]()
    a = replica(store, clock, ME, changes)
    await a._round()
    clock.now += timedelta(seconds=2)

    def hung_then_timed_out() -> None:
        clock.now += timedelta(seconds=30)
        raise KubernetesError("writing Lease: ReadTimeoutError")

    store.on_write = hung_then_timed_out
    await a._round()
    assert changes == [(ME, True), (ME, False)]
