"""The project's own exceptions.

Adapters (FOGIS, webhook, Kubernetes) turn library errors into these, so the run path and the
handlers deal with one small vocabulary. Every error carries a `reason` that becomes the
`Ready=False` condition reason, and a message that is safe to show in status, Events and logs:
messages never contain credentials, tokens, HMAC keys or header values.
"""

from __future__ import annotations

import traceback
from pathlib import Path

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

    reason = "RunFailed"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(clip(message))
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self)


class InvalidSpec(DetectorError):
    """The MatchWatcher spec cannot be used (reason names the field: InvalidSchedule, ...)."""

    reason = "InvalidSpec"


class SecretNotFound(DetectorError):
    """A referenced Secret, or a key in it, is missing or unusable."""

    reason = "SecretNotFound"


class SourceUnavailable(DetectorError):
    """FOGIS could not be reached or answered something we cannot use."""

    reason = "SourceUnavailable"


class LoginFailed(DetectorError):
    """FOGIS rejected the credentials."""

    reason = "LoginFailed"


class WebhookFailing(DetectorError):
    """The change could not be delivered; it stays pending for the next run."""

    reason = "WebhookFailing"


class KubernetesError(DetectorError):
    """The API server refused or failed a call the operator needed."""

    reason = "KubernetesError"


def bug_location(exc: BaseException) -> str:
    """Where an unexpected exception came from (file:line, function, and the chain of our own
    frames), without its message: library messages can quote the data they choked on, which
    may be a secret, so bug reports carry the place and the type only."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/controller/" in f.filename] or frames[-1:]
    return (
        " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(ours[-4:]))
        or "unknown"
    )
