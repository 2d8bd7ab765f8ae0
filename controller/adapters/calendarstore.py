"""Where the calendar feed's server reads a watcher's calendar state: the key `calendar.json.gz`
of its "notified" ConfigMap (controller/adapters/peoplestore.py writes it after each confirmed
fetch), owned by the watcher."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from controller.adapters.peoplestore import CALENDAR_KEY, decode_calendar
from controller.adapters.snapshots import config_map_name
from controller.core.calendar import CalendarState
from controller.core.model import WatcherRef

if TYPE_CHECKING:
    from controller.adapters.kube import StoredConfigMap


class ConfigMapReader(Protocol):
    async def read_config_map(self, namespace: str, name: str) -> StoredConfigMap | None: ...


async def read_calendar(kube: ConfigMapReader, ref: WatcherRef) -> CalendarState | None:
    """The watcher's calendar state; None when none is stored yet (or only a deleted
    namesake's, whose ConfigMap the garbage collector has not removed yet)."""
    name = config_map_name(ref.name, "notified")
    stored = await kube.read_config_map(ref.namespace, name)
    if stored is None or ref.uid not in stored.owner_uids or CALENDAR_KEY not in stored.data:
        return None
    where = f"ConfigMap {ref.namespace}/{name}"
    return await asyncio.to_thread(decode_calendar, stored.data[CALENDAR_KEY], where)
