"""What a delivery (a webhook POST with its retries, or an Apprise send) hands back: the attempts
and the answer that accepted the change, or the failure that leaves it pending.

Plain values, raised and returned by controller/adapters/webhook.py and notify.py and read by the
pure rules of controller/core/outcome.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.errors import WebhookFailing
from controller.core.reasons import Reason


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    error: str | None  # safe description when there was no response
    duration_seconds: float
    # No answer, but the request may have reached the receiver (a timeout or a connection lost
    # after it was sent): the change may have been applied.
    in_doubt: bool = False


@dataclass(frozen=True)
class DeliveryResult:
    status_code: int
    attempts: tuple[Attempt, ...]


class DeliveryFailed(WebhookFailing):
    """Every attempt failed, or one failed for good; the change stays pending."""

    def __init__(
        self, message: str, *, attempts: tuple[Attempt, ...], last_status_code: int | None
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.last_status_code = last_status_code

    @property
    def in_doubt(self) -> bool:
        """Whether any attempt may have been applied by the receiver without saying so."""
        return any(attempt.in_doubt for attempt in self.attempts)


class WebhookGone(DeliveryFailed):
    """The receiver answered 410 Gone: it wants no more deliveries from this watcher."""

    reason = Reason.WEBHOOK_GONE
