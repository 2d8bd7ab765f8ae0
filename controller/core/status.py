"""The MatchWatcher status: parsed once into `WatcherStatus`, and the pure builders of every
merge patch the operator writes (seen, slot claim, after a run) and of its Ready condition."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from controller.core.diff import Summary
from controller.core.errors import clip
from controller.core.reasons import Reason
from controller.core.report import rfc3339
from controller.core.trigger import Digest, Manual, Scheduled, Trigger


def timestamp(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC to the second, the format Kubernetes uses for date-time fields."""
    return None if moment is None else rfc3339(moment)


def parse_timestamp(value: Any) -> datetime | None:
    """A status timestamp back to a datetime; anything unreadable counts as absent."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _count(value: Any) -> int | None:
    """A counter from status; a hand-edited non-integer counts as absent, never as a crash."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Readiness:
    """The Ready condition to write."""

    ready: bool
    reason: str  # a Reason, or kept as an older version wrote it
    message: str


@dataclass(frozen=True)
class ReadyCondition:
    """The Ready condition as last written (its reason may come from an older version)."""

    ready: bool
    reason: str
    message: str
    last_transition: str | None

    def readiness(self) -> Readiness:
        return Readiness(self.ready, self.reason, self.message)


@dataclass(frozen=True)
class WebhookState:
    last_delivery_time: datetime | None = None
    last_status_code: int | None = None
    consecutive_failures: int = 0
    pending_changes: int = 0
    last_delivery_id: str | None = None
    gone_for: str | None = None  # the webhook fingerprint a receiver answered 410 Gone for
    # The people's pass only (status.notify): how many matches the list they were last told
    # about has; set once it has a baseline (the webhook's is status.matchCount).
    match_count: int | None = None

    @classmethod
    def from_status(cls, webhook: Mapping[str, Any]) -> WebhookState:
        """The state as status.webhook last recorded it (absent fields: nothing happened yet)."""
        return cls(
            last_delivery_time=parse_timestamp(webhook.get("lastDeliveryTime")),
            last_status_code=_count(webhook.get("lastStatusCode")),
            consecutive_failures=_count(webhook.get("consecutiveFailures")) or 0,
            pending_changes=_count(webhook.get("pendingChanges")) or 0,
            last_delivery_id=_text(webhook.get("lastDeliveryId")),
            gone_for=_text(webhook.get("goneFor")),
            match_count=_count(webhook.get("matchCount")),
        )

    def to_status(self) -> dict[str, Any]:
        return {
            "lastDeliveryTime": timestamp(self.last_delivery_time),
            "lastStatusCode": self.last_status_code,
            "consecutiveFailures": self.consecutive_failures,
            "pendingChanges": self.pending_changes,
            "lastDeliveryId": self.last_delivery_id,
            "goneFor": self.gone_for,
        }


@dataclass(frozen=True)
class SecretVersion:
    """One version of a Secret: its uid (a re-created Secret is another) and resourceVersion."""

    uid: str
    resource_version: str


@dataclass(frozen=True)
class LoginBackoff:
    """status.login: FOGIS rejected the credentials of this version of the credentials Secret
    `failures` times in a row, so scheduled runs do not try them before `retry_after` (see
    loginguard.py). Kept in status so a restarted operator or a new leader keeps to it; it
    names the Secret, never anything derived from the password."""

    secret: SecretVersion
    failures: int
    retry_after: datetime

    @classmethod
    def from_status(cls, raw: Any) -> LoginBackoff | None:
        if not isinstance(raw, Mapping):
            return None
        uid, version = _text(raw.get("secretUid")), _text(raw.get("secretResourceVersion"))
        failures, until = _count(raw.get("failures")), parse_timestamp(raw.get("retryAfter"))
        if uid is None or version is None or failures is None or until is None:
            return None
        return cls(SecretVersion(uid, version), failures, until)

    def to_status(self) -> dict[str, Any]:
        return {
            "secretUid": self.secret.uid,
            "secretResourceVersion": self.secret.resource_version,
            "failures": self.failures,
            "retryAfter": timestamp(self.retry_after),
        }


# The runs whose failure people are told about (spec.notify.failureAfter): what a referee can
# fix (a password, a Secret) or should know (FOGIS down). The webhook's, the chat services' and
# the Kubernetes API's troubles are the operator's, not theirs.
TOLD_FAILURES = frozenset({Reason.LOGIN_FAILED, Reason.SOURCE_UNAVAILABLE, Reason.SECRET_NOT_FOUND})


@dataclass(frozen=True)
class CalendarStatus:
    """status.calendar: the feed's revision and public base URL (never its token)."""

    revision: int
    public_url: str | None

    def to_status(self) -> dict[str, Any]:
        return {"revision": self.revision, "publicUrl": self.public_url}


@dataclass(frozen=True)
class PeopleStatus:
    """status.notify's quiet-hours hold and failure streak (controller/core/people.py)."""

    held_changes: int = 0  # changes waiting for quiet hours' end
    held_until: datetime | None = None  # when the digest (or a held streak message) is sent
    failures: int = 0  # runs in a row failing for a reason in TOLD_FAILURES
    told_reason: str | None = None  # failureNotified.reason: people were told it fails
    told_since: datetime | None = None  # failureNotified.since: when they were told

    @classmethod
    def from_status(cls, raw: Mapping[str, Any]) -> PeopleStatus:
        told = raw.get("failureNotified")
        told = told if isinstance(told, Mapping) else {}
        return cls(
            held_changes=_count(raw.get("heldChanges")) or 0,
            held_until=parse_timestamp(raw.get("heldUntil")),
            failures=_count(raw.get("failures")) or 0,
            told_reason=_text(told.get("reason")),
            told_since=parse_timestamp(told.get("since")),
        )

    def to_status(self) -> dict[str, Any]:
        return {
            "heldChanges": self.held_changes,
            "heldUntil": timestamp(self.held_until),
            "failures": self.failures,
            "failureNotified": None
            if self.told_reason is None
            else {"reason": self.told_reason, "since": timestamp(self.told_since)},
        }

    def after_run(self, reason: str | None, succeeded: bool) -> PeopleStatus:
        """The streak after a run that failed for `reason` (None: it did not fail). Failures
        people are not told about neither count nor end it."""
        if reason in TOLD_FAILURES:
            return replace(self, failures=self.failures + 1)
        if succeeded:
            return replace(self, failures=0)
        return self

    def owed(self, failure_after: int) -> str | None:
        """`failure` or `recovered` while a message about the streak is owed, else None."""
        if failure_after > 0 and self.failures >= failure_after and self.told_reason is None:
            return "failure"
        if self.failures == 0 and self.told_reason is not None:
            return "recovered"
        return None


# Change sets kept in status.history, newest last: enough to see last week's, small enough that
# the status (written on every run) stays a few KiB.
MAX_HISTORY = 10


@dataclass(frozen=True)
class HistoryEntry:
    """One change set a run found: when, why, under which delivery id, what, and whether it was
    accepted (delivered, or recorded with no webhook) or is still pending."""

    time: datetime
    trigger: str
    delivery_id: str
    new: int
    removed: int
    changed: int
    categories: tuple[str, ...]
    delivered: bool

    @classmethod
    def from_status(cls, raw: Any) -> HistoryEntry | None:
        if not isinstance(raw, Mapping):
            return None
        time, counts = parse_timestamp(raw.get("time")), [_count(raw.get(k)) for k in _COUNTS]
        categories = raw.get("categories")
        if time is None or None in counts or not isinstance(categories, list):
            return None
        new, removed, changed = (c or 0 for c in counts)
        return cls(
            time=time,
            trigger=str(raw.get("trigger") or ""),
            delivery_id=str(raw.get("deliveryId") or ""),
            new=new,
            removed=removed,
            changed=changed,
            categories=tuple(str(c) for c in categories),
            delivered=raw.get("delivered") is True,
        )

    def to_status(self) -> dict[str, Any]:
        return {
            "time": timestamp(self.time),
            "trigger": self.trigger,
            "deliveryId": self.delivery_id,
            "new": self.new,
            "removed": self.removed,
            "changed": self.changed,
            "categories": list(self.categories),
            "delivered": self.delivered,
        }


_COUNTS = ("new", "removed", "changed")


def history_after(
    previous: tuple[HistoryEntry, ...], entry: HistoryEntry
) -> tuple[HistoryEntry, ...]:
    """`entry` appended, replacing an older entry of the same transition (a pending change set
    that is now delivered), at most MAX_HISTORY kept. An accepted `entry` also settles every
    pending one before it: a delivery reports all changes since the last accepted list, so the
    earlier pending sets (under other ids when the list moved on meanwhile) went with it."""
    kept = [
        replace(e, delivered=True) if entry.delivered else e
        for e in previous
        if e.delivery_id != entry.delivery_id
    ]
    return (*kept, entry)[-MAX_HISTORY:]


@dataclass(frozen=True)
class WatcherStatus:
    """What the operator reads back from status.* (fields it only writes are not kept)."""

    observed_generation: int | None = None
    ready: ReadyCondition | None = None
    # Conditions other than Ready: our Stalled and Reconciling, and anyone else's (kept as
    # they are on every write).
    other_conditions: tuple[Mapping[str, Any], ...] = ()
    next_execution_time: datetime | None = None
    last_schedule_time: datetime | None = None
    # (schedule, timeZone) the last claimed slot belonged to: a schedule changed while no
    # operator ran is then told apart from one that was always so.
    last_schedule_of: tuple[str, str] | None = None
    last_handled_trigger: str | None = None
    # The trigger value whose run was claimed last (before it started; lastHandledTrigger
    # follows when it ends): a second replica that saw the same value does not run it again.
    last_claimed_trigger: str | None = None
    last_successful_time: datetime | None = None
    execution_count: int = 0
    change_count: int = 0
    match_count: int | None = None
    webhook: WebhookState = field(default_factory=WebhookState)
    notify: WebhookState = field(default_factory=WebhookState)  # the people's deliveries
    people: PeopleStatus = field(default_factory=PeopleStatus)  # the rest of status.notify
    history: tuple[HistoryEntry, ...] = ()
    login: LoginBackoff | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> WatcherStatus:
        """Anything malformed (a hand edit, an older version) counts as absent."""
        raw = raw if isinstance(raw, Mapping) else {}
        conditions = [c for c in raw.get("conditions") or [] if isinstance(c, Mapping)]
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        claimed = raw.get("lastScheduleOf")
        webhook, notify = raw.get("webhook"), raw.get("notify")
        return cls(
            observed_generation=_count(raw.get("observedGeneration")),
            ready=None
            if ready is None
            else ReadyCondition(
                ready=ready.get("status") == "True",
                reason=str(ready.get("reason") or ""),
                message=str(ready.get("message") or ""),
                last_transition=_text(ready.get("lastTransitionTime")),
            ),
            other_conditions=tuple(c for c in conditions if c.get("type") != "Ready"),
            next_execution_time=parse_timestamp(raw.get("nextExecutionTime")),
            last_schedule_time=parse_timestamp(raw.get("lastScheduleTime")),
            last_schedule_of=(str(claimed["schedule"]), str(claimed.get("timeZone")))
            if isinstance(claimed, Mapping) and claimed.get("schedule")
            else None,
            last_handled_trigger=_text(raw.get("lastHandledTrigger")),
            last_claimed_trigger=_text(raw.get("lastClaimedTrigger")),
            last_successful_time=parse_timestamp(raw.get("lastSuccessfulTime")),
            execution_count=_count(raw.get("executionCount")) or 0,
            change_count=_count(raw.get("changeCount")) or 0,
            match_count=_count(raw.get("matchCount")),
            webhook=WebhookState.from_status(webhook if isinstance(webhook, Mapping) else {}),
            notify=WebhookState.from_status(notify if isinstance(notify, Mapping) else {}),
            people=PeopleStatus.from_status(notify if isinstance(notify, Mapping) else {}),
            history=tuple(
                entry
                for entry in map(HistoryEntry.from_status, _list(raw.get("history")))
                if entry is not None
            ),
            login=LoginBackoff.from_status(raw.get("login")),
        )

    def claims(self, trigger: Trigger) -> bool:
        """Whether the run of `trigger` is claimed here already (by this replica or another):
        a slot up to lastScheduleTime, a trigger value claimed or handled."""
        match trigger:
            case Scheduled(slot):
                return self.last_schedule_time is not None and self.last_schedule_time >= slot
            case Manual(value):
                return value in (self.last_claimed_trigger, self.last_handled_trigger)
            case Digest(due):
                return self.people.held_until != due


# kstatus' abnormal-true conditions beside Ready: present (status True) while they apply, removed
# otherwise, so GitOps tools and `kubectl wait` tell "broken" (Stalled: a spec error that will
# not fix itself) from "busy" (Reconciling: a run in progress).
STALLED, RECONCILING = "Stalled", "Reconciling"


def _condition(
    type_: str, state: Readiness, old: Mapping[str, Any] | None, now: datetime, gen: int | None
) -> dict[str, Any]:
    """One condition; lastTransitionTime moves only when its status flips."""
    status = "True" if state.ready else "False"
    transition = timestamp(now)
    if old is not None and old.get("status") == status and old.get("lastTransitionTime"):
        transition = old["lastTransitionTime"]
    condition: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": str(state.reason),
        "message": clip(state.message),
        "lastTransitionTime": transition,
    }
    if gen is not None:
        condition["observedGeneration"] = gen
    return condition


def conditions_with(
    previous: WatcherStatus,
    readiness: Readiness,
    now: datetime,
    generation: int | None,
    *,
    stalled: Readiness | None = None,
    reconciling: Readiness | None = None,
) -> list[dict[str, Any]]:
    """The condition list with Ready replaced, and Stalled/Reconciling set (when given) or
    removed; anyone else's conditions are kept as they are."""
    ours = {STALLED: stalled, RECONCILING: reconciling}
    old = {c.get("type"): c for c in previous.other_conditions}
    kept = [dict(c) for c in previous.other_conditions if c.get("type") not in ours]
    ready_before = previous.ready
    ready_old = (
        None
        if ready_before is None
        else {
            "status": "True" if ready_before.ready else "False",
            "lastTransitionTime": ready_before.last_transition,
        }
    )
    added = [
        _condition(type_, state, old.get(type_), now, generation)
        for type_, state in ours.items()
        if state is not None
    ]
    return [*kept, *added, _condition("Ready", readiness, ready_old, now, generation)]


@dataclass(frozen=True)
class RunRecord:
    """Everything a finished run contributes to the status."""

    trigger: Trigger
    started: datetime
    finished: datetime
    readiness: Readiness
    error: str | None
    match_count: int | None
    summary: Summary | None  # changes found (delivered or not)
    delivered: bool  # the changes are accepted (webhook 2xx, or no webhook)
    webhook: WebhookState | None
    notify: WebhookState | None = None
    history: HistoryEntry | None = None  # the change set this run found, if any
    login: LoginBackoff | None = None  # the login backoff after this run (None: none)
    people: PeopleStatus | None = None  # status.notify's hold and streak (None: unchanged)
    calendar: CalendarStatus | None = None  # status.calendar (None: unchanged)


def _notify_patch(record: RunRecord) -> dict[str, Any] | None:
    patch: dict[str, Any] = {}
    if record.notify is not None:
        notify = record.notify
        patch.update(
            lastDeliveryTime=timestamp(notify.last_delivery_time),
            consecutiveFailures=notify.consecutive_failures,
            pendingChanges=notify.pending_changes,
            matchCount=notify.match_count,
        )
    if record.people is not None:
        patch.update(record.people.to_status())
    return patch or None


def status_after_run(
    previous: WatcherStatus,
    record: RunRecord,
    *,
    next_time: datetime | None,
    generation: int | None,
) -> dict[str, Any]:
    """The one merge patch a run ends with. A digest is no run: only status.notify, and
    Reconciling removed."""
    if isinstance(record.trigger, Digest):
        notify = _notify_patch(record)
        return {
            "conditions": conditions_with(previous, record.readiness, record.finished, generation),
            **({} if notify is None else {"notify": notify}),  # null would delete it
        }
    patch: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions_with(previous, record.readiness, record.finished, generation),
        "lastExecutionTime": timestamp(record.started),
        "nextExecutionTime": timestamp(next_time),
        "executionCount": previous.execution_count + 1,
        "lastError": record.error,
    }
    match record.trigger:
        case Scheduled(slot):
            patch["lastScheduleTime"] = timestamp(slot)
        case Manual(value):
            patch["lastHandledTrigger"] = value
    if record.error is None:
        patch["lastSuccessfulTime"] = timestamp(record.finished)
    if record.match_count is not None:
        patch["matchCount"] = record.match_count
    if record.summary is not None and record.summary.total and record.delivered:
        patch["changeCount"] = previous.change_count + record.summary.total
        patch["lastChange"] = {
            "time": timestamp(record.finished),
            "new": record.summary.new,
            "removed": record.summary.removed,
            "changed": record.summary.changed,
        }
    if record.webhook is not None:
        patch["webhook"] = record.webhook.to_status()
    if record.history is not None:
        patch["history"] = [
            entry.to_status() for entry in history_after(previous.history, record.history)
        ]
    if record.login != previous.login:  # null removes it
        patch["login"] = None if record.login is None else record.login.to_status()
    notify = _notify_patch(record)
    if notify is not None:
        patch["notify"] = notify
    if record.calendar is not None:
        patch["calendar"] = record.calendar.to_status()
    return patch


def status_seen(
    previous: WatcherStatus,
    readiness: Readiness,
    *,
    now: datetime,
    next_time: datetime | None,
    generation: int | None,
    stalled: Readiness | None = None,
) -> dict[str, Any]:
    """What is written as soon as a watcher is seen (created, changed, operator started);
    `stalled` for a spec that cannot be used."""
    return {
        "observedGeneration": generation,
        "conditions": conditions_with(previous, readiness, now, generation, stalled=stalled),
        "nextExecutionTime": timestamp(next_time),
    }


def run_started(
    previous: WatcherStatus, what: str, *, now: datetime, generation: int | None
) -> dict[str, Any]:
    """Written before a run starts: Reconciling=True (Ready as it was)."""
    ready = previous.ready.readiness() if previous.ready is not None else _NOT_YET
    busy = Readiness(True, Reason.RUNNING, f"{what} in progress")
    return {"conditions": conditions_with(previous, ready, now, generation, reconciling=busy)}


_NOT_YET = Readiness(False, Reason.RUNNING, "the first run is in progress")


def slot_claim(
    previous: WatcherStatus,
    slot: datetime,
    schedule: str,
    time_zone: str,
    *,
    now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    """Written before a scheduled run starts (see decide.decide): the slot, and Reconciling."""
    return {
        "lastScheduleTime": timestamp(slot),
        "lastScheduleOf": {"schedule": schedule, "timeZone": time_zone},
        **run_started(
            previous, f"schedule run ({timestamp(slot)})", now=now, generation=generation
        ),
    }


def digest_claim(
    previous: WatcherStatus, *, now: datetime, generation: int | None
) -> dict[str, Any]:
    """Written before the quiet-hours digest is sent: heldUntil cleared (by one replica), and
    Reconciling. A digest whose process died is not sent again: its changes go out with the
    next run."""
    return {
        "notify": {"heldUntil": None},
        **run_started(previous, "quiet hours' digest", now=now, generation=generation),
    }


def trigger_claim(
    previous: WatcherStatus, value: str, *, now: datetime, generation: int | None
) -> dict[str, Any]:
    """Written before a manual run starts, like a slot's claim: the value, and Reconciling."""
    return {
        "lastClaimedTrigger": value,
        **run_started(previous, "manual run", now=now, generation=generation),
    }
