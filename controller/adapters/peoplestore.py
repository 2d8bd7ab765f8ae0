"""Where the latest confirmed list lives, with what people were told of it and what the
calendar feed shows (controller/core/people.py, controller/core/calendar.py): the watcher's
"notified" ConfigMap, beside the webhook's snapshot ConfigMap, owned by the watcher. One store
for both, written after each confirmed fetch, also while the webhook fails.

Keys:
- `people.json.gz`: the latest confirmed list and each Apprise URL's cursor (by URL key).
- `calendar.json.gz`: the calendar feed's state (spec.calendar), which every replica serves.
- `snapshot.json.gz`: the least advanced cursor, in the format releases before per-URL cursors
  read as their one "notified" snapshot. An operator downgraded to one of them reads it (people
  may then be told some changes again, never miss one) and replaces the ConfigMap without
  `people.json.gz`; back on this release, that key alone is read as every URL's cursor again,
  as it is when migrating from such a release in the first place.
"""

from __future__ import annotations

import asyncio
import gzip
from typing import TYPE_CHECKING, Any

from controller.adapters.snapshots import (
    DATA_KEY,
    MANAGED_BY,
    MAX_STORED_BYTES,
    WATCHER_LABEL,
    SnapshotConflict,
    SnapshotCorrupt,
    SnapshotTooLarge,
    config_map_name,
    decode_snapshot,
    gunzip,
    short_label,
)
from controller.core.calendar import CalendarState
from controller.core.diff import Snapshot
from controller.core.errors import ConfigMapConflict, clip
from controller.core.jsontext import canonical_json, load_json
from controller.core.model import WatcherRef
from controller.core.people import PeopleState

if TYPE_CHECKING:
    from controller.adapters.kube import Kube

PEOPLE_KEY = "people.json.gz"
CALENDAR_KEY = "calendar.json.gz"
PEOPLE_FORMAT = 1


def _encode(state: PeopleState, calendar: CalendarState | None) -> dict[str, bytes]:
    data = _encode_state(state)
    if calendar is not None:
        data[CALENDAR_KEY] = gzip.compress(calendar.to_json().encode(), mtime=0)
    return data


def decode_calendar(data: bytes, where: str) -> CalendarState:
    """A stored calendar state (also read by the feed's server)."""
    try:
        return CalendarState.from_json(gunzip(data).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise SnapshotCorrupt(
            f"calendar state in {where} is unreadable ({clip(str(exc), 300)}); delete its "
            f"{CALENDAR_KEY} key to start the feed afresh"
        ) from None


def _decode(data: dict[str, bytes], where: str) -> tuple[PeopleState | None, CalendarState | None]:
    calendar = decode_calendar(data[CALENDAR_KEY], where) if CALENDAR_KEY in data else None
    return _decode_state(data, where), calendar


def _encode_state(state: PeopleState) -> dict[str, bytes]:
    """The ConfigMap's data for `state` (CPU for big lists: called off the event loop)."""
    # Equal cursors are stored once: usually every URL is at the same place.
    texts: list[str] = []
    index: dict[str, int] = {}
    refs: dict[str, int] = {}
    for key, cursor in sorted(state.cursors.items()):
        text = cursor.to_json()
        refs[key] = index.setdefault(text, len(texts))
        if refs[key] == len(texts):
            texts.append(text)
    document = {
        "format": PEOPLE_FORMAT,
        "latest": state.latest.to_json(),
        "told": texts,
        "cursors": refs,
    }
    behind = min(state.cursors.values(), key=lambda s: s.revision, default=state.latest)
    return {
        PEOPLE_KEY: gzip.compress(canonical_json(document).encode(), mtime=0),
        DATA_KEY: gzip.compress(behind.to_json().encode(), mtime=0),
    }


def _decode_state(data: dict[str, bytes], where: str) -> PeopleState | None:
    """The state in a ConfigMap's data; a release before per-URL cursors left only DATA_KEY."""
    if PEOPLE_KEY not in data:
        if DATA_KEY not in data:
            return None
        notified = decode_snapshot(data[DATA_KEY], where)
        # Every URL starts from what the one "notified" snapshot says people were told.
        return PeopleState(latest=notified, cursors={}, fresh=notified)
    try:
        document = load_json(gunzip(data[PEOPLE_KEY]).decode("utf-8"))
        if not isinstance(document, dict) or document.get("format") != PEOPLE_FORMAT:
            raise ValueError(f"format {document.get('format')!r} is not {PEOPLE_FORMAT}")
        told = [Snapshot.from_json(_text(text)) for text in _list(document.get("told"))]
        cursors = {}
        for key, ref in _object(document.get("cursors")).items():
            if not isinstance(ref, int) or isinstance(ref, bool) or not 0 <= ref < len(told):
                raise ValueError(f"cursor {key!r} refers to nothing")
            cursors[str(key)] = told[ref]
        latest = Snapshot.from_json(_text(document.get("latest")))
    except (OSError, UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise SnapshotCorrupt(
            f"people's state in {where} is unreadable ({clip(str(exc), 300)}); delete its "
            f"{PEOPLE_KEY} key to start people from its {DATA_KEY}"
        ) from None
    return PeopleState(latest=latest, cursors=cursors)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a snapshot is not text")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("told is not a list")
    return value


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("cursors is not an object")
    return value


class ConfigMapPeople:
    """The people's state of one watcher in its "notified" ConfigMap (compare-and-swap on the
    version read, like ConfigMapSnapshots)."""

    def __init__(self, kube: Kube, ref: WatcherRef) -> None:
        self._kube = kube
        self._ref = ref
        self.name = config_map_name(ref.name, "notified")
        self._version: str | None = None
        self.foreign_owner = False
        # The calendar feed's state, as loaded; save() writes whatever is here then.
        self.calendar: CalendarState | None = None

    async def load(self) -> PeopleState | None:
        stored = await self._kube.read_config_map(self._ref.namespace, self.name)
        self._version = None if stored is None else stored.resource_version
        self.foreign_owner = stored is not None and self._ref.uid not in stored.owner_uids
        if stored is None or self._ref.uid not in stored.owner_uids:
            return None  # a deleted namesake's: this watcher records its own baseline
        where = f"ConfigMap {self._ref.namespace}/{self.name}"
        state, self.calendar = await asyncio.to_thread(_decode, dict(stored.data), where)
        return state

    async def save(self, state: PeopleState) -> None:
        data = await asyncio.to_thread(_encode, state, self.calendar)
        size = sum(len(value) for value in data.values())
        if size > MAX_STORED_BYTES:
            raise SnapshotTooLarge(
                f"the people's state ({len(state.latest.matches)} matches, {len(state.cursors)} "
                f"URLs) is {size // 1024} KiB compressed, more than a ConfigMap holds "
                f"({MAX_STORED_BYTES // 1024} KiB): narrow the window (daysBack, daysAhead)"
            )
        labels = {**MANAGED_BY, WATCHER_LABEL: short_label(self._ref.name)}
        try:
            self._version = await self._kube.write_config_map(
                self._ref, self.name, data, labels, self._version
            )
        except ConfigMapConflict:
            raise SnapshotConflict(
                f"the people's state in ConfigMap {self._ref.namespace}/{self.name} was written "
                "by someone else during this run (another replica?); not overwritten"
            ) from None
