"""A watcher's calendar state as an RFC 5545 feed (issue 24), written with `icalendar`, and its
ETag. The bytes depend only on the state and the arguments (events ordered by date, time, id;
every stamp from the state), so every replica, and a restarted one, serves the same body.

FOGIS dates and times are Stockholm wall-clock time: DTSTART carries TZID=Europe/Stockholm with
its VTIMEZONE, whatever the watcher's own time zone. On the spring-forward day a kick-off inside
the skipped hour (02:30) is written as the instant RFC 5545 reads it as (the offset before the
gap: 03:30 CEST), so clients that do not apply that rule agree; on the autumn day an ambiguous
time is the first one (CEST), as RFC 5545 says. DTEND is start + duration in real time, so a
match across a change still lasts `duration_minutes`. A match without a kick-off time is an
all-day event; one without a date cannot be placed and is left out.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache

from icalendar import Calendar, Event, Timezone, vDuration

from controller.core.calendar import (
    CalendarEntry,
    CalendarState,
    calendar_name,
    description,
    location,
    match_day,
    summary,
)
from controller.core.diff import FOGIS_ZONE

PRODID = "-//matchlist.io//match-list-change-detector//EN"
# How often clients are asked to fetch again (REFRESH-INTERVAL, and Outlook's X-PUBLISHED-TTL).
REFRESH = timedelta(hours=1)
_TZID = "Europe/Stockholm"


def render(
    state: CalendarState | None,
    *,
    watcher_uid: str,
    language: str,
    duration_minutes: int,
    include_contacts: bool,
) -> bytes:
    """The feed of `state` (None: no list yet, an empty calendar). ValueError for a language
    other than sv/en or a duration that is not positive."""
    if duration_minutes <= 0:
        raise ValueError(f"duration {duration_minutes} minutes is not positive")
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", calendar_name(language))
    calendar.add("refresh-interval", vDuration(REFRESH), parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", vDuration(REFRESH))
    placed = [
        (day, _kickoff(entry), entry)
        for entry in (state.entries.values() if state is not None else ())
        if (day := match_day(entry.match)) is not None
    ]
    placed.sort(key=lambda p: (p[0], p[1] or time.min, p[1] is not None, p[2].match["matchId"]))
    timed_years = [day.year for day, kickoff, _ in placed if kickoff is not None]
    if timed_years:
        calendar.add_component(_zone(min(timed_years), max(timed_years)))
    duration = timedelta(minutes=duration_minutes)
    for day, kickoff, entry in placed:
        event = Event()
        event.add("uid", f"{entry.match['matchId']}.{watcher_uid}@matchlist.io")
        if kickoff is None:
            event.add("dtstart", day)
            event.add("dtend", day + timedelta(days=1))
        else:
            # Through UTC: a wall-clock time in the skipped hour becomes the instant it means.
            start = datetime.combine(day, kickoff, FOGIS_ZONE).astimezone(UTC)
            event.add("dtstart", start.astimezone(FOGIS_ZONE))
            event.add("dtend", (start + duration).astimezone(FOGIS_ZONE))
        event.add("summary", summary(entry.match))
        venue = location(entry.match)
        if venue:
            event.add("location", venue)
        text = description(entry, language, include_contacts=include_contacts)
        if text:
            event.add("description", text)
        event.add("sequence", entry.sequence)
        event.add("last-modified", entry.last_modified)
        event.add("dtstamp", entry.last_modified)
        event.add("status", "CANCELLED" if entry.cancelled else "CONFIRMED")
        calendar.add_component(event)
    return bytes(calendar.to_ical())


def _kickoff(entry: CalendarEntry) -> time | None:
    """The entry's kick-off time (FOGIS's "HH:MM"), or None when it has none that reads."""
    try:
        return time.fromisoformat(entry.match["time"])
    except (TypeError, ValueError):
        return None


@lru_cache(maxsize=32)
def _zone(first_year: int, last_year: int) -> Timezone:
    """Stockholm's VTIMEZONE for the years the events span (computing it takes a moment; it is
    only read once made). A range from the events keeps the bytes a function of the state."""
    return Timezone.from_tzinfo(
        FOGIS_ZONE, _TZID, date(first_year, 1, 1), date(last_year + 1, 1, 1)
    )


def etag(body: bytes) -> str:
    """A strong ETag of `body`: the same bytes give the same tag on every replica."""
    return f'"{hashlib.sha256(body).hexdigest()[:32]}"'
