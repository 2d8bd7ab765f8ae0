"""The change document sent to webhooks and printed by run-once (design notes, section 6)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controller.core.diff import (
    FieldChange,
    MatchChange,
    Snapshot,
    compare,
    normalise_all,
    window_for,
)
from controller.core.model import WatcherRef
from controller.core.report import build_report, delivery_id, encode_report, rfc3339
from tests.fakes.fogis.records import make_match

WATCHER = WatcherRef(namespace="referees", name="anna", uid="6f1c1f55-0c9e-4a43-9d0a-2f4d1c9b7e10")
DETECTED = datetime(2026, 11, 28, 10, 0, 5, 123456, tzinfo=UTC)
DAY = date(2026, 12, 5)


def _changes() -> list[MatchChange]:
    old = Snapshot(normalise_all([make_match(1, on=DAY), make_match(2, on=DAY)]))
    new = Snapshot(
        normalise_all(
            [
                make_match(1, on=DAY, installd=True, lag1namn="Hammarby IF"),
                make_match(3, on=DAY, anlaggningnamn="Österängens IP"),
            ]
        )
    )
    return compare(old, new, window_for(DAY, 7, 30))


def _report(trigger: str = "schedule", changes: list[MatchChange] | None = None) -> dict[str, Any]:
    return build_report(
        watcher=WATCHER,
        delivery_id="d-1",
        detected_at=DETECTED,
        trigger=trigger,
        changes=_changes() if changes is None else changes,
    )


@pytest.mark.parametrize(
    ("other", "same"),
    [
        ((WATCHER.uid, 3, "a" * 64, "b" * 64), True),
        (("another-uid", 3, "a" * 64, "b" * 64), False),
        ((WATCHER.uid, 3, "c" * 64, "b" * 64), False),
        ((WATCHER.uid, 3, "a" * 64, "c" * 64), False),
        ((WATCHER.uid, 3, "b" * 64, "a" * 64), False),
        ((WATCHER.uid, 5, "a" * 64, "b" * 64), False),  # the same lists, a later transition
    ],
)
def test_delivery_id_is_deterministic_per_transition(
    other: tuple[str, int, str, str], same: bool
) -> None:
    first = delivery_id(WATCHER.uid, 3, "a" * 64, "b" * 64)
    assert uuid.UUID(first).version == 5
    assert (delivery_id(*other) == first) is same


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (DETECTED, "2026-11-28T10:00:05Z"),
        (datetime(2026, 7, 1, 12, 0, tzinfo=ZoneInfo("Europe/Stockholm")), "2026-07-01T10:00:00Z"),
        (datetime(2026, 1, 1, 0, 30, tzinfo=ZoneInfo("Europe/Stockholm")), "2025-12-31T23:30:00Z"),
    ],
)
def test_rfc3339_is_utc_with_z(moment: datetime, expected: str) -> None:
    assert rfc3339(moment) == expected


def test_naive_detection_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_report(
            watcher=WATCHER,
            delivery_id="d",
            detected_at=datetime(2026, 1, 1),
            trigger="manual",
            changes=[],
        )


def test_report_document() -> None:
    report = _report()
    assert {k: v for k, v in report.items() if k != "changes"} == {
        "apiVersion": "matchlist.io/v1alpha1",
        "kind": "MatchListChanged",
        "id": "d-1",
        "watcher": {"namespace": "referees", "name": "anna", "uid": WATCHER.uid},
        "detectedAt": "2026-11-28T10:00:05Z",
        "trigger": "schedule",
        "summary": {"new": 1, "removed": 1, "changed": 1, "total": 3},
    }
    changes = report["changes"]
    assert isinstance(changes, list)
    assert [(c["type"], c["matchId"], c["categories"]) for c in changes] == [
        ("changed", "1", ["cancelled"]),
        ("removed", "2", ["removed"]),
        ("new", "3", ["new_assignment"]),
    ]
    changed, removed, added = changes
    assert changed["matchNumber"] == "100001"
    assert changed["fields"] == {"cancelled": {"old": False, "new": True}}
    assert changed["match"]["homeTeam"]["name"] == "Hammarby IF"
    assert removed["fields"] == {}
    assert removed["match"]["matchId"] == "2"
    assert added["match"]["venue"]["name"] == "Österängens IP"


@pytest.mark.parametrize("trigger", ["schedule", "manual", "run-once"])
def test_report_triggers(trigger: str) -> None:
    assert _report(trigger, [])["trigger"] == trigger


def test_report_refuses_unknown_trigger() -> None:
    with pytest.raises(ValueError, match="trigger must be one of"):
        _report("cron", [])


def test_empty_report_has_zero_summary() -> None:
    report = _report(changes=[])
    assert report["summary"] == {"new": 0, "removed": 0, "changed": 0, "total": 0}
    assert report["changes"] == []


def test_field_values_of_any_json_shape() -> None:
    change = MatchChange(
        type="changed",
        match_id="9",
        match_number=None,
        categories=("venue_change",),
        fields={"venue": FieldChange({"id": "1", "name": "A"}, {"id": "2", "name": None})},
        match={"matchId": "9"},
    )
    [document] = _report(changes=[change])["changes"]
    assert document == {
        "type": "changed",
        "matchId": "9",
        "matchNumber": None,
        "categories": ["venue_change"],
        "fields": {"venue": {"old": {"id": "1", "name": "A"}, "new": {"id": "2", "name": None}}},
        "match": {"matchId": "9"},
    }


def test_encoding_is_compact_utf8_and_deterministic() -> None:
    report = _report()
    body = encode_report(report)
    assert json.loads(body) == report
    assert "Österängens IP".encode() in body
    assert b"\\u00d6" not in body
    compact = json.dumps(report, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert body == compact.encode()
    shuffled = dict(reversed(list(report.items())))
    assert encode_report(shuffled) == body
    assert encode_report(_report()) == body
