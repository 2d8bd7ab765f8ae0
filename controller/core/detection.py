"""What a detection pass hands back: a Detection when the list was compared (and any change
delivered), or ChangesPending when delivery failed and the changes wait for the next run.

Plain values: controller/runtime/detection.py builds them, controller/core/outcome.py's pure rules
turn them into status and an Event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controller.core.delivery import DeliveryFailed, DeliveryResult
from controller.core.diff import MatchChange, Summary


class ChangesPending(DeliveryFailed):
    """Delivery failed; the snapshot did not advance and these changes wait for the next run."""

    def __init__(
        self,
        failure: DeliveryFailed,
        changes: Sequence[MatchChange],
        match_count: int,
        delivery_id: str = "",
    ):
        super().__init__(
            str(failure), attempts=failure.attempts, last_status_code=failure.last_status_code
        )
        self.reason = failure.reason  # WebhookFailing, or WebhookGone
        self.changes = list(changes)
        self.match_count = match_count
        self.delivery_id = delivery_id  # the id the pending transition is (re)delivered under


@dataclass(frozen=True)
class Detection:
    baseline: bool
    match_count: int
    changes: list[MatchChange]
    summary: Summary
    report: dict[str, Any]  # the document a webhook gets (changes empty on a baseline)
    delivery: DeliveryResult | None
    # Why a watcher that had a snapshot recorded a baseline again (its changes since the last
    # accepted list were not reported); None for a watcher's first baseline.
    reset: str | None = None
