"""The truth generator: what FOGIS says for one watcher, mutated over time through every change
category, and the projection both sides are compared on.

Each watcher has its own FOGIS user, so the fake serves it a list of its own. The generator
keeps a small model of each match (the fields a change report carries, plus some it must ignore)
and renders it into FOGIS records with the fake's `make_match`. Names derive from ids, so a
change of id is the only way an entity changes (a renamed venue with the same id is no change).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from tests.soak.world import make_match, make_referee

ROLES = ("Dom", "AD1", "AD2", "4:e dom")
KICKOFFS = ("12:00", "13:30", "15:00", "17:00", "18:30", "19:00", "19:45")
# Every category of the design notes (section 5), the no-change edits the diff must ignore,
# and whole-list moves: reverts (A->B->A->B), emptying and refilling.
MUTATIONS = (
    "added", "removed", "cancelled", "postponed", "interrupted", "time", "date", "venue",
    "teams", "competition", "referee", "role_swap", "reorder", "contact", "revert",
    "flipflop", "empty", "refill",
)  # fmt: skip

# The compared view of one match: what a change report's `match` carries, reduced to what
# identifies a change (ids of entities, the set of (referee, role) pairs).
View = dict[str, Any]
VIEW_FIELDS = (
    "matchId", "date", "time", "venue", "homeTeam", "awayTeam", "competition",
    "cancelled", "postponed", "interrupted", "referees",
)  # fmt: skip


@dataclass(frozen=True)
class Match:
    id: int
    day: date
    kickoff: str
    venue: int
    home: int
    away: int
    competition: int
    cancelled: bool = False
    postponed: bool = False
    interrupted: bool = False
    referees: tuple[tuple[int, str], ...] = ()  # (domareid, role) in FOGIS's order
    contact: int = 0  # contact details: present on the record, never compared

    def record(self) -> dict[str, Any]:
        return make_match(
            self.id,
            on=self.day,
            avsparkstid=self.kickoff,
            anlaggningid=self.venue,
            anlaggningnamn=f"Arena {self.venue}",
            lag1lagid=self.home,
            lag1namn=f"IF {self.home}",
            lag2lagid=self.away,
            lag2namn=f"BK {self.away}",
            tavlingid=self.competition,
            tavlingnamn=f"Serie {self.competition}",
            installd=self.cancelled,
            uppskjuten=self.postponed,
            avbruten=self.interrupted,
            domaruppdraglista=[
                make_referee(rid, f"Domare {rid}", role) for rid, role in self.referees
            ],
            kontaktpersoner=[{"namn": "Kansli", "telefon": f"08-{self.contact:06d}"}],
        )


def view_of_record(record: Mapping[str, Any]) -> View:
    """The compared view of a FOGIS record as the generator renders it."""
    referees = sorted(
        [str(r["domareid"]), str(r["domarrollkortnamn"])] for r in record["domaruppdraglista"]
    )
    return {
        "matchId": str(record["matchid"]),
        "date": str(record["speldatum"]),
        "time": str(record["avsparkstid"]),
        "venue": str(record["anlaggningid"]),
        "homeTeam": str(record["lag1lagid"]),
        "awayTeam": str(record["lag2lagid"]),
        "competition": str(record["tavlingid"]),
        "cancelled": bool(record["installd"]),
        "postponed": bool(record["uppskjuten"]),
        "interrupted": bool(record["avbruten"]),
        "referees": referees,
    }


def field_of_payload(name: str, value: Any) -> Any:
    """One field of a change report's normalised match, projected like `view_of_record`."""
    if name in ("venue", "homeTeam", "awayTeam", "competition"):
        return None if not isinstance(value, Mapping) else value.get("id")
    if name == "referees":
        return sorted([str(r.get("id")), str(r.get("role"))] for r in value or [])
    return value


def view_of_payload(match: Mapping[str, Any]) -> View:
    """The compared view of a change report's `match` object."""
    return {name: field_of_payload(name, match.get(name)) for name in VIEW_FIELDS}


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Truth:
    """One watcher's FOGIS list and its history; `publish` is called with every new list."""

    def __init__(
        self,
        rng: random.Random,
        index: int,
        today: date,
        publish: Callable[[Sequence[Mapping[str, Any]]], None],
    ) -> None:
        self.rng = rng
        self.today = today
        self._publish = publish
        self._next_id = 1_000_000 + index * 10_000
        self.matches: dict[int, Match] = {}
        self.history: list[dict[int, Match]] = []
        for _ in range(rng.randint(2, 6)):
            self._add()
        self._commit()

    def _new_match(self) -> Match:
        self._next_id += 1
        rng = self.rng
        # Some in the past: shrinking daysBack later makes them slide out of the window.
        day = self.today + timedelta(days=rng.randint(-5, 30))
        referees = tuple(zip(rng.sample(range(20_000, 20_400), 3), ROLES[:3], strict=True))
        return Match(
            id=self._next_id,
            day=day,
            kickoff=rng.choice(KICKOFFS),
            venue=rng.randint(300, 330),
            home=rng.randint(7000, 7040),
            away=rng.randint(7100, 7140),
            competition=rng.randint(90000, 90005),
            referees=referees,
        )

    def _add(self) -> None:
        match = self._new_match()
        self.matches[match.id] = match

    def _commit(self) -> None:
        self.history.append(dict(self.matches))
        self._publish([m.record() for m in sorted(self.matches.values(), key=lambda m: m.id)])

    def _edit(self, change: Callable[[Match], Match]) -> bool:
        if not self.matches:
            return False
        key = self.rng.choice(sorted(self.matches))
        self.matches[key] = change(self.matches[key])
        return True

    def mutate(self, kind: str | None = None) -> str:
        """Apply one mutation (a random one unless `kind`), publish the list, describe it."""
        kind = kind or self.rng.choice(MUTATIONS)
        done = getattr(self, f"_{kind}")()
        if done:
            self._commit()
        return kind if done else f"{kind} (nothing to do)"

    # One method per entry of MUTATIONS; each says whether it changed anything.

    def _added(self) -> bool:
        self._add()
        return True

    def _refill(self) -> bool:
        if self.matches:
            return False
        for _ in range(self.rng.randint(2, 5)):
            self._add()
        return True

    def _removed(self) -> bool:
        if not self.matches:
            return False
        del self.matches[self.rng.choice(sorted(self.matches))]
        return True

    def _cancelled(self) -> bool:
        return self._edit(lambda m: replace(m, cancelled=not m.cancelled))

    def _postponed(self) -> bool:
        return self._edit(lambda m: replace(m, postponed=not m.postponed))

    def _interrupted(self) -> bool:
        return self._edit(lambda m: replace(m, interrupted=not m.interrupted))

    def _time(self) -> bool:
        rng = self.rng
        return self._edit(
            lambda m: replace(m, kickoff=rng.choice([k for k in KICKOFFS if k != m.kickoff]))
        )

    def _date(self) -> bool:
        shift = timedelta(days=self.rng.choice((-2, -1, 1, 3)))
        return self._edit(lambda m: replace(m, day=m.day + shift))

    def _venue(self) -> bool:
        return self._edit(lambda m: replace(m, venue=m.venue + 1))

    def _teams(self) -> bool:
        return self._edit(lambda m: replace(m, home=m.away - 100, away=m.home + 100))

    def _competition(self) -> bool:
        return self._edit(lambda m: replace(m, competition=m.competition + 1))

    def _referee(self) -> bool:
        newcomer = self.rng.randint(20_400, 20_800)

        def change(m: Match) -> Match:
            role = m.referees[0][1] if m.referees else "Dom"
            return replace(m, referees=((newcomer, role), *m.referees[1:]))

        return self._edit(change)

    def _role_swap(self) -> bool:
        return self._edit(_swap_roles)

    def _reorder(self) -> bool:  # the same set of (referee, role) pairs: no change
        return self._edit(lambda m: replace(m, referees=tuple(reversed(m.referees))))

    def _contact(self) -> bool:  # a field that is not compared: no change
        return self._edit(lambda m: replace(m, contact=m.contact + 1))

    def _revert(self) -> bool:  # back to an earlier list
        if len(self.history) < 2:
            return False
        self.matches = dict(self.rng.choice(self.history[-6:-1]))
        return True

    def _flipflop(self) -> bool:  # A -> B -> A: the list before the last one
        if len(self.history) < 2:
            return False
        self.matches = dict(self.history[-2])
        return True

    def _empty(self) -> bool:
        self.matches = {}
        return True


def _swap_roles(match: Match) -> Match:
    """Two referees trade roles: the same people, a different set of (referee, role) pairs."""
    if len(match.referees) < 2:
        return replace(match, referees=tuple((rid, "AD1") for rid, _ in match.referees))
    (a, role_a), (b, role_b), *rest = match.referees
    return replace(match, referees=((a, role_b), (b, role_a), *rest))
