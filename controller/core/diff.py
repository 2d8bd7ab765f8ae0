"""Pure change detection: normalise FOGIS match records, snapshot them, compare snapshots.

Nothing here does I/O. A fetch is normalised once into a `Snapshot` (the compared fields only,
JSON-able), and `compare` turns two snapshots into categorised `MatchChange`s in one linear pass.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from controller.core.jsontext import canonical_json, load_json

# FOGIS serialises kick-off instants as .NET "/Date(ms)/" and means Swedish wall-clock time.
FOGIS_ZONE = ZoneInfo("Europe/Stockholm")
SNAPSHOT_FORMAT = 1

CATEGORIES: tuple[str, ...] = (
    "new_assignment",
    "removed",
    "cancelled",
    "uncancelled",
    "postponed",
    "unpostponed",
    "interrupted",
    "uninterrupted",
    "date_change",
    "time_change",
    "venue_change",
    "team_change",
    "competition_change",
    "referee_change",
)
_CATEGORY_RANK = {category: rank for rank, category in enumerate(CATEGORIES)}

NormalisedMatch = dict[str, Any]

_TEXT_FIELDS = ("matchId", "matchNumber", "date", "time")
_ENTITY_FIELDS = ("venue", "homeTeam", "awayTeam", "competition")
_FLAG_FIELDS = ("cancelled", "postponed", "interrupted")
MATCH_FIELDS: tuple[str, ...] = (*_TEXT_FIELDS, *_ENTITY_FIELDS, *_FLAG_FIELDS, "referees")

_DOTNET_DATE = re.compile(r"/Date\((-?\d{1,15})(?:[+-]\d{4})?\)/")
_CLOCK = re.compile(r"(?<!\d)([01]?\d|2[0-3]):([0-5]\d)(?!\d)")
_TRUE_WORDS = frozenset({"true", "1", "ja", "yes"})


@dataclass(frozen=True)
class Window:
    """The inclusive date range a fetch asks FOGIS for."""

    start: date
    end: date

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end


def window_for(today: date, days_back: int, days_ahead: int) -> Window:
    if days_back < 0 or days_ahead < 0:
        raise ValueError("days_back and days_ahead must not be negative")
    return Window(today - timedelta(days=days_back), today + timedelta(days=days_ahead))


# --- normalisation -------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """A field as trimmed text; numbers become their decimal form, anything else is missing."""
    if isinstance(value, str):
        return _valid_unicode(value.strip()) or None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


def _valid_unicode(text: str) -> str:
    """`text` with lone UTF-16 surrogates (.NET can cut a string inside an emoji, and JSON
    carries the half as \\udXXX) replaced by U+FFFD: such text cannot be encoded as UTF-8, so
    digests, snapshots and webhook bodies would fail on it for ever."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def first_text(raw: Mapping[str, Any], *keys: str) -> str | None:
    """The first of `keys` in `raw` that holds text (trimmed, numbers as decimals), or None."""
    for key in keys:
        value = _text(raw.get(key))
        if value is not None:
            return value
    return None


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_WORDS
    return False


def _dotnet_instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    found = _DOTNET_DATE.search(value)
    if found is None:
        return None
    try:
        return datetime.fromtimestamp(int(found.group(1)) / 1000, tz=FOGIS_ZONE)
    except (OverflowError, OSError, ValueError):
        return None


def _day(value: Any) -> str | None:
    instant = _dotnet_instant(value)
    if instant is not None:
        return instant.date().isoformat()
    if not isinstance(value, str):
        return None
    try:
        # Also accepts "2025-05-06T00:00:00" shapes: the date is the first ten characters.
        return date.fromisoformat(value.strip()[:10]).isoformat()
    except ValueError:
        return None


def _clock(value: Any) -> str | None:
    instant = _dotnet_instant(value)
    if instant is not None:
        return instant.strftime("%H:%M")
    if not isinstance(value, str):
        return None
    found = _CLOCK.search(value)
    return None if found is None else f"{int(found.group(1)):02d}:{found.group(2)}"


def _entity(raw: Mapping[str, Any], id_key: str, name_key: str) -> dict[str, str | None]:
    return {"id": _text(raw.get(id_key)), "name": _text(raw.get(name_key))}


def referee_identity(item: Mapping[str, Any]) -> str | None:
    """A `domaruppdraglista` entry's referee: `domareid`, else `personid`, else the name."""
    return first_text(item, "domareid", "personid") or first_text(item, "personnamn", "namn")


def _referees(value: Any) -> list[dict[str, str | None]]:
    if not isinstance(value, list):
        return []
    referees: list[dict[str, str | None]] = []
    for item in value:
        if not isinstance(item, Mapping):
            continue
        name = first_text(item, "personnamn", "namn")
        ident = referee_identity(item)
        if ident is None:  # an assignment slot that names nobody identifies no referee
            continue
        role = first_text(item, "domarrollkortnamn", "domarrollnamn", "roll")
        referees.append({"id": ident, "name": name, "role": role})
    referees.sort(key=lambda r: (r["role"] or "", r["id"] or "", r["name"] or ""))
    return referees


def normalise(raw: Mapping[str, Any]) -> NormalisedMatch | None:
    """The compared fields of one FOGIS record, or None when it has no usable `matchid`.

    Never raises on missing or oddly shaped fields: they normalise to None / False / [].
    """
    if not isinstance(raw, Mapping):
        return None
    match_id = _text(raw.get("matchid"))
    if match_id is None:
        return None
    tid = raw.get("tid")
    return {
        "matchId": match_id,
        "matchNumber": _text(raw.get("matchnr")),
        "date": _day(raw.get("speldatum")) or _day(tid),
        "time": _clock(raw.get("avsparkstid")) or _clock(tid),
        "venue": _entity(raw, "anlaggningid", "anlaggningnamn"),
        "homeTeam": _entity(raw, "lag1lagid", "lag1namn"),
        "awayTeam": _entity(raw, "lag2lagid", "lag2namn"),
        "competition": _entity(raw, "tavlingid", "tavlingnamn"),
        "cancelled": _flag(raw.get("installd")),
        "postponed": _flag(raw.get("uppskjuten")),
        "interrupted": _flag(raw.get("avbruten")),
        "referees": _referees(raw.get("domaruppdraglista")),
    }


def normalise_all(raw: Iterable[Mapping[str, Any]]) -> dict[str, NormalisedMatch]:
    """Normalised matches keyed by matchId; records without an id are dropped. Of records that
    repeat an id (FOGIS should not send them) the same one wins whatever their order, so a
    reordered answer never reads as a change."""
    matches: dict[str, NormalisedMatch] = {}
    for record in raw:
        match = normalise(record)
        if match is None:
            continue
        kept = matches.get(match["matchId"])
        if kept is None or canonical_json(match) > canonical_json(kept):
            matches[match["matchId"]] = match
    return matches


# --- snapshots -----------------------------------------------------------------------------------


def _is_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_record(value: Any, keys: frozenset[str]) -> bool:
    return isinstance(value, dict) and value.keys() == keys and all(map(_is_text, value.values()))


_ENTITY_KEYS = frozenset({"id", "name"})
_REFEREE_KEYS = frozenset({"id", "name", "role"})


def match_problem(key: str, match: Any) -> str | None:
    """Why a stored match is unusable, or None; keeps compare() (and the calendar state, which
    stores the same matches) free of shape checks."""
    if not isinstance(match, dict) or match.keys() != set(MATCH_FIELDS):
        return f"fields must be exactly {', '.join(MATCH_FIELDS)}"
    referees = match["referees"]
    checks = (
        (match["matchId"] == key, "matchId differs from its key"),
        (
            all(_is_text(match[name]) for name in _TEXT_FIELDS),
            f"{', '.join(_TEXT_FIELDS)} must be strings or null",
        ),
        (
            all(_is_record(match[name], _ENTITY_KEYS) for name in _ENTITY_FIELDS),
            f"{', '.join(_ENTITY_FIELDS)} must be {{id, name}} objects",
        ),
        (
            all(isinstance(match[name], bool) for name in _FLAG_FIELDS),
            f"{', '.join(_FLAG_FIELDS)} must be booleans",
        ),
        (
            isinstance(referees, list) and all(_is_record(r, _REFEREE_KEYS) for r in referees),
            "referees must be a list of {id, name, role} objects",
        ),
    )
    return next((problem for ok, problem in checks if not ok), None)


@dataclass(frozen=True)
class Snapshot:
    """The normalised match list of one successful fetch, keyed by matchId."""

    matches: Mapping[str, NormalisedMatch] = field(default_factory=dict)
    # How many times the stored snapshot has advanced (0: none stored, or one written before
    # revisions existed). Delivery ids include it, so a list seen before is a new transition.
    revision: int = 0
    # After deliveries that may have been applied without the receiver saying so (in doubt):
    # per match id they touched, every value they sent (None: it said the match was removed),
    # in order: the receiver may hold any of them. The next delivery also moves those matches
    # from there to the current list (see `undo`).
    in_doubt: Mapping[str, tuple[NormalisedMatch | None, ...]] | None = None
    # While deliveries from this snapshot are attempted: the digest of the list the last one
    # carried, and how many times the attempted list changed (A->B, then back to A, then B
    # again are three transitions from one snapshot). Delivery ids include the count, so a
    # redelivery of the same transition keeps its id and a different one never reuses it.
    attempted: str | None = None
    retargets: int = 0

    def attempt(self, target: str, sent: Mapping[str, NormalisedMatch | None]) -> Snapshot:
        """This snapshot with a delivery toward the list `target` recorded before it is sent
        (write-ahead): should the receiver apply it and the process die before the answer, the
        next run still moves those matches to whatever FOGIS says then (see `undo`)."""
        recorded = dict(self.in_doubt or {})
        for match_id, value in sent.items():
            before = recorded.get(match_id, ())
            recorded[match_id] = before if value in before else (*before, value)
        return replace(
            self, in_doubt=recorded, attempted=target, retargets=self.retargets_toward(target)
        )

    def retargets_toward(self, target: str) -> int:
        """The retarget count a delivery toward `target` starts from this snapshot."""
        changed = self.attempted is not None and self.attempted != target
        return self.retargets + 1 if changed else self.retargets

    @cached_property
    def digest(self) -> str:
        """sha256 hex of the canonical JSON of the matches: equal lists, equal digests."""
        return hashlib.sha256(canonical_json(dict(self.matches)).encode()).hexdigest()

    def to_json(self) -> str:
        document: dict[str, Any] = {
            "format": SNAPSHOT_FORMAT,
            "revision": self.revision,
            "matches": dict(self.matches),
        }
        if self.in_doubt is not None:
            # The first value sent under inDoubt (the format before several were kept), any
            # later different ones under inDoubtAlso.
            document["inDoubt"] = {k: values[0] for k, values in self.in_doubt.items()}
            more = {k: list(values[1:]) for k, values in self.in_doubt.items() if len(values) > 1}
            if more:
                document["inDoubtAlso"] = more
        if self.attempted is not None:
            document["attempted"] = self.attempted
            document["retargets"] = self.retargets
        return canonical_json(document)

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        """Parse `to_json` output; raises ValueError saying what is wrong with anything else."""
        try:
            document = load_json(text)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"snapshot is not valid JSON: {exc}") from None
        except RecursionError:
            raise ValueError("snapshot is not valid JSON: nested too deeply") from None
        if not isinstance(document, dict):
            raise ValueError("snapshot must be a JSON object")
        if document.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(
                f"snapshot format {document.get('format')!r} is not supported "
                f"(expected {SNAPSHOT_FORMAT})"
            )
        matches = document.get("matches")
        if not isinstance(matches, dict):
            raise ValueError("snapshot has no matches object")
        for key, match in matches.items():
            problem = match_problem(key, match)
            if problem is not None:
                raise ValueError(f"snapshot match {key!r} is corrupt: {problem}")
        revision = document.get("revision", 0)
        if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
            raise ValueError(f"snapshot revision {revision!r} is not a non-negative integer")
        attempted, retargets = document.get("attempted"), document.get("retargets", 0)
        if attempted is not None and not isinstance(attempted, str):
            raise ValueError("snapshot attempted must be a digest")
        if not isinstance(retargets, int) or isinstance(retargets, bool) or retargets < 0:
            raise ValueError(f"snapshot retargets {retargets!r} is not a non-negative integer")
        in_doubt = _in_doubt(document.get("inDoubt"), document.get("inDoubtAlso"))
        return cls(matches, revision, in_doubt, attempted, retargets)


def _in_doubt(first: Any, more: Any) -> dict[str, tuple[NormalisedMatch | None, ...]] | None:
    """A stored snapshot's inDoubt (and inDoubtAlso) entries; ValueError saying what is wrong."""
    if first is None:
        return None
    if not isinstance(first, dict) or not isinstance(more or {}, dict):
        raise ValueError("snapshot inDoubt must be an object")
    recorded: dict[str, tuple[NormalisedMatch | None, ...]] = {}
    for key, match in first.items():
        later = (more or {}).get(key, [])
        if not isinstance(later, list):
            raise ValueError(f"snapshot inDoubtAlso of {key!r} must be a list")
        for value in (match, *later):
            problem = None if value is None else match_problem(key, value)
            if problem is not None:
                raise ValueError(f"snapshot inDoubt match {key!r} is corrupt: {problem}")
        recorded[key] = (match, *later)
    return recorded


# --- comparison ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    old: Any
    new: Any


@dataclass(frozen=True)
class MatchChange:
    type: str  # "new" | "removed" | "changed"
    match_id: str
    match_number: str | None
    categories: tuple[str, ...]
    fields: Mapping[str, FieldChange]
    match: NormalisedMatch  # the new match; the old one for "removed"


def _same_value(old: Any, new: Any) -> bool:
    return bool(old == new)


def _same_entity(old: Any, new: Any) -> bool:
    old_id, new_id = old.get("id"), new.get("id")
    if old_id is not None and new_id is not None:
        return bool(old_id == new_id)
    return bool(old.get("name") == new.get("name"))


def _referee_keys(referees: Any) -> set[tuple[Any, Any]]:
    return {(r.get("id"), r.get("role")) for r in referees}


def _same_referees(old: Any, new: Any) -> bool:
    return _referee_keys(old) == _referee_keys(new)


@dataclass(frozen=True)
class _Rule:
    field: str
    same: Callable[[Any, Any], bool]
    category: str
    flag: bool = False  # flags report `category` when turned on and "un" + category when off


_RULES = (
    _Rule("date", _same_value, "date_change"),
    _Rule("time", _same_value, "time_change"),
    _Rule("venue", _same_entity, "venue_change"),
    _Rule("homeTeam", _same_entity, "team_change"),
    _Rule("awayTeam", _same_entity, "team_change"),
    _Rule("competition", _same_entity, "competition_change"),
    _Rule("cancelled", _same_value, "cancelled", flag=True),
    _Rule("postponed", _same_value, "postponed", flag=True),
    _Rule("interrupted", _same_value, "interrupted", flag=True),
    _Rule("referees", _same_referees, "referee_change"),
)


def _changed(old: NormalisedMatch, new: NormalisedMatch) -> MatchChange | None:
    fields: dict[str, FieldChange] = {}
    categories: set[str] = set()
    for rule in _RULES:
        before, after = old.get(rule.field), new.get(rule.field)
        # A missing date or time (None) equals only another missing one.
        if (before is after) if before is None or after is None else rule.same(before, after):
            continue
        fields[rule.field] = FieldChange(before, after)
        categories.add(rule.category if not rule.flag or after else f"un{rule.category}")
    if not fields:
        return None
    return MatchChange(
        type="changed",
        match_id=new["matchId"],
        match_number=new.get("matchNumber"),
        categories=tuple(sorted(categories, key=_CATEGORY_RANK.__getitem__)),
        fields=fields,
        match=new,
    )


def _inside(match: NormalisedMatch, window: Window) -> bool:
    try:
        return window.contains(date.fromisoformat(match["date"]))
    except (TypeError, ValueError, KeyError):
        return True  # an unknown date cannot prove the match slid out, so its removal counts


def _appeared(match: NormalisedMatch, type_: str, category: str) -> MatchChange:
    return MatchChange(
        type=type_,
        match_id=match["matchId"],
        match_number=match.get("matchNumber"),
        categories=(category,),
        fields={},
        match=match,
    )


def change_order(change: MatchChange) -> tuple[str, str, str]:
    """Changes are listed by match date, time, then id."""
    return (change.match.get("date") or "", change.match.get("time") or "", change.match_id)


def compare(old: Snapshot, new: Snapshot, window: Window) -> list[MatchChange]:
    """What changed from `old` to `new`, ordered by match date, time, then id.

    `window` is the window `new` was fetched with: an id missing from `new` whose old date lies
    outside it slid out of view and is not reported as removed.

    A venue, team or competition changes when its id changes; the name is compared only when
    either side lacks an id, so a renamed club or ground (same id) is not a change. Likewise a
    referee's name is not compared: the set of (referee id, role) pairs is. `matchNumber` is
    carried for display but not compared. A renamed entity still changes the snapshot digest.
    """
    changes: list[MatchChange] = []
    for match_id, new_match in new.matches.items():
        old_match = old.matches.get(match_id)
        if old_match is None:
            changes.append(_appeared(new_match, "new", "new_assignment"))
        elif old_match != new_match:
            change = _changed(old_match, new_match)
            if change is not None:
                changes.append(change)
    for match_id, old_match in old.matches.items():
        if match_id not in new.matches and _inside(old_match, window):
            changes.append(_appeared(old_match, "removed", "removed"))
    changes.sort(key=change_order)
    return changes


def undo(
    old: Snapshot, new: Snapshot, window: Window, changes: Sequence[MatchChange]
) -> list[MatchChange]:
    """What a receiver that applied any of `old.in_doubt` (deliveries that may have arrived)
    needs on top of `changes` (old -> new) to end at `new`: for each match they touched and
    `changes` does not cover, the change from a value sent that differs from the current one.
    A receiver holding another value finds the match already so (an upsert is idempotent)."""
    if not old.in_doubt:
        return []
    covered = {change.match_id for change in changes}
    undone: list[MatchChange] = []
    for match_id, sent in old.in_doubt.items():
        if match_id in covered:
            continue
        now = new.matches.get(match_id)
        after = Snapshot({} if now is None else {match_id: now})
        # The receiver may hold any value sent: from the first that differs from FOGIS now.
        for value in sent:
            found = compare(Snapshot({} if value is None else {match_id: value}), after, window)
            if found:
                undone.append(found[0])
                break
    return undone


def sudden_drop(old: Snapshot, changes: Sequence[MatchChange], window: Window) -> bool:
    """Whether `changes` remove all (at least two) or most (at least three, and three quarters)
    of the matches `old` held inside `window`. A FOGIS answer that does so at once is more
    often a glitch than a referee's season: it is reported only once a second fetch agrees."""
    inside = sum(1 for match in old.matches.values() if _inside(match, window))
    removed = sum(1 for change in changes if change.type == "removed")
    return (removed == inside >= 2) or (removed >= 3 and removed * 4 >= inside * 3)


@dataclass(frozen=True)
class Summary:
    new: int
    removed: int
    changed: int

    @property
    def total(self) -> int:
        return self.new + self.removed + self.changed


def summarise(changes: Iterable[MatchChange]) -> Summary:
    counts = {"new": 0, "removed": 0, "changed": 0}
    for change in changes:
        counts[change.type] += 1
    return Summary(**counts)
