"""The texts people get: a change set one line per change, its categories in words, in Swedish
and English; and the notices that a watcher keeps failing and works again."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.core.diff import (
    CATEGORIES,
    MATCH_FIELDS,
    FieldChange,
    MatchChange,
    Snapshot,
    compare,
    window_for,
)
from controller.core.message import LANGUAGES, MAX_LINES, compose, failure, line, recovered
from controller.core.reasons import Reason

MATCH: dict[str, Any] = {
    "matchId": "1",
    "matchNumber": "101",
    "date": "2026-12-06",
    "time": "19:45",
    "venue": {"id": "v1", "name": "Valhalla IP"},
    "homeTeam": {"id": "t1", "name": "IFK Göteborg"},
    "awayTeam": {"id": "t2", "name": "BK Häcken"},
    "competition": {"id": "c1", "name": "Allsvenskan"},
    "cancelled": False,
    "postponed": False,
    "interrupted": False,
    "referees": [{"id": "r1", "name": "Anna A", "role": "Dom"}],
}
TEAMS = "IFK Göteborg – BK Häcken"
NEW = MatchChange("new", "1", "101", ("new_assignment",), {}, MATCH)
REMOVED = MatchChange("removed", "1", "101", ("removed",), {}, MATCH)


def changed(
    categories: tuple[str, ...], match_id: str = "1", **fields: tuple[Any, Any]
) -> MatchChange:
    return MatchChange(
        "changed",
        match_id,
        "101",
        categories,
        {name: FieldChange(old, new) for name, (old, new) in fields.items()},
        MATCH,
    )


MOVED = changed(("time_change",), time=("18:30", "19:45"))
RESCHEDULED = changed(("date_change", "time_change"), date=("2026-12-05", "2026-12-06"),
                      time=("18:30", "19:45"))  # fmt: skip
# One change of every category but new and removed; with the same change and each language's text.
CHANGES: list[tuple[MatchChange, str, str]] = [
    (NEW,
     "ny tillsättning kl. 19:45 (sön 6 dec, Valhalla IP)",
     "new assignment at 19:45 (Sun 6 Dec, Valhalla IP)"),
    (REMOVED,
     "inte längre på din lista (sön 6 dec, Valhalla IP)",
     "no longer on your list (Sun 6 Dec, Valhalla IP)"),
    (MOVED,
     "flyttad 18:30 → 19:45 (sön 6 dec, Valhalla IP)",
     "moved 18:30 → 19:45 (Sun 6 Dec, Valhalla IP)"),
    (RESCHEDULED,
     "flyttad lör 5 dec 18:30 → sön 6 dec 19:45 (sön 6 dec, Valhalla IP)",
     "moved Sat 5 Dec 18:30 → Sun 6 Dec 19:45 (Sun 6 Dec, Valhalla IP)"),
    (changed(("date_change",), date=("2026-12-05", "2026-12-06")),
     "flyttad lör 5 dec → sön 6 dec (sön 6 dec, Valhalla IP)",
     "moved Sat 5 Dec → Sun 6 Dec (Sun 6 Dec, Valhalla IP)"),
    (changed(("cancelled",), cancelled=(False, True)),
     "inställd (sön 6 dec, Valhalla IP)",
     "cancelled (Sun 6 Dec, Valhalla IP)"),
    (changed(("uncancelled", "venue_change"), cancelled=(True, False),
             venue=({"name": "Ullevi"}, {"name": "Valhalla IP"})),
     "inte längre inställd, arena Ullevi → Valhalla IP (sön 6 dec, Valhalla IP)",
     "no longer cancelled, venue Ullevi → Valhalla IP (Sun 6 Dec, Valhalla IP)"),
    (changed(("postponed",), postponed=(False, True)),
     "uppskjuten (sön 6 dec, Valhalla IP)",
     "postponed (Sun 6 Dec, Valhalla IP)"),
    (changed(("unpostponed",), postponed=(True, False)),
     "inte längre uppskjuten (sön 6 dec, Valhalla IP)",
     "no longer postponed (Sun 6 Dec, Valhalla IP)"),
    (changed(("interrupted",), interrupted=(False, True)),
     "avbruten (sön 6 dec, Valhalla IP)",
     "interrupted (Sun 6 Dec, Valhalla IP)"),
    (changed(("uninterrupted",), interrupted=(True, False)),
     "inte längre avbruten (sön 6 dec, Valhalla IP)",
     "no longer interrupted (Sun 6 Dec, Valhalla IP)"),
    (changed(("referee_change",), referees=([], MATCH["referees"])),
     "domare nu Anna A (Dom) (sön 6 dec, Valhalla IP)",
     "referees now Anna A (Dom) (Sun 6 Dec, Valhalla IP)"),
    (changed(("referee_change",), referees=(MATCH["referees"], [])),
     "inga domare tillsatta (sön 6 dec, Valhalla IP)",
     "referees now none (Sun 6 Dec, Valhalla IP)"),
    (changed(("competition_change", "team_change"),
             competition=({"name": "Div 1"}, {"name": "Allsvenskan"}),
             homeTeam=({"name": "GAIS"}, {"name": "IFK Göteborg"})),
     "lag ändrade, tävling Div 1 → Allsvenskan (sön 6 dec, Valhalla IP)",
     "teams changed, competition Div 1 → Allsvenskan (Sun 6 Dec, Valhalla IP)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "language", "text"),
    [(change, "sv", sv) for change, sv, _ in CHANGES]
    + [(change, "en", en) for change, _, en in CHANGES],
)
def test_line(change: MatchChange, language: str, text: str) -> None:
    assert line(change, language=language) == f"{TEAMS} {text}"


def test_every_category_is_in_the_tables() -> None:
    assert {c for change, _, _ in CHANGES for c in change.categories} == set(CATEGORIES)


@pytest.mark.parametrize(
    ("language", "text"),
    [("sv", "? – BK Häcken ny tillsättning"), ("en", "? – BK Häcken new assignment")],
)
def test_whatever_fogis_left_out_a_line_still_comes_out(language: str, text: str) -> None:
    sparse = {**MATCH, "date": None, "time": None, "venue": {}, "homeTeam": None}
    change = MatchChange("new", "2", None, ("new_assignment",), {}, sparse)
    assert line(change, language=language) == text


WEEK = [date(2026, 11, 30) + timedelta(days=n) for n in range(7)]  # Monday to Sunday


def _where(day: date, language: str) -> str:
    """The date in a line's "(day, venue)"."""
    text = line(MatchChange("removed", "1", None, ("removed",), {},
                            {**MATCH, "date": day.isoformat()}), language=language)  # fmt: skip
    assert text is not None
    return text.rsplit("(", 1)[1].removesuffix(", Valhalla IP)")


@pytest.mark.parametrize(
    ("language", "days"),
    [("sv", ["mån 30 nov", "tis 1 dec", "ons 2 dec", "tor 3 dec", "fre 4 dec", "lör 5 dec",
             "sön 6 dec"]),
     ("en", ["Mon 30 Nov", "Tue 1 Dec", "Wed 2 Dec", "Thu 3 Dec", "Fri 4 Dec", "Sat 5 Dec",
             "Sun 6 Dec"])],
)  # fmt: skip
def test_every_day_has_its_name(language: str, days: list[str]) -> None:
    assert [_where(day, language) for day in WEEK] == days


@pytest.mark.parametrize(
    ("language", "months"),
    [("sv", ["jan", "feb", "mars", "apr", "maj", "juni", "juli", "aug", "sep", "okt", "nov",
             "dec"]),
     ("en", ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
             "Dec"])],
)  # fmt: skip
def test_every_month_has_its_name(language: str, months: list[str]) -> None:
    # The 15th of each month of 2027: "<day> 15 <month>".
    names = [_where(date(2027, month, 15), language).split(" ")[2] for month in range(1, 13)]
    assert names == months


@pytest.mark.parametrize(
    ("change", "allowed", "text"),
    [
        # Only the allowed parts of a change...
        (changed(("time_change", "referee_change"), time=("18:30", "19:45"),
                 referees=([], MATCH["referees"])),
         frozenset({"referee_change"}), "domare nu Anna A (Dom)"),
        (RESCHEDULED, frozenset({"time_change"}), "flyttad 18:30 → 19:45"),
        (RESCHEDULED, frozenset({"date_change"}), "flyttad lör 5 dec → sön 6 dec"),
        (RESCHEDULED, frozenset(CATEGORIES), "flyttad lör 5 dec 18:30 → sön 6 dec 19:45"),
        (changed(("uncancelled", "venue_change"), cancelled=(True, False),
                 venue=({"name": "Ullevi"}, {"name": "Valhalla IP"})),
         frozenset({"cancelled", "uncancelled"}), "inte längre inställd"),
        # ... none allowed: no line ...
        (changed(("cancelled",), cancelled=(False, True)), frozenset({"referee_change"}), None),
        (MOVED, frozenset(), None),
        # ... and a new or removed match whole.
        (NEW, frozenset(), "ny tillsättning kl. 19:45"),
        (REMOVED, frozenset({"cancelled"}), "inte längre på din lista"),
    ],
)  # fmt: skip
def test_a_line_shows_only_the_allowed_categories(
    change: MatchChange, allowed: frozenset[str], text: str | None
) -> None:
    expected = None if text is None else f"{TEAMS} {text} (sön 6 dec, Valhalla IP)"
    assert line(change, allowed=allowed) == expected


def test_a_change_with_nothing_allowed_is_neither_a_line_nor_counted() -> None:
    cancelled = changed(("cancelled",), cancelled=(False, True))
    title, body = compose([NEW, cancelled, MOVED], allowed=frozenset({"time_change"}))
    assert title == "Matchlistan: 2 ändringar"
    assert body.splitlines() == [
        f"{TEAMS} ny tillsättning kl. 19:45 (sön 6 dec, Valhalla IP)",
        f"{TEAMS} flyttad 18:30 → 19:45 (sön 6 dec, Valhalla IP)",
    ]


@pytest.mark.parametrize(
    ("language", "count", "digest", "title"),
    [
        ("sv", 1, False, "Matchlistan: 1 ändring"),
        ("sv", 3, False, "Matchlistan: 3 ändringar"),
        ("sv", 1, True, "Matchlistan i sammandrag: 1 ändring"),
        ("sv", 3, True, "Matchlistan i sammandrag: 3 ändringar"),
        ("en", 1, False, "Match list: 1 change"),
        ("en", 3, False, "Match list: 3 changes"),
        ("en", 1, True, "Match list summary: 1 change"),
        ("en", 3, True, "Match list summary: 3 changes"),
    ],
)
def test_the_title_counts_the_changes(language: str, count: int, digest: bool, title: str) -> None:
    assert compose([NEW] * count, language=language, digest=digest)[0] == title


@pytest.mark.parametrize(
    ("language", "title", "plain_title", "urgent_line", "other_line"),
    [
        ("sv", "Brådskande – Matchlistan: 2 ändringar", "Matchlistan: 1 ändring",
         f"Brådskande: {TEAMS} inställd (sön 6 dec, Valhalla IP)",
         f"{TEAMS} flyttad 18:30 → 19:45 (sön 6 dec, Valhalla IP)"),
        ("en", "Urgent – Match list: 2 changes", "Match list: 1 change",
         f"Urgent: {TEAMS} cancelled (Sun 6 Dec, Valhalla IP)",
         f"{TEAMS} moved 18:30 → 19:45 (Sun 6 Dec, Valhalla IP)"),
    ],
)  # fmt: skip
def test_urgent_lines_are_marked_and_come_first(
    language: str, title: str, plain_title: str, urgent_line: str, other_line: str
) -> None:
    cancelled = changed(("cancelled",), match_id="2", cancelled=(False, True))
    got = compose([MOVED, cancelled], language=language, urgent=frozenset({"2", "9"}))
    assert got == (title, f"{urgent_line}\n{other_line}")
    # Urgent ids the message does not carry (filtered, or another message's) mark nothing.
    assert compose([MOVED], language=language, urgent=frozenset({"2"})) == (plain_title, other_line)


def test_an_urgent_line_beyond_the_cut_still_shows() -> None:
    late = changed(("cancelled",), match_id="2", cancelled=(False, True))
    _, body = compose([MOVED] * MAX_LINES + [late], urgent=frozenset({"2"}))
    assert body.splitlines()[0].startswith("Brådskande: ")
    assert body.splitlines()[-1] == "… och 1 till"


@pytest.mark.parametrize(
    ("language", "title", "more"),
    [("sv", f"Matchlistan: {MAX_LINES + 3} ändringar", "… och 3 till"),
     ("en", f"Match list: {MAX_LINES + 3} changes", "... and 3 more")],
)  # fmt: skip
def test_compose_caps_the_lines(language: str, title: str, more: str) -> None:
    got_title, body = compose([NEW] * (MAX_LINES + 3), language=language)
    assert got_title == title
    assert len(body.splitlines()) == MAX_LINES + 1
    assert body.splitlines()[-1] == more
    assert len(compose([NEW] * MAX_LINES, language=language)[1].splitlines()) == MAX_LINES


FAILURES = [
    (Reason.LOGIN_FAILED, "sv",
     "FOGIS avvisade inloggningen – kontrollera lösenordet. Din matchlista bevakas inte förrän "
     "det är löst. Har du bytt lösenord i FOGIS? Be den som sköter bevakningen att lägga in det "
     "nya.",
     "FOGIS godkänner inloggningen igen. Din matchlista bevakas som vanligt igen."),
    (Reason.SOURCE_UNAVAILABLE, "sv",
     "FOGIS går inte att nå eller svarar inte som det ska. Din matchlista bevakas inte förrän det "
     "är löst. Bevakningen försöker igen av sig själv; håller det i sig, säg till den som sköter "
     "bevakningen.",
     "FOGIS svarar igen. Din matchlista bevakas som vanligt igen."),
    (Reason.SECRET_NOT_FOUND, "sv",
     "Inloggningsuppgifterna till FOGIS (användarnamn och lösenord) saknas. Din matchlista "
     "bevakas inte förrän det är löst. Be den som sköter bevakningen att lägga in dem.",
     "Inloggningsuppgifterna till FOGIS finns på plats igen. Din matchlista bevakas som vanligt "
     "igen."),
    (Reason.KUBERNETES_ERROR, "sv",
     "Något är fel i bevakningen av din matchlista. Din matchlista bevakas inte förrän det är "
     "löst. Be den som sköter bevakningen att titta på det.",
     "Felet är åtgärdat. Din matchlista bevakas som vanligt igen."),
    (Reason.LOGIN_FAILED, "en",
     "FOGIS rejected the login – check the password. Your match list is not being checked until "
     "this is fixed. Changed your FOGIS password? Ask whoever runs your watcher to put in the new "
     "one.",
     "FOGIS accepts the login again. Your match list is being checked as usual again."),
    (Reason.SOURCE_UNAVAILABLE, "en",
     "FOGIS cannot be reached or does not answer properly. Your match list is not being checked "
     "until this is fixed. The watcher keeps trying by itself; if this goes on, tell whoever runs "
     "it.",
     "FOGIS answers again. Your match list is being checked as usual again."),
    (Reason.SECRET_NOT_FOUND, "en",
     "The FOGIS login details (username and password) are missing. Your match list is not being "
     "checked until this is fixed. Ask whoever runs your watcher to put them in.",
     "The FOGIS login details are in place again. Your match list is being checked as usual "
     "again."),
    (Reason.KUBERNETES_ERROR, "en",
     "Something is wrong with the watcher of your match list. Your match list is not being "
     "checked until this is fixed. Ask whoever runs your watcher to look into it.",
     "The problem is fixed. Your match list is being checked as usual again."),
]  # fmt: skip
TITLES = {
    "sv": ("Matchlistan bevakas inte", "Bevakningen fungerar igen"),
    "en": ("Match list not being checked", "Match list checked again"),
}


@pytest.mark.parametrize(("reason", "language", "broken", "fixed"), FAILURES)
def test_failure_and_recovery_in_plain_words(
    reason: str, language: str, broken: str, fixed: str
) -> None:
    assert failure(reason, language) == (TITLES[language][0], broken)
    assert recovered(reason, language) == (TITLES[language][1], fixed)


def test_a_missing_credentials_key_reads_as_the_missing_secret() -> None:
    # credentials_from (runtime/runner.py) raises SecretNotFound for a missing username/password
    # key too; the plain reason strings work as well as the members.
    assert failure("SecretNotFound") == failure(Reason.SECRET_NOT_FOUND, "sv")
    assert "lösenord" in failure("SecretNotFound")[1]


def test_swedish_is_the_default_and_unknown_languages_are_refused() -> None:
    assert LANGUAGES[0] == "sv"
    assert set(LANGUAGES) == {"sv", "en"}
    assert failure(Reason.LOGIN_FAILED)[1].startswith("FOGIS avvisade inloggningen")
    for call in (
        lambda: compose([NEW], language="de"),
        lambda: line(NEW, language="SV"),
        lambda: failure(Reason.LOGIN_FAILED, "de"),
        lambda: recovered(Reason.LOGIN_FAILED, ""),
    ):
        with pytest.raises(ValueError, match="unknown language"):
            call()


def test_line_breaks_in_fogis_text_stay_inside_the_line() -> None:
    broken = {**MATCH, "homeTeam": {"id": "t1", "name": "IFK\nGöteborg"}}
    change = MatchChange("new", "1", None, ("new_assignment",), {}, broken)
    assert line(change) == f"{TEAMS} ny tillsättning kl. 19:45 (sön 6 dec, Valhalla IP)"


# --- properties ----------------------------------------------------------------------------------

PROPERTY = settings(
    derandomize=True, max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
IDS = [str(n) for n in range(1, 31)]  # up to 30 matches: beyond MAX_LINES
_NAMES = st.sampled_from(["IFK Göteborg", "BK Häcken", "Valhalla IP", None])
_ENTITIES = st.fixed_dictionaries({"id": st.sampled_from(["1", "2", None]), "name": _NAMES})
_REFEREES = st.lists(
    st.fixed_dictionaries(
        {"id": st.sampled_from(["r1", "r2"]), "name": _NAMES,
         "role": st.sampled_from(["Dom", "AD1", None])}
    ),
    max_size=3,
)  # fmt: skip


def _matches(match_id: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "matchId": st.just(match_id),
            "matchNumber": st.sampled_from(["101", None]),
            "date": st.sampled_from(["2026-12-05", "2026-12-06", None]),
            "time": st.sampled_from(["18:30", "19:45", None]),
            "venue": _ENTITIES,
            "homeTeam": _ENTITIES,
            "awayTeam": _ENTITIES,
            "competition": _ENTITIES,
            "cancelled": st.booleans(),
            "postponed": st.booleans(),
            "interrupted": st.booleans(),
            "referees": _REFEREES,
        }
    )


@st.composite
def _lists(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    ids = draw(st.lists(st.sampled_from(IDS), unique=True, max_size=len(IDS)))
    return {match_id: draw(_matches(match_id)) for match_id in ids}


ALLOWED = st.none() | st.frozensets(st.sampled_from(CATEGORIES))
URGENT = st.frozensets(st.sampled_from(IDS))
WINDOW = window_for(date(2026, 12, 1), 7, 30)


@PROPERTY
@given(_lists(), _lists(), ALLOWED, URGENT, st.booleans(), st.sampled_from(LANGUAGES))
def test_one_line_per_change_with_an_allowed_part(
    old: dict[str, dict[str, Any]],
    new: dict[str, dict[str, Any]],
    allowed: frozenset[str] | None,
    urgent: frozenset[str],
    digest: bool,
    language: str,
) -> None:
    changes = compare(Snapshot(old), Snapshot(new), WINDOW)
    told = [
        change
        for change in changes
        if change.type != "changed" or allowed is None or set(change.categories) & allowed
    ]
    title, body = compose(changes, language=language, allowed=allowed, urgent=urgent,
                          digest=digest)  # fmt: skip
    lines = body.splitlines()
    assert len(lines) == (len(told) if len(told) <= MAX_LINES else MAX_LINES + 1)
    assert f": {len(told)} " in title


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=4,
)
_JUNK = st.builds(
    MatchChange,
    type=st.sampled_from(["new", "removed", "changed"]),
    match_id=st.sampled_from(IDS),
    match_number=st.none() | st.text(max_size=6),
    categories=st.lists(st.sampled_from(CATEGORIES), max_size=4).map(tuple),
    fields=st.dictionaries(
        st.sampled_from(MATCH_FIELDS), st.builds(FieldChange, JSON, JSON), max_size=4
    ),
    match=st.dictionaries(st.sampled_from(MATCH_FIELDS), JSON, max_size=6),
)


@settings(PROPERTY, max_examples=100)  # junk is slow to draw; the realistic property has 200
@given(st.lists(_JUNK, max_size=MAX_LINES + 2), ALLOWED, URGENT, st.sampled_from(LANGUAGES))
def test_any_shape_of_change_composes(
    changes: list[MatchChange],
    allowed: frozenset[str] | None,
    urgent: frozenset[str],
    language: str,
) -> None:
    title, body = compose(changes, language=language, allowed=allowed, urgent=urgent)
    assert title
    assert len(body.splitlines()) <= MAX_LINES + 1
