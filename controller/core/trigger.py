"""Why a run happens: a schedule slot came, or someone set the trigger annotation."""

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


Trigger = Scheduled | Manual
