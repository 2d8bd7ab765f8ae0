"""What people are told, and when: pure decisions beside decide.py, table-tested.

Each Apprise URL of a watcher has its own cursor: the match list as that URL was last told it
(a Snapshot, with the webhook's in-doubt record while a send's fate is unknown). A run compares
each cursor with the latest confirmed list, so a failing URL holds back nobody else, a working one
is never told the same change twice, and a revert reaches whoever may have heard the change. The
latest confirmed list is kept beside the cursors (PeopleState.latest): quiet hours' digest is
composed from it without a FOGIS fetch of its own, and the calendar feed renders from it.

Cursors are keyed by an HMAC of the URL with an operator key (url_key): a URL is a capability,
and a plain hash of a guessable ntfy topic could be brute-forced by whoever reads ConfigMaps.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from controller.core.diff import (
    CATEGORIES,
    FOGIS_ZONE,
    MatchChange,
    NormalisedMatch,
    Snapshot,
    Window,
    change_order,
    compare,
    undo,
)
from controller.core.model import NotifySpec, QuietHours

# A category people choose also brings its reversal: whoever wants "cancelled" wants to hear
# when it is called off again.
_REVERSALS = {
    "cancelled": "uncancelled",
    "postponed": "unpostponed",
    "interrupted": "uninterrupted",
}


def url_key(url: str, key: bytes) -> str:
    """The cursor key of one Apprise URL: HMAC-SHA256 with the operator's key, 128 bits hex."""
    return hmac.new(key, url.encode(), hashlib.sha256).hexdigest()[:32]


def allowed(categories: frozenset[str] | None) -> frozenset[str]:
    """The categories people are told about: the chosen ones with their reversals (all when
    none were chosen)."""
    if categories is None:
        return frozenset(CATEGORIES)
    return categories | {_REVERSALS[c] for c in categories if c in _REVERSALS}


# --- quiet hours ---------------------------------------------------------------------------------


def _wall(day: date, at: time, zone: ZoneInfo) -> datetime:
    """`at` on `day` in `zone` as a UTC instant. PEP 495's fold=0 reads a time in a DST gap
    with the offset before it (02:30 that does not exist is 03:30) and a repeated hour as its
    first occurrence."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def quiet_until(now: datetime, zone: ZoneInfo, quiet: QuietHours | None) -> datetime | None:
    """The end of the quiet window `now` falls in (UTC), None outside quiet hours. A window
    crossing midnight (22:00-07:00) began the evening before."""
    if quiet is None:
        return None
    today = now.astimezone(zone).date()
    for day in (today - timedelta(days=1), today):
        start = _wall(day, quiet.start, zone)
        end_day = day if quiet.end > quiet.start else day + timedelta(days=1)
        end = _wall(end_day, quiet.end, zone)
        if start <= now < end:
            return end
    return None


# --- urgency -------------------------------------------------------------------------------------


def kickoff(match: NormalisedMatch | None) -> datetime | None:
    """A match's kickoff (FOGIS times are Stockholm wall clock); a match without a time counts
    from the start of its day. None without a readable date."""
    if not match:
        return None
    try:
        day = date.fromisoformat(str(match.get("date")))
    except ValueError:
        return None
    clock = match.get("time")
    try:
        at = time.fromisoformat(clock) if isinstance(clock, str) else time(0)
    except ValueError:
        at = time(0)
    return _wall(day, at, FOGIS_ZONE)


def is_urgent(
    change: MatchChange, before: NormalisedMatch | None, now: datetime, hours: int
) -> bool:
    """Whether the match's old or new kickoff is within `hours` of `now` (0: never urgent)."""
    if hours <= 0:
        return False
    reach = timedelta(hours=hours)
    after = None if change.type == "removed" else change.match
    for moment in (kickoff(before), kickoff(after or change.match)):
        if moment is not None and abs(moment - now) <= reach:
            return True
    return False


# --- one URL's plan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What to tell one URL now, and its cursor once it accepted that."""

    send: tuple[MatchChange, ...]  # in the message now
    urgent: frozenset[str]  # match ids among `send` sent early because they are urgent
    held: tuple[MatchChange, ...]  # waiting for quiet hours' end
    filtered: int  # changes in categories nobody asked for: counted as told
    told: Snapshot  # the cursor after `send` (and the filtered ones) was accepted
    written_ahead: Snapshot | None  # the cursor while the send's fate is unknown


def _advanced(
    cursor: Snapshot, latest: Snapshot, told: Sequence[MatchChange], complete: bool
) -> Snapshot:
    """`cursor` moved to `latest` for the matches of `told` (all of it when `complete`)."""
    if complete:
        return Snapshot(latest.matches, revision=cursor.revision + 1)
    matches = dict(cursor.matches)
    doubt = dict(cursor.in_doubt or {})
    for change in told:
        value = latest.matches.get(change.match_id)
        if value is None:
            matches.pop(change.match_id, None)
        else:
            matches[change.match_id] = value
        doubt.pop(change.match_id, None)
    return Snapshot(matches, revision=cursor.revision + 1, in_doubt=doubt or None)


def plan(
    cursor: Snapshot,
    latest: Snapshot,
    window: Window,
    *,
    notify: NotifySpec,
    now: datetime,
    zone: ZoneInfo,
) -> Plan:
    """What one URL whose cursor is `cursor` is told now about `latest`.

    Changes in no chosen category count as told at once. In quiet hours only urgent changes are
    sent; the rest stay between the cursor and the latest list, so the digest at the window's
    end carries the net change (a time moved and moved back overnight is no change at all).
    """
    changes = compare(cursor, latest, window)
    changes = sorted([*changes, *undo(cursor, latest, window, changes)], key=change_order)
    wanted = allowed(notify.categories)
    tellable = [c for c in changes if wanted.intersection(c.categories)]
    filtered = len(changes) - len(tellable)
    quiet = quiet_until(now, zone, notify.quiet_hours) is not None
    urgent: frozenset[str] = frozenset()
    if quiet:
        urgent = frozenset(
            c.match_id
            for c in tellable
            if is_urgent(c, cursor.matches.get(c.match_id), now, notify.urgent_within_hours)
        )
        send = tuple(c for c in tellable if c.match_id in urgent)
        held = tuple(c for c in tellable if c.match_id not in urgent)
    else:
        send, held = tuple(tellable), ()
    told_changes = [c for c in changes if c not in held]
    if held:
        told = _advanced(cursor, latest, told_changes, complete=False) if told_changes else cursor
    elif changes or cursor.digest != latest.digest or cursor.in_doubt:
        # Also with nothing to tell: a match slid out of the window, or a doubt is settled.
        told = _advanced(cursor, latest, told_changes, complete=True)
    else:
        told = cursor
    written_ahead = None
    if send:
        # Recorded before sending (the webhook's discipline): should the service take it and
        # the answer be lost, the next run still moves those matches to whatever FOGIS says.
        written_ahead = cursor.attempt(
            latest.digest, {c.match_id: latest.matches.get(c.match_id) for c in send}
        )
    return Plan(send, urgent, held, filtered, told, written_ahead)


@dataclass(frozen=True)
class PeopleState:
    """The people's state of one watcher: the latest confirmed list and each URL's cursor
    (None: nothing recorded yet, the next confirmed list is everyone's baseline)."""

    latest: Snapshot
    cursors: Mapping[str, Snapshot]
    # Where a URL without a cursor starts (None: the latest list, so a URL added later is not
    # flooded with history); migrated from a release with one "notified" snapshot, that one.
    fresh: Snapshot | None = None

    def for_urls(self, keys: Sequence[str]) -> dict[str, Snapshot]:
        """The cursor of each URL key; URLs removed from the Secret are forgotten."""
        start = self.latest if self.fresh is None else self.fresh
        return {key: self.cursors.get(key, start) for key in keys}
