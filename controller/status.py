"""Pure builders of the MatchWatcher status (one merge patch per run) and its Ready condition."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.diff import Summary
from controller.errors import clip
from controller.report import rfc3339


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


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str
    message: str


def conditions_with(
    previous: Sequence[Mapping[str, Any]] | None,
    readiness: Readiness,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """The condition list with Ready replaced; lastTransitionTime moves only when status flips."""
    status = "True" if readiness.ready else "False"
    others = [dict(c) for c in previous or [] if c.get("type") != "Ready"]
    old = next((c for c in previous or [] if c.get("type") == "Ready"), None)
    transition = timestamp(now)
    if old is not None and old.get("status") == status and old.get("lastTransitionTime"):
        transition = old["lastTransitionTime"]
    ready: dict[str, Any] = {
        "type": "Ready",
        "status": status,
        "reason": readiness.reason,
        "message": clip(readiness.message),
        "lastTransitionTime": transition,
    }
    if generation is not None:
        ready["observedGeneration"] = generation
    return [*others, ready]


@dataclass(frozen=True)
class WebhookState:
    last_delivery_time: datetime | None
    last_status_code: int | None
    consecutive_failures: int
    pending_changes: int
    last_delivery_id: str | None

    @classmethod
    def from_status(cls, webhook: Mapping[str, Any]) -> WebhookState:
        """The state as status.webhook last recorded it (absent fields: nothing happened yet)."""
        return cls(
            last_delivery_time=parse_timestamp(webhook.get("lastDeliveryTime")),
            last_status_code=webhook.get("lastStatusCode"),
            consecutive_failures=int(webhook.get("consecutiveFailures") or 0),
            pending_changes=int(webhook.get("pendingChanges") or 0),
            last_delivery_id=webhook.get("lastDeliveryId"),
        )

    def to_status(self) -> dict[str, Any]:
        return {
            "lastDeliveryTime": timestamp(self.last_delivery_time),
            "lastStatusCode": self.last_status_code,
            "consecutiveFailures": self.consecutive_failures,
            "pendingChanges": self.pending_changes,
            "lastDeliveryId": self.last_delivery_id,
        }


@dataclass(frozen=True)
class RunRecord:
    """Everything a finished run contributes to the status."""

    started: datetime
    finished: datetime
    slot: datetime | None  # set for scheduled runs
    handled_trigger: str | None  # set for manual runs
    readiness: Readiness
    error: str | None
    match_count: int | None
    summary: Summary | None  # changes found (delivered or not)
    delivered: bool  # the changes are accepted (webhook 2xx, or no webhook)
    webhook: WebhookState | None


def status_after_run(
    previous: Mapping[str, Any],
    record: RunRecord,
    *,
    next_time: datetime | None,
    generation: int | None,
) -> dict[str, Any]:
    """The one merge patch a run ends with."""
    patch: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions_with(
            previous.get("conditions"), record.readiness, record.finished, generation
        ),
        "lastExecutionTime": timestamp(record.started),
        "nextExecutionTime": timestamp(next_time),
        "executionCount": int(previous.get("executionCount") or 0) + 1,
        "lastError": record.error,
    }
    if record.slot is not None:
        patch["lastScheduleTime"] = timestamp(record.slot)
    if record.handled_trigger is not None:
        patch["lastHandledTrigger"] = record.handled_trigger
    if record.error is None:
        patch["lastSuccessfulTime"] = timestamp(record.finished)
    if record.match_count is not None:
        patch["matchCount"] = record.match_count
    if record.summary is not None and record.summary.total and record.delivered:
        patch["changeCount"] = int(previous.get("changeCount") or 0) + record.summary.total
        patch["lastChange"] = {
            "time": timestamp(record.finished),
            "new": record.summary.new,
            "removed": record.summary.removed,
            "changed": record.summary.changed,
        }
    if record.webhook is not None:
        patch["webhook"] = record.webhook.to_status()
    return patch


def status_seen(
    previous: Mapping[str, Any],
    readiness: Readiness,
    *,
    now: datetime,
    next_time: datetime | None,
    generation: int | None,
) -> dict[str, Any]:
    """What is written as soon as a watcher is seen (created, changed, operator started)."""
    return {
        "observedGeneration": generation,
        "conditions": conditions_with(previous.get("conditions"), readiness, now, generation),
        "nextExecutionTime": timestamp(next_time),
    }
