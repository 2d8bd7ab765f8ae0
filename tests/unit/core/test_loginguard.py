"""Rejected FOGIS credentials back off, kept in status: a changed Secret and other watchers do
not; nothing derived from the password is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.core.diff import Summary
from controller.core.loginguard import blocked_until, rejected
from controller.core.status import (
    LoginBackoff,
    Readiness,
    RunRecord,
    SecretVersion,
    WatcherStatus,
    status_after_run,
)
from controller.core.trigger import Scheduled

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
SECRET = SecretVersion("uid-1", "41")
CHANGED = SecretVersion("uid-1", "42")  # the Secret edited (a fixed password)
RECREATED = SecretVersion("uid-2", "41")  # deleted and created again


def _after(rejections: int, secret: SecretVersion = SECRET) -> LoginBackoff | None:
    backoff: LoginBackoff | None = None
    for _ in range(rejections):
        backoff = rejected(backoff, secret, T0)
    return backoff


@pytest.mark.parametrize(
    ("rejections", "later", "secret", "expected"),
    [
        (0, timedelta(0), SECRET, None),  # never rejected
        (1, timedelta(minutes=14), SECRET, T0 + timedelta(minutes=15)),
        (1, timedelta(minutes=15), SECRET, None),  # backoff over
        (1, timedelta(minutes=1), CHANGED, None),  # a changed Secret tries at once
        (1, timedelta(minutes=1), RECREATED, None),
        (3, timedelta(minutes=59), SECRET, T0 + timedelta(minutes=60)),  # 15, 30, 60
        (10, timedelta(hours=5), SECRET, T0 + timedelta(hours=6)),  # capped at 6 h
    ],
)
def test_backoff(
    rejections: int, later: timedelta, secret: SecretVersion, expected: datetime | None
) -> None:
    assert blocked_until(_after(rejections), secret, T0 + later) == expected


@pytest.mark.parametrize(
    ("before", "secret", "failures", "until"),
    [
        (None, SECRET, 1, T0 + timedelta(minutes=15)),
        (LoginBackoff(SECRET, 2, T0), SECRET, 3, T0 + timedelta(hours=1)),
        # Another version of the Secret counts from one again.
        (LoginBackoff(SECRET, 5, T0), CHANGED, 1, T0 + timedelta(minutes=15)),
        # Hand-edited counts: a huge one is capped (no overflow), a negative one starts over.
        (LoginBackoff(SECRET, 10**12, T0), SECRET, 10**12 + 1, T0 + timedelta(hours=6)),
        (LoginBackoff(SECRET, -3, T0), SECRET, 1, T0 + timedelta(minutes=15)),
    ],
)
def test_rejected_counts_per_secret_version(
    before: LoginBackoff | None, secret: SecretVersion, failures: int, until: datetime
) -> None:
    assert rejected(before, secret, T0) == LoginBackoff(secret, failures, until)


STORED = {"secretUid": "uid-1", "secretResourceVersion": "41", "failures": 2,
          "retryAfter": "2026-11-28T10:30:00Z"}  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (STORED, LoginBackoff(SECRET, 2, T0 + timedelta(minutes=30))),
        (None, None),
        ({**STORED, "retryAfter": "soon"}, None),  # hand-edited junk counts as absent
        ({**STORED, "failures": "2"}, None),
        ({k: v for k, v in STORED.items() if k != "secretUid"}, None),
    ],
)
def test_status_login_round_trips(raw: Any, expected: LoginBackoff | None) -> None:
    parsed = WatcherStatus.parse({"login": raw}).login
    assert parsed == expected
    if expected is not None:
        assert expected.to_status() == raw


def _record(login: LoginBackoff | None) -> RunRecord:
    return RunRecord(
        trigger=Scheduled(T0), started=T0, finished=T0, readiness=Readiness(True, "x", "y"),
        error=None, match_count=1, summary=Summary(0, 0, 0), delivered=True, webhook=None,
        login=login,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("before", "after", "written"),
    [
        (None, None, "absent"),
        (STORED, _after(1), _after(1)),
        (None, _after(1), _after(1)),
        (STORED, None, None),  # FOGIS accepted them: null removes status.login
        (STORED, LoginBackoff.from_status(STORED), "absent"),  # unchanged: not rewritten
    ],
)
def test_the_run_patch_writes_login_only_when_it_changed(
    before: Any, after: LoginBackoff | None, written: Any
) -> None:
    previous = WatcherStatus.parse({"login": before} if before else {})
    patch = status_after_run(previous, _record(after), next_time=None, generation=1)
    if written == "absent":
        assert "login" not in patch
    else:
        assert patch["login"] == (None if written is None else written.to_status())


def test_no_password_is_kept() -> None:
    backoff = rejected(None, SECRET, T0)
    assert set(backoff.to_status()) == {"secretUid", "secretResourceVersion", "failures",
                                        "retryAfter"}  # fmt: skip
