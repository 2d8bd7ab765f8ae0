"""How a run's outcome becomes status and an Event: pure rules, table-tested.

A run ends with a Detection or an error; `record_of` turns that into the RunRecord the status patch
is built from (pending deliveries, consecutive failures, readiness), `note_of` into its one Event
and log line.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from controller.core.detection import ChangesPending, Detection
from controller.core.diff import CATEGORIES, summarise
from controller.core.errors import DetectorError
from controller.core.events import Note
from controller.core.reasons import Reason
from controller.core.status import (
    CalendarStatus,
    HistoryEntry,
    LoginBackoff,
    PeopleStatus,
    Readiness,
    RunRecord,
    WatcherStatus,
    WebhookState,
    timestamp,
)
from controller.core.trigger import Scheduled, Trigger

GONE = "the webhook answered 410 Gone: nothing is sent until spec.webhook or its Secret changes"


@dataclass(frozen=True)
class Outcome:
    """What a run hands back to the scheduler, which writes the status and posts the Event."""

    record: RunRecord
    note: Note


def baseline_reset(
    accepted: int | None, pending: int, config_map: str, foreign_owner: bool
) -> str | None:
    """Why a pass's baseline is not its first, if it is not (see Detection.reset). `accepted`:
    the match count of the last list the pass accepted (status.matchCount for the webhook's,
    status.notify.matchCount for the people's), None if it never had one: a new watcher (or new
    spec.notify) may find a deleted namesake's ConfigMap, and that is no reset. `pending`: its
    changes that were waiting for delivery."""
    if accepted is None:
        return None
    lost = f" ({pending} changes were pending)" if pending else ""
    if foreign_owner:
        return (
            f"ConfigMap {config_map} was not owned by this MatchWatcher (its owner reference "
            f"was removed, or the watcher was re-created or restored){lost}"
        )
    return f"ConfigMap {config_map} was missing (deleted?){lost}"


def people_reset(notice: Detection | DetectorError | None) -> str:
    """The people's pass's baseline reset as a clause after the run's outcome ("": none)."""
    if not isinstance(notice, Detection) or notice.reset is None:
        return ""
    return (
        f"; notifications recorded a new baseline: {notice.reset}; changes since people were "
        "last told were not sent"
    )


def describe_success(detection: Detection) -> str:
    if detection.reset is not None:
        return (
            f"recorded a new baseline of {detection.match_count} matches: {detection.reset}; "
            "changes since the last accepted list were not reported"
        )
    if detection.baseline:
        return f"recorded a baseline of {detection.match_count} matches"
    s = detection.summary
    if not s.total:
        return f"no changes in {detection.match_count} matches"
    text = (
        f"{s.total} changes ({s.new} new, {s.removed} removed, {s.changed} changed) "
        f"in {detection.match_count} matches"
    )
    if detection.delivery is not None:
        d = detection.delivery
        attempts = f"{len(d.attempts)} attempt" + ("s" if len(d.attempts) > 1 else "")
        text += f"; delivered (HTTP {d.status_code}, {attempts})"
    return text


def record_of(
    *,
    trigger: Trigger,
    started: datetime,
    finished: datetime,
    result: Detection | DetectorError,
    previous: WatcherStatus,
    webhook: str | None = None,
    notice: Detection | DetectorError | None = None,
    login: LoginBackoff | None = None,
    people: PeopleStatus | None = None,
    calendar: CalendarStatus | None = None,
) -> RunRecord:
    """`webhook` is the fingerprint of the watcher's webhook configuration (None: none, or the
    run failed before reading it); a 410 Gone holds while it stays the same. `notice` is the
    people's pass (spec.notify), tracked apart: its failure makes the run's Ready False (after
    any webhook failure) but changes nothing about the webhook's deliveries. `login` is the
    login backoff after the run (None: FOGIS accepted the credentials, or never rejected them)."""
    before = previous.webhook
    # A receiver that answered 410 Gone for this very configuration still wants nothing.
    still_gone = before.gone_for is not None and before.gone_for == webhook
    state: WebhookState | None = None
    match result:
        case Detection() if result.delivery is not None:
            state = WebhookState(
                last_delivery_time=finished,
                last_status_code=result.delivery.status_code,
                consecutive_failures=0,
                pending_changes=0,
                last_delivery_id=str(result.report["id"]),
            )
        case Detection() if (
            before.pending_changes or before.consecutive_failures or before.gone_for
        ) and not still_gone:
            # Nothing left to deliver (the list changed back, the webhook was removed), or a
            # changed configuration ends a 410: what was pending or gone is settled.
            state = replace(before, consecutive_failures=0, pending_changes=0, gone_for=None)
        case ChangesPending():
            state = replace(
                before,
                last_status_code=result.last_status_code,
                consecutive_failures=before.consecutive_failures + 1,
                pending_changes=len(result.changes),
                gone_for=webhook if result.reason == Reason.WEBHOOK_GONE else None,
            )
    notify = notify_state(previous.notify, notice, finished)
    found = _history_entry(trigger, finished, result)
    if isinstance(result, Detection):
        error: str | None = None
        if isinstance(notice, DetectorError):  # the webhook went well; people's pass did not
            readiness, error = Readiness(False, notice.reason, notice.message), notice.message
        elif still_gone:
            readiness = Readiness(False, Reason.WEBHOOK_GONE, f"{describe_success(result)}; {GONE}")
        elif result.reset is None and not people_reset(notice):
            readiness = Readiness(True, Reason.SUCCEEDED, describe_success(result))
        else:
            text = describe_success(result) + people_reset(notice)
            readiness = Readiness(True, Reason.BASELINE_RESET, text)
        return RunRecord(
            trigger=trigger,
            started=started,
            finished=finished,
            readiness=readiness,
            error=error,
            match_count=result.match_count,
            summary=result.summary,
            delivered=True,
            webhook=state,
            notify=notify,
            history=found,
            login=login,
            people=people,
            calendar=calendar,
        )
    pending = result if isinstance(result, ChangesPending) else None
    return RunRecord(
        trigger=trigger,
        started=started,
        finished=finished,
        readiness=Readiness(False, result.reason, result.message),
        error=result.message,
        match_count=None if pending is None else pending.match_count,
        summary=None if pending is None else summarise(pending.changes),
        delivered=False,
        webhook=state,
        notify=notify,
        history=found,
        login=login,
        people=people,
        calendar=calendar,
    )


def _history_entry(
    trigger: Trigger, finished: datetime, result: Detection | DetectorError
) -> HistoryEntry | None:
    """The change set a run found (accepted, or pending delivery) for status.history."""
    match result:
        case Detection() if result.changes and result.reset is None:
            changes, delivery_id, delivered = result.changes, str(result.report["id"]), True
        case ChangesPending():
            changes, delivery_id, delivered = result.changes, result.delivery_id, False
        case _:
            return None
    summary = summarise(changes)
    found = {category for change in changes for category in change.categories}
    return HistoryEntry(
        time=finished,
        trigger=trigger.kind,
        delivery_id=delivery_id,
        new=summary.new,
        removed=summary.removed,
        changed=summary.changed,
        categories=tuple(c for c in CATEGORIES if c in found),
        delivered=delivered,
    )


def notify_state(
    before: WebhookState, notice: Detection | DetectorError | None, finished: datetime
) -> WebhookState | None:
    """status.notify after the people's pass; None: unchanged (no pass, or nothing new)."""
    match notice:
        case Detection() if notice.delivery is not None:
            return WebhookState(last_delivery_time=finished, match_count=notice.match_count)
        case Detection() if (
            before.pending_changes
            or before.consecutive_failures
            or before.match_count != notice.match_count
        ):
            return replace(
                before, consecutive_failures=0, pending_changes=0, match_count=notice.match_count
            )
        case ChangesPending():
            return replace(
                before,
                consecutive_failures=before.consecutive_failures + 1,
                pending_changes=len(notice.changes),
            )
        case DetectorError():  # the Secret, its URLs, or the notified snapshot
            return replace(before, consecutive_failures=before.consecutive_failures + 1)
    return None


def note_of(
    trigger: Trigger,
    result: Detection | DetectorError,
    notice: Detection | DetectorError | None = None,
) -> Note:
    """The run's one Event (also its log line). A scheduled run names its slot, so Events and
    logs show that no slot ran twice. A failed notification pass turns it into a Warning."""
    what = (
        f"{trigger.kind} run ({timestamp(trigger.slot)})"
        if isinstance(trigger, Scheduled)
        else f"{trigger.kind} run"
    )
    failed = (
        f"; notifications failed: {notice.message}" if isinstance(notice, DetectorError) else ""
    )
    if isinstance(result, DetectorError):
        return Note("Warning", result.reason, f"{what} failed: {result.message}{failed}")
    message = f"{what}: {describe_success(result)}{people_reset(notice)}"
    if isinstance(notice, DetectorError):
        return Note("Warning", notice.reason, f"{message}{failed}")
    if result.reset is not None or people_reset(notice):
        return Note("Warning", Reason.BASELINE_RESET, message)
    return Note("Normal", Reason.BASELINE if result.baseline else Reason.RUN_SUCCEEDED, message)
