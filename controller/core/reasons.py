"""Every reason the operator writes: `Ready` condition reasons and Event reasons, in one place.

docs/reference.md's reason table mirrors this enum (a unit test compares them), so a new reason cannot be
added without telling users what it means and what to do about it.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # Ready=True: the watcher is scheduled, or its last run went well.
    SCHEDULED = "Scheduled"
    SUSPENDED = "Suspended"
    RUNNING = "Running"  # Reconciling=True while a run is in progress
    SUCCEEDED = "Succeeded"
    BASELINE_RESET = "BaselineReset"  # also a Warning Event
    # Ready=False because of the spec or a Secret's shape: nothing changes until they do.
    INVALID_SPEC = "InvalidSpec"
    INVALID_SCHEDULE = "InvalidSchedule"
    UNKNOWN_TIME_ZONE = "UnknownTimeZone"
    INVALID_WEBHOOK_SECRET = "InvalidWebhookSecret"  # noqa: S105 - a reason, not a secret
    INVALID_NOTIFY_SECRET = "InvalidNotifySecret"  # noqa: S105 - a reason, not a secret
    SOURCE_NOT_ALLOWED = "SourceNotAllowed"
    WEBHOOK_NOT_ALLOWED = "WebhookNotAllowed"
    # Ready=False because a run failed: the next run retries.
    SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105 - a reason, not a secret
    LOGIN_FAILED = "LoginFailed"
    SOURCE_UNAVAILABLE = "SourceUnavailable"
    WEBHOOK_FAILING = "WebhookFailing"
    WEBHOOK_GONE = "WebhookGone"  # until spec.webhook or its Secret changes
    NOTIFY_FAILING = "NotifyFailing"
    KUBERNETES_ERROR = "KubernetesError"
    SNAPSHOT_CORRUPT = "SnapshotCorrupt"
    SNAPSHOT_TOO_LARGE = "SnapshotTooLarge"
    SNAPSHOT_CONFLICT = "SnapshotConflict"
    INTERNAL_ERROR = "InternalError"  # a bug: logged with its code location
    # Event reasons only.
    BASELINE = "Baseline"
    RUN_SUCCEEDED = "RunSucceeded"
    MISSED_SCHEDULE = "MissedSchedule"


# Ready reasons that describe the spec rather than a run: they are replaced whenever the spec is
# (re)read, while a run's own verdict (Succeeded, LoginFailed, ...) stays until the next run.
SPEC_REASONS = frozenset(
    {
        Reason.INVALID_SPEC,
        Reason.INVALID_SCHEDULE,
        Reason.UNKNOWN_TIME_ZONE,
        Reason.SCHEDULED,
        Reason.SUSPENDED,
    }
)
