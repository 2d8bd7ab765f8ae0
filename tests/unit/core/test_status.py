"""The status a run writes, and the Ready condition's transition rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.core.diff import Summary
from controller.core.status import (
    MAX_HISTORY,
    HistoryEntry,
    PeopleStatus,
    Readiness,
    ReadyCondition,
    RunRecord,
    WatcherStatus,
    WebhookState,
    conditions_with,
    digest_claim,
    history_after,
    parse_timestamp,
    run_started,
    status_after_run,
    status_seen,
    timestamp,
)
from controller.core.trigger import Digest, Manual, Scheduled

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


# --- status.notify's hold and failure streak (the people's pass) --------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, PeopleStatus()),
        (
            {"heldChanges": 3, "heldUntil": "2026-11-28T10:00:00Z", "failures": 2,
             "failureNotified": {"reason": "LoginFailed", "since": "2026-11-28T10:00:02Z"}},
            PeopleStatus(3, T0, 2, "LoginFailed", T1),
        ),
        # Hand-edited junk counts as absent instead of failing every later step.
        (
            {"heldChanges": "3", "heldUntil": "at seven", "failures": True,
             "failureNotified": "yes"},
            PeopleStatus(),
        ),
        ({"heldChanges": 1.5, "failures": None, "failureNotified": {"reason": 7}}, PeopleStatus()),
        ({"failureNotified": {"reason": "LoginFailed", "since": "then"}},
         PeopleStatus(told_reason="LoginFailed")),
        # status.notify's other fields belong to its WebhookState.
        ({"pendingChanges": 2, "consecutiveFailures": 1}, PeopleStatus()),
    ],
)  # fmt: skip
def test_people_status_is_parsed_and_junk_counts_as_absent(
    raw: dict[str, Any], expected: PeopleStatus
) -> None:
    assert PeopleStatus.from_status(raw) == expected
    assert WatcherStatus.parse({"notify": raw}).people == expected


@pytest.mark.parametrize(
    "people",
    [
        PeopleStatus(),
        PeopleStatus(held_changes=4, held_until=T0),
        PeopleStatus(failures=5, told_reason="SourceUnavailable", told_since=T1),
    ],
)
def test_people_status_round_trips(people: PeopleStatus) -> None:
    written = people.to_status()
    assert PeopleStatus.from_status(written) == people
    # Merge-patch nulls remove what no longer applies (failureNotified absent, not stale).
    if people.told_reason is None:
        assert written["failureNotified"] is None
    if people.held_until is None:
        assert written["heldUntil"] is None


@pytest.mark.parametrize(
    ("failures", "reason", "succeeded", "expected"),
    [
        # Told failures count, whatever came before.
        (0, "LoginFailed", False, 1),
        (2, "SourceUnavailable", False, 3),
        (7, "SecretNotFound", False, 8),
        # Success resets.
        (5, None, True, 0),
        (0, None, True, 0),
        # Other failures (webhook, notify, Kubernetes, a spec error) neither count nor reset.
        (2, None, False, 2),
        (2, "WebhookFailing", False, 2),
        (2, "InvalidNotifySecret", False, 2),
        (2, "KubernetesError", False, 2),
        (0, "InvalidSpec", False, 0),
    ],
)
def test_after_run(failures: int, reason: str | None, succeeded: bool, expected: int) -> None:
    told = PeopleStatus(failures=failures, told_reason="LoginFailed", held_changes=2)
    after = told.after_run(reason, succeeded)
    assert after.failures == expected
    # Only the count moves: whether people were told, and the hold, stay.
    assert replace(after, failures=failures) == told


@pytest.mark.parametrize(
    ("failures", "told_reason", "failure_after", "owed"),
    [
        (0, None, 3, None),
        (2, None, 3, None),
        (3, None, 3, "failure"),
        (4, None, 3, "failure"),  # the third run's message did not go out: still owed
        (1, None, 1, "failure"),
        (3, "LoginFailed", 3, None),  # told once in a streak, never again
        (9, "LoginFailed", 3, None),
        (0, "LoginFailed", 3, "recovered"),
        (1, "LoginFailed", 3, None),  # failing again before the recovery was told
        (5, None, 0, None),  # failureAfter 0: off
        (0, "LoginFailed", 0, "recovered"),  # switched off mid-streak: the recovery is still told
    ],
)
def test_owed(failures: int, told_reason: str | None, failure_after: int, owed: str | None) -> None:
    people = PeopleStatus(failures=failures, told_reason=told_reason)
    assert people.owed(failure_after) == owed


@pytest.mark.parametrize(
    ("held_until", "claimed"),
    [
        (T0, False),  # still held for this digest: not claimed yet
        (None, True),  # the claim cleared heldUntil
        (T1, True),  # a later hold: this digest's moment passed (its changes went elsewhere)
    ],
)
def test_digest_claims(held_until: datetime | None, claimed: bool) -> None:
    status = WatcherStatus(people=PeopleStatus(held_changes=2, held_until=held_until))
    assert status.claims(Digest(T0)) is claimed


def test_the_digest_claim_clears_held_until_only_and_sets_reconciling() -> None:
    previous = WatcherStatus.parse(
        {"notify": {"heldChanges": 2, "heldUntil": "2026-11-28T10:00:00Z", "failures": 1},
         "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded",
                         "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    )  # fmt: skip
    patch = digest_claim(previous, now=T1, generation=4)
    assert patch["notify"] == {"heldUntil": None}  # a merge patch: the rest of notify stays
    stored = {**previous.people.to_status(), **patch["notify"]}
    assert WatcherStatus.parse({"notify": stored}).claims(Digest(T0))
    assert [(c["type"], c["status"], c["reason"]) for c in patch["conditions"]] == [
        ("Reconciling", "True", "Running"),
        ("Ready", "True", "Succeeded"),
    ]
    assert set(patch) == {"notify", "conditions"}


DIGEST_PREVIOUS = WatcherStatus.parse(
    {"executionCount": 41, "changeCount": 6, "matchCount": 14,
     "notify": {"heldChanges": 2, "matchCount": 14, "lastDeliveryTime": "2026-11-27T10:00:00Z"},
     "conditions": [{"type": "Reconciling", "status": "True", "reason": "Running"}]}
)  # fmt: skip


@pytest.mark.parametrize(
    ("notify", "people", "expected"),
    [
        # Nothing changed in status.notify: no key at all (a null would delete status.notify).
        (None, None, None),
        (None, PeopleStatus(), {"heldChanges": 0, "heldUntil": None, "failures": 0,
                                "failureNotified": None}),
        (
            WebhookState(last_delivery_time=T1, match_count=14),
            PeopleStatus(failures=0),
            {"lastDeliveryTime": "2026-11-28T10:00:02Z", "consecutiveFailures": 0,
             "pendingChanges": 0, "matchCount": 14, "heldChanges": 0, "heldUntil": None,
             "failures": 0, "failureNotified": None},
        ),
    ],
)  # fmt: skip
def test_a_digest_writes_only_conditions_and_notify(
    notify: WebhookState | None, people: PeopleStatus | None, expected: dict[str, Any] | None
) -> None:
    """A digest is no run: no execution counted, no slot, no history; Reconciling removed."""
    digest = record(
        trigger=Digest(T0), match_count=None, summary=None, delivered=False, notify=notify,
        people=people,
    )  # fmt: skip
    patch = status_after_run(DIGEST_PREVIOUS, digest, next_time=T1, generation=3)
    assert set(patch) == ({"conditions"} if expected is None else {"conditions", "notify"})
    assert patch.get("notify") == expected
    assert [c["type"] for c in patch["conditions"]] == ["Ready"]


def test_a_run_writes_the_hold_and_streak_beside_the_deliveries() -> None:
    people = PeopleStatus(held_changes=3, held_until=T1, failures=1)
    patch = status_after_run(WatcherStatus(), record(people=people), next_time=None, generation=1)
    assert patch["notify"] == people.to_status()
    assert "notify" not in status_after_run(WatcherStatus(), record(), next_time=None, generation=1)
