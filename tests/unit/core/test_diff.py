"""Normalisation and comparison of match lists (design notes, section 5)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from controller.core.diff import (
    CATEGORIES,
    FieldChange,
    MatchChange,
    Snapshot,
    Summary,
    Window,
    compare,
    normalise,
    normalise_all,
    sudden_drop,
    summarise,
    window_for,
)
from tests.fakes.fogis.records import make_match, make_referee

DAY = date(2025, 5, 6)
WINDOW = window_for(DAY, 7, 30)
ANNA = make_referee(20001, "Anna Andersson", "Dom")
BO = make_referee(21001, "Bo Berg", "AD1")
CIA = make_referee(22001, "Cia Carlsson", "AD2")


def record(matchid: int = 1, **overrides: Any) -> dict[str, Any]:
    overrides.setdefault("domaruppdraglista", [ANNA, BO, CIA])
    return make_match(matchid, on=DAY, **overrides)


def snapshot(*records: dict[str, Any]) -> Snapshot:
    return Snapshot(normalise_all(records))


# --- window --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("back", "ahead", "start", "end"),
    [
        (7, 365, date(2025, 4, 29), date(2026, 5, 6)),
        (0, 0, DAY, DAY),
        (1, 1, date(2025, 5, 5), date(2025, 5, 7)),
    ],
)
def test_window_for(back: int, ahead: int, start: date, end: date) -> None:
    window = window_for(DAY, back, ahead)
    assert window == Window(start, end)
    assert window.contains(start)
    assert window.contains(end)
    assert not window.contains(date.fromordinal(start.toordinal() - 1))
    assert not window.contains(date.fromordinal(end.toordinal() + 1))


@pytest.mark.parametrize(("back", "ahead"), [(-1, 0), (0, -1)])
def test_window_for_refuses_negative_days(back: int, ahead: int) -> None:
    with pytest.raises(ValueError, match="negative"):
        window_for(DAY, back, ahead)


# --- normalise -----------------------------------------------------------------------------------


def test_normalise_realistic_record() -> None:
    raw = record(
        7, avsparkstid="17:00", anlaggningid=3007, anlaggningnamn="Zinkensdamms IP", installd=1
    )
    assert normalise(raw) == {
        "matchId": "7",
        "matchNumber": "100007",
        "date": "2025-05-06",
        "time": "17:00",
        "venue": {"id": "3007", "name": "Zinkensdamms IP"},
        "homeTeam": {"id": str(raw["lag1lagid"]), "name": raw["lag1namn"]},
        "awayTeam": {"id": str(raw["lag2lagid"]), "name": raw["lag2namn"]},
        "competition": {"id": str(raw["tavlingid"]), "name": raw["tavlingnamn"]},
        "cancelled": True,
        "postponed": False,
        "interrupted": False,
        "referees": [
            {"id": "21001", "name": "Bo Berg", "role": "AD1"},
            {"id": "22001", "name": "Cia Carlsson", "role": "AD2"},
            {"id": "20001", "name": "Anna Andersson", "role": "Dom"},
        ],
    }


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"matchid": None},
        {"matchid": ""},
        {"matchid": "   "},
        {"matchid": True},
        {"matchid": {"id": 1}},
        {"matchid": 1.5},
    ],
)
def test_normalise_without_usable_id_is_none(raw: dict[str, Any]) -> None:
    assert normalise(raw) is None


def test_normalise_tolerates_a_record_that_is_not_an_object() -> None:
    assert normalise("6143001") is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "key", "expected"),
    [
        ({"matchid": "6143001"}, "matchId", "6143001"),
        ({"matchid": 6143001.0}, "matchId", "6143001"),
        ({"matchid": " 42 "}, "matchId", "42"),
        ({"matchid": 1, "matchnr": 123}, "matchNumber", "123"),
        ({"matchid": 1, "matchnr": None}, "matchNumber", None),
        # date: speldatum first, else the Stockholm date of tid
        ({"matchid": 1, "speldatum": "2025-05-06"}, "date", "2025-05-06"),
        ({"matchid": 1, "speldatum": "2025-05-06T00:00:00"}, "date", "2025-05-06"),
        ({"matchid": 1, "speldatum": "igår"}, "date", None),
        ({"matchid": 1, "speldatum": 20250506}, "date", None),
        ({"matchid": 1, "tid": "/Date(1746543600000)/"}, "date", "2025-05-06"),
        # 00:30 in Stockholm is still the previous day in UTC
        ({"matchid": 1, "tid": "/Date(1746484200000)/"}, "date", "2025-05-06"),
        ({"matchid": 1, "speldatum": None, "tid": "/Date(1746543600000)/"}, "date", "2025-05-06"),
        ({"matchid": 1, "tid": "19:00"}, "date", None),
        ({"matchid": 1, "tid": "/Date(999999999999999)/"}, "date", None),
        # time: avsparkstid first, else tid as "/Date(ms)/" or a clock time
        ({"matchid": 1, "avsparkstid": "17:00"}, "time", "17:00"),
        ({"matchid": 1, "avsparkstid": "9:05"}, "time", "09:05"),
        ({"matchid": 1, "avsparkstid": "17:00:00"}, "time", "17:00"),
        ({"matchid": 1, "avsparkstid": "25:00"}, "time", None),
        ({"matchid": 1, "avsparkstid": 1700}, "time", None),
        ({"matchid": 1, "tid": "/Date(1746543600000)/"}, "time", "17:00"),
        ({"matchid": 1, "tid": "/Date(1746543600000+0200)/"}, "time", "17:00"),
        ({"matchid": 1, "tid": "/Date(1736960400000)/"}, "time", "18:00"),  # winter, CET
        ({"matchid": 1, "tid": "19:00"}, "time", "19:00"),
        ({"matchid": 1, "tid": "2025-05-06T19:15:00"}, "time", "19:15"),
        ({"matchid": 1, "avsparkstid": "", "tid": "19:00"}, "time", "19:00"),
        ({"matchid": 1, "tid": ["19:00"]}, "time", None),
        # flags in the shapes different servers send
        ({"matchid": 1, "installd": True}, "cancelled", True),
        ({"matchid": 1, "installd": "true"}, "cancelled", True),
        ({"matchid": 1, "installd": "Ja"}, "cancelled", True),
        ({"matchid": 1, "installd": 1}, "cancelled", True),
        ({"matchid": 1, "installd": "0"}, "cancelled", False),
        ({"matchid": 1, "installd": "false"}, "cancelled", False),
        ({"matchid": 1, "installd": None}, "cancelled", False),
        ({"matchid": 1, "uppskjuten": 1}, "postponed", True),
        ({"matchid": 1, "avbruten": "True"}, "interrupted", True),
        # entities: numbers or strings for ids, anything else is missing
        ({"matchid": 1, "anlaggningid": "3001"}, "venue", {"id": "3001", "name": None}),
        ({"matchid": 1, "anlaggningid": 3001}, "venue", {"id": "3001", "name": None}),
        (
            {"matchid": 1, "lag1lagid": None, "lag1namn": {"sv": "IFK"}},
            "homeTeam",
            {"id": None, "name": None},
        ),
        ({"matchid": 1, "lag2namn": " BK Borta "}, "awayTeam", {"id": None, "name": "BK Borta"}),
        ({"matchid": 1, "tavlingid": [1]}, "competition", {"id": None, "name": None}),
    ],
)
def test_normalise_field(raw: dict[str, Any], key: str, expected: Any) -> None:
    match = normalise(raw)
    assert match is not None
    assert match[key] == expected


@pytest.mark.parametrize(
    ("assignments", "expected"),
    [
        pytest.param(
            [{"domareid": 5, "personid": 9, "personnamn": "A", "domarrollkortnamn": "Dom"}],
            [{"id": "5", "name": "A", "role": "Dom"}],
            id="domareid",
        ),
        pytest.param(
            [{"domareid": None, "personid": 9, "personnamn": "A", "domarrollnamn": "Huvuddomare"}],
            [{"id": "9", "name": "A", "role": "Huvuddomare"}],
            id="personid-and-long-role-name",
        ),
        pytest.param(
            [{"namn": "Anna A", "roll": "Dom"}],
            [{"id": "Anna A", "name": "Anna A", "role": "Dom"}],
            id="name-only",
        ),
        pytest.param([{"domarrollkortnamn": "AD1"}], [], id="slot-naming-nobody"),
        pytest.param("not a list", [], id="not-a-list"),
        pytest.param(None, [], id="missing"),
        pytest.param(
            ["x", None, {"domareid": "7", "domarrollkortnamn": "AD2"}],
            [{"id": "7", "name": None, "role": "AD2"}],
            id="odd-entries-skipped",
        ),
        pytest.param(
            [
                {"domareid": 3, "domarrollkortnamn": "Dom"},
                {"domareid": 2, "domarrollkortnamn": "AD2"},
                {"domareid": 1, "domarrollkortnamn": "AD1"},
            ],
            [
                {"id": "1", "name": None, "role": "AD1"},
                {"id": "2", "name": None, "role": "AD2"},
                {"id": "3", "name": None, "role": "Dom"},
            ],
            id="sorted",
        ),
    ],
)
def test_normalise_referees(assignments: Any, expected: list[dict[str, Any]]) -> None:
    match = normalise({"matchid": 1, "domaruppdraglista": assignments})
    assert match is not None
    assert match["referees"] == expected


def test_normalise_all_keys_by_id_and_drops_records_without_one() -> None:
    matches = normalise_all([record(1), {"matchnr": "x"}, record(2), record(1, matchnr="again")])
    assert list(matches) == ["1", "2"]
    assert matches["1"]["matchNumber"] == "again"


# --- compare: one changed match ------------------------------------------------------------------


def _swap_roles() -> list[dict[str, Any]]:
    return [ANNA, {**BO, "domarrollkortnamn": "AD2"}, {**CIA, "domarrollkortnamn": "AD1"}]


@pytest.mark.parametrize(
    ("old", "new", "categories", "fields"),
    [
        pytest.param({}, {"installd": True}, ("cancelled",), {"cancelled"}, id="cancelled"),
        pytest.param({"installd": True}, {}, ("uncancelled",), {"cancelled"}, id="uncancelled"),
        pytest.param({}, {"uppskjuten": True}, ("postponed",), {"postponed"}, id="postponed"),
        pytest.param({"uppskjuten": 1}, {}, ("unpostponed",), {"postponed"}, id="unpostponed"),
        pytest.param({}, {"avbruten": True}, ("interrupted",), {"interrupted"}, id="interrupted"),
        pytest.param(
            {"avbruten": "true"}, {}, ("uninterrupted",), {"interrupted"}, id="uninterrupted"
        ),
        pytest.param({}, {"speldatum": "2025-05-09"}, ("date_change",), {"date"}, id="date_change"),
        pytest.param({}, {"avsparkstid": "17:30"}, ("time_change",), {"time"}, id="time_change"),
        pytest.param(
            {"avsparkstid": "00:30"},
            {"speldatum": "2025-05-07", "avsparkstid": "00:15"},
            ("date_change", "time_change"),
            {"date", "time"},
            id="date-and-time",
        ),
        pytest.param({}, {"anlaggningid": 1}, ("venue_change",), {"venue"}, id="venue_change"),
        pytest.param(
            {"anlaggningid": None, "anlaggningnamn": "Gamla IP"},
            {"anlaggningid": None, "anlaggningnamn": "Nya IP"},
            ("venue_change",),
            {"venue"},
            id="venue-without-ids-compares-names",
        ),
        pytest.param({}, {"lag1lagid": 1}, ("team_change",), {"homeTeam"}, id="home-team"),
        pytest.param({}, {"lag2lagid": 1}, ("team_change",), {"awayTeam"}, id="away-team"),
        pytest.param(
            {"lag1lagid": 1, "lag2lagid": 2},
            {"lag1lagid": 2, "lag2lagid": 1},
            ("team_change",),
            {"homeTeam", "awayTeam"},
            id="home-and-away-swapped",
        ),
        pytest.param(
            {}, {"tavlingid": 1}, ("competition_change",), {"competition"}, id="competition"
        ),
        pytest.param(
            {},
            {"domaruppdraglista": [ANNA, BO, make_referee(23001, "Dan Dahl", "AD2")]},
            ("referee_change",),
            {"referees"},
            id="referee-replaced",
        ),
        pytest.param(
            {},
            {"domaruppdraglista": [ANNA, BO]},
            ("referee_change",),
            {"referees"},
            id="referee-unassigned",
        ),
        pytest.param(
            {}, {"domaruppdraglista": _swap_roles()}, ("referee_change",), {"referees"}, id="swap"
        ),
        pytest.param(
            {},
            {"installd": True, "avsparkstid": "15:00", "domaruppdraglista": [ANNA]},
            ("cancelled", "time_change", "referee_change"),
            {"cancelled", "time", "referees"},
            id="several-at-once",
        ),
    ],
)
def test_compare_changed_match(
    old: dict[str, Any], new: dict[str, Any], categories: tuple[str, ...], fields: set[str]
) -> None:
    before, after = snapshot(record(**old)), snapshot(record(**new))
    [change] = compare(before, after, WINDOW)
    assert change.type == "changed"
    assert change.match_id == "1"
    assert change.match_number == "100001"
    assert change.categories == categories
    assert set(change.fields) == fields
    for name, value in change.fields.items():
        assert value == FieldChange(before.matches["1"][name], after.matches["1"][name])
    assert change.match == after.matches["1"]


@pytest.mark.parametrize(
    "new",
    [
        pytest.param({"domaruppdraglista": [CIA, ANNA, BO]}, id="referees-reordered"),
        pytest.param(
            {"domaruppdraglista": [{**ANNA, "personnamn": "Anna Andersson-Ek"}, BO, CIA]},
            id="referee-renamed-same-id",
        ),
        pytest.param(
            {"domaruppdraglista": [{**ANNA, "mobiltelefon": "073-1"}, BO, CIA]},
            id="referee-contact-details",
        ),
        pytest.param({"anlaggningnamn": "Renamed Arena"}, id="venue-renamed-same-id"),
        pytest.param({"lag1namn": "IF Hemma (ny)"}, id="team-renamed-same-id"),
        pytest.param({"tavlingnamn": "Div 4 herrar"}, id="competition-renamed-same-id"),
        pytest.param({"matchlag1mal": 3, "matchlag2mal": 0}, id="result"),
        pytest.param({"antalaskadare": 412}, id="spectators"),
        pytest.param({"matchrapportgodkandavdomare": True}, id="report-approval"),
        pytest.param({"kontaktpersoner": []}, id="contacts"),
        pytest.param({"matchnr": "999999"}, id="match-number"),
        pytest.param({"installd": "false", "uppskjuten": 0, "avbruten": None}, id="flag-shapes"),
        pytest.param({"tid": "/Date(1736960400000)/"}, id="tid-disagrees-with-speldatum"),
        pytest.param(
            {"speldatum": None, "avsparkstid": None, "tid": "/Date(1746550800000)/"},
            id="same-kickoff-only-in-tid",
        ),
        pytest.param({"matchid": "1", "lag1lagid": "7001"}, id="numbers-as-strings"),
    ],
)
def test_compare_ignores(new: dict[str, Any]) -> None:
    old = record(lag1lagid=7001)
    new = {**old, **new}
    assert compare(snapshot(old), snapshot(new), WINDOW) == []


def test_compare_a_field_going_missing_is_a_change() -> None:
    before = snapshot(record())
    after = snapshot(record(speldatum=None, tid=None))
    [change] = compare(before, after, WINDOW)
    assert change.categories == ("date_change",)
    assert change.fields == {"date": FieldChange("2025-05-06", None)}


# --- compare: new and removed matches ------------------------------------------------------------


@pytest.mark.parametrize(
    ("gone", "expected"),
    [
        pytest.param(record(9), ["removed"], id="inside-window"),
        pytest.param(record(9, speldatum=WINDOW.start.isoformat()), ["removed"], id="first-day"),
        pytest.param(record(9, speldatum=WINDOW.end.isoformat()), ["removed"], id="last-day"),
        pytest.param(record(9, speldatum="2025-04-28"), [], id="slid-out-before"),
        pytest.param(record(9, speldatum="2025-06-06"), [], id="beyond-window"),
        pytest.param(
            record(9, speldatum=None, avsparkstid=None, tid=None), ["removed"], id="no-date"
        ),
    ],
)
def test_compare_removed_only_inside_window(gone: dict[str, Any], expected: list[str]) -> None:
    changes = compare(snapshot(record(1), gone), snapshot(record(1)), WINDOW)
    assert [c.type for c in changes] == expected
    for change in changes:
        assert change.categories == ("removed",)
        assert change.fields == {}
        assert change.match == normalise(gone)


def test_compare_new_assignment() -> None:
    added = record(5, speldatum="2025-05-20")
    [change] = compare(snapshot(record(1)), snapshot(record(1), added), WINDOW)
    assert change == MatchChange(
        type="new",
        match_id="5",
        match_number="100005",
        categories=("new_assignment",),
        fields={},
        match=normalise(added) or {},
    )


def test_compare_identical_and_empty() -> None:
    both = snapshot(record(1), record(2))
    assert compare(both, both, WINDOW) == []
    assert compare(Snapshot(), Snapshot(), WINDOW) == []


def test_compare_orders_by_date_time_then_id() -> None:
    old = snapshot(record(1, speldatum="2025-05-10"), record(2, speldatum="2025-05-08"))
    new = snapshot(
        record(1, speldatum="2025-05-10", installd=True),
        record(3, speldatum="2025-05-08", avsparkstid="18:00"),
        record(4, speldatum="2025-05-08", avsparkstid="12:00"),
        record(10, speldatum="2025-05-08", avsparkstid="12:00"),
    )
    changes = compare(old, new, WINDOW)
    assert [(c.match_id, c.type) for c in changes] == [
        ("10", "new"),
        ("4", "new"),
        ("3", "new"),
        ("2", "removed"),
        ("1", "changed"),
    ]
    assert compare(old, new, WINDOW) == changes


def test_categories_cover_every_rule() -> None:
    assert len(set(CATEGORIES)) == len(CATEGORIES) == 14
    assert {"new_assignment", "removed", "referee_change"} <= set(CATEGORIES)


# --- summary -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        ([], Summary(0, 0, 0)),
        (["new", "new", "removed"], Summary(2, 1, 0)),
        (["changed", "removed", "changed", "new"], Summary(1, 1, 2)),
    ],
)
def test_summarise(types: list[str], expected: Summary) -> None:
    changes = [MatchChange(t, str(i), None, (), {}, {}) for i, t in enumerate(types)]
    assert summarise(changes) == expected
    assert expected.total == len(types)


# --- snapshots -----------------------------------------------------------------------------------


def test_snapshot_round_trip_and_digest() -> None:
    original = snapshot(record(1), record(2, installd=True), record(3, domaruppdraglista=[]))
    original = Snapshot(original.matches, revision=7)
    text = original.to_json()
    restored = Snapshot.from_json(text)
    assert restored == original
    assert restored.revision == 7
    assert restored.digest == original.digest
    assert restored.to_json() == text
    assert json.loads(text)["format"] == 1
    assert text == json.dumps(
        json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def test_snapshot_in_doubt_round_trip() -> None:
    original = snapshot(record(1))
    sent = {"1": (None,), "2": (normalise(record(2)), normalise(record(2, avsparkstid="21:00")))}
    in_doubt = Snapshot(original.matches, 3, sent)
    assert Snapshot.from_json(in_doubt.to_json()) == in_doubt
    assert in_doubt.digest == original.digest  # what was sent is not what was accepted
    assert "inDoubt" not in original.to_json()
    # A snapshot written before several values were kept reads as one value per match.
    single = '{"format": 1, "matches": {}, "revision": 1, "inDoubt": {"1": null}}'
    assert Snapshot.from_json(single).in_doubt == {"1": (None,)}


def test_snapshot_without_revision_reads_as_revision_zero() -> None:
    """Snapshots written before revisions existed stay readable."""
    assert Snapshot.from_json(_stored()).revision == 0


def test_snapshot_digest_ignores_insertion_order_and_sees_content() -> None:
    a, b = normalise(record(1)) or {}, normalise(record(2)) or {}
    assert Snapshot({"1": a}, revision=1).digest == Snapshot({"1": a}, revision=2).digest
    assert Snapshot({"1": a, "2": b}).digest == Snapshot({"2": b, "1": a}).digest
    assert Snapshot({"1": a, "2": b}).to_json() == Snapshot({"2": b, "1": a}).to_json()
    assert Snapshot({"1": a}).digest != Snapshot({"1": a, "2": b}).digest
    assert len(Snapshot().digest) == 64


def _stored(**change: Any) -> str:
    match = {**(normalise(record(1)) or {}), **change}
    return json.dumps({"format": 1, "matches": {"1": match}})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not valid JSON"),
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"matches": {}}', "format None is not supported"),
        ('{"format": 2, "matches": {}}', "format 2 is not supported"),
        ('{"format": 1}', "no matches object"),
        ('{"format": 1, "matches": []}', "no matches object"),
        ('{"format": 1, "matches": {"1": "x"}}', "match '1' is corrupt: fields"),
        (_stored(matchId="2"), "matchId differs"),
        (_stored(extra=1), "fields must be exactly"),
        (_stored(date=20250506), "must be strings or null"),
        (_stored(venue={"id": 1, "name": "x"}), "must be {id, name} objects"),
        (_stored(homeTeam=None), "must be {id, name} objects"),
        (_stored(cancelled="no"), "must be booleans"),
        (_stored(referees={}), "referees must be a list"),
        (_stored(referees=[{"id": "1", "name": None}]), "referees must be a list"),
        ('{"format": 1, "revision": -1, "matches": {}}', "revision -1 is not"),
        ('{"format": 1, "revision": "3", "matches": {}}', "revision '3' is not"),
        ('{"format": 1, "revision": true, "matches": {}}', "revision True is not"),
        ('{"format": 1, "matches": {}, "inDoubt": []}', "inDoubt must be an object"),
        ('{"format": 1, "matches": {}, "inDoubt": {"1": 5}}', "inDoubt match '1' is corrupt"),
    ],
)
def test_snapshot_from_corrupt_json(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="snapshot") as caught:
        Snapshot.from_json(text)
    assert message in str(caught.value)


def test_lone_surrogates_become_replacement_characters() -> None:
    """.NET can cut a string inside an emoji; JSON then carries half a surrogate pair."""
    raw = json.loads(
        json.dumps(record(1, lag1namn="IF Hemma \ud83d", anlaggningnamn="Arena \ud83d\ude00"))
    )
    match = normalise(raw) or {}
    assert match["homeTeam"]["name"] == "IF Hemma \ufffd"
    assert match["venue"]["name"] == "Arena \U0001f600"  # a whole pair is a real emoji
    stored = Snapshot({"1": match})
    assert len(stored.digest) == 64
    assert Snapshot.from_json(stored.to_json()) == stored
    stored.to_json().encode("utf-8")  # what the snapshot ConfigMap and webhook bodies need


def test_snapshot_nested_too_deeply_is_corrupt_not_a_crash() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        Snapshot.from_json("[" * 100_000)


@pytest.mark.parametrize(
    ("held", "kept", "sudden"),
    [
        (1, 0, False),  # a referee's only match removed: a real change, reported at once
        (2, 0, True),  # everything, at least two
        (14, 0, True),
        (4, 1, True),  # three quarters
        (14, 4, False),  # ten of fourteen: less than three quarters
        (14, 3, True),
        (14, 12, False),  # the off-season empties a list gradually
        (3, 1, False),  # two removed: fewer than three
    ],
)
def test_sudden_drop(held: int, kept: int, sudden: bool) -> None:
    old = snapshot(*(record(i) for i in range(1, held + 1)))
    new = snapshot(*(record(i) for i in range(1, kept + 1)))
    assert sudden_drop(old, compare(old, new, WINDOW), WINDOW) is sudden


def test_matches_that_slid_out_of_the_window_are_no_sudden_drop() -> None:
    old = snapshot(*(record(i, speldatum="2020-01-01") for i in range(1, 10)), record(99))
    new = snapshot(record(99))
    assert not sudden_drop(old, compare(old, new, WINDOW), WINDOW)


def test_a_repeated_match_id_resolves_the_same_way_in_any_order() -> None:
    """Found by the reorder property: the winner of a repeated id must not depend on order."""
    first, second = record(7, avsparkstid="18:00"), record(7, avsparkstid="20:00")
    assert snapshot(first, second) == snapshot(second, first)
    assert len(snapshot(first, second).matches) == 1
