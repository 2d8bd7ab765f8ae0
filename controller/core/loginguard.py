"""Backoff for rejected FOGIS credentials, so a wrong password cannot lock the referee's account.

After FOGIS rejects a set of credentials, scheduled runs with the very same credentials do not try
again until a backoff has passed (15 minutes, doubling per rejection, at most 6 hours). A new
password in the Secret, or a manual trigger, tries at once. Pure: the clock is an argument, and
only a salted digest of the credentials is kept, never the password.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.core.model import Credentials

FIRST_BACKOFF = timedelta(minutes=15)
MAX_BACKOFF = timedelta(hours=6)


@dataclass(frozen=True)
class _Rejection:
    fingerprint: str
    count: int
    until: datetime


class LoginGuard:
    def __init__(self) -> None:
        self._rejections: dict[str, _Rejection] = {}  # by watcher uid

    def blocked_until(self, key: str, credentials: Credentials, now: datetime) -> datetime | None:
        """When these credentials were rejected recently: until when they are not retried."""
        rejection = self._rejections.get(key)
        if rejection is None or rejection.fingerprint != credentials.fingerprint:
            return None
        return rejection.until if now < rejection.until else None

    def rejected(self, key: str, credentials: Credentials, now: datetime) -> None:
        previous = self._rejections.get(key)
        fingerprint = credentials.fingerprint
        count = previous.count + 1 if previous and previous.fingerprint == fingerprint else 1
        backoff = min(FIRST_BACKOFF * 2 ** (count - 1), MAX_BACKOFF)
        self._rejections[key] = _Rejection(fingerprint, count, now + backoff)

    def accepted(self, key: str) -> None:
        self._rejections.pop(key, None)
