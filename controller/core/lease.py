"""The Lease record rules of leader election, the way client-go's leaderelection judges them.

Pure and table-tested; controller/runtime/leadership.py carries them out against the API server.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

LEASE_SECONDS = 15  # client-go's defaults: lease 15 s, renew deadline 10 s, retry 2 s


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease's spec, as far as the election reads it."""

    holder: str | None
    lease_seconds: int
    acquired: datetime | None
    renewed: datetime | None
    transitions: int = 0


def next_record(
    current: LeaseRecord | None, *, seen_since: datetime, me: str, now: datetime
) -> LeaseRecord | None:
    """The record to write to lead from `now` on, or None while another holder's lease runs.
    `seen_since`: when this process first saw `current` as it is (its own clock)."""
    if current is None:
        return LeaseRecord(me, LEASE_SECONDS, now, now)
    if current.holder == me:
        return replace(current, renewed=now, lease_seconds=LEASE_SECONDS)
    free = not current.holder or now >= seen_since + timedelta(seconds=current.lease_seconds)
    if not free:
        return None
    return LeaseRecord(me, LEASE_SECONDS, now, now, current.transitions + 1)


def released(current: LeaseRecord, now: datetime) -> LeaseRecord:
    """Given up on the way out, so a standby takes over at its next retry, not after expiry."""
    return replace(current, holder=None, lease_seconds=1, renewed=now)
