"""A run's outcome → status record and Event: pending changes, consecutive failures, readiness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.adapters.notify import NotifyFailed
from controller.core.delivery import Attempt, DeliveryFailed, DeliveryResult, WebhookGone
from controller.core.detection import ChangesPending, Detection
from controller.core.diff import MatchChange, Summary
from controller.core.errors import DetectorError, InvalidSpec, LoginFailed
from controller.core.outcome import baseline_reset, note_of, record_of
from controller.core.reasons import Reason
from controller.core.status import WatcherStatus, WebhookState
from controller.core.trigger import Manual, Scheduled

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=2)
CHANGE = MatchChange("new", "1", None, ("new_assignment",), {}, {})
PENDING = {"webhook": {"pendingChanges": 2, "consecutiveFailures": 3, "lastStatusCode": 503}}


def detection(**changes: Any) -> Detection:
    base: dict[str, Any] = {
        "baseline": False,
        "match_count": 14,
        "changes": [],
        "summary": Summary(new=0, removed=0, changed=0),
        "report": {"id": "d-1"},
        "delivery": None,
    }
    return Detection(**{**base, **changes})


DELIVERED = detection(
    changes=[CHANGE],
    summary=Summary(new=1, removed=0, changed=0),
    delivery=DeliveryResult(status_code=204, attempts=(Attempt(204, None, 0.1),)),
)
FAILED = ChangesPending(
    DeliveryFailed(
        "webhook answered 503", attempts=(Attempt(503, None, 0.1),), last_status_code=503
    ),
    [CHANGE],
    14,
)


@pytest.mark.parametrize(
    ("previous", "result", "ready", "webhook", "error"),
    [
        ({}, detection(), ("True", "Succeeded"), None, None),
        ({}, detection(baseline=True, reset="ConfigMap x was missing"),
         ("True", "BaselineReset"), None, None),
        ({}, DELIVERED, ("True", "Succeeded"), WebhookState(T1, 204, 0, 0, "d-1"), None),
        # Pending changes settled without a delivery (the list changed back).
        (PENDING, detection(), ("True", "Succeeded"), WebhookState(None, 503, 0, 0, None), None),
        # A failed delivery counts on and keeps its changes pending.
        (PENDING, FAILED, ("False", "WebhookFailing"), WebhookState(None, 503, 4, 1, None),
         "webhook answered 503"),
        # A run that failed before delivering leaves the webhook state alone.
        (PENDING, LoginFailed("no"), ("False", "LoginFailed"), None, "no"),
        ({}, DetectorError("internal error: KeyError"), ("False", "InternalError"), None,
         "internal error: KeyError"),
    ],
)  # fmt: skip
def test_record(
    previous: dict[str, Any],
    result: Detection | DetectorError,
    ready: tuple[str, str],
    webhook: WebhookState | None,
    error: str | None,
) -> None:
    record = record_of(
        trigger=Scheduled(T0),
        started=T0,
        finished=T1,
        result=result,
        previous=WatcherStatus.parse(previous),
    )
    assert ("True" if record.readiness.ready else "False", record.readiness.reason) == ready
    assert record.webhook == webhook
    assert record.error == error
    assert record.delivered is (error is None)


def test_pending_changes_are_summarised_but_not_delivered() -> None:
    record = record_of(
        trigger=Manual("t"), started=T0, finished=T1, result=FAILED, previous=WatcherStatus()
    )
    assert record.summary == Summary(new=1, removed=0, changed=0)
    assert record.match_count == 14
    assert not record.delivered


GONE = ChangesPending(
    WebhookGone("webhook answered 410 Gone", attempts=(Attempt(410, None, 0.1),),
                last_status_code=410),
    [CHANGE],
    14,
)  # fmt: skip
GONE_BEFORE = {"webhook": {"goneFor": "fp-1", "lastStatusCode": 410, "pendingChanges": 1,
                           "consecutiveFailures": 1}}  # fmt: skip


@pytest.mark.parametrize(
    ("previous", "result", "fingerprint", "ready", "gone_for"),
    [
        # A 410 records which configuration it holds for.
        ({}, GONE, "fp-1", ("False", "WebhookGone"), "fp-1"),
        # The same configuration again: changes stay pending, Ready stays False ...
        (GONE_BEFORE, GONE, "fp-1", ("False", "WebhookGone"), "fp-1"),
        # ... also when a run finds nothing to deliver.
        (GONE_BEFORE, detection(), "fp-1", ("False", "WebhookGone"), "fp-1"),
        # A changed spec.webhook or Secret (another fingerprint) resumes deliveries.
        (GONE_BEFORE, DELIVERED, "fp-2", ("True", "Succeeded"), None),
        (GONE_BEFORE, detection(), "fp-2", ("True", "Succeeded"), None),
        # Other delivery failures are no 410.
        (GONE_BEFORE, FAILED, "fp-2", ("False", "WebhookFailing"), None),
    ],
)  # fmt: skip
def test_410_gone_holds_for_one_webhook_configuration(
    previous: dict[str, Any],
    result: Detection | DetectorError,
    fingerprint: str,
    ready: tuple[str, str],
    gone_for: str | None,
) -> None:
    record = record_of(
        trigger=Scheduled(T0),
        started=T0,
        finished=T1,
        result=result,
        previous=WatcherStatus.parse(previous),
        webhook=fingerprint,
    )
    assert ("True" if record.readiness.ready else "False", record.readiness.reason) == ready
    state = record.webhook or WatcherStatus.parse(previous).webhook
    assert state.gone_for == gone_for


@pytest.mark.parametrize(
    ("trigger", "result", "event"),
    [
        (Scheduled(T0), detection(baseline=True), ("Normal", "Baseline",
         "schedule run (2026-11-28T10:00:00Z): recorded a baseline of 14 matches")),
        (Manual("t"), detection(), ("Normal", "RunSucceeded",
         "manual run: no changes in 14 matches")),
        (Manual("t"), DELIVERED, ("Normal", "RunSucceeded", "manual run: 1 changes (1 new, 0 "
         "removed, 0 changed) in 14 matches; delivered (HTTP 204, 1 attempt)")),
        (Scheduled(T0), LoginFailed("wrong password"), ("Warning", "LoginFailed",
         "schedule run (2026-11-28T10:00:00Z) failed: wrong password")),
        (Manual("t"), detection(baseline=True, reset="ConfigMap x was missing"),
         ("Warning", "BaselineReset", "manual run: recorded a new baseline of 14 matches: "
          "ConfigMap x was missing; changes since the last accepted list were not reported")),
    ],
)  # fmt: skip
def test_note(
    trigger: Scheduled | Manual, result: Detection | DetectorError, event: tuple[str, str, str]
) -> None:
    note = note_of(trigger, result)
    assert (note.type_, note.reason, note.message) == event


@pytest.mark.parametrize(
    ("previous", "foreign", "expected"),
    [
        ({}, False, None),  # a new watcher's first baseline
        ({}, True, None),  # ... also over a deleted namesake's ConfigMap
        ({"matchCount": 3}, False, "ConfigMap cm was missing (deleted?)"),
        ({"matchCount": 3, **PENDING}, False,
         "ConfigMap cm was missing (deleted?) (2 changes were pending)"),
        ({"matchCount": 3}, True, "ConfigMap cm was not owned by this MatchWatcher (its owner "
         "reference was removed, or the watcher was re-created or restored)"),
    ],
)  # fmt: skip
def test_baseline_reset(previous: dict[str, Any], foreign: bool, expected: str | None) -> None:
    status = WatcherStatus.parse(previous)
    reset = baseline_reset(
        status.match_count, status.webhook.pending_changes, "ConfigMap cm", foreign
    )
    assert reset == expected


@pytest.mark.parametrize(
    ("previous", "notice", "ready", "notify"),
    [
        ({}, None, ("True", "Succeeded"), None),  # no spec.notify
        # The people's first baseline: its match count says they have one from now on.
        ({}, detection(baseline=True), ("True", "Succeeded"), WebhookState(match_count=14)),
        ({"notify": {"matchCount": 14}}, detection(), ("True", "Succeeded"), None),
        ({}, DELIVERED, ("True", "Succeeded"),
         WebhookState(last_delivery_time=T1, match_count=14)),
        # A failing chat service: Ready=False NotifyFailing, its changes pending for it alone.
        ({}, ChangesPending(NotifyFailed("refused", attempts=(), last_status_code=None),
                            [CHANGE], 14),
         ("False", "NotifyFailing"), WebhookState(consecutive_failures=1, pending_changes=1)),
        # Settled once a later pass has nothing left to tell.
        ({"notify": {"pendingChanges": 1, "consecutiveFailures": 2}}, detection(),
         ("True", "Succeeded"), WebhookState(match_count=14)),
        # Their ConfigMap was lost: a new baseline, and Ready says so.
        ({"notify": {"matchCount": 3, "pendingChanges": 1}},
         detection(baseline=True, reset="ConfigMap n was missing (deleted?)"),
         ("True", "BaselineReset"), WebhookState(match_count=14)),
        ({}, InvalidSpec("notify Secret has no urls key", reason=Reason.INVALID_NOTIFY_SECRET),
         ("False", "InvalidNotifySecret"), WebhookState(consecutive_failures=1)),
    ],
)  # fmt: skip
def test_the_notify_pass_is_tracked_apart_from_the_webhook(
    previous: dict[str, Any],
    notice: Detection | DetectorError | None,
    ready: tuple[str, str],
    notify: WebhookState | None,
) -> None:
    record = record_of(
        trigger=Scheduled(T0),
        started=T0,
        finished=T1,
        result=DELIVERED,  # the webhook's pass went well either way
        previous=WatcherStatus.parse(previous),
        notice=notice,
    )
    assert ("True" if record.readiness.ready else "False", record.readiness.reason) == ready
    assert record.notify == notify
    assert record.webhook is not None
    assert record.webhook.pending_changes == 0
    assert record.delivered


def test_a_reset_of_the_peoples_baseline_makes_the_runs_event_a_warning() -> None:
    reset = detection(baseline=True, reset="ConfigMap w-matchlist-notified was missing (deleted?)")
    note = note_of(Manual("t"), detection(), reset)
    assert (note.type_, note.reason) == ("Warning", "BaselineReset")
    assert note.message == (
        "manual run: no changes in 14 matches; notifications recorded a new baseline: ConfigMap "
        "w-matchlist-notified was missing (deleted?); changes since people were last told were "
        "not sent"
    )
    record = record_of(
        trigger=Manual("t"), started=T0, finished=T1, result=detection(), previous=WatcherStatus(),
        notice=reset,
    )  # fmt: skip
    assert record.readiness.message == note.message.removeprefix("manual run: ")


def test_a_failed_notification_makes_the_runs_event_a_warning() -> None:
    failed = InvalidSpec("notify Secret has no urls key", reason=Reason.INVALID_NOTIFY_SECRET)
    note = note_of(Manual("t"), detection(), failed)
    assert (note.type_, note.reason) == ("Warning", "InvalidNotifySecret")
    assert note.message == (
        "manual run: no changes in 14 matches; notifications failed: notify Secret has no urls key"
    )


@pytest.mark.parametrize(
    ("result", "history"),
    [
        (detection(), None),  # nothing found
        (detection(baseline=True), None),
        (DELIVERED, ("d-1", True, (1, 0, 0), ("new_assignment",))),
        (ChangesPending(FAILED, [CHANGE], 14, "d-2"),
         ("d-2", False, (1, 0, 0), ("new_assignment",))),
        (LoginFailed("no"), None),
    ],
)  # fmt: skip
def test_history_records_each_change_set_found(
    result: Detection | DetectorError,
    history: tuple[str, bool, tuple[int, int, int], tuple[str, ...]] | None,
) -> None:
    record = record_of(
        trigger=Manual("t"), started=T0, finished=T1, result=result, previous=WatcherStatus()
    )
    if history is None:
        assert record.history is None
    else:
        assert record.history is not None
        found = record.history
        assert (found.delivery_id, found.delivered, (found.new, found.removed, found.changed),
                found.categories) == history  # fmt: skip
        assert (found.time, found.trigger) == (T1, "manual")
