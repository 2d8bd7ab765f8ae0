"""The text people get for a change set: one line per change, categories in words."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.diff import FieldChange, MatchChange
from controller.core.message import MAX_LINES, compose, line

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


def changed(categories: tuple[str, ...], **fields: tuple[Any, Any]) -> MatchChange:
    return MatchChange(
        "changed",
        "1",
        "101",
        categories,
        {name: FieldChange(old, new) for name, (old, new) in fields.items()},
        MATCH,
    )


@pytest.mark.parametrize(
    ("change", "text"),
    [
        (MatchChange("new", "1", "101", ("new_assignment",), {}, MATCH),
         "IFK Göteborg – BK Häcken new assignment at 19:45 (Sun 6 Dec, Valhalla IP)"),
        (MatchChange("removed", "1", "101", ("removed",), {}, MATCH),
         "IFK Göteborg – BK Häcken no longer on your list (Sun 6 Dec, Valhalla IP)"),
        (changed(("time_change",), time=("18:30", "19:45")),
         "IFK Göteborg – BK Häcken moved 18:30 → 19:45 (Sun 6 Dec, Valhalla IP)"),
        (changed(("date_change", "time_change"), date=("2026-12-05", "2026-12-06"),
                 time=("18:30", "19:45")),
         "IFK Göteborg – BK Häcken moved Sat 5 Dec 18:30 → Sun 6 Dec 19:45 "
         "(Sun 6 Dec, Valhalla IP)"),
        (changed(("cancelled",), cancelled=(False, True)),
         "IFK Göteborg – BK Häcken cancelled (Sun 6 Dec, Valhalla IP)"),
        (changed(("uncancelled", "venue_change"), cancelled=(True, False),
                 venue=({"name": "Ullevi"}, {"name": "Valhalla IP"})),
         "IFK Göteborg – BK Häcken no longer cancelled, venue Ullevi → Valhalla IP "
         "(Sun 6 Dec, Valhalla IP)"),
        (changed(("referee_change",), referees=([], MATCH["referees"])),
         "IFK Göteborg – BK Häcken referees now Anna A (Dom) (Sun 6 Dec, Valhalla IP)"),
        (changed(("competition_change", "team_change"),
                 competition=({"name": "Div 1"}, {"name": "Allsvenskan"}),
                 homeTeam=({"name": "GAIS"}, {"name": "IFK Göteborg"})),
         "IFK Göteborg – BK Häcken teams changed, competition Div 1 → Allsvenskan "
         "(Sun 6 Dec, Valhalla IP)"),
        # Whatever FOGIS left out, a line still comes out.
        (MatchChange("new", "2", None, ("new_assignment",), {},
                     {**MATCH, "date": None, "time": None, "venue": {}, "homeTeam": None}),
         "? – BK Häcken new assignment"),
    ],
)  # fmt: skip
def test_line(change: MatchChange, text: str) -> None:
    assert line(change) == text


def test_compose_counts_and_caps_lines() -> None:
    one = MatchChange("new", "1", "101", ("new_assignment",), {}, MATCH)
    assert compose([one])[0] == "Match list: 1 change"
    title, body = compose([one] * (MAX_LINES + 3))
    assert title == f"Match list: {MAX_LINES + 3} changes"
    assert body.splitlines()[-1] == "... and 3 more"
    assert len(body.splitlines()) == MAX_LINES + 1
