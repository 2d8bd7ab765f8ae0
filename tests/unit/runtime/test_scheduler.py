"""The scheduler carrying out decisions, against in-memory doubles of the API server and the
runner: what reaches the API server, and in which order. (The real API server is the
integration suite's; these pin down the races found by the soak.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controller.core.config import Settings
from controller.core.errors import StatusConflict, WatcherGone
from controller.core.model import WatcherRef, WatcherSpec
from controller.core.outcome import Outcome
from controller.core.status import WatcherStatus, timestamp
from controller.core.trigger import Manual, Scheduled, Trigger
from controller.runtime.scheduler import WatcherScheduler
from tests.support.waiting import wait_for_async

REF = WatcherRef("referees", "anna", "uid-1")
SLOT = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


class ApiServer:
    """Holds one watcher's status and version, and answers like the status subresource."""

    def __init__(self, status: Mapping[str, Any]) -> None:
        self.status = dict(status)
        self.version = 1
        self.patches: list[tuple[Mapping[str, Any], str | None]] = []
        self.reads = 0

    async def patch_status(
        self, ref: WatcherRef, status: Mapping[str, Any], resource_version: str | None = None
    ) -> tuple[dict[str, Any], str]:
        self.patches.append((status, resource_version))
        if resource_version is not None and resource_version != str(self.version):
            raise StatusConflict("changed meanwhile")
        self.status.update(status)
        self.version += 1
        return dict(self.status), str(self.version)

    async def read_status(self, ref: WatcherRef) -> tuple[dict[str, Any], str]:
        self.reads += 1
        return dict(self.status), str(self.version)

    async def post_event(self, ref: WatcherRef, type_: str, reason: str, message: str) -> None:
        pass


class Runner:
    def __init__(self) -> None:
        self.runs: list[Trigger] = []

    async def run(
        self,
        ref: WatcherRef,
        spec: WatcherSpec,
        trigger: Trigger,
        *,
        previous: WatcherStatus,
        zone: ZoneInfo,
        started: datetime,
    ) -> Outcome:
        self.runs.append(trigger)
        raise RuntimeError("not needed: these tests stop before a run ends")


def watcher_object(
    status: Mapping[str, Any], version: str | None = None, trigger: str | None = None
) -> dict[str, Any]:
    """The MatchWatcher as kopf's watch delivers it."""
    return {
        "metadata": {
            "generation": 1,
            "creationTimestamp": timestamp(SLOT - timedelta(days=1)),
            "resourceVersion": version,
            "annotations": {} if trigger is None else {"matchlist.io/trigger": trigger},
        },
        "spec": {
            "schedule": "0 * * * *",
            "source": {"fogis": {"credentialsSecretRef": {"name": "anna-fogis"}}},
        },
        "status": dict(status),
    }


class EndlessRunner:
    """A run that never ends by itself (a receiver in maintenance, a FOGIS that never answers)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cut = asyncio.Event()

    async def run(
        self,
        ref: WatcherRef,
        spec: WatcherSpec,
        trigger: Trigger,
        *,
        previous: WatcherStatus,
        zone: ZoneInfo,
        started: datetime,
    ) -> Outcome:
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.cut.set()
        raise AssertionError("unreachable")


def scheduler(
    api: ApiServer,
    runner: Runner | EndlessRunner,
    body_status: Mapping[str, Any],
    version: str | None = None,
    on_status: Callable[[WatcherRef, WatcherStatus], None] = lambda ref, status: None,
    clock: Callable[[], datetime] = lambda: SLOT + timedelta(seconds=0.2),
    body: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> WatcherScheduler:
    """A replica's scheduler of the watcher `body` (its object as last delivered, which the
    test may replace in place), by default one with `body_status` at `version`."""
    body = body if body is not None else watcher_object(body_status, version)
    return WatcherScheduler(
        ref=REF,
        body=lambda: body,
        runner=runner,
        cluster=api,
        settings=settings or Settings(),
        on_status=on_status,
        clock=clock,
    )


PLANNED_FROM = {"lastScheduleTime": "2026-11-28T09:00:00Z"}


async def test_a_slot_another_replica_claimed_meanwhile_is_not_run() -> None:
    """Soak, short run 6: in a peering handover the new replica's daemon started from an object
    listed before the old replica claimed the slot. Its claim must not succeed."""
    api = ApiServer({"lastScheduleTime": "2026-11-28T10:00:00Z"})  # the other replica's claim
    runner = Runner()
    watcher = scheduler(api, runner, PLANNED_FROM)  # kopf's stale view
    pause = await watcher._step(lambda: False)
    assert runner.runs == []
    assert api.patches == []
    assert pause == 0  # decides again at once, from what the server says
    assert watcher.memory.status.last_schedule_time == SLOT


async def test_a_claim_is_conditional_on_the_version_it_read() -> None:
    api = ApiServer(PLANNED_FROM)
    runner = Runner()
    watcher = scheduler(api, runner, PLANNED_FROM)
    original = api.read_status

    async def read_then_someone_writes(ref: WatcherRef) -> tuple[dict[str, Any], str]:
        answer = await original(ref)
        api.version += 1  # the other replica's claim lands between our read and our write
        return answer

    api.read_status = read_then_someone_writes  # type: ignore[method-assign]
    await watcher._step(lambda: False)
    assert runner.runs == []
    assert [version for _, version in api.patches] == ["1"]  # refused: version 2 by then


async def test_an_unclaimed_slot_is_claimed_then_run() -> None:
    api = ApiServer(PLANNED_FROM)
    runner = Runner()
    watcher = scheduler(api, runner, PLANNED_FROM)
    with pytest.raises(RuntimeError, match="not needed"):  # the double runner ends it there
        await watcher._step(lambda: False)
    assert runner.runs == [Scheduled(SLOT)]
    assert api.status["lastScheduleTime"] == "2026-11-28T10:00:00Z"
    assert api.patches[0][1] == "1"


async def test_a_stopped_scheduler_claims_nothing() -> None:
    api = ApiServer(PLANNED_FROM)
    runner = Runner()
    assert await scheduler(api, runner, PLANNED_FROM)._step(lambda: True) is None
    assert api.patches == []
    assert runner.runs == []


@pytest.mark.parametrize(
    ("known", "reads", "versions"),
    [
        ("1", 0, ["1"]),  # the version the scheduler knows is current: one write, no read
        ("0", 1, ["0", "1"]),  # stale: refused, read, unclaimed still, claimed with the new one
    ],
)
async def test_a_claim_reads_only_when_its_version_is_stale(
    known: str, reads: int, versions: list[str]
) -> None:
    api = ApiServer(PLANNED_FROM)
    runner = Runner()
    with pytest.raises(RuntimeError, match="not needed"):
        await scheduler(api, runner, PLANNED_FROM, version=known)._step(lambda: False)
    assert runner.runs == [Scheduled(SLOT)]
    assert (api.reads, [version for _, version in api.patches]) == (reads, versions)


async def test_a_restarted_scheduler_exports_the_status_it_finds_without_writing_it() -> None:
    """After a restart with every status still right, nothing is written, but the state metrics
    (Ready, next run) must come back at the first step, not at the next write an hour later."""
    between_slots = lambda: SLOT + timedelta(minutes=30)  # noqa: E731 - a clock
    api = ApiServer({"lastScheduleTime": "2026-11-28T10:00:00Z"})
    await scheduler(api, Runner(), api.status, clock=between_slots)._step(lambda: False)
    assert api.patches  # the first process wrote its next run and conditions
    written, exported = len(api.patches), []
    restarted = scheduler(
        api,
        Runner(),
        api.status,
        on_status=lambda ref, status: exported.append(status),
        clock=between_slots,
    )
    for _ in range(2):
        await restarted._step(lambda: False)
    assert len(api.patches) == written  # nothing to write
    assert len(exported) == 1  # exported once
    assert exported[0].next_execution_time == SLOT + timedelta(hours=1)


BETWEEN_SLOTS = lambda: SLOT + timedelta(minutes=30)  # noqa: E731 - a clock


async def test_a_trigger_two_replicas_saw_runs_in_one_of_them() -> None:
    """Issue: while two replicas both believed they lead, both ran one manual trigger, and the
    loser's patch (SnapshotConflict) could land last: `run --wait` then said it failed. The
    trigger's run is claimed with a compare-and-swap: the loser stands down, writing nothing."""
    status = {"lastScheduleTime": "2026-11-28T10:00:00Z"}
    api = ApiServer(status)
    seen = watcher_object(status, "1", trigger="t1")  # both replicas' view of the object
    a_runs, b_runs = Runner(), Runner()
    a = scheduler(api, a_runs, status, clock=BETWEEN_SLOTS, body=seen)
    b = scheduler(api, b_runs, status, clock=BETWEEN_SLOTS, body=seen)
    with pytest.raises(RuntimeError, match="not needed"):
        await a._step(lambda: False)
    patches = len(api.patches)
    assert await b._step(lambda: False) == 0  # stood down: decides again, from what it read
    assert (a_runs.runs, b_runs.runs) == ([Manual("t1")], [])
    assert len(api.patches) == patches + 1  # b's claim, refused: nothing of b's landed
    assert api.status["lastClaimedTrigger"] == "t1"
    await b._step(lambda: False)
    assert b_runs.runs == []


@pytest.mark.parametrize(
    ("trigger", "clock", "claim"),
    [
        ("t1", BETWEEN_SLOTS, {"lastClaimedTrigger": "t1"}),
        (None, lambda: SLOT + timedelta(seconds=0.2), {"lastScheduleTime": timestamp(SLOT)}),
    ],
    ids=["a trigger", "a slot"],
)
async def test_a_claim_another_replica_made_is_honoured_when_the_watch_brought_it_first(
    trigger: str | None, clock: Callable[[], datetime], claim: dict[str, Any]
) -> None:
    """The other replica's claim reached this one's watch before its step: the newer version
    must not be used to claim the run again (it would succeed: nothing changed since)."""
    planned = {"lastScheduleTime": "2026-11-28T09:00:00Z"}
    api = ApiServer(planned)
    body = watcher_object(planned, "1", trigger=trigger)
    runner = Runner()
    watcher = scheduler(api, runner, planned, clock=clock, body=body)
    await api.patch_status(REF, claim)  # the other replica's claim: version 2
    body.update(watcher_object(api.status, "2", trigger=trigger))  # ... and its watch event
    assert await watcher._step(lambda: False) == 0
    assert runner.runs == []
    assert [version for _, version in api.patches] == [None]  # only the other one's


async def test_a_watcher_the_api_server_no_longer_has_is_gone_not_retried() -> None:
    """Deleted while the watch was down, it got no DELETED event: a status write every 5 s
    found it missing (404) until the process restarted."""
    api = ApiServer(PLANNED_FROM)
    watcher = scheduler(api, Runner(), PLANNED_FROM)

    async def missing(*_: object) -> tuple[dict[str, Any], str]:
        raise WatcherGone("referees/anna: it no longer exists")

    api.patch_status = api.read_status = missing  # type: ignore[method-assign, assignment]
    assert await watcher.step(lambda: False) is None
    assert watcher.gone


async def test_a_run_cut_at_the_shutdown_deadline_is_not_given_the_timeout_again() -> None:
    """The dispatcher's stop waits for a run until the one shutdown deadline, then cancels the
    step: the run ends there. It used to wait the shutdown timeout a second time (120 s with the
    defaults against the pod's 75 s grace period: SIGKILLed, the Lease never released)."""
    runner = EndlessRunner()
    api = ApiServer(PLANNED_FROM)
    long = Settings(shutdown_timeout_seconds=3600)
    step = asyncio.create_task(
        scheduler(api, runner, PLANNED_FROM, settings=long).step(lambda: False)
    )
    await runner.started.wait()
    step.cancel()
    await wait_for_async("the run cut with its step", runner.cut.is_set, 5)
    with pytest.raises(asyncio.CancelledError):
        await step
