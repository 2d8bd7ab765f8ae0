"""Pure schedule maths: cron slots in a time zone, missed slots and the deadline rule.

No clock is read here: `now` is always an argument, so every rule is tested with tables.

Slots are computed on the wall clock of the watcher's zone and then placed on the time line:
a wall-clock slot that does not exist (spring forward) is skipped, and one that occurs twice
(fall back) runs once, at its first occurrence. All returned datetimes are UTC-aware.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from controller.core.errors import InvalidSpec
from controller.core.reasons import Reason

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Counting missed slots stops here: the count only feeds a MissedSchedule Event ("10+"), and
# each slot is a croniter step on the event loop (a per-minute watcher down for a day would
# otherwise walk 1,440 of them at every restart, for every such watcher).
MAX_COUNTED_MISSES = 10
# Wall-clock slots tried in a row before a schedule whose every slot falls into a DST gap
# counts as never firing (a real schedule needs one or two).
_MAX_GAP_SLOTS = 1_000


@dataclass(frozen=True)
class Schedule:
    expression: str
    zone: ZoneInfo
    # Seeds Jenkins-style `H` values (a stable, spread minute/hour per watcher): its uid.
    hash_id: str | None = None

    @property
    def _cron(self) -> str:
        """What croniter walks: a 5-field hashed schedule also gets a hashed second, so the
        watchers sharing a minute (10,000 hourly ones: ~170 a minute) do not all start in its
        first second; the minute and hour stay those of the expression."""
        if self.hash_id and len(self.expression.split(" ")) == 5:
            return f"{self.expression} H"
        return self.expression

    def slots_after(self, instant: datetime) -> Iterator[datetime]:
        """The slots strictly after `instant`, in order (one croniter for the whole walk)."""
        local = instant.astimezone(self.zone).replace(tzinfo=None)
        walk = croniter(self._cron, local, hash_id=self.hash_id)
        misses = 0
        while misses < _MAX_GAP_SLOTS:
            slot = self._place(walk.get_next(datetime))
            if slot is None or slot <= instant:
                misses += 1
                continue
            misses = 0
            yield slot
        raise CroniterBadDateError("every slot falls into a daylight saving gap")

    def next_after(self, instant: datetime) -> datetime:
        """The first slot strictly after `instant`."""
        return next(self.slots_after(instant))

    def latest_at_or_before(self, instant: datetime) -> datetime:
        """The most recent slot at or before `instant`."""
        local = instant.astimezone(self.zone).replace(tzinfo=None)
        # croniter's get_prev is strictly before its start; start a second later to include it.
        walk = croniter(self._cron, local + timedelta(seconds=1), hash_id=self.hash_id)
        for _ in range(_MAX_GAP_SLOTS):
            slot = self._place(walk.get_prev(datetime))
            if slot is not None and slot <= instant:
                return slot
        raise CroniterBadDateError("every slot falls into a daylight saving gap")

    def _place(self, wall: datetime) -> datetime | None:
        """Wall-clock time in the zone → UTC instant; None when that wall time does not exist."""
        aware = wall.replace(tzinfo=self.zone, fold=0)
        utc = aware.astimezone(UTC)
        if utc.astimezone(self.zone).replace(tzinfo=None) != wall:
            return None
        return utc


# croniter's R (a random time, different at every parse): slots nobody can predict, so refused. An
# R standing alone as a value, not inside a name such as MAR. H (Jenkins' hashed value) is
# allowed: a stable time per watcher, chosen from its uid, so `H * * * *` spreads watchers over
# the hour instead of stampeding FOGIS at :00.
_RANDOM_VALUE = re.compile(r"(?<![A-Za-z])[Rr](?![A-Za-z])")
_HASHED_VALUE = re.compile(r"(?<![A-Za-z])[Hh](?![A-Za-z])")


def parse_schedule(
    expression: str, time_zone: str, *, allow_seconds: bool = False, hash_id: str | None = None
) -> Schedule:
    """Validate a cron expression and zone name; raises InvalidSpec with the condition reason.
    `hash_id` (the watcher's uid) gives `H` values their stable per-watcher time."""
    # Only a hashed schedule is the watcher's own: keyed by uid, every other schedule would miss
    # the cache once there are more watchers than it holds.
    hashed = hash_id if _HASHED_VALUE.search(expression) else None
    return _parse_schedule(expression, time_zone, allow_seconds, hashed)


# Every loop step re-reads its spec; a thousand watchers waking on one slot share a handful of
# schedules, so the validation walk runs once per distinct one (errors are not cached).
@functools.lru_cache(maxsize=4096)
def _parse_schedule(
    expression: str, time_zone: str, allow_seconds: bool, hash_id: str | None
) -> Schedule:
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory such as "Europe"
        raise InvalidSpec(
            f"unknown time zone {time_zone!r}: use an IANA name such as Europe/Stockholm",
            reason=Reason.UNKNOWN_TIME_ZONE,
        ) from None
    expr = " ".join(expression.split())
    expr = MACROS.get(expr.lower(), expr)
    allowed_fields = (5, 6) if allow_seconds else (5,)
    if expr.startswith("@") or len(expr.split(" ")) not in allowed_fields:
        raise InvalidSpec(
            f"schedule {expression!r} is not a 5-field cron expression "
            "or one of @hourly, @daily, @weekly, @monthly, @yearly",
            reason=Reason.INVALID_SCHEDULE,
        )
    if _RANDOM_VALUE.search(expr):
        raise InvalidSpec(
            f"schedule {expression!r} uses croniter's random (R) values; give fixed minutes "
            "and hours, or H for a stable one chosen per watcher",
            reason=Reason.INVALID_SCHEDULE,
        )
    if _HASHED_VALUE.search(expr) and not hash_id:
        raise InvalidSpec(
            f"schedule {expression!r} uses H, which needs a watcher to hash",
            reason=Reason.INVALID_SCHEDULE,
        )
    schedule = Schedule(expr, zone, hash_id if _HASHED_VALUE.search(expr) else None)
    try:
        # Parsing alone accepts dates that never come (30 February); asking for a slot does not.
        schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))
    except CroniterBadDateError:  # before ValueError: croniter's errors subclass it
        raise InvalidSpec(
            f"schedule {expression!r} never fires", reason=Reason.INVALID_SCHEDULE
        ) from None
    except (CroniterBadCronError, ValueError, KeyError):
        raise InvalidSpec(
            f"schedule {expression!r} is not a valid cron expression",
            reason=Reason.INVALID_SCHEDULE,
        ) from None
    return schedule


@dataclass(frozen=True)
class Plan:
    """What the scheduler should do at `now`."""

    due: datetime | None  # a slot to run now (at most one, the most recent missed one)
    skipped: int  # missed slots that will not run (older ones, or past the deadline)
    skipped_through: datetime | None  # when nothing runs: the newest slot counted in `skipped`
    next: datetime | None  # the next future slot; None while suspended
    capped: bool = False  # counting stopped at MAX_COUNTED_MISSES: `skipped` is a lower bound


def plan(
    schedule: Schedule,
    *,
    now: datetime,
    last_slot: datetime | None,
    not_before: datetime,
    deadline_seconds: int | None,
    suspended: bool,
    awaited: datetime | None = None,
) -> Plan:
    """Decide the run due at `now` following the CronJob rules in the design notes.

    `last_slot` is the slot of the last scheduled run (status.lastScheduleTime) and `not_before`
    the point before which no slot counts (the watcher's creation, or a slot already skipped).
    At most one missed slot runs: the most recent, and only within `deadline_seconds` when set.
    `awaited` is the slot the caller was sleeping until: that one is on time however late the
    wake-up (a loaded machine, deadline 0); the deadline is for slots missed while not waiting.
    Suspension simply means no due run and no next slot; like a CronJob, slots missed while
    suspended count as missed when it resumes (so the most recent may run within the deadline).
    """
    if suspended:
        return Plan(due=None, skipped=0, skipped_through=None, next=None)
    floor = max(last_slot, not_before) if last_slot is not None else not_before
    upcoming = schedule.next_after(now)
    latest = schedule.latest_at_or_before(now)
    if latest <= floor:
        return Plan(due=None, skipped=0, skipped_through=None, next=upcoming)
    missed = _count_slots(schedule, floor, latest)
    capped = missed >= MAX_COUNTED_MISSES
    late = (now - latest).total_seconds()
    if deadline_seconds is not None and late > deadline_seconds and latest != awaited:
        return Plan(due=None, skipped=missed, skipped_through=latest, next=upcoming, capped=capped)
    return Plan(
        due=latest,
        skipped=missed - 1,
        skipped_through=None,  # the run advances lastScheduleTime past the older misses
        next=upcoming,
        capped=capped,
    )


def _count_slots(schedule: Schedule, after: datetime, until: datetime) -> int:
    """Slots in (after, until], counted up to MAX_COUNTED_MISSES."""
    count = 0
    for slot in schedule.slots_after(after):
        if slot > until or count == MAX_COUNTED_MISSES:
            break
        count += 1
    return count
