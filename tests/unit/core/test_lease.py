"""The Lease record rules of leader election, as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.core.lease import LEASE_SECONDS, LeaseRecord, next_record, released

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ME, OTHER = "pod-a", "pod-b"


def held_by(holder: str | None, renewed: datetime = T0, seconds: int = 15) -> LeaseRecord:
    return LeaseRecord(holder, seconds, T0, renewed, transitions=3)


@pytest.mark.parametrize(
    ("current", "seen_since", "now", "expected"),
    [
        # no Lease yet: create it, held by me
        (None, T0, T0, LeaseRecord(ME, LEASE_SECONDS, T0, T0)),
        # mine: renew, keeping when it was acquired and the transitions
        (held_by(ME), T0, T0 + timedelta(seconds=2), held_by(ME, T0 + timedelta(seconds=2))),
        # another holder, seen changing 14 s ago: its lease still runs
        (held_by(OTHER), T0, T0 + timedelta(seconds=14), None),
        # another holder, unchanged for the whole lease: take it over, one more transition
        (
            held_by(OTHER),
            T0,
            T0 + timedelta(seconds=15),
            LeaseRecord(
                ME, LEASE_SECONDS, T0 + timedelta(seconds=15), T0 + timedelta(seconds=15), 4
            ),
        ),
        # judged by when this process saw it change, not by the holder's clock (an hour behind)
        (held_by(OTHER, T0 - timedelta(hours=1)), T0, T0 + timedelta(seconds=5), None),
        # released (no holder): take it at once
        (held_by(None, seconds=1), T0, T0, LeaseRecord(ME, LEASE_SECONDS, T0, T0, 4)),
    ],
)
def test_next_record(
    current: LeaseRecord | None, seen_since: datetime, now: datetime, expected: LeaseRecord | None
) -> None:
    assert next_record(current, seen_since=seen_since, me=ME, now=now) == expected


def test_released_names_no_holder_and_expires_at_once() -> None:
    record = released(held_by(ME), T0)
    assert (record.holder, record.lease_seconds, record.transitions) == (None, 1, 3)
