"""The short text a person gets on their phone for one change set: one line per change, the
categories in words. Pure, table-tested (tests/unit/core/test_message.py).

    IFK Göteborg – BK Häcken moved 18:30 → 19:45 (Sat 6 Dec, Valhalla IP)
"""  # noqa: RUF002 - the en dash between the teams is meant (typography, not a typo)

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from controller.core.diff import MatchChange

# Flags turning on or off, in words.
_FLAGS = {
    "cancelled": "cancelled",
    "uncancelled": "no longer cancelled",
    "postponed": "postponed",
    "unpostponed": "no longer postponed",
    "interrupted": "interrupted",
    "uninterrupted": "no longer interrupted",
}
# At most this many lines: chat services cut long messages, and a phone screen is small.
MAX_LINES = 20


def _name(entity: Any, fallback: str = "?") -> str:
    return str(entity.get("name") or fallback) if isinstance(entity, Mapping) else fallback


def _day(value: Any) -> str | None:
    """`2026-12-06` → `Sat 6 Dec` (English names whatever the locale)."""
    try:
        day = date.fromisoformat(str(value))
    except ValueError:
        return None
    return f"{day.strftime('%a')} {day.day} {day.strftime('%b')}"


def _when(day: Any, time: Any) -> str:
    return " ".join(part for part in (_day(day), time if isinstance(time, str) else None) if part)


def _referees(value: Any) -> str:
    if not isinstance(value, list) or not value:
        return "none"
    return ", ".join(
        f"{_name(r)} ({r['role']})" if r.get("role") else _name(r)
        for r in value
        if isinstance(r, Mapping)
    )


def _what(change: MatchChange) -> list[str]:
    if change.type == "new":
        return [
            "new assignment" + (f" at {change.match['time']}" if change.match.get("time") else "")
        ]
    if change.type == "removed":
        return ["no longer on your list"]
    fields, parts = change.fields, []
    if "date" in fields or "time" in fields:
        old, new = fields.get("date"), fields.get("time")
        before = _when(old.old if old else None, new.old if new else None)
        after = _when(old.new if old else None, new.new if new else None)
        parts.append(f"moved {before or '?'} → {after or '?'}")
    parts += [_FLAGS[c] for c in change.categories if c in _FLAGS]
    if "venue" in fields:
        parts.append(f"venue {_name(fields['venue'].old)} → {_name(fields['venue'].new)}")
    if "homeTeam" in fields or "awayTeam" in fields:
        parts.append("teams changed")
    if "competition" in fields:
        old, new = fields["competition"].old, fields["competition"].new
        parts.append(f"competition {_name(old)} → {_name(new)}")
    if "referees" in fields:
        parts.append(f"referees now {_referees(fields['referees'].new)}")
    return parts


def line(change: MatchChange) -> str:
    match = change.match
    teams = f"{_name(match.get('homeTeam'))} – {_name(match.get('awayTeam'))}"  # noqa: RUF001 - an en dash, as in print
    where = ", ".join(
        part for part in (_day(match.get("date")), _name(match.get("venue"), "")) if part
    )
    return f"{teams} {', '.join(_what(change))}" + (f" ({where})" if where else "")


def compose(changes: Sequence[MatchChange]) -> tuple[str, str]:
    """(title, body) for one change set."""
    count = len(changes)
    title = f"Match list: {count} change{'s' if count != 1 else ''}"
    lines = [line(change) for change in changes[:MAX_LINES]]
    if count > MAX_LINES:
        lines.append(f"... and {count - MAX_LINES} more")
    return title, "\n".join(lines)
