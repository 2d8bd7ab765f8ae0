"""What a watcher's calendar feed shows (issue 24) and how that advances with each confirmed
fetch: per match the latest value with the SEQUENCE and LAST-MODIFIED a calendar client needs to
update its event in place, matches that left the list kept as cancelled until their date has
passed, and the words of the events' texts. Pure; `controller/adapters/ics.py` writes it as
RFC 5545.

An entry changes (SEQUENCE + 1, LAST-MODIFIED = now) only when what the feed shows of it
changes, so the rendered body, and its ETag, change only when the list does. When entries leave:

- a match FOGIS no longer lists whose date is today or later (and inside the window) stays,
  marked `left_list` (shown CANCELLED), until its date has passed;
- at the first advance whose `now` (Stockholm time) is on a later date than an entry's date, the
  entry is dropped if it left the list, or if it is cancelled or postponed (calendar clients
  then delete the event instead of keeping a ghost); matches FOGIS still lists otherwise stay
  until they slide out of the window backwards, and are then dropped, not cancelled;
- a match that is missing and dated after the window's end was not asked for (the window
  shrank): it is kept as it was until the window reaches its date again;
- a match without a date that leaves the list is dropped at once: the feed cannot show a match
  without a date (ics.py leaves it out), so there is no event to cancel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, TypeGuard

from controller.core.diff import (
    FOGIS_ZONE,
    NormalisedMatch,
    Snapshot,
    Window,
    first_text,
    match_problem,
    normalise,
    referee_identity,
)
from controller.core.jsontext import canonical_json, load_json

CALENDAR_FORMAT = 1
_STAMP = "%Y-%m-%dT%H:%M:%SZ"
_STAMP_SHAPE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@dataclass(frozen=True)
class Contact:
    """How to reach one referee of a match, as FOGIS lists it (personal data: stored and shown
    only when the watcher includes contacts)."""

    referee_id: str  # the referee's id in the match's `referees`
    phone: str | None
    email: str | None


@dataclass(frozen=True)
class CalendarEntry:
    """One match as the feed shows it."""

    match: NormalisedMatch  # the latest known value
    sequence: int  # RFC 5545 SEQUENCE: + 1 whenever what the feed shows of the match changes
    last_modified: datetime  # UTC, whole seconds: when it last changed (also its DTSTAMP)
    left_list: bool  # no longer on FOGIS's list: shown CANCELLED until its date has passed
    contacts: tuple[Contact, ...] = ()  # only filled when the watcher includes contacts
    # The watcher's own referee's role(s) in the match, when the list tells who that is.
    roles: tuple[str, ...] = ()

    @property
    def cancelled(self) -> bool:
        """Whether the feed shows it STATUS:CANCELLED."""
        return self.left_list or bool(self.match["cancelled"] or self.match["postponed"])


@dataclass(frozen=True)
class CalendarState:
    """A watcher's feed: its entries by match id and a revision that + 1 whenever any changes."""

    entries: Mapping[str, CalendarEntry] = field(default_factory=dict)
    revision: int = 0

    def to_json(self) -> str:
        return canonical_json(
            {
                "format": CALENDAR_FORMAT,
                "revision": self.revision,
                "entries": {key: _entry_document(e) for key, e in self.entries.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str) -> CalendarState:
        """Parse `to_json` output; raises ValueError saying what is wrong with anything else."""
        try:
            document = load_json(text)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"calendar state is not valid JSON: {exc}") from None
        except RecursionError:
            raise ValueError("calendar state is not valid JSON: nested too deeply") from None
        if not isinstance(document, dict):
            raise ValueError("calendar state must be a JSON object")
        if document.get("format") != CALENDAR_FORMAT:
            raise ValueError(
                f"calendar state format {document.get('format')!r} is not supported "
                f"(expected {CALENDAR_FORMAT})"
            )
        revision = document.get("revision")
        if not _count(revision):
            raise ValueError(f"calendar state revision {revision!r} is not a non-negative integer")
        entries = document.get("entries")
        if not isinstance(entries, dict):
            raise ValueError("calendar state has no entries object")
        parsed = {}
        for key, value in entries.items():
            try:
                parsed[key] = _parse_entry(key, value)
            except ValueError as exc:
                raise ValueError(f"calendar state entry {key!r} is corrupt: {exc}") from None
        return cls(parsed, revision)


EMPTY = CalendarState()


def _count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entry_document(entry: CalendarEntry) -> dict[str, Any]:
    return {
        "match": entry.match,
        "sequence": entry.sequence,
        "lastModified": entry.last_modified.strftime(_STAMP),
        "leftList": entry.left_list,
        "contacts": [
            {"refereeId": c.referee_id, "phone": c.phone, "email": c.email} for c in entry.contacts
        ],
        "roles": list(entry.roles),
    }


_ENTRY_KEYS = frozenset({"match", "sequence", "lastModified", "leftList", "contacts", "roles"})
_CONTACT_KEYS = frozenset({"refereeId", "phone", "email"})


def _parse_entry(key: str, value: Any) -> CalendarEntry:
    if not isinstance(value, dict) or value.keys() != _ENTRY_KEYS:
        raise ValueError(f"fields must be exactly {', '.join(sorted(_ENTRY_KEYS))}")
    problem = match_problem(key, value["match"])
    if problem is not None:
        raise ValueError(f"match: {problem}")
    if not _count(value["sequence"]):
        raise ValueError("sequence must be a non-negative integer")
    stamp = value["lastModified"]
    if not isinstance(stamp, str) or not _STAMP_SHAPE.fullmatch(stamp):
        raise ValueError("lastModified must be a UTC time like 2026-03-29T17:00:00Z")
    try:
        last_modified = datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"lastModified {stamp!r} is not a valid time") from None
    if not isinstance(value["leftList"], bool):
        raise ValueError("leftList must be a boolean")
    contacts, roles = value["contacts"], value["roles"]
    if not isinstance(contacts, list) or not all(map(_is_contact, contacts)):
        raise ValueError("contacts must be a list of {refereeId, phone, email} objects")
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise ValueError("roles must be a list of strings")
    return CalendarEntry(
        match=value["match"],
        sequence=value["sequence"],
        last_modified=last_modified,
        left_list=value["leftList"],
        contacts=tuple(Contact(c["refereeId"], c["phone"], c["email"]) for c in contacts),
        roles=tuple(roles),
    )


def _is_contact(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.keys() == _CONTACT_KEYS
        and isinstance(value["refereeId"], str)
        and all(value[k] is None or isinstance(value[k], str) for k in ("phone", "email"))
    )


# --- advancing -----------------------------------------------------------------------------------


def match_day(match: NormalisedMatch) -> date | None:
    try:
        return date.fromisoformat(match["date"])
    except (TypeError, ValueError, KeyError):
        return None


def advance(
    previous: CalendarState | None,
    latest: Snapshot,
    raw: Sequence[Mapping[str, Any]],
    window: Window,
    now: datetime,
    *,
    include_contacts: bool,
) -> CalendarState:
    """The feed after the confirmed fetch `latest` (normalised; `raw` its records, read only for
    contacts), fetched with `window` at `now` (timezone-aware). `previous` itself when nothing
    the feed shows changed; else the new state with revision + 1."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    stamp = now.astimezone(UTC).replace(microsecond=0)
    today = now.astimezone(FOGIS_ZONE).date()
    before = previous or EMPTY
    contacts = _contacts(latest, raw) if include_contacts else {}
    own = _own_referee(latest.matches.values())
    entries: dict[str, CalendarEntry] = {}
    changed = False
    for match_id, match in latest.matches.items():
        kept = before.entries.get(match_id)
        day = match_day(match)
        if (match["cancelled"] or match["postponed"]) and day is not None and day < today:
            changed |= kept is not None
            continue
        shown = (match, contacts.get(match_id, ()), _roles(match, own))
        if (
            kept is not None
            and not kept.left_list
            and (kept.match, kept.contacts, kept.roles) == shown
        ):
            entries[match_id] = kept
            continue
        entries[match_id] = CalendarEntry(
            match=match,
            sequence=0 if kept is None else kept.sequence + 1,
            last_modified=stamp,
            left_list=False,
            contacts=shown[1],
            roles=shown[2],
        )
        changed = True
    for match_id, kept in before.entries.items():
        if match_id in latest.matches:
            continue
        day = match_day(kept.match)
        if day is not None and day > window.end:
            entries[match_id] = kept  # not asked for: FOGIS said nothing about it
        elif day is None or day < today:
            changed = True  # dropped
        elif kept.left_list:
            entries[match_id] = kept
        else:
            entries[match_id] = replace(
                kept, left_list=True, sequence=kept.sequence + 1, last_modified=stamp
            )
            changed = True
    if not changed:
        return before if previous is not None else CalendarState()
    return CalendarState(entries, before.revision + 1)


def _own_referee(matches: Iterable[NormalisedMatch]) -> str | None:
    """The watcher's referee: the list is their assignments, so they are on every match that
    names a crew; known when exactly one referee is."""
    common: set[str] | None = None
    for match in matches:
        ids = {referee["id"] for referee in match["referees"]}
        if ids:
            common = ids if common is None else common & ids
    return next(iter(common)) if common is not None and len(common) == 1 else None


def _roles(match: NormalisedMatch, referee_id: str | None) -> tuple[str, ...]:
    return tuple(
        r["role"] for r in match["referees"] if r["id"] == referee_id and r["role"] is not None
    )


def _contacts(latest: Snapshot, raw: Sequence[Mapping[str, Any]]) -> dict[str, tuple[Contact, ...]]:
    """Per match id, the contacts in the raw record `latest` holds the value of."""
    found: dict[str, tuple[Contact, ...]] = {}
    for record in raw:
        match = normalise(record)
        if match is None or latest.matches.get(match["matchId"]) != match:
            continue
        assignments = record.get("domaruppdraglista")
        people = {
            contact
            for item in (assignments if isinstance(assignments, list) else ())
            if isinstance(item, Mapping) and (contact := _contact(item)) is not None
        }
        found[match["matchId"]] = tuple(
            sorted(people, key=lambda c: (c.referee_id, c.phone or "", c.email or ""))
        )
    return found


def _contact(item: Mapping[str, Any]) -> Contact | None:
    referee_id = referee_identity(item)
    phone = first_text(item, "mobiltelefon", "telefon")
    email = first_text(item, "epostadress")
    if referee_id is None or (phone is None and email is None):
        return None
    return Contact(referee_id, phone, email)


# --- words ---------------------------------------------------------------------------------------

LANGUAGES = ("sv", "en")
_WORDS = {
    "sv": {
        "calendar": "Domaruppdrag",
        "competition": "Tävling",
        "number": "Matchnummer",
        "role": "Din roll",
        "crew": "Domarteam",
        "cancelled": "Inställd",
        "postponed": "Uppskjuten",
        "interrupted": "Avbruten",
        "left_list": "Inte längre på din lista",
    },
    "en": {
        "calendar": "Referee assignments",
        "competition": "Competition",
        "number": "Match number",
        "role": "Your role",
        "crew": "Referee team",
        "cancelled": "Cancelled",
        "postponed": "Postponed",
        "interrupted": "Interrupted",
        "left_list": "No longer on your list",
    },
}


def _words(language: str) -> Mapping[str, str]:
    try:
        return _WORDS[language]
    except KeyError:
        raise ValueError(f"language {language!r} is not one of {', '.join(LANGUAGES)}") from None


def calendar_name(language: str) -> str:
    return _words(language)["calendar"]


def _name(entity: Any) -> str | None:
    return entity.get("name") if isinstance(entity, Mapping) else None


def summary(match: NormalisedMatch) -> str:
    home, away = _name(match["homeTeam"]) or "?", _name(match["awayTeam"]) or "?"
    return f"{home} – {away}"  # noqa: RUF001 - an en dash, as in print


def location(match: NormalisedMatch) -> str | None:
    return _name(match["venue"])


# FOGIS's roles, short and long names, in the order its own lists show a crew; others follow.
_ROLE_RANK = {
    role: rank
    for rank, names in enumerate(
        (
            ("Dom", "Huvuddomare"),
            ("AD1", "Assisterande domare 1"),
            ("AD2", "Assisterande domare 2"),
            ("4:e dom", "Fjärdedomare"),
        )
    )
    for role in names
}


def _crew_order(referee: Mapping[str, Any]) -> tuple[int, str, str]:
    role = referee["role"] or ""
    return (_ROLE_RANK.get(role, len(_ROLE_RANK)), role, referee["id"])


def description(entry: CalendarEntry, language: str, *, include_contacts: bool) -> str:
    """The event's text: what is wrong with the match first, then competition, match number,
    the watcher's role and the crew (with phone and e-mail only when contacts are included)."""
    words, match = _words(language), entry.match
    flags = ("cancelled", "postponed", "interrupted")
    lines = [words["left_list"]] if entry.left_list else []
    lines += [words[flag] for flag in flags if match[flag]]
    competition = _name(match["competition"])
    if competition:
        lines.append(f"{words['competition']}: {competition}")
    if match["matchNumber"]:
        lines.append(f"{words['number']}: {match['matchNumber']}")
    if entry.roles:
        lines.append(f"{words['role']}: {', '.join(entry.roles)}")
    reach = {c.referee_id: c for c in entry.contacts} if include_contacts else {}
    if match["referees"]:
        lines.append(f"{words['crew']}:")
    for referee in sorted(match["referees"], key=_crew_order):
        contact = reach.get(referee["id"])
        details = [] if contact is None else [d for d in (contact.phone, contact.email) if d]
        name = referee["name"] or "?"
        who = f"{referee['role']}: {name}" if referee["role"] else name
        lines.append(f"{who} ({', '.join(details)})" if details else who)
    return "\n".join(lines)
