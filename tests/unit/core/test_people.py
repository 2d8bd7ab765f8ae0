"""What people are told, and when (controller/core/people.py): tables and properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.diff import CATEGORIES, Snapshot, Window, compare
from controller.core.model import NotifySpec, QuietHours
from controller.core.people import (
    PeopleState,
    allowed,
    is_urgent,
    kickoff,
    plan,
    quiet_until,
    url_key,
)

STOCKHOLM = ZoneInfo("Europe/Stockholm")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # 13:00 in Stockholm
WINDOW = Window(date(2026, 11, 1), date(2027, 12, 31))
NIGHT = QuietHours(time(22), time(7))


def match(match_id: str, day: str = "2026-12-20", at: str | None = "19:00", **extra: Any) -> Any:
    return {
        "matchId": match_id,
        "matchNumber": None,
        "date": day,
        "time": at,
        "venue": {"id": "v", "name": "Valhalla IP"},
        "homeTeam": {"id": "h", "name": "IFK Göteborg"},
        "awayTeam": {"id": "a", "name": "BK Häcken"},
        "competition": {"id": "c", "name": "Allsvenskan"},
        "cancelled": False,
        "postponed": False,
        "interrupted": False,
        "referees": [],
        **extra,
    }


def listed(*matches: Any) -> Snapshot:
    return Snapshot({m["matchId"]: m for m in matches})


def spec(**kwargs: Any) -> NotifySpec:
    return NotifySpec("people", **kwargs)


def test_url_keys_are_keyed_by_the_operator_key() -> None:
    url = "ntfy://ntfy.sh/referee-anna"
    assert url_key(url, b"k1") == url_key(url, b"k1")
    assert url_key(url, b"k1") != url_key(url, b"k2")
    assert url_key(url, b"k1") != url_key(url + "x", b"k1")
    assert len(url_key(url, b"k1")) == 32
    assert "referee" not in url_key(url, b"k1")


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [
        (None, set(CATEGORIES)),
        ({"cancelled"}, {"cancelled", "uncancelled"}),
        ({"postponed", "time_change"}, {"postponed", "unpostponed", "time_change"}),
        ({"interrupted"}, {"interrupted", "uninterrupted"}),
        ({"uncancelled"}, {"uncancelled"}),  # a reversal alone does not bring its cause
        (set(), set()),
    ],
)
def test_a_category_brings_its_reversal(chosen: set[str] | None, expected: set[str]) -> None:
    assert allowed(None if chosen is None else frozenset(chosen)) == expected


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "quiet", "zone", "end"),
    [
        # Across midnight, in Stockholm (UTC+1 in December).
        ("2026-12-01T20:59", NIGHT, "Europe/Stockholm", None),
        ("2026-12-01T21:00", NIGHT, "Europe/Stockholm", "2026-12-02T06:00"),
        ("2026-12-01T23:30", NIGHT, "Europe/Stockholm", "2026-12-02T06:00"),
        ("2026-12-02T05:59", NIGHT, "Europe/Stockholm", "2026-12-02T06:00"),
        ("2026-12-02T06:00", NIGHT, "Europe/Stockholm", None),
        # A window within one day.
        ("2026-12-01T11:59", QuietHours(time(12), time(14)), "UTC", None),
        ("2026-12-01T12:00", QuietHours(time(12), time(14)), "UTC", "2026-12-01T14:00"),
        ("2026-12-01T14:00", QuietHours(time(12), time(14)), "UTC", None),
        # DST nights: spring forward (29 March 2026) ends at 07:00 CEST, fall back (25 Oct)
        # at 07:00 CET.
        ("2026-03-28T22:00", NIGHT, "Europe/Stockholm", "2026-03-29T05:00"),
        ("2026-03-29T04:59", NIGHT, "Europe/Stockholm", "2026-03-29T05:00"),
        ("2026-10-24T21:00", NIGHT, "Europe/Stockholm", "2026-10-25T06:00"),
        ("2026-10-25T05:30", NIGHT, "Europe/Stockholm", "2026-10-25T06:00"),
        # A window ending in the skipped hour ends when it would have (03:30 is 01:30 UTC).
        (
            "2026-03-29T00:30",
            QuietHours(time(1), time(2, 30)),
            "Europe/Stockholm",
            "2026-03-29T01:30",
        ),
    ],
)
def test_quiet_hours(now: str, quiet: QuietHours, zone: str, end: str | None) -> None:
    found = quiet_until(_utc(now), ZoneInfo(zone), quiet)
    assert found == (None if end is None else _utc(end))


def test_no_quiet_hours_is_never_quiet() -> None:
    assert quiet_until(NOW, STOCKHOLM, None) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (match("1", "2026-12-06", "19:45"), "2026-12-06T18:45"),
        (match("1", "2026-07-06", "19:45"), "2026-07-06T17:45"),  # summer time
        (match("1", "2026-12-06", None), "2026-12-05T23:00"),  # no time: its day's start
        (match("1", "not a date"), None),
        (None, None),
    ],
)
def test_kickoff_is_stockholm_wall_clock(value: Any, expected: str | None) -> None:
    assert kickoff(value) == (None if expected is None else _utc(expected))


@pytest.mark.parametrize(
    ("before", "after", "hours", "urgent"),
    [
        (match("1", "2026-12-02", "19:00"), match("1", "2026-12-02", "20:00"), 48, True),
        (match("1", "2026-12-20"), match("1", "2026-12-02"), 48, True),  # moved closer
        (match("1", "2026-12-02"), match("1", "2026-12-20"), 48, True),  # moved away from now
        (match("1", "2026-12-20"), match("1", "2026-12-21"), 48, False),
        (match("1", "2026-12-02"), match("1", "2026-12-02", "20:00"), 0, False),  # 0: never
        (match("1", "2026-12-04", "13:00"), match("1", "2026-12-04", "14:00"), 72, True),
    ],
)
def test_urgency(before: Any, after: Any, hours: int, urgent: bool) -> None:
    (change,) = compare(listed(before), listed(after), WINDOW)
    assert is_urgent(change, before, NOW, hours) is urgent


def test_a_new_match_far_away_is_not_urgent_but_a_removal_tomorrow_is() -> None:
    (new,) = compare(listed(), listed(match("1", "2026-12-30")), WINDOW)
    assert not is_urgent(new, None, NOW, 48)
    (gone,) = compare(listed(match("1", "2026-12-02")), listed(), WINDOW)
    assert is_urgent(gone, match("1", "2026-12-02"), NOW, 48)


def test_nothing_changed_is_nothing_to_send() -> None:
    cursor = listed(match("1"))
    p = plan(cursor, cursor, WINDOW, notify=spec(), now=NOW, zone=STOCKHOLM)
    assert (p.send, p.held, p.filtered, p.written_ahead) == ((), (), 0, None)
    assert p.told is cursor


def test_a_change_in_the_day_is_sent_and_then_told() -> None:
    cursor, latest = listed(match("1")), listed(match("1", at="20:00"))
    p = plan(cursor, latest, WINDOW, notify=spec(), now=NOW, zone=STOCKHOLM)
    assert [c.categories for c in p.send] == [("time_change",)]
    assert p.told.matches == latest.matches
    assert p.told.revision == cursor.revision + 1
    assert p.written_ahead is not None
    assert p.written_ahead.in_doubt == {"1": (latest.matches["1"],)}
    assert plan(p.told, latest, WINDOW, notify=spec(), now=NOW, zone=STOCKHOLM).send == ()


def test_what_nobody_asked_for_counts_as_told() -> None:
    cursor, latest = listed(match("1")), listed(match("1", at="20:00"))
    only = spec(categories=frozenset({"referee_change"}))
    p = plan(cursor, latest, WINDOW, notify=only, now=NOW, zone=STOCKHOLM)
    assert (p.send, p.filtered) == ((), 1)
    assert p.told.matches == latest.matches  # it never surfaces later as a surprise


def test_a_match_is_sent_when_any_of_its_categories_is_allowed() -> None:
    cursor = listed(match("1"))
    latest = listed(match("1", at="20:00", referees=[{"id": "r", "name": "Anna", "role": "Dom"}]))
    p = plan(
        cursor,
        latest,
        WINDOW,
        notify=spec(categories=frozenset({"referee_change"})),
        now=NOW,
        zone=STOCKHOLM,
    )
    assert [set(c.categories) for c in p.send] == [{"time_change", "referee_change"}]


def test_cancelled_also_sends_uncancelled() -> None:
    cursor, latest = listed(match("1", cancelled=True)), listed(match("1"))
    only = spec(categories=frozenset({"cancelled"}))
    p = plan(cursor, latest, WINDOW, notify=only, now=NOW, zone=STOCKHOLM)
    assert [c.categories for c in p.send] == [("uncancelled",)]


NIGHT_NOW = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)  # midnight in Stockholm


def test_quiet_hours_hold_what_is_not_urgent() -> None:
    cursor = listed(match("1", "2026-12-20"), match("2", "2026-12-02", "18:00"))
    latest = listed(match("1", "2026-12-20", "20:00"), match("2", "2026-12-02", "19:00"))
    night = spec(quiet_hours=NIGHT)
    p = plan(cursor, latest, WINDOW, notify=night, now=NIGHT_NOW, zone=STOCKHOLM)
    assert [c.match_id for c in p.send] == ["2"]  # tomorrow evening: within 48 hours
    assert p.urgent == {"2"}
    assert [c.match_id for c in p.held] == ["1"]
    # Told only what was sent: the held change is still between the cursor and the list.
    assert p.told.matches["2"] == latest.matches["2"]
    assert p.told.matches["1"] == cursor.matches["1"]
    morning = NIGHT_NOW + timedelta(hours=7)
    after = plan(p.told, latest, WINDOW, notify=night, now=morning, zone=STOCKHOLM)
    assert [c.match_id for c in after.send] == ["1"]
    assert after.told.matches == latest.matches


def test_quiet_hours_with_nothing_urgent_send_nothing_and_keep_the_cursor() -> None:
    cursor, latest = listed(match("1")), listed(match("1", at="20:00"))
    night = spec(quiet_hours=NIGHT, urgent_within_hours=0)
    p = plan(cursor, latest, WINDOW, notify=night, now=NIGHT_NOW, zone=STOCKHOLM)
    assert (p.send, len(p.held), p.written_ahead) == ((), 1, None)
    assert p.told is cursor


def test_a_change_undone_overnight_is_no_message() -> None:
    cursor = listed(match("1"))
    night = spec(quiet_hours=NIGHT, urgent_within_hours=0)
    moved = plan(cursor, listed(match("1", at="21:00")), WINDOW, notify=night, now=NIGHT_NOW,
                 zone=STOCKHOLM)  # fmt: skip
    assert len(moved.held) == 1
    morning = plan(moved.told, cursor, WINDOW, notify=night, now=NIGHT_NOW + timedelta(hours=7),
                   zone=STOCKHOLM)  # fmt: skip
    assert morning.send == ()


def test_a_revert_reaches_whoever_may_have_heard_the_change() -> None:
    # The send of "cancelled" failed without an answer: its cursor is the one written ahead.
    before, cancelled = listed(match("1")), listed(match("1", cancelled=True))
    p = plan(before, cancelled, WINDOW, notify=spec(), now=NOW, zone=STOCKHOLM)
    assert p.written_ahead is not None
    back = plan(p.written_ahead, before, WINDOW, notify=spec(), now=NOW, zone=STOCKHOLM)
    assert [c.categories for c in back.send] == [("uncancelled",)]
    assert back.told.in_doubt is None


def test_a_url_added_later_starts_from_the_latest_list() -> None:
    latest = listed(match("1"))
    state = PeopleState(latest=latest, cursors={"old": listed()})
    assert state.for_urls(["old", "new"]) == {"old": listed(), "new": latest}
    migrated = PeopleState(latest=latest, cursors={}, fresh=listed())
    assert migrated.for_urls(["a"]) == {"a": listed()}


_MATCHES = st.lists(
    st.builds(
        match,
        st.sampled_from(["1", "2", "3", "4"]),
        st.sampled_from(["2026-12-02", "2026-12-20"]),
        st.sampled_from(["18:00", "19:00", None]),
        cancelled=st.booleans(),
    ),
    max_size=4,
).map(lambda ms: listed(*ms))


@settings(max_examples=200, deadline=None)
@given(
    cursor=_MATCHES,
    night_list=_MATCHES,
    latest=_MATCHES,
    chosen=st.none() | st.frozensets(st.sampled_from(CATEGORIES)),
    urgent_hours=st.sampled_from([0, 48]),
)
def test_a_held_night_loses_nothing(
    cursor: Snapshot,
    night_list: Snapshot,
    latest: Snapshot,
    chosen: frozenset[str] | None,
    urgent_hours: int,
) -> None:
    """Whatever is held or sent at night, the morning's plan leaves every URL told the latest
    list, and sends nothing a daytime plan from the night's cursor would not."""
    night = spec(categories=chosen, quiet_hours=NIGHT, urgent_within_hours=urgent_hours)
    at_night = plan(cursor, night_list, WINDOW, notify=night, now=NIGHT_NOW, zone=STOCKHOLM)
    morning = NIGHT_NOW + timedelta(hours=7)
    after = plan(at_night.told, latest, WINDOW, notify=night, now=morning, zone=STOCKHOLM)
    assert after.held == ()
    assert after.told.matches == latest.matches
    assert plan(after.told, latest, WINDOW, notify=night, now=morning, zone=STOCKHOLM).send == ()
