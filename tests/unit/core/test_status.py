"""The status a run writes, and the Ready condition's transition rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.core.diff import Summary
from controller.core.status import (
    MAX_HISTORY,
    HistoryEntry,
    Readiness,
    ReadyCondition,
    RunRecord,
    WatcherStatus,
    WebhookState,
    conditions_with,
    history_after,
    parse_timestamp,
    run_started,
    status_after_run,
    status_seen,
    timestamp,
)
from controller.core.trigger import Manual, Scheduled

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=2)
OK = Readiness(True, "Succeeded", "fine")


def record(**changes: Any) -> RunRecord:
    base: dict[str, Any] = {
        "trigger": Scheduled(T0),
        "started": T0,
        "finished": T1,
        "readiness": OK,
        "error": None,
        "match_count": 14,
        "summary": Summary(new=1, removed=0, changed=2),
        "delivered": True,
        "webhook": None,
    }
    return RunRecord(**{**base, **changes})


@pytest.mark.parametrize(
    ("previous", "readiness", "transition"),
    [
        ([], OK, "2026-11-28T10:00:02Z"),
        # Same status: the transition time stays, reason and message move on.
        (
            [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            OK,
            "2026-01-01T00:00:00Z",
        ),
        # Status flips: the transition time is now.
        (
            [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            OK,
            "2026-11-28T10:00:02Z",
        ),
    ],
)
def test_ready_transition_time(
    previous: list[dict[str, Any]], readiness: Readiness, transition: str
) -> None:
    conditions = conditions_with(WatcherStatus.parse({"conditions": previous}), readiness, T1, 3)
    assert conditions == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Succeeded",
            "message": "fine",
            "lastTransitionTime": transition,
            "observedGeneration": 3,
        }
    ]


def test_other_conditions_are_kept() -> None:
    other = {"type": "Other", "status": "True"}
    assert conditions_with(WatcherStatus.parse({"conditions": [other]}), OK, T1, None)[0] == other


def test_successful_scheduled_run() -> None:
    patch = status_after_run(
        WatcherStatus.parse({"executionCount": 41, "changeCount": 6}), record(),
        next_time=T0 + timedelta(hours=1), generation=3,
    )  # fmt: skip
    assert patch["executionCount"] == 42
    assert patch["changeCount"] == 9
    assert patch["lastChange"] == {"time": "2026-11-28T10:00:02Z", "new": 1, "removed": 0,
                                   "changed": 2}  # fmt: skip
    assert patch["lastScheduleTime"] == "2026-11-28T10:00:00Z"
    assert patch["lastExecutionTime"] == "2026-11-28T10:00:00Z"
    assert patch["lastSuccessfulTime"] == "2026-11-28T10:00:02Z"
    assert patch["nextExecutionTime"] == "2026-11-28T11:00:00Z"
    assert patch["lastError"] is None
    assert patch["matchCount"] == 14
    assert "lastHandledTrigger" not in patch


def test_failed_manual_run_counts_no_changes_and_keeps_last_success() -> None:
    failure = record(
        trigger=Manual("2026-11-28T10:00:00Z"),
        readiness=Readiness(False, "WebhookFailing", "webhook answered 503"),
        error="webhook answered 503",
        delivered=False,
        webhook=WebhookState(None, 503, 2, 3, None),
    )
    patch = status_after_run(
        WatcherStatus.parse({"changeCount": 6}), failure, next_time=None, generation=1
    )
    assert "changeCount" not in patch  # undelivered changes are counted once, when accepted
    assert "lastChange" not in patch
    assert "lastSuccessfulTime" not in patch
    assert "lastScheduleTime" not in patch
    assert patch["lastHandledTrigger"] == "2026-11-28T10:00:00Z"
    assert patch["lastError"] == "webhook answered 503"
    assert patch["nextExecutionTime"] is None
    assert patch["webhook"] == {
        "lastDeliveryTime": None,
        "lastStatusCode": 503,
        "consecutiveFailures": 2,
        "pendingChanges": 3,
        "lastDeliveryId": None,
        "goneFor": None,
    }


def test_seen_status() -> None:
    patch = status_seen(
        WatcherStatus(), Readiness(True, "Scheduled", "next"), now=T0, next_time=T1, generation=2
    )
    assert patch["nextExecutionTime"] == "2026-11-28T10:00:02Z"
    assert patch["observedGeneration"] == 2
    assert patch["conditions"][0]["reason"] == "Scheduled"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-28T10:00:00Z", T0),
        ("2026-11-28T11:00:00+01:00", T0),
        ("2026-11-28T10:00:00", T0),
        ("yesterday", None),
        (None, None),
        (42, None),
    ],
)
def test_parse_timestamp(value: Any, expected: datetime | None) -> None:
    assert parse_timestamp(value) == expected
    if expected is not None:
        assert timestamp(parse_timestamp(value)) == "2026-11-28T10:00:00Z"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, WatcherStatus()),
        ("not a map", WatcherStatus()),
        # Hand-edited junk counts as absent instead of failing every later step.
        (
            {"executionCount": "many", "changeCount": True, "matchCount": 1.5,
             "lastScheduleTime": "soon", "lastHandledTrigger": 7, "conditions": "Ready",
             "webhook": [], "lastScheduleOf": "0 * * * *"},
            WatcherStatus(),
        ),
        (
            {"executionCount": 3, "changeCount": 9, "matchCount": 14,
             "observedGeneration": 2,
             "lastScheduleTime": "2026-11-28T10:00:00Z",
             "lastSuccessfulTime": "2026-11-28T10:00:02Z",
             "lastHandledTrigger": "t1",
             "lastScheduleOf": {"schedule": "0 * * * *", "timeZone": "Europe/Stockholm"},
             "conditions": [{"type": "Other"}, {"type": "Ready", "status": "False",
                             "reason": "LoginFailed", "message": "no",
                             "lastTransitionTime": "2026-11-28T09:00:00Z"}],
             "webhook": {"pendingChanges": 2, "consecutiveFailures": 1, "lastStatusCode": 503}},
            WatcherStatus(
                observed_generation=2,
                ready=ReadyCondition(False, "LoginFailed", "no", "2026-11-28T09:00:00Z"),
                other_conditions=({"type": "Other"},),
                last_schedule_time=T0,
                last_schedule_of=("0 * * * *", "Europe/Stockholm"),
                last_handled_trigger="t1",
                last_successful_time=T1,
                execution_count=3,
                change_count=9,
                match_count=14,
                webhook=WebhookState(None, 503, 1, 2, None),
            ),
        ),
    ],
)  # fmt: skip
def test_status_is_parsed_once_and_junk_counts_as_absent(raw: Any, expected: WatcherStatus) -> None:
    assert WatcherStatus.parse(raw) == expected


def test_a_finished_run_removes_reconciling_and_stalled_and_keeps_others() -> None:
    previous = WatcherStatus.parse(
        {
            "conditions": [
                {"type": "Other", "status": "True"},
                {"type": "Stalled", "status": "True", "reason": "InvalidSchedule"},
                {"type": "Reconciling", "status": "True", "reason": "Running"},
            ]
        }
    )
    patch = status_after_run(previous, record(), next_time=None, generation=3)
    assert [c["type"] for c in patch["conditions"]] == ["Other", "Ready"]


def test_a_run_start_sets_reconciling_and_keeps_ready() -> None:
    previous = WatcherStatus.parse(
        {"conditions": [{"type": "Ready", "status": "False", "reason": "LoginFailed",
                         "message": "no", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    )  # fmt: skip
    conditions = run_started(previous, "manual run", now=T1, generation=2)["conditions"]
    assert [(c["type"], c["status"], c["reason"]) for c in conditions] == [
        ("Reconciling", "True", "Running"),
        ("Ready", "False", "LoginFailed"),
    ]
    assert conditions[1]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert conditions[0]["message"] == "manual run in progress"


def entry(delivery_id: str, *, delivered: bool = True, minute: int = 0) -> HistoryEntry:
    return HistoryEntry(
        T0 + timedelta(minutes=minute), "schedule", delivery_id, 1, 0, 0, ("new_assignment",),
        delivered,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("previous", "added", "expected"),
    [
        ((), entry("a"), ("a",)),
        ((entry("a"), entry("b")), entry("c"), ("a", "b", "c")),
        # A pending change set delivered later is one entry, not two.
        ((entry("a"), entry("b", delivered=False)), entry("b", minute=5), ("a", "b")),
        # Bounded: the oldest go.
        (tuple(entry(str(i)) for i in range(MAX_HISTORY)), entry("new"),
         (*(str(i) for i in range(1, MAX_HISTORY)), "new")),
    ],
)  # fmt: skip
def test_history_after(
    previous: tuple[HistoryEntry, ...], added: HistoryEntry, expected: tuple[str, ...]
) -> None:
    history = history_after(previous, added)
    assert tuple(e.delivery_id for e in history) == expected
    assert history[-1] == added


def test_a_delivery_settles_the_pending_change_sets_it_includes() -> None:
    # The list moved on while the webhook was down: each run's pending set had its own id, and
    # the delivery that finally went through reported all of them (it diffs from the last
    # accepted list), so none stays pending in `kubectl matchlist history`.
    pending = (entry("a"), entry("b", delivered=False), entry("c", delivered=False, minute=5))
    history = history_after(pending, entry("d", minute=10))
    assert [(e.delivery_id, e.delivered) for e in history] == [
        ("a", True),
        ("b", True),
        ("c", True),
        ("d", True),
    ]
    # Another failed delivery settles nothing.
    still = history_after(pending, entry("d", delivered=False, minute=10))
    assert [e.delivered for e in still] == [True, False, False, False]


def test_history_round_trips_and_junk_is_dropped() -> None:
    kept = entry("a", delivered=False)
    raw = {"history": [kept.to_status(), {"time": "never"}, "junk", {"new": 1}]}
    assert WatcherStatus.parse(raw).history == (kept,)


@pytest.mark.parametrize(
    ("raw", "trigger", "claimed"),
    [
        ({}, Scheduled(T0), False),
        ({"lastScheduleTime": "2026-11-28T09:00:00Z"}, Scheduled(T0), False),
        ({"lastScheduleTime": "2026-11-28T10:00:00Z"}, Scheduled(T0), True),
        ({"lastScheduleTime": "2026-11-28T11:00:00Z"}, Scheduled(T0), True),  # a later one ran
        ({}, Manual("t1"), False),
        ({"lastClaimedTrigger": "t0", "lastHandledTrigger": "t0"}, Manual("t1"), False),
        ({"lastClaimedTrigger": "t1", "lastHandledTrigger": "t0"}, Manual("t1"), True),
        ({"lastHandledTrigger": "t1"}, Manual("t1"), True),  # written by an older version
    ],
)
def test_claims(raw: dict[str, Any], trigger: Scheduled | Manual, claimed: bool) -> None:
    assert WatcherStatus.parse(raw).claims(trigger) is claimed
