"""What a watcher's scheduler does next, decided without I/O or a clock: table-tested.

Modelled on the Kubernetes CronJob controller (`syncCronJob` decides, the queue waits): `decide`
takes what the scheduler remembers, what the MatchWatcher says now and the time, and returns one
action (run a slot, run a manual trigger, or wait) with the status patch and Events that come
first. controller/runtime/scheduler.py carries decisions out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from controller.core.errors import InvalidSpec
from controller.core.events import Note
from controller.core.model import TRIGGER_ANNOTATION, WatcherSpec, parse_spec
from controller.core.reasons import SPEC_REASONS, Reason
from controller.core.schedule import Schedule, parse_schedule, plan
from controller.core.status import (
    RECONCILING,
    STALLED,
    Readiness,
    WatcherStatus,
    digest_claim,
    parse_timestamp,
    slot_claim,
    status_seen,
    timestamp,
    trigger_claim,
)
from controller.core.trigger import Digest, Manual, Scheduled, Trigger


@dataclass(frozen=True)
class View:
    """What the MatchWatcher object says at this step."""

    generation: int | None
    spec: Mapping[str, Any]
    trigger: str | None  # the trigger annotation's value; None when absent or blank
    uid: str | None = None  # seeds the schedule's H values

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> View:
        meta = body.get("metadata") or {}
        trigger = (meta.get("annotations") or {}).get(TRIGGER_ANNOTATION)
        return cls(
            generation=meta.get("generation"),
            spec=body.get("spec") or {},
            trigger=trigger if isinstance(trigger, str) and trigger.strip() else None,
            uid=meta.get("uid"),
        )


@dataclass(frozen=True)
class Memory:
    """What a scheduler keeps between steps: the status as last written, and what this process
    has seen and done (none of which needs to survive a restart)."""

    status: WatcherStatus
    # No slot at or before this counts as missed: the watcher's creation, the latest slot
    # already reported as skipped, or the moment its schedule changed.
    not_before: datetime
    handled_trigger: str | None  # set before the run: a trigger never reruns in this process
    timing: tuple[str, str] | None  # (schedule, zone) last acted on
    awaited: datetime | None = None  # the slot the scheduler last slept until
    skip_reported: datetime | None = None  # the slot the last MissedSchedule Event led up to
    invalid_reported: tuple[Any, ...] | None = None  # (generation, reason, message) written
    # Whether Ready was last written for the spec (Scheduled, Suspended, InvalidSchedule, ...)
    # or by a run; None until this process wrote one.
    ready_from_spec: bool | None = None

    @classmethod
    def start(cls, status: WatcherStatus, created: datetime) -> Memory:
        """After a restart everything comes from status: a schedule changed while no operator
        ran is told apart through lastScheduleOf, a handled trigger through lastHandledTrigger."""
        return cls(
            status=status,
            not_before=created,
            handled_trigger=status.last_handled_trigger,
            timing=status.last_schedule_of,
        )

    def after_run(self) -> Memory:
        """A run wrote Ready: it stays until the next run or a spec change."""
        return replace(self, ready_from_spec=False)


@dataclass(frozen=True)
class Run:
    trigger: Trigger
    spec: WatcherSpec
    schedule: Schedule


@dataclass(frozen=True)
class Wait:
    until: datetime | None  # None: until the MatchWatcher changes


@dataclass(frozen=True)
class Decision:
    """Write `patch` (when set), keep `memory` (with the status the write returned), post
    `events`, then carry out `action`. Nothing is kept when the write fails: the next step
    decides again, so a refused slot claim never starts its run."""

    action: Run | Wait
    memory: Memory
    patch: Mapping[str, Any] | None = None
    events: tuple[Note, ...] = ()


def created_at(body: Mapping[str, Any]) -> datetime | None:
    return parse_timestamp((body.get("metadata") or {}).get("creationTimestamp"))


def decide(memory: Memory, view: View, now: datetime, *, allow_seconds: bool) -> Decision:
    try:
        spec = parse_spec(view.spec)
        schedule = parse_schedule(
            spec.schedule, spec.time_zone, allow_seconds=allow_seconds, hash_id=view.uid
        )
    except InvalidSpec as exc:
        return _invalid(memory, view, exc, now)
    timing = (schedule.expression, spec.time_zone)
    memory = replace(
        memory,
        invalid_reported=None,
        timing=timing,
        # A new schedule starts now: its slots from before the change were never missed.
        not_before=memory.not_before
        if memory.timing in (None, timing)
        else max(memory.not_before, now),
    )
    if (
        view.trigger is not None
        and view.trigger != memory.handled_trigger
        and not memory.status.claims(Manual(view.trigger))
    ):
        return Decision(
            Run(Manual(view.trigger), spec, schedule),
            replace(memory, handled_trigger=view.trigger),
            # Claimed before the run, as a slot is: by one replica only (compare-and-swap,
            # controller/runtime/scheduler.py), and never again after a run that killed the
            # process.
            patch=trigger_claim(memory.status, view.trigger, now=now, generation=view.generation),
        )
    held = memory.status.people.held_until
    if held is not None and held <= now:
        return Decision(
            Run(Digest(held), spec, schedule),
            memory,
            patch=digest_claim(memory.status, now=now, generation=view.generation),
        )
    p = plan(
        schedule,
        now=now,
        last_slot=memory.status.last_schedule_time,
        not_before=memory.not_before,
        deadline_seconds=spec.starting_deadline_seconds,
        suspended=spec.suspend,
        awaited=memory.awaited,
    )
    events: tuple[Note, ...] = ()
    skip_key = p.skipped_through or p.due  # the slot the skipped ones lead up to
    if p.skipped and skip_key != memory.skip_reported:
        memory = replace(memory, skip_reported=skip_key)
        late = (
            ""
            if p.due
            else f" (the latest, {timestamp(p.skipped_through)}, is past "
            f"startingDeadlineSeconds={spec.starting_deadline_seconds})"
        )
        events = (
            Note(
                "Warning",
                Reason.MISSED_SCHEDULE,
                f"{p.skipped}{'+' if p.capped else ''} missed schedule slot(s) not run{late}",
            ),
        )
    if p.due is not None:
        return Decision(
            Run(Scheduled(p.due), spec, schedule),
            memory,
            # Claimed before the run: a run that takes the process down (OOM-kill, SIGKILL) is
            # not started again after the restart, so it cannot crash-loop the operator.
            # Nothing is lost: the snapshot has not advanced, and the next run reports it all.
            patch=slot_claim(
                memory.status,
                p.due,
                schedule.expression,
                spec.time_zone,
                now=now,
                generation=view.generation,
            ),
            events=events,
        )
    if p.skipped_through is not None:
        memory = replace(memory, not_before=max(memory.not_before, p.skipped_through))
    memory = replace(memory, awaited=p.next)
    # Woken for the next slot, or for quiet hours' end when messages are held for it.
    until = p.next if held is None or (p.next is not None and p.next < held) else held
    shown = _readiness_shown(memory, spec, p.next, view.generation)
    if shown is None:
        return Decision(Wait(until), memory, events=events)
    readiness, from_spec = shown
    return Decision(
        Wait(until),
        replace(memory, ready_from_spec=from_spec),
        patch=status_seen(
            memory.status, readiness, now=now, next_time=p.next, generation=view.generation
        ),
        events=events,
    )


def next_run(spec: WatcherSpec, schedule: Schedule, now: datetime) -> datetime | None:
    """NEXT RUN as a finished run records it."""
    return None if spec.suspend else schedule.next_after(now)


def _invalid(memory: Memory, view: View, exc: InvalidSpec, now: datetime) -> Decision:
    """Ready=False and a Warning, once per spec generation and problem; nothing runs until the
    spec changes (a manual trigger included: there is no spec to run). A new trigger is still
    answered: recorded as handled beside the Ready condition that says why nothing ran, so
    whoever waits for lastHandledTrigger (`kubectl matchlist run --wait`) learns the reason."""
    key = (view.generation, exc.reason, exc.message)
    trigger = view.trigger if view.trigger != memory.handled_trigger else None
    if key == memory.invalid_reported and trigger is None:
        return Decision(Wait(None), memory)
    problem = Readiness(False, exc.reason, exc.message)
    patch = status_seen(
        memory.status,
        problem,
        now=now,
        next_time=None,
        generation=view.generation,
        stalled=replace(problem, ready=True),
    )
    if trigger is not None:
        patch["lastHandledTrigger"] = trigger
    return Decision(
        Wait(None),
        replace(
            memory,
            invalid_reported=key,
            ready_from_spec=True,
            handled_trigger=memory.handled_trigger if trigger is None else trigger,
        ),
        patch=patch,
        events=()
        if key == memory.invalid_reported
        else (Note("Warning", exc.reason, exc.message),),
    )


def _readiness_shown(
    memory: Memory, spec: WatcherSpec, next_time: datetime | None, generation: int | None
) -> tuple[Readiness, bool] | None:
    """Ready and NEXT RUN shown while waiting: written before the first run and after every
    spec change. A run's own verdict (Succeeded, LoginFailed, ...) stays until the next run;
    the spec's (Scheduled, Suspended, InvalidSchedule, ...) is replaced. None: nothing to write.
    """
    status, ready = memory.status, memory.status.ready
    from_spec = (
        ready is None
        # After a restart (None), judged by the reason; else by who wrote it in this process.
        or (memory.ready_from_spec is None and ready.reason in SPEC_REASONS)
        or bool(memory.ready_from_spec)
    )
    if ready is not None and not from_spec:
        readiness = ready.readiness()
    elif spec.suspend:
        readiness = Readiness(True, Reason.SUSPENDED, "suspended: no scheduled runs")
    else:
        readiness = Readiness(True, Reason.SCHEDULED, f"next run at {timestamp(next_time)}")
    current = (
        status.observed_generation,
        timestamp(status.next_execution_time),
        None if ready is None else ready.readiness(),
    )
    # Stalled or Reconciling left over (the spec was fixed; a run died with its process):
    # written away as well.
    lingering = any(c.get("type") in (STALLED, RECONCILING) for c in status.other_conditions)
    if current == (generation, timestamp(next_time), readiness) and not lingering:
        return None
    return readiness, from_spec
