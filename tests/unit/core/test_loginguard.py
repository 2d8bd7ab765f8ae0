"""Rejected FOGIS credentials back off; new credentials and other watchers do not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.core.loginguard import LoginGuard
from controller.core.model import Credentials

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
KEY, OTHER = "uid-anna", "uid-bo"
WRONG, RIGHT = Credentials("anna", "wrong"), Credentials("anna", "right")


@pytest.mark.parametrize(
    ("rejections", "later", "credentials", "key", "expected"),
    [
        (0, timedelta(0), WRONG, KEY, None),  # never rejected
        (1, timedelta(minutes=14), WRONG, KEY, T0 + timedelta(minutes=15)),
        (1, timedelta(minutes=15), WRONG, KEY, None),  # backoff over
        (1, timedelta(minutes=1), RIGHT, KEY, None),  # a new password tries at once
        (1, timedelta(minutes=1), WRONG, OTHER, None),  # another watcher is not affected
        (3, timedelta(minutes=59), WRONG, KEY, T0 + timedelta(minutes=60)),  # 15, 30, 60
        (10, timedelta(hours=5), WRONG, KEY, T0 + timedelta(hours=6)),  # capped at 6 h
    ],
)
def test_backoff(
    rejections: int,
    later: timedelta,
    credentials: Credentials,
    key: str,
    expected: datetime | None,
) -> None:
    guard = LoginGuard()
    for _ in range(rejections):
        guard.rejected(KEY, WRONG, T0)
    assert guard.blocked_until(key, credentials, T0 + later) == expected


def test_success_clears_and_counting_restarts() -> None:
    guard = LoginGuard()
    guard.rejected(KEY, WRONG, T0)
    guard.rejected(KEY, WRONG, T0)
    guard.accepted(KEY)
    assert guard.blocked_until(KEY, WRONG, T0) is None
    guard.rejected(KEY, WRONG, T0)
    assert guard.blocked_until(KEY, WRONG, T0) == T0 + timedelta(minutes=15)


def test_no_password_is_kept() -> None:
    guard = LoginGuard()
    guard.rejected(KEY, WRONG, T0)
    assert "wrong" not in repr(vars(guard))
