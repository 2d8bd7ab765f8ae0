"""Why a run happens: a schedule slot came, someone set the trigger annotation, or quiet hours
ended with messages held for people."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar


@dataclass(frozen=True)
class Scheduled:
    slot: datetime  # the cron slot this run stands for (UTC); it is claimed before the run

    kind: ClassVar[str] = "schedule"  # the `trigger` of payloads, Events and metric labels


@dataclass(frozen=True)
class Manual:
    value: str  # the matchlist.io/trigger annotation's value; recorded as lastHandledTrigger

    kind: ClassVar[str] = "manual"


@dataclass(frozen=True)
class Digest:
    """Quiet hours ended with changes held for people (status.notify.heldUntil): they are sent
    as one message, from the stored list, without fetching FOGIS. Claimed like a slot."""

    due: datetime

    kind: ClassVar[str] = "digest"


Trigger = Scheduled | Manual | Digest
