"""Schedule maths with an injected clock: slots, DST, macros, missed slots and deadlines."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest

from controller.core.errors import InvalidSpec
from controller.core.schedule import MAX_COUNTED_MISSES, Plan, parse_schedule, plan


def utc(*fields: int) -> datetime:
    return datetime.fromisoformat(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00".format(*fields, 0, 0, 0)
    )


@pytest.mark.parametrize(
    "expression", ["0 9 * MAR THU", "0 9 * mar-oct sun,thu", "0 0 L * *", "*/15 8-18 * * MON-FRI"]
)
def test_names_with_r_and_h_are_not_random(expression: str) -> None:
    assert parse_schedule(expression, "UTC").expression == expression


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [
        ("0 * * * *", "UTC", utc(2026, 1, 1, 10, 0), utc(2026, 1, 1, 11, 0)),  # strictly after
        ("0 * * * *", "UTC", utc(2026, 1, 1, 10, 0, 1), utc(2026, 1, 1, 11, 0)),
        ("*/15 * * * *", "UTC", utc(2026, 1, 1, 10, 7), utc(2026, 1, 1, 10, 15)),
        ("@hourly", "UTC", utc(2026, 1, 1, 10, 30), utc(2026, 1, 1, 11, 0)),
        ("@daily", "UTC", utc(2026, 1, 1, 10, 30), utc(2026, 1, 2, 0, 0)),
        ("@weekly", "UTC", utc(2026, 1, 1, 10, 30), utc(2026, 1, 4, 0, 0)),  # a Sunday
        ("@monthly", "UTC", utc(2026, 1, 15), utc(2026, 2, 1)),
        ("@yearly", "UTC", utc(2026, 3, 1), utc(2027, 1, 1)),
        ("@YEARLY", "UTC", utc(2026, 3, 1), utc(2027, 1, 1)),
        # Stockholm is UTC+1 in winter, UTC+2 in summer.
        ("0 8 * * *", "Europe/Stockholm", utc(2026, 1, 1, 12), utc(2026, 1, 2, 7)),
        ("0 8 * * *", "Europe/Stockholm", utc(2026, 7, 1, 12), utc(2026, 7, 2, 6)),
        # Spring forward (29 March 2026, 02:00 → 03:00): 02:30 does not exist that day.
        ("30 2 * * *", "Europe/Stockholm", utc(2026, 3, 28, 12), utc(2026, 3, 30, 0, 30)),
        # Hourly across the gap: 01:00 then 03:00 local, nothing in between.
        ("0 * * * *", "Europe/Stockholm", utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 1, 0)),
        # Fall back (25 October 2026, 03:00 → 02:00): 02:30 happens twice, runs at the first.
        ("30 2 * * *", "Europe/Stockholm", utc(2026, 10, 24, 12), utc(2026, 10, 25, 0, 30)),
        ("30 2 * * *", "Europe/Stockholm", utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)),
        # ... and not again at the second 02:30 (01:30 UTC).
        ("*/30 * * * *", "Europe/Stockholm", utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 2, 0)),
    ],
)
def test_next_after(expression: str, zone: str, after: datetime, expected: datetime) -> None:
    assert parse_schedule(expression, zone).next_after(after) == expected


@pytest.mark.parametrize(
    ("expression", "zone", "at", "expected"),
    [
        ("0 * * * *", "UTC", utc(2026, 1, 1, 10, 0), utc(2026, 1, 1, 10, 0)),  # inclusive
        ("0 * * * *", "UTC", utc(2026, 1, 1, 10, 59, 59), utc(2026, 1, 1, 10, 0)),
        ("30 2 * * *", "Europe/Stockholm", utc(2026, 3, 29, 12), utc(2026, 3, 28, 1, 30)),
        # During the repeated hour the latest 02:00 slot is the first occurrence.
        ("0 2 * * *", "Europe/Stockholm", utc(2026, 10, 25, 1, 10), utc(2026, 10, 25, 0, 0)),
    ],
)
def test_latest_at_or_before(expression: str, zone: str, at: datetime, expected: datetime) -> None:
    assert parse_schedule(expression, zone).latest_at_or_before(at) == expected


@pytest.mark.parametrize(
    ("expression", "zone", "allow_seconds", "reason", "says"),
    [
        ("61 * * * *", "UTC", False, "InvalidSchedule", "not a valid cron"),
        ("* * * *", "UTC", False, "InvalidSchedule", "not a 5-field"),
        (
            "* * * * * *",
            "UTC",
            False,
            "InvalidSchedule",
            "not a 5-field",
        ),  # seconds only with the test hook
        ("* * * * * * *", "UTC", True, "InvalidSchedule", "not a 5-field"),
        ("@reboot", "UTC", False, "InvalidSchedule", "@hourly"),
        ("@every 5m", "UTC", False, "InvalidSchedule", "@hourly"),
        ("0 0 30 2 *", "UTC", False, "InvalidSchedule", "never fires"),  # 30 February never comes
        ("not a cron", "UTC", False, "InvalidSchedule", "not a 5-field"),
        ("0 * * * *", "Mars/Olympus", False, "UnknownTimeZone", "Mars/Olympus"),
        ("0 * * * *", "../etc/passwd", False, "UnknownTimeZone", "IANA"),
        ("0 * * * *", "", False, "UnknownTimeZone", "IANA"),
        (
            "0 * * * *",
            "Europe",
            False,
            "UnknownTimeZone",
            "IANA",
        ),  # a directory of zones, not a zone
        # Only ever 02:30 on the last Sunday of March: always inside the spring-forward gap.
        ("30 2 * 3 L0", "Europe/Stockholm", False, "InvalidSchedule", "never fires"),
        # croniter's random (R) values: slots nobody can predict.
        ("R * * * *", "UTC", False, "InvalidSchedule", "random (R)"),
        ("0 R * * *", "UTC", False, "InvalidSchedule", "random (R)"),
        ("0 0 * * r", "UTC", False, "InvalidSchedule", "random (R)"),
        ("* * * * * R", "UTC", True, "InvalidSchedule", "random (R)"),
        # H without a watcher to hash (run-once, a test) is refused, not silently fixed.
        ("H * * * *", "UTC", False, "InvalidSchedule", "needs a watcher"),
    ],
)
def test_invalid_schedules(
    expression: str, zone: str, allow_seconds: bool, reason: str, says: str
) -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_schedule(expression, zone, allow_seconds=allow_seconds)
    assert caught.value.reason == reason
    assert says in caught.value.message


def test_seconds_field_only_with_the_test_hook() -> None:
    schedule = parse_schedule("* * * * * */20", "UTC", allow_seconds=True)
    assert schedule.next_after(utc(2026, 1, 1, 0, 0, 5)) == utc(2026, 1, 1, 0, 0, 20)


HOURLY = parse_schedule("0 * * * *", "UTC")
CREATED = utc(2026, 1, 1, 0, 30)


@pytest.mark.parametrize(
    ("now", "last_slot", "deadline", "suspended", "expected"),
    [
        # Nothing due yet after creation: just the next slot.
        (utc(2026, 1, 1, 0, 45), None, None, False, Plan(None, 0, None, utc(2026, 1, 1, 1))),
        # The first slot after creation is due exactly at its time.
        (utc(2026, 1, 1, 1), None, None, False,
         Plan(utc(2026, 1, 1, 1), 0, None, utc(2026, 1, 1, 2))),
        # Already ran that slot: never twice.
        (utc(2026, 1, 1, 1, 0, 30), utc(2026, 1, 1, 1), None, False,
         Plan(None, 0, None, utc(2026, 1, 1, 2))),
        # Three slots missed: only the most recent runs, two are counted as skipped.
        (utc(2026, 1, 1, 4, 10), utc(2026, 1, 1, 1), None, False,
         Plan(utc(2026, 1, 1, 4), 2, None, utc(2026, 1, 1, 5))),
        # Inside the deadline (600 s, 10 min late exactly): runs.
        (utc(2026, 1, 1, 4, 10), utc(2026, 1, 1, 3), 600, False,
         Plan(utc(2026, 1, 1, 4), 0, None, utc(2026, 1, 1, 5))),
        # One second past the deadline: skipped, not run late.
        (utc(2026, 1, 1, 4, 10, 1), utc(2026, 1, 1, 3), 600, False,
         Plan(None, 1, utc(2026, 1, 1, 4), utc(2026, 1, 1, 5))),
        # Deadline 0 still runs a slot that is exactly on time.
        (utc(2026, 1, 1, 4), utc(2026, 1, 1, 3), 0, False,
         Plan(utc(2026, 1, 1, 4), 0, None, utc(2026, 1, 1, 5))),
        # Suspended: nothing due and no next slot.
        (utc(2026, 1, 1, 4, 10), utc(2026, 1, 1, 1), None, True, Plan(None, 0, None, None)),
    ],
)  # fmt: skip
def test_plan(
    now: datetime, last_slot: datetime | None, deadline: int | None, suspended: bool, expected: Plan
) -> None:
    result = plan(
        HOURLY,
        now=now,
        last_slot=last_slot,
        not_before=CREATED,
        deadline_seconds=deadline,
        suspended=suspended,
    )
    assert result == expected


@pytest.mark.parametrize("deadline", [0, 1, 600])
def test_an_awaited_slot_is_on_time_however_late_the_wake_up(deadline: int) -> None:
    late_wake = utc(2026, 1, 1, 4, 0, 5)  # the loop slept until 04:00 and woke 5 s late
    result = plan(
        HOURLY,
        now=late_wake,
        last_slot=utc(2026, 1, 1, 3),
        not_before=CREATED,
        deadline_seconds=deadline,
        suspended=False,
        awaited=utc(2026, 1, 1, 4),
    )
    assert result.due == utc(2026, 1, 1, 4)
    assert result.skipped == 0


def test_plan_ignores_slots_before_not_before() -> None:
    # A slot that was already skipped (not_before moved past it) is not reported again.
    result = plan(
        HOURLY,
        now=utc(2026, 1, 1, 4, 30),
        last_slot=utc(2026, 1, 1, 1),
        not_before=utc(2026, 1, 1, 4),
        deadline_seconds=60,
        suspended=False,
    )
    assert result == Plan(None, 0, None, utc(2026, 1, 1, 5))


def test_long_outage_counts_are_capped() -> None:
    every_minute = parse_schedule("* * * * *", "UTC")
    now = utc(2026, 1, 1) + timedelta(days=30)
    result = plan(
        every_minute,
        now=now,
        last_slot=utc(2026, 1, 1),
        not_before=utc(2026, 1, 1),
        deadline_seconds=None,
        suspended=False,
    )
    assert result.due == now
    assert result.skipped == MAX_COUNTED_MISSES - 1
    assert result.capped  # reported as "9+": at least that many, not exactly


@pytest.mark.parametrize(
    "expression", ["H * * * *", "H H * * *", "H(0-29) * * * *", "H/15 * * * *"]
)
def test_hashed_values_are_stable_per_watcher_and_spread_across_watchers(expression: str) -> None:
    start = utc(2026, 1, 1)
    first = {
        uid: parse_schedule(expression, "UTC", hash_id=uid).next_after(start)
        for uid in (f"uid-{i}" for i in range(40))
    }
    again = {uid: parse_schedule(expression, "UTC", hash_id=uid).next_after(start) for uid in first}
    assert first == again  # the same watcher, the same slot (also after a restart)
    assert len(set(first.values())) > 5  # forty watchers do not share one slot


def test_an_hourly_hashed_schedule_keeps_its_minute() -> None:
    schedule = parse_schedule("H * * * *", "Europe/Stockholm", hash_id="3f1c-uid")
    slots = list(itertools.islice(schedule.slots_after(utc(2026, 1, 1)), 3))
    assert len({slot.minute for slot in slots}) == 1
    assert [b - a for a, b in itertools.pairwise(slots)] == [timedelta(hours=1)] * 2


@pytest.mark.parametrize(
    ("expression", "spread"),
    [
        ("H * * * *", True),  # hashed: a second of its own within its minute
        ("H/15 * * * *", True),
        ("30 H * * *", True),
        ("30 * * * *", False),  # no H: the minute's first second, as cron has it
    ],
)
def test_hashed_schedules_also_spread_the_second(expression: str, spread: bool) -> None:
    """10,000 hourly watchers are ~170 a minute: without a second of their own they would all
    start in the first second of their minute."""
    start = utc(2026, 1, 1)
    seconds = {
        parse_schedule(expression, "UTC", hash_id=f"uid-{i}").next_after(start).second
        for i in range(40)
    }
    assert (len(seconds) > 20) is spread
    assert spread or seconds == {0}


def test_six_field_schedules_keep_their_own_seconds_field() -> None:
    schedule = parse_schedule("H * * * * 7", "UTC", allow_seconds=True, hash_id="uid-1")
    assert schedule.next_after(utc(2026, 1, 1)).second == 7


def test_a_schedule_without_h_is_shared_by_every_watcher() -> None:
    """Keyed by uid, the cache of parsed schedules missed at every step once more watchers than
    it holds shared an hourly schedule."""
    shared = parse_schedule("7 * * * *", "UTC", hash_id="uid-0")
    assert all(
        parse_schedule("7 * * * *", "UTC", hash_id=f"uid-{i}") is shared for i in range(5_000)
    )
    # A hashed schedule stays the watcher's own.
    assert parse_schedule("H * * * *", "UTC", hash_id="a") != parse_schedule(
        "H * * * *", "UTC", hash_id="b"
    )
