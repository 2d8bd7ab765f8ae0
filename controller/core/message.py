"""The short texts a person gets on their phone, in their language (`spec.language`): one line per
change of a change set, its categories in words, and the notices that their watcher keeps failing
and that it works again. Pure, table-tested (tests/unit/core/test_message.py).

    IFK Göteborg – BK Häcken flyttad 18:30 → 19:45 (sön 6 dec, Valhalla IP)
    IFK Göteborg – BK Häcken moved 18:30 → 19:45 (Sun 6 Dec, Valhalla IP)

Day and month names come from the tables below, never from the process locale.
"""  # noqa: RUF002 - the en dash between the teams is meant (typography, not a typo)

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from controller.core.diff import MatchChange
from controller.core.reasons import Reason

# At most this many lines: chat services cut long messages, and a phone screen is small.
MAX_LINES = 20
_DASH = "–"  # noqa: RUF001 - an en dash, as in print


@dataclass(frozen=True)
class _Failure:
    """What a person reads about one failure reason: what is wrong, what they can do about it,
    and, once it works again, what changed."""

    cause: str
    action: str
    fixed: str


@dataclass(frozen=True)
class _Words:
    days: tuple[str, ...]  # Monday first, as date.weekday()
    months: tuple[str, ...]
    title: str  # the title's "{title}: {count} {noun}"
    digest: str  # instead of `title` for what quiet hours held back
    nouns: tuple[str, str]  # one change, several
    urgent_title: str  # before the title when any line is urgent
    urgent_line: str  # before an urgent line
    new: str
    new_at: str
    removed: str
    moved: str
    flags: Mapping[str, str]  # by category
    venue: str
    teams: str
    competition: str
    referees: str
    no_referees: str
    more: str
    failure_title: str
    not_checked: str
    recovered_title: str
    checked_again: str
    failures: Mapping[str, _Failure]  # by Reason; "" for any other reason


_WORDS: dict[str, _Words] = {
    # Swedish first: the default (FOGIS is Swedish).
    "sv": _Words(
        days=("mån", "tis", "ons", "tor", "fre", "lör", "sön"),
        months=("jan", "feb", "mars", "apr", "maj", "juni",
                "juli", "aug", "sep", "okt", "nov", "dec"),
        title="Matchlistan",
        digest="Matchlistan i sammandrag",
        nouns=("ändring", "ändringar"),
        urgent_title=f"Brådskande {_DASH} ",
        urgent_line="Brådskande: ",
        new="ny tillsättning",
        new_at="ny tillsättning kl. {time}",
        removed="inte längre på din lista",
        moved="flyttad {old} → {new}",
        flags={
            "cancelled": "inställd",
            "uncancelled": "inte längre inställd",
            "postponed": "uppskjuten",
            "unpostponed": "inte längre uppskjuten",
            "interrupted": "avbruten",
            "uninterrupted": "inte längre avbruten",
        },
        venue="arena {old} → {new}",
        teams="lag ändrade",
        competition="tävling {old} → {new}",
        referees="domare nu {names}",
        no_referees="inga domare tillsatta",
        more="… och {count} till",
        failure_title="Matchlistan bevakas inte",
        not_checked="Din matchlista bevakas inte förrän det är löst.",
        recovered_title="Bevakningen fungerar igen",
        checked_again="Din matchlista bevakas som vanligt igen.",
        failures={
            Reason.LOGIN_FAILED: _Failure(
                f"FOGIS avvisade inloggningen {_DASH} kontrollera lösenordet.",
                "Har du bytt lösenord i FOGIS? Be den som sköter bevakningen att lägga in det nya.",
                "FOGIS godkänner inloggningen igen.",
            ),
            Reason.SOURCE_UNAVAILABLE: _Failure(
                "FOGIS går inte att nå eller svarar inte som det ska.",
                "Bevakningen försöker igen av sig själv; håller det i sig, "
                "säg till den som sköter bevakningen.",
                "FOGIS svarar igen.",
            ),
            Reason.SECRET_NOT_FOUND: _Failure(
                "Inloggningsuppgifterna till FOGIS (användarnamn och lösenord) saknas.",
                "Be den som sköter bevakningen att lägga in dem.",
                "Inloggningsuppgifterna till FOGIS finns på plats igen.",
            ),
            "": _Failure(
                "Något är fel i bevakningen av din matchlista.",
                "Be den som sköter bevakningen att titta på det.",
                "Felet är åtgärdat.",
            ),
        },
    ),
    "en": _Words(
        days=("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
        months=("Jan", "Feb", "Mar", "Apr", "May", "Jun",
                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        title="Match list",
        digest="Match list summary",
        nouns=("change", "changes"),
        urgent_title=f"Urgent {_DASH} ",
        urgent_line="Urgent: ",
        new="new assignment",
        new_at="new assignment at {time}",
        removed="no longer on your list",
        moved="moved {old} → {new}",
        flags={
            "cancelled": "cancelled",
            "uncancelled": "no longer cancelled",
            "postponed": "postponed",
            "unpostponed": "no longer postponed",
            "interrupted": "interrupted",
            "uninterrupted": "no longer interrupted",
        },
        venue="venue {old} → {new}",
        teams="teams changed",
        competition="competition {old} → {new}",
        referees="referees now {names}",
        no_referees="referees now none",
        more="... and {count} more",
        failure_title="Match list not being checked",
        not_checked="Your match list is not being checked until this is fixed.",
        recovered_title="Match list checked again",
        checked_again="Your match list is being checked as usual again.",
        failures={
            Reason.LOGIN_FAILED: _Failure(
                f"FOGIS rejected the login {_DASH} check the password.",
                "Changed your FOGIS password? Ask whoever runs your watcher to put in the new one.",
                "FOGIS accepts the login again.",
            ),
            Reason.SOURCE_UNAVAILABLE: _Failure(
                "FOGIS cannot be reached or does not answer properly.",
                "The watcher keeps trying by itself; if this goes on, tell whoever runs it.",
                "FOGIS answers again.",
            ),
            Reason.SECRET_NOT_FOUND: _Failure(
                "The FOGIS login details (username and password) are missing.",
                "Ask whoever runs your watcher to put them in.",
                "The FOGIS login details are in place again.",
            ),
            "": _Failure(
                "Something is wrong with the watcher of your match list.",
                "Ask whoever runs your watcher to look into it.",
                "The problem is fixed.",
            ),
        },
    ),
}  # fmt: skip
LANGUAGES: tuple[str, ...] = tuple(_WORDS)  # sv first: the default


def _words(language: str) -> _Words:
    try:
        return _WORDS[language]
    except KeyError:
        raise ValueError(
            f"unknown language {language!r} (expected one of {', '.join(LANGUAGES)})"
        ) from None


def _name(entity: Any, fallback: str = "?") -> str:
    return str(entity.get("name") or fallback) if isinstance(entity, Mapping) else fallback


def _day(value: Any, words: _Words) -> str | None:
    """`2026-12-06` → `sön 6 dec` / `Sun 6 Dec`."""
    try:
        day = date.fromisoformat(str(value))
    except ValueError:
        return None
    return f"{words.days[day.weekday()]} {day.day} {words.months[day.month - 1]}"


def _when(day: Any, time: Any, words: _Words) -> str:
    parts = (_day(day, words), time if isinstance(time, str) else None)
    return " ".join(part for part in parts if part)


def _referees(value: Any, words: _Words) -> str:
    if not isinstance(value, list) or not value:
        return words.no_referees
    names = ", ".join(
        f"{_name(r)} ({r['role']})" if r.get("role") else _name(r)
        for r in value
        if isinstance(r, Mapping)
    )
    return words.referees.format(names=names)


def _moved(change: MatchChange, shown: Sequence[str], words: _Words) -> str:
    """The kickoff's move, of only the date or the time when only that category is shown."""
    date_, time = change.fields.get("date"), change.fields.get("time")
    if "date_change" not in shown:
        date_ = None
    if "time_change" not in shown:
        time = None
    old = _when(date_.old if date_ else None, time.old if time else None, words)
    new = _when(date_.new if date_ else None, time.new if time else None, words)
    return words.moved.format(old=old or "?", new=new or "?")


def _change_of(change: MatchChange, field: str) -> tuple[Any, Any]:
    found = change.fields.get(field)
    return (found.old, found.new) if found else (None, None)


def _what(change: MatchChange, words: _Words, allowed: frozenset[str] | None) -> list[str]:
    """The parts of a change's line, in words: for a "changed" one only those of the allowed
    categories (none: no line); a new or removed match whole."""
    if change.type == "new":
        time = change.match.get("time")
        return [words.new_at.format(time=time) if time else words.new]
    if change.type == "removed":
        return [words.removed]
    shown = [c for c in change.categories if allowed is None or c in allowed]
    parts = []
    if "date_change" in shown or "time_change" in shown:
        parts.append(_moved(change, shown, words))
    parts += [words.flags[c] for c in shown if c in words.flags]
    if "venue_change" in shown:
        old, new = _change_of(change, "venue")
        parts.append(words.venue.format(old=_name(old), new=_name(new)))
    if "team_change" in shown:
        parts.append(words.teams)
    if "competition_change" in shown:
        old, new = _change_of(change, "competition")
        parts.append(words.competition.format(old=_name(old), new=_name(new)))
    if "referee_change" in shown:
        parts.append(_referees(_change_of(change, "referees")[1], words))
    return parts


def line(
    change: MatchChange, *, language: str = "sv", allowed: frozenset[str] | None = None
) -> str | None:
    """One change in words, or None when none of its categories is allowed."""
    words = _words(language)
    what = _what(change, words, allowed)
    if not what:
        return None
    match = change.match
    teams = f"{_name(match.get('homeTeam'))} {_DASH} {_name(match.get('awayTeam'))}"
    where = ", ".join(
        part for part in (_day(match.get("date"), words), _name(match.get("venue"), "")) if part
    )
    text = f"{teams} {', '.join(what)}" + (f" ({where})" if where else "")
    # FOGIS text can hold line breaks: a change stays one line.
    return " ".join(text.split())


def compose(
    changes: Sequence[MatchChange],
    *,
    language: str = "sv",
    allowed: frozenset[str] | None = None,
    urgent: frozenset[str] = frozenset(),
    digest: bool = False,
) -> tuple[str, str]:
    """(title, body) for one message: a line per change with an allowed part, the urgent ones
    (by match id) first and marked, so the cut at MAX_LINES never hides them; `digest` when it
    is what quiet hours held back."""
    words = _words(language)
    first: list[str] = []
    rest: list[str] = []
    for change in changes:
        text = line(change, language=language, allowed=allowed)
        if text is None:
            continue
        if change.match_id in urgent:
            first.append(words.urgent_line + text)
        else:
            rest.append(text)
    lines = first + rest
    count = len(lines)
    title = f"{words.digest if digest else words.title}: {count} {words.nouns[count != 1]}"
    body = lines[:MAX_LINES]
    if count > MAX_LINES:
        body.append(words.more.format(count=count - MAX_LINES))
    return (words.urgent_title if first else "") + title, "\n".join(body)


def _failure(reason: str, words: _Words) -> _Failure:
    return words.failures.get(reason, words.failures[""])


def failure(reason: str, language: str = "sv") -> tuple[str, str]:
    """(title, body) telling the referee their watcher keeps failing for `reason` (a Reason),
    in plain words: what is wrong, that the list is not checked, and who can fix it."""
    words = _words(language)
    told = _failure(reason, words)
    return words.failure_title, f"{told.cause} {words.not_checked} {told.action}"


def recovered(reason: str, language: str = "sv") -> tuple[str, str]:
    """(title, body) telling the referee their watcher works again; `reason` is what had been
    wrong."""
    words = _words(language)
    return words.recovered_title, f"{_failure(reason, words).fixed} {words.checked_again}"
