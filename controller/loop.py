"""The life of one MatchWatcher in the operator: sleep until the next slot or a wake-up, run.

Kept free of kopf: handlers.py gives it a live view of the resource, a stop check and an Event
sink, and pokes it when the resource changes. One asyncio task per watcher (the kopf daemon
running `serve`); waiting is a single `Event.wait` with a timeout, so idle watchers cost no CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from controller.config import Settings
from controller.errors import DetectorError, InvalidSpec, bug_location
from controller.model import TRIGGER_ANNOTATION, WatcherRef, WatcherSpec, parse_spec
from controller.run import EventSink, WatcherRunner
from controller.schedule import Schedule, parse_schedule, plan
from controller.status import Readiness, parse_timestamp, status_seen, timestamp

log = logging.getLogger(__name__)
# Ready reasons that describe the spec rather than a run; they are replaced when the spec is
# (re)read. A run's own verdict (Succeeded, LoginFailed, ...) stays until the next run.
_SPEC_REASONS = frozenset(
    {"InvalidSpec", "InvalidSchedule", "UnknownTimeZone", "Scheduled", "Suspended"}
)
# After the API server refused a status patch, wait before trying again (and never spin).
_API_RETRY_SECONDS = 5.0
# After an unexpected error: retry later, or at once when the resource changes.
_INTERNAL_ERROR_RETRY_SECONDS = 60.0


def _trigger_of(body: Mapping[str, Any]) -> str | None:
    value = (body.get("metadata") or {}).get("annotations", {}).get(TRIGGER_ANNOTATION)
    return value if isinstance(value, str) and value.strip() else None


class WatcherLoop:
    def __init__(
        self,
        *,
        ref: WatcherRef,
        body: Callable[[], Mapping[str, Any]],
        runner: WatcherRunner,
        patch_status: Callable[[WatcherRef, Mapping[str, Any]], Any],
        emit: EventSink,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ref = ref
        self._body = body
        self._runner = runner
        self._patch_status = patch_status
        self._emit = emit
        self._settings = settings
        self._clock = clock
        self.wake = asyncio.Event()
        initial = body()
        # Our own copy of the status: the live body lags behind our patches.
        self.status: dict[str, Any] = dict(initial.get("status") or {})
        self._last_slot = parse_timestamp(self.status.get("lastScheduleTime"))
        self._handled_trigger: str | None = self.status.get("lastHandledTrigger")
        created = parse_timestamp((initial.get("metadata") or {}).get("creationTimestamp"))
        self._not_before = created or self._clock()
        self._skip_reported: datetime | None = None
        self._invalid_reported: tuple[Any, ...] | None = None
        self._seen_fields: tuple[Any, ...] | None = None
        # The (schedule, zone) of the last claimed slot, from status: a schedule changed while
        # no operator ran is detected at the first step like a change seen live.
        claimed_for = self.status.get("lastScheduleOf") or {}
        self._timing: tuple[str, str] | None = (
            (str(claimed_for.get("schedule")), str(claimed_for.get("timeZone")))
            if isinstance(claimed_for, dict) and claimed_for.get("schedule")
            else None
        )
        # The slot this loop last slept until: it is on time however late the wake-up.
        self._awaited: datetime | None = None
        # Whether the Ready condition was last written for the spec (Scheduled, Suspended,
        # InvalidSchedule, ...) or by a run; None until this process wrote one.
        self._ready_from_spec: bool | None = None
        self.last_success: datetime | None = parse_timestamp(self.status.get("lastSuccessfulTime"))

    def poke(self, body: Mapping[str, Any]) -> None:
        """Called for every watch event: wake up only for what can change the plan."""
        meta = body.get("metadata") or {}
        fields = (meta.get("generation"), _trigger_of(body), meta.get("deletionTimestamp"))
        if fields != self._seen_fields:
            self._seen_fields = fields
            self.wake.set()

    async def serve(self, stopped: Callable[[], bool]) -> None:
        while not stopped():
            self.wake.clear()  # before reading the body: a later poke is never lost
            try:
                await self._step()
            except DetectorError as exc:  # the API server refused a status write
                log.warning("%s/%s: %s", self.ref.namespace, self.ref.name, exc.message)
                await self._sleep(_API_RETRY_SECONDS)
            except Exception as exc:  # a bug: keep this watcher alive (and every other one)
                log.error(
                    "%s/%s: internal error %s at %s",
                    self.ref.namespace,
                    self.ref.name,
                    type(exc).__name__,
                    bug_location(exc),
                )
                await self._emit(
                    "Warning", "InternalError", f"internal error: {type(exc).__name__}"
                )
                await self._sleep(_INTERNAL_ERROR_RETRY_SECONDS)

    async def _sleep(self, seconds: float | None) -> None:
        if seconds is not None and seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wake.wait()

    async def _step(self) -> None:
        body = self._body()
        generation = (body.get("metadata") or {}).get("generation")
        try:
            spec = parse_spec(body.get("spec") or {})
            schedule = parse_schedule(
                spec.schedule,
                spec.time_zone,
                allow_seconds=self._settings.allow_seconds_schedules,
            )
        except InvalidSpec as exc:
            await self._report_invalid(exc, generation)
            await self._sleep(None)  # nothing runs until the spec changes
            return
        self._invalid_reported = None
        now = self._clock()
        timing = (schedule.expression, spec.time_zone)
        if self._timing is not None and timing != self._timing:
            # A new schedule starts now: its slots from before the change were never missed.
            self._not_before = max(self._not_before, now)
        self._timing = timing
        trigger = _trigger_of(body)
        if trigger is not None and trigger != self._handled_trigger:
            await self._run(
                spec, schedule, generation, trigger="manual", slot=None, handled=trigger
            )
            return
        p = plan(
            schedule,
            now=now,
            last_slot=self._last_slot,
            not_before=self._not_before,
            deadline_seconds=spec.starting_deadline_seconds,
            suspended=spec.suspend,
            awaited=self._awaited,
        )
        skip_key = p.skipped_through or p.due  # the slot the skipped ones lead up to
        if p.skipped and skip_key != self._skip_reported:
            self._skip_reported = skip_key
            await self._emit(
                "Warning",
                "MissedSchedule",
                f"{p.skipped}{'+' if p.capped else ''} missed schedule "
                "slot(s) not run"
                + (
                    ""
                    if p.due
                    else f" (the latest, {timestamp(p.skipped_through)}, is past "
                    f"startingDeadlineSeconds={spec.starting_deadline_seconds})"
                ),
            )
        if p.due is None and p.skipped_through is not None:
            self._not_before = max(self._not_before, p.skipped_through)
        if p.due is not None:
            await self._run(
                spec, schedule, generation, trigger="schedule", slot=p.due, handled=None
            )
            return
        await self._write_seen(spec, generation, p.next)
        self._awaited = p.next
        await self._sleep(None if p.next is None else (p.next - self._clock()).total_seconds())

    async def _run(
        self,
        spec: WatcherSpec,
        schedule: Schedule,
        generation: int | None,
        *,
        trigger: str,
        slot: datetime | None,
        handled: str | None,
    ) -> None:
        if slot is not None:
            # Claim the slot in status before running it: a run that takes the process down
            # (OOM-kill, SIGKILL) is not started again after the restart, so it cannot crash-loop
            # the operator. Nothing is lost: the snapshot has not advanced, and the next run
            # reports every change since. A refused claim raises: the slot is planned again.
            self.status = await self._patch_status(
                self.ref,
                {
                    "lastScheduleTime": timestamp(slot),
                    "lastScheduleOf": {"schedule": schedule.expression, "timeZone": spec.time_zone},
                },
            )
            self._last_slot = slot
        # Remember first: whatever happens to the run's status patch, this trigger never reruns
        # in this process.
        if handled is not None:
            self._handled_trigger = handled

        def next_time() -> datetime | None:
            return None if spec.suspend else schedule.next_after(self._clock())

        run = asyncio.ensure_future(
            self._runner.run(
                self.ref,
                spec,
                schedule.zone,
                trigger=trigger,
                slot=slot,
                handled_trigger=handled,
                previous_status=self.status,
                generation=generation,
                next_time=next_time,
                emit=self._emit,
                started=self._clock(),  # now, not when the run's task gets its first turn
            )
        )
        try:
            # Shielded: a stop request (deletion, SIGTERM) lets a started run finish, bounded
            # by the shutdown timeout, instead of cutting it between delivery and snapshot.
            self.status = await asyncio.shield(run)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(run, self._settings.shutdown_timeout_seconds)
            raise
        self._ready_from_spec = False
        if self.status.get("lastSuccessfulTime"):
            self.last_success = parse_timestamp(self.status.get("lastSuccessfulTime"))

    async def _report_invalid(self, exc: InvalidSpec, generation: int | None) -> None:
        key = (generation, exc.reason, exc.message)
        if key == self._invalid_reported:
            return
        self.status = await self._patch_status(
            self.ref,
            status_seen(
                self.status,
                Readiness(False, exc.reason, exc.message),
                now=self._clock(),
                next_time=None,
                generation=generation,
            ),
        )
        # Only once written: a refused patch is retried on the next step.
        self._invalid_reported = key
        self._ready_from_spec = True
        await self._emit("Warning", exc.reason, exc.message)

    async def _write_seen(
        self, spec: WatcherSpec, generation: int | None, next_time: datetime | None
    ) -> None:
        """Show NEXT RUN and Ready before the first run, and after every spec change."""
        ready = next(
            (c for c in self.status.get("conditions") or [] if c.get("type") == "Ready"), None
        )
        from_spec = (
            ready is None
            or (self._ready_from_spec is None and ready.get("reason") in _SPEC_REASONS)
            or bool(self._ready_from_spec)  # None after a restart: judged by the reason above
        )
        if from_spec or ready is None:
            readiness = (
                Readiness(True, "Suspended", "suspended: no scheduled runs")
                if spec.suspend
                else Readiness(True, "Scheduled", f"next run at {timestamp(next_time)}")
            )
        else:
            readiness = Readiness(
                ready.get("status") == "True", ready.get("reason", ""), ready.get("message", "")
            )
        current = (
            self.status.get("observedGeneration"),
            self.status.get("nextExecutionTime"),
            None
            if ready is None
            else (ready.get("status"), ready.get("reason"), ready.get("message")),
        )
        wanted = (
            generation,
            timestamp(next_time),
            ("True" if readiness.ready else "False", readiness.reason, readiness.message),
        )
        if current == wanted:
            return
        self._ready_from_spec = from_spec
        self.status = await self._patch_status(
            self.ref,
            status_seen(
                self.status,
                readiness,
                now=self._clock(),
                next_time=next_time,
                generation=generation,
            ),
        )
