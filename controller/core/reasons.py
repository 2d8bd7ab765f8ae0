"""Every reason the operator writes: `Ready` condition reasons and Event reasons, in one place.

Each member's docstring is what users read about it: docs/reference.md's reason table is generated
from them (`make reference`), so a new reason cannot be added without telling users what it means
and what to do about it.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # Ready=True: the watcher is scheduled, or its last run went well.
    SCHEDULED = "Scheduled"
    """Ready=True: waiting for the next slot (shown in the message and NEXT RUN)."""
    SUSPENDED = "Suspended"
    """Ready=True: suspended (`spec.suspend`); a manual trigger still runs."""
    RUNNING = "Running"
    """Reconciling=True: a run is in progress (also Ready's reason until a new watcher's first
    run ends)."""
    SUCCEEDED = "Succeeded"
    """Ready=True: the last run went well; its Event is `Baseline` or `RunSucceeded`."""
    BASELINE_RESET = "BaselineReset"
    """Ready stays True; Warning Event: a watcher that had a snapshot recorded a new baseline: its
    ConfigMap (the webhook's, or the people's `-notified` one) was deleted, lost its owner
    reference, or belongs to an older uid (the watcher was re-created or restored). Changes since
    the last accepted list, pending ones included (the message counts them), were not reported.
    Recovery: have the receiver re-read the referee's list once (the next deliveries are relative to
    the new baseline); to avoid it, back up and restore the snapshot ConfigMap together with its
    MatchWatcher, and do not delete it by hand unless it is `SnapshotCorrupt`."""
    # Ready=False because of the spec or a Secret's shape: nothing changes until they do.
    INVALID_SPEC = "InvalidSpec"
    """Ready=False: the spec cannot be used (the message names the field); nothing runs until it
    changes (a trigger is still recorded in `lastHandledTrigger`, with this reason in Ready)."""
    INVALID_SCHEDULE = "InvalidSchedule"
    """Ready=False: `spec.schedule` cannot be used; nothing runs until it changes (a trigger is
    still recorded in `lastHandledTrigger`, with this reason in Ready)."""
    UNKNOWN_TIME_ZONE = "UnknownTimeZone"
    """Ready=False: `spec.timeZone` is not a known IANA time zone; nothing runs until it
    changes (a trigger is still recorded in `lastHandledTrigger`, with this reason in Ready)."""
    INVALID_WEBHOOK_SECRET = "InvalidWebhookSecret"  # noqa: S105 - a reason, not a secret
    """Ready=False: the webhook Secret's `headers`, `url`, keys (`hmacKey`, `previousHmacKey`) or
    TLS material (`ca.crt`, `tls.crt`/`tls.key`) cannot be used."""
    INVALID_NOTIFY_SECRET = "InvalidNotifySecret"  # noqa: S105 - a reason, not a secret
    """Ready=False: the notify Secret has no usable `urls` (1 to 20 Apprise URLs, one per line),
    a URL Apprise does not know, one whose scheme the operator does not allow, or one that sets
    `redirect=` or turns TLS verification off (`verify=no`); nothing is sent."""
    SOURCE_NOT_ALLOWED = "SourceNotAllowed"
    """Ready=False: `baseUrl` names a host outside the operator's `MLCD_FOGIS_ALLOWED_HOSTS`."""
    WEBHOOK_NOT_ALLOWED = "WebhookNotAllowed"
    """Ready=False: the webhook host is link-local, a cloud metadata service or the API server,
    or not in `MLCD_WEBHOOK_ALLOWED_HOSTS`; nothing is sent and the changes stay pending."""
    NOTIFY_NOT_ALLOWED = "NotifyNotAllowed"
    """Ready=False: a notification send tried to connect to a link-local, cloud metadata or API
    server address (checked at connect time, whatever the URL's scheme), or to look up a host not
    in `MLCD_NOTIFY_ALLOWED_HOSTS`; that connection was refused before it was made and the
    changes stay pending."""
    # Ready=False because a run failed: the next run retries.
    SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105 - a reason, not a secret
    """Ready=False: a Secret or one of its keys is missing, or the operator may not read it."""
    LOGIN_FAILED = "LoginFailed"
    """Ready=False: FOGIS rejected the credentials; scheduled runs retry the same credentials
    only after a backoff (15 min, doubling, at most 6 h) so a wrong password cannot lock the
    account; a changed Secret or a manual trigger retries at once. The backoff is kept in
    `status.login {secretUid, secretResourceVersion, failures, retryAfter}` (the Secret's version,
    nothing derived from the password), so a restarted operator or a new leader keeps to it."""
    SOURCE_UNAVAILABLE = "SourceUnavailable"
    """Ready=False: FOGIS unreachable, timed out, answered 5xx, garbage, `success: false` or more
    than `MLCD_FOGIS_MAX_RESPONSE_BYTES`, or refused the login with 403/429 (rate limiting or a
    firewall: no login backoff)."""
    WEBHOOK_FAILING = "WebhookFailing"
    """Ready=False: every delivery attempt failed; the changes stay pending for the next run."""
    WEBHOOK_GONE = "WebhookGone"
    """Ready=False: the receiver answered 410 Gone: nothing is sent to it until `spec.webhook` or
    its Secret changes; the changes stay pending."""
    NOTIFY_FAILING = "NotifyFailing"
    """Ready=False: a notification service (`spec.notify`) did not accept the message, did not
    answer within the send's 35 s deadline, or the watcher's previous send is still running; its
    changes stay pending for it, the webhook's deliveries go on regardless."""
    KUBERNETES_ERROR = "KubernetesError"
    """Ready=False: the API server refused or failed a call the run needed (reading the snapshot
    ConfigMap, ...); the next run retries."""
    SNAPSHOT_CORRUPT = "SnapshotCorrupt"
    """Ready=False: the stored snapshot cannot be read (also: it inflates beyond 64 MiB); delete
    its ConfigMap to record a new baseline."""
    SNAPSHOT_TOO_LARGE = "SnapshotTooLarge"
    """Ready=False: the new list would not fit in the snapshot ConfigMap (900 KiB compressed):
    checked before delivering, so nothing is sent that could not be recorded; narrow
    `daysBack`/`daysAhead`."""
    SNAPSHOT_CONFLICT = "SnapshotConflict"
    """Ready=False: the snapshot ConfigMap was written by someone else during the run (another
    replica in a handover): it is not overwritten, and the next run compares against it."""
    INTERNAL_ERROR = "InternalError"
    """A bug, inside a run (Ready=False, the run's Event) or in the scheduler (Warning Event,
    retried after a minute or when the resource changes); logged with its type and code location,
    never its message; other watchers unaffected."""
    # Event reasons only.
    BASELINE = "Baseline"
    """Normal Event: a watcher's first run recorded a baseline; nobody was notified."""
    RUN_SUCCEEDED = "RunSucceeded"
    """Normal Event: a run went well (and was not a first run's baseline)."""
    MISSED_SCHEDULE = "MissedSchedule"
    """Warning Event: slots that did not run (see [Scheduling](usage.md#scheduling))."""
    DIGEST_SENT = "DigestSent"
    """Normal Event: quiet hours ended and what was held for people went out as one message
    (see [Notifications to people](usage.md#notifications-to-people))."""


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
