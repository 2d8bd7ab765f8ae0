"""The scheduler's decisions as a table: spec, status, memory and clock in; action, status patch and
Events out. Every rule about restarts, deadlines, triggers and suspension is a row here."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.core.decide import Memory, Run, View, Wait, decide
from controller.core.status import WatcherStatus
from controller.core.trigger import Digest, Manual, Scheduled, Trigger

T = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)  # a Saturday, on an hourly slot
CREATED = T - timedelta(days=1)


def at(hours: float = 0, seconds: float = 0) -> datetime:
    return T + timedelta(hours=hours, seconds=seconds)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


SPEC: dict[str, Any] = {
    "schedule": "0 * * * *",
    "source": {"fogis": {"credentialsSecretRef": {"name": "anna-fogis"}}},
}
READY_SCHEDULED = {"type": "Ready", "status": "True", "reason": "Scheduled", "message": "m"}
# Restarted after the 10:00 slot was claimed.
CLAIMED_10 = {
    "lastScheduleTime": "2026-11-28T10:00:00Z",
    "lastScheduleOf": {"schedule": "0 * * * *", "timeZone": "UTC"},
}
READY_LOGIN_FAILED = {"type": "Ready", "status": "False", "reason": "LoginFailed", "message": "no"}


@dataclass(frozen=True)
class Row:
    id: str
    now: datetime
    # In: the spec's changes from SPEC, the status as stored, what this process remembers.
    spec: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    trigger: str | None = None
    generation: int = 1
    # Out: the action, the status fields the patch writes (None: no patch), the Event reasons.
    run: Trigger | None = None
    wait: datetime | None = None
    patch: dict[str, Any] | None = None
    events: tuple[str, ...] = ()
    ready: tuple[str, str] | None = None  # (status, reason) of the patch's Ready condition
    stalled: bool = False  # the patch sets Stalled=True (a spec error that will not fix itself)


ROWS = [
    Row(
        "first sight: shows NEXT RUN and Ready=Scheduled, waits for the slot",
        now=at(seconds=5),
        memory={"not_before": at(seconds=1)},  # created a moment ago
        wait=at(1),
        patch={"nextExecutionTime": "2026-11-28T11:00:00Z", "observedGeneration": 1},
        ready=("True", "Scheduled"),
    ),
    Row(
        "nothing to write when status already shows it",
        now=at(seconds=5),
        memory={"not_before": at(seconds=1)},
        status={
            "observedGeneration": 1,
            "nextExecutionTime": "2026-11-28T11:00:00Z",
            "conditions": [{**READY_SCHEDULED, "message": "next run at 2026-11-28T11:00:00Z"}],
        },
        wait=at(1),
    ),
    Row(
        "the awaited slot: claimed, then run",
        now=at(seconds=0.2),
        status={"lastScheduleTime": "2026-11-28T09:00:00Z"},
        memory={"awaited": at()},
        run=Scheduled(at()),
        patch={
            "lastScheduleTime": "2026-11-28T10:00:00Z",
            "lastScheduleOf": {"schedule": "0 * * * *", "timeZone": "UTC"},
        },
    ),
    Row(
        "the awaited slot is on time however late the wake-up, even with deadline 0",
        now=at(seconds=3),
        spec={"startingDeadlineSeconds": 0},
        status={"lastScheduleTime": "2026-11-28T09:00:00Z"},
        memory={"awaited": at()},
        run=Scheduled(at()),
        patch={"lastScheduleTime": "2026-11-28T10:00:00Z"},
    ),
    Row(
        "restart after the slot was claimed: it never runs again",
        now=at(seconds=30),
        status={
            "lastScheduleTime": "2026-11-28T10:00:00Z",
            "lastScheduleOf": {"schedule": "0 * * * *", "timeZone": "UTC"},
        },
        wait=at(1),
        patch={"nextExecutionTime": "2026-11-28T11:00:00Z"},
        ready=("True", "Scheduled"),
    ),
    Row(
        "outage, missed slots within the deadline: the latest runs, older ones are counted",
        now=at(seconds=300),
        spec={"startingDeadlineSeconds": 600},
        status={"lastScheduleTime": "2026-11-28T07:00:00Z"},
        run=Scheduled(at()),
        patch={"lastScheduleTime": "2026-11-28T10:00:00Z"},
        events=("MissedSchedule",),
    ),
    Row(
        "outage, the latest slot past the deadline: nothing runs, the misses are counted",
        now=at(seconds=900),
        spec={"startingDeadlineSeconds": 600},
        status={"lastScheduleTime": "2026-11-28T08:00:00Z"},
        wait=at(1),
        patch={"nextExecutionTime": "2026-11-28T11:00:00Z"},
        events=("MissedSchedule",),
        ready=("True", "Scheduled"),
    ),
    Row(
        "a missed slot already reported is not reported again",
        now=at(seconds=900),
        spec={"startingDeadlineSeconds": 600},
        status={"lastScheduleTime": "2026-11-28T09:00:00Z"},
        memory={"skip_reported": at()},
        wait=at(1),
        patch={"nextExecutionTime": "2026-11-28T11:00:00Z"},
        ready=("True", "Scheduled"),
    ),
    Row(
        "a slot before the watcher existed is never missed",
        now=at(seconds=30),
        memory={"not_before": at(seconds=10)},
        wait=at(1),
        patch={"nextExecutionTime": "2026-11-28T11:00:00Z"},
        ready=("True", "Scheduled"),
    ),
    Row(
        "suspended: no scheduled run, no NEXT RUN, Ready=Suspended",
        now=at(seconds=1),
        spec={"suspend": True},
        status={"lastScheduleTime": "2026-11-28T09:00:00Z"},
        memory={"awaited": at()},
        wait=None,
        patch={"nextExecutionTime": None},
        ready=("True", "Suspended"),
    ),
    Row(
        "resumed: like a CronJob, the latest slot missed while suspended runs",
        now=at(seconds=20),
        status={"lastScheduleTime": "2026-11-28T06:00:00Z"},
        run=Scheduled(at()),
        patch={"lastScheduleTime": "2026-11-28T10:00:00Z"},
        events=("MissedSchedule",),
    ),
    Row(
        "schedule changed live: its earlier slots were never missed",
        now=at(seconds=45 * 60),
        spec={"schedule": "30 * * * *"},
        status={"lastScheduleTime": "2026-11-28T10:00:00Z"},
        memory={"timing": ("0 * * * *", "UTC")},
        wait=at(1.5),
        patch={"nextExecutionTime": "2026-11-28T11:30:00Z"},
        ready=("True", "Scheduled"),
    ),
    Row(
        "schedule changed while no operator ran: told apart by lastScheduleOf",
        now=at(seconds=45 * 60),
        spec={"schedule": "30 * * * *"},
        status={
            "lastScheduleTime": "2026-11-28T10:00:00Z",
            "lastScheduleOf": {"schedule": "0 * * * *", "timeZone": "UTC"},
        },
        wait=at(1.5),
        patch={"nextExecutionTime": "2026-11-28T11:30:00Z"},
        ready=("True", "Scheduled"),
    ),
    Row(
        "time zone changed: a new schedule too",
        now=at(seconds=45 * 60),
        spec={"timeZone": "Asia/Kolkata"},  # +05:30: slots at hh:30 UTC
        status={
            "lastScheduleTime": "2026-11-28T10:00:00Z",
            "lastScheduleOf": {"schedule": "0 * * * *", "timeZone": "UTC"},
        },
        wait=at(1.5),
        patch={"nextExecutionTime": "2026-11-28T11:30:00Z"},
        ready=("True", "Scheduled"),
    ),
    Row(
        "a new trigger value runs at once, even while suspended, claiming the value, no slot",
        now=at(seconds=100),
        spec={"suspend": True},
        trigger="t1",
        run=Manual("t1"),
        patch={"lastScheduleTime": None, "lastClaimedTrigger": "t1"},
    ),
    Row(
        "a trigger value another replica claimed (its run under way, or killed) does not run",
        now=at(seconds=100),
        status={
            "lastHandledTrigger": "t0",
            "lastClaimedTrigger": "t1",
            "lastScheduleTime": "2026-11-28T10:00:00Z",
        },
        trigger="t1",
        wait=at(1),
        patch={"nextExecutionTime": "2026-11-28T11:00:00Z"},
        ready=("True", "Scheduled"),
    ),
    Row(
        "the same trigger value again does nothing",
        now=at(seconds=100),
        status={"lastHandledTrigger": "t1", "lastScheduleTime": "2026-11-28T10:00:00Z"},
        trigger="t1",
        wait=at(1),
        patch={"nextExecutionTime": "2026-11-28T11:00:00Z"},
        ready=("True", "Scheduled"),
    ),
    Row(
        "a blank trigger is no trigger",
        now=at(seconds=100),
        status={"lastScheduleTime": "2026-11-28T10:00:00Z"},
        trigger="  ",
        wait=at(1),
        patch={"nextExecutionTime": "2026-11-28T11:00:00Z"},
        ready=("True", "Scheduled"),
    ),
    Row(
        "a trigger handled in this process before its status landed does not rerun",
        now=at(seconds=100),
        status={"lastScheduleTime": "2026-11-28T10:00:00Z"},
        memory={"handled_trigger": "t1"},
        trigger="t1",
        wait=at(1),
        patch={"nextExecutionTime": "2026-11-28T11:00:00Z"},
        ready=("True", "Scheduled"),
    ),
    Row(
        "DST gap: a 02:30 Stockholm slot does not exist on 29 March; the next is 30 March",
        now=utc("2026-03-28T02:00:00"),  # 03:00 local, after that day's slot
        spec={"schedule": "30 2 * * *", "timeZone": "Europe/Stockholm"},
        status={"lastScheduleTime": "2026-03-28T01:30:00Z"},
        wait=utc("2026-03-30T00:30:00"),  # 02:30 CEST
        patch={"nextExecutionTime": "2026-03-30T00:30:00Z"},
        ready=("True", "Scheduled"),
    ),
    Row(
        "DST fold: 02:30 happens twice on 25 October and runs once, at the first",
        now=utc("2026-10-25T01:30:01"),  # the second 02:30 (CET)
        spec={"schedule": "30 2 * * *", "timeZone": "Europe/Stockholm"},
        status={"lastScheduleTime": "2026-10-25T00:30:00Z"},  # the first 02:30 (CEST)
        memory={"awaited": utc("2026-10-25T00:30:00")},
        wait=utc("2026-10-26T01:30:00"),
        patch={"nextExecutionTime": "2026-10-26T01:30:00Z"},
        ready=("True", "Scheduled"),
    ),
    Row(
        "invalid schedule: Ready=False and a Warning; nothing runs until the spec changes",
        now=at(seconds=5),
        spec={"schedule": "every day"},
        trigger="t1",  # a trigger does not run an unusable spec either, but is answered
        wait=None,
        patch={"nextExecutionTime": None, "observedGeneration": 1, "lastHandledTrigger": "t1"},
        events=("InvalidSchedule",),
        ready=("False", "InvalidSchedule"),
        stalled=True,
    ),
    Row(
        "a new trigger on an invalid spec already reported: handled, Ready says why, no Warning",
        now=at(seconds=5),
        spec={"schedule": "0 25 * * *"},
        status={"lastHandledTrigger": "t1"},
        memory={
            "invalid_reported": (
                1,
                "InvalidSchedule",
                "schedule '0 25 * * *' is not a valid cron expression",
            ),
        },
        trigger="t2",
        wait=None,
        patch={"nextExecutionTime": None, "lastHandledTrigger": "t2"},
        ready=("False", "InvalidSchedule"),
        stalled=True,
    ),
    Row(
        "a handled trigger on an invalid spec is not answered twice",
        now=at(seconds=5),
        spec={"schedule": "0 25 * * *"},
        status={"lastHandledTrigger": "t1"},
        memory={
            "invalid_reported": (
                1,
                "InvalidSchedule",
                "schedule '0 25 * * *' is not a valid cron expression",
            ),
            "handled_trigger": "t1",
        },
        trigger="t1",
        wait=None,
    ),
    Row(
        "the same invalid spec is reported once",
        now=at(seconds=5),
        spec={"timeZone": "Mars/Olympus"},
        memory={
            "invalid_reported": (
                1,
                "UnknownTimeZone",
                "unknown time zone 'Mars/Olympus': use an IANA name such as Europe/Stockholm",
            )
        },
        wait=None,
    ),
    Row(
        "recovery from an invalid spec: Ready=Scheduled again",
        now=at(seconds=5),
        generation=2,
        status={
            "lastScheduleTime": "2026-11-28T10:00:00Z",
            "conditions": [{**READY_SCHEDULED, "status": "False", "reason": "InvalidSchedule"}],
        },
        memory={"invalid_reported": (1, "InvalidSchedule", "x"), "ready_from_spec": True},
        wait=at(1),
        patch={"nextExecutionTime": "2026-11-28T11:00:00Z", "observedGeneration": 2},
        ready=("True", "Scheduled"),
    ),
    Row(
        "Reconciling left by a run that died with its process is written away",
        now=at(seconds=5),
        status={
            "lastScheduleTime": "2026-11-28T10:00:00Z",
            "nextExecutionTime": "2026-11-28T11:00:00Z",
            "observedGeneration": 1,
            "conditions": [READY_LOGIN_FAILED, {"type": "Reconciling", "status": "True"}],
        },
        wait=at(1),
        patch={"nextExecutionTime": "2026-11-28T11:00:00Z"},
        ready=("False", "LoginFailed"),
    ),
    Row(
        "a run's verdict stays until the next run; NEXT RUN and generation still move",
        now=at(seconds=5),
        generation=2,
        status={"lastScheduleTime": "2026-11-28T10:00:00Z", "conditions": [READY_LOGIN_FAILED]},
        memory={"ready_from_spec": False},
        wait=at(1),
        patch={"nextExecutionTime": "2026-11-28T11:00:00Z", "observedGeneration": 2},
        ready=("False", "LoginFailed"),
    ),
    Row(
        "after a restart a run's verdict is told by its reason, and kept",
        now=at(seconds=5),
        status={
            "lastScheduleTime": "2026-11-28T10:00:00Z",
            "nextExecutionTime": "2026-11-28T11:00:00Z",
            "observedGeneration": 1,
            "conditions": [READY_LOGIN_FAILED],
        },
        wait=at(1),
    ),
    # Quiet hours' end (status.notify.heldUntil) is a due time like a slot.
    Row(
        "quiet hours ended with messages held: the digest is claimed, then sent",
        now=at(0.25, seconds=0.1),
        status={**CLAIMED_10, "notify": {"heldChanges": 2, "heldUntil": "2026-11-28T10:15:00Z"}},
        run=Digest(at(0.25)),
        patch={"notify": {"heldUntil": None}},
    ),
    Row(
        "a digest overdue after an outage is still sent (no deadline: nothing is fetched)",
        now=at(0.9),
        spec={"startingDeadlineSeconds": 0},
        status={**CLAIMED_10, "notify": {"heldUntil": "2026-11-28T10:15:00Z"}},
        run=Digest(at(0.25)),
        patch={"notify": {"heldUntil": None}},
    ),
    Row(
        "held until before the next slot: woken for it, NEXT RUN still the slot",
        now=at(seconds=30),
        status={**CLAIMED_10, "notify": {"heldChanges": 2, "heldUntil": "2026-11-28T10:15:00Z"}},
        wait=at(0.25),
        patch={"nextExecutionTime": "2026-11-28T11:00:00Z"},
        ready=("True", "Scheduled"),
    ),
    Row(
        "held until after the next slot: the slot first",
        now=at(seconds=30),
        status={**CLAIMED_10, "notify": {"heldChanges": 2, "heldUntil": "2026-11-28T11:15:00Z"}},
        wait=at(1),
        patch={"nextExecutionTime": "2026-11-28T11:00:00Z"},
        ready=("True", "Scheduled"),
    ),
    Row(
        "suspended with messages held: woken for the digest only",
        now=at(seconds=30),
        spec={"suspend": True},
        status={**CLAIMED_10, "notify": {"heldUntil": "2026-11-28T10:15:00Z"}},
        wait=at(0.25),
        patch={"nextExecutionTime": None},
        ready=("True", "Suspended"),
    ),
    Row(
        "a manual trigger and a digest both due: the trigger first, the digest next step",
        now=at(0.25, seconds=1),
        trigger="t1",
        status={**CLAIMED_10, "notify": {"heldUntil": "2026-11-28T10:15:00Z"}},
        run=Manual("t1"),
        patch={"lastClaimedTrigger": "t1"},
    ),
]


def memory_for(row: Row) -> Memory:
    memory = Memory.start(WatcherStatus.parse(row.status), CREATED)
    return replace(memory, **row.memory)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_decide(row: Row) -> None:
    annotations = {} if row.trigger is None else {"matchlist.io/trigger": row.trigger}
    view = View.of(
        {
            "metadata": {"generation": row.generation, "annotations": annotations},
            "spec": {**SPEC, **row.spec},
        }
    )
    decision = decide(memory_for(row), view, row.now, allow_seconds=False)

    if row.run is not None:
        assert isinstance(decision.action, Run)
        assert decision.action.trigger == row.run
    else:
        assert decision.action == Wait(row.wait)
    if row.patch is None:
        assert decision.patch is None
    else:
        assert decision.patch is not None
        assert {key: decision.patch.get(key) for key in row.patch} == row.patch
    conditions = {
        c["type"]: (c["status"], c["reason"]) for c in (decision.patch or {}).get("conditions", [])
    }
    if row.ready is not None:
        assert conditions["Ready"] == row.ready
    elif row.run is None:
        assert conditions == {}
    # kstatus: Reconciling while a run is in progress, Stalled for a spec that cannot be used.
    assert conditions.get("Reconciling") == (("True", "Running") if row.run else None)
    assert conditions.get("Stalled") == (
        ("True", row.ready[1]) if row.stalled and row.ready else None
    )
    assert tuple(note.reason for note in decision.events) == row.events


def apply(memory: Memory, view: View, now: datetime, stored: dict[str, Any]) -> Memory:
    """One step as the scheduler carries it out: the patch merged into status, memory kept."""
    decision = decide(memory, view, now, allow_seconds=False)
    if decision.patch is not None:
        stored.update(decision.patch)
    return replace(decision.memory, status=WatcherStatus.parse(stored))


def test_a_slot_runs_once_and_a_trigger_once_across_steps() -> None:
    stored: dict[str, Any] = {}
    view = View.of({"metadata": {"generation": 1}, "spec": SPEC})
    memory = Memory.start(WatcherStatus(), at(seconds=-30))
    memory = apply(memory, view, at(seconds=-29), stored)
    assert memory.awaited == at()
    runs = []
    for now in (at(seconds=0.1), at(seconds=0.2), at(seconds=5)):
        decision = decide(memory, view, now, allow_seconds=False)
        if isinstance(decision.action, Run):
            runs.append(decision.action.trigger)
        memory = apply(memory, view, now, stored)
    assert runs == [Scheduled(at())]
    assert stored["lastScheduleTime"] == "2026-11-28T10:00:00Z"

    triggered = View.of(
        {"metadata": {"generation": 1, "annotations": {"matchlist.io/trigger": "t1"}}, "spec": SPEC}
    )
    first = decide(memory, triggered, at(seconds=6), allow_seconds=False)
    assert isinstance(first.action, Run)
    assert first.action.trigger == Manual("t1")
    again = decide(first.memory, triggered, at(seconds=7), allow_seconds=False)
    assert again.action == Wait(at(1))


def test_a_refused_write_keeps_nothing() -> None:
    """The scheduler keeps `decision.memory` only once its patch is written: deciding again from
    the old memory claims the same slot again (never a later one, never two)."""
    view = View.of({"metadata": {"generation": 1}, "spec": SPEC})
    memory = Memory.start(
        WatcherStatus.parse({"lastScheduleTime": "2026-11-28T09:00:00Z"}), CREATED
    )
    memory = replace(memory, awaited=at())
    first = decide(memory, view, at(seconds=0.1), allow_seconds=False)
    retry = decide(memory, view, at(seconds=5.1), allow_seconds=False)
    assert isinstance(first.action, Run)
    assert isinstance(retry.action, Run)
    assert first.action.trigger == retry.action.trigger == Scheduled(at())


def test_a_digest_runs_once_across_steps_and_replicas() -> None:
    """Claimed by clearing heldUntil: neither this scheduler's next step nor another replica
    deciding from the claimed status sends it again."""
    stored: dict[str, Any] = {
        **CLAIMED_10,
        "notify": {"heldChanges": 2, "heldUntil": "2026-11-28T10:15:00Z"},
    }
    view = View.of({"metadata": {"generation": 1}, "spec": SPEC})
    memory = Memory.start(WatcherStatus.parse(stored), CREATED)
    runs: list[Trigger] = []
    for now in (at(0.25), at(0.25, seconds=0.1), at(0.25, seconds=5)):
        decision = decide(memory, view, now, allow_seconds=False)
        if isinstance(decision.action, Run):
            runs.append(decision.action.trigger)
            assert not WatcherStatus.parse(stored).claims(decision.action.trigger)
        memory = apply(memory, view, now, stored)
        assert WatcherStatus.parse(stored).claims(Digest(at(0.25)))
    assert runs == [Digest(at(0.25))]
    assert stored["notify"]["heldUntil"] is None
    other = Memory.start(WatcherStatus.parse(stored), CREATED)
    assert decide(other, view, at(0.25, seconds=6), allow_seconds=False).action == Wait(at(1))
