"""Backoff for rejected FOGIS credentials, so a wrong password cannot lock the referee's account.

After FOGIS rejects the credentials of a Secret, scheduled runs do not try that Secret again until
a backoff has passed (15 minutes, doubling per rejection, at most 6 hours). A changed Secret (a new
resourceVersion), or a manual trigger, tries at once. The backoff lives in the watcher's status
(status.LoginBackoff), so a restart or a new leader does not retry a wrong password sooner; it
names the Secret by uid and resourceVersion, never by anything derived from the password. Pure:
the clock is an argument.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from controller.core.status import LoginBackoff, SecretVersion

FIRST_BACKOFF = timedelta(minutes=15)
MAX_BACKOFF = timedelta(hours=6)
_DOUBLINGS = 5  # FIRST_BACKOFF * 2**5 is past MAX_BACKOFF already


def blocked_until(
    backoff: LoginBackoff | None, secret: SecretVersion, now: datetime
) -> datetime | None:
    """Until when this version of the Secret is not tried again, if FOGIS rejected it recently."""
    if backoff is None or backoff.secret != secret or now >= backoff.retry_after:
        return None
    return backoff.retry_after


def rejected(backoff: LoginBackoff | None, secret: SecretVersion, now: datetime) -> LoginBackoff:
    """The backoff after FOGIS rejected this version of the Secret (again)."""
    before = max(backoff.failures, 0) if backoff is not None and backoff.secret == secret else 0
    # The exponent is capped: `failures` comes back from status, where anyone may edit it.
    delay = min(FIRST_BACKOFF * 2 ** min(before, _DOUBLINGS), MAX_BACKOFF)
    return LoginBackoff(secret, before + 1, now + delay)
