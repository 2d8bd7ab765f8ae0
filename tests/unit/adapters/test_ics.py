"""The calendar feed's bytes (controller/adapters/ics.py), read back with vobject, a parser
independent of the icalendar library that wrote them."""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import vobject

from controller.adapters.ics import etag, render
from controller.core.calendar import CalendarState, advance
from controller.core.diff import Snapshot, normalise_all, window_for
from tests.fakes.fogis.records import make_match, make_referee

TODAY = date(2026, 3, 1)
NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
WINDOW = window_for(TODAY, 7, 300)
UID = "6a1f0c52-93d4-4c7e-b1f0-0d8c0d4f3e11"


def state_of(
    records: list[dict[str, Any]],
    previous: CalendarState | None = None,
    *,
    now: datetime = NOW,
    include_contacts: bool = False,
) -> CalendarState:
    latest = Snapshot(normalise_all(records))
    return advance(previous, latest, records, WINDOW, now, include_contacts=include_contacts)


def feed(
    state: CalendarState | None,
    *,
    language: str = "sv",
    duration: int = 120,
    include_contacts: bool = False,
) -> bytes:
    return render(
        state,
        watcher_uid=UID,
        language=language,
        duration_minutes=duration,
        include_contacts=include_contacts,
    )


def parse(body: bytes) -> Any:
    return vobject.readOne(body.decode("utf-8"))


def events(body: bytes) -> dict[str, Any]:
    """The VEVENTs by match id (the UID's first part), as vobject reads them."""
    calendar = parse(body)
    found = {}
    for event in getattr(calendar, "vevent_list", []):
        match_id, rest = event.uid.value.split(".", 1)
        assert rest == f"{UID}@matchlist.io"
        found[match_id] = event
    return found


def test_no_list_yet_is_a_valid_empty_calendar() -> None:
    body = feed(None)
    assert body == feed(CalendarState())
    calendar = parse(body)
    assert not hasattr(calendar, "vevent")
    assert calendar.version.value == "2.0"
    assert calendar.prodid.value == "-//matchlist.io//match-list-change-detector//EN"
    lines = body.split(b"\r\n")
    for line in (
        b"CALSCALE:GREGORIAN",
        b"METHOD:PUBLISH",
        b"X-WR-CALNAME:Domaruppdrag",
        b"REFRESH-INTERVAL;VALUE=DURATION:PT1H",
        b"X-PUBLISHED-TTL:PT1H",
    ):
        assert line in lines
    assert b"X-WR-CALNAME:Referee assignments" in feed(None, language="en").split(b"\r\n")


# (date, FOGIS kick-off, DTSTART as written, start and end in UTC); the duration is 120 minutes.
DST_TABLE = [
    # A winter and a summer evening.
    (date(2026, 1, 15), "18:30", "20260115T183000", "2026-01-15T17:30", "2026-01-15T19:30"),
    (date(2026, 7, 1), "18:30", "20260701T183000", "2026-07-01T16:30", "2026-07-01T18:30"),
    # Last Sunday of March: the evening is summer time already.
    (date(2026, 3, 29), "19:00", "20260329T190000", "2026-03-29T17:00", "2026-03-29T19:00"),
    # 01:30 is still winter time; two hours later the clocks went forward: it ends at 04:30.
    (date(2026, 3, 29), "01:30", "20260329T013000", "2026-03-29T00:30", "2026-03-29T02:30"),
    # 02:30 does not exist that day: written as what RFC 5545 reads it as, 03:30 summer time.
    (date(2026, 3, 29), "02:30", "20260329T033000", "2026-03-29T01:30", "2026-03-29T03:30"),
    # Last Sunday of October: 02:30 happens twice; it is the first (summer time), as RFC 5545.
    (date(2026, 10, 25), "02:30", "20261025T023000", "2026-10-25T00:30", "2026-10-25T02:30"),
    (date(2026, 10, 25), "19:00", "20261025T190000", "2026-10-25T18:00", "2026-10-25T20:00"),
]


@pytest.mark.parametrize(("day", "kickoff", "written", "start", "end"), DST_TABLE)
def test_kickoffs_are_stockholm_time_on_dst_days_too(
    day: date, kickoff: str, written: str, start: str, end: str
) -> None:
    body = feed(state_of([make_match(1, on=day, avsparkstid=kickoff)]))
    assert f"DTSTART;TZID=Europe/Stockholm:{written}".encode() in body.split(b"\r\n")
    event = events(body)["1"]
    assert event.dtstart.params["X-VOBJ-ORIGINAL-TZID"] == ["Europe/Stockholm"]
    utc = (event.dtstart.value.astimezone(UTC), event.dtend.value.astimezone(UTC))
    assert utc == (datetime.fromisoformat(f"{start}Z"), datetime.fromisoformat(f"{end}Z"))


def test_the_vtimezone_is_europe_stockholm_and_covers_the_events() -> None:
    body = feed(state_of([make_match(1, on=date(2026, 3, 29)), make_match(2, on=date(2027, 6, 1))]))
    zone = parse(body).vtimezone
    assert zone.tzid.value == "Europe/Stockholm"
    assert "2026-01-01 to 2028-01-01" in zone.comment.value


def test_a_match_without_a_kickoff_time_is_an_all_day_event() -> None:
    body = feed(state_of([make_match(1, on=date(2026, 3, 29), avsparkstid="", tid="")]))
    lines = body.split(b"\r\n")
    assert b"DTSTART;VALUE=DATE:20260329" in lines
    assert b"DTEND;VALUE=DATE:20260330" in lines
    event = events(body)["1"]
    assert (event.dtstart.value, event.dtend.value) == (date(2026, 3, 29), date(2026, 3, 30))
    # Only all-day events: no time zone needed.
    assert not hasattr(parse(body), "vtimezone")


def test_a_match_without_a_date_is_left_out() -> None:
    state = state_of([make_match(1, speldatum="", tid=""), make_match(2)])
    assert sorted(state.entries) == ["1", "2"]
    assert sorted(events(feed(state))) == ["2"]


def test_the_duration_sets_dtend() -> None:
    event = events(feed(state_of([make_match(1, on=date(2026, 5, 2))]), duration=95))["1"]
    assert event.dtend.value - event.dtstart.value == timedelta(minutes=95)


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({}, "CONFIRMED"),
        ({"installd": True}, "CANCELLED"),
        ({"uppskjuten": True}, "CANCELLED"),
        ({"avbruten": True}, "CONFIRMED"),
    ],
)
def test_cancelled_and_postponed_matches_are_cancelled(
    overrides: dict[str, Any], status: str
) -> None:
    assert events(feed(state_of([make_match(1, **overrides)])))["1"].status.value == status


def test_a_removed_match_is_cancelled_then_gone_after_its_date() -> None:
    first = state_of([make_match(1, on=date(2026, 3, 10)), make_match(2, on=date(2026, 3, 20))])
    removed = state_of([make_match(2, on=date(2026, 3, 20))], first, now=NOW + timedelta(hours=1))
    event = events(feed(removed))["1"]
    assert (event.status.value, event.sequence.value) == ("CANCELLED", "1")
    assert event.description.value.startswith("Inte längre på din lista\n")
    assert event.last_modified.value == NOW + timedelta(hours=1)
    gone = state_of([make_match(2, on=date(2026, 3, 20))], removed, now=NOW + timedelta(days=10))
    assert sorted(events(feed(gone))) == ["2"]


def test_a_crew_change_bumps_sequence_and_last_modified_of_that_event() -> None:
    crew = [make_referee(1, "Anna Andersson"), make_referee(2, "Bo Berg", "AD1")]
    first = state_of([make_match(1, domaruppdraglista=crew), make_match(2)])
    swapped = [make_referee(1, "Anna Andersson"), make_referee(3, "Dan Dahl", "AD1")]
    later = NOW + timedelta(minutes=30)
    second = state_of([make_match(1, domaruppdraglista=swapped), make_match(2)], first, now=later)
    before, after = events(feed(first)), events(feed(second))
    assert (before["1"].sequence.value, after["1"].sequence.value) == ("0", "1")
    assert after["1"].last_modified.value == after["1"].dtstamp.value == later
    assert "AD1: Dan Dahl" in after["1"].description.value
    assert (after["2"].sequence.value, after["2"].dtstamp.value) == ("0", NOW)


def test_an_unchanged_list_keeps_the_bytes_and_the_etag() -> None:
    records = [make_match(i, on=TODAY + timedelta(days=i)) for i in range(1, 6)]
    first = state_of(records)
    again = state_of(list(reversed(records)), first, now=NOW + timedelta(hours=5))
    assert again is first
    assert feed(again) == feed(first)
    assert etag(feed(again)) == etag(feed(first))


def test_the_bytes_do_not_depend_on_the_order_of_the_entries() -> None:
    state = state_of([make_match(i, on=TODAY + timedelta(days=i % 3)) for i in range(1, 20)])
    keys = sorted(state.entries, reverse=True)
    keys = keys[7:] + keys[:7]
    shuffled = CalendarState({key: state.entries[key] for key in keys}, state.revision)
    assert feed(shuffled) == feed(state)
    starts = [e.dtstart.value for e in parse(feed(state)).vevent_list]
    assert starts == sorted(starts)


SWEDISH = make_match(
    1,
    on=date(2026, 4, 18),
    matchnr="000123",
    lag1namn="IFK Göteborg",
    lag2namn="BK Häcken",
    anlaggningnamn="Gamla Ullevi, Göteborg",
    tavlingnamn="Division 1 Södra, herrar; vår",
    domaruppdraglista=[
        make_referee(1, "Åsa Öberg"),
        make_referee(2, "Jöns Ärlig", "AD1", mobiltelefon="070-123 45 67"),
    ],
)


@pytest.mark.parametrize(
    ("language", "include_contacts", "expected"),
    [
        (
            "sv",
            False,
            "Tävling: Division 1 Södra, herrar; vår\nMatchnummer: 000123\n"
            "Domarteam:\nDom: Åsa Öberg\nAD1: Jöns Ärlig",
        ),
        (
            "en",
            True,
            "Competition: Division 1 Södra, herrar; vår\nMatch number: 000123\n"
            "Referee team:\nDom: Åsa Öberg (070-0000001, åsa.1@example.se)\n"
            "AD1: Jöns Ärlig (070-123 45 67, jöns.2@example.se)",
        ),
    ],
)
def test_swedish_and_non_ascii_text(language: str, include_contacts: bool, expected: str) -> None:
    state = state_of([SWEDISH], include_contacts=include_contacts)
    event = events(feed(state, language=language, include_contacts=include_contacts))["1"]
    assert event.summary.value == "IFK Göteborg – BK Häcken"  # noqa: RUF001 - the en dash
    assert event.location.value == "Gamla Ullevi, Göteborg"
    assert event.description.value == expected


def test_contacts_show_only_when_the_watcher_includes_them() -> None:
    state = state_of([SWEDISH], include_contacts=True)
    assert "070-123 45 67" in events(feed(state, include_contacts=True))["1"].description.value
    assert "070-123" not in events(feed(state))["1"].description.value


LONG = make_match(
    1,
    lag1namn="Föreningen Östra Ängby Idrottsällskap – Åkersberga",  # noqa: RUF001 - en dash
    lag2namn="Ö" * 90,
    anlaggningnamn="Ängbyplan " + "å" * 100,
    tavlingnamn="€" * 60,
)


def test_long_lines_fold_at_75_octets_between_characters() -> None:
    body = feed(state_of([LONG]))
    assert body.endswith(b"\r\n")
    assert b"\n" not in body.replace(b"\r\n", b"")
    lines = body.split(b"\r\n")[:-1]
    assert max(len(line) for line in lines) == 75  # folding happened, and never past 75
    for line in lines:
        assert len(line) <= 75
        line.decode("utf-8")  # a fold never splits a character's bytes
    assert any(line.startswith(b" ") for line in lines)
    event = events(body)["1"]
    assert event.summary.value == f"Föreningen Östra Ängby Idrottsällskap – Åkersberga – {'Ö' * 90}"  # noqa: RUF001
    assert event.location.value == "Ängbyplan " + "å" * 100


def test_text_with_ical_syntax_is_escaped() -> None:
    sneaky = make_match(1, lag1namn="A;B,C\\D", anlaggningnamn="X\r\nEND:VEVENT")
    event = events(feed(state_of([sneaky])))["1"]
    assert event.summary.value.startswith("A;B,C\\D – ")  # noqa: RUF001 - en dash
    assert event.location.value == "X\r\nEND:VEVENT".replace("\r\n", "\n")


def test_bad_arguments_are_errors() -> None:
    with pytest.raises(ValueError, match="not one of sv, en"):
        feed(None, language="fi")
    with pytest.raises(ValueError, match="not positive"):
        feed(None, duration=0)


def test_etag_is_a_strong_tag_of_the_bytes() -> None:
    tag = etag(b"BEGIN:VCALENDAR")
    assert re.fullmatch(r'"[0-9a-f]{32}"', tag)
    assert etag(b"BEGIN:VCALENDAR") == tag != etag(b"BEGIN:VCALENDAR ")


def test_thousands_of_entries_render() -> None:
    records = [
        make_match(i, on=TODAY + timedelta(days=i % 300), avsparkstid=f"{10 + i % 12}:00")
        for i in range(3000)
    ]
    state = state_of(records)
    started = time.perf_counter()
    body = feed(state)
    took = time.perf_counter() - started
    assert body.count(b"BEGIN:VEVENT") == 3000
    assert took < 30  # about 1 s on a loaded 2-core machine; the bound only catches a blow-up
