"""The project's own exceptions.

Adapters (FOGIS, webhook, Kubernetes) turn library errors into these, so the run path and the
handlers deal with one small vocabulary. Every error carries a `reason` that becomes the
`Ready=False` condition reason, and a message that is safe to show in status, Events and logs:
messages never contain credentials, tokens, HMAC keys or header values.
"""

from __future__ import annotations

from controller.core.reasons import Reason

# Longest message shown to users (status.lastError, condition messages, Events, log lines): one
# run's error must never make every later status patch too large to be accepted.
MAX_MESSAGE_CHARS = 1024


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` if it fits, else its start and how much was cut: never more than `limit` chars."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - 60)  # room for the note below, whatever the count
    return f"{text[:keep]} ... ({len(text) - keep} more characters cut)"[:limit]


class DetectorError(Exception):
    """Base class: a run failed for a reason the user can act on."""

    reason = Reason.INTERNAL_ERROR

    def __init__(self, message: str, *, reason: Reason | None = None) -> None:
        super().__init__(clip(message))
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self)


class InvalidSpec(DetectorError):
    """The MatchWatcher spec cannot be used (reason names the field: InvalidSchedule, ...)."""

    reason = Reason.INVALID_SPEC


class SecretNotFound(DetectorError):
    """A referenced Secret, or a key in it, is missing or unusable."""

    reason = Reason.SECRET_NOT_FOUND


class SourceUnavailable(DetectorError):
    """FOGIS could not be reached or answered something we cannot use."""

    reason = Reason.SOURCE_UNAVAILABLE


class LoginFailed(DetectorError):
    """FOGIS rejected the credentials."""

    reason = Reason.LOGIN_FAILED


class WebhookFailing(DetectorError):
    """The change could not be delivered; it stays pending for the next run."""

    reason = Reason.WEBHOOK_FAILING


class KubernetesError(DetectorError):
    """The API server refused or failed a call the operator needed."""

    reason = Reason.KUBERNETES_ERROR


class Forbidden(KubernetesError):
    """The operator's RBAC does not allow the call."""


class AlreadyExists(KubernetesError):
    """An object to create exists already (made by another replica first)."""


class ConfigMapConflict(KubernetesError):
    """The ConfigMap was created, changed or deleted by someone else since it was read."""


class StatusConflict(KubernetesError):
    """A conditional status write found the object changed since it was read."""


class WatcherGone(KubernetesError):
    """The MatchWatcher is not there any more: deleted, maybe while the watch was down (a
    re-listing sends no DELETED event for it)."""


class LeaseConflict(KubernetesError):
    """The leader-election Lease was written by another replica since it was read."""
