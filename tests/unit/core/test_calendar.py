"""The calendar feed's state (controller/core/calendar.py): how a confirmed fetch advances it,
when entries are kept, cancelled and dropped, the words of its texts, and its stored form."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.core.calendar import (
    CalendarEntry,
    CalendarState,
    Contact,
    advance,
    calendar_name,
    description,
    summary,
)
from controller.core.diff import Snapshot, Window, normalise, normalise_all, window_for
from tests.fakes.fogis.records import make_match, make_referee

PROPERTY = settings(
    derandomize=True, max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TODAY = date(2026, 3, 20)
NOW = datetime(2026, 3, 20, 11, 0, 5, 123456, tzinfo=UTC)  # 12:00:05 in Stockholm
STAMP = NOW.replace(microsecond=0)
LATER = NOW + timedelta(hours=1)
WINDOW = window_for(TODAY, 7, 60)


def step(
    previous: CalendarState | None,
    records: list[dict[str, Any]],
    *,
    now: datetime = NOW,
    window: Window = WINDOW,
    include_contacts: bool = False,
) -> CalendarState:
    latest = Snapshot(normalise_all(records))
    return advance(previous, latest, records, window, now, include_contacts=include_contacts)


def match(matchid: int, days: int = 5, **overrides: Any) -> dict[str, Any]:
    return make_match(matchid, on=TODAY + timedelta(days=days), **overrides)


CREW = [make_referee(1, "Anna Andersson"), make_referee(2, "Bo Berg", "AD1")]


def test_the_first_fetch_makes_every_entry_new() -> None:
    state = step(None, [match(1), match(2, 9)])
    assert state.revision == 1
    assert sorted(state.entries) == ["1", "2"]
    entry = state.entries["1"]
    assert (entry.sequence, entry.last_modified, entry.left_list) == (0, STAMP, False)
    assert entry.match == normalise(match(1))
    assert entry.contacts == ()


def test_no_list_yet_and_an_empty_list_are_the_empty_state() -> None:
    assert step(None, []) == CalendarState({}, 0)


def test_an_unchanged_list_returns_the_same_state() -> None:
    first = step(None, [match(1), match(2, 9)])
    assert step(first, [match(2, 9), match(1)], now=LATER) is first


@pytest.mark.parametrize(
    "overrides",
    [
        {"avsparkstid": "20:15"},
        {"speldatum": (TODAY + timedelta(days=6)).isoformat()},
        {"anlaggningid": 1, "anlaggningnamn": "Ullevi"},
        {"lag1namn": "IFK Göteborg"},  # a rename (same id) is not a change to notify, but shown
        {"tavlingnamn": "Allsvenskan"},
        {"matchnr": "999"},
        {"installd": True},
        {"uppskjuten": True},
        {"avbruten": True},
        {"domaruppdraglista": [make_referee(1, "Anna Andersson", "AD1"), CREW[1]]},  # roles swap
        {"domaruppdraglista": [CREW[0]]},  # crew change: an assistant taken off
        {"domaruppdraglista": [make_referee(1, "Anna Berg"), CREW[1]]},  # a name shown changed
    ],
    ids=repr,
)
def test_a_change_the_feed_shows_bumps_that_entry_only(overrides: dict[str, Any]) -> None:
    first = step(None, [match(1, domaruppdraglista=CREW), match(2, 9)])
    changed = {"domaruppdraglista": CREW, **overrides}
    second = step(first, [match(1, **changed), match(2, 9)], now=LATER)
    assert second.revision == 2
    entry = second.entries["1"]
    assert (entry.sequence, entry.last_modified) == (1, LATER.replace(microsecond=0))
    assert entry.match == normalise(match(1, **changed))
    assert second.entries["2"] is first.entries["2"]
    third = step(second, [match(1), match(2, 9)], now=LATER + timedelta(hours=1))
    assert third.entries["1"].sequence == 2


def test_contacts_are_kept_and_compared_only_when_included() -> None:
    phones = [CREW[0], make_referee(2, "Bo Berg", "AD1", mobiltelefon="", telefon="08-55 55")]
    state = step(None, [match(1, domaruppdraglista=phones)], include_contacts=True)
    assert state.entries["1"].contacts == (
        Contact("1", "070-0000001", "anna.1@example.se"),
        Contact("2", "08-55 55", "bo.2@example.se"),
    )
    moved = [CREW[0], make_referee(2, "Bo Berg", "AD1", mobiltelefon="073-1")]
    bumped = step(state, [match(1, domaruppdraglista=moved)], include_contacts=True, now=LATER)
    assert bumped.entries["1"].sequence == 1
    assert bumped.entries["1"].contacts[1] == Contact("2", "073-1", "bo.2@example.se")
    without = step(None, [match(1, domaruppdraglista=phones)])
    assert without.entries["1"].contacts == ()
    assert step(without, [match(1, domaruppdraglista=moved)], now=LATER) is without
    # Turning contacts off takes them out of the feed: a change of what it shows.
    off = step(bumped, [match(1, domaruppdraglista=moved)], now=LATER)
    assert (off.entries["1"].contacts, off.entries["1"].sequence) == ((), 2)


def test_a_referee_without_phone_or_e_mail_has_no_contact() -> None:
    bare = [make_referee(1, "Anna Andersson", mobiltelefon=None, telefon="", epostadress=" ")]
    state = step(None, [match(1, domaruppdraglista=bare)], include_contacts=True)
    assert state.entries["1"].contacts == ()


def test_the_watchers_role_is_known_when_one_referee_is_on_every_match() -> None:
    me_first = [make_referee(7, "Eva Ek"), make_referee(8, "Bo Berg", "AD1")]
    me_second = [make_referee(9, "Cia Carlsson"), make_referee(7, "Eva Ek", "AD2")]
    alone = step(None, [match(1, domaruppdraglista=me_first)])
    assert alone.entries["1"].roles == ()  # one match: either of two could be the watcher
    both = step(
        alone, [match(1, domaruppdraglista=me_first), match(2, domaruppdraglista=me_second)]
    )
    assert both.entries["1"].roles == ("Dom",)
    assert both.entries["2"].roles == ("AD2",)
    assert both.entries["1"].sequence == 1  # its description gained "Din roll"
    # A match whose crew FOGIS has not published yet does not hide who the watcher is.
    empty = step(None, [match(1, domaruppdraglista=me_first), match(2, domaruppdraglista=[])])
    assert step(
        empty,
        [
            match(1, domaruppdraglista=me_first),
            match(2, domaruppdraglista=[]),
            match(3, domaruppdraglista=me_second),
        ],
    ).entries["3"].roles == ("AD2",)


def test_a_removed_match_is_cancelled_until_its_date_has_passed() -> None:
    first = step(None, [match(1, days=2), match(2, 9)])
    removed = step(first, [match(2, 9)], now=LATER)
    entry = removed.entries["1"]
    assert (entry.left_list, entry.sequence, entry.cancelled) == (True, 1, True)
    assert entry.last_modified == LATER.replace(microsecond=0)
    assert removed.revision == 2
    # Later fetches leave it as it is: SEQUENCE went up once.
    assert step(removed, [match(2, 9)], now=LATER + timedelta(days=1)) is removed
    on_its_day = datetime(2026, 3, 22, 22, 59, tzinfo=UTC)  # 23:59 in Stockholm, its day
    assert step(removed, [match(2, 9)], now=on_its_day) is removed
    next_day = datetime(2026, 3, 22, 23, 0, tzinfo=UTC)  # 00:00 in Stockholm, the day after
    dropped = step(removed, [match(2, 9)], now=next_day)
    assert sorted(dropped.entries) == ["2"]
    assert dropped.revision == 3


def test_a_removed_match_that_comes_back_is_confirmed_again() -> None:
    first = step(None, [match(1)])
    removed = step(first, [], now=LATER)
    back = step(removed, [match(1)], now=LATER + timedelta(hours=1))
    assert (back.entries["1"].left_list, back.entries["1"].sequence) == (False, 2)


@pytest.mark.parametrize(
    ("days", "window", "kept"),
    [
        (-2, WINDOW, None),  # removed after its date: dropped at once, nothing to cancel
        (-9, window_for(TODAY, 7, 60), None),  # slid out of the window backwards: dropped
        (0, WINDOW, "left"),  # today: still cancelled
        (60, WINDOW, "left"),  # the window's last day
        (45, window_for(TODAY, 7, 30), "as it was"),  # the window shrank: not asked for
    ],
)
def test_where_a_missing_match_lies_decides_what_becomes_of_it(
    days: int, window: Window, kept: str | None
) -> None:
    first = step(None, [match(1, days=days), match(2)], window=window_for(TODAY, 30, 90))
    after = step(first, [match(2)], window=window, now=LATER)
    entry = after.entries.get("1")
    if kept is None:
        assert entry is None
        assert after.revision == 2
    elif kept == "left":
        assert entry is not None
        assert (entry.left_list, entry.sequence) == (True, 1)
    else:
        assert entry is first.entries["1"]
        assert after is first


def test_a_match_without_a_date_that_leaves_is_dropped() -> None:
    first = step(None, [match(1, speldatum="", tid="")])
    assert first.entries["1"].match["date"] is None
    assert step(first, [], now=LATER).entries == {}


@pytest.mark.parametrize("flag", ["installd", "uppskjuten"])
def test_a_cancelled_or_postponed_match_is_dropped_after_its_date(flag: str) -> None:
    listed = [match(1, days=1, **{flag: True}), match(2, days=1)]
    first = step(None, listed)
    assert first.entries["1"].cancelled
    day_after = NOW + timedelta(days=2)
    later = step(first, listed, now=day_after)
    assert sorted(later.entries) == ["2"]  # a played match stays while FOGIS lists it
    assert later.revision == 2
    assert step(later, listed, now=day_after + timedelta(days=1)) is later


def test_an_interrupted_match_is_shown_and_not_cancelled() -> None:
    state = step(None, [match(1, avbruten=True)])
    assert not state.entries["1"].cancelled


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        step(None, [match(1)], now=datetime(2026, 3, 20, 12))


# --- words ---------------------------------------------------------------------------------------


def entry_of(record: dict[str, Any], **fields: Any) -> CalendarEntry:
    found = normalise(record)
    assert found is not None
    return CalendarEntry(found, 0, STAMP, **{"left_list": False, **fields})


SWEDISH = match(
    1,
    matchnr="000123",
    lag1namn="IFK Göteborg",
    lag2namn="BK Häcken",
    tavlingnamn="Division 1, herrar",
    installd=True,
    domaruppdraglista=[
        make_referee(2, "Åsa Öberg", "AD1"),
        make_referee(1, "Anna Andersson"),
        make_referee(3, "Cia Carlsson", "4:e dom"),
    ],
)
CONTACTS = (Contact("1", "070-1", None), Contact("2", None, "asa@example.se"))


@pytest.mark.parametrize(
    ("language", "fields", "include_contacts", "expected"),
    [
        (
            "sv",
            {"roles": ("Dom",)},
            False,
            "Inställd\nTävling: Division 1, herrar\nMatchnummer: 000123\nDin roll: Dom\n"
            "Domarteam:\nDom: Anna Andersson\nAD1: Åsa Öberg\n4:e dom: Cia Carlsson",
        ),
        (
            "en",
            {"left_list": True},
            False,
            "No longer on your list\nCancelled\nCompetition: Division 1, herrar\n"
            "Match number: 000123\nReferee team:\nDom: Anna Andersson\nAD1: Åsa Öberg\n"
            "4:e dom: Cia Carlsson",
        ),
        (
            "sv",
            {"contacts": CONTACTS},
            True,
            "Inställd\nTävling: Division 1, herrar\nMatchnummer: 000123\nDomarteam:\n"
            "Dom: Anna Andersson (070-1)\nAD1: Åsa Öberg (asa@example.se)\n4:e dom: Cia Carlsson",
        ),
        (  # contacts still in the state once the watcher no longer includes them: not shown
            "sv",
            {"contacts": CONTACTS, "left_list": True},
            False,
            "Inte längre på din lista\nInställd\nTävling: Division 1, herrar\n"
            "Matchnummer: 000123\nDomarteam:\nDom: Anna Andersson\nAD1: Åsa Öberg\n"
            "4:e dom: Cia Carlsson",
        ),
    ],
)
def test_the_description_in_words(
    language: str, fields: dict[str, Any], include_contacts: bool, expected: str
) -> None:
    entry = entry_of(SWEDISH, **fields)
    assert description(entry, language, include_contacts=include_contacts) == expected


def test_postponed_interrupted_and_a_bare_match() -> None:
    flagged = entry_of(match(1, uppskjuten=True, avbruten=True, matchnr=None, tavlingnamn=None))
    assert description(flagged, "sv", include_contacts=False).splitlines()[:2] == [
        "Uppskjuten",
        "Avbruten",
    ]
    bare = entry_of(match(1, matchnr=None, tavlingnamn=None, domaruppdraglista=[]))
    assert description(bare, "en", include_contacts=False) == ""


def test_summary_and_calendar_name() -> None:
    assert summary(entry_of(SWEDISH).match) == "IFK Göteborg – BK Häcken"  # noqa: RUF001 - en dash
    assert summary(entry_of(match(1, lag1namn=None, lag2namn="")).match) == "? – ?"  # noqa: RUF001
    assert (calendar_name("sv"), calendar_name("en")) == ("Domaruppdrag", "Referee assignments")
    with pytest.raises(ValueError, match="'de' is not one of sv, en"):
        calendar_name("de")


# --- stored form ---------------------------------------------------------------------------------

NAMES = st.text(st.characters(codec="utf-8"), max_size=12)


@st.composite
def states(draw: st.DrawFn) -> CalendarState:
    entries = {}
    for matchid in draw(st.sets(st.integers(1, 10**6), max_size=5)):
        record = make_match(
            matchid,
            on=TODAY + timedelta(days=draw(st.integers(-30, 400))),
            avsparkstid=draw(st.sampled_from(["", "02:30", "19:00"])),
            tid="",
            lag1namn=draw(NAMES),
            installd=draw(st.booleans()),
            domaruppdraglista=[
                make_referee(draw(st.integers(1, 50)), draw(NAMES) or "X", role)
                for role in draw(st.lists(st.sampled_from(["Dom", "AD1", "AD2"]), max_size=3))
            ],
        )
        found = normalise(record)
        assert found is not None
        optional = st.none() | NAMES
        entries[found["matchId"]] = CalendarEntry(
            match=found,
            sequence=draw(st.integers(0, 2**40)),
            last_modified=draw(
                st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))
            ).replace(microsecond=0),
            left_list=draw(st.booleans()),
            contacts=tuple(
                Contact(draw(NAMES), draw(optional), draw(optional))
                for _ in range(draw(st.integers(0, 3)))
            ),
            roles=tuple(draw(st.lists(NAMES, max_size=2))),
        )
    return CalendarState(entries, draw(st.integers(0, 2**40)))


@PROPERTY
@given(states())
def test_the_stored_form_round_trips(state: CalendarState) -> None:
    text = state.to_json()
    assert CalendarState.from_json(text) == state
    assert CalendarState.from_json(text).to_json() == text


def test_the_stored_form_is_canonical_json() -> None:
    state = step(None, [match(1)], include_contacts=True)
    text = state.to_json()
    document = json.loads(text)
    assert text == json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert document["format"] == 1
    assert document["entries"]["1"]["lastModified"] == "2026-03-20T11:00:05Z"


GOOD = json.loads(step(None, [match(1)], include_contacts=True).to_json())


def corrupt(path: tuple[str, ...], value: Any) -> str:
    document = json.loads(json.dumps(GOOD))
    target = document
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(document)


ENTRY = ("entries", "1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not valid JSON"),
        ("[" * 100_000, "not valid JSON"),
        ("[]", "must be a JSON object"),
        (corrupt(("format",), 2), "format 2 is not supported"),
        (corrupt(("revision",), -1), "revision -1 is not"),
        (corrupt(("revision",), True), "revision True is not"),
        (corrupt(("entries",), []), "no entries object"),
        (corrupt((*ENTRY, "extra"), 1), "fields must be exactly"),
        (corrupt((*ENTRY, "sequence"), KeyError), "fields must be exactly"),
        (corrupt((*ENTRY, "match", "matchId"), "2"), "matchId differs from its key"),
        (corrupt((*ENTRY, "match", "referees"), [{}]), "referees must be a list"),
        (corrupt((*ENTRY, "sequence"), 1.5), "sequence must be"),
        (corrupt((*ENTRY, "lastModified"), "2026-03-20 11:00"), "lastModified must be"),
        (corrupt((*ENTRY, "lastModified"), "2026-02-30T11:00:00Z"), "not a valid time"),
        (corrupt((*ENTRY, "leftList"), 0), "leftList must be a boolean"),
        (
            corrupt((*ENTRY, "contacts"), [{"refereeId": 1, "phone": None, "email": None}]),
            "contacts",
        ),
        (corrupt((*ENTRY, "roles"), "Dom"), "roles must be"),
    ],
)
def test_a_corrupt_stored_form_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CalendarState.from_json(text)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += paths(inner, (*prefix, index))
    return found


@PROPERTY
@given(st.data(), JSON)
def test_any_edit_of_a_stored_form_reads_or_says_what_is_wrong(
    data: st.DataObject, value: Any
) -> None:
    document = json.loads(json.dumps(GOOD))
    path = data.draw(st.sampled_from(paths(document)[1:]))
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    try:
        state = CalendarState.from_json(json.dumps(document))
    except ValueError:
        return
    assert CalendarState.from_json(state.to_json()) == state


@PROPERTY
@given(st.text(max_size=200) | JSON.map(json.dumps))
def test_any_text_reads_or_says_what_is_wrong(text: str) -> None:
    with contextlib.suppress(ValueError):
        CalendarState.from_json(text)
